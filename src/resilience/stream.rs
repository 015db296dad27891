//! Streams: an attempt succeeds only once its first event arrived, so retries
//! and failover happen before the client sees a byte; afterwards a guard
//! bounds the stream by the request deadline and an idle timeout, whether or
//! not the client reads.

use std::time::Duration;

use crate::telemetry::Scope;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use tokio::time::Instant;

use super::Attempt;
use crate::chat::{StreamEvent, Usage};
use crate::providers::{EventStream, Provider, ProviderError, ProviderRequest};

/// Opens a stream and waits for its first event.
pub struct OpenStream;

impl Attempt for OpenStream {
    type Output = (StreamEvent, EventStream);

    fn attempt<'a>(
        &self,
        provider: &'a dyn Provider,
        req: &'a ProviderRequest,
    ) -> BoxFuture<'a, Result<Self::Output, ProviderError>> {
        async move {
            let mut stream = provider.stream(req).await?;
            match stream.next().await {
                Some(Ok(first)) => Ok((first, stream)),
                Some(Err(e)) => Err(e),
                None => Err(ProviderError::Connect(
                    "stream closed before its first event".into(),
                )),
            }
        }
        .boxed()
    }

    /// Streamed tokens are counted when the stream ends, not per attempt.
    fn usage(_: &Self::Output) -> Option<Usage> {
        None
    }
}

/// Events held between the upstream and a client that reads slower than it.
const PUMP_BUFFER: usize = 16;

/// Ends `stream` with `ProviderError::Timeout` at `deadline` or after `idle`
/// without an event; it ends after its first error.
///
/// A task reads the upstream into a small channel, so that the deadline holds
/// whether or not the client reads: at the deadline the task drops the
/// upstream stream (closing its connection) even while the channel is full,
/// then leaves the timeout error for the client. A client that goes away
/// closes the channel, which ends the task and the upstream stream at once.
pub fn guard(stream: EventStream, deadline: Instant, idle: Duration) -> EventStream {
    let (tx, rx) = tokio::sync::mpsc::channel(PUMP_BUFFER);
    tokio::spawn(Scope::current().instrument(pump(stream, tx, deadline, idle)));
    futures_util::stream::unfold(rx, |mut rx| async move {
        let event = rx.recv().await?;
        Some((event, rx))
    })
    .boxed()
}

type Sender = tokio::sync::mpsc::Sender<Result<StreamEvent, ProviderError>>;

async fn pump(mut stream: EventStream, tx: Sender, deadline: Instant, idle: Duration) {
    let end = loop {
        let now = Instant::now();
        let limit = now + idle.min(deadline.saturating_duration_since(now));
        let next = tokio::select! {
            () = tx.closed() => return,
            next = tokio::time::timeout_at(limit, stream.next()) => next,
        };
        let event = match next {
            Ok(Some(Ok(event))) => event,
            Ok(Some(Err(e))) => break Some(e),
            Ok(None) => break None,
            Err(_) => break Some(ProviderError::Timeout),
        };
        match tokio::time::timeout_at(deadline, tx.send(Ok(event))).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => break Some(ProviderError::Timeout),
        }
    };
    // Close the upstream before waiting on a slow reader for the last word;
    // only the channel's few events are held from here on.
    drop(stream);
    if let Some(error) = end {
        let _ = tx.send(Err(error)).await;
    }
}
