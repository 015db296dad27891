//! The response cache: whole answers reused for identical requests, opt-in
//! per model (`cache_ttl`), scoped per client key. The key is a SHA-256 over
//! everything that can change the answer; entries live per replica in
//! memory (moka, bounded by entries and bytes) or shared in Redis.
//! Only finished, non-degraded provider answers are stored.

mod memory;
mod redis;

pub use memory::MemoryCache;
pub use redis::RedisCache;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::meters::Metrics;
use crate::models::Model;
use crate::providers::ProviderRequest;

/// A cache key: the SHA-256 of the request's identity.
pub type CacheKey = [u8; 32];

/// A stored answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub content: String,
    pub finish_reason: String,
    pub provider: Option<String>,
    pub provider_model: Option<String>,
}

impl Entry {
    /// What the entry costs to keep (its text, near enough).
    pub fn bytes(&self) -> usize {
        self.content.len()
            + self.finish_reason.len()
            + self.provider.as_ref().map_or(0, String::len)
            + self.provider_model.as_ref().map_or(0, String::len)
    }
}

/// Where entries are kept. Failures are misses, never errors.
pub trait AnswerStore: Send + Sync {
    fn get<'a>(&'a self, key: &'a CacheKey) -> BoxFuture<'a, Option<Arc<Entry>>>;
    fn put(&self, key: CacheKey, entry: Arc<Entry>, ttl: Duration) -> BoxFuture<'_, ()>;
    /// Brings the size gauges up to date (on each `/metrics` scrape, not on
    /// each insert: settling the store's bookkeeping costs more than a put).
    fn publish(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

pub use crate::context::{CacheStatus, Directive};

/// Where a fresh answer goes, if it finishes well.
#[derive(Debug, Clone)]
pub struct Pending {
    key: CacheKey,
    ttl: Duration,
}

/// The outcome of a lookup.
pub struct Lookup {
    pub status: CacheStatus,
    pub hit: Option<Arc<Entry>>,
    pub store: Option<Pending>,
}

/// The key of a request: the client key id, the model name, and every field
/// of the upstream request that can change the answer. The request is
/// destructured field by field, so a field added to [`ProviderRequest`] does
/// not compile until it is either hashed or named here as irrelevant.
pub fn key(key_id: Option<&str>, model: &str, variant: &str, req: &ProviderRequest) -> CacheKey {
    let ProviderRequest {
        // Set per target; the model name stands for the targets.
        model: _,
        messages,
        max_tokens,
        temperature,
        top_p,
        stop,
        // Who asks does not change the answer (budgets read it, not the cache).
        user: _,
        // Tools, tool_choice, response_format, sampling hints, unknown fields.
        params,
        request_id: _,
    } = req;
    // The debug form spells out every field of the messages' blocks and the
    // params (its maps are ordered); it is stable within one build, and a
    // replica of another build merely misses (the version is part of the key).
    // It is written straight into the hash, never built as a String.
    let mut identity = Hashing(Sha256::new());
    // Writing into a hash cannot fail.
    let _ = write!(
        identity,
        "{}|{key_id:?}|{model:?}|{variant:?}|{messages:?}|{max_tokens:?}|{temperature:?}|{top_p:?}|{stop:?}|{params:?}",
        env!("CARGO_PKG_VERSION"),
    );
    identity.0.finalize().into()
}

/// Formatted text fed to a SHA-256 as it is written.
struct Hashing(Sha256);

impl std::fmt::Write for Hashing {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.update(s.as_bytes());
        Ok(())
    }
}

pub struct Cache {
    store: Arc<dyn AnswerStore>,
    /// An entry larger than this is not stored.
    max_entry_bytes: usize,
    metrics: Metrics,
}

impl Cache {
    pub fn new(store: Arc<dyn AnswerStore>, max_entry_bytes: usize, metrics: Metrics) -> Self {
        Self {
            store,
            max_entry_bytes,
            metrics,
        }
    }

