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
