//! Extractors whose rejections are `ApiError`s: a JSON body (415 for another
//! media type, 413 past the body limit, 400 for malformed JSON) and the
//! request context (request id, key id, start time).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use std::sync::Arc;

use crate::dispatch::{Ctx, StreamReport};
use crate::error::ApiError;
use crate::middleware::auth::KeyId;
use crate::middleware::request_id::HEADER;
use crate::middleware::request_log::Arrival;

pub struct ApiJson<T>(pub T);

fn is_json(content_type: &str) -> bool {
    let mime = content_type.split(';').next().unwrap_or("").trim();
    mime.eq_ignore_ascii_case("application/json")
        || (mime.starts_with("application/") && mime.ends_with("+json"))
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json);
        if !json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::invalid("the request body could not be read")
            }
        })?;
        serde_json::from_slice(&bytes)
            .map(ApiJson)
            .map_err(|e| ApiError::invalid(format!("invalid JSON body: {}", unquoted(&e))))
    }
}

/// serde's message with every quoted string value blanked: serde quotes the
/// client's own values (`invalid type: string "<the prompt>"`), and message
/// text is never echoed back.
fn unquoted(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '"' {
            // Skip to the closing quote; serde escapes quotes inside with `\`.
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => break,
                    _ => {}
                }
            }
            out.push_str("…\"");
        }
    }
    out
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Ctx {
            request_id: parts
                .headers
                .get(HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned(),
            key_id: parts.extensions.get::<KeyId>().map(|k| k.0.clone()),
            // Deadlines count from the request's arrival, not from the handler.
            started: parts
                .extensions
                .get::<Arrival>()
                .map_or_else(tokio::time::Instant::now, |a| a.0),
            report: parts.extensions.get::<Arc<StreamReport>>().cloned(),
        })
    }
}
