//! Config of cost control (prices, budgets, the response cache, FAQ rules):
//! checked types, parsed once at deserialization, so a negative price, an
//! alert fraction of 3 or a regex that does not compile never reaches the app.

use std::num::NonZeroU64;

use serde::{Deserialize, Serialize, Serializer};

/// USD per million tokens, by direction: `{ input = 0.15, output = 0.60 }`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "RawPrice")]
pub struct Price {
    pub input: f64,
    pub output: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrice {
    input: f64,
    output: f64,
}

impl TryFrom<RawPrice> for Price {
    type Error = String;
    fn try_from(raw: RawPrice) -> Result<Self, String> {
        for (name, v) in [("input", raw.input), ("output", raw.output)] {
            if !v.is_finite() || v < 0.0 {
                return Err(format!(
                    "`{name}` must be a number of USD per million tokens, at least 0 (got {v})"
                ));
            }
        }
        Ok(Self {
            input: raw.input,
            output: raw.output,
        })
    }
}

/// A USD budget cap: a finite number above 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Usd(f64);

impl Usd {
    pub fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for Usd {
    type Error = String;
    fn try_from(v: f64) -> Result<Self, String> {
        if v.is_finite() && v > 0.0 {
            Ok(Self(v))
        } else {
            Err(format!("expected an amount of USD above 0, got {v}"))
        }
    }
}

impl From<Usd> for f64 {
    fn from(u: Usd) -> f64 {
        u.0
    }
}

/// A fraction of a budget at which an alert is raised: above 0, at most 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Fraction(f64);

impl Fraction {
    pub fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for Fraction {
    type Error = String;
    fn try_from(v: f64) -> Result<Self, String> {
        if v > 0.0 && v <= 1.0 {
            Ok(Self(v))
        } else {
            Err(format!(
                "expected a fraction above 0 and at most 1 (0.8 = 80 %), got {v}"
            ))
        }
    }
}

impl From<Fraction> for f64 {
    fn from(f: Fraction) -> f64 {
        f.0
    }
}

/// The caps of one scope, each optional, per UTC day and month.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Caps {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usd_per_day: Option<Usd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usd_per_month: Option<Usd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_day: Option<NonZeroU64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_month: Option<NonZeroU64>,
}

impl Caps {
    pub fn has_usd(&self) -> bool {
        self.usd_per_day.is_some() || self.usd_per_month.is_some()
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// `[budgets]`: the whole gateway's caps, the alert fractions, and the
/// per-end-user token cap that applies within every key.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetsConfig {
    pub usd_per_day: Option<Usd>,
    pub usd_per_month: Option<Usd>,
    pub tokens_per_day: Option<NonZeroU64>,
    pub tokens_per_month: Option<NonZeroU64>,
    pub alert_at: Vec<Fraction>,
    pub per_user_tokens_per_day: Option<NonZeroU64>,
}

impl BudgetsConfig {
    pub fn caps(&self) -> Caps {
        Caps {
            usd_per_day: self.usd_per_day,
            usd_per_month: self.usd_per_month,
            tokens_per_day: self.tokens_per_day,
            tokens_per_month: self.tokens_per_month,
        }
    }
}

/// `[cache]`: bounds of the memory backend's response cache.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    pub max_entries: NonZeroU64,
    pub max_bytes: NonZeroU64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_entries: nz64(10_000),
            // 64 MiB of cached answers per replica.
            max_bytes: nz64(64 * 1024 * 1024),
        }
    }
}

const fn nz64(n: u64) -> NonZeroU64 {
    match NonZeroU64::new(n) {
        Some(v) => v,
        None => NonZeroU64::MIN,
    }
}

/// A FAQ rule's regex, compiled when the config is read.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct FaqRegex(pub regex::Regex);

impl TryFrom<String> for FaqRegex {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        // A bounded compiled size: a rule runs on every chat's last message.
        regex::RegexBuilder::new(&s)
            .size_limit(1 << 20)
            .build()
            .map(Self)
            .map_err(|e| format!("invalid regex: {e}"))
    }
}

impl Serialize for FaqRegex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

/// One `[[faq]]` rule: phrases or a regex, the canned answer, and optionally
/// the models it applies to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaqRule {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phrases: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<FaqRegex>,
    pub answer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
}

/// How FAQ text is compared: lower-cased, every character that is not a
/// letter or digit turned into a space, whitespace collapsed (so
/// "Delivery-hours?!" and "delivery hours" are the same words).
pub fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().flat_map(char::to_lowercase));
    }
    out
}
