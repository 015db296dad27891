//! The OpenAI-compatible route driven by JavaScript clients: the official
//! `openai` npm package (create, stream, tools) and the Vercel AI SDK
//! (`ai` + `@ai-sdk/openai-compatible`: `generateText` and `streamText` with a
//! tool whose result goes back upstream), run by node from `tests/it/sdk/js`.
//!
//! The packages are installed by `.ci/run` (`npm ci` from the committed lock
//! file into a cache) and found through `CHATGATE_SDK_NODE_MODULES`. Without
//! them the test is skipped loudly, except under CI, where it fails.

use crate::support::external::{required_under_ci, run_json};
use crate::support::upstream::chunk_frame;
use crate::support::*;
use serde_json::{Value, json};

/// One streamed tool call, its arguments in two pieces.
fn tool_stream(id: &str) -> Reply {
    Reply::Frames(vec![
        chunk_frame(
            json!({"role": "assistant", "tool_calls": [{"index": 0, "id": id, "type": "function", "function": {"name": "weather", "arguments": "{\"city\":"}}]}),
            Value::Null,
        ),
        chunk_frame(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Porto\"}"}}]}),
            Value::Null,
        ),
        chunk_frame(json!({}), json!("tool_calls")),
        "data: [DONE]\n\n".into(),
    ])
}

#[tokio::test]
async fn official_openai_npm_package_and_vercel_ai_sdk_work_with_tools() {
    let Some(modules) = required_under_ci(
        "CHATGATE_SDK_NODE_MODULES",
        "official_openai_npm_package_and_vercel_ai_sdk_work_with_tools",
        "a node_modules with tests/it/sdk/js/package.json installed",
    ) else {
        return;
    };
    let up = Upstream::openai().await;
    up.push([
        Reply::text("Hello from upstream"),
        Reply::stream(&["Hel", "lo"]),
        Reply::tool_calls(&[("call_1", "weather", r#"{"city":"Lisbon"}"#)]),
        Reply::tool_calls(&[("call_2", "weather", r#"{"city":"Lisbon"}"#)]),
        Reply::text("It is sunny in Lisbon"),
        tool_stream("call_3"),
        Reply::stream(&["Sunny", " in Porto"]),
    ]);
    let toml = format!(
        "{}\n[models.m]\ntargets = [\"up:gpt\"]\n",
        provider_toml("up", "openai", &up)
    );
    let app = spawn_app_with_env(&toml, &upstream_env()).await;
    // node resolves packages from the script's own folder: a throwaway one
    // holding the script and a link to the cached node_modules.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("check.mjs");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/sdk/js/check.mjs"),
        &script,
    )
    .unwrap();
    std::os::unix::fs::symlink(&modules, dir.path().join("node_modules")).unwrap();
    let seen = run_json("node", &script, &[&app.url("/api/v1"), KEY, "m"]).await;
    assert_eq!(seen["create"], "Hello from upstream");
    assert_eq!(seen["stream"], "Hello");
    assert_eq!(
        seen["tool_call"],
        json!({"id": "call_1", "name": "weather", "arguments": {"city": "Lisbon"}})
    );
    assert_eq!(
        seen["generate"],
        json!({"text": "It is sunny in Lisbon", "calls": ["Lisbon"]})
    );
    assert_eq!(
        seen["stream_text"],
        json!({"text": "Sunny in Porto", "calls": ["Lisbon", "Porto"]})
    );

    let sent: Vec<Value> = up.requests().into_iter().map(|r| r.body).collect();
    assert_eq!(sent.len(), 7);
    assert_eq!(sent[2]["tools"][0]["function"]["name"], "weather");
    // Each tool result went back upstream as a `tool` message for its call.
    for (i, id, city) in [(4, "call_2", "Lisbon"), (6, "call_3", "Porto")] {
        let messages = sent[i]["messages"].as_array().unwrap();
        let result = messages
            .iter()
            .find(|m| m["role"] == "tool")
            .unwrap_or_else(|| panic!("no tool message in {}", sent[i]));
        assert_eq!(result["tool_call_id"], id);
        let content = result["content"].to_string();
        assert!(
            content.contains("sunny") && content.contains(city),
            "{content}"
        );
        assert!(messages.iter().any(|m| m["tool_calls"][0]["id"] == id));
    }
}
