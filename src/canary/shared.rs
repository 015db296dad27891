//! Admin percent overrides shared by every replica when `state.backend =
//! "redis"`: one string per model (`chatgate:canary:<model>` =
//! `<percent>:<nonce>`, `EX` one day) on the shared connection, and a poll
//! every second in its own task (never on a request's path).
//!
//! The nonce tells a new override from one already applied: a replica
//! applies each override once, so a local rollback is not undone by the
//! override it followed, and a reload (whose new rollouts inherit what was
//! applied) is not overridden again by an old value. The TTL bounds how long
//! a forgotten override reaches replicas that start later; a replica that
//! applied it keeps it until its next reload, as an override without Redis does.

use std::sync::Arc;
use std::time::Duration;

use super::Rollout;
use crate::redis_link::RedisLink;

/// How long an override stays in Redis for replicas that start later.
const TTL: Duration = Duration::from_secs(24 * 3600);
/// How often a replica looks for new overrides.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

fn redis_key(model: &str) -> String {
    format!("chatgate:canary:{model}")
}

/// Where overrides are shared; `None` inside: this replica only.
#[derive(Clone, Default)]
pub struct Overrides {
    link: Option<Arc<RedisLink>>,
}

impl Overrides {
    pub fn new(link: Option<Arc<RedisLink>>) -> Self {
        Self { link }
    }

    pub fn is_shared(&self) -> bool {
        self.link.is_some()
    }

    /// Publishes `percent` for `model`; `false` when Redis did not take it
    /// (the override then holds on this replica only).
    pub async fn publish(&self, model: &str, percent: f64, nonce: u64) -> bool {
        let Some(link) = &self.link else {
            return false;
        };
        let (k, v) = (redis_key(model), format!("{percent}:{nonce}"));
        link.run(|mut conn| async move {
            redis::cmd("SET")
                .arg(k)
                .arg(v)
                .arg("EX")
                .arg(TTL.as_secs())
                .query_async::<()>(&mut conn)
                .await
        })
        .await
        .is_some()
    }

    /// The current override of each of `models` (`None`: none, or unreadable);
    /// `None` as a whole while Redis is unreachable.
    pub async fn read(&self, models: &[Arc<str>]) -> Option<Vec<Option<(f64, u64)>>> {
        let link = self.link.as_ref()?;
        if models.is_empty() {
            return Some(Vec::new());
        }
        let keys: Vec<String> = models.iter().map(|m| redis_key(m)).collect();
        let values = link
            .run(|mut conn| async move {
                redis::cmd("MGET")
                    .arg(keys)
                    .query_async::<Vec<Option<String>>>(&mut conn)
                    .await
            })
            .await?;
        Some(
            values
                .iter()
                .map(|v| v.as_deref().and_then(parse))
                .collect(),
        )
    }
}

impl Overrides {
    /// One poll: applies each new override to its rollout. Redis down:
    /// nothing changes (each replica keeps what it has).
    pub async fn poll(&self, rollouts: &[Arc<Rollout>]) {
        let models: Vec<Arc<str>> = rollouts.iter().map(|r| r.model().clone()).collect();
        let Some(values) = self.read(&models).await else {
            return;
        };
        for (rollout, value) in rollouts.iter().zip(values) {
            if let Some((percent, nonce)) = value {
                rollout.follow(percent, nonce);
            }
        }
    }
}

/// `<percent>:<nonce>`, the percent within 0–100.
fn parse(value: &str) -> Option<(f64, u64)> {
    let (percent, nonce) = value.split_once(':')?;
    let percent: f64 = percent.parse().ok()?;
    (0.0..=100.0)
        .contains(&percent)
        .then_some((percent, nonce.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn an_override_parses_only_with_a_percent_in_range_and_a_nonce() {
        assert_eq!(parse("12.5:7"), Some((12.5, 7)));
        for bad in ["", "12", "120:1", "-1:1", "x:1", "5:x"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
