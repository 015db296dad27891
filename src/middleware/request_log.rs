//! One structured event per request, the HTTP metrics, and the request span
//! that puts `request_id` on every log line of the request. Also resolves the
//! client IP, once, for the rate limiter and the log.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use super::auth::KeyId;
use super::client_ip::{ClientIp, resolve};
use crate::dispatch::Audit;
use crate::error::ErrorInfo;
use crate::state::AppState;

/// The `route` label of requests that matched no route (bounded cardinality).
pub const UNMATCHED_ROUTE: &str = "unmatched";

pub async fn log_request(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE, MatchedPath::as_str)
        .to_owned();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let client_ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| {
            resolve(
                peer.ip(),
                req.headers(),
                &state.config.server.trusted_proxies,
            )
        });
    if let Some(ip) = client_ip {
        req.extensions_mut().insert(ClientIp(ip));
    }

    let span =
        tracing::info_span!("request", request_id = %request_id, method = %method, route = %route);
    let in_flight = InFlight::enter(state.metrics.in_flight().clone());
    let response = next.run(req).instrument(span.clone()).await;
    drop(in_flight);

    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    state
        .metrics
        .http_request(method.as_str(), &route, status, elapsed.as_secs_f64());

    let key_id = response.extensions().get::<KeyId>().map(|k| &*k.0);
    let audit = response.extensions().get::<Audit>();
    let error_code = response.extensions().get::<ErrorInfo>().map(|e| e.code);
    let outcome = error_code.unwrap_or(if audit.is_some_and(|a| a.degraded) {
        "degraded"
    } else {
        "success"
    });
    let _entered = span.enter();
    tracing::info!(
        target: "chatgate::request",
        request_id = %request_id,
        method = %method,
        route = %route,
        status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        client_ip = client_ip.map(tracing::field::display),
        key_id,
        model = audit.map(|a| &*a.model),
        provider = audit.and_then(|a| a.provider.as_deref()),
        input_tokens = audit.and_then(|a| a.usage).map(|u| u.input_tokens),
        output_tokens = audit.and_then(|a| a.usage).map(|u| u.output_tokens),
        degraded = audit.map(|a| a.degraded),
        outcome,
        "request"
    );
    response
}

/// Holds one unit of `chatgate_in_flight_requests`; released on drop, so a
/// request whose client leaves (its future dropped mid-way) is released too.
struct InFlight(metrics::Gauge);

impl InFlight {
    fn enter(gauge: metrics::Gauge) -> Self {
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}
