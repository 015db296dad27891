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

/// Client values echoed in an error message (an unknown model name) are cut
/// to this many characters, so an error body stays small whatever was sent.
pub const ECHO_MAX_CHARS: usize = 64;

/// `s` cut to `max` characters (with `…` when cut): for client values echoed in errors.
pub(crate) fn truncate(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        Some((at, _)) => Cow::Owned(format!("{}…", &s[..at])),
        None => Cow::Borrowed(s),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// Client's request is wrong; the message says how (it never quotes
    /// upstream bodies), `param` names the offending field when one is to blame.
    InvalidRequest {
        message: Cow<'static, str>,
        param: Option<Cow<'static, str>>,
    },
    /// No target of the model can serve a feature the request uses.
    UnsupportedFeature {
        /// For humans: `tools`, `images`, `n > 1`, `response_format`, `logprobs`.
        feature: &'static str,
        /// The request field that asks for it.
        param: &'static str,
    },
    Unauthorized,
    /// A guard rule with `action = "block"` (or the system-prompt leak check)
    /// matched the request or, with `answer`, the answer. Names the rule, never the text.
    ContentBlocked {
        rule: std::sync::Arc<str>,
        answer: bool,
    },
    /// No such route; `hint` is a known route the path nearly matched.
    NotFound {
        hint: Option<&'static str>,
    },
    ModelNotFound(String),
    MethodNotAllowed,
    PayloadTooLarge,
    /// Request headers over `middleware::header_limit::MAX_HEADER_BYTES`.
    HeadersTooLarge,
    UnsupportedMediaType,
    RateLimited {
        retry_after: Duration,
        /// Which limit refused; `None` for a bare 429 from elsewhere.
        scope: Option<RateLimitScope>,
    },
    /// A token or USD budget is spent: `scope` is `key`, `user` or
    /// `gateway`, `window` `day` or `month`; it resets after `retry_after`.
    BudgetExceeded {
        scope: &'static str,
        window: &'static str,
        retry_after: Duration,
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
    /// OpenAI's word for the kind of error, so its SDKs classify it (`error.type`).
    pub kind: &'static str,
    /// The offending request field, or `None` (`null`).
    pub param: Option<Cow<'static, str>>,
}

impl ApiError {
    pub fn invalid(message: impl Into<Cow<'static, str>>) -> Self {
        Self::InvalidRequest {
            message: message.into(),
            param: None,
        }
    }

    /// A 400 blaming one request field (`"temperature"`, `"messages[2].role"`).
    pub fn invalid_param(
        param: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::InvalidRequest {
            message: message.into(),
            param: Some(param.into()),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    pub fn info(&self) -> ErrorInfo {
        let (status, code, message) = self.parts();
        let param = match self {
            ApiError::InvalidRequest { param, .. } => param.clone(),
            ApiError::UnsupportedFeature { param, .. } => Some(Cow::Borrowed(*param)),
            _ => None,
        };
        ErrorInfo {
            code,
            message,
            kind: kind(status),
            param,
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, Cow<'static, str>) {
        use ApiError::*;
        match self {
            InvalidRequest { message, .. } => {
                (StatusCode::BAD_REQUEST, "invalid_request", message.clone())
            }
            UnsupportedFeature { feature, .. } => (
                StatusCode::BAD_REQUEST,
                "unsupported_feature",
                format!("no target of this model supports {feature}").into(),
            ),
            Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or invalid API key".into(),
            ),
            ContentBlocked { rule, answer } => (
                StatusCode::BAD_REQUEST,
                "content_blocked",
                format!(
                    "the {} was blocked by guard rule `{rule}`",
                    if *answer { "answer" } else { "request" }
                )
                .into(),
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
                format!(
                    "unknown model `{}`; GET /api/v1/models lists the available ones",
                    truncate(name, ECHO_MAX_CHARS)
                )
                .into(),
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
            HeadersTooLarge => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                "request headers are too large".into(),
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
            BudgetExceeded { scope, window, .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "budget_exceeded",
                format!(
                    "the {scope} budget for this UTC {window} is spent; retry after the {window} ends"
                )
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
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => Self::HeadersTooLarge,
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

/// OpenAI's error `type` for a status: its SDKs read it as `error.type`.
fn kind(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 | 403 => "authentication_error",
        429 => "rate_limit_error",
        500.. => "api_error",
        _ => "invalid_request_error",
    }
}

/// Anthropic's error `type` for a status, so its SDKs classify errors.
fn anthropic_kind(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        500.. => "api_error",
        _ => "invalid_request_error",
    }
}

#[derive(Serialize)]
struct AnthropicEnvelope<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: AnthropicBody<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
}

#[derive(Serialize)]
struct AnthropicBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'a str,
}

/// Anthropic's error shape, `{"type": "error", "error": {"type", "message"}}`
/// (and `request_id` at the top, as Anthropic's own API has it), for the
/// Messages route; the message is the same as in [`error_json`].
pub fn anthropic_error_json(
    status: StatusCode,
    info: &ErrorInfo,
    request_id: Option<&str>,
) -> String {
    let envelope = AnthropicEnvelope {
        kind: "error",
        error: AnthropicBody {
            kind: anthropic_kind(status),
            message: &info.message,
        },
        request_id,
    };
    serde_json::to_string(&envelope).unwrap_or_else(|_| {
        r#"{"type":"error","error":{"type":"api_error","message":"internal error"}}"#.into()
    })
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
            ApiError::RateLimited { retry_after, .. }
            | ApiError::BudgetExceeded { retry_after, .. } => {
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

/// The error JSON (documented in `/openapi.json` as `Error`).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub(crate) struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ErrorBody)]
pub(crate) struct Body<'a> {
    /// One of the contract's codes.
    #[schema(value_type = String, example = "invalid_request")]
    #[schema(
        pattern = "^(invalid_request|unsupported_feature|content_blocked|not_found|model_not_found|method_not_allowed|payload_too_large|headers_too_large|unsupported_media_type|unauthorized|rate_limited|budget_exceeded|upstream_error|upstream_unavailable|timeout|overloaded|internal_error)$"
    )]
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    #[serde(rename = "type")]
    kind: &'a str,
    /// Always present, `null` when no field is to blame (as OpenAI's errors).
    param: Option<&'a str>,
}

/// The contract's error JSON. `request_id` is left out only in SSE `error` events.
pub fn error_json(info: &ErrorInfo, request_id: Option<&str>) -> String {
    let envelope = Envelope {
        error: Body {
            code: info.code,
            message: &info.message,
            request_id,
            kind: info.kind,
            param: info.param.as_deref(),
        },
    };
    // Serializing two strings cannot fail; fall back to a fixed body rather than panic.
    serde_json::to_string(&envelope).unwrap_or_else(|_| {
        r#"{"error":{"code":"internal_error","message":"internal error","type":"api_error","param":null}}"#.into()
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
        assert_eq!(v["error"]["type"], "api_error");
        assert_eq!(v["error"]["param"], serde_json::Value::Null);
    }

    #[test]
    fn error_types_use_openais_words_and_param_names_the_field() {
        let cases = [
            (
                ApiError::invalid_param("temperature", "x"),
                "invalid_request_error",
                Some("temperature"),
            ),
            (ApiError::Unauthorized, "authentication_error", None),
            (
                ApiError::NotFound { hint: None },
                "invalid_request_error",
                None,
            ),
            (ApiError::PayloadTooLarge, "invalid_request_error", None),
            (
                ApiError::UnsupportedMediaType,
                "invalid_request_error",
                None,
            ),
            (ApiError::MethodNotAllowed, "invalid_request_error", None),
            (
                ApiError::RateLimited {
                    retry_after: Duration::from_secs(1),
                    scope: None,
                },
                "rate_limit_error",
                None,
            ),
            (ApiError::UpstreamUnavailable, "api_error", None),
            (ApiError::Timeout, "api_error", None),
            (
                ApiError::UnsupportedFeature {
                    feature: "tools",
                    param: "tools",
                },
                "invalid_request_error",
                Some("tools"),
            ),
        ];
        for (error, kind, param) in cases {
            let info = error.info();
            assert_eq!(info.kind, kind, "{error:?}");
            assert_eq!(info.param.as_deref(), param, "{error:?}");
        }
    }
}
