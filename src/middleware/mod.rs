//! The one middleware stack, top to bottom, with why each layer is where it is.
//!
//! Concurrency caveats, layer by layer (what each one counts or bounds):
//! - **Request id and span.** The id is the client's `x-request-id` when it
//!   is valid, else a fresh UUID (layers 2–4), set before anything logs; the
//!   `request` span is opened by `request_log` from that header, and a
//!   stream's body is polled inside it (`body_guard`), so every line of a
//!   request carries its id, even lines written after the headers went out.
//! - **In-flight gauge** (`chatgate_in_flight_requests`, `request_log`):
//!   counts a request from the moment it reaches the log layer until its
//!   response body ends or is dropped, streams included. It sits outside the
//!   cap, so it also counts requests the cap refuses (for as long as their
//!   503 takes) and CORS preflights (answered by layer 8).
//! - **Concurrency cap** (`server.max_concurrent_requests`, `concurrency`):
//!   a permit is taken without waiting (503 `overloaded` when none is left)
//!   and moves into the response body, so a stream holds it until its last
//!   byte or until its client leaves, not only until its headers are sent.
//!   Nothing queues: the cap bounds work in progress, not arrivals.
//! - **Timeout** (`server.request_timeout`, tower's `timeout`): bounds the
//!   handler's future, i.e. the time to the response *headers* (504). It does
//!   not bound a stream's body: a stream is bounded by its pump's deadline
//!   (`resilience::stream::guard`, the same `request_timeout` counted from the
//!   request's arrival), which holds even when the client stops reading.
//!   `dispatch` counts the same deadline from the arrival, stamped above this
//!   layer, so for a chat its own timeout normally answers first (also 504)
//!   and the interaction log still gets its line.

mod api_guards;
pub mod auth;
pub mod body_guard;
pub mod client_ip;
pub mod concurrency;
pub mod error_body;
pub mod header_limit;
pub mod rate_limit;
pub mod request_id;
pub mod request_log;

use std::any::Any;
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use tower::{BoxError, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;

use crate::config::Origin;
use crate::error::ApiError;
use crate::headers;
use crate::state::AppState;

/// HSTS for production: two years, subdomains included.
const HSTS: HeaderValue = HeaderValue::from_static("max-age=63072000; includeSubDomains");
/// Set unless the route set its own (the playground and the docs have their CSP).
const SECURITY_HEADERS: [(header::HeaderName, HeaderValue); 4] = [
    (
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ),
    (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    (
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    ),
    (
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    ),
];
/// How long browsers may cache a CORS preflight answer.
const CORS_MAX_AGE: Duration = Duration::from_secs(600);

/// Wraps every route (and the fallback) in the stack, outermost first.
pub fn stack(router: Router<AppState>, state: &AppState) -> Router<AppState> {
    let server = &state.config.server;
    let layers = ServiceBuilder::new()
        // 1. Mark credentials sensitive first, so nothing below can print them.
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            headers::API_KEY,
            header::COOKIE,
        ]))
        // 2–4. Request id: drop an invalid incoming one, set a UUID when missing,
        //      and echo it on every response (errors included).
        .layer(axum::middleware::map_request(request_id::drop_invalid))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(PropagateRequestIdLayer::x_request_id())
        // 5–6. The client IP, resolved once (trusted proxies' X-Forwarded-For)
        //    for the log line and the per-IP limit below; then one log event +
        //    metrics per request, and the scope carrying request_id; outside
        //    everything that can answer, so it sees the final status. Holds
        //    the in-flight gauge until the response body ends.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_log::log_request,
        ))
        // 7. Security headers on every response, errors and preflights too:
        //    set by `request_log` above (`security_headers`), one pass over
        //    the response's map instead of a layer per header.
        // 8. CORS answers preflights itself, before auth; absent when no origin is configured.
        .option_layer(cors(&server.cors_allowed_origins))
        // 9–10. Every error below becomes the contract's JSON with the request
        //     id; headers over MAX_HEADER_BYTES get a 431 here, before the body
        //     limit and the handlers (nothing reads such a request).
        .layer(axum::middleware::from_fn(error_body::render_errors))
        // 11. A panic becomes a JSON 500 and the server lives on.
        .layer(CatchPanicLayer::custom(panic_response))
        // 12. Timeout to the response headers (504; a stream's body is bounded
        //     by its pump's deadline instead), then the concurrency cap (503 at
        //     once, nothing queued), whose permit a stream holds until its body ends.
        .layer(HandleErrorLayer::new(timeout_error))
        .timeout(server.request_timeout)
        .layer(axum::middleware::from_fn_with_state(
            concurrency::permits(server.max_concurrent_requests),
            concurrency::limit,
        ))
        // 13. Body limit: refuse a declared oversize body before reading it (413);
        //     axum's own smaller default limit is replaced by ours.
        .layer(RequestBodyLimitLayer::new(server.max_body_bytes))
        .layer(DefaultBodyLimit::disable());
    router.layer(layers)
}

/// The `/api/v1` guards, outermost first: per-IP limit (so floods without a
/// key are limited too) → auth → per-key limit. Applied with `route_layer`,
/// so unknown paths stay 404.
pub fn api_guards(router: Router<AppState>, state: &AppState) -> Router<AppState> {
    router.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        api_guards::guard,
    ))
}

/// The security headers of layer 7 on `headers`: a route's own are kept,
/// HSTS only in production (and always ours).
pub fn security_headers(headers: &mut HeaderMap, production: bool) {
    for (name, value) in SECURITY_HEADERS {
        headers.entry(name).or_insert(value);
    }
    if production {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, HSTS);
    }
}

fn cors(origins: &[Origin]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins.iter().map(|o| o.header_value().clone()).collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            // Whatever the preflight asks for: the official JS SDKs send
            // `x-stainless-*` headers, and the origin list is what guards us.
            .allow_headers(AllowHeaders::mirror_request())
            .expose_headers([
                headers::REQUEST_ID,
                header::RETRY_AFTER,
                headers::DEGRADED,
                headers::CACHE,
                headers::COST_USD,
            ])
            .max_age(CORS_MAX_AGE),
    )
}

fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("");
    tracing::error!(panic = detail, "handler panicked");
    ApiError::Internal.into_response()
}

async fn timeout_error(err: BoxError) -> ApiError {
    if err.is::<tower::timeout::error::Elapsed>() {
        ApiError::Timeout
    } else {
        tracing::error!(error = %err, "middleware error");
        ApiError::Internal
    }
}
