//! What the gateway's answers must look like, checked in one place: the
//! contract's error shape, its 429, and the small requests and handlers that
//! several areas share.

use reqwest::header::{CONTENT_TYPE, HeaderMap};
use serde_json::Value;

use super::{KEY, TestApp};

/// An error answer, read whole: its request id is already checked to be
/// the `x-request-id` header.
pub struct ErrorAnswer {
    pub status: u16,
    pub headers: HeaderMap,
    /// The raw body, for checks that nothing leaked into it.
    pub body: String,
    /// The `error` object.
    pub error: Value,
}

impl ErrorAnswer {
    pub async fn read(r: reqwest::Response) -> Self {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let id = headers["x-request-id"].to_str().unwrap().to_owned();
        let body = r.text().await.unwrap();
        let v: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: not JSON: {body}"));
        assert_eq!(
            v["error"]["request_id"],
            id.as_str(),
            "request_id is x-request-id"
        );
        Self {
            status,
            headers,
            error: v["error"].clone(),
            body,
        }
    }
}

/// Checks status, content type and the one error shape
/// `{"error": {"code", "message", "request_id"}}` with a non-empty message
/// and the `x-request-id` as its request id. Returns the headers and the error object.
pub async fn error_of(r: reqwest::Response, status: u16, code: &str) -> (HeaderMap, Value) {
    assert_eq!(r.status(), status, "status for {code}");
    assert_eq!(r.headers()[CONTENT_TYPE], "application/json", "{code}");
    let answer = ErrorAnswer::read(r).await;
    assert!(!answer.headers["x-request-id"].is_empty());
    let v: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(v.as_object().unwrap().len(), 1, "only `error`: {v}");
    let e = answer.error;
    assert_eq!(e["code"], code, "{v}");
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    (answer.headers, e)
}

/// A contract 429: `rate_limited` with its request id, and a `Retry-After` of
/// whole seconds, 1 to 60 (every test limit refills at least once a minute).
/// Returns the `Retry-After`.
pub async fn assert_rate_limited(r: reqwest::Response) -> u64 {
    assert_eq!(r.status(), 429);
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After is whole seconds");
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    let answer = ErrorAnswer::read(r).await;
    assert_eq!(answer.error["code"], "rate_limited");
    retry_after
}

/// `GET /api/v1/models` with the test key (the cheapest authenticated request).
pub async fn models(app: &TestApp) -> reqwest::Response {
    models_as(app, KEY, None).await
}

/// `GET /api/v1/models` with client key `key`, and an `X-Forwarded-For` if given.
pub async fn models_as(app: &TestApp, key: &str, xff: Option<&str>) -> reqwest::Response {
    let mut req = app.client.get(app.url("/api/v1/models")).bearer_auth(key);
    if let Some(xff) = xff {
        req = req.header("x-forwarded-for", xff);
    }
    req.send().await.unwrap()
}

/// `n` concurrent [`models`] requests, started now; their statuses come as they finish.
pub fn models_in_parallel(app: &TestApp, n: usize) -> tokio::task::JoinSet<reqwest::StatusCode> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let request = app.client.get(app.url("/api/v1/models")).bearer_auth(KEY);
        tasks.spawn(async move { request.send().await.unwrap().status() });
    }
    tasks
}

/// A handler that panics, for the catch-panic layer; the text must never reach a client.
pub async fn boom() -> &'static str {
    panic!("boom: internal detail")
}
