//! Rate limiting behind one small trait, so the memory backend (governor, per
//! replica) and the Redis backend (shared by every replica) are interchangeable.

mod memory;
mod redis;

pub use memory::MemoryLimiter;
pub use redis::RedisLimiter;

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use ipnet::Ipv6Net;

use crate::config::{Config, Ipv6Prefix};

/// Which bucket a request draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket<'a> {
    /// A client IP, masked by [`Bucket::client_ip`].
    Ip(IpAddr),
    /// A client key, by its id.
    Key(&'a str),
    /// An end user of a JWT IdP: the IdP's name and the subject's `user_hash`.
    User { idp: &'a str, user: &'a str },
}

impl Bucket<'_> {
    /// The bucket of a client IP: IPv4 per address, IPv6 per network of
    /// `ipv6_prefix` bits (an IPv6 holder has a whole /64 or more to spread
    /// over). Every backend keys by this, so the masking happens once.
    pub fn client_ip(ip: IpAddr, ipv6_prefix: Ipv6Prefix) -> Self {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let net = Ipv6Net::new(v6, ipv6_prefix.bits()).map_or(v6, |net| net.trunc().addr());
                Bucket::Ip(IpAddr::V6(net))
            }
            v4 => Bucket::Ip(v4),
        }
    }

    /// The `scope` label of `chatgate_rate_limited_total`.
    pub fn scope(&self) -> &'static str {
        match self {
            Bucket::Ip(_) => "ip",
            Bucket::Key(_) => "key",
            Bucket::User { .. } => "user",
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

/// The per-IP rate of `config`.
pub fn ip_rate(config: &Config) -> Rate {
    let rl = &config.rate_limit;
    Rate {
        per_minute: rl.per_ip_requests_per_minute,
        burst: rl.per_ip_burst,
    }
}

/// The rate of every client key that has one.
pub fn key_rates(config: &Config) -> HashMap<String, Rate> {
    config
        .auth
        .keys
        .iter()
        .filter_map(|(id, k)| {
            // Keys without `requests_per_minute` have no per-key limit.
            let per_minute = k.requests_per_minute?;
            let burst = k.burst.unwrap_or(per_minute);
            Some((id.clone(), Rate { per_minute, burst }))
        })
        .collect()
}

/// Decides whether a request may pass. Backends know every bucket's rate.
pub trait Limiter: Send + Sync {
    fn check<'a>(&'a self, bucket: Bucket<'a>) -> BoxFuture<'a, Decision>;
    /// `Some(reason)` while the limiter runs degraded (e.g. Redis unreachable).
    fn degraded(&self) -> Option<&'static str> {
        None
    }
    /// The same backend with new rates (a config reload): the state of every
    /// bucket whose rate did not change carries over.
    fn reconfigure(&self, ip_rate: Rate, key_rates: HashMap<String, Rate>) -> Arc<dyn Limiter>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse()
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    }

    fn prefix(bits: u8) -> Ipv6Prefix {
        Ipv6Prefix::try_from(bits).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn ipv6_is_keyed_by_its_prefix_and_ipv4_by_its_address() {
        assert_eq!(
            Bucket::client_ip(ip("2001:db8:1:2:aaaa::1"), prefix(64)),
            Bucket::Ip(ip("2001:db8:1:2::"))
        );
        assert_eq!(
            Bucket::client_ip(ip("2001:db8:1:2:aaaa::1"), prefix(48)),
            Bucket::Ip(ip("2001:db8:1::"))
        );
        assert_eq!(
            Bucket::client_ip(ip("2001:db8::7"), prefix(128)),
            Bucket::Ip(ip("2001:db8::7"))
        );
        assert_eq!(
            Bucket::client_ip(ip("198.51.100.7"), prefix(64)),
            Bucket::Ip(ip("198.51.100.7"))
        );
        assert_eq!(
            Bucket::client_ip(ip("::ffff:198.51.100.7"), prefix(64)),
            Bucket::Ip(ip("198.51.100.7")),
            "IPv4-mapped addresses are IPv4"
        );
    }
}
