//! Turns an upstream server-sent-event body into our `StreamEvent`s: our own
//! bounded SSE decoder (an upstream is not trusted to end its lines or its
//! events), and a per-provider translator for the event payloads.

use std::borrow::Cow;
use std::collections::VecDeque;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::http::{Response, body_broke};
use super::{EventStream, MAX_ANSWER_BYTES, MAX_EVENT_BYTES, ProviderError};
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

/// How much of an event stream the decoder holds or reads, at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// One line, without its line ending.
    pub line: usize,
    /// One event: its name and its data lines together.
    pub event: usize,
    /// The whole stream.
    pub answer: usize,
}

impl Limits {
    /// What chatgate accepts from an upstream.
    pub const UPSTREAM: Limits = Limits {
        line: MAX_EVENT_BYTES,
        event: MAX_EVENT_BYTES,
        answer: MAX_ANSWER_BYTES,
    };
}

/// One decoded event (`name` is `message` when the stream gave none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Borrowed for the unnamed events of OpenAI-kind streams: no string made per event.
    pub name: Cow<'static, str>,
    pub data: String,
}

/// A stream past one of its `Limits`: an unusable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Overflow {
    #[error("an event-stream line longer than {0} bytes")]
    Line(usize),
    #[error("an event larger than {0} bytes")]
    Event(usize),
    #[error("an event stream larger than {0} bytes")]
    Answer(usize),
}

impl From<Overflow> for ProviderError {
    fn from(o: Overflow) -> Self {
        ProviderError::Decode(o.to_string())
    }
}

/// An incremental SSE decoder (the WHATWG event-stream format): lines end in
/// `\n`, `\r\n` or `\r`; `event:` and `data:` fields; comments; a blank line
/// dispatches. Each byte is scanned once, whatever the chunking, and nothing
/// is held past `Limits`. An event not ended by a blank line when the stream
/// ends is dropped, as the format says.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    /// The line in progress (its start came in an earlier chunk).
    line: Vec<u8>,
    /// The previous chunk ended in `\r`: a `\n` opening this one ends no new line.
    skip_lf: bool,
    name: String,
    data: String,
    total: usize,
}

