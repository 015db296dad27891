//! Messages as content blocks: text-only chats reach both provider kinds
//! byte for byte as before, and text parts stay separate parts upstream.

use crate::support::*;
use serde_json::{Value, json};

/// An app whose default model is served by `up` (of `kind`), with a system prompt.
async fn app_on(kind: &str, up: &Upstream) -> TestApp {
    let extra = format!(
        "{}\n[models.default]\ntargets = [\"p:m1\"]\nmax_tokens = 100\nsystem_prompt = \"Be \\\"brief\\\".\"\n",
        provider_toml("p", kind, up)
    );
    spawn_app_with_env(&extra, &upstream_env()).await
}

async fn upstream(kind: &str) -> Upstream {
    if kind == "openai" {
        Upstream::openai().await
    } else {
        Upstream::anthropic().await
    }
}

/// A text-only conversation with characters JSON must escape.
fn conversation() -> Value {
    json!([
        {"role": "system", "content": "Answer in French.\nAlways."},
        {"role": "user", "content": "Say \"hi\" à la 😀 </script>"},
        {"role": "assistant", "content": "Salut"},
        {"role": "user", "content": "Again\ttab"}
    ])
}

/// What each provider kind receives for the native and the OpenAI route,
/// whole and streamed, recorded before messages became content blocks.
const EXPECTED: [(&str, [&str; 4]); 2] = [
    (
        "openai",
        [
            r#"{"model":"m1","messages":[{"role":"system","content":"Be \"brief\"."},{"role":"system","content":"Answer in French.\nAlways."},{"role":"user","content":"Say \"hi\" à la 😀 </script>"},{"role":"assistant","content":"Salut"},{"role":"user","content":"Again\ttab"}],"max_tokens":100,"temperature":0.5,"user":"u-1","stream":false}"#,
            r#"{"model":"m1","messages":[{"role":"system","content":"Be \"brief\"."},{"role":"system","content":"Answer in French.\nAlways."},{"role":"user","content":"Say \"hi\" à la 😀 </script>"},{"role":"assistant","content":"Salut"},{"role":"user","content":"Again\ttab"}],"max_tokens":20,"temperature":0.5,"top_p":0.9,"stop":["END","STOP"],"user":"u-2","stream":false}"#,
            r#"{"model":"m1","messages":[{"role":"system","content":"Be \"brief\"."},{"role":"system","content":"Answer in French.\nAlways."},{"role":"user","content":"Say \"hi\" à la 😀 </script>"},{"role":"assistant","content":"Salut"},{"role":"user","content":"Again\ttab"}],"max_tokens":100,"temperature":0.5,"user":"u-1","stream":true,"stream_options":{"include_usage":true}}"#,
            r#"{"model":"m1","messages":[{"role":"system","content":"Be \"brief\"."},{"role":"system","content":"Answer in French.\nAlways."},{"role":"user","content":"Say \"hi\" à la 😀 </script>"},{"role":"assistant","content":"Salut"},{"role":"user","content":"Again\ttab"}],"max_tokens":20,"temperature":0.5,"top_p":0.9,"stop":["END","STOP"],"user":"u-2","stream":true,"stream_options":{"include_usage":true}}"#,
        ],
    ),
    (
        "anthropic",
        [
            r#"{"model":"m1","max_tokens":100,"system":"Be \"brief\".\n\nAnswer in French.\nAlways.","messages":[{"role":"user","content":"Say \"hi\" à la 😀 </script>"},{"role":"assistant","content":"Salut"},{"role":"user","content":"Again\ttab"}],"temperature":0.5,"metadata":{"user_id":"u-1"},"stream":false}"#,
            r#"{"model":"m1","max_tokens":20,"system":"Be \"brief\".\n\nAnswer in French.\nAlways.","messages":[{"role":"user","content":"Say \"hi\" à la 😀 </script>"},{"role":"assistant","content":"Salut"},{"role":"user","content":"Again\ttab"}],"temperature":0.5,"top_p":0.9,"stop_sequences":["END","STOP"],"metadata":{"user_id":"u-2"},"stream":false}"#,
            r#"{"model":"m1","max_tokens":100,"system":"Be \"brief\".\n\nAnswer in French.\nAlways.","messages":[{"role":"user","content":"Say \"hi\" à la 😀 </script>"},{"role":"assistant","content":"Salut"},{"role":"user","content":"Again\ttab"}],"temperature":0.5,"metadata":{"user_id":"u-1"},"stream":true}"#,
            r#"{"model":"m1","max_tokens":20,"system":"Be \"brief\".\n\nAnswer in French.\nAlways.","messages":[{"role":"user","content":"Say \"hi\" à la 😀 </script>"},{"role":"assistant","content":"Salut"},{"role":"user","content":"Again\ttab"}],"temperature":0.5,"top_p":0.9,"stop_sequences":["END","STOP"],"metadata":{"user_id":"u-2"},"stream":true}"#,
        ],
    ),
];

