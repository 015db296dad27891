//! The JSON log layer: one line per event, written straight to bytes, with the
//! shape tracing-subscriber's JSON layer gave (`flatten_event`, current span):
//! `{"timestamp","level",<event fields>,"target","span":{<span fields>,"name"}}`.
//!
//! Why not that layer: it renders a span's fields to a JSON string when the
//! span opens and parses the string back into a map for every event inside
//! it, and builds a map of values per field set. Here a span keeps its fields
//! as a ready JSON fragment that each event copies, and every value is
//! escaped by serde_json straight into the line's buffer.

use std::cell::RefCell;
use std::fmt;
use std::io::Write;

use serde::Serializer as _;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use super::request_scope::RequestTag;

/// A line buffer that grew past this (a huge error text) is dropped after
/// use rather than kept for the thread's lifetime.
const KEEP_BUFFER_BYTES: usize = 16 * 1024;

/// Writes each event as one JSON line to `W`.
pub struct JsonLines<W> {
    writer: W,
}

impl<W> JsonLines<W> {
    pub fn new(writer: W) -> Self {
        Self { writer }
    }
}

/// A span's fields as `,"key":value` pairs, in the order recorded.
struct SpanFields(Vec<u8>);

impl<S, W> Layer<S> for JsonLines<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'a> MakeWriter<'a> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Vec::new();
        attrs.record(&mut Fields(&mut fields));
        span.extensions_mut().insert(SpanFields(fields));
    }

    /// A field recorded later is appended: every span here records each
    /// field once (declared `Empty`, filled in afterwards).
    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if let Some(SpanFields(fields)) = span.extensions_mut().get_mut::<SpanFields>() {
            values.record(&mut Fields(fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        thread_local! {
            static LINE: RefCell<(Vec<u8>, String)> = const { RefCell::new((Vec::new(), String::new())) };
        }
        let write = |line: &mut Vec<u8>, timestamp: &mut String| {
            line.clear();
            timestamp.clear();
            self.format(event, &ctx, line, timestamp);
            let _ = self
                .writer
                .make_writer_for(event.metadata())
                .write_all(line);
        };
        let reused = LINE.try_with(|cell| match cell.try_borrow_mut() {
            Ok(mut buffers) => {
                let (line, timestamp) = &mut *buffers;
                write(line, timestamp);
                if line.capacity() > KEEP_BUFFER_BYTES {
                    *line = Vec::new();
                }
                true
            }
            // An event while this thread formats another (a writer that logs).
            Err(_) => false,
        });
        if !matches!(reused, Ok(true)) {
            write(&mut Vec::new(), &mut String::new());
        }
    }
}

impl<W> JsonLines<W> {
    fn format<S>(
        &self,
        event: &Event<'_>,
        ctx: &Context<'_, S>,
        line: &mut Vec<u8>,
        ts: &mut String,
    ) where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let meta = event.metadata();
        let _ = SystemTime.format_time(&mut Writer::new(ts));
        line.extend_from_slice(b"{\"timestamp\":");
        string(line, ts);
        line.extend_from_slice(b",\"level\":\"");
        line.extend_from_slice(meta.level().as_str().as_bytes());
        line.push(b'"');
        event.record(&mut Fields(line));
        line.extend_from_slice(b",\"target\":");
        string(line, meta.target());
        if let Some(span) = ctx.event_span(event) {
            line.extend_from_slice(b",\"span\":{\"name\":");
            string(line, span.metadata().name());
            if let Some(SpanFields(fields)) = span.extensions().get::<SpanFields>() {
                line.extend_from_slice(fields);
            }
            line.push(b'}');
        } else {
            RequestTag::with_current(|span| line.extend_from_slice(span));
        }
        line.extend_from_slice(b"}\n");
    }
}

/// A JSON string, escaped by serde_json (writing to a `Vec` cannot fail).
pub(super) fn string(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(out, s);
}

/// Appends each field as `,"key":value`: numbers and booleans as JSON
/// values, everything else as its (Debug or Display) text in a string.
struct Fields<'a>(&'a mut Vec<u8>);

impl Fields<'_> {
    fn key(&mut self, field: &Field) {
        self.0.push(b',');
        string(self.0, field.name());
        self.0.push(b':');
    }

    fn value<T: serde::Serialize + ?Sized>(&mut self, field: &Field, value: &T) {
        self.key(field);
        let _ = serde_json::to_writer(&mut *self.0, value);
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.value(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.value(field, &value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.value(field, &value);
    }

    /// NaN and infinities become `null`, as serde_json writes them.
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.value(field, &value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.value(field, &value);
    }

    /// `%value`, `?value` and the message: the text is escaped as it is
    /// formatted, with no intermediate `String`.
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        let _ = serde_json::Serializer::new(&mut *self.0).collect_str(&AsDisplay(value));
    }
}

/// Lets `collect_str` (which takes `Display`) format a `Debug` value.
struct AsDisplay<'a>(&'a dyn fmt::Debug);

