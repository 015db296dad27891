//! `server.max_concurrent_requests`: a request takes a permit or gets 503
//! `overloaded` at once (nothing is queued). The permit moves into the
//! response body, so a stream holds it until it ends, not only until its
//! headers are sent; a client that leaves releases it with the body.

use std::sync::Arc;

use crate::telemetry::Scope;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::body_guard;
use crate::error::ApiError;

/// The permits of one app.
pub fn permits(max_concurrent_requests: usize) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(
        max_concurrent_requests.min(Semaphore::MAX_PERMITS),
    ))
}

pub async fn limit(State(permits): State<Arc<Semaphore>>, req: Request, next: Next) -> Response {
    let Ok(permit) = permits.try_acquire_owned() else {
        return ApiError::Overloaded.into_response();
    };
    body_guard::hold(next.run(req).await, permit, Scope::none())
}
