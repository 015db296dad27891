//! Hostile and careless clients over real HTTP: idle HTTP/1.1 and h2c
//! connections, streams against the concurrency cap, invented methods,
//! IPv6 clients spreading over a /64, huge echoed values; and the request log
//! of streams that break or time out (the real binary, JSON logs).

use std::time::Duration;

use crate::support::binary::Chatgate;
use crate::support::prometheus::{label_values, series};
use crate::support::*;
use chatgate::meters::{HTTP_REQUESTS, IN_FLIGHT};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Far longer than any bound under test: only a hang reaches it.
const GENEROUS: Duration = Duration::from_secs(10);

const IDLE_1S: &str = "[server]\nheader_read_timeout = \"1s\"\n";

/// Reads until the server closes the connection; false if it stays open.
async fn closed_by_server(stream: &mut tokio::net::TcpStream) -> bool {
    tokio::time::timeout(GENEROUS, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .is_ok()
}

/// An h2c (prior knowledge) connection to the app; the handle ends when the
/// connection does.
async fn h2c(
    app: &TestApp,
) -> (
    h2::client::SendRequest<axum::body::Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    (client, tokio::spawn(conn))
}

#[tokio::test]
async fn an_h2c_connection_that_sends_no_request_is_closed_after_header_read_timeout() {
    let app = spawn_app(IDLE_1S).await;
    let (_client, conn) = h2c(&app).await;
    let ended = tokio::time::timeout(GENEROUS, conn).await;
    assert!(ended.is_ok(), "the idle h2 connection stayed open");
}

#[tokio::test]
async fn an_h2c_connection_idle_after_a_request_is_closed_after_header_read_timeout() {
    let app = spawn_app(IDLE_1S).await;
    let (client, conn) = h2c(&app).await;
    let mut client = client.ready().await.unwrap();
    let req = axum::http::Request::get(app.url("/health"))
        .body(())
        .unwrap();
    let (response, _) = client.send_request(req, true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200, "HTTP/2 is served");
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        chunk.unwrap();
    }
    let ended = tokio::time::timeout(GENEROUS, conn).await;
    assert!(
        ended.is_ok(),
        "the h2 connection idle after its request stayed open"
    );
    // Others are still served.
    assert_eq!(app.get("/health").await.status(), 200);
}

