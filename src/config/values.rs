//! Checked config values: each parses its text once, at deserialization, so
//! what the app is built from is valid by type (`"provider:model"` is split
//! here and nowhere else; a base URL is an http(s) `Url`; a CORS origin is a
//! header value; a log level is a filter that enables something).

use std::fmt;
use std::num::NonZeroU32;

use http::HeaderValue;
use serde::{Deserialize, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// A nonzero literal, checked at compile time when used in a `const`.
pub(crate) const fn nonzero(n: u32) -> NonZeroU32 {
    match NonZeroU32::new(n) {
        Some(v) => v,
        None => panic!("zero is not a nonzero value"),
    }
}

/// How many leading bits of an IPv6 address pick its per-IP bucket (1..=128).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Ipv6Prefix(u8);

impl Ipv6Prefix {
    pub fn bits(self) -> u8 {
        self.0
    }
}

impl Default for Ipv6Prefix {
    /// One subscriber usually holds a whole /64.
    fn default() -> Self {
        Self(64)
    }
}

impl TryFrom<u8> for Ipv6Prefix {
    type Error = String;
    fn try_from(bits: u8) -> Result<Self, String> {
        if (1..=128).contains(&bits) {
            Ok(Self(bits))
        } else {
            Err(format!(
                "expected a prefix length from 1 to 128, got {bits}"
            ))
        }
    }
}

impl From<Ipv6Prefix> for u8 {
    fn from(p: Ipv6Prefix) -> u8 {
        p.0
    }
}

/// One entry of a model's `targets`: `provider:model`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct TargetRef {
    /// The provider's config name (the key under `[providers]`).
    pub provider: String,
    /// The model sent upstream.
    pub model: String,
}

impl TryFrom<String> for TargetRef {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        match text.split_once(':') {
            Some((provider, model)) if !provider.is_empty() && !model.is_empty() => Ok(Self {
                provider: provider.to_owned(),
                model: model.to_owned(),
            }),
            _ => Err(format!(
                "expected `provider:model` such as \"openai:gpt-4o-mini\", got {text:?}"
            )),
        }
    }
}

impl fmt::Display for TargetRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.provider, self.model)
    }
}

impl Serialize for TargetRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl PartialEq<&str> for TargetRef {
    fn eq(&self, other: &&str) -> bool {
        other.split_once(':') == Some((self.provider.as_str(), self.model.as_str()))
    }
}

/// A provider API's base URL (with its version, e.g. `https://api.openai.com/v1`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct BaseUrl(reqwest::Url);

impl BaseUrl {
    /// The URL of `path` under this base (a trailing `/` on the base is tolerated).
    pub fn join(&self, path: &str) -> reqwest::Url {
        let mut url = self.0.clone();
        let joined = format!("{}/{path}", url.path().trim_end_matches('/'));
        url.set_path(&joined);
        url
    }
}

impl TryFrom<String> for BaseUrl {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        match reqwest::Url::parse(&text) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(Self(url)),
            _ => Err(format!(
                "expected an http(s) URL such as \"https://api.openai.com/v1\", got {text:?}"
            )),
        }
    }
}

/// The URL as text, without the trailing `/` that parsing adds to a bare host.
impl std::ops::Deref for BaseUrl {
    type Target = str;
    fn deref(&self) -> &str {
        let s = self.0.as_str();
        if self.0.path() == "/" && self.0.query().is_none() {
            s.trim_end_matches('/')
        } else {
            s
        }
    }
}

impl Serialize for BaseUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self)
    }
}

/// An exact CORS origin such as `https://app.example.com`, ready as a header value.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Origin(HeaderValue);

impl Origin {
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }
}

impl TryFrom<String> for Origin {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let well_formed =
            (text.starts_with("http://") || text.starts_with("https://")) && !text.ends_with('/');
        match HeaderValue::from_str(&text) {
            Ok(value) if well_formed => Ok(Self(value)),
            _ => Err(format!(
                "expected an origin such as \"https://app.example.com\" (no path, no trailing /), got {text:?}"
            )),
        }
    }
}

impl Serialize for Origin {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.to_str().unwrap_or_default())
    }
}

/// The levels a `logging.level` directive may end in.
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// `logging.level`: a level (`info`) or `EnvFilter` directives (`info,chatgate=debug`).
/// A bare word that is not a level (`verbose`, `warnn`) is refused: `EnvFilter`
/// would read it as a target name and silently turn every other log off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LogLevel(String);

