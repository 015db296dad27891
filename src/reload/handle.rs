//! The leaf of `reload` that requests and the rest of the app use: how to
//! ask for a reload, what asked, and the config hash (no dependency on the
//! state or the router, which `reload` builds).

use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::config::{Config, Problem};

/// What asked for a reload: the audit trail's `source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Signal,
    File,
    Admin,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Signal => "signal",
            Source::File => "file",
            Source::Admin => "admin",
        }
    }
}

/// The outcome of one reload: the new config's hash, or every problem.
pub type Outcome = Result<String, Vec<Problem>>;

pub(super) struct Request {
    pub(super) source: Source,
    pub(super) reply: Option<oneshot::Sender<Outcome>>,
}

/// Asks the reload task for a reload. Cheap to clone.
#[derive(Clone)]
pub struct ReloadHandle(mpsc::Sender<Request>);

impl ReloadHandle {
    pub(super) fn new(tx: mpsc::Sender<Request>) -> Self {
        Self(tx)
    }

    /// Reloads and waits for the outcome.
    pub async fn reload(&self, source: Source) -> Outcome {
        let (tx, rx) = oneshot::channel();
        let gone = || {
            vec![Problem::new(
                "reload",
                "the reload task is not running".to_owned(),
            )]
        };
        self.0
            .send(Request {
                source,
                reply: Some(tx),
            })
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Asks for a reload without waiting (signals, file changes): when the
    /// queue is full a reload is already pending, which reads the same files.
    pub fn trigger(&self, source: Source) {
        let _ = self.0.try_send(Request {
            source,
            reply: None,
        });
    }
}

/// The first 12 hex digits of the SHA-256 of the effective config exactly as
/// `check-config --json` prints it (secrets redacted, trailing newline included).
pub fn config_hash(config: &Config) -> String {
    let text = serde_json::to_string_pretty(config).unwrap_or_default();
    let digest = Sha256::digest(format!("{}\n", text.trim_end()).as_bytes());
    hex::encode(digest)[..12].to_owned()
}
