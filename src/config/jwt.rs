//! `[auth.jwt.<name>]`: JWT client auth against an IdP's JWKS. Values parse
//! into checked types here (an algorithm name is a `jsonwebtoken::Algorithm`,
//! never `none`); `check` resolves the HS secret, reads a `jwks_file` and
//! applies the cross-field rules, so the verifier is built from valid parts.

use std::fmt;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use secrecy::SecretString;
use serde::{Deserialize, Serialize, Serializer};

use super::env::Environment;
use super::secrets;
use super::values::duration;
use crate::jwt::jwks::{self, KeySet};

/// The algorithms `jsonwebtoken` verifies, by their JOSE names.
const SUPPORTED: &str = "RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA, \
                         HS256, HS384, HS512";

/// One entry of `algorithms`: a JOSE algorithm name that can be verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct JwtAlgorithm(pub Algorithm);

impl JwtAlgorithm {
    /// HS256/384/512: a shared secret, not a key of the JWKS.
    pub fn is_hmac(self) -> bool {
        matches!(
            self.0,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        )
    }
}

impl TryFrom<String> for JwtAlgorithm {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        if text.eq_ignore_ascii_case("none") {
            return Err("`none` (unsigned tokens) is never accepted".into());
        }
        text.parse::<Algorithm>()
            .map(Self)
            .map_err(|_| format!("expected one of {SUPPORTED}, got {text:?}"))
    }
}

impl Serialize for JwtAlgorithm {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:?}", self.0))
    }
}

/// A `jwks_url`: http(s) with a host.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct JwksUrl(pub reqwest::Url);

impl TryFrom<String> for JwksUrl {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        match reqwest::Url::parse(&text) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(Self(url)),
            _ => Err(format!(
                "expected an http(s) URL such as \"https://idp.example.com/.well-known/jwks.json\", got {text:?}"
            )),
        }
    }
}

/// `[auth.jwt.<name>]` as the layers spell it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJwt {
    #[serde(default)]
    jwks_file: Option<PathBuf>,
    #[serde(default)]
    jwks_url: Option<JwksUrl>,
    #[serde(default = "default_refresh", with = "duration")]
    jwks_refresh: Duration,
    issuer: String,
    audience: String,
    algorithms: Vec<JwtAlgorithm>,
    #[serde(default)]
    hs_secret_env: Option<String>,
    #[serde(default = "default_subject_claim")]
    subject_claim: String,
    #[serde(default)]
    requests_per_minute: Option<NonZeroU32>,
    #[serde(default = "default_leeway", with = "duration")]
    leeway: Duration,
}

fn default_refresh() -> Duration {
    Duration::from_secs(600)
}
fn default_leeway() -> Duration {
    Duration::from_secs(30)
}
fn default_subject_claim() -> String {
    "sub".into()
}

/// Where an IdP's keys come from.
#[derive(Clone)]
pub enum JwksSource {
    /// Read and parsed at load (so `check-config` reports a bad file).
    File { path: PathBuf, keys: Arc<KeySet> },
    /// Fetched at start, then every `refresh` (and early on an unknown `kid`).
    Url {
        url: reqwest::Url,
        refresh: Duration,
    },
}

impl fmt::Debug for JwksSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksSource::File { path, keys } => f
                .debug_struct("File")
                .field("path", path)
                .field("keys", &keys.len())
                .finish(),
            JwksSource::Url { url, refresh } => f
                .debug_struct("Url")
                .field("url", &url.as_str())
                .field("refresh", refresh)
                .finish(),
        }
    }
}

/// One checked `[auth.jwt.<name>]`.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub jwks: JwksSource,
    pub issuer: String,
    pub audience: String,
    /// Never empty, never `none`; HS* only when `hs_secret` is set.
    pub algorithms: Vec<JwtAlgorithm>,
    /// The variable named by `hs_secret_env` and its value.
    pub hs_secret: Option<(String, SecretString)>,
    pub subject_claim: String,
    pub requests_per_minute: Option<NonZeroU32>,
    pub leeway: Duration,
}

