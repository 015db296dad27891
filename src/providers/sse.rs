//! Turns an upstream server-sent-event body into our `StreamEvent`s, with a
//! per-provider translator for the event payloads.

use std::collections::VecDeque;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;

use super::http::transport;
use super::{EventStream, ProviderError};
use crate::chat::StreamEvent;

/// A provider's reading of its own SSE events.
pub trait Translate: Send + 'static {
    /// Handles one event; pushes what it yields. Returns `true` when the
    /// upstream said the stream is complete.
    fn event(
        &mut self,
        name: &str,
        data: &str,
        out: &mut VecDeque<StreamEvent>,
    ) -> Result<bool, ProviderError>;
    /// The final `Finished` event; an error when the stream stopped before the
    /// provider gave its stop reason.
    fn finish(&mut self) -> Result<StreamEvent, ProviderError>;
}

struct State<T> {
    upstream:
        futures_util::stream::BoxStream<'static, Result<eventsource_stream::Event, ProviderError>>,
    translate: T,
    queue: VecDeque<StreamEvent>,
    complete: bool,
    ended: bool,
}

/// Reads `response` as SSE through `translate`. A body that ends before the
/// provider says it is complete yields an error, never a silent truncation.
pub fn events<T: Translate>(response: reqwest::Response, translate: T) -> EventStream {
    let upstream = response
        .bytes_stream()
        .eventsource()
        .map(|r| {
            r.map_err(|e| match e {
                eventsource_stream::EventStreamError::Transport(e) => transport(e),
                other => ProviderError::Decode(format!("malformed event stream: {other}")),
            })
        })
        .boxed();
    let state = State {
        upstream,
        translate,
        queue: VecDeque::new(),
        complete: false,
        ended: false,
    };
    futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(event) = s.queue.pop_front() {
                return Some((Ok(event), s));
            }
            if s.ended {
                return None;
            }
            if s.complete {
                s.ended = true;
                return Some((s.translate.finish(), s));
            }
            match s.upstream.next().await {
                Some(Ok(event)) => match s.translate.event(&event.event, &event.data, &mut s.queue)
                {
                    Ok(done) => s.complete = done,
                    Err(e) => {
                        s.ended = true;
                        return Some((Err(e), s));
                    }
                },
                Some(Err(e)) => {
                    s.ended = true;
                    return Some((Err(e), s));
                }
                None => {
                    // No explicit end marker: complete only if the provider
                    // already sent its stop reason (`finish` errs otherwise).
                    s.ended = true;
                    return Some((s.translate.finish(), s));
                }
            }
        }
    })
    .boxed()
}
