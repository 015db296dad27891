//! Calling providers: retries on the same target, `Retry-After`, what is never
//! retried, failover, the fallback message, and the timeouts, over real HTTP
//! with scripted upstreams whose call counts prove what was tried.

use std::time::{Duration, Instant, SystemTime};

use crate::support::*;
use serde_json::{Value, json};

/// The upstream's error bodies carry this; no answer of ours may.
const SECRET: &str = "SECRET-UPSTREAM-DETAIL";
const FALLBACK: &str = "Sorry, try again shortly.";

/// `default` → `first:m1`, then `second:m2`; `model` adds keys to the model.
fn two_targets(first: &Provider, second: &Provider, model: &str) -> String {
    format!("{first}{second}\n[models.default]\ntargets = [\"first:m1\", \"second:m2\"]\n{model}\n")
}

/// `default` → `first:m1` only.
fn one_target(up: &Upstream) -> String {
    let first = Provider::openai("first", up);
    format!("{first}\n[models.default]\ntargets = [\"first:m1\"]\n")
}

async fn app(toml: &str) -> TestApp {
    spawn_app_with_env(toml, &upstream_env()).await
}

async fn chat(app: &TestApp) -> reqwest::Response {
    app.chat(json!({"messages": say("hi")})).await
}

/// Status and the `error` object of an error answer; checks the request id
/// and that nothing of the upstream's body leaked.
async fn error_without_leak(r: reqwest::Response) -> (u16, Value) {
    let answer = ErrorAnswer::read(r).await;
    let text = &answer.body;
    assert!(!text.contains(SECRET), "upstream body leaked: {text}");
    assert!(
        !text.contains("upstream says"),
        "upstream body leaked: {text}"
    );
    (answer.status, answer.error)
}

async fn answered_by(r: reqwest::Response) -> String {
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["provider"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn retries_a_503_on_the_same_target_and_answers() {
    let up = Upstream::openai().await;
    up.push([Reply::status(503), Reply::text("recovered")]);
    let app = app(&one_target(&up)).await;
    let r = chat(&app).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["message"]["content"], "recovered");
    assert_eq!(up.calls(), 2);
    let m = app.metrics().await;
    let retries = metric(
        &m,
        "chatgate_upstream_retries_total",
        &[("provider", "first")],
    );
    assert_eq!(retries, 1.0);
    let attempts = |outcome| {
        metric(
            &m,
            "chatgate_upstream_requests_total",
            &[("provider", "first"), ("model", "m1"), ("outcome", outcome)],
        )
    };
    assert_eq!((attempts("error"), attempts("success")), (1.0, 1.0));
}

#[tokio::test]
async fn honours_retry_after_in_seconds_and_as_an_http_date() {
    for as_date in [false, true] {
        let value = if as_date {
            httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3))
        } else {
            "1".to_owned()
        };
        let value = value.as_str();
        let up = Upstream::openai().await;
        up.push([
            Reply::status_with(429, "retry-after", value),
            Reply::text("after the wait"),
        ]);
        // Backoff alone would wait at most 5ms here.
        let app = app(&one_target(&up)).await;
        let started = Instant::now();
        let r = chat(&app).await;
        assert_eq!(r.status(), 200, "{value}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["message"]["content"], "after the wait");
        assert_eq!(up.calls(), 2, "{value}");
        // A lower bound only (a wait never ends early): the retry waited for Retry-After.
        assert!(started.elapsed() >= Duration::from_secs(1), "{value}");
        let m = app.metrics().await;
        let limited = [("provider", "first"), ("outcome", "rate_limited")];
        assert_eq!(
            metric(&m, "chatgate_upstream_requests_total", &limited),
            1.0
        );
    }
}

#[tokio::test]
async fn gives_up_a_target_whose_retry_after_ends_past_the_deadline() {
    let (first, second) = (Upstream::openai().await, Upstream::openai().await);
    first.push([Reply::status_with(429, "retry-after", "120")]);
    second.push([Reply::text("from second")]);
    let toml = two_targets(
        &Provider::openai("first", &first),
        &Provider::openai("second", &second),
        "",
    );
    let app = app(&format!("[server]\nrequest_timeout = \"5s\"\n{toml}")).await;
    // Waiting (even until the deadline) would end in 504, not in the second target's answer.
    assert_eq!(answered_by(chat(&app).await).await, "second");
    assert_eq!((first.calls(), second.calls()), (1, 1));
    let m = app.metrics().await;
    assert_eq!(
        metric(
            &m,
            "chatgate_upstream_retries_total",
            &[("provider", "first")]
        ),
        0.0
    );
}

