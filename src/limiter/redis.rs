//! Limits shared by every replica: GCRA state in Redis, one atomic Lua round
//! trip per check, every key with a TTL. When Redis cannot be reached, either
//! per-replica limits take over (`on_redis_error = "local"`) or requests are
//! refused (`"deny"`); each transition is logged once, not per request.
//!
//! While Redis is down no request waits for it: checks answer from the
//! fallback at once and one background task reconnects (a fresh connection,
//! so a half-dead socket is never reused) until Redis answers again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};
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

/// How long one check may wait for Redis before the fallback answers.
const CHECK_TIMEOUT: Duration = Duration::from_millis(250);
/// Bound on one connection attempt (TCP connect and handshake).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause between connection attempts while Redis is unreachable: how soon
/// shared limits return after Redis does.
const RECONNECT_INTERVAL: Duration = Duration::from_millis(500);

/// The connection and its health, shared with the reconnect task.
struct Link {
    client: redis::Client,
    script: redis::Script,
    /// `Some` while Redis is usable; the number tells connections apart, so a
    /// late failure on a replaced connection cannot mark the new one down.
    conn: RwLock<Option<(u64, ConnectionManager)>>,
    /// Connections made so far (the next one's number).
    generation: AtomicU64,
    on_error: OnRedisError,
    metrics: Metrics,
}

impl Link {
    fn current(&self) -> Option<(u64, ConnectionManager)> {
        self.conn
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// One attempt: connect, authenticate and load the script.
    async fn connect(&self) -> Result<ConnectionManager, &'static str> {
        // No retries inside the manager: the reconnect task paces attempts.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(CHECK_TIMEOUT);
        let attempt = async {
            let mut conn = ConnectionManager::new_with_config(self.client.clone(), config).await?;
            self.script.load_async(&mut conn).await?;
            Ok::<_, redis::RedisError>(conn)
        };
        match tokio::time::timeout(CONNECT_TIMEOUT + CHECK_TIMEOUT, attempt).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(reason(&e)),
            Err(_) => Err("timeout"),
        }
    }

    fn install(&self, conn: ConnectionManager) {
        // Only the one reconnect task installs, so the count cannot race.
        let number = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        *self.conn.write().unwrap_or_else(PoisonError::into_inner) = Some((number, conn));
        if number == 1 {
            tracing::info!("connected to redis: shared rate limits active");
        } else {
            tracing::info!("redis reachable again: shared rate limits restored");
        }
    }

    /// Marks connection `number` failed. True when this call took it down
    /// (then the caller starts reconnecting); later failures change nothing.
    fn fail(&self, number: u64, why: &'static str) -> bool {
        let mut conn = self.conn.write().unwrap_or_else(PoisonError::into_inner);
        if conn.as_ref().is_none_or(|(n, _)| *n != number) {
            return false;
        }
        *conn = None;
        drop(conn);
        self.warn_down(why);
        true
    }

    fn warn_down(&self, why: &'static str) {
        let fallback = match self.on_error {
            OnRedisError::Local => "per-replica limits",
            OnRedisError::Deny => "refusing /api/v1 requests",
        };
        // The URL is a secret: name the failure, never the server.
        tracing::warn!(
            reason = why,
            fallback,
            "redis unreachable: shared rate limits unavailable"
        );
    }
}

/// Connects until it succeeds, for as long as the limiter lives. After a
/// failure the first attempt waits too, so a Redis that keeps failing (an
/// error reply on every call, say) costs one warning per interval, not per
/// request.
async fn reconnect(link: Weak<Link>, wait_first: bool) {
    let mut warned = false;
    if wait_first {
        tokio::time::sleep(RECONNECT_INTERVAL).await;
    }
    loop {
        let Some(l) = link.upgrade() else { return };
        match l.connect().await {
            Ok(conn) => return l.install(conn),
            Err(why) => {
                l.metrics.state_error();
                // At start-up nothing has been logged yet; after a failure
                // `fail` already said it.
                let never_connected = l.generation.load(Ordering::Relaxed) == 0;
                if never_connected && !warned {
                    l.warn_down(why);
                    warned = true;
                }
            }
        }
        drop(l);
        tokio::time::sleep(RECONNECT_INTERVAL).await;
    }
}

