//! `AppState`: everything a request needs, built once, cheap to clone (one
//! `Arc`: every middleware layer and handler clones it per request).

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::Config;
use crate::guard::Guard;
use crate::interaction_log::InteractionLog;
use crate::limiter::Limiter;
use crate::metrics::Metrics;
use crate::middleware::auth::KeyStore;
use crate::models::Catalog;

#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What every request shares.
pub struct Shared {
    pub config: Arc<Config>,
    pub catalog: Arc<Catalog>,
    /// Content safety: sanitising, guard rules, the leak check.
    pub guard: Arc<Guard>,
    pub keys: Arc<KeyStore>,
    pub limiter: Arc<dyn Limiter>,
    pub metrics: Metrics,
    pub interactions: Option<InteractionLog>,
    /// Set when shutdown begins: readiness turns 503 before connections drain.
    pub shutting_down: Arc<AtomicBool>,
    /// Unix seconds at start-up (`created` of `/api/v1/models`).
    pub started_at: u64,
}

impl Shared {
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }
}