#[tokio::test]
async fn provider_400_and_422_become_a_sanitised_400_with_no_retry_or_failover() {
    for code in [400, 422] {
        let (first, second) = (Upstream::openai().await, Upstream::openai().await);
        first.push([Reply::status(code)]);
        let model = format!("fallback_message = \"{FALLBACK}\"");
        let app = app(&two_targets(
            &Provider::openai("first", &first),
            &Provider::openai("second", &second),
            &model,
        ))
        .await;
        for route in ["/api/v1/chat", "/api/v1/chat/completions"] {
            let r = app.post(route, &json!({"messages": say("hi")})).await;
            let (status, error) = error_without_leak(r).await;
            assert_eq!(status, 400, "{code} {route}");
            assert_eq!(error["code"], "invalid_request", "{code} {route}");
            let message = error["message"].as_str().unwrap();
            assert!(message.contains("provider rejected"), "{message}");
            assert!(!message.contains(FALLBACK));
        }
        assert_eq!(first.calls(), 2, "one call per request, never retried");
        assert_eq!(second.calls(), 0, "a bad request is not failed over");
        let m = app.metrics().await;
        assert_eq!(
            metric(&m, "chatgate_fallbacks_total", &[("model", "default")]),
            0.0
        );
    }
}

#[tokio::test]
async fn provider_401_403_404_move_to_the_next_target_without_retrying() {
    for code in [401, 403, 404] {
        let (first, second) = (Upstream::openai().await, Upstream::openai().await);
        first.push([Reply::status(code)]);
        second.push([Reply::text("from second")]);
        let app = app(&two_targets(
            &Provider::openai("first", &first),
            &Provider::openai("second", &second),
            "",
        ))
        .await;
        assert_eq!(answered_by(chat(&app).await).await, "second", "{code}");
        assert_eq!((first.calls(), second.calls()), (1, 1), "{code}");
    }
}

#[tokio::test]
async fn a_persistent_500_uses_every_retry_then_fails_over() {
    let (first, second) = (Upstream::openai().await, Upstream::openai().await);
    first.push([Reply::status(500)]);
    second.push([Reply::text("from second")]);
    let app = app(&two_targets(
        &Provider::openai("first", &first),
        &Provider::openai("second", &second),
        "",
    ))
    .await;
    let r = chat(&app).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["provider"], "second");
    assert_eq!(v["provider_model"], "m2");
    assert_eq!(v["message"]["content"], "from second");
    assert_eq!(first.calls(), 3, "1 + max_retries (2)");
    assert_eq!(second.calls(), 1);
    let m = app.metrics().await;
    assert_eq!(
        metric(
            &m,
            "chatgate_upstream_retries_total",
            &[("provider", "first")]
        ),
        2.0
    );
    assert_eq!(
        metric(&m, "chatgate_fallbacks_total", &[("model", "default")]),
        1.0
    );
}

#[tokio::test]
async fn a_hanging_attempt_times_out_then_fails_over() {
    let (first, second) = (Upstream::openai().await, Upstream::openai().await);
    first.push([Reply::Hang]);
    second.push([Reply::text("from second")]);
    let slow = Provider::openai("first", &first)
        .timeout("200ms")
        .max_retries(1);
    let app = app(&two_targets(
        &slow,
        &Provider::openai("second", &second),
        "",
    ))
    .await;
    assert_eq!(answered_by(chat(&app).await).await, "second");
    assert_eq!(first.calls(), 2, "an attempt timeout is retried");
    assert_eq!(second.calls(), 1);
    let m = app.metrics().await;
    let timeouts = [("provider", "first"), ("outcome", "timeout")];
    assert_eq!(
        metric(&m, "chatgate_upstream_requests_total", &timeouts),
        2.0
    );
}

