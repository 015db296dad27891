//! The interaction log over real HTTP: one JSON line per sampled chat
//! (streamed ones too) with its audit fields, prompt and answer text redacted,
//! no key ever written, sampling, and a full queue that drops lines (counted)
//! instead of holding up a chat.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::observability::{StuckFifo, interaction_log_toml, log_lines};
use crate::support::prometheus::series;
use crate::support::*;
use chatgate::meters::INTERACTIONS_DROPPED;
use serde_json::{Value, json};

/// An app whose interaction log (every chat sampled) goes to a fresh file.
async fn logged_app(extra: &str) -> (TestApp, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("interactions.jsonl");
    let toml = format!("{}{extra}", interaction_log_toml(&path, 1.0, 1024));
    let app = spawn_app_with_env(&toml, &upstream_env()).await;
    (app, path, dir)
}

/// The log once it holds `n` lines (the writer works off the request path).
async fn wait_for_lines(path: &Path, n: usize) -> Vec<Value> {
    let reached = eventually(Duration::from_secs(5), || log_lines(path).len() >= n).await;
    let lines = log_lines(path);
    assert!(reached, "expected {n} lines, found {}", lines.len());
    assert_eq!(lines.len(), n, "one line per chat");
    lines
}

async fn post_with_id(app: &TestApp, path: &str, id: &str, body: Value) -> Value {
    let r = app.client.post(app.url(path)).bearer_auth(KEY);
    let r = r
        .header("x-request-id", id)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn each_chat_is_one_json_line_with_its_audit_fields() {
    let (app, path, _dir) = logged_app("").await;
    let body = json!({"messages": say("Hello there")});
    let native = post_with_id(&app, "/api/v1/chat", "req-native-1", body.clone()).await;
    post_with_id(&app, "/api/v1/chat/completions", "req-compat-2", body).await;

    let lines = wait_for_lines(&path, 2).await;
    let line = &lines[0];
    let mut fields: Vec<&str> = line
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "answer",
            "input_tokens",
            "key_id",
            "latency_ms",
            "messages",
            "model",
            "outcome",
            "output_tokens",
            "provider",
            "request_id",
            "ts"
        ]
    );
    assert_eq!(line["request_id"], "req-native-1");
    assert_eq!(line["key_id"], "test");
    assert_eq!(line["model"], "default");
    assert_eq!(line["provider"], "mock");
    assert_eq!(line["input_tokens"], native["usage"]["input_tokens"]);
    assert_eq!(line["output_tokens"], native["usage"]["output_tokens"]);
    assert_eq!(
        (
            line["input_tokens"].as_u64(),
            line["output_tokens"].as_u64()
        ),
        (Some(2), Some(3))
    );
    assert!(line["latency_ms"].is_u64());
    assert_eq!(line["outcome"], "success");
    assert_eq!(
        line["messages"],
        json!([{"role": "user", "content": "Hello there"}])
    );
    assert_eq!(line["answer"], "Echo: Hello there");
    assert_eq!(lines[1]["request_id"], "req-compat-2");
    assert_eq!(lines[1]["answer"], "Echo: Hello there");
}

#[tokio::test]
async fn prompt_and_answer_text_is_redacted_for_every_pii_kind() {
    let (app, path, _dir) = logged_app("").await;
    let raw = [
        "jane.doe@example.com",
        "+1 415-555-0134",
        "4111 1111 1111 1111",
        "sk-proj-AbCdEf0123456789xyz",
        "192.168.10.24",
        "0123456789abcdef0123456789abcdef",
    ];
    let prompt = format!(
        "mail {} call {} card {} key {} from {} token {}",
        raw[0], raw[1], raw[2], raw[3], raw[4], raw[5]
    );
    let messages = json!([
        {"role": "system", "content": "Escalate to ops@example.org."},
        {"role": "user", "content": prompt},
    ]);
    // The mock provider echoes the prompt, so the answer carries it too.
    let v = post_with_id(&app, "/api/v1/chat", "pii", json!({"messages": messages})).await;
    assert_eq!(v["message"]["content"], format!("Echo: {prompt}"));

    let line = &wait_for_lines(&path, 1).await[0];
    let redacted = "mail [EMAIL] call [PHONE] card [CARD] key [SECRET] from [IP] token [SECRET]";
    assert_eq!(line["messages"][0]["content"], "Escalate to [EMAIL].");
    assert_eq!(line["messages"][1]["content"], redacted);
    assert_eq!(line["answer"], format!("Echo: {redacted}"));
    let file = std::fs::read_to_string(&path).unwrap();
    for secret in raw.iter().chain(&["ops@example.org"]) {
        assert!(!file.contains(secret), "{secret} reached the log");
    }
}