impl fmt::Display for AsDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::{Value, json};
    use tracing::field::Empty;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::telemetry::Scope;

    /// Lines written by a layer, read back by the test.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Self;
        fn make_writer(&'a self) -> Self {
            self.clone()
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<String> {
            let bytes = self.0.lock().unwrap();
            let text = std::str::from_utf8(&bytes).unwrap();
            text.lines().map(str::to_owned).collect()
        }
    }

    struct Refused;

    impl fmt::Display for Refused {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("upstream said \"no\"\r\n\tat\u{1}\u{7f} é \u{1F600} </script>\\")
        }
    }

    /// Events of every kind the code logs: the request line with its
    /// numbers and absent fields, Display and Debug values, a formatted
    /// message, fields recorded on the span later, a nested span, and an
    /// event outside any span.
    fn log_everything() {
        let request = tracing::info_span!(
            "request",
            request_id = %"r-\"1\"",
            method = "POST",
            route = %"/api/v1/chat",
            http.response.status_code = Empty,
        );
        let _entered = request.enter();
        request.record("http.response.status_code", 200u16);
        tracing::info!(
            target: "chatgate::request",
            request_id = %"r-\"1\"",
            status = 200u16,
            latency_ms = 1.25,
            not_a_number = f64::NAN,
            degraded = false,
            offset = -3i64,
            key_id = None::<&str>,
            flags = Some("cache_hit,guard"),
            text = "line\nbreak \"quoted\" back\\slash \u{0} nul",
            "request"
        );
        tracing::warn!(attempt = 2u32, error = %Refused, "upstream attempt");
        tracing::error!(list = ?["a\"b", "c"], "formatted {} message", "with \"args\"");
        tracing::info_span!("upstream attempt", chatgate.attempt = 1u32)
            .in_scope(|| tracing::info!(outcome = "success", "inside the child span"));
        drop(_entered);
        tracing::info!("outside any span");
    }

    fn parsed(lines: &[String]) -> Vec<Value> {
        lines
            .iter()
            .map(|line| {
                let mut v: Value =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                let timestamp = v.as_object_mut().unwrap().remove("timestamp").unwrap();
                assert!(timestamp.as_str().unwrap().ends_with('Z'), "{line}");
                v
            })
            .collect()
    }

    #[test]
    fn each_line_has_the_fields_and_values_the_json_fmt_layer_wrote() {
        let ours = Captured::default();
        let theirs = Captured::default();
        let subscriber = tracing_subscriber::registry().with(JsonLines::new(ours.clone()));
        tracing::subscriber::with_default(subscriber, log_everything);
        let reference = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .with_writer(theirs.clone()),
        );
        tracing::subscriber::with_default(reference, log_everything);

        let (ours, theirs) = (ours.lines(), theirs.lines());
        assert_eq!(ours.len(), 5, "{ours:#?}");
        assert_eq!(parsed(&ours), parsed(&theirs), "{ours:#?}\n{theirs:#?}");
        // One line each, whatever the values held.
        assert!(ours[1].contains(r#""error":"upstream said \"no\"\r\n\tat\u0001"#));
    }

    #[test]
    fn a_line_past_the_kept_buffer_size_is_written_whole_and_the_next_one_clean() {
        let out = Captured::default();
        let subscriber = tracing_subscriber::registry().with(JsonLines::new(out.clone()));
        let big = "x".repeat(4 * KEEP_BUFFER_BYTES);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(big = %big, "big");
            tracing::info!("small");
        });
        let lines = out.lines();
        let first: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(first["big"], big);
        assert_eq!(lines.len(), 2);
        let second: Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(second["message"], "small");
        assert!(second.get("big").is_none());
    }

    // Lines inside a request's scope with no span (JSON logs, tracing off).

    fn capture(f: impl FnOnce()) -> Vec<Value> {
        let out = Captured::default();
        let subscriber = tracing_subscriber::registry().with(JsonLines::new(out.clone()));
        tracing::subscriber::with_default(subscriber, f);
        parsed(&out.lines())
    }

    #[test]
    fn a_line_in_a_tagged_scope_has_the_span_object_a_request_span_gives() {
        let id = "r-\"1\" </script>";
        let with_span = capture(|| {
            let span = tracing::info_span!("request", request_id = %id, method = "POST", route = %"/api/v1/chat");
            span.in_scope(|| tracing::warn!(attempt = 2u32, "upstream attempt"));
        });
        let with_tag = capture(|| {
            Scope::tagged(id).in_scope(|| tracing::warn!(attempt = 2u32, "upstream attempt"));
        });
        assert_eq!(with_tag, with_span);
        assert_eq!(with_tag[0]["span"]["request_id"], id);
    }

    #[test]
    fn the_tag_is_on_lines_only_while_its_scope_runs_and_nested_scopes_restore_the_outer() {
        let lines = capture(|| {
            let outer = Scope::tagged("outer");
            outer.in_scope(|| {
                tracing::info!("first");
                Scope::tagged("inner").in_scope(|| tracing::info!("nested"));
                tracing::info!("after the nested scope");
                // What a spawned task takes along.
                Scope::current().in_scope(|| tracing::info!("carried"));
            });
            tracing::info!("outside");
        });
        let ids: Vec<_> = lines
            .iter()
            .map(|l| l["span"]["request_id"].clone())
            .collect();
        assert_eq!(
            Value::from(ids),
            json!(["outer", "inner", "outer", "outer", null])
        );
    }

    #[tokio::test]
    async fn a_future_in_a_scope_logs_with_its_tag_at_every_poll_and_leaves_none_behind() {
        let out = Captured::default();
        let subscriber = tracing_subscriber::registry().with(JsonLines::new(out.clone()));
        let _default = tracing::subscriber::set_default(subscriber);
        Scope::tagged("polled")
            .instrument(async {
                tracing::info!("before the yield");
                tokio::task::yield_now().await;
                tracing::info!("after the yield");
            })
            .await;
        tracing::info!("outside");
        let ids: Vec<_> = parsed(&out.lines())
            .iter()
            .map(|l| l["span"]["request_id"].clone())
            .collect();
        assert_eq!(Value::from(ids), json!(["polled", "polled", null]));
    }
}
