//! JWT client auth: verifies a Bearer JWT against the `[auth.jwt.<name>]`
//! IdPs (signature with a key of the JWKS, listed `alg`, `exp` required,
//! `nbf`, `iss`, `aud`, leeway) and names why a token was refused, by a
//! category only. JWKS from a URL are refreshed in the background, early on
//! an unknown `kid` (rate-limited, one fetch however many requests wait),
//! and the last good keys stay when the IdP cannot be reached.
//!
//! A verified token is remembered (by its SHA-256) until its `exp`, so the
//! same browser token on every request is verified once, not each time.

pub mod jwks;

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::config::{JwksSource, JwtConfig, Problem};
use jwks::KeySet;

/// At most one early refresh (on an unknown `kid`) per IdP this often, so a
/// flood of random `kid`s cannot hammer the IdP.
pub const EARLY_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// Most verified tokens remembered at once (a few hundred bytes each); past
/// it the least used are dropped and verified again when they come back.
pub const VERIFIED_CACHE_ENTRIES: u64 = 10_000;

/// Why a token was refused: a category for the log, never the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    Expired,
    NotYetValid,
    BadSignature,
    WrongIssuer,
    WrongAudience,
    AlgorithmNotAllowed,
    UnknownKid,
    Malformed,
    MissingExp,
    MissingSubject,
}

impl Reject {
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::Expired => "expired",
            Reject::NotYetValid => "not_yet_valid",
            Reject::BadSignature => "bad_signature",
            Reject::WrongIssuer => "wrong_issuer",
            Reject::WrongAudience => "wrong_audience",
            Reject::AlgorithmNotAllowed => "algorithm_not_allowed",
            Reject::UnknownKid => "unknown_kid",
            Reject::Malformed => "malformed",
            Reject::MissingExp => "missing_exp",
            Reject::MissingSubject => "missing_subject",
        }
    }

    fn from_error(e: &jsonwebtoken::errors::Error) -> Self {
        match e.kind() {
            ErrorKind::InvalidSignature
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidEddsaKey
            | ErrorKind::InvalidRsaKey(_) => Reject::BadSignature,
            ErrorKind::ExpiredSignature => Reject::Expired,
            ErrorKind::ImmatureSignature => Reject::NotYetValid,
            ErrorKind::InvalidIssuer => Reject::WrongIssuer,
            ErrorKind::InvalidAudience => Reject::WrongAudience,
            ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
                Reject::AlgorithmNotAllowed
            }
            ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
                "exp" => Reject::MissingExp,
                "iss" => Reject::WrongIssuer,
                "aud" => Reject::WrongAudience,
                _ => Reject::Malformed,
            },
            _ => Reject::Malformed,
        }
    }
}

/// A verified token: which IdP vouched for it, and its subject (the end user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub idp: Arc<str>,
    pub subject: String,
}

/// A refused token, with the IdP that judged it when one did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub idp: Option<Arc<str>>,
    pub reason: Reject,
}

/// Whether a Bearer value is shaped like a JWT (three dot-separated parts).
pub fn looks_like_jwt(token: &str) -> bool {
    let mut parts = token.split('.');
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some(h), Some(p), Some(_), None) if !h.is_empty() && !p.is_empty()
    )
}

/// The header fields routing needs, read without trusting them.
struct Head {
    alg: Algorithm,
    kid: Option<String>,
}

fn head(token: &str) -> Result<Head, Reject> {
    match jsonwebtoken::decode_header(token) {
        Ok(h) => Ok(Head {
            alg: h.alg,
            kid: h.kid,
        }),
        // `alg: none` (or a name nobody implements) is not a parse error to
        // the client's eyes: it is an algorithm we do not allow.
        Err(_) => {
            #[derive(Deserialize)]
            struct Alg {
                #[serde(rename = "alg")]
                _alg: String,
            }
            let encoded = token.split('.').next().unwrap_or_default();
            let alg = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(encoded.trim_end_matches('='))
                .ok()
                .and_then(|json| serde_json::from_slice::<Alg>(&json).ok());
            Err(match alg {
                Some(_) => Reject::AlgorithmNotAllowed,
                None => Reject::Malformed,
            })
        }
    }
}

/// A token an IdP vouched for, remembered until its `exp`.
struct Remembered {
    verified: Verified,
    /// Index of the IdP in [`Verifier::idps`].
    idp: usize,
    /// That IdP's key-set generation when it verified: a JWKS refresh moves
    /// the generation on, and the entry no longer counts.
    generation: u64,
    /// The token's `exp`, in seconds since the epoch.
    exp: u64,
}

