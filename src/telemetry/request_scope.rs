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
        // JSON strings, escaped by serde_json (writing to a `Vec` cannot fail).
        let string = |s: &str, json: &mut Vec<u8>| {
            let _ = serde_json::to_writer(json, s);
        };
        json.extend_from_slice(br#","span":{"name":"request","request_id":"#);
        string(request_id, &mut json);
        json.extend_from_slice(br#","method":"#);
        string(method, &mut json);
        json.extend_from_slice(br#","route":"#);
        string(route, &mut json);
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

    /// A request's tag without a span (what JSON logs with tracing off get).
    #[cfg(test)]
    pub(super) fn tagged(request_id: &str) -> Self {
        Self {
            span: Span::none(),
            tag: Some(Arc::new(RequestTag::new(
                request_id,
                "POST",
                "/api/v1/chat",
            ))),
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
