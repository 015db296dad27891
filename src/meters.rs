//! Prometheus metrics: the contract's names as consts, one recorder per app
//! (so tests in one process never share counters), rendered for `/metrics`.
//! Named `meters` so that `metrics::` always means the `metrics` crate.

use std::borrow::Cow;
use std::hash::BuildHasher;
use std::sync::{Arc, PoisonError, RwLock};

use hashbrown::HashTable;

use metrics::{Counter, Gauge, Key, Label, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::chat::Usage;
use crate::context::Outcome;

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
pub const TRACE_SPANS_DROPPED: &str = "chatgate_trace_spans_dropped_total";

/// Trace spans dropped in this process (the span exporter is one per
/// process, unlike the recorders): counted by `otel`, shown by [`Metrics::render`].
pub static TRACE_SPANS_DROPPED_COUNT: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);
// Rollout (issue 15).
pub const CONFIG_RELOADS: &str = "chatgate_config_reloads_total";
pub const CONFIG_INFO: &str = "chatgate_config_info";
// Cost control.
pub const COST_USD: &str = "chatgate_cost_usd_total";
pub const BUDGET_USED: &str = "chatgate_budget_used_ratio";
pub const BUDGET_EXCEEDED: &str = "chatgate_budget_exceeded_total";
pub const CACHE_REQUESTS: &str = "chatgate_cache_requests_total";
pub const CACHE_ENTRIES: &str = "chatgate_cache_entries";
pub const CACHE_BYTES: &str = "chatgate_cache_bytes";
pub const FAQ_ANSWERS: &str = "chatgate_faq_answers_total";
pub const GUARD_MATCHES: &str = "chatgate_guard_matches_total";
// Canary variants (issue 15).
pub const CHAT_REQUESTS: &str = "chatgate_chat_requests_total";
pub const CHAT_DURATION: &str = "chatgate_chat_duration_seconds";
pub const CANARY_ROLLBACKS: &str = "chatgate_canary_rollbacks_total";
pub const CANARY_PERCENT: &str = "chatgate_canary_percent";
pub const AUDIT_DROPPED: &str = "chatgate_audit_dropped_total";

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

/// Label values known ahead, so the per-request labels need no allocation
/// (routes come static from `routes::paths::label`).
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

/// The label of a status in [`STATUSES`].
fn known_status(status: u16) -> Option<&'static str> {
    STATUSES
        .iter()
        .find(|(code, _)| *code == status)
        .map(|(_, text)| *text)
}

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// USD totals by (provider, upstream model, client key id).
type Costs = std::collections::BTreeMap<(Arc<str>, Arc<str>, String), f64>;

/// The app's metrics. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    in_flight: Gauge,
    state_errors: Counter,
    interactions_dropped: Counter,
    trace_spans_dropped: Counter,
    /// The per-request handles, each registered once per label set.
    handles: Arc<PerRequest>,
    /// The running config's hash: `chatgate_config_info` is rendered from it
    /// (the recorder cannot drop a series, and the old hash must go).
    config_hash: Arc<std::sync::Mutex<String>>,
    /// `chatgate_cost_usd_total` by (provider, model, key id): bounded by config.
    costs: Arc<std::sync::Mutex<Costs>>,
}

