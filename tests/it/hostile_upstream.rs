//! Against a hostile or broken upstream chatgate spends bounded memory, time
//! and connections: an endless line or event and an oversized body are an
//! unusable answer whose connection is closed at once; a JSON 200 to a stream
//! request is unusable, not a connection error; any `Retry-After` moves on;
//! `request_timeout` closes the upstream of a client that stopped reading;
//! and no upstream body text reaches a log.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::binary::Chatgate;
use crate::support::hostile::{Answer, Hostile, openai_delta};
use crate::support::*;

/// How long chatgate may take to close an upstream it gave up (generous).
const CLOSE_LIMIT: Duration = Duration::from_secs(10);

/// An OpenAI-compatible provider at `base_url`, with `max_retries` retries
/// and a long attempt timeout (so that only the behaviour under test ends a call).
fn provider(name: &str, base_url: &str, max_retries: u32) -> String {
    format!(
        r#"
[providers.{name}]
kind = "openai"
base_url = "{base_url}"
api_key_env = "TEST_UPSTREAM_KEY"
timeout = "30s"
max_retries = {max_retries}
backoff_initial = "1ms"
backoff_max = "5ms"
circuit_failure_threshold = 100
"#
    )
}

/// An app whose `default` model has the one target `bad:m`.
async fn app_on(bad: &Hostile, server: &str) -> TestApp {
    let toml = format!(
        "{server}\n{}\n[models.default]\ntargets = [\"bad:m\"]\n",
        provider("bad", &bad.base_url(), 2)
    );
    spawn_app_with_env(&toml, &upstream_env()).await
}

fn stream_request() -> Value {
    json!({"messages": say("hi"), "stream": true})
}

async fn error_code(r: reqwest::Response, status: u16) -> Value {
    assert_eq!(r.status(), status);
    let v: Value = r.json().await.unwrap();
    v["error"]["code"].clone()
}

/// The process's peak resident memory, in MiB.
fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_data_line_is_a_502_its_upstream_is_closed_and_memory_stays_bounded() {
    let bad = Hostile::start(Answer::endless("data: ", vec![b'a'; 64 * 1024])).await;
    let app = app_on(&bad, "").await;
    let before = peak_rss_mib();

    let (r, health) = tokio::join!(app.chat(stream_request()), async {
        tokio::time::timeout(Duration::from_secs(5), app.get("/health")).await
    });
    assert_eq!(error_code(r, 502).await, "upstream_error");
    assert_eq!(health.expect("/health answered meanwhile").status(), 200);
    assert!(
        bad.closed_within(1, CLOSE_LIMIT).await,
        "upstream left open"
    );
    assert_eq!(bad.calls(), 1, "an unusable answer is not retried");
    let growth = peak_rss_mib().saturating_sub(before);
    assert!(growth < 200, "peak RSS grew by {growth} MiB");
}

#[tokio::test]
async fn an_endless_event_of_data_lines_is_a_502_and_its_upstream_is_closed() {
    let bad = Hostile::start(Answer::endless("", b"data: more\n".repeat(4096))).await;
    let app = app_on(&bad, "").await;
    let r = app.chat(stream_request()).await;
    assert_eq!(error_code(r, 502).await, "upstream_error");
    assert!(
        bad.closed_within(1, CLOSE_LIMIT).await,
        "upstream left open"
    );
    assert_eq!(bad.calls(), 1);
}

#[tokio::test]
async fn an_endless_line_after_a_good_first_event_ends_the_stream_with_an_upstream_error() {
    let first = format!("{}data: ", openai_delta("hello"));
    let bad = Hostile::start(Answer::endless(first, vec![b'a'; 64 * 1024])).await;
    let app = app_on(&bad, "").await;
    let r = app.chat(stream_request()).await;
    if r.status() == 502 {
        // The first event and the endless line came in one read: nothing was sent yet.
        assert_eq!(error_code(r, 502).await, "upstream_error");
    } else {
        assert_eq!(r.status(), 200);
        let events = parse_sse(&r.text().await.unwrap());
        let last = events.last().unwrap();
        assert_eq!(last.event.as_deref(), Some("error"), "{events:?}");
        let error: Value = serde_json::from_str(&last.data).unwrap();
        assert_eq!(error["error"]["code"], "upstream_error", "not a timeout");
        assert!(events[0].data.contains("hello"), "{events:?}");
    }
    assert!(
        bad.closed_within(1, CLOSE_LIMIT).await,
        "upstream left open"
    );
}

