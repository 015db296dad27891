//! The router: `/api/v1` (guarded), health, metrics, and a JSON 404 fallback.

pub mod admin;
mod anthropic;
mod chat;
mod docs;
mod extract;
mod health;
mod metrics;
pub mod openai;
pub mod paths;
mod playground;

use axum::Router;
use axum::extract::OriginalUri;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use axum::response::sse::Event;
use axum::routing::{get, post};

use crate::context::Served;
use crate::error::{ApiError, error_json};
use crate::headers::{ACCEL_BUFFERING, CACHE, COST_USD, DEGRADED, VARIANT};
use crate::middleware;
use crate::providers::ProviderError;
use crate::state::AppState;

/// The whole router. `extra` routes (for embedders, and tests) get the same
/// stack as ours but none of the `/api/v1` guards.
pub fn router(state: AppState, extra: Router<AppState>) -> Router {
    let api = Router::new()
        .route(paths::CHAT, post(chat::chat))
        .route(paths::COMPLETIONS, post(openai::completions))
        .route(paths::MESSAGES, post(anthropic::messages))
        .route(paths::MODELS, get(openai::models))
        .route(paths::MODEL, get(openai::model));
    let api = middleware::api_guards(api, &state);
    let app = Router::new()
        .merge(api)
        .route(paths::HEALTH, get(health::live))
        .route(paths::READY, get(health::ready))
        .route(paths::METRICS, get(metrics::render))
        .merge(docs_router(&state))
        .merge(admin::router(&state).unwrap_or_default())
        .merge(playground::router(&state).unwrap_or_default())
        .merge(extra)
        .fallback(|uri: OriginalUri| async move {
            ApiError::NotFound {
                hint: near_miss(uri.path()),
            }
        });
    middleware::stack(app, &state).with_state(state)
}

/// `/openapi.json` and `/docs`, unless `docs.enabled = false` (then 404).
fn docs_router(state: &AppState) -> Router<AppState> {
    if !state.config.docs.enabled {
        return Router::new();
    }
    Router::new()
        .route(paths::OPENAPI, get(docs::openapi))
        .route(paths::DOCS, get(docs::index))
        .route("/docs/", get(docs::index))
        .route("/docs/{*file}", get(docs::asset))
}

/// The route an unknown `path` was probably meant for: a trailing slash or
/// other case (`/api/v1/chat/`), or an API route without our `/api/v1` prefix
/// as OpenAI SDKs and other gateways spell it (`/v1/chat/completions`,
/// `/chat`, `/api/chat`). Only a known route is ever returned, never the path.
fn near_miss(path: &str) -> Option<&'static str> {
    // No real near-miss is long; don't lowercase whatever a client sent.
    if path.len() > 64 {
        return None;
    }
    let path = path.trim_end_matches('/').to_ascii_lowercase();
    if let Some(route) = paths::ALL.iter().find(|r| **r == path) {
        return Some(route);
    }
    let api = [
        ("/chat", paths::CHAT),
        ("/chat/completions", paths::COMPLETIONS),
        ("/messages", paths::MESSAGES),
        ("/models", paths::MODELS),
    ];
    ["/api/v1", "/api", "/v1", ""].iter().find_map(|prefix| {
        let rest = path.strip_prefix(prefix)?;
        api.iter()
            .find(|(a, _)| *a == rest)
            .map(|(_, route)| *route)
    })
}

/// The common end of every chat answer: [`Served`] for the request log,
/// `x-chatgate-degraded: true` on fallback answers, `x-chatgate-cache`,
/// `x-chatgate-cost-usd` on whole answers, no caching by proxies, and
/// `x-accel-buffering: no` so proxies pass streams through as they come.
fn finish(mut response: Response, served: &Served) -> Response {
    let cost = served.cost_usd();
    response.extensions_mut().insert(served.clone());
    let headers = response.headers_mut();
    headers.insert(CACHE, HeaderValue::from_static(served.cache.as_str()));
    headers.insert(VARIANT, HeaderValue::from_static(served.variant.as_str()));
    if let Some(cost) = cost {
        headers.insert(COST_USD, crate::cost::header(cost));
    }
    if served.degraded {
        headers.insert(DEGRADED, HeaderValue::from_static("true"));
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(ACCEL_BUFFERING, HeaderValue::from_static("no"));
    response
}

/// The error a stream reports after it began.
fn stream_error(error: &ProviderError) -> ApiError {
    match error {
        ProviderError::Timeout => ApiError::Timeout,
        ProviderError::Blocked(rule) => ApiError::ContentBlocked {
            rule: rule.clone(),
            answer: true,
        },
        _ => ApiError::UpstreamError,
    }
}

/// `{"error": {"code", "message"}}` for an SSE error.
fn sse_error_json(error: &ProviderError) -> String {
    error_json(&stream_error(error).info(), None)
}

/// An SSE event named `name` with `data` as its JSON. Serialised into one
/// string first: axum's `json_data` sends each of serde's many small writes
/// through its newline-splitting writer (the costliest part of a stream, in
/// callgrind). Compact JSON has no raw newline, so the data is one line.
fn json_event(name: &'static str, data: &impl serde::Serialize) -> Event {
    let event = Event::default().event(name);
    match serde_json::to_string(data) {
        Ok(json) => event.data(json),
        Err(_) => event,
    }
}

/// The native stream's `error` event.
fn sse_error(error: &ProviderError) -> Event {
    Event::default().event("error").data(sse_error_json(error))
}

#[cfg(test)]
mod tests {
    use super::near_miss;

    #[test]
    fn near_miss_paths_suggest_the_route_they_were_meant_for() {
        for (path, route) in [
            ("/v1/chat/completions", "/api/v1/chat/completions"),
            ("/chat/completions", "/api/v1/chat/completions"),
            ("/api/chat/completions", "/api/v1/chat/completions"),
            ("/chat", "/api/v1/chat"),
            ("/api/chat", "/api/v1/chat"),
            ("/v1/chat", "/api/v1/chat"),
            ("/v1/models", "/api/v1/models"),
            ("/v1/messages", "/api/v1/messages"),
            ("/models", "/api/v1/models"),
            ("/api/v1/chat/", "/api/v1/chat"),
            ("/api/v1/chat/completions//", "/api/v1/chat/completions"),
            ("/API/V1/Chat", "/api/v1/chat"),
            ("/health/", "/health"),
            ("/health/ready/", "/health/ready"),
            ("/metrics/", "/metrics"),
        ] {
            assert_eq!(near_miss(path), Some(route), "{path}");
        }
    }

    #[test]
    fn other_paths_get_no_hint() {
        let long = format!("/v1/chat/completions{}", "/".repeat(100));
        for path in ["/", "/nope", "/api/v1/nope", "/v2/chat/x", "/chatty", &long] {
            assert_eq!(near_miss(path), None, "{path}");
        }
    }
}
