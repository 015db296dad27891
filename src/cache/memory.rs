//! The response cache per replica: moka, size-aware with a TTL per entry.
//! One capacity bounds both limits: each entry weighs its bytes but at least
//! `max_bytes / max_entries`, so no more than `max_entries` ever fit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::{AnswerStore, CacheKey, Entry};
use crate::meters::Metrics;

#[derive(Clone)]
struct Stored {
    entry: Arc<Entry>,
    ttl: Duration,
}

struct ByTtl;

impl moka::Expiry<CacheKey, Stored> for ByTtl {
    fn expire_after_create(&self, _: &CacheKey, value: &Stored, _: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

pub struct MemoryCache {
    entries: moka::future::Cache<CacheKey, Stored>,
    /// Bytes of the entries held now (moka's weights include the floor).
    bytes: Arc<AtomicU64>,
    metrics: Metrics,
}

impl MemoryCache {
    pub fn new(max_entries: u64, max_bytes: u64, metrics: Metrics) -> Self {
        let floor = (max_bytes / max_entries).max(1);
        let bytes = Arc::new(AtomicU64::new(0));
        let released = bytes.clone();
        let entries = moka::future::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(move |_, v: &Stored| {
                u32::try_from((v.entry.bytes() as u64).max(floor)).unwrap_or(u32::MAX)
            })
            .expire_after(ByTtl)
            .eviction_listener(move |_, v: Stored, _| {
                released.fetch_sub(v.entry.bytes() as u64, Ordering::Relaxed);
            })
            .build();
        metrics.cache_size(0, 0);
        Self {
            entries,
            bytes,
            metrics,
        }
    }

    async fn show(&self) {
        // Applies pending inserts and evictions, so the gauges are exact.
        self.entries.run_pending_tasks().await;
        self.metrics.cache_size(
            self.entries.entry_count(),
            self.bytes.load(Ordering::Relaxed),
        );
    }
}

impl AnswerStore for MemoryCache {
    fn get<'a>(&'a self, key: &'a CacheKey) -> BoxFuture<'a, Option<Arc<Entry>>> {
        async move { self.entries.get(key).await.map(|s| s.entry) }.boxed()
    }

    fn put(&self, key: CacheKey, entry: Arc<Entry>, ttl: Duration) -> BoxFuture<'_, ()> {
        async move {
            self.bytes
                .fetch_add(entry.bytes() as u64, Ordering::Relaxed);
            self.entries.insert(key, Stored { entry, ttl }).await;
        }
        .boxed()
    }

    fn publish(&self) -> BoxFuture<'_, ()> {
        self.show().boxed()
    }
}
