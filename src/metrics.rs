//! Prometheus metrics: the contract's names as consts, one recorder per app
//! (so tests in one process never share counters), rendered for `/metrics`.

use std::sync::Arc;

use metrics::{Counter, Gauge, Key, Label, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::chat::Usage;

pub const HTTP_REQUESTS: &str = "chatgate_http_requests_total";
pub const HTTP_DURATION: &str = "chatgate_http_request_duration_seconds";
pub const IN_FLIGHT: &str = "chatgate_in_flight_requests";
pub const UPSTREAM_REQUESTS: &str = "chatgate_upstream_requests_total";
pub const UPSTREAM_DURATION: &str = "chatgate_upstream_request_duration_seconds";
pub const UPSTREAM_RETRIES: &str = "chatgate_upstream_retries_total";
pub const FALLBACKS: &str = "chatgate_fallbacks_total";
pub const CIRCUIT_STATE: &str = "chatgate_circuit_breaker_state";
pub const RATE_LIMITED: &str = "chatgate_rate_limited_total";
pub const TOKENS: &str = "chatgate_tokens_total";
pub const STATE_ERRORS: &str = "chatgate_state_errors_total";
pub const INTERACTIONS_DROPPED: &str = "chatgate_interaction_log_dropped_total";
pub const GUARD_MATCHES: &str = "chatgate_guard_matches_total";

/// Histogram buckets sized for LLM calls: 10 ms to 120 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
];

/// The `method` label of any method outside the standard seven: a client
/// can invent methods, and each would otherwise be a new series.
pub const OTHER_METHOD: &str = "other";

/// The bounded `method` label (and log field) of a request.
pub fn method_label(method: &http::Method) -> &'static str {
    use http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => OTHER_METHOD,
    }
}

/// Label values known ahead, so the per-request labels need no allocation.
const ROUTES: &[&str] = &[
    "/api/v1/chat",
    "/api/v1/chat/completions",
    "/api/v1/models",
    "/health",
    "/health/ready",
    "/metrics",
    crate::middleware::request_log::UNMATCHED_ROUTE,
];
const STATUSES: &[(u16, &str)] = &[
    (200, "200"),
    (204, "204"),
    (400, "400"),
    (401, "401"),
    (404, "404"),
    (405, "405"),
    (413, "413"),
    (415, "415"),
    (429, "429"),
    (500, "500"),
    (502, "502"),
    (503, "503"),
    (504, "504"),
];

fn static_or_owned(value: &str, known: &[&'static str]) -> SharedString {
    match known.iter().find(|k| **k == value) {
        Some(k) => SharedString::const_str(k),
        None => SharedString::from(value.to_owned()),
    }
}

fn status_label(status: u16) -> SharedString {
    match STATUSES.iter().find(|(code, _)| *code == status) {
        Some((_, text)) => SharedString::const_str(text),
        None => SharedString::from(status.to_string()),
    }
}

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// The app's metrics. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    in_flight: Gauge,
    state_errors: Counter,
    interactions_dropped: Counter,
}

impl Metrics {
    pub fn new() -> Self {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_duration_seconds".into()), LATENCY_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        for (name, help) in [
            (
                HTTP_REQUESTS,
                "HTTP requests answered, by method, route template and status",
            ),
            (
                UPSTREAM_REQUESTS,
                "Upstream attempts by provider, upstream model and outcome",
            ),
            (
                UPSTREAM_RETRIES,
                "Retries of an upstream attempt on the same target",
            ),
            (
                FALLBACKS,
                "Moves past a failed target, by client-facing model",
            ),
            (
                RATE_LIMITED,
                "Requests refused by a rate limit, by scope (ip, key)",
            ),
            (
                TOKENS,
                "Tokens counted by providers, by kind (input, output)",
            ),
            (
                STATE_ERRORS,
                "Failed calls to the shared state backend (Redis)",
            ),
            (
                INTERACTIONS_DROPPED,
                "Interaction-log lines dropped because the writer queue was full",
            ),
            (
                GUARD_MATCHES,
                "Guard rule matches (and system-prompt leaks), by rule and action (block, flag)",
            ),
        ] {
            recorder.describe_counter(name.into(), None, help.into());
        }
        recorder.describe_histogram(
            HTTP_DURATION.into(),
            Some(Unit::Seconds),
            "HTTP request latency to response headers".into(),
        );
        recorder.describe_histogram(
            UPSTREAM_DURATION.into(),
            Some(Unit::Seconds),
            "Latency of one upstream attempt".into(),
        );
        recorder.describe_gauge(IN_FLIGHT.into(), None, "Requests being served now".into());
        recorder.describe_gauge(
            CIRCUIT_STATE.into(),
            None,
            "Circuit breaker state: 0 closed, 1 half-open, 2 open".into(),
        );

