//! Every error status of the contract's table, produced over real HTTP, each
//! with the one JSON shape `{"error": {"code", "message", "request_id"}}`.

use std::time::Duration;

use crate::support::*;
use axum::Router;
use axum::routing::get;
use reqwest::header::CONTENT_TYPE;
use serde_json::json;

/// A provider section for `upstream` whose one attempt outlives every test.
fn patient_provider(upstream: &Upstream) -> String {
    format!(
        "[providers.slow]\nkind = \"openai\"\nbase_url = \"{}\"\napi_key_env = \"TEST_UPSTREAM_KEY\"\n\
         timeout = \"60s\"\nmax_retries = 0\n\n[models.default]\ntargets = [\"slow:m\"]\n",
        upstream.base_url()
    )
}

#[tokio::test]
async fn every_invalid_chat_body_is_a_400_invalid_request() {
    let app = spawn_app("[chat]\nmax_messages = 2\nmax_message_chars = 10\n").await;
    let secret_text = "abcdefghijk-not-echoed";
    let cases: Vec<(&str, String)> = vec![
        ("malformed JSON", r#"{"messages": ["#.into()),
        ("missing messages", "{}".into()),
        ("empty messages", json!({"messages": []}).to_string()),
        (
            "bad role",
            json!({"messages": [{"role": "wizard", "content": "hi"}]}).to_string(),
        ),
        (
            "non-string content",
            json!({"messages": [{"role": "user", "content": 42}]}).to_string(),
        ),
        (
            "max_tokens 0",
            json!({"messages": say("hi"), "max_tokens": 0}).to_string(),
        ),
        (
            "temperature 3",
            json!({"messages": say("hi"), "temperature": 3}).to_string(),
        ),
        (
            "too many messages",
            json!({"messages": [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": "b"},
                {"role": "user", "content": "c"}]})
            .to_string(),
        ),
        (
            "too long message",
            json!({"messages": say(secret_text)}).to_string(),
        ),
    ];
    for (case, body) in cases {
        let r = app
            .client
            .post(app.url("/api/v1/chat"))
            .bearer_auth(KEY)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{case}");
        let (_, e) = error_of(r, 400, "invalid_request").await;
        assert!(
            !e["message"].as_str().unwrap().contains(secret_text),
            "{case}: message text is never echoed"
        );
    }
    // Within the limits the same app answers.
    let r = app.chat(json!({"messages": say("0123456789")})).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn missing_or_wrong_key_is_401_with_www_authenticate_and_both_headers_work() {
    let app = spawn_app("").await;
    let url = app.url("/api/v1/chat");
    let body = json!({"messages": say("hi")});
    let missing = app.client.post(&url).json(&body).send().await.unwrap();
    let wrong_bearer = app
        .client
        .post(&url)
        .bearer_auth("not-the-key")
        .json(&body)
        .send()
        .await
        .unwrap();
    let wrong_x_api_key = app
        .client
        .post(&url)
        .header("x-api-key", "not-the-key")
        .json(&body)
        .send()
        .await
        .unwrap();
    for r in [missing, wrong_bearer, wrong_x_api_key] {
        let (headers, _) = error_of(r, 401, "unauthorized").await;
        assert_eq!(headers["www-authenticate"], "Bearer");
    }

    let bearer = app
        .client
        .post(&url)
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);
    let x_api_key = app
        .client
        .post(&url)
        .header("x-api-key", KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(x_api_key.status(), 200);
}

#[tokio::test]
async fn x_api_key_is_accepted_beside_another_authorization_scheme() {
    let app = spawn_app("").await;
    let r = app
        .client
        .post(app.url("/api/v1/chat"))
        .header("authorization", "Basic cHJveHk6cGFzcw==")
        .header("x-api-key", KEY)
        .json(&json!({"messages": say("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn json_type_errors_do_not_echo_the_clients_text() {
    let app = spawn_app("").await;
    let private = "my \"private\" prompt text";
    for body in [
        json!({"messages": private}),
        json!({"messages": say("hi"), "max_tokens": private}),
        json!({"messages": say("hi"), "model": [private]}),
    ] {
        let r = app.chat(body).await;
        let (_, e) = error_of(r, 400, "invalid_request").await;
        let message = e["message"].as_str().unwrap();
        assert!(!message.contains("private"), "{message}");
        assert!(
            message.contains("expected"),
            "still says what is wrong: {message}"
        );
    }
}

#[tokio::test]
async fn unknown_paths_are_404_not_found_even_without_a_key() {
    let app = spawn_app("").await;
    for path in ["/nope", "/api/v1/nope", "/api/v2/chat"] {
        let r = app.get(path).await;
        error_of(r, 404, "not_found").await;
        let r = app.client.post(app.url(path)).send().await.unwrap();
        error_of(r, 404, "not_found").await;
    }
}

#[tokio::test]
async fn unknown_model_is_404_model_not_found() {
    let app = spawn_app("").await;
    let r = app
        .chat(json!({"messages": say("hi"), "model": "no-such-model"}))
        .await;
    error_of(r, 404, "model_not_found").await;
}

#[tokio::test]
async fn wrong_method_is_405_method_not_allowed() {
    let app = spawn_app("").await;
    let r = app
        .client
        .get(app.url("/api/v1/chat"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    error_of(r, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn body_over_max_body_bytes_is_413_with_or_without_content_length() {
    let app = spawn_app("[server]\nmax_body_bytes = 200\n").await;
    let big = json!({"messages": say(&"x".repeat(1000))}).to_string();

    let declared = app
        .client
        .post(app.url("/api/v1/chat"))
        .bearer_auth(KEY)
        .header(CONTENT_TYPE, "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    error_of(declared, 413, "payload_too_large").await;

    let chunks: Vec<Result<String, std::io::Error>> = big
        .as_bytes()
        .chunks(100)
        .map(|c| Ok(String::from_utf8(c.to_vec()).unwrap()))
        .collect();
    let chunked = app
        .client
        .post(app.url("/api/v1/chat"))
        .bearer_auth(KEY)
        .header(CONTENT_TYPE, "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    error_of(chunked, 413, "payload_too_large").await;

    let small = app.chat(json!({"messages": say("hi")})).await;
    assert_eq!(small.status(), 200, "a body under the limit passes");
}

#[tokio::test]
async fn body_that_is_not_json_is_415() {
    let app = spawn_app("").await;
    let body = json!({"messages": say("hi")}).to_string();
    let text_plain = app
        .client
        .post(app.url("/api/v1/chat"))
        .bearer_auth(KEY)
        .header(CONTENT_TYPE, "text/plain")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    error_of(text_plain, 415, "unsupported_media_type").await;
    let no_content_type = app
        .client
        .post(app.url("/api/v1/chat"))
        .bearer_auth(KEY)
        .body(body)
        .send()
        .await
        .unwrap();
    error_of(no_content_type, 415, "unsupported_media_type").await;
}

#[tokio::test]
async fn request_beyond_max_concurrent_requests_is_503_overloaded_at_once() {
    let up = Upstream::openai().await;
    up.push([Reply::Hang]);
    let extra = format!(
        "[server]\nmax_concurrent_requests = 1\n{}",
        patient_provider(&up)
    );
    let app = spawn_app_with_env(&extra, &upstream_env()).await;

    let url = app.url("/api/v1/chat");
    let client = app.client.clone();
    let holder = tokio::spawn(async move {
        client
            .post(url)
            .bearer_auth(KEY)
            .json(&json!({"messages": say("hold the slot")}))
            .send()
            .await
    });
    assert!(
        eventually(Duration::from_secs(10), || up.calls() == 1).await,
        "the first request reached the hanging upstream"
    );

    let r = app.chat(json!({"messages": say("one too many")})).await;
    error_of(r, 503, "overloaded").await;
    assert_eq!(up.calls(), 1, "the refused request never went upstream");
    assert!(
        !holder.is_finished(),
        "the first request still holds the slot"
    );
    holder.abort();
}

#[tokio::test]
async fn request_past_request_timeout_is_504_timeout() {
    let up = Upstream::openai().await;
    up.push([Reply::Hang]);
    let extra = format!(
        "[server]\nrequest_timeout = \"300ms\"\n{}",
        patient_provider(&up)
    );
    let app = spawn_app_with_env(&extra, &upstream_env()).await;
    let r = app.chat(json!({"messages": say("hi")})).await;
    error_of(r, 504, "timeout").await;
    assert_eq!(up.calls(), 1);
}

#[tokio::test]
async fn panicking_handler_is_a_json_500_and_the_server_lives_on() {
    let config = load_config("", &[]).unwrap();
    let routes = Router::new().route("/boom", get(boom));
    let app = spawn_config_with_routes(config, routes).await;
    let r = app.get("/boom").await;
    let (_, e) = error_of(r, 500, "internal_error").await;
    assert!(
        !e["message"].as_str().unwrap().contains("boom"),
        "no panic text reaches the client"
    );

    let r = app.get("/health").await;
    assert_eq!(r.status(), 200);
    let r = app.chat(json!({"messages": say("still here")})).await;
    assert_eq!(r.status(), 200);
}
