//! `AppState`: everything a request needs, built once, cheap to clone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::Config;
use crate::interaction_log::InteractionLog;
use crate::limiter::Limiter;
use crate::metrics::Metrics;
use crate::middleware::auth::KeyStore;
use crate::models::Catalog;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub catalog: Arc<Catalog>,
    pub keys: Arc<KeyStore>,
    pub limiter: Arc<dyn Limiter>,
    pub metrics: Metrics,
    pub interactions: Option<InteractionLog>,
    /// Set when shutdown begins: readiness turns 503 before connections drain.
    pub shutting_down: Arc<AtomicBool>,
    /// Unix seconds at start-up (`created` of `/api/v1/models`).
    pub started_at: u64,
}

impl AppState {
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }
}
