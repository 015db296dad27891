//! What an operator and a first-time client see: pretty logs without colour
//! codes when stdout is not a terminal (the real binary), 429 messages that
//! name the limit, and 404s that point a near-miss URL at the route it meant.

use crate::support::binary::Chatgate;
use crate::support::cli::fresh_clone;
use crate::support::*;
use serde_json::Value;

#[tokio::test]
async fn pretty_logs_of_the_real_binary_carry_no_ansi_colours_when_stdout_is_a_pipe() {
    let clone = fresh_clone();
    // The shipped development profile logs pretty; stdout is a pipe here.
    let binary = Chatgate::in_dir(clone.path())
        .envs([("APP_ENV", "development"), ("CHATGATE_SERVER__PORT", "0")])
        .spawn()
        .await;
    let r = reqwest::get(binary.url("/api/v1/nope")).await.unwrap();
    assert_eq!(r.status(), 404);
    let (_, output) = binary.stop().await;
    assert!(output.contains("chatgate listening"), "{output}");
    assert!(!output.contains("\u{1b}["), "no ANSI escape: {output:?}");
    assert!(
        output
            .lines()
            .any(|l| l.contains(" INFO ") && l.contains("404")),
        "the request was logged, pretty: {output}"
    );
}

async fn rate_limited_message(r: reqwest::Response) -> String {
    assert_eq!(r.status(), 429);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limited");
    v["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_429_from_the_ip_limit_says_per_ip() {
    let app = spawn_app(&ip_limit(3)).await;
    for _ in 0..3 {
        assert_eq!(app.get("/api/v1/models").await.status(), 401);
    }
    let message = rate_limited_message(app.get("/api/v1/models").await).await;
    assert!(message.contains("per-IP"), "{message}");
    assert!(!message.contains("per-key"), "{message}");
}

#[tokio::test]
async fn a_429_from_the_key_limit_says_per_key() {
    let app = spawn_app("[auth.keys.test]\nrequests_per_minute = 1\nburst = 1\n").await;
    let models = || {
        app.client
            .get(app.url("/api/v1/models"))
            .bearer_auth(KEY)
            .send()
    };
    assert_eq!(models().await.unwrap().status(), 200);
    let message = rate_limited_message(models().await.unwrap()).await;
    assert!(message.contains("per-key"), "{message}");
    assert!(!message.contains("per-IP"), "{message}");
}

/// The 404 for `path` (no key: hints come before any guard), and its message.
async fn not_found_message(app: &TestApp, method: reqwest::Method, path: &str) -> String {
    let r = app
        .client
        .request(method, app.url(path))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "{path}");
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "not_found", "{path}: {v}");
    assert_eq!(v["error"]["request_id"], id.as_str());
    v["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn near_miss_urls_get_a_404_naming_the_route_they_meant() {
    let app = spawn_app("").await;
    for (path, meant) in [
        ("/v1/chat/completions", "/api/v1/chat/completions"),
        ("/chat/completions", "/api/v1/chat/completions"),
        ("/chat", "/api/v1/chat"),
        ("/api/chat", "/api/v1/chat"),
        ("/v1/models", "/api/v1/models"),
        ("/api/v1/chat/", "/api/v1/chat"),
        ("/api/v1/chat/completions/", "/api/v1/chat/completions"),
        ("/health/ready/", "/health/ready"),
    ] {
        let method = if path.contains("models") || path.contains("health") {
            reqwest::Method::GET
        } else {
            reqwest::Method::POST
        };
        let message = not_found_message(&app, method, path).await;
        assert!(
            message.ends_with(&format!("did you mean {meant}?")),
            "{path}: {message}"
        );
    }
}

#[tokio::test]
async fn a_404_never_echoes_the_requested_path() {
    let app = spawn_app("").await;
    for path in [
        "/leak-me-please-4711",
        "/v1/chat/completions?leak-me-please-4711",
        "/api/v1/leak-me-please-4711/",
    ] {
        let message = not_found_message(&app, reqwest::Method::GET, path).await;
        assert!(!message.contains("leak-me"), "{path}: {message}");
    }
    let message = not_found_message(&app, reqwest::Method::GET, "/nope").await;
    assert_eq!(message, "no such route", "no hint without a near miss");
}
