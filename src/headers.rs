//! The HTTP header names chatgate reads or sets, named once, and the one
//! reader of a Bearer token (client keys and the metrics token alike).

use axum::http::{HeaderMap, HeaderName, header};

/// The request id: kept from the client when valid, else set; echoed on every
/// response and forwarded upstream.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Anthropic's name for the request id, on the Messages route's responses
/// (its SDKs read it as `_request_id`).
pub const ANTHROPIC_REQUEST_ID: HeaderName = HeaderName::from_static("request-id");
/// A client key, for clients that cannot send `Authorization: Bearer`.
pub const API_KEY: HeaderName = HeaderName::from_static("x-api-key");
/// `true` on answers from a model's fallback message.
pub const DEGRADED: HeaderName = HeaderName::from_static("x-chatgate-degraded");
/// `no`, so proxies (nginx) pass a stream through as it comes.
pub const ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");
/// `hit`, `miss` or `bypass`: how the response cache took part.
pub const CACHE: HeaderName = HeaderName::from_static("x-chatgate-cache");
/// What a whole answer cost, in USD.
pub const COST_USD: HeaderName = HeaderName::from_static("x-chatgate-cost-usd");
/// `stable` or `canary`: which variant of the model served the chat.
pub const VARIANT: HeaderName = HeaderName::from_static("x-chatgate-variant");

/// The request id a response or log line names ("" when there is none:
/// the request-id layers always set one before anything reads it).
pub fn request_id(headers: &HeaderMap) -> Option<&str> {
    headers.get(REQUEST_ID).and_then(|v| v.to_str().ok())
}

/// The token of `Authorization: Bearer <token>`, trimmed. The scheme is
/// case-insensitive (RFC 9110); another scheme (a proxy's Basic) is not ours.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|auth| auth.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}
