//! Per-replica limits with governor's GCRA: one keyed limiter for client IPs
//! and one per JWT IdP with a per-subject rate, keyed by `user_hash` (stale
//! entries of both evicted on a timer, so memory stays bounded), and one
//! direct limiter per client key that has a `requests_per_minute`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt, ready};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::{Bucket, Decision, Limiter, Rate};

/// How often idle IP buckets are dropped.
const EVICTION_PERIOD: Duration = Duration::from_secs(60);

pub struct MemoryLimiter {
    /// Shared (`Arc`) so a config reload that keeps a rate keeps its buckets.
    ips: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    ip_rate: Rate,
    keys: HashMap<String, (Rate, Arc<DefaultDirectRateLimiter>)>,
    /// Per IdP: one bucket per end user (`user_hash`). `auth.jwt` needs a
    /// restart, so a reload hands these over unchanged.
    users: Arc<HashMap<String, DefaultKeyedRateLimiter<String>>>,
    clock: DefaultClock,
}

fn quota(rate: Rate) -> Quota {
    Quota::per_minute(rate.per_minute).allow_burst(rate.burst)
}

impl MemoryLimiter {
    /// `keys`: the rate of every client key id that has one.
    pub fn new(ip_rate: Rate, keys: impl IntoIterator<Item = (String, Rate)>) -> Arc<Self> {
        Self::with_users(ip_rate, keys, [])
    }

    /// `users`: the per-subject rate of every JWT IdP that has one.
    pub fn with_users(
        ip_rate: Rate,
        keys: impl IntoIterator<Item = (String, Rate)>,
        users: impl IntoIterator<Item = (String, Rate)>,
    ) -> Arc<Self> {
        let keys = keys
            .into_iter()
            .map(|(id, rate)| (id, (rate, Arc::new(RateLimiter::direct(quota(rate))))))
            .collect();
        let users = users
            .into_iter()
            .map(|(idp, rate)| (idp, RateLimiter::keyed(quota(rate))))
            .collect();
        Arc::new(Self {
            ips: Arc::new(RateLimiter::keyed(quota(ip_rate))),
            ip_rate,
            keys,
            users: Arc::new(users),
            clock: DefaultClock::default(),
        })
    }

    /// A limiter with new rates (after a config reload) that keeps the
    /// buckets of every rate that did not change: the IP buckets when the
    /// per-IP rate is the same, each key's bucket when its rate is. Evicts
    /// on its own timer, like the one it replaces.
    pub fn reconfigured(&self, ip_rate: Rate, keys: HashMap<String, Rate>) -> Arc<Self> {
        let ips = if ip_rate == self.ip_rate {
            Arc::clone(&self.ips)
        } else {
            Arc::new(RateLimiter::keyed(quota(ip_rate)))
        };
        let keys = keys
            .into_iter()
            .map(|(id, rate)| {
                let bucket = match self.keys.get(&id) {
                    Some((old, bucket)) if *old == rate => Arc::clone(bucket),
                    _ => Arc::new(RateLimiter::direct(quota(rate))),
                };
                (id, (rate, bucket))
            })
            .collect();
        let limiter = Arc::new(Self {
            ips,
            ip_rate,
            keys,
            users: Arc::clone(&self.users),
            clock: DefaultClock::default(),
        });
        limiter.spawn_eviction();
        limiter
    }

    /// Synchronous check, also used by the Redis backend's local fallback.
    pub fn check_now(&self, bucket: Bucket<'_>) -> Decision {
        let result = match bucket {
            Bucket::Ip(ip) => self.ips.check_key(&ip),
            Bucket::Key(id) => match self.keys.get(id) {
                Some((_, limiter)) => limiter.check(),
                None => return Decision::Allow,
            },
            Bucket::User { idp, user } => match self.users.get(idp) {
                Some(limiter) => limiter.check_key(&user.to_owned()),
                None => return Decision::Allow,
            },
        };
        match result {
            Ok(()) => Decision::Allow,
            Err(not_until) => Decision::Deny {
                retry_after: not_until.wait_time_from(self.clock.now()),
            },
        }
    }

