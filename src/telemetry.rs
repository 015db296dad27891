//! Logging: a `tracing` subscriber, pretty or JSON, filtered by `logging.level`
//! unless `RUST_LOG` is set. The writer is injectable so tests can read logs.
//! With tracing on, an OpenTelemetry layer sits beside the log layer, each
//! with its own filter (spans are made whatever the log level). JSON lines
//! come from our own layer (`json_lines`), pretty ones from tracing-subscriber.

mod json_lines;
mod request_scope;

use std::io::IsTerminal;

use opentelemetry_sdk::trace::Tracer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::{EnvFilter, Layer, Registry, layer::SubscriberExt};

use crate::config::{LogFormat, LoggingConfig};
use json_lines::JsonLines;
pub use request_scope::Scope;

/// `RUST_LOG` (when given and valid) wins over the configured level, which
/// the config check has already parsed as a filter.
pub fn filter(config: &LoggingConfig, rust_log: Option<&str>) -> EnvFilter {
    rust_log
        .and_then(|directives| EnvFilter::try_new(directives).ok())
        .unwrap_or_else(|| EnvFilter::new(config.level.as_str()))
}

/// A subscriber writing to `writer`.
pub fn subscriber<W>(
    config: &LoggingConfig,
    rust_log: Option<&str>,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let registry = Registry::default().with(filter(config, rust_log));
    match config.format {
        LogFormat::Json => Box::new(registry.with(JsonLines::new(writer))),
        // Colours only for a terminal: piped into a file or a log collector,
        // escape codes are noise.
        LogFormat::Pretty => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_ansi(std::io::stdout().is_terminal())
                    .with_writer(writer),
            ),
        ),
    }
}

/// A subscriber writing logs to `writer` and spans through `tracer`: the
/// level filter applies to the log layer only.
pub fn subscriber_with_traces<W>(
    config: &LoggingConfig,
    rust_log: Option<&str>,
    writer: W,
    tracer: Tracer,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let registry = Registry::default().with(crate::otel::layer(tracer));
    let filter = filter(config, rust_log);
    match config.format {
        LogFormat::Json => Box::new(registry.with(JsonLines::new(writer).with_filter(filter))),
        LogFormat::Pretty => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_ansi(std::io::stdout().is_terminal())
                    .with_writer(writer)
                    .with_filter(filter),
            ),
        ),
    }
}

/// Lines that may wait for the log writer thread; beyond this, lines are
/// dropped rather than blocking a request.
const LOG_BUFFER_LINES: usize = 64 * 1024;

/// Installs the global subscriber. Lines go to stdout from a dedicated thread,
/// so a slow reader never blocks the runtime. Keep the guard until exit: it
/// flushes what is buffered. Call once, from `main`. No `tracer`: no
/// OpenTelemetry layer at all.
pub fn init(
    config: &LoggingConfig,
    rust_log: Option<&str>,
    tracer: Option<Tracer>,
) -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_BUFFER_LINES)
        .lossy(true)
        .finish(std::io::stdout());
    // Only the exporter and the pretty layer read request spans; JSON lines
    // take the request's fields from its tag.
    request_scope::make_spans(tracer.is_some() || config.format == LogFormat::Pretty);
    let subscriber = match tracer {
        Some(tracer) => subscriber_with_traces(config, rust_log, writer, tracer),
        None => subscriber(config, rust_log, writer),
    };
    let _ = tracing::subscriber::set_global_default(subscriber);
    guard
}
