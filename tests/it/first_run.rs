//! The README's five-minute path to a real provider, over the real binary on
//! the shipped config: `OPENAI_API_KEY` and one override,
//! `CHATGATE_MODELS__DEFAULT__TARGETS='["openai:gpt-4o-mini"]'`.

use crate::support::Upstream;
use crate::support::cli::{Served, chatgate, fresh_clone, run};
use serde_json::json;

const TARGETS: (&str, &str) = (
    "CHATGATE_MODELS__DEFAULT__TARGETS",
    r#"["openai:gpt-4o-mini"]"#,
);
const OPENAI_KEY: &str = "sk-first-run-openai-key-0000";

#[test]
fn the_readme_override_points_the_shipped_default_model_at_openai() {
    let clone = fresh_clone();
    let v = run(chatgate(clone.path())
        .args(["check-config", "--json"])
        .env(TARGETS.0, TARGETS.1)
        .env("OPENAI_API_KEY", OPENAI_KEY))
    .json();
    assert_eq!(v["profile"], "development");
    assert_eq!(
        v["models"]["default"]["targets"],
        json!(["openai:gpt-4o-mini"])
    );
    assert_eq!(v["providers"]["openai"]["kind"], "openai");
    assert_eq!(v["providers"]["openai"]["api_key_env"], "OPENAI_API_KEY");
}

#[tokio::test]
async fn with_the_readme_override_a_chat_reaches_openai_with_the_key_and_model() {
    let up = Upstream::openai().await;
    let clone = fresh_clone();
    // Only the base URL differs from the README: the real one is api.openai.com.
    let server = Served::start(
        chatgate(clone.path())
            .env(TARGETS.0, TARGETS.1)
            .env("OPENAI_API_KEY", OPENAI_KEY)
            .env("CHATGATE_PROVIDERS__OPENAI__BASE_URL", up.base_url())
            .env("CHATGATE_SERVER__PORT", "0")
            .env("CHATGATE_LOGGING__FORMAT", "json"),
    );
    let r = reqwest::Client::new()
        .post(server.url("/api/v1/chat"))
        .bearer_auth("dev-key")
        .json(&json!({"messages": [{"role": "user", "content": "Hello"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["provider"], "openai");
    let sent = up.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].body["model"], "gpt-4o-mini");
    assert_eq!(
        sent[0].headers["authorization"],
        format!("Bearer {OPENAI_KEY}").as_str()
    );
}
