//! The circuit breaker per provider, over real HTTP: failed requests open it,
//! an open circuit costs no upstream call, after the cooldown exactly one trial
//! goes through, and readiness turns 503 when the default model is all open.

use std::time::Duration;

use crate::support::*;
use serde_json::{Value, json};

const STATE: &str = "chatgate_circuit_breaker_state";

/// A provider section for `up` that opens after `threshold` failed requests
/// and makes one attempt per request, so calls count requests.
fn breaker(name: &str, up: &Upstream, threshold: u32, cooldown: &str) -> String {
    Provider::openai(name, up)
        .circuit(threshold, cooldown)
        .max_retries(0)
        // A trial that hangs stays in flight until the test lets it go.
        .timeout("60s")
        .to_string()
}

/// `flaky` first, `backup` second.
async fn flaky_then_backup(flaky: &Upstream, backup: &Upstream, cooldown: &str) -> TestApp {
    let toml = format!(
        "{}{}\n[models.default]\ntargets = [\"flaky:m1\", \"backup:m2\"]\n",
        breaker("flaky", flaky, 2, cooldown),
        provider_toml("backup", "openai", backup),
    );
    spawn_app_with_env(&toml, &upstream_env()).await
}

async fn served_by(app: &TestApp) -> String {
    let r = app.chat(json!({"messages": say("hi")})).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["provider"].as_str().unwrap().to_owned()
}

async fn gauge(app: &TestApp, provider: &str) -> f64 {
    metric(&app.metrics().await, STATE, &[("provider", provider)])
}

/// Two failed requests on `flaky` (each answered by `backup`) open its circuit.
async fn open_it(app: &TestApp, flaky: &Upstream) {
    assert_eq!(gauge(app, "flaky").await, 0.0);
    assert_eq!(served_by(app).await, "backup");
    assert_eq!(
        gauge(app, "flaky").await,
        0.0,
        "one failure is below the threshold"
    );
    assert_eq!(served_by(app).await, "backup");
    assert_eq!(flaky.calls(), 2);
}

#[tokio::test]
async fn an_open_circuit_is_skipped_without_an_upstream_call() {
    let (flaky, backup) = (Upstream::openai().await, Upstream::openai().await);
    flaky.push([Reply::status(503)]);
    let app = flaky_then_backup(&flaky, &backup, "30s").await;
    open_it(&app, &flaky).await;
    assert_eq!(gauge(&app, "flaky").await, 2.0);
    assert_eq!(gauge(&app, "backup").await, 0.0);

    for _ in 0..3 {
        assert_eq!(served_by(&app).await, "backup");
    }
    assert_eq!(flaky.calls(), 2, "an open circuit makes no upstream call");
    assert_eq!(backup.calls(), 5);
    let r = app.get("/health/ready").await;
    assert_eq!(r.status(), 200, "the backup target can still serve");
}

#[tokio::test]
async fn a_client_400_never_counts_toward_opening_the_circuit() {
    let (flaky, backup) = (Upstream::openai().await, Upstream::openai().await);
    flaky.push([Reply::status(400)]);
    let app = flaky_then_backup(&flaky, &backup, "30s").await;
    for _ in 0..3 {
        let r = app.chat(json!({"messages": say("hi")})).await;
        assert_eq!(r.status(), 400);
    }
    assert_eq!(flaky.calls(), 3, "every request still reaches the provider");
    assert_eq!(gauge(&app, "flaky").await, 0.0);
}

#[tokio::test]
async fn after_the_cooldown_exactly_one_trial_goes_through_and_a_success_closes_it() {
    let (flaky, backup) = (Upstream::openai().await, Upstream::openai().await);
    flaky.push([Reply::status(503)]);
    let app = flaky_then_backup(&flaky, &backup, "300ms").await;
    open_it(&app, &flaky).await;
    // The first trial hangs (until its client leaves); the next one succeeds.
    flaky.push([Reply::Hang, Reply::text("flaky is back")]);

    // Poll with requests until one reaches the upstream again: the trial.
    let give_up = tokio::time::Instant::now() + Duration::from_secs(10);
    let trial = loop {
        let (client, url) = (app.client.clone(), app.url("/api/v1/chat"));
        let request = tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(KEY)
                .json(&json!({"messages": say("hi")}))
                .send()
                .await
        });
        let reached = eventually(Duration::from_secs(5), || {
            flaky.calls() == 3 || request.is_finished()
        })
        .await;
        assert!(reached);
        if flaky.calls() == 3 {
            break request;
        }
        let r = request.await.unwrap().unwrap();
        assert_eq!(r.status(), 200, "skipped while open, answered by backup");
        assert!(
            tokio::time::Instant::now() < give_up,
            "no trial after the cooldown"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    // While the trial is in flight the circuit is half-open and admits nobody else.
    assert_eq!(gauge(&app, "flaky").await, 1.0);
    assert_eq!(served_by(&app).await, "backup");
    assert_eq!(flaky.calls(), 3, "only one trial at a time");
    assert!(!trial.is_finished());

    // The trial's client leaves: the trial ends unsettled, its slot frees, and
    // the next trial (a success) closes the circuit.
    trial.abort();
    let give_up = tokio::time::Instant::now() + Duration::from_secs(10);
    while served_by(&app).await != "flaky" {
        assert!(tokio::time::Instant::now() < give_up, "no second trial");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(flaky.calls(), 4);
    assert_eq!(
        gauge(&app, "flaky").await,
        0.0,
        "a successful trial closes it"
    );
    assert_eq!(served_by(&app).await, "flaky");
    assert_eq!(
        flaky.calls(),
        5,
        "closed: every request reaches the provider"
    );
}

// Contract change (issue 18): readiness used to turn 503 here; it now stays
// 200 and reports the outage.
#[tokio::test]
async fn readiness_stays_200_and_reports_all_circuits_open_when_every_default_target_is_open() {
    let (a, b) = (Upstream::openai().await, Upstream::openai().await);
    a.push([Reply::status(503)]);
    b.push([Reply::status(500)]);
    let toml = format!(
        "{}{}\n[models.default]\ntargets = [\"a:m1\", \"b:m2\"]\n",
        breaker("a", &a, 1, "30s"),
        breaker("b", &b, 1, "30s"),
    );
    let app = spawn_app_with_env(&toml, &upstream_env()).await;
    assert_eq!(app.get("/health/ready").await.status(), 200);

    let r = app.chat(json!({"messages": say("hi")})).await;
    assert_eq!(r.status(), 503);
    assert_eq!((a.calls(), b.calls()), (1, 1));
    assert_eq!((gauge(&app, "a").await, gauge(&app, "b").await), (2.0, 2.0));

    let r = app.get("/health/ready").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["upstreams"], "all_circuits_open");

    // Every circuit open: answered at once, without any upstream call.
    let r = app.chat(json!({"messages": say("hi")})).await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "upstream_unavailable");
    assert_eq!((a.calls(), b.calls()), (1, 1));
}
