//! One structured event per request, the HTTP metrics, and the request's
//! log scope that puts `request_id` on every log line of the request (a
//! stream's too: its body is polled inside the scope). Also stamps the request's arrival
//! and hands the handlers a `StreamReport` to fill.
//!
//! The metrics are taken when the headers go out; the log line when the
//! response body ends (or is dropped), so a stream's line has its final
//! outcome, total latency and tokens. The in-flight gauge is held as long.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tokio::time::Instant;

use super::{body_guard, client_ip};
use crate::config::Profile;
use crate::context::{
    Arrival, AuthFailure, EndUser, ErrorInfo, KeyId, Outcome, Served, StreamReport,
};
use crate::headers;
use crate::meters::method_label;
use crate::routes::paths;
use crate::state::AppState;
use crate::telemetry::Scope;

pub async fn log_request(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method());
    let route = paths::label(
        req.extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str),
    );
    let request_id = headers::request_id(req.headers()).unwrap_or("").to_owned();
    let client_ip = client_ip::resolve_once(&mut req, &state.config.server.trusted_proxies);
    let report = Arc::new(StreamReport::default());
    req.extensions_mut().insert(Arrival(started));
    req.extensions_mut().insert(report.clone());

    let otel_span = crate::otel::enabled()
        .then(|| crate::otel::server_span(req.headers(), method, &route, &request_id));
    let scope = Scope::request(&request_id, method, &route, otel_span);
    let in_flight = InFlight::enter(state.metrics.in_flight().clone());
    let mut response = scope.clone().instrument(next.run(req)).await;
    super::security_headers(
        response.headers_mut(),
        state.config.profile == Profile::Production,
    );

    let status = response.status().as_u16();
    crate::otel::record_status(scope.span(), status);
    state.metrics.http_request(
        method,
        route.clone(),
        status,
        started.elapsed().as_secs_f64(),
    );

    let line = Line {
        started,
        request_id,
        method,
        route,
        status,
        client_ip,
        key_id: response.extensions().get::<KeyId>().map(|k| k.0.clone()),
        served: response.extensions().get::<Served>().cloned(),
        user_hash: response
            .extensions()
            .get::<EndUser>()
            .map(|u| u.hash.clone()),
        auth_failure: response.extensions().get::<AuthFailure>().map(|f| f.0),
        error_code: response.extensions().get::<ErrorInfo>().map(|e| e.code),
        report,
        scope: scope.clone(),
        _in_flight: in_flight,
    };
    body_guard::hold(response, line, scope)
}

/// The request's log line, written when dropped: with the response body.
struct Line {
    started: Instant,
    request_id: String,
    method: &'static str,
    route: Cow<'static, str>,
    status: u16,
    client_ip: Option<IpAddr>,
    key_id: Option<Arc<str>>,
    served: Option<Served>,
    /// A JWT's end user, only as `user_hash` (never the subject).
    user_hash: Option<Arc<str>>,
    /// Why a 401 was answered (`expired`, `unknown_key`, …).
    auth_failure: Option<&'static str>,
    error_code: Option<&'static str>,
    report: Arc<StreamReport>,
    scope: Scope,
    /// Released after the line is written, with the body.
    _in_flight: InFlight,
}

impl Drop for Line {
    fn drop(&mut self) {
        let audit = self.served.as_ref();
        let stream = self.report.stream_end();
        let outcome = match (self.error_code, stream) {
            (Some(code), _) => Outcome::of_error(code),
            (None, Some(Some(end))) => end.outcome,
            // The client left before the stream ended.
            (None, Some(None)) => Outcome::Cancelled,
            (None, None) => audit.map_or(Outcome::Success, Served::outcome),
        };
        let usage = stream
            .flatten()
            .and_then(|end| end.usage)
            .or(audit.and_then(|a| a.usage));
        let cost_usd = stream
            .flatten()
            .and_then(|end| end.cost_usd)
            .or(audit.and_then(Served::cost_usd));
        let flags = self.report.flags.joined();
        self.scope.in_scope(|| {
            tracing::info!(
                target: "chatgate::request",
                request_id = %self.request_id,
                method = self.method,
                route = %self.route,
                status = self.status,
                latency_ms = self.started.elapsed().as_secs_f64() * 1000.0,
                client_ip = self.client_ip.map(tracing::field::display),
                key_id = self.key_id.as_deref(),
                user_hash = self.user_hash.as_deref(),
                auth_failure = self.auth_failure,
                model = audit.map(|a| &*a.model),
                provider = audit.and_then(|a| a.provider.as_deref()),
                input_tokens = usage.map(|u| u.input_tokens),
                output_tokens = usage.map(|u| u.output_tokens),
                cost_usd,
                degraded = audit.map(|a| a.degraded),
                flags = flags.as_deref(),
                outcome = outcome.as_str(),
                "request"
            )
        });
    }
}

/// Holds one unit of `chatgate_in_flight_requests`; released on drop, so a
/// request whose client leaves (its future or body dropped mid-way) is released too.
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