/// What went wrong, in words that never contain the URL.
fn reason(e: &redis::RedisError) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connection_refusal() {
        "connection refused"
    } else if e.is_connection_dropped() || e.is_io_error() {
        "connection lost"
    } else if e.kind() == redis::ErrorKind::AuthenticationFailed {
        "authentication failed"
    } else {
        "error reply"
    }
}

pub struct RedisLimiter {
    link: Arc<Link>,
    ip_rate: Rate,
    key_rates: HashMap<String, Rate>,
    /// Per-subject rate of each JWT IdP that has one.
    user_rates: HashMap<String, Rate>,
    local: Arc<MemoryLimiter>,
}

impl RedisLimiter {
    /// Starts connecting in the background (never blocks start-up); until
    /// connected, checks take the fallback. Fails only on a malformed URL.
    pub fn new(
        url: &SecretString,
        ip_rate: Rate,
        key_rates: HashMap<String, Rate>,
        user_rates: HashMap<String, Rate>,
        on_error: OnRedisError,
        metrics: Metrics,
    ) -> Result<Arc<Self>, redis::RedisError> {
        let client = redis::Client::open(url.expose_secret())?;
        let local = MemoryLimiter::with_users(ip_rate, key_rates.clone(), user_rates.clone());
        local.spawn_eviction();
        let link = Arc::new(Link {
            client,
            script: redis::Script::new(GCRA),
            conn: RwLock::new(None),
            generation: AtomicU64::new(0),
            on_error,
            metrics,
        });
        tokio::spawn(reconnect(Arc::downgrade(&link), false));
        Ok(Arc::new(Self {
            link,
            ip_rate,
            key_rates,
            user_rates,
            local,
        }))
    }

    fn rate(&self, bucket: Bucket<'_>) -> Option<Rate> {
        match bucket {
            Bucket::Ip(_) => Some(self.ip_rate),
            Bucket::Key(id) => self.key_rates.get(id).copied(),
            Bucket::User { idp, .. } => self.user_rates.get(idp).copied(),
        }
    }

    async fn shared(
        &self,
        conn: &mut ConnectionManager,
        bucket: Bucket<'_>,
        rate: Rate,
    ) -> Result<Decision, &'static str> {
        let key = match bucket {
            Bucket::Ip(ip) => format!("chatgate:rl:ip:{ip}"),
            Bucket::Key(id) => format!("chatgate:rl:key:{id}"),
            Bucket::User { idp, user } => format!("chatgate:rl:user:{idp}:{user}"),
        };
        let interval_us = u64::try_from(rate.emission_interval().as_micros()).unwrap_or(u64::MAX);
        let mut invocation = self.link.script.key(key);
        invocation.arg(interval_us).arg(rate.burst.get());
        let call = invocation.invoke_async::<u64>(conn);
        match tokio::time::timeout(CHECK_TIMEOUT, call).await {
            Ok(Ok(0)) => Ok(Decision::Allow),
            Ok(Ok(wait_us)) => Ok(Decision::Deny {
                retry_after: Duration::from_micros(wait_us),
            }),
            Ok(Err(e)) => Err(reason(&e)),
            Err(_) => Err("timeout"),
        }
    }

    fn fallback(&self, bucket: Bucket<'_>) -> Decision {
        match self.link.on_error {
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
            let Some((number, mut conn)) = self.link.current() else {
                return self.fallback(bucket);
            };
            match self.shared(&mut conn, bucket, rate).await {
                Ok(decision) => decision,
                Err(why) => {
                    self.link.metrics.state_error();
                    if self.link.fail(number, why) {
                        tokio::spawn(reconnect(Arc::downgrade(&self.link), true));
                    }
                    self.fallback(bucket)
                }
            }
        }
        .boxed()
    }

    fn degraded(&self) -> Option<&'static str> {
        self.link.current().is_none().then_some("redis_unreachable")
    }
}