    /// Looks the request up, when its model caches and the client allows it.
    pub async fn lookup(
        &self,
        key_id: Option<&str>,
        model: &Model,
        req: &ProviderRequest,
        directive: Directive,
    ) -> Lookup {
        let Some(ttl) = model.cache_ttl else {
            return self.counted(model, CacheStatus::Bypass, None, None);
        };
        let pending = Pending {
            key: key(key_id, &model.name, model.variant.as_str(), req),
            ttl,
        };
        match directive {
            Directive::NoStore => self.counted(model, CacheStatus::Bypass, None, None),
            Directive::NoCache => self.counted(model, CacheStatus::Bypass, None, Some(pending)),
            Directive::Normal => match self.store.get(&pending.key).await {
                Some(entry) => self.counted(model, CacheStatus::Hit, Some(entry), None),
                None => self.counted(model, CacheStatus::Miss, None, Some(pending)),
            },
        }
    }

    fn counted(
        &self,
        model: &Model,
        status: CacheStatus,
        hit: Option<Arc<Entry>>,
        store: Option<Pending>,
    ) -> Lookup {
        self.metrics.cache_request(&model.name, status.as_str());
        Lookup { status, hit, store }
    }

    /// Brings the cache's gauges up to date (before a `/metrics` render).
    pub async fn publish(&self) {
        self.store.publish().await;
    }

    /// Whether an answer of `bytes` may be stored at all (streams stop
    /// collecting their text past it).
    pub fn fits(&self, bytes: usize) -> bool {
        bytes <= self.max_entry_bytes
    }

    /// Stores a finished, non-degraded answer.
    pub async fn put(&self, pending: Pending, entry: Entry) {
        if !self.fits(entry.bytes()) {
            return;
        }
        self.store
            .put(pending.key, Arc::new(entry), pending.ttl)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::Message;

    fn req(text: &str) -> ProviderRequest {
        ProviderRequest {
            model: "m".into(),
            messages: vec![Message::user_text(text)].into(),
            max_tokens: Some(10),
            temperature: None,
            top_p: None,
            stop: Vec::new().into(),
            user: Some("u1".into()),
            params: Default::default(),
            request_id: "r1".into(),
        }
    }

    #[test]
    fn the_key_changes_with_what_changes_the_answer_only() {
        let base = key(Some("a"), "support", "stable", &req("hi"));
        assert_eq!(
            base,
            key(
                Some("a"),
                "support",
                "stable",
                &ProviderRequest {
                    request_id: "r2".into(),
                    user: None,
                    ..req("hi")
                }
            )
        );
        for other in [
            key(Some("b"), "support", "stable", &req("hi")),
            key(Some("a"), "other", "stable", &req("hi")),
            key(Some("a"), "support", "stable", &req("hi!")),
            key(Some("a"), "support", "canary", &req("hi")),
            key(
                Some("a"),
                "support",
                "stable",
                &ProviderRequest {
                    max_tokens: Some(11),
                    ..req("hi")
                },
            ),
            key(
                Some("a"),
                "support",
                "stable",
                &ProviderRequest {
                    temperature: Some(0.5),
                    ..req("hi")
                },
            ),
            key(
                Some("a"),
                "support",
                "stable",
                &ProviderRequest {
                    top_p: Some(0.5),
                    ..req("hi")
                },
            ),
            key(
                Some("a"),
                "support",
                "stable",
                &ProviderRequest {
                    stop: vec!["x".to_owned()].into(),
                    ..req("hi")
                },
            ),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn the_key_hashes_the_same_identity_text_as_before_it_was_streamed() {
        let r = ProviderRequest {
            temperature: Some(0.25),
            stop: vec!["x".to_owned()].into(),
            ..req("hi")
        };
        let ProviderRequest {
            messages,
            max_tokens,
            temperature,
            top_p,
            stop,
            params,
            ..
        } = &r;
        let (key_id, model, variant) = (Some("a"), "support", "stable");
        // The String the key was once built from: keys stay the same across the change.
        let identity = format!(
            "{}|{key_id:?}|{model:?}|{variant:?}|{messages:?}|{max_tokens:?}|{temperature:?}|{top_p:?}|{stop:?}|{params:?}",
            env!("CARGO_PKG_VERSION"),
        );
        let expected: CacheKey = Sha256::digest(identity.as_bytes()).into();
        assert_eq!(key(key_id, model, variant, &r), expected);
    }

    #[test]
    fn no_store_wins_over_no_cache() {
        assert_eq!(Directive::parse("no-cache"), Directive::NoCache);
        assert_eq!(Directive::parse("No-Cache, no-store"), Directive::NoStore);
        assert_eq!(Directive::parse("max-age=0"), Directive::Normal);
    }
}
