//! The OpenAI-compatible routes driven by the official `openai` Python SDK
//! with strict response validation: models, completions, streams with usage,
//! and errors mapped to the SDK's exception types.
//!
//! The SDK lives in a virtualenv whose python `CHATGATE_SDK_PYTHON` names
//! (`.ci/run` creates it). Without it the test is skipped loudly, except
//! under CI, where it fails.

use crate::support::*;
use serde_json::Value;

#[tokio::test]
async fn official_openai_sdk_works_unchanged_with_strict_validation() {
    let Some(python) = std::env::var_os("CHATGATE_SDK_PYTHON") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must provide CHATGATE_SDK_PYTHON (see .ci/run)"
        );
        eprintln!(
            "\n*** SKIPPED official_openai_sdk_works_unchanged_with_strict_validation: set CHATGATE_SDK_PYTHON to a python with `openai` installed ***\n"
        );
        return;
    };
    let app = spawn_app("[models.other]\ntargets = [\"mock:echo\"]\n").await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/sdk/openai_sdk_check.py"
    );
    let output = tokio::process::Command::new(python)
        .arg(script)
        .arg(app.url("/api/v1"))
        .arg(KEY)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "SDK script failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_slice(&output.stdout).unwrap();

    assert_eq!(seen["models"], serde_json::json!(["default", "other"]));
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

    let e = &seen["errors"];
    assert_eq!(
        e["auth"],
        serde_json::json!({"status": 401, "code": "unauthorized"})
    );
    assert_eq!(
        e["model"],
        serde_json::json!({"status": 404, "code": "model_not_found"})
    );
    assert_eq!(
        e["bad_role"],
        serde_json::json!({"status": 400, "code": "invalid_request"})
    );
}
