//! Streams under failure: retried and failed over only before their first
//! byte, ended by one error after it; a client that leaves cancels the
//! upstream stream; and many concurrent requests are all answered.

use std::time::Duration;

use crate::support::*;
use serde_json::{Value, json};

async fn upstream(kind: &str) -> Upstream {
    match kind {
        "anthropic" => Upstream::anthropic().await,
        _ => Upstream::openai().await,
    }
}

/// `default` → `first:m1`, then `second:m2`, both of `kind`.
async fn two_targets(kind: &str, first: &Upstream, second: &Upstream) -> TestApp {
    let toml = format!(
        "{}{}\n[models.default]\ntargets = [\"first:m1\", \"second:m2\"]\n",
        provider_toml("first", kind, first),
        provider_toml("second", kind, second),
    );
    spawn_app_with_env(&toml, &upstream_env()).await
}

fn stream_request() -> Value {
    json!({"messages": say("hi"), "stream": true})
}

/// The text of a native stream's `delta` events, and its other events.
fn native(body: &str) -> (String, Vec<Sse>) {
    let events = parse_sse(body);
    let text = delta_text(&events);
    let others = events
        .into_iter()
        .filter(|e| e.event.as_deref() != Some("delta"))
        .collect();
    (text, others)
}

#[tokio::test]
async fn a_native_stream_that_breaks_midway_ends_with_one_error_event_and_no_retry() {
    for kind in ["openai", "anthropic"] {
        let (first, second) = (upstream(kind).await, upstream(kind).await);
        first.push([Reply::BrokenStream(vec!["Hel".into(), "lo".into()])]);
        let app = two_targets(kind, &first, &second).await;
        let r = app.chat(stream_request()).await;
        assert_eq!(r.status(), 200, "{kind}");
        let (text, others) = native(&r.text().await.unwrap());
        assert_eq!(text, "Hello", "{kind}: the deltas once, nothing repeated");
        assert_eq!(others.len(), 1, "{kind}: one error, no done: {others:?}");
        assert_eq!(others[0].event.as_deref(), Some("error"));
        let error: Value = serde_json::from_str(&others[0].data).unwrap();
        assert_eq!(error["error"]["code"], "upstream_error", "{kind}");
        assert!(error["error"]["message"].is_string());
        assert_eq!(first.calls(), 1, "{kind}: no retry after the first byte");
        assert_eq!(
            second.calls(),
            0,
            "{kind}: no failover after the first byte"
        );
    }
}

#[tokio::test]
async fn an_openai_stream_that_breaks_midway_ends_with_an_error_chunk_then_done() {
    let (first, second) = (Upstream::openai().await, Upstream::openai().await);
    first.push([Reply::BrokenStream(vec!["Hel".into(), "lo".into()])]);
    let app = two_targets("openai", &first, &second).await;
    let r = app
        .post("/api/v1/chat/completions", &stream_request())
        .await;
    assert_eq!(r.status(), 200);
    let events = parse_sse(&r.text().await.unwrap());
    let (last, chunks) = events.split_last().unwrap();
    assert_eq!(last.data, "[DONE]");
    let chunks: Vec<Value> = chunks
        .iter()
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect();
    let (error, deltas) = chunks.split_last().unwrap();
    assert_eq!(error["error"]["code"], "upstream_error", "{error}");
    let text: String = deltas
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Hello");
    assert!(deltas.iter().all(|c| c.get("error").is_none()));
    assert_eq!((first.calls(), second.calls()), (1, 0));
}

#[tokio::test]
async fn a_stream_failing_before_its_first_byte_is_retried_into_a_clean_stream() {
    let (first, second) = (Upstream::openai().await, Upstream::openai().await);
    first.push([Reply::status(503), Reply::stream(&["Hel", "lo", " world"])]);
    let app = two_targets("openai", &first, &second).await;
    let r = app.chat(stream_request()).await;
    assert_eq!(r.status(), 200);
    let (text, others) = native(&r.text().await.unwrap());
    assert_eq!(text, "Hello world");
    assert_eq!(others.len(), 1, "{others:?}");
    assert_eq!(others[0].event.as_deref(), Some("done"));
    let done: Value = serde_json::from_str(&others[0].data).unwrap();
    assert_eq!(done["provider"], "first");
    assert_eq!((first.calls(), second.calls()), (2, 0));
}

#[tokio::test]
async fn a_stream_whose_target_fails_before_its_first_byte_fails_over_cleanly() {
    for route in ["/api/v1/chat", "/api/v1/chat/completions"] {
        let (first, second) = (Upstream::openai().await, Upstream::openai().await);
        first.push([Reply::status(500)]);
        second.push([Reply::stream(&["Hel", "lo", " world"])]);
        let app = two_targets("openai", &first, &second).await;
        let r = app.post(route, &stream_request()).await;
        assert_eq!(r.status(), 200, "{route}");
        let body = r.text().await.unwrap();
        assert!(!body.contains("error"), "{route}: {body}");
        if route == "/api/v1/chat" {
            let (text, others) = native(&body);
            assert_eq!(text, "Hello world");
            assert_eq!(others.len(), 1, "{others:?}");
            let done: Value = serde_json::from_str(&others[0].data).unwrap();
            assert_eq!(done["provider"], "second");
        } else {
            let events = parse_sse(&body);
            assert_eq!(events.last().unwrap().data, "[DONE]");
            let text: String = events[..events.len() - 1]
                .iter()
                .map(|e| serde_json::from_str::<Value>(&e.data).unwrap())
                .filter_map(|c| {
                    c["choices"][0]["delta"]["content"]
                        .as_str()
                        .map(str::to_owned)
                })
                .collect();
            assert_eq!(text, "Hello world");
        }
        assert_eq!((first.calls(), second.calls()), (3, 1), "{route}");
    }
}

#[tokio::test]
async fn a_client_that_leaves_midstream_cancels_the_upstream_stream() {
    let up = Upstream::openai().await;
    let words: Vec<String> = (0..20).map(|i| format!("w{i} ")).collect();
    up.push([Reply::SlowStream(words, Duration::from_millis(100))]);
    let toml = format!(
        "{}\n[models.default]\ntargets = [\"slow:m1\"]\n",
        provider_toml("slow", "openai", &up)
    );
    let app = spawn_app_with_env(&toml, &upstream_env()).await;
    let mut r = app.chat(stream_request()).await;
    assert_eq!(r.status(), 200);
    assert!(r.chunk().await.unwrap().is_some(), "the stream began");
    assert!(!up.stream_cancelled());
    drop(r);
    assert!(
        eventually(Duration::from_secs(5), || up.stream_cancelled()).await,
        "the gateway dropped the upstream stream when its client left"
    );
    assert_eq!(up.calls(), 1);
}

#[tokio::test]
async fn a_hundred_concurrent_requests_are_all_answered() {
    let up = Upstream::openai().await;
    // Every answer takes a while, so the requests really overlap.
    up.push([Reply::Delayed(
        Duration::from_millis(200),
        Box::new(Reply::text("fine")),
    )]);
    let toml = format!(
        "{}\n[models.default]\ntargets = [\"p:m1\"]\n",
        provider_toml("p", "openai", &up)
    );
    let app = spawn_app_with_env(&toml, &upstream_env()).await;
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let (client, url) = (app.client.clone(), app.url("/api/v1/chat"));
        requests.spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(KEY)
                .json(&json!({"messages": say("hi")}))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        });
    }
    let answers = requests.join_all().await;
    assert_eq!(answers.len(), 100);
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
    }
    assert_eq!(up.calls(), 100);
}
