//! Rate limiting behind one small trait, so the memory backend (governor, per
//! replica) and the Redis backend (shared by every replica) are interchangeable.

mod memory;
mod redis;

pub use memory::MemoryLimiter;
pub use redis::RedisLimiter;

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use futures_util::future::BoxFuture;

/// Which bucket a request draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket<'a> {
    Ip(IpAddr),
    /// A client key, by its id.
    Key(&'a str),
}

impl Bucket<'_> {
    /// The `scope` label of `chatgate_rate_limited_total`.
    pub fn scope(&self) -> &'static str {
        match self {
            Bucket::Ip(_) => "ip",
            Bucket::Key(_) => "key",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Refused; the next request would pass after this long.
    Deny {
        retry_after: Duration,
    },
    /// The shared state cannot be reached and the config says to refuse.
    Unavailable,
}

/// A GCRA rate: `burst` at once, refilled at `per_minute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_minute: NonZeroU32,
    pub burst: NonZeroU32,
}

impl Rate {
    /// `None` when either number is zero (validation refuses that earlier).
    pub fn new(per_minute: u32, burst: u32) -> Option<Self> {
        Some(Self {
            per_minute: NonZeroU32::new(per_minute)?,
            burst: NonZeroU32::new(burst)?,
        })
    }

    /// The time between two refills.
    pub fn emission_interval(&self) -> Duration {
        Duration::from_secs(60) / self.per_minute.get()
    }
}

/// Decides whether a request may pass. Backends know every bucket's rate.
pub trait Limiter: Send + Sync {
    fn check<'a>(&'a self, bucket: Bucket<'a>) -> BoxFuture<'a, Decision>;
    /// `Some(reason)` while the limiter runs degraded (e.g. Redis unreachable).
    fn degraded(&self) -> Option<&'static str> {
        None
    }
}