#[tokio::test]
async fn a_20_mb_body_is_a_502_and_its_upstream_is_closed() {
    let body = vec![b' '; 20 * 1024 * 1024];
    let bad = Hostile::start(Answer::body("application/json", body)).await;
    let app = app_on(&bad, "").await;
    let r = app.chat(json!({"messages": say("hi")})).await;
    assert_eq!(error_code(r, 502).await, "upstream_error");
    assert!(
        bad.closed_within(1, CLOSE_LIMIT).await,
        "upstream left open"
    );
    assert_eq!(bad.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_endless_fast_streams_do_not_stall_health() {
    let repeat = openai_delta("fast ").repeat(64);
    let (a, b) = (
        Hostile::start(Answer::endless("", repeat.clone())).await,
        Hostile::start(Answer::endless("", repeat)).await,
    );
    let toml = format!(
        "[server]\nrequest_timeout = \"4s\"\n{}{}\n[models.a]\ntargets = [\"a:m\"]\n[models.b]\ntargets = [\"b:m\"]\n",
        provider("a", &a.base_url(), 0),
        provider("b", &b.base_url(), 0),
    );
    let app = spawn_app_with_env(&toml, &upstream_env()).await;
    let read = |model: &'static str| {
        let request = app
            .client
            .post(app.url("/api/v1/chat"))
            .bearer_auth(KEY)
            .json(&json!({"model": model, "messages": say("hi"), "stream": true}));
        async move {
            let r = request.send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.map(|b| b.len()).unwrap_or(0)
        }
    };
    let streams = tokio::spawn(futures_util::future::join(read("a"), read("b")));
    assert!(eventually(CLOSE_LIMIT, || a.calls() + b.calls() >= 2).await);
    for _ in 0..5 {
        let health = tokio::time::timeout(Duration::from_secs(5), app.get("/health")).await;
        assert_eq!(health.expect("/health answers").status(), 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (sent_a, sent_b) = streams.await.unwrap();
    assert!(sent_a > 0 && sent_b > 0);
    assert!(a.closed_within(1, CLOSE_LIMIT).await && b.closed_within(1, CLOSE_LIMIT).await);
}

#[tokio::test]
async fn a_json_200_to_a_stream_request_is_unusable_and_not_retried() {
    let completion = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]});
    let json_body = || Answer::body("application/json", completion.to_string());
    let (first, second) = (
        Hostile::start(json_body()).await,
        Hostile::start(json_body()).await,
    );
    let toml = format!(
        "{}{}\n[models.default]\ntargets = [\"first:m1\", \"second:m2\"]\n",
        provider("first", &first.base_url(), 2),
        provider("second", &second.base_url(), 2),
    );
    let app = spawn_app_with_env(&toml, &upstream_env()).await;
    let r = app.chat(stream_request()).await;
    assert_eq!(error_code(r, 502).await, "upstream_error");
    assert_eq!((first.calls(), second.calls()), (1, 1), "no retries");
}

#[tokio::test]
async fn a_json_200_to_a_stream_request_moves_on_to_the_next_target() {
    let completion = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]});
    let first = Hostile::start(Answer::body("application/json", completion.to_string())).await;
    let second = Upstream::openai().await;
    second.push([Reply::stream(&["fine"])]);
    let toml = format!(
        "{}{}\n[models.default]\ntargets = [\"first:m1\", \"second:m2\"]\n",
        provider("first", &first.base_url(), 2),
        provider_toml("second", "openai", &second),
    );
    let app = spawn_app_with_env(&toml, &upstream_env()).await;
    let r = app.chat(stream_request()).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("fine"));
    assert_eq!((first.calls(), second.calls()), (1, 1));
}

