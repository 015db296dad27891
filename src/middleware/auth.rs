//! Client auth for `/api/v1`: a static key (`Authorization: Bearer <key>` or
//! `x-api-key: <key>`, checked by SHA-256 in constant time), or a Bearer JWT
//! from an `[auth.jwt.<name>]` IdP (`crate::jwt`). The key id (never the key;
//! for a JWT, the IdP's name) goes into the request and response extensions
//! for later layers and logs, and for a JWT the [`EndUser`] too. A refusal
//! carries an [`AuthFailure`] for the request log, never the value presented.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::audit::Audit;
use crate::config::{AdminConfig, AuthConfig};
use crate::context::{AuthFailure, EndUser, KeyId};
use crate::error::ApiError;
use crate::headers::{API_KEY, bearer};
use crate::jwt::{self, Verifier};

/// The configured client keys, as SHA-256 digests, and the JWT IdPs.
pub struct KeyStore {
    enabled: bool,
    keys: Vec<(Arc<str>, [u8; 32])>,
    jwt: Arc<Verifier>,
}

impl KeyStore {
    /// From a checked config: every key is already a digest.
    pub fn new(config: &AuthConfig) -> Self {
        let keys = config
            .keys
            .iter()
            .map(|(id, key)| (Arc::from(id.as_str()), *key.hash().bytes()))
            .collect();
        Self {
            enabled: config.enabled,
            keys,
            jwt: Arc::new(Verifier::empty()),
        }
    }

    /// With the IdPs of `[auth.jwt.*]` (started by the app: JWKS URLs are
    /// fetched; shared by every config a reload brings, as `auth.jwt` needs a restart).
    pub fn with_jwt(mut self, verifier: Arc<Verifier>) -> Self {
        self.jwt = verifier;
        self
    }

    /// The admin keys: always required (there is no `enabled = false`).
    pub fn admin(config: &AdminConfig) -> Self {
        let keys = config
            .keys
            .iter()
            .map(|(id, key)| (Arc::from(id.as_str()), *key.hash().bytes()))
            .collect();
        Self {
            enabled: true,
            keys,
            jwt: Arc::new(Verifier::empty()),
        }
    }

    /// No key configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The id of the key `presented` matches. Every stored digest is compared,
    /// in constant time, so timing says nothing about which one (or whether) matched.
    pub fn verify(&self, presented: &str) -> Option<Arc<str>> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (id, stored) in &self.keys {
            if bool::from(stored.ct_eq(&digest)) {
                found = Some(id.clone());
            }
        }
        found
    }
}

/// The key a request presents, if any: a Bearer token, else `x-api-key`
/// (an `Authorization` of another scheme, e.g. a proxy's Basic, is not ours).
pub(crate) fn presented(headers: &HeaderMap) -> Option<&str> {
    bearer(headers).or_else(|| {
        headers
            .get(API_KEY)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    })
}

/// Who a request is: a static key's id, or a JWT's IdP and end user.
enum Principal {
    Key(Arc<str>),
    Jwt(EndUser),
}

/// The principal of a request with `headers`, or why there is none (a reason category).
async fn authenticate(keys: &KeyStore, headers: &HeaderMap) -> Result<Principal, &'static str> {
    let Some(value) = presented(headers).filter(|k| !k.is_empty()) else {
        return Err("missing_credentials");
    };
    // Static keys first: one that happens to contain two dots still works.
    if let Some(id) = keys.verify(value) {
        return Ok(Principal::Key(id));
    }
    let is_bearer = bearer(headers).is_some();
    if is_bearer && !keys.jwt.is_empty() && jwt::looks_like_jwt(value) {
        return match keys.jwt.verify(value).await {
            Ok(v) => Ok(Principal::Jwt(EndUser::new(v.idp, &v.subject))),
            Err(rejection) => Err(rejection.reason.as_str()),
        };
    }
    Err("unknown_key")
}

/// A request's admitted principal, for the response's extensions too (the
/// request log reads them there, whatever answered below).
pub struct Admitted {
    id: Arc<str>,
    user: Option<EndUser>,
}

