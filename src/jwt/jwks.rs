//! A JWKS, parsed into verification keys: bounded (a body over
//! [`MAX_JWKS_BYTES`] or more than [`MAX_KEYS`] keys is refused), public keys
//! only (symmetric `oct` keys do not belong in a published set; HS secrets come
//! from `hs_secret_env`), keys for encryption skipped, and each key tagged
//! with what it can verify so a token picks its candidates without trying all.

use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

/// Largest JWKS body accepted (real sets are a few KiB).
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Most keys accepted in one set (real sets hold a handful).
pub const MAX_KEYS: usize = 100;
/// Bound on one JWKS fetch, connection to last byte.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// What a key can verify.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Rsa,
    Ec(EllipticCurve),
    Ed,
}

/// One verification key of a set.
pub struct Key {
    pub kid: Option<String>,
    /// The `alg` the JWK declares, if any: then only that one fits.
    alg: Option<Algorithm>,
    kind: Kind,
    pub decoding: DecodingKey,
}

impl Key {
    /// Whether this key can verify a token signed with `alg`.
    pub fn fits(&self, alg: Algorithm) -> bool {
        if self.alg.is_some_and(|a| a != alg) {
            return false;
        }
        matches!(
            (&self.kind, alg),
            (
                Kind::Rsa,
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512,
            ) | (Kind::Ec(EllipticCurve::P256), Algorithm::ES256)
                | (Kind::Ec(EllipticCurve::P384), Algorithm::ES384)
                | (Kind::Ed, Algorithm::EdDSA)
        )
    }
}

/// The usable keys of one JWKS.
#[derive(Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

impl KeySet {
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether some key has this `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// The keys a token may verify with: those with its `kid` (when it has
    /// one), of them the ones that fit its `alg`.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a Key> + 'a {
        self.keys
            .iter()
            .filter(move |k| kid.is_none_or(|kid| k.kid.as_deref() == Some(kid)) && k.fits(alg))
    }
}

/// Parses a JWKS document. Keys of a type this build cannot verify (or
/// malformed ones) are skipped; a set with none left is an error.
pub fn parse(bytes: &[u8]) -> Result<KeySet, String> {
    #[derive(Deserialize)]
    struct Doc {
        keys: Vec<serde_json::Value>,
    }
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(format!("JWKS larger than {MAX_JWKS_BYTES} bytes"));
    }
    let doc: Doc = serde_json::from_slice(bytes)
        .map_err(|e| format!("not a JWKS (a JSON object with `keys`): {e}"))?;
    if doc.keys.len() > MAX_KEYS {
        return Err(format!(
            "JWKS has {} keys, more than the {MAX_KEYS} accepted",
            doc.keys.len()
        ));
    }
    let total = doc.keys.len();
    let keys: Vec<Key> = doc.keys.into_iter().filter_map(key).collect();
    if keys.is_empty() {
        return Err(format!(
            "no usable public signing key (RSA, EC P-256/P-384 or Ed25519) among {total}"
        ));
    }
    Ok(KeySet { keys })
}

fn key(value: serde_json::Value) -> Option<Key> {
    let jwk: Jwk = serde_json::from_value(value).ok()?;
    if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
        return None;
    }
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Kind::Rsa,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 | EllipticCurve::P384 => Kind::Ec(p.curve.clone()),
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => Kind::Ed,
        _ => return None,
    };
    // A declared `alg` this build does not know makes the key unusable.
    let alg = match jwk.common.key_algorithm {
        Some(a) => Some(a.to_string().parse::<Algorithm>().ok()?),
        None => None,
    };
    let decoding = DecodingKey::from_jwk(&jwk).ok()?;
    Some(Key {
        kid: jwk.common.key_id,
        alg,
        kind,
        decoding,
    })
}

/// Fetches and parses a JWKS over HTTP, reading at most [`MAX_JWKS_BYTES`].
/// The error names what went wrong, never a body.
pub async fn fetch(client: &reqwest::Client, url: &reqwest::Url) -> Result<KeySet, String> {
    let attempt = async {
        let mut response = client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| describe(&e))?;
        if !response.status().is_success() {
            return Err(format!("answered status {}", response.status().as_u16()));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
        {
            return Err(format!("JWKS larger than {MAX_JWKS_BYTES} bytes"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("JWKS larger than {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        parse(&body)
    };
    match tokio::time::timeout(FETCH_TIMEOUT, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {FETCH_TIMEOUT:?}")),
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_connect() {
        "cannot connect".into()
    } else if e.is_timeout() {
        "timed out".into()
    } else {
        "request failed".into()
    }
}
