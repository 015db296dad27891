//! Logs of the real binary (JSON, RUST_LOG=trace): one structured event per
//! request with the contract's fields, and no secret, Authorization value,
//! prompt or answer anywhere in stdout or stderr, at any level.

use crate::support::binary::{Chatgate, Running};
use crate::support::*;
use serde_json::{Value, json};

const CLIENT_KEY: &str = "ck-LOGTEST-client-key-5d41402abc4b2a76";
const UPSTREAM_SECRET: &str = "sk-LOGTEST-upstream-key-7d793037a0760186";
const WRONG_KEY: &str = "wk-LOGTEST-wrong-key-1f3870be274f6c49";
const PROMPT: &str = "purple-zebra-prompt-5521";
const ANSWER: &str = "golden-narwhal-answer-8843";

/// A config dir for the binary: JSON logs, the client key from
/// `CHATGATE_FRONTEND_KEY`, one OpenAI-compatible provider on `up`.
fn config_dir(up: &Upstream) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        r#"
[server]
host = "127.0.0.1"
port = 0

[auth.keys.frontend]
env = "CHATGATE_FRONTEND_KEY"

[logging]
format = "json"

[providers.up]
kind = "openai"
base_url = "{}"
api_key_env = "LOGTEST_UPSTREAM_KEY"
max_retries = 0

[models.default]
targets = ["up:gpt-logtest"]
"#,
        up.base_url()
    );
    std::fs::write(dir.path().join("default.toml"), toml).unwrap();
    dir
}

async fn start(dir: &tempfile::TempDir, rust_log: &str) -> Running {
    Chatgate::in_dir(dir.path())
        .env("CHATGATE_CONFIG_DIR", dir.path())
        .env("CHATGATE_FRONTEND_KEY", CLIENT_KEY)
        .env("LOGTEST_UPSTREAM_KEY", UPSTREAM_SECRET)
        .env("RUST_LOG", rust_log)
        .spawn()
        .await
}

/// The JSON log lines of the request-log target.
fn request_events(output: &str) -> Vec<Value> {
    output
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "chatgate::request")
        .collect()
}

#[tokio::test]
async fn each_request_logs_one_event_with_the_contract_fields() {
    let up = Upstream::openai().await;
    up.push([Reply::text(ANSWER)]);
    let dir = config_dir(&up);
    let bin = start(&dir, "info").await;
    let client = reqwest::Client::new();

    let ok = client
        .post(bin.url("/api/v1/chat"))
        .bearer_auth(CLIENT_KEY)
        .header("x-request-id", "log-ok-1")
        .json(&json!({"messages": say(PROMPT)}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let refused = client
        .get(bin.url("/api/v1/models"))
        .header("x-request-id", "log-401-1")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    let (status, output) = bin.stop().await;
    assert!(status.success(), "exit {status:?}\n{output}");
    let events = request_events(&output);

    let ok: Vec<_> = events
        .iter()
        .filter(|e| e["request_id"] == "log-ok-1")
        .collect();
    assert_eq!(ok.len(), 1, "one event per request:\n{output}");
    let e = ok[0];
    assert_eq!(e["method"], "POST");
    assert_eq!(e["route"], "/api/v1/chat", "the route template");
    assert_eq!(e["status"], 200);
    assert!(e["latency_ms"].as_f64().is_some_and(|l| l >= 0.0), "{e}");
    assert_eq!(e["client_ip"], "127.0.0.1");
    assert_eq!(e["key_id"], "frontend", "the key id, never the key");
    // The request id is on the request's other lines too, e.g. its upstream attempt.
    let attempt = output
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == "upstream attempt")
        .expect("an upstream attempt was logged");
    assert_eq!(attempt["span"]["request_id"], "log-ok-1", "{attempt}");
    assert_eq!(attempt["provider"], "up");
    assert_eq!(attempt["outcome"], "success");

    let refused: Vec<_> = events
        .iter()
        .filter(|e| e["request_id"] == "log-401-1")
        .collect();
    assert_eq!(refused.len(), 1, "{output}");
    let e = refused[0];
    assert_eq!(e["method"], "GET");
    assert_eq!(e["route"], "/api/v1/models");
    assert_eq!(e["status"], 401);
    assert_eq!(e["client_ip"], "127.0.0.1");
    assert!(e.get("key_id").is_none(), "no key, no key id: {e}");
}

#[tokio::test]
async fn no_secret_prompt_or_answer_appears_in_any_log_line_even_at_trace() {
    let up = Upstream::openai().await;
    up.push([
        Reply::text(ANSWER),
        Reply::text(ANSWER),
        Reply::Stream(vec![ANSWER.into()]),
        Reply::status(500),
    ]);
    let dir = config_dir(&up);
    let bin = start(&dir, "trace").await;
    let client = reqwest::Client::new();
    let body = json!({"messages": say(PROMPT)});

    // Native chat with Bearer, the OpenAI route with x-api-key, a stream.
    let r = client
        .post(bin.url("/api/v1/chat"))
        .bearer_auth(CLIENT_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains(ANSWER));
    let r = client
        .post(bin.url("/api/v1/chat/completions"))
        .header("x-api-key", CLIENT_KEY)
        .json(&json!({"model": "default", "messages": say(PROMPT)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains(ANSWER));
    let r = client
        .post(bin.url("/api/v1/chat"))
        .bearer_auth(CLIENT_KEY)
        .json(&json!({"messages": say(PROMPT), "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains(ANSWER));
    // A failing upstream (its body is logged nowhere either), a wrong key.
    let r = client
        .post(bin.url("/api/v1/chat"))
        .bearer_auth(CLIENT_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let r = client
        .post(bin.url("/api/v1/chat"))
        .bearer_auth(WRONG_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(up.calls(), 4);

    let (status, output) = bin.stop().await;
    assert!(status.success(), "exit {status:?}");
    assert!(
        request_events(&output).len() >= 5,
        "the requests were logged:\n{output}"
    );
    assert!(
        output.contains("\"level\":\"TRACE\"") || output.contains("\"level\":\"DEBUG\""),
        "the test ran with verbose logs"
    );
    // A key not found also means its `Authorization: Bearer <key>` value is not.
    for (what, needle) in [
        ("client key", CLIENT_KEY),
        ("upstream key", UPSTREAM_SECRET),
        ("wrong client key", WRONG_KEY),
        ("prompt", PROMPT),
        ("answer", ANSWER),
        ("upstream error body", "SECRET-UPSTREAM-DETAIL"),
    ] {
        let hits: Vec<&str> = output.lines().filter(|l| l.contains(needle)).collect();
        assert!(
            hits.is_empty(),
            "the {what} was logged:\n{}",
            hits.join("\n")
        );
    }
}
