//! A response body that owns a guard until the body ends or is dropped, and
//! polls the inner body inside the request's log scope: what a stream must keep (a concurrency
//! permit, the in-flight gauge, its pending request-log line, the
//! connection's activity count) lives exactly as long as the stream.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::response::Response;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use crate::telemetry::Scope;

struct Guarded<G> {
    inner: Body,
    /// Dropped at the end of the body (or with it, if the client leaves first).
    guard: Option<G>,
    scope: Scope,
}

impl<G: Send + Unpin + 'static> HttpBody for Guarded<G> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let inner = &mut this.inner;
        let polled = this.scope.in_scope(|| Pin::new(inner).poll_frame(cx));
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            // Release now rather than whenever hyper drops the body.
            this.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// `response` whose body holds `guard` until it ends, polled inside `scope`
/// (`Scope::none()` when the body's log lines need no scope of their own).
pub fn hold<G: Send + Unpin + 'static>(response: Response, guard: G, scope: Scope) -> Response {
    response.map(|inner| {
        Body::new(Guarded {
            inner,
            guard: Some(guard),
            scope,
        })
    })
}
