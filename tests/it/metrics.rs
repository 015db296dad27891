//! `/metrics` over real HTTP: the exact increments and labels of every
//! counter after scripted traffic, and the gauges. Each app has its own
//! recorder, so exact counts are safe. (Histogram shape, route-label bounds
//! and the token: `metrics_endpoint.rs`.)

use std::time::Duration;

use crate::support::prometheus::series;
use crate::support::*;
use chatgate::meters::{
    CIRCUIT_STATE, FALLBACKS, HTTP_REQUESTS, IN_FLIGHT, RATE_LIMITED, TOKENS, UPSTREAM_DURATION,
    UPSTREAM_REQUESTS, UPSTREAM_RETRIES,
};
use serde_json::{Value, json};

async fn chat_model(app: &TestApp, model: &str) -> reqwest::Response {
    app.chat(json!({"model": model, "messages": say("hi")}))
        .await
}

#[tokio::test]
async fn http_requests_are_counted_by_method_route_template_and_numeric_status() {
    let app = spawn_app("").await;
    for _ in 0..3 {
        assert_eq!(app.chat(json!({"messages": say("hi")})).await.status(), 200);
    }
    assert_eq!(app.chat(json!({"messages": []})).await.status(), 400);
    let no_key = app.client.post(app.url("/api/v1/chat"));
    let r = no_key.json(&json!({"messages": say("hi")})).send().await;
    assert_eq!(r.unwrap().status(), 401);
    let r = app.client.get(app.url("/api/v1/models")).bearer_auth(KEY);
    assert_eq!(r.send().await.unwrap().status(), 200);
    assert_eq!(app.get("/health").await.status(), 200);
    assert_eq!(app.get("/health").await.status(), 200);
    assert_eq!(app.get("/no/such/page").await.status(), 404);
    let wrong_method = app.client.get(app.url("/api/v1/chat")).bearer_auth(KEY);
    assert_eq!(wrong_method.send().await.unwrap().status(), 405);

    let text = app.metrics().await;
    let count = |method: &str, route: &str, status: &str| {
        series(
            &text,
            HTTP_REQUESTS,
            &[("method", method), ("route", route), ("status", status)],
        )
    };
    assert_eq!(count("POST", "/api/v1/chat", "200"), Some(3.0));
    assert_eq!(count("POST", "/api/v1/chat", "400"), Some(1.0));
    assert_eq!(count("POST", "/api/v1/chat", "401"), Some(1.0));
    assert_eq!(count("GET", "/api/v1/models", "200"), Some(1.0));
    assert_eq!(count("GET", "/health", "200"), Some(2.0));
    assert_eq!(count("GET", "unmatched", "404"), Some(1.0));
    assert_eq!(count("GET", "/api/v1/chat", "405"), Some(1.0));
    assert_eq!(
        metric(&text, HTTP_REQUESTS, &[]),
        10.0,
        "nothing else is counted; a scrape is counted once it is answered"
    );
    let again = app.metrics().await;
    assert_eq!(
        series(
            &again,
            HTTP_REQUESTS,
            &[("method", "GET"), ("route", "/metrics"), ("status", "200")]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn upstream_attempts_are_counted_by_provider_model_and_outcome_with_retries() {
    let (broken, slow, limited, good) = (
        Upstream::openai().await,
        Upstream::openai().await,
        Upstream::openai().await,
        Upstream::openai().await,
    );
    broken.push([Reply::status(500)]);
    slow.push([Reply::Hang]);
    limited.push([Reply::status(429)]);
    good.push([Reply::text("finally")]);
    let toml = format!(
        "{}{}{}{}\n[models.chain]\ntargets = [\"broken:m-broken\", \"slow:m-slow\", \"limited:m-limited\", \"good:m-good\"]\n",
        provider_toml("broken", "openai", &broken),
        Provider::openai("slow", &slow)
            .max_retries(0)
            .timeout("200ms"),
        Provider::openai("limited", &limited).max_retries(1),
        provider_toml("good", "openai", &good),
    );
    let app = spawn_app_with_env(&toml, &upstream_env()).await;

    let r = chat_model(&app, "chain").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["provider"], "good");
    assert_eq!(
        (broken.calls(), slow.calls(), limited.calls(), good.calls()),
        (3, 1, 2, 1)
    );

    let text = app.metrics().await;
    let attempts = |provider: &str, model: &str, outcome: &str| {
        series(
            &text,
            UPSTREAM_REQUESTS,
            &[
                ("provider", provider),
                ("model", model),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(attempts("broken", "m-broken", "error"), Some(3.0));
    assert_eq!(attempts("slow", "m-slow", "timeout"), Some(1.0));
    assert_eq!(attempts("limited", "m-limited", "rate_limited"), Some(2.0));
    assert_eq!(attempts("good", "m-good", "success"), Some(1.0));
    assert_eq!(metric(&text, UPSTREAM_REQUESTS, &[]), 7.0);

    let retries = |provider: &str| metric(&text, UPSTREAM_RETRIES, &[("provider", provider)]);
    assert_eq!(
        series(&text, UPSTREAM_RETRIES, &[("provider", "broken")]),
        Some(2.0)
    );
    assert_eq!(retries("limited"), 1.0);
    assert_eq!((retries("slow"), retries("good")), (0.0, 0.0));
    assert_eq!(series(&text, FALLBACKS, &[("model", "chain")]), Some(3.0));

    let timed = |provider: &str, model: &str| {
        let count = format!("{UPSTREAM_DURATION}_count");
        series(&text, &count, &[("provider", provider), ("model", model)])
    };
    assert_eq!(timed("broken", "m-broken"), Some(3.0));
    assert_eq!(timed("slow", "m-slow"), Some(1.0));
    assert_eq!(timed("limited", "m-limited"), Some(2.0));
    assert_eq!(timed("good", "m-good"), Some(1.0));
}

#[tokio::test]
async fn fallbacks_count_every_move_past_a_failed_target_including_to_the_fallback_message() {
    let (a, b) = (Upstream::openai().await, Upstream::openai().await);
    a.push([Reply::status(500)]);
    b.push([Reply::status(503)]);
    let toml = format!(
        "{}{}\n[models.kind]\ntargets = [\"a:m1\", \"b:m2\"]\nfallback_message = \"Sorry.\"\n[models.strict]\ntargets = [\"a:m1\", \"b:m2\"]\n",
        Provider::openai("a", &a).max_retries(0),
        Provider::openai("b", &b).max_retries(0),
    );
    let app = spawn_app_with_env(&toml, &upstream_env()).await;

    let r = chat_model(&app, "kind").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["degraded"], true);
    let text = app.metrics().await;
    assert_eq!(
        series(&text, FALLBACKS, &[("model", "kind")]),
        Some(2.0),
        "a → b, then b → fallback_message"
    );

    assert_eq!(chat_model(&app, "strict").await.status(), 503);
    assert_eq!(chat_model(&app, "kind").await.status(), 200);
    let text = app.metrics().await;
    assert_eq!(series(&text, FALLBACKS, &[("model", "kind")]), Some(4.0));
    assert_eq!(
        series(&text, FALLBACKS, &[("model", "strict")]),
        Some(1.0),
        "a → b only: there is no fallback_message to move to"
    );
    assert_eq!(
        metric(&text, FALLBACKS, &[]),
        5.0,
        "labelled by the client-facing model, never the upstream one"
    );
}

/// The body of a native streamed chat, checked to end with `done`.
async fn streamed(app: &TestApp, model: &str) {
    let r = app
        .chat(json!({"model": model, "messages": say("hi"), "stream": true}))
        .await;
    assert_eq!(r.status(), 200);
    let events = parse_sse(&r.text().await.unwrap());
    assert_eq!(events.last().unwrap().event.as_deref(), Some("done"));
}

#[tokio::test]
async fn tokens_are_counted_by_provider_model_and_kind_for_whole_and_streamed_answers() {
    let (openai, anthropic) = (Upstream::openai().await, Upstream::anthropic().await);
    let whole = |input, output| Reply::TextWith {
        text: "whole answer".into(),
        input,
        output,
        stop: "stop".into(),
    };
    // The mock upstream's streams report input 5 and output = the word count.
    openai.push([whole(11, 4), Reply::stream(&["one", " two", " three"])]);
    anthropic.push([whole(2, 6), Reply::stream(&["x", " y"])]);
    let toml = format!(
        "{}{}\n[models.gpt]\ntargets = [\"openai:gpt-x\"]\n[models.claude]\ntargets = [\"anthropic:claude-x\"]\n",
        provider_toml("openai", "openai", &openai),
        provider_toml("anthropic", "anthropic", &anthropic),
    );
    let app = spawn_app_with_env(&toml, &upstream_env()).await;

    assert_eq!(chat_model(&app, "gpt").await.status(), 200);
    streamed(&app, "gpt").await;
    assert_eq!(chat_model(&app, "claude").await.status(), 200);
    streamed(&app, "claude").await;
    // The built-in mock counts words: "hi" in, "Echo: hi" out.
    assert_eq!(app.chat(json!({"messages": say("hi")})).await.status(), 200);

    let text = app.metrics().await;
    let tokens = |provider: &str, model: &str, kind: &str| {
        series(
            &text,
            TOKENS,
            &[("provider", provider), ("model", model), ("kind", kind)],
        )
    };
    assert_eq!(tokens("openai", "gpt-x", "input"), Some(16.0));
    assert_eq!(tokens("openai", "gpt-x", "output"), Some(7.0));
    assert_eq!(tokens("anthropic", "claude-x", "input"), Some(7.0));
    assert_eq!(tokens("anthropic", "claude-x", "output"), Some(8.0));
    assert_eq!(tokens("mock", "echo", "input"), Some(1.0));
    assert_eq!(tokens("mock", "echo", "output"), Some(2.0));
    assert_eq!(metric(&text, TOKENS, &[]), 41.0, "nothing counted twice");
}

#[tokio::test]
async fn rate_limited_requests_are_counted_by_scope() {
    let per_ip =
        spawn_app("[rate_limit]\nper_ip_requests_per_minute = 1\nper_ip_burst = 2\n").await;
    let per_key = spawn_app("[auth.keys.test]\nrequests_per_minute = 1\nburst = 1\n").await;
    for (app, allowed) in [(&per_ip, 2), (&per_key, 1)] {
        for n in 0..allowed + 2 {
            let status = app.chat(json!({"messages": say("hi")})).await.status();
            assert_eq!(status, if n < allowed { 200 } else { 429 });
        }
    }
    let text = per_ip.metrics().await;
    assert_eq!(series(&text, RATE_LIMITED, &[("scope", "ip")]), Some(2.0));
    assert_eq!(metric(&text, RATE_LIMITED, &[("scope", "key")]), 0.0);
    let text = per_key.metrics().await;
    assert_eq!(series(&text, RATE_LIMITED, &[("scope", "key")]), Some(2.0));
    assert_eq!(metric(&text, RATE_LIMITED, &[("scope", "ip")]), 0.0);
    assert_eq!(
        metric(
            &text,
            HTTP_REQUESTS,
            &[("route", "/api/v1/chat"), ("status", "429")]
        ),
        2.0
    );
}

#[tokio::test]
async fn in_flight_and_circuit_gauges_are_exported_from_the_start() {
    let up = Upstream::openai().await;
    let toml = provider_toml("openai", "openai", &up);
    let app = spawn_app_with_env(&toml, &upstream_env()).await;
    let text = app.metrics().await;
    assert_eq!(
        series(&text, CIRCUIT_STATE, &[("provider", "openai")]),
        Some(0.0)
    );
    assert_eq!(
        series(&text, CIRCUIT_STATE, &[("provider", "mock")]),
        Some(0.0)
    );
    assert_eq!(
        series(&text, IN_FLIGHT, &[]),
        Some(1.0),
        "the scrape itself is in flight"
    );
    assert!(text.contains(&format!("# TYPE {IN_FLIGHT} gauge")));
    assert!(text.contains(&format!("# TYPE {CIRCUIT_STATE} gauge")));
}

#[tokio::test]
async fn in_flight_counts_a_pending_request_and_drops_when_its_client_leaves() {
    let up = Upstream::openai().await;
    up.push([Reply::Hang]);
    let toml = format!(
        "{}\n[models.default]\ntargets = [\"openai:m\"]\n",
        Provider::openai("openai", &up).timeout("60s")
    );
    let app = spawn_app_with_env(&toml, &upstream_env()).await;
    let in_flight = || series(&app.state.metrics.render(), IN_FLIGHT, &[]);
    assert_eq!(in_flight(), Some(0.0));

    let url = app.url("/api/v1/chat");
    let client = tokio::spawn(async move {
        let body = json!({"messages": say("hi")});
        let client = reqwest::Client::new();
        client.post(url).bearer_auth(KEY).json(&body).send().await
    });
    assert!(eventually(Duration::from_secs(5), || up.calls() == 1).await);
    assert_eq!(in_flight(), Some(1.0));
    assert_eq!(series(&app.metrics().await, IN_FLIGHT, &[]), Some(2.0));

    client.abort(); // the client goes away mid-request
    assert!(
        eventually(Duration::from_secs(5), || in_flight() == Some(0.0)).await,
        "a cancelled request leaves the gauge: {:?}",
        in_flight()
    );
}
