//! Config of a model's canary variant (`[models.<name>.canary]`): checked
//! types parsed once at deserialization, so a percent of 120 or an unknown
//! sticky mode never reaches the app.

use std::num::NonZeroU32;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::values::{self, Ratio, TargetRef};

/// A share of a model's traffic, 0–100.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Percent(f64);

impl Percent {
    pub const ZERO: Percent = Percent(0.0);

    pub fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for Percent {
    type Error = String;
    fn try_from(v: f64) -> Result<Self, String> {
        if (0.0..=100.0).contains(&v) {
            Ok(Self(v))
        } else {
            Err(format!("expected a percent from 0 to 100, got {v}"))
        }
    }
}

impl From<Percent> for f64 {
    fn from(p: Percent) -> f64 {
        p.0
    }
}

/// Whose requests stay on one variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sticky {
    /// The end user (a verified subject, else the request's `user`), else the key id.
    #[default]
    User,
    /// The client key id.
    Key,
    /// Each request on its own.
    Request,
}

/// `[models.<name>.canary]`: what is absent is taken from the model.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<TargetRef>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<NonZeroU32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_message: Option<String>,
    pub percent: Percent,
    #[serde(default)]
    pub sticky: Sticky,
    /// Canary errors / canary requests in `rollback_window` above which the
    /// canary is switched off; `None`: never rolled back automatically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_error_rate: Option<Ratio>,
    #[serde(default = "default_min_requests")]
    pub rollback_min_requests: NonZeroU32,
    #[serde(default = "default_window", with = "values::duration")]
    pub rollback_window: Duration,
}

fn default_min_requests() -> NonZeroU32 {
    NonZeroU32::new(20).unwrap_or(NonZeroU32::MIN)
}

fn default_window() -> Duration {
    Duration::from_secs(300)
}
