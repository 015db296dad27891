//! Spend shared by every replica: counters in Redis on the shared
//! connection. One Lua script adds an answer's spend to all its counters
//! atomically (INCRBY for tokens, INCRBYFLOAT for USD) and sets each key to
//! expire after its window; a check is one MGET. When Redis is unreachable,
//! `on_redis_error = "local"` counts per replica (each against the full cap),
//! `"deny"` refuses.

use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::{Counter, MemorySpend, SpendStore, Unavailable, Unit};
use crate::config::OnRedisError;
use crate::redis_link::RedisLink;

/// ARGV per key: amount, `t` (tokens) or `u` (USD), seconds to live.
/// Returns the totals after, as strings (Lua numbers would lose the fraction).
const ADD: &str = r"
local out = {}
for i, key in ipairs(KEYS) do
  local amount = ARGV[i * 3 - 2]
  local v
  if ARGV[i * 3 - 1] == 't' then
    v = redis.call('INCRBY', key, amount)
  else
    v = redis.call('INCRBYFLOAT', key, amount)
  end
  redis.call('EXPIRE', key, ARGV[i * 3])
  out[i] = tostring(v)
end
return out
";

/// Keys outlive their window by this much (clock skew between replicas).
const GRACE_SECS: u64 = 3600;

pub struct RedisSpend {
    link: Arc<RedisLink>,
    script: redis::Script,
    local: MemorySpend,
}

impl RedisSpend {
    pub fn new(link: Arc<RedisLink>) -> Self {
        Self {
            link,
            script: redis::Script::new(ADD),
            local: MemorySpend::new(),
        }
    }

    fn parse(values: Vec<Option<String>>) -> Vec<f64> {
        values
            .into_iter()
            .map(|v| v.and_then(|s| s.parse().ok()).unwrap_or(0.0))
            .collect()
    }
}

impl SpendStore for RedisSpend {
    fn read<'a>(&'a self, counters: &'a [Counter]) -> BoxFuture<'a, Result<Vec<f64>, Unavailable>> {
        async move {
            let keys: Vec<&str> = counters.iter().map(|c| c.key.as_str()).collect();
            let shared = self
                .link
                .run(|mut conn| async move {
                    redis::cmd("MGET")
                        .arg(&keys)
                        .query_async::<Vec<Option<String>>>(&mut conn)
                        .await
                })
                .await;
            match (shared, self.link.on_error()) {
                (Some(values), _) => Ok(Self::parse(values)),
                (None, OnRedisError::Local) => Ok(self.local.read_now(counters)),
                (None, OnRedisError::Deny) => Err(Unavailable),
            }
        }
        .boxed()
    }

    fn add<'a>(
        &'a self,
        counters: &'a [Counter],
        amounts: &'a [f64],
    ) -> BoxFuture<'a, Result<Vec<f64>, Unavailable>> {
        async move {
            let mut invocation = self.script.prepare_invoke();
            for (c, amount) in counters.iter().zip(amounts) {
                invocation.key(&c.key);
                match c.unit {
                    // Token amounts are whole numbers.
                    Unit::Tokens => invocation.arg(format!("{amount:.0}")).arg("t"),
                    Unit::Usd => invocation.arg(format!("{amount:.12}")).arg("u"),
                };
                invocation.arg(c.ttl.as_secs() + GRACE_SECS);
            }
            let shared = self
                .link
                .run(|mut conn| async move {
                    invocation
                        .invoke_async::<Vec<Option<String>>>(&mut conn)
                        .await
                })
                .await;
            match (shared, self.link.on_error()) {
                (Some(values), _) => Ok(Self::parse(values)),
                (None, OnRedisError::Local) => Ok(self.local.add_now(counters, amounts)),
                (None, OnRedisError::Deny) => Err(Unavailable),
            }
        }
        .boxed()
    }
}
