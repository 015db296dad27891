//! OpenTelemetry traces from the real binary (the subscriber is global per
//! process) to an OTLP receiver in the test: the server span and one client
//! span per upstream attempt with the GenAI attributes, `traceparent`
//! continued from the client and sent upstream, no message text in any
//! span, and a collector that is down costing requests nothing.

use std::net::TcpListener;
use std::time::Duration;

use crate::support::binary::{Chatgate, Running};
use crate::support::otlp::{Collector, Got};
use crate::support::*;
use serde_json::json;

const PROMPT_MARKER: &str = "PROMPT-MARKER-7f3a";
const ANSWER_MARKER: &str = "ANSWER-MARKER-9c1e";
const SERVER: i32 = 2;
const CLIENT: i32 = 3;
const ERROR: i32 = 2;

async fn serve(upstream: &Upstream, provider: Provider, tracing: &str) -> Running {
    let _ = upstream;
    let toml = format!("{provider}\n[models.default]\ntargets = [\"up:gpt-test\"]\n{tracing}");
    Chatgate::with_config(&toml)
        .envs(upstream_env())
        .spawn()
        .await
}

async fn chat(gw: &Running, request_id: &str, traceparent: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(gw.url("/api/v1/chat"))
        .bearer_auth(KEY)
        .header("x-request-id", request_id)
        .json(&json!({"messages": say(&format!("tell me {PROMPT_MARKER}"))}));
    if let Some(tp) = traceparent {
        request = request.header("traceparent", tp);
    }
    request.send().await.unwrap()
}

fn server_span<'a>(spans: &'a [Got], request_id: &str) -> Option<&'a Got> {
    spans
        .iter()
        .find(|s| s.attr("chatgate.request_id") == Some(request_id))
}

fn attempts<'a>(spans: &'a [Got], server: &Got) -> Vec<&'a Got> {
    let mut out: Vec<&Got> = spans
        .iter()
        .filter(|s| s.parent_span_id == server.span_id)
        .collect();
    out.sort_by_key(|s| s.attr("chatgate.attempt").map(str::to_owned));
    out
}

/// The trace id and parent span id of a `traceparent` value.
fn parse_traceparent(value: &str) -> (String, String) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    assert_eq!(parts[0], "00", "{value}");
    (parts[1].to_owned(), parts[2].to_owned())
}

#[tokio::test]
async fn a_chat_is_a_server_span_with_a_genai_client_span_and_no_message_text() {
    let collector = Collector::start().await;
    let upstream = Upstream::openai().await;
    upstream.push([Reply::text(&format!("here: {ANSWER_MARKER}"))]);
    let gw = serve(
        &upstream,
        Provider::openai("up", &upstream),
        &collector.toml(),
    )
    .await;

    let r = chat(&gw, "trace-ok-1", None).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains(ANSWER_MARKER));

    let spans = collector
        .wait_for("the server span and its attempt", |s| {
            server_span(s, "trace-ok-1").is_some_and(|srv| !attempts(s, srv).is_empty())
        })
        .await;
    let server = server_span(&spans, "trace-ok-1").unwrap();
    assert_eq!(server.name, "POST /api/v1/chat");
    assert_eq!(server.kind, SERVER);
    assert_eq!(server.parent_span_id, "", "a new trace: {server:?}");
    assert_eq!(server.service, "chatgate");
    assert_eq!(server.attr("http.request.method"), Some("POST"));
    assert_eq!(server.attr("http.route"), Some("/api/v1/chat"));
    assert_eq!(server.attr("http.response.status_code"), Some("200"));

    let attempts = attempts(&spans, server);
    assert_eq!(attempts.len(), 1, "{attempts:#?}");
    let attempt = attempts[0];
    assert_eq!(attempt.name, "chat gpt-test");
    assert_eq!(attempt.kind, CLIENT);
    assert_eq!(attempt.trace_id, server.trace_id);
    for (key, value) in [
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.system", "openai"),
        ("gen_ai.request.model", "gpt-test"),
        ("gen_ai.response.model", "gpt-test"),
        ("gen_ai.usage.input_tokens", "5"),
        ("gen_ai.usage.output_tokens", "7"),
        ("chatgate.attempt", "1"),
    ] {
        assert_eq!(attempt.attr(key), Some(value), "{key} in {attempt:#?}");
    }
    assert_eq!(attempt.attr("error.type"), None);

    // No prompt or answer text anywhere in what was exported.
    for body in collector.bodies() {
        let body = String::from_utf8_lossy(&body);
        assert!(!body.contains(PROMPT_MARKER), "prompt text exported");
        assert!(!body.contains(ANSWER_MARKER), "answer text exported");
    }
    // A fresh traceparent went upstream: this trace, the attempt as parent.
    let sent = upstream.requests()[0].headers["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        parse_traceparent(&sent),
        (server.trace_id.clone(), attempt.span_id.clone())
    );
}