#[tokio::test]
async fn text_only_chats_reach_both_provider_kinds_byte_for_byte_as_before() {
    for (kind, expected) in EXPECTED {
        let up = upstream(kind).await;
        let app = app_on(kind, &up).await;
        let native = json!({"messages": conversation(), "max_tokens": 200, "temperature": 0.5, "user": "u-1"});
        let openai = json!({"model": "default", "messages": conversation(), "max_tokens": 20,
                            "temperature": 0.5, "top_p": 0.9, "stop": ["END", "STOP"], "user": "u-2"});
        up.push([Reply::text("ok")]);
        assert_eq!(app.chat(native.clone()).await.status(), 200);
        assert_eq!(
            app.post("/api/v1/chat/completions", &openai).await.status(),
            200
        );
        up.push([Reply::stream(&["o", "k"])]);
        let mut streamed = native.clone();
        streamed["stream"] = json!(true);
        let r = app.chat(streamed).await;
        assert_eq!(r.status(), 200);
        r.text().await.unwrap();
        let mut streamed = openai.clone();
        streamed["stream"] = json!(true);
        let r = app.post("/api/v1/chat/completions", &streamed).await;
        assert_eq!(r.status(), 200);
        r.text().await.unwrap();
        let raw: Vec<String> = up.requests().into_iter().map(|r| r.raw).collect();
        assert_eq!(raw, expected, "{kind}");
    }
}

/// A user message of two text parts, as the OpenAI SDKs send them.
fn two_parts(a: &str, b: &str) -> Value {
    json!([{"role": "user", "content": [{"type": "text", "text": a}, {"type": "text", "text": b}]}])
}

#[tokio::test]
async fn two_text_parts_reach_an_openai_upstream_as_two_parts() {
    let up = upstream("openai").await;
    let app = app_on("openai", &up).await;
    let body = json!({"model": "default", "messages": two_parts("part one", "part two")});
    assert_eq!(
        app.post("/api/v1/chat/completions", &body).await.status(),
        200
    );
    assert_eq!(
        up.requests()[0].body["messages"],
        json!([
            {"role": "system", "content": "Be \"brief\"."},
            {"role": "user", "content": [{"type": "text", "text": "part one"}, {"type": "text", "text": "part two"}]}
        ])
    );
}

#[tokio::test]
async fn two_text_parts_reach_an_anthropic_upstream_as_two_text_blocks() {
    let up = upstream("anthropic").await;
    let app = app_on("anthropic", &up).await;
    let mut messages = two_parts("part one", "part two");
    // A `developer` message of parts still joins the system field as one text.
    messages.as_array_mut().unwrap().insert(
        0,
        json!({"role": "developer", "content": [{"type": "text", "text": "Be "}, {"type": "text", "text": "kind."}]}),
    );
    let body = json!({"model": "default", "messages": messages});
    assert_eq!(
        app.post("/api/v1/chat/completions", &body).await.status(),
        200
    );
    let sent = &up.requests()[0].body;
    assert_eq!(sent["system"], "Be \"brief\".\n\nBe kind.");
    assert_eq!(
        sent["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "part one"}, {"type": "text", "text": "part two"}]}])
    );
}

#[tokio::test]
async fn the_interaction_log_and_the_mock_see_text_parts_joined() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("interactions.jsonl");
    let toml = crate::support::observability::interaction_log_toml(&path, 1.0, 16);
    let app = spawn_app(&toml).await;
    let body = json!({"messages": two_parts("write to bob@", "example.com please")});
    let r = app.post("/api/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Echo: write to bob@example.com please"
    );
    let logged = || crate::support::observability::log_lines(&path);
    assert!(eventually(std::time::Duration::from_secs(5), || logged().len() == 1).await);
    let line = &logged()[0];
    assert_eq!(
        line["messages"],
        json!([{"role": "user", "content": "write to [EMAIL] please"}]),
        "joined before redaction, so an address split across parts is still caught"
    );
}

#[tokio::test]
async fn max_message_chars_counts_the_text_of_all_parts_together() {
    let app = spawn_app("[chat]\nmax_message_chars = 10\n").await;
    let fits = json!({"messages": two_parts("abcde", "fghij")});
    assert_eq!(
        app.post("/api/v1/chat/completions", &fits).await.status(),
        200
    );
    let long = json!({"messages": two_parts("abcde", "fghijk")});
    let r = app.post("/api/v1/chat/completions", &long).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["error"]["message"],
        "messages[0].content is too long (at most 10 characters)"
    );
}
