//! Logging: a `tracing` subscriber, pretty or JSON, filtered by `logging.level`
//! unless `RUST_LOG` is set. The writer is injectable so tests can read logs.

use std::io::IsTerminal;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::{EnvFilter, Registry, layer::SubscriberExt};

use crate::config::{LogFormat, LoggingConfig};

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
        LogFormat::Json => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(writer),
            ),
        ),
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

/// Lines that may wait for the log writer thread; beyond this, lines are
/// dropped rather than blocking a request.
const LOG_BUFFER_LINES: usize = 64 * 1024;

/// Installs the global subscriber. Lines go to stdout from a dedicated thread,
/// so a slow reader never blocks the runtime. Keep the guard until exit: it
/// flushes what is buffered. Call once, from `main`.
pub fn init(
    config: &LoggingConfig,
    rust_log: Option<&str>,
) -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_BUFFER_LINES)
        .lossy(true)
        .finish(std::io::stdout());
    let _ = tracing::subscriber::set_global_default(subscriber(config, rust_log, writer));
    guard
}