impl LogLevel {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for LogLevel {
    fn default() -> Self {
        Self("info".into())
    }
}

impl From<LogLevel> for String {
    fn from(level: LogLevel) -> String {
        level.0
    }
}

impl TryFrom<String> for LogLevel {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        for directive in text.split(',').map(str::trim) {
            // `target=level` and `target[span]=level` end in a level; a bare word must be one.
            let level = directive.rsplit_once('=').map_or(directive, |(_, l)| l);
            if !directive.contains('[') && !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
                let hint = super::problem::did_you_mean(level, &LEVELS)
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                return Err(format!(
                    "expected a level (off, error, warn, info, debug, trace) or directives such as \"info,chatgate=debug\", got {text:?}{hint}"
                ));
            }
        }
        match tracing_subscriber::EnvFilter::try_new(&text) {
            Ok(_) => Ok(Self(text)),
            Err(e) => Err(format!("{text:?} is not a log filter: {e}")),
        }
    }
}

/// A client key's SHA-256 digest. Never shown: its `Debug` is `[REDACTED]`.
#[derive(Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    /// The digest of `key`.
    pub fn of(key: &str) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(super::secrets::REDACTED)
    }
}

impl TryFrom<String> for KeyHash {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        // The value is (close to) a secret: say what is wrong without echoing it.
        hex::decode(text.trim())
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .map(Self)
            .ok_or_else(|| "expected 64 hex characters (see `chatgate hash-key`)".to_owned())
    }
}

/// Durations as human-readable strings (`"250ms"`, `"20s"`, `"5m"`), with an
/// error that shows one.
pub(crate) mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        humantime_serde::serialize(d, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Text {
            Str(String),
            Other(serde::de::IgnoredAny),
        }
        let got = match Text::deserialize(d)? {
            Text::Str(s) => match humantime_serde::re::humantime::parse_duration(&s) {
                Ok(duration) => return Ok(duration),
                Err(_) => format!("{s:?}"),
            },
            Text::Other(_) => "a value that is not a string".to_owned(),
        };
        Err(serde::de::Error::custom(format!(
            "expected a duration such as \"60s\" or \"250ms\", got {got}"
        )))
    }
}

/// [`duration`] for an optional key.
pub(crate) mod duration_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::duration::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::duration")] Duration);
        Ok(Some(Wrap::deserialize(d)?.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_splits_at_the_first_colon_once() {
        let t = TargetRef::try_from("local:llama3:8b".to_owned()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (t.provider.as_str(), t.model.as_str()),
            ("local", "llama3:8b")
        );
        assert!(TargetRef::try_from("nocolon".to_owned()).is_err());
        assert!(TargetRef::try_from(":m".to_owned()).is_err());
    }

    #[test]
    fn a_base_url_joins_paths_with_or_without_a_trailing_slash() {
        for base in ["https://api.openai.com/v1", "https://api.openai.com/v1/"] {
            let b = BaseUrl::try_from(base.to_owned()).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                b.join("chat/completions").as_str(),
                "https://api.openai.com/v1/chat/completions"
            );
        }
        assert!(BaseUrl::try_from("ftp://x/v1".to_owned()).is_err());
    }

    #[test]
    fn log_levels_that_enable_nothing_are_refused() {
        for ok in [
            "info",
            "WARN",
            "info,chatgate=debug",
            "chatgate::providers=trace",
            "off",
        ] {
            assert!(LogLevel::try_from(ok.to_owned()).is_ok(), "{ok}");
        }
        for bad in ["verbose", "warnn", "info,chatgate"] {
            assert!(LogLevel::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }
}

/// `tracing.otlp_endpoint`: empty (tracing off) or the collector's http(s)
/// base URL; spans go to `<endpoint>/v1/traces`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct OtlpEndpoint(Option<BaseUrl>);

impl OtlpEndpoint {
    /// Where spans are POSTed, when tracing is on.
    pub fn traces_url(&self) -> Option<reqwest::Url> {
        self.0.as_ref().map(|base| base.join("v1/traces"))
    }
}

impl TryFrom<String> for OtlpEndpoint {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Self(None));
        }
        BaseUrl::try_from(text)
            .map(|url| Self(Some(url)))
            .map_err(|_| {
                "expected \"\" (off) or a collector URL such as \"http://collector:4318\"".into()
            })
    }
}

impl Serialize for OtlpEndpoint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_deref().unwrap_or(""))
    }
}

/// A fraction from 0.0 to 1.0 (`tracing.sample_ratio`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Ratio(f64);

impl Ratio {
    pub const ONE: Ratio = Ratio(1.0);

    pub fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for Ratio {
    type Error = String;
    fn try_from(value: f64) -> Result<Self, String> {
        if (0.0..=1.0).contains(&value) {
            Ok(Self(value))
        } else {
            Err(format!("expected a number from 0.0 to 1.0, got {value}"))
        }
    }
}

impl From<Ratio> for f64 {
    fn from(r: Ratio) -> f64 {
        r.0
    }
}
