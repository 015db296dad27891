//! The OpenAI-compatible routes driven by the official `openai` Python SDK
//! with strict response validation: models, completions, streams with usage,
//! and errors mapped to the SDK's exception types.
//!
//! The SDK lives in a virtualenv whose python `CHATGATE_SDK_PYTHON` names
//! (`.ci/run` creates it). Without it the test is skipped loudly, except
//! under CI, where it fails.

use crate::support::external::{required_under_ci, run_json};
use crate::support::upstream::{chunk_frame, tool_call_piece};
use crate::support::*;
use serde_json::{Value, json};

/// Two tool calls streamed in interleaved pieces, OpenAI's way.
fn tool_stream() -> Reply {
    Reply::Frames(vec![
        chunk_frame(
            tool_call_piece(0, Some(("call_w", "weather")), ""),
            Value::Null,
        ),
        chunk_frame(
            tool_call_piece(1, Some(("call_t", "time")), "{\"tz\":"),
            Value::Null,
        ),
        chunk_frame(
            tool_call_piece(0, None, "{\"city\":\"Lisbon\"}"),
            Value::Null,
        ),
        chunk_frame(tool_call_piece(1, None, "\"UTC\"}"), Value::Null),
        chunk_frame(json!({}), json!("tool_calls")),
        "data: [DONE]\n\n".into(),
    ])
}

#[tokio::test]
async fn official_openai_sdk_works_unchanged_with_strict_validation() {
    let Some(python) = required_under_ci(
        "CHATGATE_SDK_PYTHON",
        "official_openai_sdk_works_unchanged_with_strict_validation",
        "a python with `openai` installed",
    ) else {
        return;
    };
    let up = Upstream::openai().await;
    up.push([
        Reply::tool_calls(&[("call_1", "weather", r#"{"city":"Lisbon"}"#)]),
        tool_stream(),
        Reply::text("a tiny png"),
        Reply::text(r#"{"answer":42}"#),
    ]);
    let toml = format!(
        "[models.other]\ntargets = [\"mock:echo\"]\n{}\n[models.tools]\ntargets = [\"up:gpt\"]\n",
        provider_toml("up", "openai", &up)
    );
    let app = spawn_app_with_env(&toml, &upstream_env()).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/sdk/openai_sdk_check.py"
    );
    let seen = run_json(python, script, &[&app.url("/api/v1"), KEY]).await;

    assert_eq!(
        seen["models"],
        serde_json::json!(["default", "other", "tools"])
    );
    for field in ["created", "id", "object", "owned_by"] {
        assert!(
            seen["model_fields"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f == field),
            "{field}"
        );
    }

    let c = &seen["completion"];
    assert!(c["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(c["object"], "chat.completion");
    assert_eq!(c["model"], "default");
    assert_eq!(c["content"], "Echo: Hello SDK");
    assert_eq!(c["role"], "assistant");
    assert_eq!(c["refusal"], Value::Null);
    assert_eq!(c["finish_reason"], "stop");
    assert_eq!(
        c["usage"],
        serde_json::json!({"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7})
    );
    assert_eq!(seen["raw_has_nullable_fields"], true);

    let s = &seen["stream"];
    assert_eq!(
        s["ids"].as_array().unwrap().len(),
        1,
        "every chunk shares one id"
    );
    assert_eq!(
        s["created"].as_array().unwrap().len(),
        1,
        "every chunk shares one created"
    );
    assert_eq!(s["objects"], serde_json::json!(["chat.completion.chunk"]));
    assert_eq!(s["text"], "Echo: stream me please");
    let reasons = s["finish_reasons"].as_array().unwrap();
    assert_eq!(reasons.last().unwrap(), "stop");
    assert!(
        reasons[..reasons.len() - 1].iter().all(Value::is_null),
        "finish_reason is null until the final chunk"
    );
    assert_eq!(
        s["usage"],
        serde_json::json!([{"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}])
    );

    assert_eq!(seen["retrieved"]["id"], "default");
    assert_eq!(seen["retrieved"]["owned_by"], "chatgate");

    let t = &seen["tools"];
    assert_eq!(t["finish_reason"], "tool_calls");
    assert_eq!(t["content"], Value::Null);
    assert_eq!(
        t["calls"],
        json!([{"id": "call_1", "type": "function", "name": "weather", "arguments": "{\"city\":\"Lisbon\"}"}])
    );
    assert_eq!(t["logprob_tokens"], json!(["x"]));
    assert_eq!(t["system_fingerprint"], "fp_test");
    assert_eq!(t["cached_tokens"], 3);
    let sent = up.requests();
    assert_eq!(sent[0].body["tools"][0]["function"]["name"], "weather");
    assert_eq!(sent[0].body["logprobs"], true);
    assert_eq!(sent[0].body["seed"], 7);
    assert_eq!(sent[1].body["messages"][2]["role"], "tool");
    assert_eq!(sent[1].body["messages"][1]["content"], Value::Null);

    let s = &seen["tool_stream"];
    assert_eq!(
        s["calls"],
        json!([
            {"id": "call_w", "name": "weather", "arguments": "{\"city\":\"Lisbon\"}"},
            {"id": "call_t", "name": "time", "arguments": "{\"tz\":\"UTC\"}"}
        ])
    );
    assert_eq!(
        s["finish_reasons"].as_array().unwrap().last().unwrap(),
        "tool_calls"
    );

    assert_eq!(seen["image"], "a tiny png");
    assert_eq!(
        sent[2].body["messages"][0]["content"][1],
        json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}})
    );
    assert_eq!(seen["json_schema"], json!({"answer": 42}));
    assert_eq!(sent[3].body["response_format"]["type"], "json_schema");

    let e = &seen["errors"];
    assert_eq!(
        e["auth"],
        serde_json::json!({"status": 401, "code": "unauthorized", "type": "authentication_error"})
    );
    assert_eq!(
        e["model"],
        serde_json::json!({"status": 404, "code": "model_not_found"})
    );
    assert_eq!(
        e["bad_role"],
        serde_json::json!({"status": 400, "code": "invalid_request", "type": "invalid_request_error", "param": "messages[0].role"})
    );
    assert_eq!(
        e["unsupported"],
        serde_json::json!({"status": 400, "code": "unsupported_feature", "type": "invalid_request_error", "param": "tools"})
    );
}
