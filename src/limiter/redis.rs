//! Limits shared by every replica: GCRA state in Redis, one atomic Lua round
//! trip per check, every key with a TTL. When Redis cannot be reached (the
//! shared [`RedisLink`] says so), either per-replica limits take over
//! (`on_redis_error = "local"`) or requests are refused (`"deny"`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::{Bucket, Decision, Limiter, MemoryLimiter, Rate};
use crate::config::OnRedisError;
use crate::redis_link::RedisLink;

/// GCRA: the bucket holds the theoretical arrival time (TAT) in µs, using
/// Redis's own clock so every replica agrees. Returns 0 to allow, otherwise
/// the µs until a request would pass. The key expires when the bucket is full
/// again (plus a second), so idle clients cost Redis nothing.
const GCRA: &str = r"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then tat = now end
local allow_at = tat - interval * (burst - 1)
if now < allow_at then return allow_at - now end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return 0
";

pub struct RedisLimiter {
    link: Arc<RedisLink>,
    script: redis::Script,
    ip_rate: Rate,
    key_rates: HashMap<String, Rate>,
    /// Per JWT IdP: the per-subject rate.
    user_rates: HashMap<String, Rate>,
    local: Arc<MemoryLimiter>,
}

impl RedisLimiter {
    /// Limits on the shared connection; until it is up, checks take the fallback.
    pub fn new(
        link: Arc<RedisLink>,
        ip_rate: Rate,
        key_rates: HashMap<String, Rate>,
        user_rates: HashMap<String, Rate>,
    ) -> Arc<Self> {
        let local = MemoryLimiter::with_users(ip_rate, key_rates.clone(), user_rates.clone());
        local.spawn_eviction();
        Arc::new(Self {
            link,
            script: redis::Script::new(GCRA),
            ip_rate,
            key_rates,
            user_rates,
            local,
        })
    }

    fn rate(&self, bucket: Bucket<'_>) -> Option<Rate> {
        match bucket {
            Bucket::Ip(_) => Some(self.ip_rate),
            Bucket::Key(id) => self.key_rates.get(id).copied(),
            Bucket::User { idp, .. } => self.user_rates.get(idp).copied(),
        }
    }

    async fn shared(&self, bucket: Bucket<'_>, rate: Rate) -> Option<Decision> {
        let key = match bucket {
            // The hash tag is the bucket: on a Redis Cluster buckets spread
            // over the masters, each script on the node holding its key.
            Bucket::Ip(ip) => format!("chatgate:rl:{{ip:{ip}}}"),
            Bucket::Key(id) => format!("chatgate:rl:{{key:{id}}}"),
            Bucket::User { idp, user } => format!("chatgate:rl:{{user:{idp}:{user}}}"),
        };
        let interval_us = u64::try_from(rate.emission_interval().as_micros()).unwrap_or(u64::MAX);
        let mut invocation = self.script.key(key);
        invocation.arg(interval_us).arg(rate.burst.get());
        let wait_us = self
            .link
            .run(|mut conn| async move { invocation.invoke_async::<u64>(&mut conn).await })
            .await?;
        Some(match wait_us {
            0 => Decision::Allow,
            wait_us => Decision::Deny {
                retry_after: Duration::from_micros(wait_us),
            },
        })
    }

    fn fallback(&self, bucket: Bucket<'_>) -> Decision {
        match self.link.on_error() {
            OnRedisError::Local => self.local.check_now(bucket),
            OnRedisError::Deny => Decision::Unavailable,
        }
    }
}

impl Limiter for RedisLimiter {
    fn check<'a>(&'a self, bucket: Bucket<'a>) -> BoxFuture<'a, Decision> {
        async move {
            let Some(rate) = self.rate(bucket) else {
                return Decision::Allow;
            };
            match self.shared(bucket, rate).await {
                Some(decision) => decision,
                None => self.fallback(bucket),
            }
        }
        .boxed()
    }

    fn degraded(&self) -> Option<&'static str> {
        (!self.link.is_up()).then_some("redis_unreachable")
    }

    /// Same connection; Redis keeps the buckets (keyed by IP or key id, the
    /// rate passed per call), the local fallback keeps its unchanged ones.
    fn reconfigure(&self, ip_rate: Rate, key_rates: HashMap<String, Rate>) -> Arc<dyn Limiter> {
        Arc::new(Self {
            link: Arc::clone(&self.link),
            script: self.script.clone(),
            ip_rate,
            local: self.local.reconfigured(ip_rate, key_rates.clone()),
            key_rates,
            user_rates: self.user_rates.clone(),
        })
    }
}
