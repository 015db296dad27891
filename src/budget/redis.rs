//! Spend shared by every replica: counters in Redis on the shared
//! connection. One Lua script adds an answer's spend to all its counters
//! atomically (INCRBY for tokens, INCRBYFLOAT for USD) and sets each key to
//! expire after its window; a check is one MGET. When Redis is unreachable,
//! `on_redis_error = "local"` counts per replica (each against the full cap),
//! `"deny"` refuses.
//!
//! On a Redis Cluster a script may only touch keys of one slot: an add runs
//! one script per scope (its hash tag), atomic per scope; the crate splits
//! the MGET by slot itself.

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
            let keys: Vec<&str> = counters.iter().map(|c| &*c.key).collect();
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
            let mut totals = vec![0.0; counters.len()];
            let mut shared = Some(());
            for group in slot_groups(counters, self.link.is_cluster()) {
                let mut invocation = self.script.prepare_invoke();
                for &i in &group {
                    let c = &counters[i];
                    invocation.key(c.key.as_ref());
                    match c.unit {
                        // Token amounts are whole numbers.
                        Unit::Tokens => invocation.arg(format!("{:.0}", amounts[i])).arg("t"),
                        Unit::Usd => invocation.arg(format!("{:.12}", amounts[i])).arg("u"),
                    };
                    invocation.arg(c.ttl.as_secs() + GRACE_SECS);
                }
                let values = self
                    .link
                    .run(|mut conn| async move {
                        invocation
                            .invoke_async::<Vec<Option<String>>>(&mut conn)
                            .await
                    })
                    .await;
                // A group that failed after others landed: the fallback
                // counts the whole answer (as when Redis fails mid-add alone).
                let Some(values) = values else {
                    shared = None;
                    break;
                };
                for (&i, v) in group.iter().zip(Self::parse(values)) {
                    totals[i] = v;
                }
            }
            let shared = shared.map(|()| totals);
            match (shared, self.link.on_error()) {
                (Some(totals), _) => Ok(totals),
                (None, OnRedisError::Local) => Ok(self.local.add_now(counters, amounts)),
                (None, OnRedisError::Deny) => Err(Unavailable),
            }
        }
        .boxed()
    }
}

/// The indexes of `counters` one script may take together: all of them on a
/// single server; on a cluster, those sharing a hash tag (`{…}`), in order.
fn slot_groups(counters: &[Counter], cluster: bool) -> Vec<Vec<usize>> {
    if !cluster {
        return vec![(0..counters.len()).collect()];
    }
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, c) in counters.iter().enumerate() {
        let tag = hash_tag(&c.key);
        match groups.iter_mut().find(|(t, _)| *t == tag) {
            Some((_, g)) => g.push(i),
            None => groups.push((tag, vec![i])),
        }
    }
    groups.into_iter().map(|(_, g)| g).collect()
}

/// The part of `key` Redis Cluster hashes: between the first `{` and the next
/// `}` when non-empty, else the whole key.
fn hash_tag(key: &str) -> &str {
    key.find('{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.find('}')
                .filter(|&close| close > 0)
                .map(|close| &rest[..close])
        })
        .unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn counter(key: &str) -> Counter {
        Counter {
            key: key.into(),
            unit: Unit::Usd,
            ttl: Duration::from_secs(60),
        }
    }

    #[test]
    fn a_cluster_add_takes_one_script_per_hash_tag_and_a_single_server_one_in_all() {
        let counters = [
            counter("chatgate:spend:{gateway}:day:d:usd"),
            counter("chatgate:spend:{key:a}:day:d:usd"),
            counter("chatgate:spend:{gateway}:month:m:usd"),
        ];
        assert_eq!(slot_groups(&counters, false), [vec![0, 1, 2]]);
        assert_eq!(slot_groups(&counters, true), [vec![0, 2], vec![1]]);
        assert_eq!(hash_tag("a{}b"), "a{}b");
    }
}