    /// Number of client IPs currently tracked.
    pub fn tracked_ips(&self) -> usize {
        self.ips.len()
    }

    /// Number of end users currently tracked, over every IdP.
    pub fn tracked_users(&self) -> usize {
        self.users.values().map(|l| l.len()).sum()
    }

    /// Drops IP and end-user buckets that are back to full, and the memory they held.
    pub fn evict_idle(&self) {
        self.ips.retain_recent();
        self.ips.shrink_to_fit();
        for users in self.users.values() {
            users.retain_recent();
            users.shrink_to_fit();
        }
    }

    /// Evicts on a timer for as long as the limiter lives.
    pub fn spawn_eviction(self: &Arc<Self>) {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(EVICTION_PERIOD);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(limiter) = weak.upgrade() else { break };
                limiter.evict_idle();
            }
        });
    }
}

impl Limiter for MemoryLimiter {
    fn check<'a>(&'a self, bucket: Bucket<'a>) -> BoxFuture<'a, Decision> {
        ready(self.check_now(bucket)).boxed()
    }

    fn reconfigure(&self, ip_rate: Rate, key_rates: HashMap<String, Rate>) -> Arc<dyn Limiter> {
        self.reconfigured(ip_rate, key_rates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_minute: u32, burst: u32) -> Rate {
        Rate::new(per_minute, burst).unwrap_or(Rate {
            per_minute: std::num::NonZeroU32::MIN,
            burst: std::num::NonZeroU32::MIN,
        })
    }

    #[test]
    fn ip_bucket_allows_the_burst_then_denies_with_a_wait() {
        let l = MemoryLimiter::new(rate(60, 3), []);
        let ip: IpAddr = [10, 0, 0, 1].into();
        for _ in 0..3 {
            assert_eq!(l.check_now(Bucket::Ip(ip)), Decision::Allow);
        }
        match l.check_now(Bucket::Ip(ip)) {
            Decision::Deny { retry_after } => {
                assert!(retry_after <= Duration::from_secs(1) && retry_after > Duration::ZERO)
            }
            other => panic!("expected a denial, got {other:?}"),
        }
        assert_eq!(
            l.check_now(Bucket::Ip([10, 0, 0, 2].into())),
            Decision::Allow,
            "other IPs have their own bucket"
        );
    }

    #[test]
    fn keys_without_a_rate_are_unlimited() {
        let l = MemoryLimiter::new(rate(60, 1), [("limited".to_owned(), rate(60, 1))]);
        assert_eq!(l.check_now(Bucket::Key("limited")), Decision::Allow);
        assert!(matches!(
            l.check_now(Bucket::Key("limited")),
            Decision::Deny { .. }
        ));
        for _ in 0..100 {
            assert_eq!(l.check_now(Bucket::Key("free")), Decision::Allow);
        }
    }

    #[test]
    fn each_end_user_has_a_bucket_and_idle_ones_are_evicted() {
        let l = MemoryLimiter::with_users(rate(60, 100), [], [("idp".to_owned(), rate(6000, 1))]);
        let alice = Bucket::User {
            idp: "idp",
            user: "a1",
        };
        assert_eq!(l.check_now(alice), Decision::Allow);
        assert!(matches!(l.check_now(alice), Decision::Deny { .. }));
        assert_eq!(
            l.check_now(Bucket::User {
                idp: "idp",
                user: "b2"
            }),
            Decision::Allow
        );
        assert_eq!(
            l.check_now(Bucket::User {
                idp: "other",
                user: "a1"
            }),
            Decision::Allow,
            "an IdP without a per-subject rate is unlimited"
        );
        assert_eq!(l.tracked_users(), 2);
        // 6000/min refills in 10 ms; wait until both buckets are full again.
        std::thread::sleep(Duration::from_millis(50));
        l.evict_idle();
        assert_eq!(l.tracked_users(), 0);
    }
}
