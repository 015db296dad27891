//! What travels with a request: every type one layer or handler puts into the
//! request's (or response's) extensions for another to read, in one leaf
//! module, so the layers depend on it and never on each other.
//!
//! | Type                | Added by (where)                                   | Read by                                              |
//! |---------------------|----------------------------------------------------|------------------------------------------------------|
//! | [`ClientIp`]        | `client_ip::resolve_once`, from `request_log` (request) | `request_log` (line), `rate_limit::per_ip` (bucket)  |
//! | [`Arrival`]         | `request_log::log_request` (request)               | `routes::extract` → [`Ctx::started`] (deadlines)     |
//! | `Arc<StreamReport>` | `request_log::log_request` (request)               | `dispatch` fills it; `request_log` reads it at body end |
//! | [`KeyId`]           | `auth::admit` (request), `api_guards` (response)   | `rate_limit::per_key`, [`Ctx`], `request_log`        |
//! | [`EndUser`]         | `auth::admit`, for a JWT (request), `api_guards` (response) | `rate_limit::per_key` (per-subject bucket), [`Ctx::end_user`], `request_log` (`user_hash`) |
//! | [`AuthFailure`]     | `auth::admit` (a 401 response)                     | `request_log` (`auth_failure`)                       |
//! | [`Served`]          | `routes::finish`, `dispatch::Refusal` (response)   | `request_log` (model, provider, tokens, cost, degraded) |
//! | [`ErrorInfo`]       | `ApiError::into_response`, `error_body` (response) | `error_body` (JSON body), `request_log` (outcome)    |
//!
//! `ErrorInfo` is defined beside `ApiError` (which builds it) and re-exported
//! here. [`Outcome`] is how a request or an upstream attempt ended, in the
//! words every log line and metric label uses.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use tokio::time::Instant;

use crate::chat::Usage;
use crate::config::Price;
pub use crate::error::ErrorInfo;

/// The resolved client IP (see `middleware::client_ip`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// When the request reached the stack: deadlines count from here.
#[derive(Debug, Clone, Copy)]
pub struct Arrival(pub Instant);

/// The id of the client key a request authenticated with (never the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyId(pub Arc<str>);

/// The end user behind a request authenticated by a JWT: a request (and
/// response) extension. The subject is for per-user state (per-subject
/// limits, budgets, canary stickiness); logs show only `hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndUser {
    /// The IdP's config name (also the request's [`KeyId`]).
    pub idp: Arc<str>,
    /// The token's subject claim, verbatim.
    pub subject: Arc<str>,
    /// `user_hash`: the first 16 hex digits of the subject's SHA-256.
    pub hash: Arc<str>,
}

impl EndUser {
    pub fn new(idp: Arc<str>, subject: &str) -> Self {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(subject.as_bytes());
        let hash = hex::encode(&digest[..8]);
        Self {
            idp,
            subject: Arc::from(subject),
            hash: Arc::from(hash),
        }
    }
}

/// Why a request was refused 401 (a response extension, for the request log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthFailure(pub &'static str);

/// Who is asking, and since when: what a chat handler takes from the request.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub request_id: String,
    pub key_id: Option<Arc<str>>,
    /// The request's [`Arrival`].
    pub started: Instant,
    /// Where a stream reports how it ended, for the request log.
    pub report: Option<Arc<StreamReport>>,
    /// The client's `Cache-Control` (`no-cache`, `no-store`).
    pub cache: Directive,
    /// The verified end user (a JWT subject); `None` for static keys, whose
    /// end user is the request's `user` field.
    pub end_user: Option<Arc<str>>,
}

/// Which model and target answered a chat, and with how many tokens (for
/// the request log; a failed chat carries the model name only).
#[derive(Debug, Clone)]
pub struct Served {
    pub model: Arc<str>,
    pub provider: Option<Arc<str>>,
    pub provider_model: Option<Arc<str>>,
    /// Answered by the model's fallback message.
    pub degraded: bool,
    /// A whole answer's tokens; a stream's come in its [`StreamEnd`].
    pub usage: Option<Usage>,
    /// The answering target's price: zero for fallbacks, FAQ answers and cache hits.
    pub price: Price,
    /// Answered from the response cache.
    pub cached: bool,
    /// `x-chatgate-cache`.
    pub cache: CacheStatus,
    /// `x-chatgate-variant` and the native answer's `variant`.
    pub variant: Variant,
}

/// Which variant of a model served a chat (`stable` for models without a canary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Variant {
    #[default]
    Stable,
    Canary,
}

impl Variant {
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Stable => "stable",
            Variant::Canary => "canary",
        }
    }
}

impl Ctx {
    /// Where the guard notes `flag` matches for this request's log lines.
    pub fn flags(&self) -> Flags {
        self.report
            .as_ref()
            .map(|r| r.flags.clone())
            .unwrap_or_default()
    }
}

impl Served {
    /// Which model a chat named, before anything answered it.
    pub fn model(model: Arc<str>) -> Self {
        Self {
            model,
            provider: None,
            provider_model: None,
            degraded: false,
            usage: None,
            price: Price::default(),
            cached: false,
            cache: CacheStatus::Bypass,
            variant: Variant::Stable,
        }
    }

