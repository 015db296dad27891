//! The request a log line belongs to. Every line written while a request's
//! code runs (its handler future, its response body, its stream's pump task)
//! carries the request's `"span":{"name":"request","request_id",…}` object.
//!
//! With tracing off and JSON logs, that object comes from a [`RequestTag`]
//! kept in a thread-local while the request's code is polled, not from a
//! `tracing` span: a span costs its registry slot, its extensions, the
//! filter's bookkeeping and a subscriber call on every enter and exit, which
//! was ≈ 15 % of a plain request's instructions (BENCHMARKS.md). A real span
//! is still made where something reads it: the OpenTelemetry exporter, and
//! the pretty format (tracing-subscriber's layer knows nothing of the tag).
//! The JSON layer prefers a span when there is one, so its lines are the same
//! either way.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tracing::Span;

use super::json_lines::string;

/// Whether requests get a real `tracing` span (set once, by `telemetry::init`).
static SPANS: AtomicBool = AtomicBool::new(true);

pub(super) fn make_spans(on: bool) {
    SPANS.store(on, Ordering::Relaxed);
}

thread_local! {
    /// The tag of the request being polled on this thread, if any.
    static CURRENT: Cell<Option<Arc<RequestTag>>> = const { Cell::new(None) };
}

/// A request's log fields, ready as the JSON the log layer copies into each
/// line: `,"span":{"name":"request","request_id":…,"method":…,"route":…}`.
pub struct RequestTag(Box<[u8]>);

impl RequestTag {
    fn new(request_id: &str, method: &str, route: &str) -> Self {
        let mut json = Vec::with_capacity(64 + request_id.len() + route.len());
        json.extend_from_slice(br#","span":{"name":"request","request_id":"#);
        string(&mut json, request_id);
        json.extend_from_slice(br#","method":"#);
        string(&mut json, method);
        json.extend_from_slice(br#","route":"#);
        string(&mut json, route);
        json.push(b'}');
        Self(json.into_boxed_slice())
    }

    /// Calls `write` with the current request's JSON, when a request is being polled.
    pub(super) fn with_current(write: impl FnOnce(&[u8])) {
        let _ = CURRENT.try_with(|current| {
            let tag = current.take();
            if let Some(tag) = &tag {
                write(&tag.0);
            }
            current.set(tag);
        });
    }
}

/// Where a request's code runs: its span (or `Span::none()`) and its tag.
#[derive(Clone)]
pub struct Scope {
    span: Span,
    tag: Option<Arc<RequestTag>>,
}

impl Scope {
    /// Outside any request.
    pub fn none() -> Self {
        Self {
            span: Span::none(),
            tag: None,
        }
    }

    /// A request's scope. `otel_span` makes the span when tracing is on
    /// (it wins over the plain one).
    pub fn request(
        request_id: &str,
        method: &'static str,
        route: &str,
        otel_span: Option<Span>,
    ) -> Self {
        let span = match otel_span {
            Some(span) => span,
            None if SPANS.load(Ordering::Relaxed) => {
                tracing::info_span!("request", request_id = %request_id, method, route = %route)
            }
            None => Span::none(),
        };
        Self {
            span,
            tag: Some(Arc::new(RequestTag::new(request_id, method, route))),
        }
    }

    /// The scope the calling code runs in (for a task it spawns).
    pub fn current() -> Self {
        let tag = CURRENT
            .try_with(|current| {
                let tag = current.take();
                current.set(tag.clone());
                tag
            })
            .ok()
            .flatten();
        Self {
            span: Span::current(),
            tag,
        }
    }

    pub fn span(&self) -> &Span {
        &self.span
    }

    /// Runs `f` inside the scope.
    pub fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        let _entered = self.span.enter();
        let _tagged = self.tag.as_ref().map(|tag| Tagged::set(tag.clone()));
        f()
    }

    /// `future`, polled inside the scope.
    pub fn instrument<F: Future>(self, future: F) -> InScope<F> {
        InScope {
            future,
            scope: self,
        }
    }
}

/// Puts a tag in `CURRENT` until dropped, then puts back the one before
/// (nested scopes: a body polled inside another's poll).
struct Tagged(Option<Arc<RequestTag>>);

impl Tagged {
    fn set(tag: Arc<RequestTag>) -> Self {
        Self(
            CURRENT
                .try_with(|current| current.replace(Some(tag)))
                .ok()
                .flatten(),
        )
    }
}

impl Drop for Tagged {
    fn drop(&mut self) {
        let before = self.0.take();
        let _ = CURRENT.try_with(|current| current.set(before));
    }
}

pin_project_lite::pin_project! {
    /// A future polled inside a [`Scope`].
    pub struct InScope<F> {
        #[pin]
        future: F,
        scope: Scope,
    }
}

impl<F: Future> Future for InScope<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let future = this.future;
        this.scope.in_scope(|| future.poll(cx))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::{Value, json};
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::telemetry::json_lines::{JsonLines, tests::Captured};

    fn tag_only(request_id: &str) -> Scope {
        Scope {
            span: Span::none(),
            tag: Some(Arc::new(RequestTag::new(
                request_id,
                "POST",
                "/api/v1/chat",
            ))),
        }
    }

    fn logged(lines: &[String]) -> Vec<Value> {
        lines
            .iter()
            .map(|line| {
                let mut v: Value = serde_json::from_str(line).unwrap();
                v.as_object_mut().unwrap().remove("timestamp");
                v
            })
            .collect()
    }

    fn capture(f: impl FnOnce()) -> Vec<Value> {
        let out = Captured::default();
        let subscriber = tracing_subscriber::registry().with(JsonLines::new(out.clone()));
        tracing::subscriber::with_default(subscriber, f);
        logged(&out.lines())
    }

    #[test]
    fn a_line_in_a_tagged_scope_has_the_span_object_a_request_span_gives() {
        let id = "r-\"1\" </script>";
        let with_span = capture(|| {
            let span = tracing::info_span!("request", request_id = %id, method = "POST", route = %"/api/v1/chat");
            span.in_scope(|| tracing::warn!(attempt = 2u32, "upstream attempt"));
        });
        let with_tag = capture(|| {
            tag_only(id).in_scope(|| tracing::warn!(attempt = 2u32, "upstream attempt"));
        });
        assert_eq!(with_tag, with_span);
        assert_eq!(with_tag[0]["span"]["request_id"], id);
    }

    #[test]
    fn the_tag_is_on_lines_only_while_its_scope_runs_and_nested_scopes_restore_the_outer() {
        let lines = capture(|| {
            let outer = tag_only("outer");
            outer.in_scope(|| {
                tracing::info!("first");
                tag_only("inner").in_scope(|| tracing::info!("nested"));
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
        tag_only("polled")
            .instrument(async {
                tracing::info!("before the yield");
                tokio::task::yield_now().await;
                tracing::info!("after the yield");
            })
            .await;
        tracing::info!("outside");
        let ids: Vec<_> = logged(&out.lines())
            .iter()
            .map(|l| l["span"]["request_id"].clone())
            .collect();
        assert_eq!(Value::from(ids), json!(["polled", "polled", null]));
    }
}