#[tokio::test]
async fn retries_are_separate_attempt_spans_numbered_in_order_with_their_error_types() {
    let collector = Collector::start().await;
    let upstream = Upstream::openai().await;
    upstream.push([
        Reply::status(503),
        Reply::status(502),
        Reply::text("third time"),
    ]);
    let gw = serve(
        &upstream,
        Provider::openai("up", &upstream).max_retries(2),
        &collector.toml(),
    )
    .await;
    assert_eq!(chat(&gw, "trace-retry-1", None).await.status(), 200);

    let spans = collector
        .wait_for("three attempt spans", |s| {
            server_span(s, "trace-retry-1").is_some_and(|srv| attempts(s, srv).len() == 3)
        })
        .await;
    let server = server_span(&spans, "trace-retry-1").unwrap();
    let attempts = attempts(&spans, server);
    let seen: Vec<_> = attempts
        .iter()
        .map(|a| {
            (
                a.attr("chatgate.attempt").unwrap(),
                a.attr("error.type"),
                a.status,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("1", Some("503"), ERROR),
            ("2", Some("502"), ERROR),
            ("3", None, 0)
        ]
    );
    // Each upstream request carried its own attempt's span as parent.
    let parents: Vec<_> = upstream
        .requests()
        .iter()
        .map(|r| parse_traceparent(r.headers["traceparent"].to_str().unwrap()).1)
        .collect();
    let ids: Vec<_> = attempts.iter().map(|a| a.span_id.clone()).collect();
    assert_eq!(parents, ids);
}

#[tokio::test]
async fn a_clients_traceparent_is_continued_and_an_invalid_one_is_ignored() {
    let collector = Collector::start().await;
    let upstream = Upstream::openai().await;
    upstream.push([Reply::text("hi")]);
    let gw = serve(
        &upstream,
        Provider::openai("up", &upstream),
        &collector.toml(),
    )
    .await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_id = "00f067aa0ba902b7";
    let valid = format!("00-{trace_id}-{parent_id}-01");
    assert_eq!(chat(&gw, "trace-cont-1", Some(&valid)).await.status(), 200);
    assert_eq!(
        chat(&gw, "trace-bad-1", Some("00-not-a-trace-at-all"))
            .await
            .status(),
        200
    );

    let spans = collector
        .wait_for("both server spans", |s| {
            server_span(s, "trace-cont-1").is_some() && server_span(s, "trace-bad-1").is_some()
        })
        .await;
    let continued = server_span(&spans, "trace-cont-1").unwrap();
    assert_eq!(continued.trace_id, trace_id);
    assert_eq!(continued.parent_span_id, parent_id);
    let fresh = server_span(&spans, "trace-bad-1").unwrap();
    assert_eq!(fresh.parent_span_id, "");
    assert_ne!(fresh.trace_id, trace_id);
    assert_eq!(fresh.trace_id.len(), 32);

    let sent: Vec<_> = upstream
        .requests()
        .iter()
        .map(|r| parse_traceparent(r.headers["traceparent"].to_str().unwrap()).0)
        .collect();
    assert_eq!(sent, [trace_id.to_owned(), fresh.trace_id.clone()]);
}

#[tokio::test]
async fn with_tracing_off_no_traceparent_goes_upstream() {
    let upstream = Upstream::openai().await;
    upstream.push([Reply::text("hi")]);
    let gw = serve(&upstream, Provider::openai("up", &upstream), "").await;
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    assert_eq!(chat(&gw, "trace-off-1", Some(tp)).await.status(), 200);
    let headers = &upstream.requests()[0].headers;
    assert!(headers.get("traceparent").is_none(), "{headers:?}");
}

#[tokio::test]
async fn a_collector_that_is_down_fails_no_request_and_the_dropped_spans_are_counted() {
    // A port nobody listens on: every export is refused.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let upstream = Upstream::openai().await;
    upstream.push([Reply::text("still fine")]);
    let tracing = format!("[tracing]\notlp_endpoint = \"http://127.0.0.1:{port}\"\n");
    let gw = serve(&upstream, Provider::openai("up", &upstream), &tracing).await;

    for i in 0..5 {
        let r = chat(&gw, &format!("trace-down-{i}"), None).await;
        assert_eq!(r.status(), 200);
    }
    // Each chat made a server and an attempt span, all lost.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let dropped = loop {
        let text = reqwest::get(gw.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let dropped = metric(&text, "chatgate_trace_spans_dropped_total", &[]);
        if dropped >= 10.0 || tokio::time::Instant::now() >= deadline {
            break dropped;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let counted = dropped >= 10.0;
    assert!(counted, "dropped spans counted: {dropped}");
    let warning =
        gw.event("cannot export spans to the OTLP collector; dropping them until it answers");
    assert!(warning.is_some(), "{}", gw.output());
}

#[test]
fn tracing_settings_out_of_range_are_refused_with_their_key_paths() {
    let problems = load_config(
        "[tracing]\nsample_ratio = 1.5\notlp_endpoint = \"collector:4318\"\nservice_name = \" \"\n",
        &[],
    )
    .unwrap_err();
    let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
    for path in [
        "tracing.sample_ratio",
        "tracing.otlp_endpoint",
        "tracing.service_name",
    ] {
        assert!(paths.contains(&path), "{path} not in {problems:?}");
    }
    let config = load_config("", &[("CHATGATE_TRACING__SAMPLE_RATIO", "0.25")]).unwrap();
    assert_eq!(config.tracing.sample_ratio.get(), 0.25);
    assert!(config.tracing.otlp_endpoint.traces_url().is_none());
}