impl Metrics {
    /// A fresh recorder: each app gets its own (no `Default`: nothing wants one by accident).
    pub(crate) fn new() -> Self {
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
                TRACE_SPANS_DROPPED,
                "Trace spans dropped: export queue full or the OTLP collector failing",
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
        let trace_spans_dropped =
            recorder.register_counter(&Key::from_static_name(TRACE_SPANS_DROPPED), &METADATA);
        Self {
            recorder: Arc::new(recorder),
            handle,
            in_flight,
            state_errors,
            interactions_dropped,
            trace_spans_dropped,
            handles: Arc::default(),
            config_hash: Arc::default(),
            costs: Arc::default(),
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

    /// One answered request; `method` is a [`method_label`], `route` a bounded label.
    pub fn http_request(
        &self,
        method: &'static str,
        route: Cow<'static, str>,
        status: u16,
        seconds: f64,
    ) {
        let register = |route: SharedString, status: SharedString| {
            let method = SharedString::const_str(method);
            let counter = self.counter(
                HTTP_REQUESTS,
                vec![
                    Label::new("method", method.clone()),
                    Label::new("route", route.clone()),
                    Label::new("status", status),
                ],
            );
            let histogram = self.histogram(
                HTTP_DURATION,
                vec![Label::new("method", method), Label::new("route", route)],
            );
            (counter, histogram)
        };
        // Only labels from the known tables are kept: an unmatched route or an
        // odd status registers through the recorder each time, as it did before.
        let (counter, histogram) = match (&route, known_status(status)) {
            (Cow::Borrowed(route), Some(text)) => {
                self.handles.http.get([method, route, text], || {
                    register(
                        SharedString::const_str(route),
                        SharedString::const_str(text),
                    )
                })
            }
            _ => {
                let route = match route {
                    Cow::Borrowed(known) => SharedString::const_str(known),
                    Cow::Owned(other) => SharedString::from(other),
                };
                let status = known_status(status).map_or_else(
                    || SharedString::from(status.to_string()),
                    SharedString::const_str,
                );
                register(route, status)
            }
        };
        counter.increment(1);
        histogram.record(seconds);
    }

    pub fn upstream_attempt(
        &self,
        provider: &Arc<str>,
        model: &Arc<str>,
        outcome: Outcome,
        seconds: f64,
    ) {
        let outcome = outcome.as_str();
        let (counter, histogram) = self.handles.upstream.get([provider, model, outcome], || {
            let counter = self.counter(
                UPSTREAM_REQUESTS,
                vec![
                    Label::new("provider", SharedString::from(provider.clone())),
                    Label::new("model", SharedString::from(model.clone())),
                    Label::new("outcome", outcome),
                ],
            );
            let histogram = self.histogram(
                UPSTREAM_DURATION,
                vec![
                    Label::new("provider", SharedString::from(provider.clone())),
                    Label::new("model", SharedString::from(model.clone())),
                ],
            );
            (counter, histogram)
        });
        counter.increment(1);
        histogram.record(seconds);
    }

    pub fn upstream_retry(&self, provider: &Arc<str>) {
        let counter = self.handles.retries.get([provider], || {
            self.counter(
                UPSTREAM_RETRIES,
                vec![Label::new("provider", SharedString::from(provider.clone()))],
            )
        });
        counter.increment(1);
    }

    pub fn fallback(&self, model: &Arc<str>) {
        let counter = self.handles.fallbacks.get([model], || {
            self.counter(
                FALLBACKS,
                vec![Label::new("model", SharedString::from(model.clone()))],
            )
        });
        counter.increment(1);
    }

    pub fn rate_limited(&self, scope: &'static str) {
        let counter = self.handles.rate_limited.get([scope], || {
            self.counter(RATE_LIMITED, vec![Label::new("scope", scope)])
        });
        counter.increment(1);
    }

    pub fn tokens(&self, provider: &Arc<str>, model: &Arc<str>, usage: Usage) {
        let [input, output] = self.handles.tokens.get([provider, model], || {
            ["input", "output"].map(|kind| {
                self.counter(
                    TOKENS,
                    vec![
                        Label::new("provider", SharedString::from(provider.clone())),
                        Label::new("model", SharedString::from(model.clone())),
                        Label::new("kind", kind),
                    ],
                )
            })
        });
        input.increment(u64::from(usage.input_tokens));
        output.increment(u64::from(usage.output_tokens));
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
        self.trace_spans_dropped
            .absolute(TRACE_SPANS_DROPPED_COUNT.load(std::sync::atomic::Ordering::Relaxed));
        let mut text = self.handle.render();
        self.render_costs(&mut text);
        let hash = self
            .config_hash
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if !hash.is_empty() {
            text.push_str(&format!(
                "# HELP {CONFIG_INFO} The running config, by hash (1 for the running one only)\n\
                 # TYPE {CONFIG_INFO} gauge\n{CONFIG_INFO}{{hash=\"{hash}\"}} 1\n"
            ));
        }
        text
    }

    // Rollout (issue 15): config reloads and the running config's hash.

    /// One reload attempt; `result` is `success` or `error`.
    pub fn config_reload(&self, result: &'static str) {
        self.counter(CONFIG_RELOADS, vec![Label::new("result", result)])
            .increment(1);
    }

    /// `chatgate_config_info{hash}` = 1 for `hash` only (a hex digest).
    pub fn set_config_hash(&self, hash: &str) {
        *self
            .config_hash
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = hash.to_owned();
    }

    /// Drains histogram samples into their buckets; called on a timer.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}

/// Cost control: spend, budgets, the response cache and FAQ answers. Every
/// label set is bounded: providers, models, configured key ids, FAQ rules.
impl Metrics {
    /// `cost` USD of one answer; `key_id` is a configured key's id (`none` without auth).
    pub fn cost(
        &self,
        provider: &Arc<str>,
        model: &Arc<str>,
        key_id: Option<&Arc<str>>,
        cost: f64,
    ) {
        let key = (
            provider.clone(),
            model.clone(),
            key_id.map_or_else(|| "none".to_owned(), |k| k.to_string()),
        );
        let mut costs = self
            .costs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *costs.entry(key).or_insert(0.0) += cost;
    }

    /// `chatgate_cost_usd_total` in the text format: the exporter's counters
    /// count whole numbers, and a USD total needs fractions.
    fn render_costs(&self, out: &mut String) {
        use std::fmt::Write;
        let costs = self
            .costs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if costs.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "# HELP {COST_USD} USD spent on answers, by provider, upstream model and client key id"
        );
        let _ = writeln!(out, "# TYPE {COST_USD} counter");
        for ((provider, model, key), usd) in costs.iter() {
            let _ = writeln!(
                out,
                "{COST_USD}{{provider=\"{}\",model=\"{}\",key_id=\"{}\"}} {usd}",
                escape(provider),
                escape(model),
                escape(key)
            );
        }
    }

    /// `scope`: `gateway` or `key:<id>`; `window`: `day` or `month`.
    pub fn budget_used(&self, scope: &str, window: &'static str, ratio: f64) {
        let gauge = self.handles.budget_used.get([scope, window], || {
            let labels = vec![
                Label::new("scope", scope.to_owned()),
                Label::new("window", window),
            ];
            self.recorder
                .register_gauge(&Key::from_parts(BUDGET_USED, labels), &METADATA)
        });
        gauge.set(ratio);
    }

    /// `scope`: `gateway`, `key` or `user`.
    pub fn budget_exceeded(&self, scope: &'static str) {
        self.counter(BUDGET_EXCEEDED, vec![Label::new("scope", scope)])
            .increment(1);
    }

    /// `result`: `hit`, `miss` or `bypass`.
    pub fn cache_request(&self, model: &Arc<str>, result: &'static str) {
        let counter = self.handles.cache.get([model, result], || {
            let labels = vec![
                Label::new("model", SharedString::from(model.clone())),
                Label::new("result", result),
            ];
            self.counter(CACHE_REQUESTS, labels)
        });
        counter.increment(1);
    }

    /// The memory cache's size now.
    pub fn cache_size(&self, entries: u64, bytes: u64) {
        for (name, v) in [(CACHE_ENTRIES, entries), (CACHE_BYTES, bytes)] {
            self.recorder
                .register_gauge(&Key::from_static_name(name), &METADATA)
                .set(v as f64);
        }
    }

    pub fn faq_answer(&self, rule: &Arc<str>) {
        let counter = self.handles.faq.get([rule], || {
            self.counter(
                FAQ_ANSWERS,
                vec![Label::new("rule", SharedString::from(rule.clone()))],
            )
        });
        counter.increment(1);
    }

    // Canary variants: labels bounded by the configured models.

    /// One chat that ended (`outcome`: success, degraded, error), streams at their end.
    pub fn chat(
        &self,
        model: &Arc<str>,
        variant: &'static str,
        outcome: &'static str,
        seconds: f64,
    ) {
        let (counter, histogram) = self.handles.chat.get([model, variant, outcome], || {
            let counter = self.counter(
                CHAT_REQUESTS,
                vec![
                    Label::new("model", SharedString::from(model.clone())),
                    Label::new("variant", variant),
                    Label::new("outcome", outcome),
                ],
            );
            let histogram = self.histogram(
                CHAT_DURATION,
                vec![
                    Label::new("model", SharedString::from(model.clone())),
                    Label::new("variant", variant),
                ],
            );
            (counter, histogram)
        });
        counter.increment(1);
        histogram.record(seconds);
    }

    /// An audit line dropped because the writer queue was full.
    pub fn audit_dropped(&self) {
        self.counter(AUDIT_DROPPED, Vec::new()).increment(1);
    }

    /// `chatgate_canary_rollbacks_total{model}`, registered (at 0) when the canary is built.
    pub fn canary_rollbacks(&self, model: &str) -> Counter {
        let labels = vec![Label::new("model", model.to_owned())];
        self.counter(CANARY_ROLLBACKS, labels)
    }

    /// `chatgate_canary_percent{model}`: the effective percent.
    pub fn canary_percent(&self, model: &str) -> Gauge {
        self.recorder.register_gauge(
            &Key::from_parts(CANARY_PERCENT, vec![Label::new("model", model.to_owned())]),
            &METADATA,
        )
    }
}

/// Label sets past this many in one [`Handles`] are not kept: the labels are
/// bounded by the config already, this bounds them whatever a bug lets in.
const MAX_LABEL_SETS: usize = 4096;

/// The handles of one metric call, each registered once per label set and
/// found again by the label values, borrowed: the recorder's own lookup
/// builds a `Key` (a label `Vec`, an `Arc` clone per label) on every call,
/// about half of the ≈ 9 % of a request's instructions its profile row showed
/// (BENCHMARKS.md, "Metric handles"). A label set seen for the
/// first time (a model added by a reload, say) registers and is kept; past
/// [`MAX_LABEL_SETS`] it registers on every call, as before.
struct Handles<const N: usize, H> {
    hasher: hashbrown::DefaultHashBuilder,
    table: RwLock<HashTable<([Box<str>; N], H)>>,
}

impl<const N: usize, H> Default for Handles<N, H> {
    fn default() -> Self {
        Self {
            hasher: hashbrown::DefaultHashBuilder::default(),
            table: RwLock::new(HashTable::new()),
        }
    }
}

impl<const N: usize, H: Clone> Handles<N, H> {
    /// The handle of `labels`, from `register` the first time.
    fn get<S: AsRef<str>>(&self, labels: [S; N], register: impl FnOnce() -> H) -> H {
        let labels = labels.each_ref().map(AsRef::as_ref);
        let hash = self.hash(&labels);
        let same = |(kept, _): &([Box<str>; N], H)| kept.iter().map(AsRef::as_ref).eq(labels);
        if let Some((_, handle)) = self.read().find(hash, same) {
            return handle.clone();
        }
        // Registered with no lock of ours held: the recorder takes its own.
        let handle = register();
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        if table.len() < MAX_LABEL_SETS && table.find(hash, same).is_none() {
            table.insert_unique(
                hash,
                (labels.map(Box::from), handle.clone()),
                |(kept, _)| self.hash(&kept.each_ref().map(AsRef::as_ref)),
            );
        }
        handle
    }

    fn hash(&self, labels: &[&str; N]) -> u64 {
        self.hasher.hash_one(labels)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashTable<([Box<str>; N], H)>> {
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The handles of every metric a request pays for, one [`Handles`] per call.
#[derive(Default)]
struct PerRequest {
    /// (method, route, status): the request counter and latency histogram.
    http: Handles<3, (Counter, metrics::Histogram)>,
    /// (provider, model, outcome): the attempt counter and latency histogram.
    upstream: Handles<3, (Counter, metrics::Histogram)>,
    /// (provider, model): the input and output token counters.
    tokens: Handles<2, [Counter; 2]>,
    /// (model, variant, outcome): the chat counter and duration histogram.
    chat: Handles<3, (Counter, metrics::Histogram)>,
    /// (model, result).
    cache: Handles<2, Counter>,
    /// (scope, window).
    budget_used: Handles<2, Gauge>,
    retries: Handles<1, Counter>,
    fallbacks: Handles<1, Counter>,
    rate_limited: Handles<1, Counter>,
    faq: Handles<1, Counter>,
}

/// A label value in the text format: `\\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[test]
    fn a_label_set_registers_once_and_is_found_again_by_its_values() {
        let handles: Handles<2, Counter> = Handles::default();
        let registered = Cell::new(0);
        let register = || {
            registered.set(registered.get() + 1);
            Counter::noop()
        };
        let model: Arc<str> = Arc::from("m1");
        let _ = handles.get([&*model, "hit"], register);
        let _ = handles.get([String::from("m1"), String::from("hit")], register);
        assert_eq!(registered.get(), 1, "the same values find the kept handle");
        let _ = handles.get(["m1", "miss"], register);
        let _ = handles.get(["m2", "hit"], register);
        assert_eq!(registered.get(), 3, "other values are other label sets");
    }

    #[test]
    fn past_the_bound_a_label_set_registers_on_every_call_and_is_not_kept() {
        let handles: Handles<1, Counter> = Handles::default();
        for n in 0..MAX_LABEL_SETS {
            let _ = handles.get([n.to_string()], Counter::noop);
        }
        let registered = Cell::new(0);
        for _ in 0..3 {
            let _ = handles.get(["one too many"], || {
                registered.set(registered.get() + 1);
                Counter::noop()
            });
        }
        assert_eq!(registered.get(), 3);
        assert_eq!(handles.read().len(), MAX_LABEL_SETS);
    }

    #[test]
    fn kept_handles_count_into_the_series_the_recorder_renders_and_odd_labels_still_count() {
        let metrics = Metrics::new();
        for _ in 0..2 {
            metrics.http_request("GET", Cow::Borrowed("/v1/models"), 200, 0.001);
        }
        metrics.http_request("GET", Cow::Borrowed("/v1/models"), 418, 0.001);
        metrics.http_request("GET", Cow::Owned("/odd".into()), 200, 0.001);
        metrics.http_request("GET", Cow::Owned("/odd".into()), 200, 0.001);
        let (p, m): (Arc<str>, Arc<str>) = (Arc::from("p"), Arc::from("m"));
        let usage = Usage {
            input_tokens: 3,
            output_tokens: 4,
        };
        metrics.tokens(&p, &m, usage);
        metrics.tokens(&p, &m, usage);
        metrics.upkeep();
        let text = metrics.render();
        for line in [
            r#"chatgate_http_requests_total{method="GET",route="/v1/models",status="200"} 2"#,
            r#"chatgate_http_requests_total{method="GET",route="/v1/models",status="418"} 1"#,
            r#"chatgate_http_requests_total{method="GET",route="/odd",status="200"} 2"#,
            r#"chatgate_http_request_duration_seconds_count{method="GET",route="/v1/models"} 3"#,
            r#"chatgate_tokens_total{provider="p",model="m",kind="input"} 6"#,
            r#"chatgate_tokens_total{provider="p",model="m",kind="output"} 8"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