#[tokio::test]
async fn an_unusable_body_with_no_other_target_is_502_upstream_error() {
    for reply in [Reply::Garbage, Reply::WrongShape] {
        for kind in ["openai", "anthropic"] {
            let up = if kind == "openai" {
                Upstream::openai().await
            } else {
                Upstream::anthropic().await
            };
            up.push([reply.clone()]);
            let toml = format!(
                "{}\n[models.default]\ntargets = [\"only:m1\"]\n",
                provider_toml("only", kind, &up)
            );
            let app = app(&toml).await;
            let (status, error) = error_without_leak(chat(&app).await).await;
            assert_eq!(
                (status, error["code"].as_str()),
                (502, Some("upstream_error")),
                "{reply:?} {kind}"
            );
            assert_eq!(
                up.calls(),
                1,
                "an unusable answer is not retried: {reply:?} {kind}"
            );
        }
    }
}

#[tokio::test]
async fn every_target_down_with_a_fallback_message_answers_degraded_on_both_routes() {
    let (first, second) = (Upstream::openai().await, Upstream::openai().await);
    first.push([Reply::status(503)]);
    second.push([Reply::status(503)]);
    let model = format!("fallback_message = \"{FALLBACK}\"");
    let app = app(&two_targets(
        &Provider::openai("first", &first).max_retries(0),
        &Provider::openai("second", &second).max_retries(0),
        &model,
    ))
    .await;

    let r = chat(&app).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-chatgate-degraded"], "true");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["degraded"], true);
    assert_eq!(v["message"]["content"], FALLBACK);
    assert_eq!(v["provider"], Value::Null);
    assert_eq!((first.calls(), second.calls()), (1, 1));
    let m = app.metrics().await;
    // Past the first target, then past the second to the fallback message.
    assert_eq!(
        metric(&m, "chatgate_fallbacks_total", &[("model", "default")]),
        2.0
    );

    let r = app
        .post("/api/v1/chat/completions", &json!({"messages": say("hi")}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-chatgate-degraded"], "true");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], FALLBACK);

    let r = app
        .chat(json!({"messages": say("hi"), "stream": true}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-chatgate-degraded"], "true");
    let events = parse_sse(&r.text().await.unwrap());
    assert_eq!(delta_text(&events), FALLBACK);
    let done = events.last().unwrap();
    assert_eq!(done.event.as_deref(), Some("done"));
    assert_eq!(
        serde_json::from_str::<Value>(&done.data).unwrap()["degraded"],
        true
    );
}

#[tokio::test]
async fn every_target_down_without_a_fallback_message_is_503_upstream_unavailable() {
    let (first, second) = (Upstream::openai().await, Upstream::openai().await);
    first.push([Reply::status(503)]);
    second.push([Reply::status(502)]);
    let app = app(&two_targets(
        &Provider::openai("first", &first),
        &Provider::openai("second", &second),
        "",
    ))
    .await;
    let r = chat(&app).await;
    assert!(r.headers().get("x-chatgate-degraded").is_none());
    let (status, error) = error_without_leak(r).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (503, Some("upstream_unavailable"))
    );
    assert_eq!((first.calls(), second.calls()), (3, 3));
}

#[tokio::test]
async fn a_request_past_request_timeout_is_504_timeout() {
    let up = Upstream::openai().await;
    up.push([Reply::Hang]);
    let app = app(&format!(
        "[server]\nrequest_timeout = \"300ms\"\n{}\n[models.default]\ntargets = [\"first:m1\"]\nfallback_message = \"{FALLBACK}\"\n",
        Provider::openai("first", &up).timeout("5s")
    ))
    .await;
    let (status, error) = error_without_leak(chat(&app).await).await;
    assert_eq!((status, error["code"].as_str()), (504, Some("timeout")));
    assert_eq!(up.calls(), 1);
}

#[tokio::test]
async fn a_connection_that_breaks_midbody_is_retried() {
    let up = Upstream::openai().await;
    // Whatever the body was going to be, the connection breaks before its end.
    up.push([
        Reply::BrokenStream(vec!["partial".into()]),
        Reply::text("whole"),
    ]);
    let app = app(&one_target(&up)).await;
    let r = chat(&app).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["message"]["content"], "whole");
    assert_eq!(up.calls(), 2, "a broken connection is transient: retried");
}
