//! Spend per replica: a bounded map of counters (moka), each dropped soon
//! after its window ends. A restart forgets all spend.

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

#[derive(Clone, Copy)]
struct Spent {
    total: f64,
    ttl: Duration,
}

struct UntilWindowEnds;

impl moka::Expiry<String, Spent> for UntilWindowEnds {
    fn expire_after_create(&self, _: &String, value: &Spent, _: Instant) -> Option<Duration> {
        Some(value.ttl + GRACE)
    }
}

pub struct MemorySpend {
    counters: moka::sync::Cache<String, Spent>,
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
            .map(|c| self.counters.get(&c.key).map_or(0.0, |s| s.total))
            .collect()
    }

    pub fn add_now(&self, counters: &[Counter], amounts: &[f64]) -> Vec<f64> {
        counters
            .iter()
            .zip(amounts)
            .map(|(c, amount)| {
                // `and_upsert_with` runs one at a time per key: increments never race.
                let entry = self
                    .counters
                    .entry(c.key.clone())
                    .and_upsert_with(|old| Spent {
                        total: old.map_or(0.0, |e| e.value().total) + amount,
                        ttl: c.ttl,
                    });
                entry.value().total
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