/// Entries live no longer than the token's `exp`: a token is never served
/// from memory past it (the lookup checks `exp` too; this frees the entry).
struct UntilExp;

impl moka::Expiry<[u8; 32], Arc<Remembered>> for UntilExp {
    fn expire_after_create(
        &self,
        _: &[u8; 32],
        value: &Arc<Remembered>,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(value.exp.saturating_sub(unix_now())))
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The configured IdPs, and the tokens they verified lately. The cache lives
/// and dies with the verifier: `auth.jwt` changes need a restart, which
/// builds a new verifier, so no entry outlives the settings that made it.
pub struct Verifier {
    idps: Vec<Arc<Idp>>,
    verified: moka::sync::Cache<[u8; 32], Arc<Remembered>>,
}

impl Verifier {
    /// No IdP: every JWT-shaped value is just an unknown key.
    pub fn empty() -> Self {
        Self::of(Vec::new())
    }

    fn of(idps: Vec<Arc<Idp>>) -> Self {
        Self {
            idps,
            verified: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_CACHE_ENTRIES)
                .expire_after(UntilExp)
                .build(),
        }
    }

    /// Builds every IdP; a `jwks_url` is fetched now (through `client`), and a
    /// failure is a config problem. Refresh tasks start here and end with the verifier.
    pub async fn start(
        configs: &BTreeMap<String, JwtConfig>,
        client: &reqwest::Client,
    ) -> Result<Self, Vec<Problem>> {
        let mut idps = Vec::new();
        let mut problems = Vec::new();
        for (name, config) in configs {
            match Idp::start(name, config, client).await {
                Ok(idp) => idps.push(idp),
                Err(p) => problems.push(p),
            }
        }
        if problems.is_empty() {
            Ok(Self::of(idps))
        } else {
            Err(problems)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.idps.is_empty()
    }

    /// The per-subject rate of each IdP that has one.
    pub fn subject_rates(&self) -> impl Iterator<Item = (&str, NonZeroU32)> {
        self.idps
            .iter()
            .filter_map(|i| Some((&*i.name, i.requests_per_minute?)))
    }

    /// Verifies `token`, from memory when it was verified before, is not
    /// past its `exp`, and its IdP's keys have not changed since. Only
    /// tokens that verified are remembered; a refused one is judged anew.
    pub async fn verify(&self, token: &str) -> Result<Verified, Rejection> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(known) = self.verified.get(&digest) {
            let current = self
                .idps
                .get(known.idp)
                .is_some_and(|idp| idp.keys().generation == known.generation);
            if current && unix_now() < known.exp {
                return Ok(known.verified.clone());
            }
            self.verified.invalidate(&digest);
        }
        let (verified, idp, vouched) = self.check(token).await?;
        // Up to `exp` only, never its leeway: a token inside the leeway is
        // verified each time, so the cache never widens what verify accepts.
        if unix_now() < vouched.exp {
            let remembered = Remembered {
                verified: verified.clone(),
                idp,
                generation: vouched.generation,
                exp: vouched.exp,
            };
            self.verified.insert(digest, Arc::new(remembered));
        }
        Ok(verified)
    }

    /// Verifies `token` without the cache (what a first sight costs: the
    /// benchmarks measure it).
    pub async fn verify_uncached(&self, token: &str) -> Result<Verified, Rejection> {
        self.check(token).await.map(|(verified, _, _)| verified)
    }

    /// Verifies `token` with the IdP whose issuer matches its `iss` (read
    /// unverified, only to route), else with each in turn; with the index of
    /// the IdP that vouched.
    async fn check(&self, token: &str) -> Result<(Verified, usize, Vouched), Rejection> {
        let reject = |reason| Rejection { idp: None, reason };
        let head = head(token).map_err(reject)?;
        #[derive(Deserialize)]
        struct Iss {
            iss: Option<Value>,
        }
        // Unverified, only to pick the IdP: the chosen one verifies everything.
        let iss = jsonwebtoken::dangerous::insecure_decode_claims::<Iss>(token)
            .map_err(|_| reject(Reject::Malformed))?
            .iss;
        let indexed = self.idps.iter().enumerate();
        let routed: Vec<(usize, &Arc<Idp>)> = match iss.as_ref().and_then(Value::as_str) {
            Some(iss) => indexed.filter(|(_, i)| i.issuer == iss).collect(),
            None => Vec::new(),
        };
        let candidates = if routed.is_empty() {
            self.idps.iter().enumerate().collect()
        } else {
            routed
        };
        let mut first = None;
        for (index, idp) in candidates {
            match idp.verify(token, &head).await {
                Ok(vouched) => {
                    let verified = Verified {
                        idp: idp.name.clone(),
                        subject: vouched.subject.clone(),
                    };
                    return Ok((verified, index, vouched));
                }
                Err(reason) => {
                    first.get_or_insert(Rejection {
                        idp: Some(idp.name.clone()),
                        reason,
                    });
                }
            }
        }
        Err(first.unwrap_or(reject(Reject::Malformed)))
    }
}

