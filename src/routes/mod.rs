//! The router: `/api/v1` (guarded), health, metrics, and a JSON 404 fallback.

mod chat;
mod extract;
mod health;
mod metrics;
pub mod openai;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use axum::response::sse::Event;
use axum::routing::{get, post};

use crate::chat::Usage;
use crate::dispatch::Served;
use crate::error::{ApiError, error_json};
use crate::middleware;
use crate::providers::ProviderError;
use crate::state::AppState;

/// The whole router. `extra` routes (for embedders, and tests) get the same
/// stack as ours but none of the `/api/v1` guards.
pub fn router(state: AppState, extra: Router<AppState>) -> Router {
    let api = Router::new()
        .route("/chat", post(chat::chat))
        .route("/chat/completions", post(openai::completions))
        .route("/models", get(openai::models));
    let api = middleware::api_guards(api, &state);
    let app = Router::new()
        .nest("/api/v1", api)
        .route("/health", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(metrics::render))
        .merge(extra)
        .fallback(|| async { ApiError::NotFound });
    middleware::stack(app, &state).with_state(state)
}

/// The common end of every chat answer: audit fields for the request log,
/// `x-chatgate-degraded: true` on fallback answers, no caching, and
/// `x-accel-buffering: no` so proxies pass streams through as they come.
fn finish(mut response: Response, served: &Served, usage: Option<Usage>) -> Response {
    response.extensions_mut().insert(served.audit(usage));
    let headers = response.headers_mut();
    if served.degraded {
        headers.insert("x-chatgate-degraded", HeaderValue::from_static("true"));
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// The error a stream reports after it began.
fn stream_error(error: &ProviderError) -> ApiError {
    match error {
        ProviderError::Timeout => ApiError::Timeout,
        _ => ApiError::UpstreamError,
    }
}

/// `{"error": {"code", "message"}}` for an SSE error.
fn sse_error_json(error: &ProviderError) -> String {
    error_json(&stream_error(error).info(), None)
}

/// The native stream's `error` event.
fn sse_error(error: &ProviderError) -> Event {
    Event::default().event("error").data(sse_error_json(error))
}
