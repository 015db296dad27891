//! Limits shared by every replica: GCRA state in Redis, one atomic Lua round
//! trip per check, every key with a TTL. When Redis cannot be reached, either
//! per-replica limits take over (`on_redis_error = "local"`) or requests are
//! refused (`"deny"`); each transition is logged once, not per request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::{ExposeSecret, SecretString};

use super::{Bucket, Decision, Limiter, MemoryLimiter, Rate};
use crate::config::OnRedisError;
use crate::metrics::Metrics;

/// GCRA: the bucket holds the theoretical arrival time (TAT) in µs, using
/// Redis's own clock so every replica agrees. Returns 0 to allow, otherwise
/// the µs until a request would pass.
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

/// How long one check may wait for Redis before the fallback answers.
const CHECK_TIMEOUT: Duration = Duration::from_millis(250);
/// Delay between attempts to make the first connection.
const CONNECT_RETRY: Duration = Duration::from_millis(500);

pub struct RedisLimiter {
    conn: Arc<OnceLock<ConnectionManager>>,
    script: redis::Script,
    ip_rate: Rate,
    key_rates: HashMap<String, Rate>,
    local: Arc<MemoryLimiter>,
    on_error: OnRedisError,
    healthy: AtomicBool,
    metrics: Metrics,
}

impl RedisLimiter {
    /// Starts connecting in the background; until connected, checks take the fallback.
    pub fn new(
        url: &SecretString,
        ip_rate: Rate,
        key_rates: HashMap<String, Rate>,
        on_error: OnRedisError,
        metrics: Metrics,
    ) -> Result<Arc<Self>, redis::RedisError> {
        let client = redis::Client::open(url.expose_secret())?;
        let local = MemoryLimiter::new(ip_rate, key_rates.clone());
        local.spawn_eviction();
        let conn = Arc::new(OnceLock::new());
        let slot = Arc::clone(&conn);
        tokio::spawn(async move {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(CHECK_TIMEOUT * 4)
                .set_response_timeout(CHECK_TIMEOUT);
            loop {
                match ConnectionManager::new_with_config(client.clone(), config.clone()).await {
                    Ok(manager) => {
                        let _ = slot.set(manager);
                        break;
                    }
                    Err(_) => tokio::time::sleep(CONNECT_RETRY).await,
                }
            }
        });
        Ok(Arc::new(Self {
            conn,
            script: redis::Script::new(GCRA),
            ip_rate,
            key_rates,
            local,
            on_error,
            healthy: AtomicBool::new(true),
            metrics,
        }))
    }

    fn rate(&self, bucket: Bucket<'_>) -> Option<Rate> {
        match bucket {
            Bucket::Ip(_) => Some(self.ip_rate),
            Bucket::Key(id) => self.key_rates.get(id).copied(),
        }
    }

    async fn shared(&self, bucket: Bucket<'_>, rate: Rate) -> Result<Decision, ()> {
        let mut conn = self.conn.get().cloned().ok_or(())?;
        let key = match bucket {
            Bucket::Ip(ip) => format!("chatgate:rl:ip:{ip}"),
            Bucket::Key(id) => format!("chatgate:rl:key:{id}"),
        };
        let interval_us = u64::try_from(rate.emission_interval().as_micros()).unwrap_or(u64::MAX);
        let mut invocation = self.script.key(key);
        invocation.arg(interval_us).arg(rate.burst.get());
        let call = invocation.invoke_async::<u64>(&mut conn);
        match tokio::time::timeout(CHECK_TIMEOUT, call).await {
            Ok(Ok(0)) => Ok(Decision::Allow),
            Ok(Ok(wait_us)) => Ok(Decision::Deny {
                retry_after: Duration::from_micros(wait_us),
            }),
            Ok(Err(_)) | Err(_) => Err(()),
        }
    }

    fn mark(&self, healthy: bool) {
        if self.healthy.swap(healthy, Ordering::Relaxed) != healthy {
            if healthy {
                tracing::info!("redis reachable again: shared rate limits restored");
            } else {
                let fallback = match self.on_error {
                    OnRedisError::Local => "per-replica limits",
                    OnRedisError::Deny => "refusing /api/v1 requests",
                };
                tracing::warn!(
                    fallback,
                    "redis unreachable: shared rate limits unavailable"
                );
            }
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
                Ok(decision) => {
                    self.mark(true);
                    decision
                }
                Err(()) => {
                    self.metrics.state_error();
                    self.mark(false);
                    match self.on_error {
                        OnRedisError::Local => self.local.check_now(bucket),
                        OnRedisError::Deny => Decision::Unavailable,
                    }
                }
            }
        }
        .boxed()
    }

    fn degraded(&self) -> Option<&'static str> {
        (!self.healthy.load(Ordering::Relaxed)).then_some("redis_unreachable")
    }
}
