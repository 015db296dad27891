//! The audit trail (`[audit]`): one JSON line per admin call, config
//! reload, canary rollback, budget refusal and failed authentication
//! (`ts`, `event`, `actor`, `client_ip`, `request_id`, `detail`), written by
//! the shared off-path writer ([`crate::jsonl`]). A request never waits: a
//! line that cannot be queued is counted in `chatgate_audit_dropped_total`
//! and logged at ERROR, at most once a second.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::config::AuditConfig;
use crate::meters::Metrics;

/// One audit event as it is queued.
#[derive(Debug, Default)]
pub struct Event {
    /// `admin`, `reload`, `canary_rollback`, `budget_refused`, `auth_failed`.
    pub event: &'static str,
    /// The admin key id, the client key id, or the reload's source.
    pub actor: Option<String>,
    pub client_ip: Option<String>,
    pub request_id: Option<String>,
    pub detail: Value,
}

impl crate::jsonl::Line for Event {
    fn line(&self, at: SystemTime) -> Option<String> {
        let line = json!({
            "ts": crate::interaction_log::rfc3339_millis(at),
            "event": self.event,
            "actor": self.actor,
            "client_ip": self.client_ip,
            "request_id": self.request_id,
            "detail": self.detail,
        });
        serde_json::to_string(&line).ok()
    }
}

/// The sending side; cheap to clone.
#[derive(Clone)]
pub struct Audit {
    tx: mpsc::Sender<(SystemTime, Event)>,
    metrics: Metrics,
    /// Unix second of the last "dropped" ERROR line (rate limit: one a second).
    last_error: Arc<AtomicU64>,
}

impl Audit {
    /// Starts the writer; `None` when the trail is off.
    pub fn start(config: &AuditConfig, metrics: Metrics) -> Option<Self> {
        if !config.enabled {
            return None;
        }
        let tx = crate::jsonl::start(&config.path, config.queue_capacity, "audit trail");
        Some(Self {
            tx,
            metrics,
            last_error: Arc::default(),
        })
    }

    /// Queues a line without waiting; a full queue drops it (counted, logged).
    pub fn record(&self, event: Event) {
        let name = event.event;
        if self.tx.try_send((SystemTime::now(), event)).is_ok() {
            return;
        }
        self.metrics.audit_dropped();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if self.last_error.swap(now, Ordering::Relaxed) != now {
            tracing::error!(event = name, "audit line dropped: the audit queue is full");
        }
    }
}

/// Records `event` when the trail is on.
pub fn record(audit: Option<&Audit>, event: Event) {
    if let Some(a) = audit {
        a.record(event);
    }
}