        let in_flight = recorder.register_gauge(&Key::from_static_name(IN_FLIGHT), &METADATA);
        in_flight.set(0.0);
        let state_errors =
            recorder.register_counter(&Key::from_static_name(STATE_ERRORS), &METADATA);
        let interactions_dropped =
            recorder.register_counter(&Key::from_static_name(INTERACTIONS_DROPPED), &METADATA);
        Self {
            recorder: Arc::new(recorder),
            handle,
            in_flight,
            state_errors,
            interactions_dropped,
        }
    }

    fn counter(&self, name: &'static str, labels: Vec<Label>) -> Counter {
        self.recorder
            .register_counter(&Key::from_parts(name, labels), &METADATA)
    }

    fn histogram(&self, name: &'static str, labels: Vec<Label>) -> metrics::Histogram {
        self.recorder
            .register_histogram(&Key::from_parts(name, labels), &METADATA)
    }

    pub fn in_flight(&self) -> &Gauge {
        &self.in_flight
    }

    /// One answered request; `method` is a [`method_label`].
    pub fn http_request(&self, method: &'static str, route: &str, status: u16, seconds: f64) {
        let (method, route) = (
            SharedString::const_str(method),
            static_or_owned(route, ROUTES),
        );
        let labels = vec![
            Label::new("method", method.clone()),
            Label::new("route", route.clone()),
            Label::new("status", status_label(status)),
        ];
        self.counter(HTTP_REQUESTS, labels).increment(1);
        self.histogram(
            HTTP_DURATION,
            vec![Label::new("method", method), Label::new("route", route)],
        )
        .record(seconds);
    }

    pub fn upstream_attempt(
        &self,
        provider: &Arc<str>,
        model: &Arc<str>,
        outcome: &'static str,
        seconds: f64,
    ) {
        let labels = vec![
            Label::new("provider", SharedString::from(provider.clone())),
            Label::new("model", SharedString::from(model.clone())),
            Label::new("outcome", outcome),
        ];
        self.counter(UPSTREAM_REQUESTS, labels).increment(1);
        let labels = vec![
            Label::new("provider", SharedString::from(provider.clone())),
            Label::new("model", SharedString::from(model.clone())),
        ];
        self.histogram(UPSTREAM_DURATION, labels).record(seconds);
    }

    pub fn upstream_retry(&self, provider: &Arc<str>) {
        self.counter(
            UPSTREAM_RETRIES,
            vec![Label::new("provider", SharedString::from(provider.clone()))],
        )
        .increment(1);
    }

    pub fn fallback(&self, model: &Arc<str>) {
        self.counter(
            FALLBACKS,
            vec![Label::new("model", SharedString::from(model.clone()))],
        )
        .increment(1);
    }

    pub fn rate_limited(&self, scope: &'static str) {
        self.counter(RATE_LIMITED, vec![Label::new("scope", scope)])
            .increment(1);
    }

    pub fn tokens(&self, provider: &Arc<str>, model: &Arc<str>, usage: Usage) {
        for (kind, n) in [
            ("input", usage.input_tokens),
            ("output", usage.output_tokens),
        ] {
            let labels = vec![
                Label::new("provider", SharedString::from(provider.clone())),
                Label::new("model", SharedString::from(model.clone())),
                Label::new("kind", kind),
            ];
            self.counter(TOKENS, labels).increment(u64::from(n));
        }
    }

    pub fn state_error(&self) {
        self.state_errors.increment(1);
    }

    pub fn interaction_dropped(&self) {
        self.interactions_dropped.increment(1);
    }

    /// The counter of one guard rule (`rule` names come from the config, so
    /// the series are bounded by it); registered once, at start.
    pub fn guard_match(&self, rule: &str, action: &'static str) -> Counter {
        self.counter(
            GUARD_MATCHES,
            vec![
                Label::new("rule", rule.to_owned()),
                Label::new("action", action),
            ],
        )
    }

    /// The gauge of one provider's circuit breaker.
    pub fn circuit_gauge(&self, provider: &str) -> Gauge {
        self.recorder.register_gauge(
            &Key::from_parts(
                CIRCUIT_STATE,
                vec![Label::new("provider", provider.to_owned())],
            ),
            &METADATA,
        )
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Drains histogram samples into their buckets; called on a timer.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
