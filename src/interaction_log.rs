//! The interaction log: one JSON line per sampled chat, with prompt and answer
//! text redacted, written by a background task. A full queue drops the line
//! (counted in `chatgate_interaction_log_dropped_total`); a chat never waits.
//! A file the log creates is readable by its owner only (0600).

use std::sync::Arc;

use serde::Serialize;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

use crate::chat::{Message, Usage};
use crate::config::InteractionLogConfig;
use crate::metrics::Metrics;
use crate::redact::redact;

/// One chat as it is handed to the writer (unredacted: redaction happens off the request path).
#[derive(Debug)]
pub struct Interaction {
    pub request_id: String,
    pub key_id: Option<Arc<str>>,
    pub model: Arc<str>,
    pub provider: Option<Arc<str>>,
    pub usage: Usage,
    pub latency_ms: u64,
    pub outcome: &'static str,
    pub messages: Arc<[Message]>,
    pub answer: String,
}

#[derive(Serialize)]
struct Line<'a> {
    request_id: &'a str,
    key_id: Option<&'a str>,
    model: &'a str,
    provider: Option<&'a str>,
    input_tokens: u32,
    output_tokens: u32,
    latency_ms: u64,
    outcome: &'a str,
    messages: Vec<LineMessage>,
    answer: String,
}

#[derive(Serialize)]
struct LineMessage {
    role: &'static str,
    content: String,
}

impl Interaction {
    fn to_line(&self) -> Option<String> {
        let line = Line {
            request_id: &self.request_id,
            key_id: self.key_id.as_deref(),
            model: &self.model,
            provider: self.provider.as_deref(),
            input_tokens: self.usage.input_tokens,
            output_tokens: self.usage.output_tokens,
            latency_ms: self.latency_ms,
            outcome: self.outcome,
            messages: self
                .messages
                .iter()
                .map(|m| LineMessage {
                    role: m.role.as_str(),
                    content: redact(&m.content),
                })
                .collect(),
            answer: redact(&self.answer),
        };
        serde_json::to_string(&line).ok()
    }
}

/// The sending side; cheap to clone.
#[derive(Clone)]
pub struct InteractionLog {
    tx: mpsc::Sender<Interaction>,
    sample_rate: f64,
    metrics: Metrics,
}

impl InteractionLog {
    /// Starts the writer task. `None` when the log is disabled.
    pub fn start(config: &InteractionLogConfig, metrics: Metrics) -> Option<Self> {
        if !config.enabled {
            return None;
        }
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let path = config.path.clone();
        tokio::spawn(async move {
            if path == "-" {
                write_lines(rx, tokio::io::stdout()).await;
            } else {
                let mut options = tokio::fs::OpenOptions::new();
                options.create(true).append(true);
                // Prompts and answers, even redacted, are for the operator only.
                #[cfg(unix)]
                options.mode(0o600);
                match options.open(&path).await {
                    Ok(file) => write_lines(rx, file).await,
                    Err(error) => {
                        tracing::error!(%error, path, "cannot open the interaction log; lines will be dropped")
                    }
                }
            }
        });
        Some(Self {
            tx,
            sample_rate: config.sample_rate,
            metrics,
        })
    }

    /// Whether this chat is sampled (decided before any work is done for it).
    pub fn sampled(&self) -> bool {
        self.sample_rate >= 1.0 || rand::random::<f64>() < self.sample_rate
    }

    /// Queues a line without waiting; a full queue drops it.
    pub fn record(&self, interaction: Interaction) {
        if self.tx.try_send(interaction).is_err() {
            self.metrics.interaction_dropped();
        }
    }
}

async fn write_lines(mut rx: mpsc::Receiver<Interaction>, out: impl AsyncWrite + Unpin) {
    let mut out = BufWriter::new(out);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        // Write whatever is queued, then flush once.
        while let Some(interaction) = next {
            if let Some(line) = interaction.to_line()
                && (out.write_all(line.as_bytes()).await.is_err()
                    || out.write_all(b"\n").await.is_err())
            {
                tracing::warn!("interaction log write failed");
            }
            next = rx.try_recv().ok();
        }
        if out.flush().await.is_err() {
            tracing::warn!("interaction log flush failed");
        }
    }
}
