//! The one error type of the HTTP surface: status, code and message in one `match`.
//!
//! `ApiError` becomes a response carrying an [`ErrorInfo`] extension; the
//! `error_body` layer renders the contract's JSON, adding the request id, so
//! every error (from handlers, extractors, layers or axum itself) has one shape.

use std::borrow::Cow;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::chat::truncate;

/// Client values echoed in an error message (an unknown model name) are cut
/// to this many characters, so an error body stays small whatever was sent.
pub const ECHO_MAX_CHARS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// Client's request is wrong; the message says how (it never quotes upstream bodies).
    InvalidRequest(Cow<'static, str>),
    Unauthorized,
    /// No such route; `hint` is a known route the path nearly matched.
    NotFound {
        hint: Option<&'static str>,
    },
    ModelNotFound(String),
    MethodNotAllowed,
    PayloadTooLarge,
    UnsupportedMediaType,
    RateLimited {
        retry_after: Duration,
        /// Which limit refused; `None` for a bare 429 from elsewhere.
        scope: Option<RateLimitScope>,
    },
    /// A provider answered with something unusable.
    UpstreamError,
    /// Every target failed.
    UpstreamUnavailable,
    /// Concurrency cap reached, or shared state unavailable under `on_redis_error = "deny"`.
    Overloaded,
    Timeout,
    Internal,
}

/// The limit behind a 429, named in its message so a client knows whether
/// its address or its key ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitScope {
    PerIp,
    PerKey,
    /// Per end user (JWT subject) of an IdP with `requests_per_minute`.
    PerUser,
}

/// What the `error_body` layer needs to render an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorInfo {
    pub code: &'static str,
    pub message: Cow<'static, str>,
}

impl ApiError {
    pub fn invalid(message: impl Into<Cow<'static, str>>) -> Self {
        Self::InvalidRequest(message.into())
    }

    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    pub fn info(&self) -> ErrorInfo {
        let (_, code, message) = self.parts();
        ErrorInfo { code, message }
    }

    fn parts(&self) -> (StatusCode, &'static str, Cow<'static, str>) {
        use ApiError::*;
        match self {
            InvalidRequest(m) => (StatusCode::BAD_REQUEST, "invalid_request", m.clone()),
            Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or invalid API key".into(),
            ),
            NotFound { hint: None } => (StatusCode::NOT_FOUND, "not_found", "no such route".into()),
            NotFound { hint: Some(route) } => (
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no such route; did you mean {route}?").into(),
            ),
            ModelNotFound(name) => (
                StatusCode::NOT_FOUND,
                "model_not_found",
                format!("unknown model `{}`", truncate(name, ECHO_MAX_CHARS)).into(),
            ),
            MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route".into(),
            ),
            PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "request body is too large".into(),
            ),
            UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "request body must be application/json".into(),
            ),
            RateLimited { scope, .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                match scope {
                    Some(RateLimitScope::PerIp) => "per-IP rate limit exceeded, retry later",
                    Some(RateLimitScope::PerKey) => "per-key rate limit exceeded, retry later",
                    Some(RateLimitScope::PerUser) => "per-user rate limit exceeded, retry later",
                    None => "rate limit exceeded, retry later",
                }
                .into(),
            ),
            UpstreamError => (
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                "the provider returned an unusable answer".into(),
            ),
            UpstreamUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream_unavailable",
                "no provider could answer, try again shortly".into(),
            ),
            Overloaded => (
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "the gateway is at capacity, retry shortly".into(),
            ),
            Timeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                "the request took too long".into(),
            ),
            Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "internal error".into(),
            ),
        }
    }

    /// The error for a bare non-2xx response that carries no `ErrorInfo`
    /// (axum's own 405, tower-http's 413, …).
    pub fn from_status(status: StatusCode) -> Self {
        match status {
            StatusCode::BAD_REQUEST => Self::invalid("bad request"),
            StatusCode::UNAUTHORIZED => Self::Unauthorized,
            StatusCode::NOT_FOUND => Self::NotFound { hint: None },
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType,
            StatusCode::TOO_MANY_REQUESTS => Self::RateLimited {
                retry_after: Duration::from_secs(1),
                scope: None,
            },
            StatusCode::SERVICE_UNAVAILABLE => Self::Overloaded,
            StatusCode::GATEWAY_TIMEOUT | StatusCode::REQUEST_TIMEOUT => Self::Timeout,
            StatusCode::BAD_GATEWAY => Self::UpstreamError,
            _ => Self::Internal,
        }
    }
}

/// Whole seconds for `Retry-After`, rounded up and at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = status.into_response();
        match &self {
            ApiError::Unauthorized => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::RateLimited { retry_after, .. } => {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs(*retry_after)),
                );
            }
            _ => {}
        }
        response.extensions_mut().insert(self.info());
        response
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
}

/// The contract's error JSON. `request_id` is left out only in SSE `error` events.
pub fn error_json(info: &ErrorInfo, request_id: Option<&str>) -> String {
    let envelope = Envelope {
        error: Body {
            code: info.code,
            message: &info.message,
            request_id,
        },
    };
    // Serializing two strings cannot fail; fall back to a fixed body rather than panic.
    serde_json::to_string(&envelope).unwrap_or_else(|_| {
        r#"{"error":{"code":"internal_error","message":"internal error"}}"#.into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_and_is_at_least_one() {
        assert_eq!(retry_after_secs(Duration::from_millis(10)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }

    #[test]
    fn error_json_has_the_contract_shape() {
        let json = error_json(&ApiError::Timeout.info(), Some("abc"));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(v["error"]["code"], "timeout");
        assert_eq!(v["error"]["request_id"], "abc");
        assert!(v["error"]["message"].is_string());
    }
}