#[tokio::test]
async fn an_h2c_connection_with_a_request_in_progress_is_not_closed_as_idle() {
    let up = Upstream::openai().await;
    // About 2.5 s of stream against a 1 s idle limit.
    up.push([Reply::SlowStream(
        (0..5).map(|i| format!("w{i} ")).collect(),
        Duration::from_millis(500),
    )]);
    let toml = format!(
        "{IDLE_1S}{}\n[models.default]\ntargets = [\"up:m\"]\n",
        provider_toml("up", "openai", &up)
    );
    let app = spawn_app_with_env(&toml, &upstream_env()).await;
    let (client, _conn) = h2c(&app).await;
    let mut client = client.ready().await.unwrap();
    let req = axum::http::Request::post(app.url("/api/v1/chat"))
        .header("authorization", format!("Bearer {KEY}"))
        .header("content-type", "application/json")
        .body(())
        .unwrap();
    let (response, mut send) = client.send_request(req, false).unwrap();
    let body = json!({"messages": say("hi"), "stream": true}).to_string();
    send.send_data(body.into(), true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut text = String::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("the stream is not cut by the idle timer");
        let _ = body.flow_control().release_capacity(chunk.len());
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(text.contains("event: done"), "{text}");
}

#[tokio::test]
async fn an_idle_http1_keep_alive_connection_is_closed_after_header_read_timeout() {
    let app = spawn_app(IDLE_1S).await;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert!(
        closed_by_server(&mut stream).await,
        "the idle keep-alive connection stayed open"
    );
}

/// Five words, each after `pause`: a stream that takes a while.
fn slow_stream(pause: Duration) -> Reply {
    Reply::SlowStream((0..5).map(|i| format!("w{i} ")).collect(), pause)
}

#[tokio::test]
async fn streams_hold_the_concurrency_cap_and_in_flight_gauge_until_they_end() {
    let up = Upstream::openai().await;
    up.push([slow_stream(Duration::from_millis(300))]);
    let toml = format!(
        "[server]\nmax_concurrent_requests = 2\n{}\n[models.default]\ntargets = [\"up:m\"]\n",
        provider_toml("up", "openai", &up)
    );
    let app = spawn_app_with_env(&toml, &upstream_env()).await;
    let in_flight = || series(&app.state.metrics.render(), IN_FLIGHT, &[]);

    let mut streams = Vec::new();
    for _ in 0..2 {
        let mut r = app
            .chat(json!({"messages": say("hi"), "stream": true}))
            .await;
        assert_eq!(r.status(), 200);
        let first = r.chunk().await.unwrap().expect("a first event");
        assert!(!first.is_empty());
        streams.push(r);
    }
    assert_eq!(in_flight(), Some(2.0), "both streams are in flight");

    let third = app
        .client
        .get(app.url("/api/v1/models"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), 503, "the cap counts streams in progress");
    let v: Value = third.json().await.unwrap();
    assert_eq!(v["error"]["code"], "overloaded");

    for mut r in streams {
        while let Some(chunk) = r.chunk().await.unwrap() {
            let _ = chunk;
        }
    }
    assert!(
        eventually(GENEROUS, || in_flight() == Some(0.0)).await,
        "ended streams leave the gauge: {:?}",
        in_flight()
    );
    let r = app
        .client
        .get(app.url("/api/v1/models"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "ended streams gave their permits back");
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_gives_its_permit_back() {
    let up = Upstream::openai().await;
    up.push([slow_stream(Duration::from_millis(400))]);
    let toml = format!(
        "[server]\nmax_concurrent_requests = 1\n{}\n[models.default]\ntargets = [\"up:m\"]\n",
        provider_toml("up", "openai", &up)
    );
    let app = spawn_app_with_env(&toml, &upstream_env()).await;
    let in_flight = || series(&app.state.metrics.render(), IN_FLIGHT, &[]);
    let mut r = app
        .chat(json!({"messages": say("hi"), "stream": true}))
        .await;
    assert_eq!(r.status(), 200);
    r.chunk().await.unwrap().expect("a first event");
    assert_eq!(in_flight(), Some(1.0));
    drop(r);
    assert!(
        eventually(GENEROUS, || in_flight() == Some(0.0)).await,
        "{:?}",
        in_flight()
    );
    let r = app
        .client
        .get(app.url("/api/v1/models"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn invented_methods_are_labelled_other_and_metrics_stay_small() {
    let app = spawn_app("").await;
    for i in 0..50 {
        let method = format!("INVENTED{i}{}", "X".repeat(2000));
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = app
            .client
            .request(method, app.url("/health"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{}", r.status());
    }
    let text = app.metrics().await;
    let methods = label_values(&text, HTTP_REQUESTS, "method");
    assert!(
        methods.iter().all(|m| m == "other" || m == "GET"),
        "{methods:?}"
    );
    assert!(methods.iter().any(|m| m == "other"), "{methods:?}");
    assert!(!text.contains("INVENTED"));
    assert!(text.len() < 20_000, "/metrics is {} bytes", text.len());
}

/// Two IPv6 clients behind a trusted proxy on loopback.
async fn models_from(app: &TestApp, ip: &str) -> u16 {
    app.client
        .get(app.url("/api/v1/models"))
        .bearer_auth(KEY)
        .header("x-forwarded-for", ip)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn one_request_per_ip(extra: &str) -> String {
    format!(
        "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n[rate_limit]\nper_ip_burst = 1\nper_ip_requests_per_minute = 1\n{extra}"
    )
}

#[tokio::test]
async fn ipv6_clients_of_one_64_share_one_bucket_and_other_64s_do_not() {
    let app = spawn_app(&one_request_per_ip("")).await;
    assert_eq!(models_from(&app, "2001:db8:1:2::1").await, 200);
    assert_eq!(
        models_from(&app, "2001:db8:1:2:ffff:eeee:dddd:cccc").await,
        429,
        "the same /64 is one client"
    );
    assert_eq!(
        models_from(&app, "2001:db8:1:3::1").await,
        200,
        "another /64 is another client"
    );
    // IPv4 is unchanged: one bucket per address.
    assert_eq!(models_from(&app, "198.51.100.1").await, 200);
    assert_eq!(models_from(&app, "198.51.100.2").await, 200);
    assert_eq!(models_from(&app, "198.51.100.1").await, 429);
}

#[tokio::test]
async fn ipv6_prefix_128_gives_each_address_its_own_bucket() {
    let app = spawn_app(&one_request_per_ip("ipv6_prefix = 128\n")).await;
    assert_eq!(models_from(&app, "2001:db8:1:2::1").await, 200);
    assert_eq!(models_from(&app, "2001:db8:1:2::2").await, 200);
    assert_eq!(models_from(&app, "2001:db8:1:2::1").await, 429);
}

#[tokio::test]
async fn ipv6_prefix_outside_1_to_128_is_refused_at_load() {
    for bad in ["0", "129"] {
        let problems = load_config(&format!("[rate_limit]\nipv6_prefix = {bad}\n"), &[])
            .expect_err("an invalid prefix is refused");
        assert!(
            problems.iter().any(|p| p.path == "rate_limit.ipv6_prefix"),
            "{problems:?}"
        );
    }
}

#[tokio::test]
async fn an_unknown_model_name_is_echoed_at_most_64_characters() {
    let app = spawn_app("[server]\nmax_body_bytes = 2000000\n").await;
    let name = "m".repeat(900_000);
    let r = app
        .chat(json!({"model": name, "messages": say("hi")}))
        .await;
    assert_eq!(r.status(), 404);
    let text = r.text().await.unwrap();
    assert!(text.len() < 1000, "the error body is {} bytes", text.len());
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["code"], "model_not_found");
    let message = v["error"]["message"].as_str().unwrap();
    let echoed = message.chars().filter(|c| *c == 'm').count();
    // "unknown model" and the pointer to "/api/v1/models" have one `m` each.
    assert!(echoed <= 64 + 2, "{message}");
    assert!(echoed > 10, "the name is still recognisable: {message}");
}

/// The JSON lines of `output`.
fn json_lines(output: &str) -> Vec<Value> {
    output
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

#[tokio::test]
async fn a_stream_is_logged_when_it_ends_with_its_final_outcome_latency_and_tokens() {
    let up = Upstream::openai().await;
    up.push([
        Reply::stream(&["a", "b", "c"]),
        Reply::BrokenStream(vec!["x".into(), "y".into()]),
        slow_stream(Duration::from_millis(400)),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        r#"
[server]
host = "127.0.0.1"
port = 0
request_timeout = "1s"

[auth.keys.frontend]
env = "CHATGATE_FRONTEND_KEY"

[logging]
format = "json"

[providers.up]
kind = "openai"
base_url = "{}"
api_key_env = "UPKEY"
max_retries = 0
timeout = "5s"

[models.default]
targets = ["up:m"]
"#,
        up.base_url()
    );
    std::fs::write(dir.path().join("default.toml"), toml).unwrap();
    let bin = Chatgate::in_dir(dir.path())
        .envs([
            ("CHATGATE_CONFIG_DIR", dir.path().to_str().unwrap()),
            ("CHATGATE_FRONTEND_KEY", KEY),
            ("UPKEY", UPSTREAM_KEY),
            ("RUST_LOG", "info"),
        ])
        .spawn()
        .await;
    let client = reqwest::Client::new();
    for id in ["s-ok", "s-broken", "s-timeout"] {
        let r = client
            .post(bin.url("/api/v1/chat"))
            .bearer_auth(KEY)
            .header("x-request-id", id)
            .json(&json!({"messages": say("hi"), "stream": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{id}");
        let _ = r.text().await;
    }
    let (status, output) = bin.stop().await;
    assert!(status.success(), "{output}");
    let lines = json_lines(&output);
    let request_line = |id: &str| -> Value {
        let found: Vec<&Value> = lines
            .iter()
            .filter(|v| v["target"] == "chatgate::request" && v["request_id"] == id)
            .collect();
        assert_eq!(found.len(), 1, "one request line for {id}:\n{output}");
        found[0].clone()
    };

    let ok = request_line("s-ok");
    assert_eq!(ok["outcome"], "success", "{ok}");
    assert_eq!(
        ok["output_tokens"], 3,
        "a stream's line has its tokens: {ok}"
    );

    let broken = request_line("s-broken");
    assert_eq!(broken["status"], 200);
    assert_eq!(broken["outcome"], "upstream_error", "{broken}");
    let warn = lines
        .iter()
        .find(|v| v["message"] == "stream ended with an error after it began")
        .unwrap_or_else(|| panic!("no mid-stream error line:\n{output}"));
    assert_eq!(warn["span"]["request_id"], "s-broken", "{warn}");

    let timeout = request_line("s-timeout");
    assert_eq!(timeout["outcome"], "timeout", "{timeout}");
    let latency = timeout["latency_ms"].as_f64().unwrap();
    assert!(
        latency >= 1000.0,
        "the line's latency is the stream's whole duration (>= request_timeout): {latency}"
    );
}

/// A GET /health whose one extra header holds `bytes` bytes.
async fn health_with_header_of(app: &TestApp, bytes: usize) -> reqwest::Response {
    app.client
        .get(app.url("/health"))
        .header("x-padding", "a".repeat(bytes))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn request_headers_of_24_kib_are_served() {
    let app = spawn_app("").await;
    let r = health_with_header_of(&app, 24 * 1024).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn request_headers_over_32_kib_get_the_contracts_431_json_with_a_request_id() {
    let app = spawn_app("").await;
    let r = health_with_header_of(&app, 40 * 1024).await;
    error_of(r, 431, "headers_too_large").await;
}

#[tokio::test]
async fn request_heads_past_hypers_64_kib_buffer_get_hypers_own_bodiless_431() {
    let app = spawn_app("").await;
    // hyper's default buffer (about 400 KiB) would have let this through to the stack.
    let r = health_with_header_of(&app, 100 * 1024).await;
    assert_eq!(r.status(), 431);
    assert!(r.bytes().await.unwrap().is_empty(), "hyper writes no body");
}