/// Where a URL-sourced IdP's keys come from, and its early-refresh state.
struct Remote {
    client: reqwest::Client,
    url: reqwest::Url,
    early: std::sync::Mutex<Early>,
}

#[derive(Default)]
struct Early {
    /// When the last early refresh started.
    last: Option<Instant>,
    /// The refresh in progress: every request that wants it awaits this one.
    running: Option<Shared<BoxFuture<'static, ()>>>,
}

/// What an IdP says of a token it verified.
struct Vouched {
    subject: String,
    /// `exp` in seconds since the epoch (0 when it is not a whole number of
    /// seconds: then the token is not remembered).
    exp: u64,
    /// The generation of the key set that verified it.
    generation: u64,
}

/// An IdP's current keys, and how many times they were replaced.
#[derive(Clone)]
struct Keys {
    set: Arc<KeySet>,
    generation: u64,
}

/// One `[auth.jwt.<name>]`.
struct Idp {
    name: Arc<str>,
    issuer: String,
    /// One validation per listed algorithm: the crate refuses a validation
    /// that lists algorithms of another family than the key's.
    validations: Vec<(Algorithm, Validation)>,
    subject_claim: String,
    hs_key: Option<DecodingKey>,
    keys: RwLock<Keys>,
    remote: Option<Remote>,
    requests_per_minute: Option<NonZeroU32>,
}

impl Idp {
    async fn start(
        name: &str,
        config: &JwtConfig,
        client: &reqwest::Client,
    ) -> Result<Arc<Self>, Problem> {
        let validations = config
            .algorithms
            .iter()
            .map(|a| {
                let mut validation = Validation::new(a.0);
                validation.leeway = config.leeway.as_secs();
                validation.validate_exp = true;
                validation.validate_nbf = true;
                validation.validate_aud = true;
                validation.set_issuer(&[&config.issuer]);
                validation.set_audience(&[&config.audience]);
                // Without these, the crate skips a check whose claim is absent.
                validation.set_required_spec_claims(&["exp", "iss", "aud"]);
                (a.0, validation)
            })
            .collect();
        let hs_key = match &config.hs_secret {
            Some((_, secret)) => Some(
                DecodingKey::from_secret(secret.expose_secret().as_bytes()).map_err(|_| {
                    Problem::new(
                        format!("auth.jwt.{name}.hs_secret_env"),
                        "the secret cannot be used as an HMAC key",
                    )
                })?,
            ),
            None => None,
        };
        let (keys, remote, refresh) = match &config.jwks {
            JwksSource::File { keys, .. } => (keys.clone(), None, None),
            JwksSource::Url { url, refresh } => {
                let keys = jwks::fetch(client, url).await.map_err(|e| {
                    Problem::new(
                        format!("auth.jwt.{name}.jwks_url"),
                        format!("cannot load the JWKS at start: {e}"),
                    )
                })?;
                let remote = Remote {
                    client: client.clone(),
                    url: url.clone(),
                    early: std::sync::Mutex::new(Early::default()),
                };
                (Arc::new(keys), Some(remote), Some(*refresh))
            }
        };
        let idp = Arc::new(Self {
            name: Arc::from(name),
            issuer: config.issuer.clone(),
            validations,
            subject_claim: config.subject_claim.clone(),
            hs_key,
            keys: RwLock::new(Keys {
                set: keys,
                generation: 0,
            }),
            remote,
            requests_per_minute: config.requests_per_minute,
        });
        if let Some(period) = refresh {
            tokio::spawn(refresh_every(Arc::downgrade(&idp), period));
        }
        Ok(idp)
    }