/// Shown with the source, and the HS secret as `"[REDACTED] from VAR"`.
impl Serialize for JwtConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            jwks_file: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            jwks_url: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none", with = "opt_duration")]
            jwks_refresh: Option<Duration>,
            issuer: &'a str,
            audience: &'a str,
            algorithms: &'a [JwtAlgorithm],
            #[serde(skip_serializing_if = "Option::is_none")]
            hs_secret_env: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            hs_secret: Option<String>,
            subject_claim: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            requests_per_minute: Option<NonZeroU32>,
            #[serde(with = "duration")]
            leeway: Duration,
        }
        mod opt_duration {
            use super::*;
            pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
                match d {
                    Some(d) => duration::serialize(d, s),
                    None => s.serialize_none(),
                }
            }
        }
        let (jwks_file, jwks_url, jwks_refresh) = match &self.jwks {
            JwksSource::File { path, .. } => (Some(path.display().to_string()), None, None),
            JwksSource::Url { url, refresh } => (None, Some(url.as_str()), Some(*refresh)),
        };
        View {
            jwks_file,
            jwks_url,
            jwks_refresh,
            issuer: &self.issuer,
            audience: &self.audience,
            algorithms: &self.algorithms,
            hs_secret_env: self.hs_secret.as_ref().map(|(var, _)| var.as_str()),
            hs_secret: self
                .hs_secret
                .as_ref()
                .map(|(var, _)| format!("{} from {var}", secrets::REDACTED)),
            subject_claim: &self.subject_claim,
            requests_per_minute: self.requests_per_minute,
            leeway: self.leeway,
        }
        .serialize(s)
    }
}

/// Checks one `[auth.jwt.<name>]`: every problem goes to `bad` (key path, message).
pub(super) fn check(
    name: &str,
    raw: RawJwt,
    env: &Environment,
    bad: &mut dyn FnMut(String, String),
) -> Option<JwtConfig> {
    let path = format!("auth.jwt.{name}");
    let mut failed = false;
    let mut fail = |p: String, m: String| {
        failed = true;
        bad(p, m);
    };
    let jwks = match (raw.jwks_file, raw.jwks_url) {
        (Some(_), Some(_)) => {
            fail(
                path.clone(),
                "set either `jwks_file` or `jwks_url`, not both".into(),
            );
            None
        }
        (None, None) => {
            fail(
                path.clone(),
                "set `jwks_file` (a JWKS on disk) or `jwks_url` (the IdP's JWKS endpoint)".into(),
            );
            None
        }
        (Some(file), None) => match std::fs::read(&file) {
            Ok(bytes) => match jwks::parse(&bytes) {
                Ok(keys) => Some(JwksSource::File {
                    path: file,
                    keys: Arc::new(keys),
                }),
                Err(e) => {
                    fail(
                        format!("{path}.jwks_file"),
                        format!("{}: {e}", file.display()),
                    );
                    None
                }
            },
            Err(e) => {
                fail(
                    format!("{path}.jwks_file"),
                    format!("cannot read {}: {e}", file.display()),
                );
                None
            }
        },
        (None, Some(url)) => {
            if raw.jwks_refresh.is_zero() {
                fail(
                    format!("{path}.jwks_refresh"),
                    "must be greater than zero".into(),
                );
            }
            Some(JwksSource::Url {
                url: url.0,
                refresh: raw.jwks_refresh,
            })
        }
    };
    if raw.issuer.is_empty() {
        fail(format!("{path}.issuer"), "must not be empty".into());
    }
    if raw.audience.is_empty() {
        fail(format!("{path}.audience"), "must not be empty".into());
    }
    if raw.subject_claim.is_empty() {
        fail(format!("{path}.subject_claim"), "must not be empty".into());
    }
    if raw.algorithms.is_empty() {
        fail(
            format!("{path}.algorithms"),
            "list at least one algorithm, such as [\"RS256\"]".into(),
        );
    }
    let wants_hmac = raw.algorithms.iter().any(|a| a.is_hmac());
    let hs_secret = match (&raw.hs_secret_env, wants_hmac) {
        (Some(var), true) => match env.get(var) {
            Some(value) if !value.is_empty() => {
                Some((var.clone(), SecretString::from(value.to_owned())))
            }
            _ => {
                fail(
                    format!("{path}.hs_secret_env"),
                    format!("environment variable {var} is not set"),
                );
                None
            }
        },
        (None, true) => {
            fail(
                format!("{path}.algorithms"),
                "HS256/HS384/HS512 need `hs_secret_env` naming the variable that holds the secret"
                    .into(),
            );
            None
        }
        (Some(_), false) => {
            fail(
                format!("{path}.hs_secret_env"),
                "is only used with an HS256/HS384/HS512 algorithm".into(),
            );
            None
        }
        (None, false) => None,
    };
    if failed {
        return None;
    }
    Some(JwtConfig {
        jwks: jwks?,
        issuer: raw.issuer,
        audience: raw.audience,
        algorithms: raw.algorithms,
        hs_secret,
        subject_claim: raw.subject_claim,
        requests_per_minute: raw.requests_per_minute,
        leeway: raw.leeway,
    })
}