    /// What an answer of `usage` cost.
    pub fn cost(&self, usage: Usage) -> f64 {
        crate::cost::of(self.price, usage)
    }

    /// A whole answer's cost (`None` for streams and failed chats).
    pub fn cost_usd(&self) -> Option<f64> {
        self.usage.map(|u| self.cost(u))
    }

    /// `Success`, or `Degraded` for the fallback message.
    pub fn outcome(&self) -> Outcome {
        if self.degraded {
            Outcome::Degraded
        } else {
            Outcome::Success
        }
    }
}

/// How a stream ended, filled by the stream itself and read by the request
/// log when the response body ends (a stream's line is written then).
#[derive(Debug, Default)]
pub struct StreamReport {
    streaming: AtomicBool,
    end: OnceLock<StreamEnd>,
    /// Guard rules with `action = "flag"` that matched (whole answers too).
    pub flags: Flags,
}

#[derive(Debug, Clone, Copy)]
pub struct StreamEnd {
    pub outcome: Outcome,
    pub usage: Option<Usage>,
    pub cost_usd: Option<f64>,
}

impl StreamReport {
    /// The answer is a stream (its end will be reported).
    pub fn began(&self) {
        self.streaming.store(true, Ordering::Relaxed);
    }

    /// How the stream ended; only the first report counts.
    pub fn ended(&self, end: StreamEnd) {
        let _ = self.end.set(end);
    }

    /// `None` for a whole answer; `Some(None)` for a stream that has not ended
    /// (its client left mid-way); otherwise how it ended.
    pub fn stream_end(&self) -> Option<Option<StreamEnd>> {
        self.streaming
            .load(Ordering::Relaxed)
            .then(|| self.end.get().copied())
    }
}

/// How a request, a stream or one upstream attempt ended. `as_str` gives
/// the word of the request log, the interaction log, the stream report and
/// the `outcome` metric label alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Answered by the model's fallback message.
    Degraded,
    /// The client left before its stream ended.
    Cancelled,
    /// The request deadline or an attempt timeout ran out.
    Timeout,
    /// An upstream answer was unusable (also a stream's `error` event after it began).
    UpstreamError,
    /// A rate limit refused: ours (429 to the client) or an upstream's (one attempt).
    RateLimited,
    /// An upstream attempt that failed in another way (the metric's `error`).
    Error,
    /// The request was answered with another contract error, named by its code
    /// (`not_found`, `unauthorized`, `upstream_unavailable`, …).
    Refused(&'static str),
}

impl Outcome {
    /// The outcome of a request answered with the error of `code` (an [`ErrorInfo`] code).
    pub fn of_error(code: &'static str) -> Self {
        match code {
            "timeout" => Self::Timeout,
            "upstream_error" => Self::UpstreamError,
            "rate_limited" => Self::RateLimited,
            code => Self::Refused(code),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Degraded => "degraded",
            Self::Cancelled => "cancelled",
            Self::Timeout => "timeout",
            Self::UpstreamError => "upstream_error",
            Self::RateLimited => "rate_limited",
            Self::Error => "error",
            Self::Refused(code) => code,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ApiError;

    #[test]
    fn an_error_outcome_is_named_by_the_errors_contract_code() {
        for error in [
            ApiError::Timeout,
            ApiError::UpstreamError,
            ApiError::UpstreamUnavailable,
            ApiError::Unauthorized,
            ApiError::NotFound { hint: None },
        ] {
            let code = error.info().code;
            assert_eq!(Outcome::of_error(code).as_str(), code);
        }
        assert_eq!(Outcome::of_error("timeout"), Outcome::Timeout);
    }
}

/// `x-chatgate-cache` (and the `result` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    Hit,
    /// Looked up, not found: a provider was called (and its answer stored).
    Miss,
    /// Not cacheable, or the client asked not to use the cache.
    Bypass,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Bypass => "bypass",
        }
    }
}

/// What the client's `Cache-Control` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Directive {
    #[default]
    Normal,
    /// Do not answer from the cache; still store the fresh answer.
    NoCache,
    /// Neither answer from the cache nor store.
    NoStore,
}

impl Directive {
    /// From a `Cache-Control` value (`no-store` wins over `no-cache`).
    pub fn parse(value: &str) -> Self {
        let mut out = Self::Normal;
        for part in value.split(',').map(|p| p.trim().to_ascii_lowercase()) {
            match part.as_str() {
                "no-store" => return Self::NoStore,
                "no-cache" => out = Self::NoCache,
                _ => {}
            }
        }
        out
    }
}

/// The `flag` rules that matched one request, input and output, for its
/// request-log line and interaction-log line. Shared by the request's
/// steps; bounded by the number of rules (each name is kept once).
#[derive(Debug, Clone, Default)]
pub struct Flags(Arc<Mutex<Vec<Arc<str>>>>);

impl Flags {
    /// Notes that `rule` matched (once per request).
    pub fn add(&self, rule: &Arc<str>) {
        let mut names = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !names.contains(rule) {
            names.push(rule.clone());
        }
    }

    pub fn names(&self) -> Vec<Arc<str>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// `a,b` for the request log (a log field is a string; names have no commas).
    pub fn joined(&self) -> Option<String> {
        let names = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        (!names.is_empty()).then(|| names.join(","))
    }
}