impl Decoder {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            line: Vec::new(),
            skip_lf: false,
            name: String::new(),
            data: String::new(),
            total: 0,
        }
    }

    /// Bytes held between chunks: the partial line and the event in progress.
    pub fn buffered(&self) -> usize {
        self.line.len() + self.name.len() + self.data.len()
    }

    /// Decodes `chunk`, pushing every event it completes. After an error the
    /// decoder must not be fed again (the stream is unusable).
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<Event>) -> Result<(), Overflow> {
        // Only the bytes within the answer cap are read, so the events decoded
        // before an overflow do not depend on how the stream was chunked.
        let room = self.limits.answer.saturating_sub(self.total);
        let over = chunk.len() > room;
        let mut rest = &chunk[..chunk.len().min(room)];
        self.total += rest.len();
        if self.skip_lf && !rest.is_empty() {
            self.skip_lf = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while let Some(end) = memchr::memchr2(b'\n', b'\r', rest) {
            let (head, tail) = rest.split_at(end);
            if self.line.len() + head.len() > self.limits.line {
                return Err(Overflow::Line(self.limits.line));
            }
            if self.line.is_empty() {
                self.complete_line(head, out)?;
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(head);
                let done = self.complete_line(&line, out);
                line.clear();
                self.line = line;
                done?;
            }
            rest = match (tail[0], tail.get(1)) {
                (b'\r', Some(b'\n')) => &tail[2..],
                (b'\r', None) => {
                    self.skip_lf = true;
                    &tail[1..]
                }
                _ => &tail[1..],
            };
        }
        if self.line.len() + rest.len() > self.limits.line {
            return Err(Overflow::Line(self.limits.line));
        }
        self.line.extend_from_slice(rest);
        if over {
            return Err(Overflow::Answer(self.limits.answer));
        }
        Ok(())
    }

    fn complete_line(&mut self, line: &[u8], out: &mut Vec<Event>) -> Result<(), Overflow> {
        if line.is_empty() {
            if self.data.is_empty() {
                self.name.clear();
            } else {
                self.data.pop(); // the `\n` after the last data line
                let name = std::mem::take(&mut self.name);
                out.push(Event {
                    name: if name.is_empty() {
                        Cow::Borrowed("message")
                    } else {
                        Cow::Owned(name)
                    },
                    data: std::mem::take(&mut self.data),
                });
            }
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(()); // a comment (keep-alive)
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        // Line endings are ASCII, so a line is always whole UTF-8 if the stream
        // is. `from_utf8` first: its ASCII fast path is several times quicker
        // than the lossy decoder's, which only a broken line needs.
        let value = match std::str::from_utf8(value) {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(value),
        };
        match field {
            b"event" => {
                if self.data.len() + value.len() > self.limits.event {
                    return Err(Overflow::Event(self.limits.event));
                }
                self.name.clear();
                self.name.push_str(&value);
            }
            b"data" => {
                if self.name.len() + self.data.len() + value.len() + 1 > self.limits.event {
                    return Err(Overflow::Event(self.limits.event));
                }
                // One allocation for the usual one-line event, not a
                // second for its `\n`.
                self.data.reserve(value.len() + 1);
                self.data.push_str(&value);
                self.data.push('\n');
            }
            // `id`, `retry` and unknown fields mean nothing to a chat stream.
            _ => {}
        }
        Ok(())
    }
}

struct State<T> {
    /// The upstream body; `None` once it is no longer needed, so that the
    /// connection is closed at once (an unread body is never pooled).
    body: Option<BoxStream<'static, Result<bytes::Bytes, hyper::Error>>>,
    decoder: Decoder,
    decoded: Vec<Event>,
    /// Events decoded but not yet translated, in order.
    pending: VecDeque<Event>,
    /// Why the body was given up, reported once the events before it are out.
    failure: Option<ProviderError>,
    translate: T,
    queue: VecDeque<StreamEvent>,
    complete: bool,
    ended: bool,
}

/// The `Content-Type` of an event stream (parameters and case aside); an
/// answer that says nothing is given the benefit of the doubt.
fn is_event_stream(response: &Response) -> bool {
    match response.headers().get(http::header::CONTENT_TYPE) {
        None => true,
        Some(v) => v.to_str().is_ok_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/event-stream"))
        }),
    }
}

/// Reads `response` as SSE through `translate`. A body that ends before the
/// provider says it is complete yields an error, never a silent truncation; a
/// 2xx that is not an event stream is an unusable answer.
pub fn events<T: Translate>(
    response: Response,
    translate: T,
) -> Result<EventStream, ProviderError> {
    if !is_event_stream(&response) {
        return Err(ProviderError::Decode(
            "a stream request was answered with something other than an event stream".into(),
        ));
    }
    let state = State {
        body: Some(http_body_util::BodyDataStream::new(response.into_body()).boxed()),
        decoder: Decoder::new(Limits::UPSTREAM),
        decoded: Vec::new(),
        pending: VecDeque::new(),
        failure: None,
        translate,
        queue: VecDeque::new(),
        complete: false,
        ended: false,
    };
    Ok(futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(event) = s.queue.pop_front() {
                return Some((Ok(event), s));
            }
            if s.ended {
                return None;
            }
            if s.complete {
                s.ended = true;
                s.body = None;
                return Some((s.translate.finish(), s));
            }
            if let Some(event) = s.pending.pop_front() {
                match s.translate.event(&event.name, &event.data, &mut s.queue) {
                    Ok(done) => s.complete = done,
                    Err(e) => return Some((Err(end(&mut s, e)), s)),
                }
                continue;
            }
            if let Some(e) = s.failure.take() {
                return Some((Err(end(&mut s, e)), s));
            }
            let Some(body) = s.body.as_mut() else {
                s.ended = true;
                return Some((s.translate.finish(), s));
            };
            // A fast upstream always has bytes ready: give the worker back
            // now and then, so that one stream never starves the others.
            tokio::task::coop::consume_budget().await;
            match body.next().await {
                Some(Ok(chunk)) => {
                    let fed = s.decoder.feed(&chunk, &mut s.decoded);
                    s.pending.extend(s.decoded.drain(..));
                    if let Err(overflow) = fed {
                        s.body = None;
                        s.failure = Some(overflow.into());
                    }
                }
                Some(Err(e)) => return Some((Err(end(&mut s, body_broke(e))), s)),
                None => {
                    // No explicit end marker: complete only if the provider
                    // already sent its stop reason (`finish` errs otherwise).
                    s.ended = true;
                    s.body = None;
                    return Some((s.translate.finish(), s));
                }
            }
        }
    })
    .boxed())
}

