//! A model's canary rollout: which requests it takes (a stable hash of the
//! model name and a sticky id against the effective percent), and the
//! automatic rollback (a fixed ring of buckets over `rollback_window`
//! counting canary chats and the ones that failed or were degraded).
//!
//! Built fresh with every catalog, so a reload starts the canary again at
//! its configured percent with an empty window (the contract: a rollback
//! stays until a reload or an admin call sets a percent).

pub mod shared;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use metrics::{Counter, Gauge};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::config::{CanaryConfig, Percent, Sticky};
use crate::meters::Metrics;

/// Buckets of the rollback window: old requests leave it a tenth at a time.
const BUCKETS: usize = 10;

/// Where `id` lands for `model`, in [0, 100): the first 8 bytes of
/// SHA-256(model, 0, id) scaled. Stable across processes and builds, so
/// every replica puts a user on the same side.
pub fn point(model: &str, id: &str) -> f64 {
    let mut h = Sha256::new();
    h.update(model.as_bytes());
    h.update([0]);
    h.update(id.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // u64 → [0, 1): 53 bits keep the division exact in an f64.
    let unit = (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64;
    unit * 100.0
}

/// The rollback rule, when one is configured.
#[derive(Debug, Clone, Copy)]
struct Rule {
    error_rate: f64,
    min_requests: u64,
}

/// Canary chats and failed ones per bucket, by bucket number (elapsed / width).
#[derive(Debug)]
struct Ring {
    width: Duration,
    start: Instant,
    /// (bucket number, requests, errors)
    buckets: [(u64, u64, u64); BUCKETS],
}

impl Ring {
    fn new(window: Duration) -> Self {
        let width = (window / BUCKETS as u32).max(Duration::from_millis(1));
        Self {
            width,
            start: Instant::now(),
            buckets: [(u64::MAX, 0, 0); BUCKETS],
        }
    }

    fn now(&self) -> u64 {
        (self.start.elapsed().as_nanos() / self.width.as_nanos().max(1)) as u64
    }

    fn add(&mut self, failed: bool) {
        let n = self.now();
        let slot = &mut self.buckets[(n % BUCKETS as u64) as usize];
        if slot.0 != n {
            *slot = (n, 0, 0);
        }
        slot.1 += 1;
        slot.2 += u64::from(failed);
    }

    /// (requests, errors) within the window.
    fn totals(&self) -> (u64, u64) {
        let n = self.now();
        self.buckets
            .iter()
            .filter(|b| b.0 != u64::MAX && b.0 <= n && n - b.0 < BUCKETS as u64)
            .fold((0, 0), |(r, e), b| (r + b.1, e + b.2))
    }

    fn clear(&mut self) {
        self.buckets = [(u64::MAX, 0, 0); BUCKETS];
    }
}

/// A rollback that just happened, for the log line and the audit trail.
#[derive(Debug, Clone, Copy)]
pub struct RolledBack {
    pub error_rate: f64,
    pub requests: u64,
}

/// What the admin API shows of one canary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct View {
    pub configured_percent: f64,
    pub effective_percent: f64,
    pub rolled_back: bool,
    pub window_requests: u64,
    pub window_errors: u64,
}

/// One model's canary rollout state.
pub struct Rollout {
    model: Arc<str>,
    pub sticky: Sticky,
    configured: Percent,
    /// The effective percent's f64 bits (read on every request: no lock).
    effective: AtomicU64,
    rolled_back: AtomicBool,
    rule: Option<Rule>,
    ring: Mutex<Ring>,
    gauge: Gauge,
    rollbacks: Counter,
    /// The nonce of the last shared override applied (0: none; see [`shared`]).
    seen: AtomicU64,
}

impl Rollout {
    /// `seen`: the shared override the previous catalog's rollout had
    /// applied (a reload must not apply it again).
    pub fn new(model: &str, c: &CanaryConfig, metrics: &Metrics, seen: u64) -> Arc<Self> {
        let gauge = metrics.canary_percent(model);
        gauge.set(c.percent.get());
        let rollbacks = metrics.canary_rollbacks(model);
        rollbacks.increment(0);
        Arc::new(Self {
            model: Arc::from(model),
            sticky: c.sticky,
            configured: c.percent,
            effective: AtomicU64::new(c.percent.get().to_bits()),
            rolled_back: AtomicBool::new(false),
            rule: c.rollback_error_rate.map(|r| Rule {
                error_rate: r.get(),
                min_requests: u64::from(c.rollback_min_requests.get()),
            }),
            ring: Mutex::new(Ring::new(c.rollback_window)),
            gauge,
            rollbacks,
            seen: AtomicU64::new(seen),
        })
    }

    pub fn model(&self) -> &Arc<str> {
        &self.model
    }

    /// The nonce of the last shared override applied.
    pub fn seen(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }

    /// An admin call on this replica: the percent now, and a fresh nonce to
    /// share it under (this replica has applied it).
    pub fn override_to(&self, percent: Percent) -> u64 {
        self.set(percent);
        let nonce = rand::random::<u64>().max(1);
        self.seen.store(nonce, Ordering::Relaxed);
        nonce
    }

    /// A shared override, applied once per nonce.
    pub fn follow(&self, percent: f64, nonce: u64) {
        if self.seen.swap(nonce, Ordering::Relaxed) == nonce {
            return;
        }
        if let Ok(p) = Percent::try_from(percent) {
            tracing::info!(model = %self.model, percent, "canary percent set by another replica");
            self.set(p);
        }
    }

    pub fn effective(&self) -> f64 {
        f64::from_bits(self.effective.load(Ordering::Relaxed))
    }

    /// Whether the request of sticky id `id` goes to the canary.
    pub fn takes(&self, id: &str) -> bool {
        let percent = self.effective();
        percent > 0.0 && point(&self.model, id) < percent
    }

    /// Sets the effective percent (an admin call): clears a rollback and the window.
    pub fn set(&self, percent: Percent) {
        self.ring
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.rolled_back.store(false, Ordering::Relaxed);
        self.store(percent.get());
    }

    fn store(&self, percent: f64) {
        self.effective.store(percent.to_bits(), Ordering::Relaxed);
        self.gauge.set(percent);
    }

    /// Counts one canary chat that ended; rolls the canary back (once) when
    /// the window's share of failures passes the rule.
    pub fn record(&self, failed: bool) -> Option<RolledBack> {
        let rule = self.rule?;
        let (requests, errors) = {
            let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
            ring.add(failed);
            ring.totals()
        };
        let error_rate = errors as f64 / requests.max(1) as f64;
        if requests < rule.min_requests || error_rate <= rule.error_rate {
            return None;
        }
        if self.rolled_back.swap(true, Ordering::Relaxed) {
            return None;
        }
        self.store(0.0);
        self.rollbacks.increment(1);
        tracing::error!(model = %self.model, error_rate, requests, "canary rolled back");
        Some(RolledBack {
            error_rate,
            requests,
        })
    }

    pub fn view(&self) -> View {
        let (window_requests, window_errors) = self
            .ring
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .totals();
        View {
            configured_percent: self.configured.get(),
            effective_percent: self.effective(),
            rolled_back: self.rolled_back.load(Ordering::Relaxed),
            window_requests,
            window_errors,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_is_stable_and_within_zero_to_a_hundred() {
        let p = point("default", "alice");
        assert_eq!(p, point("default", "alice"));
        assert!((0.0..100.0).contains(&p));
        assert_ne!(p, point("other", "alice"));
    }
}
