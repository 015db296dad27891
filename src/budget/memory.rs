//! Spend per replica: a bounded map of counters (moka), each dropped soon
//! after its window ends. A restart forgets all spend.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::{Counter, SpendStore, Unavailable};

/// At most this many counters are kept (the gateway's and each key's few,
/// and one per end user per day): past it the least used are dropped, so
/// clients inventing `user` ids cannot grow memory without end.
const MAX_COUNTERS: u64 = 200_000;
/// A counter outlives its window by this much, so a clock a little ahead
/// or behind never reads a dropped one as zero.
const GRACE: Duration = Duration::from_secs(3600);

/// One counter: its total as the bits of an `f64`, added to with a
/// compare-and-swap, so a hot counter (the gateway's) is one atomic per
/// request rather than a per-key upsert through the map.
struct Spent {
    total: AtomicU64,
    ttl: Duration,
}

impl Spent {
    fn total(&self) -> f64 {
        f64::from_bits(self.total.load(Ordering::Acquire))
    }

    /// Adds `amount`; returns the new total.
    fn add(&self, amount: f64) -> f64 {
        let mut seen = self.total.load(Ordering::Acquire);
        loop {
            let next = f64::from_bits(seen) + amount;
            match self.total.compare_exchange_weak(
                seen,
                next.to_bits(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return next,
                Err(now) => seen = now,
            }
        }
    }
}

struct UntilWindowEnds;

impl moka::Expiry<String, Arc<Spent>> for UntilWindowEnds {
    fn expire_after_create(&self, _: &String, value: &Arc<Spent>, _: Instant) -> Option<Duration> {
        Some(value.ttl + GRACE)
    }
}

pub struct MemorySpend {
    counters: moka::sync::Cache<String, Arc<Spent>>,
}

impl MemorySpend {
    pub fn new() -> Self {
        Self {
            counters: moka::sync::Cache::builder()
                .max_capacity(MAX_COUNTERS)
                .expire_after(UntilWindowEnds)
                .build(),
        }
    }

    pub fn read_now(&self, counters: &[Counter]) -> Vec<f64> {
        counters
            .iter()
            .map(|c| self.counters.get(&*c.key).map_or(0.0, |s| s.total()))
            .collect()
    }

    pub fn add_now(&self, counters: &[Counter], amounts: &[f64]) -> Vec<f64> {
        counters
            .iter()
            .zip(amounts)
            .map(|(c, amount)| {
                // `get_with` inserts a counter once (one initialiser per
                // key at a time); from then on each add is one atomic.
                let spent = self.counters.get_with_by_ref(&*c.key, || {
                    Arc::new(Spent {
                        total: AtomicU64::new(0f64.to_bits()),
                        ttl: c.ttl,
                    })
                });
                spent.add(*amount)
            })
            .collect()
    }
}

impl Default for MemorySpend {
    fn default() -> Self {
        Self::new()
    }
}

impl SpendStore for MemorySpend {
    fn read<'a>(&'a self, counters: &'a [Counter]) -> BoxFuture<'a, Result<Vec<f64>, Unavailable>> {
        std::future::ready(Ok(self.read_now(counters))).boxed()
    }

    fn add<'a>(
        &'a self,
        counters: &'a [Counter],
        amounts: &'a [f64],
    ) -> BoxFuture<'a, Result<Vec<f64>, Unavailable>> {
        std::future::ready(Ok(self.add_now(counters, amounts))).boxed()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::budget::Unit;

    #[test]
    fn concurrent_adds_to_one_counter_are_never_lost() {
        let store = Arc::new(MemorySpend::new());
        let counter = Counter {
            key: "chatgate:spend:{gateway}:day:2026-12-02:usd".into(),
            unit: Unit::Usd,
            ttl: Duration::from_secs(60),
        };
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (store, counter) = (store.clone(), counter.clone());
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        store.add_now(std::slice::from_ref(&counter), &[0.5]);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(store.read_now(&[counter]), vec![2000.0]);
    }
}
