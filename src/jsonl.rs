//! The off-path JSON-lines writer both the interaction log and the audit
//! trail use: a bounded queue a request only `try_send`s into, and one
//! background task that renders each item (redaction and serialising happen
//! here, not on the request path) and appends it to a file created 0600
//! (readable by its owner only) or to stdout (`-`).

use std::time::SystemTime;

use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

/// What the writer turns into one line; `at` is when it was queued.
pub trait Line: Send + 'static {
    fn line(&self, at: SystemTime) -> Option<String>;
}

/// Starts the writer task of `path` and returns the queue's sending side
/// (`capacity` items at most; a full queue is the sender's to count).
/// `what` names the log in its ERROR lines.
pub fn start<T: Line>(
    path: &str,
    capacity: usize,
    what: &'static str,
) -> mpsc::Sender<(SystemTime, T)> {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let path = path.to_owned();
    tokio::spawn(async move {
        if path == "-" {
            write_lines(rx, tokio::io::stdout(), what).await;
            return;
        }
        let mut options = tokio::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        options.mode(0o600);
        match options.open(&path).await {
            Ok(file) => write_lines(rx, file, what).await,
            Err(error) => {
                tracing::error!(%error, path, "cannot open the {what}; lines will be dropped")
            }
        }
    });
    tx
}

async fn write_lines<T: Line>(
    mut rx: mpsc::Receiver<(SystemTime, T)>,
    out: impl AsyncWrite + Unpin,
    what: &'static str,
) {
    let mut out = BufWriter::new(out);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        // Write whatever is queued, then flush once.
        while let Some((at, item)) = next {
            if let Some(line) = item.line(at)
                && (out.write_all(line.as_bytes()).await.is_err()
                    || out.write_all(b"\n").await.is_err())
            {
                tracing::warn!("{what} write failed");
            }
            next = rx.try_recv().ok();
        }
        if out.flush().await.is_err() {
            tracing::warn!("{what} flush failed");
        }
    }
}
