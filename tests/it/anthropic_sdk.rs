//! `POST /api/v1/messages` driven by the official `anthropic` Python SDK
//! (`base_url = …/api`), once with an Anthropic-kind target and once with an
//! OpenAI-kind one: create, stream, tools both ways, an image, errors.
//!
//! The SDK lives in the virtualenv whose python `CHATGATE_SDK_PYTHON` names
//! (`.ci/run` installs it). Without it the test is skipped loudly, except
//! under CI, where it fails.

use crate::support::external::{required_under_ci, run_json};
use crate::support::upstream::{chunk_frame, event_frame};
use crate::support::*;
use serde_json::{Value, json};

/// A streamed answer of one tool call, in the upstream's own format, its
/// arguments in two pieces.
fn tool_stream(anthropic: bool) -> Reply {
    if anthropic {
        return Reply::Frames(
            [
                json!({"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant", "model": "claude",
                       "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 5, "output_tokens": 1}}}),
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_s", "name": "weather", "input": {}}}),
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}}),
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "\"Lisbon\"}"}}),
                json!({"type": "content_block_stop", "index": 0}),
                json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 9}}),
                json!({"type": "message_stop"}),
            ]
            .iter()
            .map(event_frame)
            .collect(),
        );
    }
    Reply::Frames(vec![
        chunk_frame(
            json!({"tool_calls": [{"index": 0, "id": "call_s", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":"}}]}),
            Value::Null,
        ),
        chunk_frame(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Lisbon\"}"}}]}),
            Value::Null,
        ),
        chunk_frame(json!({}), json!("tool_calls")),
        "data: [DONE]\n\n".into(),
    ])
}

async fn run_sdk(kind: &str) {
    let Some(python) = required_under_ci(
        "CHATGATE_SDK_PYTHON",
        &format!("the anthropic SDK check ({kind} target)"),
        "a python with `anthropic` installed",
    ) else {
        return;
    };
    let anthropic = kind == "anthropic";
    let up = if anthropic {
        Upstream::anthropic().await
    } else {
        Upstream::openai().await
    };
    let call_id = if anthropic { "toolu_1" } else { "call_1" };
    up.push([
        Reply::text("Hello from upstream"),
        Reply::stream(&["Hel", "lo", " there"]),
        Reply::tool_calls(&[(call_id, "weather", r#"{"city":"Lisbon"}"#)]),
        Reply::text("It is sunny"),
        tool_stream(anthropic),
        Reply::text("a tiny png"),
    ]);
    let toml = format!(
        "{}\n[models.m]\ntargets = [\"up:up-model\"]\n",
        provider_toml("up", kind, &up)
    );
    let app = spawn_app_with_env(&toml, &upstream_env()).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/sdk/anthropic_sdk_check.py"
    );
    let seen = run_json(python, script, &[&app.url("/api"), KEY, "m"]).await;

    assert_eq!(seen["create"]["text"], "Hello from upstream");
    assert_eq!(seen["stream"]["final"], "Hello there");
    assert_eq!(seen["stream"]["pieces"], json!(["Hel", "lo", " there"]));
    assert_eq!(
        seen["tool_use"],
        json!({"id": call_id, "name": "weather", "input": {"city": "Lisbon"}})
    );
    assert_eq!(seen["tool_result_answer"], "It is sunny");
    assert_eq!(
        seen["tool_stream"],
        json!([{"type": "tool_use", "name": "weather", "input": {"city": "Lisbon"}}])
    );
    assert_eq!(seen["image"], "a tiny png");
    assert_eq!(
        seen["errors"],
        json!({
            "model": {"status": 404, "type": "not_found_error", "request_id": true},
            "auth": {"status": 401, "type": "authentication_error"},
            "bad_role": {"status": 400, "type": "invalid_request_error"}
        })
    );

    // What the upstream received, in its own format.
    let sent: Vec<Value> = up.requests().into_iter().map(|r| r.body).collect();
    assert_eq!(sent.len(), 6, "the errors never reach the upstream");
    let first = &sent[0];
    assert_eq!(first["model"], "up-model");
    assert_eq!(first["temperature"], 0.5);
    if anthropic {
        assert_eq!(first["system"], "Be brief.");
        assert_eq!(first["max_tokens"], 100);
        assert_eq!(first["top_k"], 5);
        assert_eq!(first["stop_sequences"], json!(["END"]));
        assert_eq!(first["metadata"], json!({"user_id": "u-1"}));
        assert_eq!(
            sent[2]["tools"][0]["input_schema"]["required"],
            json!(["city"])
        );
        assert_eq!(sent[2]["tool_choice"], json!({"type": "auto"}));
        assert_eq!(
            sent[3]["messages"][2],
            json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]})
        );
        assert_eq!(
            sent[5]["messages"][0]["content"][1],
            json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}})
        );
    } else {
        assert_eq!(
            first["messages"][0],
            json!({"role": "system", "content": "Be brief."})
        );
        assert_eq!(first["max_tokens"], 100);
        assert_eq!(first["stop"], json!(["END"]));
        assert_eq!(first["user"], "u-1");
        assert!(
            first.get("top_k").is_none(),
            "top_k has no OpenAI equivalent"
        );
        assert_eq!(sent[2]["tools"][0]["type"], "function");
        assert_eq!(
            sent[2]["tools"][0]["function"]["parameters"]["required"],
            json!(["city"])
        );
        assert_eq!(sent[2]["tool_choice"], "auto");
        assert_eq!(sent[3]["messages"][1]["tool_calls"][0]["id"], "call_1");
        assert_eq!(
            sent[3]["messages"][2],
            json!({"role": "tool", "tool_call_id": "call_1", "content": "sunny"})
        );
        assert_eq!(sent[3]["messages"][3]["content"][0]["text"], "thanks");
        assert_eq!(
            sent[5]["messages"][0]["content"][1],
            json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}})
        );
    }
}

#[tokio::test]
async fn official_anthropic_sdk_works_against_an_anthropic_kind_target() {
    run_sdk("anthropic").await;
}

#[tokio::test]
async fn official_anthropic_sdk_works_against_an_openai_kind_target() {
    run_sdk("openai").await;
}
