//! `AppState`: everything a request needs, built from one config (a reload
//! builds a new one, see `reload`), cheap to clone (one `Arc`: every
//! middleware layer and handler clones it per request).

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::budget::Budgets;
use crate::cache::Cache;
use crate::config::Config;
use crate::faq::Faq;
use crate::guard::Guard;
use crate::interaction_log::InteractionLog;
use crate::limiter::Limiter;
use crate::meters::Metrics;
use crate::middleware::auth::KeyStore;
use crate::models::Catalog;
use crate::reload::handle::ReloadHandle;

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
    /// `[admin.keys]`: who may call `/admin/v1` (empty: `/admin` is 404).
    pub admin_keys: Arc<KeyStore>,
    pub limiter: Arc<dyn Limiter>,
    pub metrics: Metrics,
    pub interactions: Option<InteractionLog>,
    /// The audit trail, when `[audit] enabled` (opened once: restart-only).
    pub audit: Option<crate::audit::Audit>,
    /// Cost control: FAQ rules, budgets and the response cache.
    pub faq: Faq,
    pub budgets: Budgets,
    pub cache: Cache,
    /// Where admin canary overrides are shared (Redis) or not.
    pub overrides: crate::canary::shared::Overrides,
    /// Set when shutdown begins: readiness turns 503 before connections drain.
    pub shutting_down: Arc<AtomicBool>,
    /// Unix seconds at start-up (`created` of `/api/v1/models`).
    pub started_at: u64,
    /// Asks for a config reload (`POST /admin/v1/reload`).
    pub reload: ReloadHandle,
}

impl Shared {
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }
}