#[tokio::test]
async fn neither_the_client_key_nor_the_upstream_key_is_written() {
    let up = Upstream::openai().await;
    up.push([Reply::text("an upstream answer")]);
    let other_key = "client-key-5f1e0c9b8a7d6e5f";
    let extra = format!(
        "{}\n[models.default]\ntargets = [\"openai:gpt-x\"]\n[auth.keys.frontend]\nsha256 = \"{}\"\n",
        provider_toml("openai", "openai", &up),
        chatgate::config::sha256_hex(other_key),
    );
    let (app, path, _dir) = logged_app(&extra).await;
    assert_eq!(app.chat(json!({"messages": say("hi")})).await.status(), 200);
    let r = app
        .client
        .post(app.url("/api/v1/chat"))
        .header("x-api-key", other_key);
    let r = r
        .json(&json!({"messages": say("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let lines = wait_for_lines(&path, 2).await;
    assert_eq!(
        (&lines[0]["key_id"], &lines[1]["key_id"]),
        (&json!("test"), &json!("frontend"))
    );
    assert_eq!(lines[0]["provider"], "openai");
    assert_eq!(lines[0]["answer"], "an upstream answer");
    assert_eq!(up.calls(), 2, "the upstream key was in use");
    let file = std::fs::read_to_string(&path).unwrap();
    for secret in [KEY, other_key, UPSTREAM_KEY] {
        assert!(!file.contains(secret), "{secret} reached the log");
    }
}

#[tokio::test]
async fn streamed_chats_are_logged_with_the_whole_answer() {
    let (app, path, _dir) = logged_app("").await;
    let prompt = "one two three four";
    let body = json!({"messages": say(prompt), "stream": true});
    for (route, id) in [
        ("/api/v1/chat", "s-native"),
        ("/api/v1/chat/completions", "s-compat"),
    ] {
        let r = app.client.post(app.url(route)).bearer_auth(KEY);
        let r = r
            .header("x-request-id", id)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("four"), "{route} streamed");
    }

    let lines = wait_for_lines(&path, 2).await;
    for (line, id) in lines.iter().zip(["s-native", "s-compat"]) {
        assert_eq!(line["request_id"], id);
        assert_eq!(line["answer"], "Echo: one two three four");
        assert_eq!(
            (
                line["input_tokens"].as_u64(),
                line["output_tokens"].as_u64()
            ),
            (Some(4), Some(5))
        );
        assert_eq!(line["outcome"], "success");
        assert_eq!(
            line["messages"],
            json!([{"role": "user", "content": prompt}])
        );
    }
}

/// An app whose interaction log writer is stuck opening `fifo` forever, with
/// room for one queued line: every further sampled chat's line is dropped.
async fn stuck_writer_app(fifo: &StuckFifo, sample_rate: f64) -> TestApp {
    let toml = interaction_log_toml(&fifo.path, sample_rate, 1);
    spawn_app(&toml).await
}

async fn dropped(app: &TestApp) -> Option<f64> {
    series(&app.metrics().await, INTERACTIONS_DROPPED, &[])
}

#[tokio::test]
async fn a_full_queue_drops_lines_and_counts_them_without_holding_up_chats() {
    let fifo = StuckFifo::new();
    let app = stuck_writer_app(&fifo, 1.0).await;
    assert_eq!(dropped(&app).await, Some(0.0), "exported from the start");
    for n in 0..50 {
        let r = app
            .chat(json!({"messages": say(&format!("chat {n}"))}))
            .await;
        assert_eq!(r.status(), 200, "chat {n}");
    }
    // The writer never takes a line, so the queue holds the first one only.
    assert_eq!(dropped(&app).await, Some(49.0));
}

#[tokio::test]
async fn sample_rate_zero_queues_no_line() {
    // With the writer stuck and room for one line, any sampled chat past the
    // first would be dropped and counted (as in the test above); none is.
    let fifo = StuckFifo::new();
    let app = stuck_writer_app(&fifo, 0.0).await;
    for n in 0..50 {
        let r = app
            .chat(json!({"messages": say(&format!("chat {n}"))}))
            .await;
        assert_eq!(r.status(), 200);
    }
    assert_eq!(dropped(&app).await, Some(0.0));
}

/// Seconds since the epoch of an RFC 3339 UTC timestamp
/// (`YYYY-MM-DDTHH:MM:SS.mmmZ`), or `None` when it has another shape.
fn epoch_secs(ts: &str) -> Option<i64> {
    let b = ts.as_bytes();
    let shape = ts.len() == 24
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[23] == b'Z';
    if !shape {
        return None;
    }
    let n = |r: std::ops::Range<usize>| ts[r].parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    n(20..23)?;
    // Days from civil (Howard Hinnant), independent of the code under test.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + n(11..13)? * 3600 + n(14..16)? * 60 + n(17..19)?)
}

#[tokio::test]
async fn each_line_carries_a_ts_in_rfc3339_utc_from_when_the_chat_was_served() {
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    let (app, path, _dir) = logged_app("").await;
    let before = now();
    post_with_id(
        &app,
        "/api/v1/chat",
        "req-ts-1",
        json!({"messages": say("hi")}),
    )
    .await;
    let after = now();
    let lines = wait_for_lines(&path, 1).await;
    let ts = lines[0]["ts"].as_str().expect("ts is a string");
    let secs = epoch_secs(ts).unwrap_or_else(|| panic!("not RFC 3339 UTC: {ts}"));
    assert!(
        (before..=after).contains(&secs),
        "{ts} lies within the chat ({before}..={after})"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn the_interaction_log_file_is_created_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let (app, path, _dir) = logged_app("").await;
    post_with_id(
        &app,
        "/api/v1/chat",
        "req-mode-1",
        json!({"messages": say("hi")}),
    )
    .await;
    wait_for_lines(&path, 1).await;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "mode {mode:o}");
}

#[tokio::test]
async fn a_streamed_answer_is_logged_up_to_max_message_chars() {
    let up = Upstream::openai().await;
    up.push([Reply::stream(&["abcdef", "ghijkl", "mnopqr"])]);
    let extra = format!(
        "[chat]\nmax_message_chars = 8\n{}\n[models.default]\ntargets = [\"up:m\"]\n",
        provider_toml("up", "openai", &up)
    );
    let (app, path, _dir) = logged_app(&extra).await;
    let r = app
        .chat(json!({"messages": say("hi"), "stream": true}))
        .await;
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("mnopqr"),
        "the client gets the whole answer: {body}"
    );
    let lines = wait_for_lines(&path, 1).await;
    assert_eq!(lines[0]["answer"], "abcdefgh", "{}", lines[0]);
}

#[tokio::test]
async fn a_whole_answer_that_times_out_is_logged_as_timeout_as_in_the_request_log() {
    let up = Upstream::openai().await;
    up.push([Reply::Hang]);
    let extra = format!(
        "[server]\nrequest_timeout = \"300ms\"\n\
         [providers.slow]\nkind = \"openai\"\nbase_url = \"{}\"\napi_key_env = \"TEST_UPSTREAM_KEY\"\n\
         timeout = \"60s\"\nmax_retries = 0\n\n[models.default]\ntargets = [\"slow:m\"]\n",
        up.base_url()
    );
    let (app, path, _dir) = logged_app(&extra).await;
    let r = app.chat(json!({"messages": say("hi")})).await;
    error_of(r, 504, "timeout").await;

    let line = &wait_for_lines(&path, 1).await[0];
    assert_eq!(line["outcome"], "timeout", "{line}");
    assert_eq!(line["answer"], "");
}
