//! `/health` and `/health/ready`: ready (200) until shutdown begins, then 503
//! `shutting_down` while `/health` stays 200. Open circuits never fail
//! readiness: `"upstreams"` reports `ok`, `degraded` (some target of the
//! default model open) or `all_circuits_open` (every one), and `ok` again
//! after the cooldown.

use std::time::Duration;

use crate::support::prometheus::series;
use crate::support::*;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use chatgate::meters::CIRCUIT_STATE;
use chatgate::models::Upstreams;
use serde_json::{Value, json};
use tower::ServiceExt;

#[tokio::test]
async fn ready_and_live_answer_200_when_the_app_can_serve() {
    let app = spawn_app("").await;
    let r = app.get("/health/ready").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "ready");
    assert_eq!(v["upstreams"], "ok");
    let r = app.get("/health").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": "ok"}));
}

/// A provider that opens its circuit after one failed request (one attempt each).
fn fragile(name: &str, up: &Upstream, cooldown: &str) -> String {
    Provider::openai(name, up)
        .max_retries(0)
        .circuit(1, cooldown)
        .to_string()
}

// Contract change (issue 18): this test asserted 503 `all_circuits_open`; an
// outage shared by every replica now leaves readiness at 200 and is reported.
#[tokio::test]
async fn ready_stays_200_and_reports_all_circuits_open_while_every_default_target_is_open_then_ok()
{
    let (a, b) = (Upstream::openai().await, Upstream::openai().await);
    a.push([Reply::status(500)]);
    b.push([Reply::status(503)]);
    // The cooldown only needs to outlast the two loopback requests between the
    // failure and the readiness check; the test then waits it out.
    let toml = format!(
        "{}{}\n[models.default]\ntargets = [\"a:m1\", \"b:m2\"]\n",
        fragile("a", &a, "3s"),
        fragile("b", &b, "3s"),
    );
    let app = spawn_app_with_env(&toml, &upstream_env()).await;
    assert_eq!(app.get("/health/ready").await.status(), 200);

    assert_eq!(app.chat(json!({"messages": say("hi")})).await.status(), 503);
    let r = app.get("/health/ready").await;
    assert_eq!(r.status(), 200, "an upstream outage never fails readiness");
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "ready");
    assert_eq!(v["upstreams"], "all_circuits_open");
    let text = app.metrics().await;
    for provider in ["a", "b"] {
        let state = series(&text, CIRCUIT_STATE, &[("provider", provider)]);
        assert_eq!(state, Some(2.0), "{provider} is open");
    }

    assert!(
        eventually(Duration::from_secs(15), || app.state.catalog.upstreams()
            == Upstreams::Ok)
        .await,
        "the cooldown ended"
    );
    let r = app.get("/health/ready").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["upstreams"], "ok", "half-open circuits may serve again");
}

#[tokio::test]
async fn one_open_target_of_the_default_model_leaves_the_app_ready_and_reports_degraded() {
    let (a, b) = (Upstream::openai().await, Upstream::openai().await);
    a.push([Reply::status(500)]);
    let toml = format!(
        "{}{}\n[models.default]\ntargets = [\"a:m1\", \"b:m2\"]\n",
        fragile("a", &a, "1h"),
        fragile("b", &b, "1h"),
    );
    let app = spawn_app_with_env(&toml, &upstream_env()).await;
    let r = app.chat(json!({"messages": say("hi")})).await;
    assert_eq!(r.status(), 200, "a failed, b answered");
    let text = app.metrics().await;
    assert_eq!(
        series(&text, CIRCUIT_STATE, &[("provider", "a")]),
        Some(2.0)
    );
    assert_eq!(
        series(&text, CIRCUIT_STATE, &[("provider", "b")]),
        Some(0.0)
    );
    let r = app.get("/health/ready").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["upstreams"], "degraded");
}

/// `GET path` through a router built from `app`'s own state: the same stack
/// and handlers, reachable after the listener has closed.
async fn in_process(app: &TestApp, path: &str) -> (StatusCode, Value) {
    let router = chatgate::routes::router(app.state.clone(), axum::Router::new());
    let request = Request::get(path).body(Body::empty()).unwrap();
    let response = router.oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn ready_is_503_shutting_down_once_shutdown_begins_while_live_stays_200() {
    let up = Upstream::openai().await;
    let words: Vec<String> = (0..10).map(|n| format!("w{n} ")).collect();
    up.push([Reply::SlowStream(words, Duration::from_millis(100))]);
    let toml = format!(
        "{}\n[models.default]\ntargets = [\"openai:m\"]\n",
        provider_toml("openai", "openai", &up)
    );
    let mut app = spawn_app_with_env(&toml, &upstream_env()).await;
    assert_eq!(in_process(&app, "/health/ready").await.0, 200);

    // A stream in flight keeps the server draining after shutdown begins.
    let stream = app
        .chat(json!({"messages": say("hi"), "stream": true}))
        .await;
    assert_eq!(stream.status(), 200);
    app.shutdown();
    assert!(eventually(Duration::from_secs(5), || app.state.is_shutting_down()).await);

    // The listener is closed by now, so ask the app's own router.
    let (status, v) = in_process(&app, "/health/ready").await;
    assert_eq!(status, 503);
    assert_eq!(v["reason"], "shutting_down");
    assert_eq!(v["status"], "unavailable");
    assert_eq!(v["upstreams"], "ok");
    let (status, v) = in_process(&app, "/health").await;
    assert_eq!((status, v), (StatusCode::OK, json!({"status": "ok"})));

    let events = parse_sse(&stream.text().await.unwrap());
    assert_eq!(events.last().unwrap().event.as_deref(), Some("done"));
    app.task.await.unwrap().unwrap();
}