/// Ends the stream on `error`, closing the upstream connection now.
fn end<T>(s: &mut State<T>, error: ProviderError) -> ProviderError {
    s.ended = true;
    s.body = None;
    s.pending.clear();
    s.queue.clear();
    error
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn decode(limits: Limits, chunks: &[&[u8]]) -> (Vec<Event>, Option<Overflow>) {
        let mut d = Decoder::new(limits);
        let mut out = Vec::new();
        for chunk in chunks {
            if let Err(e) = d.feed(chunk, &mut out) {
                return (out, Some(e));
            }
        }
        (out, None)
    }

    fn ev(name: &str, data: &str) -> Event {
        Event {
            name: name.to_owned().into(),
            data: data.into(),
        }
    }

    #[test]
    fn a_line_that_is_not_utf8_is_read_with_replacement_characters() {
        let (events, err) = decode(
            Limits::UPSTREAM,
            &[b"data: caf\xc3\n\ndata: ok \xc3\xa9\n\n"],
        );
        assert_eq!(err, None);
        assert_eq!(
            events,
            [ev("message", "caf\u{fffd}"), ev("message", "ok \u{e9}")]
        );
    }

    #[test]
    fn fields_comments_multi_line_data_and_every_line_ending() {
        let input = b": hi\r\nevent: a\rdata: one\ndata:two\r\n\r\ndata\n\nid: 7\nretry: 5\nx\n\nevent: b\n\ndata: last\n\n";
        let (events, err) = decode(Limits::UPSTREAM, &[input]);
        assert_eq!(err, None);
        assert_eq!(
            events,
            vec![
                ev("a", "one\ntwo"),
                ev("message", ""),
                ev("message", "last")
            ]
        );
    }

    #[test]
    fn a_crlf_split_across_chunks_ends_one_line() {
        let (events, _) = decode(Limits::UPSTREAM, &[b"data: x\r", b"\n\r", b"\n"]);
        assert_eq!(events, vec![ev("message", "x")]);
    }

    #[test]
    fn an_event_without_its_blank_line_is_not_dispatched() {
        let (events, err) = decode(Limits::UPSTREAM, &[b"data: a\n\ndata: cut"]);
        assert_eq!((events, err), (vec![ev("message", "a")], None));
    }

    #[test]
    fn an_endless_line_stops_at_the_line_cap() {
        let limits = Limits::UPSTREAM;
        let mut d = Decoder::new(limits);
        let chunk = vec![b'a'; 64 * 1024];
        let mut out = Vec::new();
        let mut fed = 0;
        let err = loop {
            if let Err(e) = d.feed(&chunk, &mut out) {
                break e;
            }
            fed += chunk.len();
            assert!(d.buffered() <= limits.line);
        };
        assert_eq!(err, Overflow::Line(limits.line));
        assert!(fed <= limits.line, "{fed}");
    }

    #[test]
    fn an_endless_event_stops_at_the_event_cap() {
        let limits = Limits::UPSTREAM;
        let mut d = Decoder::new(limits);
        let chunk = b"data: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n".repeat(1000);
        let mut out = Vec::new();
        let err = loop {
            if let Err(e) = d.feed(&chunk, &mut out) {
                break e;
            }
            assert!(d.buffered() <= limits.event);
        };
        assert_eq!(err, Overflow::Event(limits.event));
        assert!(out.is_empty());
    }

    #[test]
    fn a_stream_of_small_events_stops_at_the_answer_cap() {
        let limits = Limits {
            line: 100,
            event: 100,
            answer: 1000,
        };
        let (events, err) = decode(limits, &[&b"data: 123456\n\n".repeat(100)]);
        assert_eq!(err, Some(Overflow::Answer(1000)));
        assert_eq!(events.len(), 1000 / 14);
    }

    const SMALL: Limits = Limits {
        line: 48,
        event: 96,
        answer: 600,
    };

    /// `input` cut at `cuts` (positions, taken modulo its length).
    fn chunked(input: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
        let mut cuts: Vec<usize> = cuts
            .iter()
            .map(|c| c % (input.len() + 1))
            .chain([0, input.len()])
            .collect();
        cuts.sort_unstable();
        cuts.windows(2)
            .map(|w| input[w[0]..w[1]].to_vec())
            .collect()
    }

    fn decode_chunks(limits: Limits, chunks: &[Vec<u8>]) -> (Vec<Event>, Option<Overflow>) {
        let mut d = Decoder::new(limits);
        let mut out = Vec::new();
        for chunk in chunks {
            if let Err(e) = d.feed(chunk, &mut out) {
                return (out, Some(e));
            }
            assert!(d.line.len() <= limits.line);
            assert!(d.name.len() + d.data.len() <= limits.event);
            assert!(d.total <= limits.answer);
        }
        (out, None)
    }

    /// A well-formed stream: events of `event:`, `data:` and comment lines,
    /// with a line ending chosen per line.
    fn stream() -> impl Strategy<Value = Vec<u8>> {
        let line = prop_oneof![
            "[a-z_]{0,8}".prop_map(|n| format!("event: {n}")),
            "[ -~é]{0,30}".prop_map(|d| format!("data: {d}")),
            "[ -~]{0,10}".prop_map(|c| format!(":{c}")),
        ];
        let ending = prop_oneof![Just("\n"), Just("\r\n"), Just("\r")];
        let event = proptest::collection::vec((line, ending.clone()), 0..4)
            .prop_flat_map(move |lines| (Just(lines), ending.clone()));
        proptest::collection::vec(event, 0..12).prop_map(|events| {
            let mut out = String::new();
            for (lines, blank) in events {
                for (line, ending) in lines {
                    out.push_str(&line);
                    out.push_str(ending);
                }
                out.push_str(blank);
            }
            out.into_bytes()
        })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_or_buffer_past_the_caps(
            bytes in proptest::collection::vec(any::<u8>(), 0..2000),
            cuts in proptest::collection::vec(any::<usize>(), 0..20),
        ) {
            let whole = decode_chunks(SMALL, std::slice::from_ref(&bytes));
            let pieces = decode_chunks(SMALL, &chunked(&bytes, &cuts));
            prop_assert_eq!(whole, pieces);
        }

        #[test]
        fn chunking_never_changes_the_decoded_events(
            input in stream(),
            cuts in proptest::collection::vec(any::<usize>(), 0..20),
        ) {
            let whole = decode_chunks(Limits::UPSTREAM, std::slice::from_ref(&input));
            prop_assert_eq!(whole.1, None);
            let pieces = decode_chunks(Limits::UPSTREAM, &chunked(&input, &cuts));
            prop_assert_eq!(&whole, &pieces);
            let bytewise: Vec<Vec<u8>> = input.iter().map(|b| vec![*b]).collect();
            prop_assert_eq!(&whole, &decode_chunks(Limits::UPSTREAM, &bytewise));
            // Under tight caps too: the same events and the same error.
            let small = decode_chunks(SMALL, std::slice::from_ref(&input));
            prop_assert_eq!(small, decode_chunks(SMALL, &chunked(&input, &cuts)));
        }
    }
}