impl Admitted {
    pub fn mark(self, response: &mut Response) {
        response.extensions_mut().insert(KeyId(self.id));
        if let Some(user) = self.user {
            response.extensions_mut().insert(user);
        }
    }
}

/// Admits a request with a valid client key or JWT, putting its [`KeyId`]
/// (and a JWT's [`EndUser`]) into its extensions; `None` when auth is off.
/// Refused: 401 + `WWW-Authenticate: Bearer`, with an [`AuthFailure`].
pub async fn admit(
    keys: &KeyStore,
    audit: Option<&Audit>,
    req: &mut Request,
) -> Result<Option<Admitted>, Response> {
    if !keys.enabled {
        return Ok(None);
    }
    let principal = match authenticate(keys, req.headers()).await {
        Ok(principal) => principal,
        Err(reason) => {
            audit_failure(req, audit, reason);
            let mut response = ApiError::Unauthorized.into_response();
            response.extensions_mut().insert(AuthFailure(reason));
            return Err(response);
        }
    };
    let (id, user) = match principal {
        Principal::Key(id) => (id, None),
        Principal::Jwt(user) => (user.idp.clone(), Some(user)),
    };
    req.extensions_mut().insert(KeyId(id.clone()));
    if let Some(user) = &user {
        req.extensions_mut().insert(user.clone());
    }
    Ok(Some(Admitted { id, user }))
}

/// The key id of the request's static key (admin keys), or 401 with an
/// `auth_failed` audit line.
pub fn verified(
    keys: &KeyStore,
    req: &Request,
    audit: Option<&Audit>,
) -> Result<Arc<str>, ApiError> {
    let reason = match presented(req.headers()).filter(|k| !k.is_empty()) {
        None => "missing_credentials",
        Some(k) => match keys.verify(k) {
            Some(id) => return Ok(id),
            None => "unknown_key",
        },
    };
    audit_failure(req, audit, reason);
    Err(ApiError::Unauthorized)
}

/// The `auth_failed` audit line of a refused request: client IP, reason,
/// path; never the key or token presented.
fn audit_failure(req: &Request, audit: Option<&Audit>, reason: &'static str) {
    let event = crate::audit::Event {
        event: "auth_failed",
        client_ip: req
            .extensions()
            .get::<crate::context::ClientIp>()
            .map(|ip| ip.0.to_string()),
        request_id: crate::headers::request_id(req.headers()).map(str::to_owned),
        detail: serde_json::json!({"reason": reason, "path": req.uri().path()}),
        ..Default::default()
    };
    crate::audit::record(audit, event);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClientKeyConfig, KeyHash, KeySource};

    fn store() -> KeyStore {
        let mut config = AuthConfig::default();
        config.keys.insert(
            "frontend".into(),
            ClientKeyConfig::hashed(KeyHash::of("s3cret")),
        );
        config.keys.insert(
            "batch".into(),
            ClientKeyConfig {
                source: KeySource::Env {
                    var: "BATCH_KEY".into(),
                    hash: KeyHash::of("other"),
                },
                requests_per_minute: None,
                burst: None,
                budget: Default::default(),
            },
        );
        KeyStore::new(&config)
    }

    #[test]
    fn keys_match_by_hash_or_env_value() {
        let s = store();
        assert_eq!(s.verify("s3cret").as_deref(), Some("frontend"));
        assert_eq!(s.verify("other").as_deref(), Some("batch"));
        assert_eq!(s.verify("s3cre"), None);
        assert_eq!(s.verify(""), None);
    }

    #[test]
    fn bearer_and_x_api_key_are_both_read() {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            "Bearer abc"
                .parse()
                .unwrap_or(axum::http::HeaderValue::from_static("")),
        );
        assert_eq!(presented(&h), Some("abc"));
        let mut h = HeaderMap::new();
        h.insert("x-api-key", axum::http::HeaderValue::from_static("xyz"));
        assert_eq!(presented(&h), Some("xyz"));
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            axum::http::HeaderValue::from_static("Basic abc"),
        );
        assert_eq!(presented(&h), None);
        h.insert("x-api-key", axum::http::HeaderValue::from_static("xyz"));
        assert_eq!(presented(&h), Some("xyz"), "another scheme is not ours");
    }
}
