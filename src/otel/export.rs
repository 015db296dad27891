//! The span exporter's queue: a bounded channel that a request only ever
//! `try_send`s into (a full queue drops the span, never waits), drained by
//! one tokio task that POSTs batches through the OTLP exporter, each export
//! bounded by [`EXPORT_TIMEOUT`]. Spans refused by the queue and spans of a
//! failed export are counted in [`DROPPED`].
//!
//! Ours rather than the SDK's `BatchSpanProcessor`: that one keeps its drop
//! count private (it only logs it at shutdown), and runs exports on a thread
//! of its own outside tokio, where our reqwest client cannot run.

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use opentelemetry::Context;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Spans waiting for export; beyond, new spans are dropped and counted.
pub const QUEUE_CAPACITY: usize = 2048;
/// Most spans in one export request.
const MAX_BATCH: usize = 512;
/// How long a batch may wait to fill before it is sent.
const GATHER: Duration = Duration::from_millis(200);
/// One export request, connection included.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(3);
/// Most of a collector's answer we read (it is a short protobuf message).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Spans refused by the full queue or lost with a failed export.
fn dropped(n: usize) {
    crate::meters::TRACE_SPANS_DROPPED_COUNT.fetch_add(n as u64, Ordering::Relaxed);
}

/// The SDK's side: every ended, sampled span goes into the queue or is counted.
#[derive(Debug)]
pub struct Queue {
    tx: mpsc::Sender<SpanData>,
}

impl SpanProcessor for Queue {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.tx.try_send(span).is_err() {
            dropped(1);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    /// The queue is drained by [`Drain::finish`], which can await.
    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// The export task; `finish` sends what is queued and stops it.
pub struct Drain {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Drain {
    /// Exports what is still queued, within about two export timeouts.
    pub async fn finish(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(2 * EXPORT_TIMEOUT, self.task).await;
    }
}

/// Starts the export task (inside a tokio runtime) for `exporter`.
pub fn start<E: SpanExporter + 'static>(exporter: E) -> (Queue, Drain) {
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(run(rx, exporter, stopped));
    (Queue { tx }, Drain { stop, task })
}

async fn run<E: SpanExporter>(
    mut rx: mpsc::Receiver<SpanData>,
    exporter: E,
    mut stop: oneshot::Receiver<()>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut failing = false;
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, MAX_BATCH) => if n == 0 { break },
            _ = &mut stop => break,
        }
        // Let the batch fill for a moment: one request for a burst of spans.
        let gather = tokio::time::sleep(GATHER);
        tokio::pin!(gather);
        while batch.len() < MAX_BATCH {
            let room = MAX_BATCH - batch.len();
            tokio::select! {
                n = rx.recv_many(&mut batch, room) => if n == 0 { break },
                _ = &mut gather => break,
            }
        }
        export(&exporter, &mut batch, &mut failing).await;
    }
    // Shutting down: what is queued now, then nothing more.
    rx.close();
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        export(&exporter, &mut batch, &mut failing).await;
    }
}

async fn export<E: SpanExporter>(exporter: &E, batch: &mut Vec<SpanData>, failing: &mut bool) {
    let spans = std::mem::replace(batch, Vec::with_capacity(MAX_BATCH));
    let n = spans.len();
    let error = match tokio::time::timeout(EXPORT_TIMEOUT, exporter.export(spans)).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("no answer within {EXPORT_TIMEOUT:?}")),
    };
    match error {
        Some(error) => {
            dropped(n);
            // Once per outage, not once per batch.
            if !*failing {
                tracing::warn!(%error, "cannot export spans to the OTLP collector; dropping them until it answers");
                *failing = true;
            }
        }
        None if *failing => {
            tracing::info!("the OTLP collector answers again; exporting spans");
            *failing = false;
        }
        None => {}
    }
}

/// The OTLP exporter's HTTP client: our reqwest (one TLS stack, rustls), run
/// on the export task's tokio runtime.
pub struct Client(pub reqwest::Client);

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("otel::export::Client")
    }
}

#[async_trait]
impl HttpClient for Client {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let mut response = self.0.execute(request).await?;
        let mut answer = Response::builder().status(response.status());
        if let Some(headers) = answer.headers_mut() {
            *headers = std::mem::take(response.headers_mut());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                break;
            }
            body.extend_from_slice(&chunk);
        }
        Ok(answer.body(Bytes::from(body))?)
    }
}
