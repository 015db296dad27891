//! OpenTelemetry traces (`[tracing]`): a server span per request and a
//! client span per upstream attempt (GenAI conventions), W3C `traceparent`
//! continued from the client and sent upstream, exported as OTLP/HTTP
//! protobuf through a bounded queue ([`export`]).
//!
//! Off (the default) means no OpenTelemetry layer at all: every hook here
//! starts with one relaxed atomic load and does nothing more. Spans carry
//! names, routes, models, token counts and error kinds, never message text.

mod export;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, Tracer};
use tracing::field::Empty;
use tracing::{Instrument, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::chat::Usage;
use crate::config::{ProviderKind, TracingConfig};

pub use export::{Drain, QUEUE_CAPACITY};

/// The request log's label for a method outside the standard seven
/// (`metrics::OTHER_METHOD`, not imported: `metrics` depends on much of the crate).
const OTHER_METHOD: &str = "other";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are being made (set once, by [`start`]).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// A running exporter: the tracer for the subscriber's layer, and the drain
/// to finish at shutdown.
pub struct Traces {
    pub tracer: Tracer,
    pub drain: Drain,
    /// Kept so the processor lives as long as the process serves.
    _provider: SdkTracerProvider,
}

/// Starts the exporter when `otlp_endpoint` is set; `None` when tracing is
/// off. Must run inside the tokio runtime (the export task is spawned on it).
pub fn start(config: &TracingConfig) -> Result<Option<Traces>, String> {
    let Some(url) = config.otlp_endpoint.traces_url() else {
        return Ok(None);
    };
    let client = reqwest::Client::builder()
        .timeout(export::EXPORT_TIMEOUT)
        .build()
        .map_err(|e| format!("cannot build the OTLP HTTP client: {e}"))?;
    let resource = Resource::builder_empty()
        .with_service_name(config.service_name.clone())
        .build();
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(export::Client(client))
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(url.as_str())
        .with_timeout(export::EXPORT_TIMEOUT)
        .build()
        .map_err(|e| format!("cannot build the OTLP exporter for {url}: {e}"))?;
    // Our processor does not pass the resource on; the exporter needs it for service.name.
    opentelemetry_sdk::trace::SpanExporter::set_resource(&mut exporter, &resource);
    let (queue, drain) = export::start(exporter);
    let provider = SdkTracerProvider::builder()
        .with_span_processor(queue)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.sample_ratio.get(),
        ))))
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("chatgate");
    ENABLED.store(true, Ordering::Relaxed);
    Ok(Some(Traces {
        tracer,
        drain,
        _provider: provider,
    }))
}

/// The `tracing` layer that turns our spans (not events, not other crates'
/// spans) into OpenTelemetry spans.
pub fn layer<S>(tracer: Tracer) -> impl tracing_subscriber::Layer<S> + Send + Sync
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
{
    use tracing_subscriber::Layer as _;
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_location(false)
        .with_target(false)
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            meta.is_span() && meta.target().starts_with("chatgate")
        }))
}

/// The request's span when tracing is on: the request log's fields plus the
/// HTTP server attributes, continuing the client's `traceparent` when valid.
pub fn server_span(
    headers: &HeaderMap,
    method: &'static str,
    route: &str,
    request_id: &str,
) -> Span {
    let otel_method = if method == OTHER_METHOD {
        "_OTHER"
    } else {
        method
    };
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method,
        route = %route,
        otel.name = %format_args!("{otel_method} {route}"),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = otel_method,
        http.route = %route,
        http.response.status_code = Empty,
        chatgate.request_id = %request_id,
    );
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    // An absent or malformed traceparent extracts as no span: a new trace starts.
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    span
}

/// Puts the answer's status on the request's span.
pub fn record_status(span: &Span, status: u16) {
    if !enabled() {
        return;
    }
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "error");
    }
}

/// Adds the current span's `traceparent` to an upstream request's headers.
pub fn inject(headers: &mut HeaderMap) {
    if !enabled() {
        return;
    }
    let cx = Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
}

/// `gen_ai.system` of a provider kind.
fn system(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Openai => "openai",
        ProviderKind::Anthropic => "anthropic",
        ProviderKind::Mock => "mock",
    }
}

/// One upstream attempt, as its span names it.
pub struct Attempt<'a> {
    pub kind: ProviderKind,
    pub provider: &'a str,
    pub model: &'a str,
    /// 1 for the first try on a target, 2 for its first retry, ...
    pub number: u32,
}

/// An attempt's failure, as `error.type` says it.
pub trait ErrorType {
    fn error_type(&self) -> std::borrow::Cow<'static, str>;
}

/// Runs one upstream attempt inside its span (when tracing is on) and puts
/// its outcome on it: tokens, or the error's type.
pub async fn attempt<T, E: ErrorType>(
    target: Attempt<'_>,
    usage: fn(&T) -> Option<Usage>,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    if !enabled() {
        return call.await;
    }
    let span = tracing::info_span!(
        "upstream attempt",
        otel.name = %format_args!("chat {}", target.model),
        otel.kind = "client",
        otel.status_code = Empty,
        gen_ai.operation.name = "chat",
        gen_ai.system = system(target.kind),
        gen_ai.request.model = target.model,
        gen_ai.response.model = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        error.type = Empty,
        chatgate.provider = target.provider,
        chatgate.attempt = target.number,
    );
    let result = call.instrument(span.clone()).await;
    match &result {
        Ok(output) => {
            if let Some(usage) = usage(output) {
                span.record("gen_ai.usage.input_tokens", usage.input_tokens);
                span.record("gen_ai.usage.output_tokens", usage.output_tokens);
            }
        }
        Err(error) => {
            span.record("error.type", &*error.error_type());
            span.record("otel.status_code", "error");
        }
    }
    result
}

/// Puts the model an upstream says answered on the attempt's span, from a
/// JSON answer's top-level `model` (a short identifier only).
pub fn response_model(body: &[u8]) {
    if !enabled() {
        return;
    }
    #[derive(serde::Deserialize)]
    struct Answer<'a> {
        #[serde(borrow)]
        model: Option<std::borrow::Cow<'a, str>>,
    }
    let Ok(Answer { model: Some(model) }) = serde_json::from_slice::<Answer>(body) else {
        return;
    };
    let safe = !model.is_empty()
        && model.len() <= 128
        && model
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-:/@".contains(&b));
    if safe {
        Span::current().record("gen_ai.response.model", &*model);
    }
}