    fn keys(&self) -> Keys {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The subject (and `exp`) of `token` if this IdP vouches for it.
    async fn verify(self: &Arc<Self>, token: &str, head: &Head) -> Result<Vouched, Reject> {
        let Some((_, validation)) = self.validations.iter().find(|(a, _)| *a == head.alg) else {
            return Err(Reject::AlgorithmNotAllowed);
        };
        if matches!(
            head.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            // The check allows HS* only with a secret.
            let key = self.hs_key.as_ref().ok_or(Reject::AlgorithmNotAllowed)?;
            // The secret comes from the config, never from a refresh.
            let generation = self.keys().generation;
            return self.decode(token, key, validation, generation);
        }
        let mut keys = self.keys();
        if let Some(kid) = head.kid.as_deref()
            && !keys.set.has_kid(kid)
        {
            self.refresh_early().await;
            keys = self.keys();
            if !keys.set.has_kid(kid) {
                return Err(Reject::UnknownKid);
            }
        }
        // Without a `kid`, every key that fits the algorithm is tried; a
        // signature that fails on one may verify on the next.
        let mut outcome = Err(Reject::BadSignature);
        for key in keys.set.candidates(head.kid.as_deref(), head.alg) {
            match self.decode(token, &key.decoding, validation, keys.generation) {
                Err(Reject::BadSignature) => continue,
                other => {
                    outcome = other;
                    break;
                }
            }
        }
        outcome
    }

    fn decode(
        &self,
        token: &str,
        key: &DecodingKey,
        validation: &Validation,
        generation: u64,
    ) -> Result<Vouched, Reject> {
        let mut data = jsonwebtoken::decode::<Map<String, Value>>(token, key, validation)
            .map_err(|e| Reject::from_error(&e))?;
        let exp = data.claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        match data.claims.remove(&self.subject_claim) {
            Some(Value::String(subject)) if !subject.is_empty() => Ok(Vouched {
                subject,
                exp,
                generation,
            }),
            _ => Err(Reject::MissingSubject),
        }
    }

    /// One early refresh, shared by every request that asks while it runs;
    /// none when the last one started under [`EARLY_REFRESH_INTERVAL`] ago.
    async fn refresh_early(self: &Arc<Self>) {
        let Some(remote) = &self.remote else { return };
        let running = {
            let mut early = remote.early.lock().unwrap_or_else(PoisonError::into_inner);
            match &early.running {
                Some(running) if running.peek().is_none() => running.clone(),
                _ if early
                    .last
                    .is_some_and(|t| t.elapsed() < EARLY_REFRESH_INTERVAL) =>
                {
                    return;
                }
                _ => {
                    early.last = Some(Instant::now());
                    // Spawned, so it completes even if the request that
                    // started it goes away.
                    let idp = self.clone();
                    let task = tokio::spawn(async move { idp.refresh("unknown kid").await });
                    let running = task.map(|_| ()).boxed().shared();
                    early.running = Some(running.clone());
                    running
                }
            }
        };
        running.await;
    }

    /// Fetches the JWKS; on success the new keys replace the old, on failure
    /// the last good keys stay and a WARN says so.
    async fn refresh(&self, why: &'static str) {
        let Some(remote) = &self.remote else { return };
        match jwks::fetch(&remote.client, &remote.url).await {
            Ok(keys) => {
                tracing::debug!(idp = %self.name, keys = keys.len(), why, "JWKS refreshed");
                let mut current = self.keys.write().unwrap_or_else(PoisonError::into_inner);
                // A new generation, even for the same keys: a token
                // remembered under the old set is verified again, once.
                *current = Keys {
                    set: Arc::new(keys),
                    generation: current.generation.wrapping_add(1),
                };
            }
            Err(error) => tracing::warn!(
                idp = %self.name,
                error = %error,
                why,
                keys_kept = self.keys().set.len(),
                "JWKS refresh failed; keeping the last good keys"
            ),
        }
    }
}

/// Refreshes every `period` for as long as the IdP lives.
async fn refresh_every(idp: Weak<Idp>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(idp) = idp.upgrade() else { return };
        idp.refresh("scheduled").await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_three_part_values_with_a_header_and_payload_are_jwts() {
        assert!(looks_like_jwt("a.b.c"));
        assert!(looks_like_jwt("a.b."));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a.b.c.d"));
        assert!(!looks_like_jwt(".b.c"));
        assert!(!looks_like_jwt("plain-key"));
    }

    #[test]
    fn alg_none_is_an_algorithm_not_allowed() {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let token = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(r#"{"sub":"x"}"#));
        assert_eq!(head(&token).err(), Some(Reject::AlgorithmNotAllowed));
        assert_eq!(head("!!.e30.x").err(), Some(Reject::Malformed));
    }
}
