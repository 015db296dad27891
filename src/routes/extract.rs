//! Extractors whose rejections are `ApiError`s: a JSON body (415 for another
//! media type, 413 past the body limit, 400 for malformed JSON) and the
//! request context (request id, key id, start time).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use std::sync::Arc;

use crate::context::{Arrival, Ctx, KeyId, StreamReport};
use crate::error::ApiError;
use crate::headers;

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
            request_id: headers::request_id(&parts.headers).unwrap_or("").to_owned(),
            key_id: parts.extensions.get::<KeyId>().map(|k| k.0.clone()),
            // Deadlines count from the request's arrival, not from the handler.
            started: parts
                .extensions
                .get::<Arrival>()
                .map_or_else(tokio::time::Instant::now, |a| a.0),
            report: parts.extensions.get::<Arc<StreamReport>>().cloned(),
            cache: parts
                .headers
                .get(axum::http::header::CACHE_CONTROL)
                .and_then(|v| v.to_str().ok())
                .map(crate::context::Directive::parse)
                .unwrap_or_default(),
            end_user: parts
                .extensions
                .get::<crate::context::EndUser>()
                .map(|u| u.subject.clone()),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::Duration;

    use axum::http::StatusCode;
    use proptest::collection::{btree_map, vec};
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;
    use crate::routes::{chat, openai};

    #[tokio::test]
    async fn ctx_started_is_the_requests_arrival_not_the_handlers_start() {
        let now = tokio::time::Instant::now();
        let arrival = now.checked_sub(Duration::from_secs(1)).unwrap_or(now);
        let mut req = Request::new(axum::body::Body::empty());
        req.extensions_mut().insert(Arrival(arrival));
        let (mut parts, _) = req.into_parts();
        let ctx = Ctx::from_request_parts(&mut parts, &()).await.unwrap();
        assert_eq!(ctx.started, arrival);
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a test runtime")
    }

    /// `bytes` through the real extractor, as a JSON body.
    fn extract<T: DeserializeOwned>(
        rt: &tokio::runtime::Runtime,
        bytes: Vec<u8>,
    ) -> Result<T, ApiError> {
        let req = Request::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(axum::body::Body::from(bytes))
            .unwrap();
        rt.block_on(ApiJson::<T>::from_request(req, &()))
            .map(|ApiJson(body)| body)
    }

    /// A refusal of a body is the client's fault, and says so briefly.
    fn assert_client_error(error: &ApiError) {
        assert_eq!(error.status(), StatusCode::BAD_REQUEST, "{error:?}");
        let info = error.info();
        assert_eq!(info.code, "invalid_request");
        assert!(info.message.chars().count() <= 1000, "{}", info.message);
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("messages".to_owned()),
            Just("model".to_owned()),
            Just("role".to_owned()),
            Just("content".to_owned()),
            Just("stream".to_owned()),
            Just("stream_options".to_owned()),
            Just("include_usage".to_owned()),
            Just("stop".to_owned()),
            Just("n".to_owned()),
            Just("tools".to_owned()),
            Just("max_tokens".to_owned()),
            Just("max_completion_tokens".to_owned()),
            Just("temperature".to_owned()),
            Just("top_p".to_owned()),
            Just("user".to_owned()),
            Just("type".to_owned()),
            Just("text".to_owned()),
            ".{0,12}",
        ]
    }

    /// Any JSON value, biased towards the chat bodies' own field names.
    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_filter_map("finite", |f| {
                serde_json::Number::from_f64(f).map(Value::Number)
            }),
            prop_oneof![
                Just("system".to_owned()),
                Just("user".to_owned()),
                Just("assistant".to_owned()),
                Just("developer".to_owned()),
                Just("text".to_owned()),
                any::<String>(),
            ]
            .prop_map(Value::String),
        ];
        leaf.prop_recursive(5, 96, 8, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..6).prop_map(Value::Array),
                btree_map(key(), inner, 0..8).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A body shaped like a chat request, with anything in its fields.
    fn chat_shaped() -> impl Strategy<Value = Value> {
        let message =
            btree_map(key(), json(), 0..4).prop_map(|m| Value::Object(m.into_iter().collect()));
        (vec(message, 0..4), btree_map(key(), json(), 0..6)).prop_map(|(messages, rest)| {
            let mut body: serde_json::Map<String, Value> = rest.into_iter().collect();
            body.insert("messages".into(), Value::Array(messages));
            Value::Object(body)
        })
    }

    fn native(rt: &tokio::runtime::Runtime, bytes: Vec<u8>) {
        match extract::<chat::Body>(rt, bytes).and_then(chat::Body::into_request) {
            Ok(_) => {}
            Err(e) => assert_client_error(&e),
        }
    }

    fn compat(rt: &tokio::runtime::Runtime, bytes: Vec<u8>) {
        match extract::<openai::Body>(rt, bytes).and_then(openai::Body::into_request) {
            Ok(_) => {}
            Err(e) => assert_client_error(&e),
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_either_chat_route(bytes in vec(any::<u8>(), 0..512)) {
            let rt = runtime();
            native(&rt, bytes.clone());
            compat(&rt, bytes);
        }

        #[test]
        fn arbitrary_json_never_panics_either_chat_route(value in prop_oneof![json(), chat_shaped()]) {
            let rt = runtime();
            let bytes = serde_json::to_vec(&value).unwrap();
            native(&rt, bytes.clone());
            compat(&rt, bytes);
        }
    }
}