/// `first` (a hostile 429 with `retry_after`) fails over to a healthy
/// `second`; two such requests open `first`'s circuit, after which it is
/// no longer called.
async fn huge_retry_after_moves_on_and_opens_the_circuit(retry_after: &str) {
    let first = Hostile::start(Answer::status(429, &[("retry-after", retry_after)])).await;
    let second = Upstream::openai().await;
    second.push([Reply::text("from the second")]);
    let toml = format!(
        "{}{}\n[models.default]\ntargets = [\"first:m1\", \"second:m2\"]\n",
        provider("first", &first.base_url(), 2).replace(
            "circuit_failure_threshold = 100",
            "circuit_failure_threshold = 2"
        ),
        provider_toml("second", "openai", &second),
    );
    let app = spawn_app_with_env(&toml, &upstream_env()).await;
    for _ in 0..3 {
        let r = app.chat(json!({"messages": say("hi")})).await;
        assert_eq!(r.status(), 200, "{retry_after}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["provider"], "second");
    }
    assert_eq!(
        first.calls(),
        2,
        "one attempt per request (the wait ends past the deadline), then the circuit is open"
    );
    let state = metric(
        &app.metrics().await,
        "chatgate_circuit_breaker_state",
        &[("provider", "first")],
    );
    assert_eq!(state, 2.0, "first's circuit is open");
}

#[tokio::test]
async fn a_retry_after_of_u64_max_seconds_moves_on_and_settles_the_circuit() {
    huge_retry_after_moves_on_and_opens_the_circuit("18446744073709551615").await;
}

#[tokio::test]
async fn a_retry_after_date_far_in_the_future_moves_on_and_settles_the_circuit() {
    huge_retry_after_moves_on_and_opens_the_circuit("Fri, 31 Dec 9999 23:59:59 GMT").await;
}

#[tokio::test]
async fn request_timeout_closes_the_upstream_of_a_stream_whose_client_stopped_reading() {
    let streamer = Hostile::start(Answer::endless("", openai_delta(&"x".repeat(1024)))).await;
    let app = app_on(&streamer, "[server]\nrequest_timeout = \"2s\"\n").await;

    // A raw client with a small receive buffer that reads the headers and
    // the first bytes, then stops reading (and keeps the connection open).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut client = socket.connect(app.addr).await.unwrap();
    let body = stream_request().to_string();
    let request = format!(
        "POST /api/v1/chat HTTP/1.1\r\nhost: chatgate\r\nauthorization: Bearer {KEY}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    client.write_all(request.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains("event: delta") {
        let n = client.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed early");
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(seen.starts_with(b"HTTP/1.1 200"));

    let started = tokio::time::Instant::now();
    assert!(
        streamer.closed_within(1, CLOSE_LIMIT).await,
        "the upstream was held past request_timeout for a client that stopped reading"
    );
    assert!(started.elapsed() < CLOSE_LIMIT);
    drop(client);
}

const BODY_MARKER: &str = "BODY-MARKER-7f3a9c";

#[tokio::test]
async fn upstream_body_text_never_reaches_a_log_even_at_trace() {
    let json = Hostile::start(Answer::body(
        "application/json",
        format!(r#"{{"choices": "{BODY_MARKER}"}}"#),
    ))
    .await;
    let sse = Hostile::start(Answer::body(
        "text/event-stream",
        format!("data: {{\"choices\": \"{BODY_MARKER}\"}}\n\n"),
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[server]\nhost = \"127.0.0.1\"\nport = 0\n\n[auth.keys.test]\nsha256 = \"{}\"\n\n\
         [logging]\nformat = \"json\"\n{}{}\n[models.json]\ntargets = [\"j:m\"]\n\
         [models.sse]\ntargets = [\"s:m\"]\n",
        chatgate::config::sha256_hex(KEY),
        provider("j", &json.base_url(), 0),
        provider("s", &sse.base_url(), 0),
    );
    std::fs::write(dir.path().join("default.toml"), toml).unwrap();
    let bin = Chatgate::in_dir(dir.path())
        .envs([
            ("CHATGATE_CONFIG_DIR", dir.path().to_str().unwrap()),
            ("TEST_UPSTREAM_KEY", UPSTREAM_KEY),
            ("RUST_LOG", "trace"),
        ])
        .spawn()
        .await;
    let client = reqwest::Client::new();
    for body in [
        json!({"model": "json", "messages": say("hi")}),
        json!({"model": "sse", "messages": say("hi"), "stream": true}),
    ] {
        let r = client
            .post(bin.url("/api/v1/chat"))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(r, 502).await, "upstream_error", "{body}");
    }
    assert_eq!((json.calls(), sse.calls()), (1, 1));

    let (status, output) = bin.stop().await;
    assert!(status.success(), "exit {status:?}");
    let hits: Vec<&str> = output.lines().filter(|l| l.contains(BODY_MARKER)).collect();
    assert!(
        hits.is_empty(),
        "upstream body text logged:\n{}",
        hits.join("\n")
    );
    assert!(
        output.contains("body is JSON of an unexpected shape")
            && output.contains("stream chunk is JSON of an unexpected shape"),
        "the decode failures were logged, by kind:\n{output}"
    );
}
