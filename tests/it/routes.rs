//! Core routes over real HTTP: native and OpenAI-compatible chat (JSON and
//! SSE), models, health; both providers' translation both ways.

use crate::support::*;
use serde_json::{Value, json};

#[tokio::test]
async fn native_chat_answers_with_the_mock_provider() {
    let app = spawn_app("").await;
    let r = app.chat(json!({"messages": say("Hello there")})).await;
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(!id.is_empty());
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["message"],
        json!({"role": "assistant", "content": "Echo: Hello there"})
    );
    assert_eq!(v["model"], "default");
    assert_eq!(v["provider"], "mock");
    assert_eq!(v["provider_model"], "echo");
    assert_eq!(v["finish_reason"], "stop");
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 2, "output_tokens": 3, "cost_usd": 0.0})
    );
    assert_eq!(v["cached"], false);
    assert_eq!(v["degraded"], false);
    assert!(v["id"].as_str().unwrap().starts_with("chat-"));
}

#[tokio::test]
async fn openai_upstream_gets_the_translated_request_and_its_answer_comes_back() {
    let up = Upstream::openai().await;
    up.push([Reply::TextWith {
        text: "Hi!".into(),
        input: 9,
        output: 3,
        stop: "stop".into(),
    }]);
    let extra = format!(
        "{}\n[models.default]\ntargets = [\"openai:gpt-4o-mini\"]\nmax_tokens = 50\nsystem_prompt = \"Be brief.\"\n",
        provider_toml("openai", "openai", &up)
    );
    let app = spawn_app_with_env(&extra, &upstream_env()).await;
    let r = app
        .client
        .post(app.url("/api/v1/chat"))
        .bearer_auth(KEY)
        .header("x-request-id", "trace-123")
        .json(&json!({"messages": say("Hello"), "max_tokens": 200, "temperature": 0.2, "user": "u-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["message"]["content"], "Hi!");
    assert_eq!(v["provider"], "openai");
    assert_eq!(v["provider_model"], "gpt-4o-mini");
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 9, "output_tokens": 3, "cost_usd": 0.0})
    );

    let sent = &up.requests()[0];
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(
        sent.headers["authorization"],
        format!("Bearer {UPSTREAM_KEY}").as_str()
    );
    assert_eq!(sent.headers["x-request-id"], "trace-123");
    assert_eq!(sent.body["model"], "gpt-4o-mini");
    assert_eq!(
        sent.body["max_tokens"], 50,
        "the model's cap lowers the client's value"
    );
    assert_eq!(sent.body["temperature"], 0.2);
    assert_eq!(sent.body["user"], "u-1");
    assert_eq!(sent.body["stream"], false);
    assert_eq!(
        sent.body["messages"],
        json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}])
    );
}

#[tokio::test]
async fn anthropic_upstream_gets_system_field_max_tokens_and_headers() {
    let up = Upstream::anthropic().await;
    up.push([Reply::TextWith {
        text: "Bonjour".into(),
        input: 11,
        output: 2,
        stop: "max_tokens".into(),
    }]);
    let extra = format!(
        "{}\n[models.default]\ntargets = [\"claude:claude-haiku-4-5\"]\n",
        provider_toml("claude", "anthropic", &up)
    );
    let app = spawn_app_with_env(&extra, &upstream_env()).await;
    let messages = json!([{"role": "system", "content": "Speak French."}, {"role": "user", "content": "Hello"}]);
    let v: Value = app
        .chat(json!({"messages": messages}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["message"]["content"], "Bonjour");
    assert_eq!(v["finish_reason"], "length", "max_tokens maps to length");
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 11, "output_tokens": 2, "cost_usd": 0.0})
    );

    let sent = &up.requests()[0];
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.headers["x-api-key"], UPSTREAM_KEY);
    assert_eq!(sent.headers["anthropic-version"], "2023-06-01");
    assert!(sent.headers.get("authorization").is_none());
    assert_eq!(sent.body["system"], "Speak French.");
    assert_eq!(
        sent.body["messages"],
        json!([{"role": "user", "content": "Hello"}])
    );
    assert_eq!(
        sent.body["max_tokens"], 1024,
        "Anthropic requires max_tokens: 1024 without a cap"
    );

    // The OpenAI route maps Anthropic's stop reasons to OpenAI's.
    up.push([Reply::TextWith {
        text: "Salut".into(),
        input: 1,
        output: 1,
        stop: "end_turn".into(),
    }]);
    let v: Value = app
        .post(
            "/api/v1/chat/completions",
            &json!({"model": "default", "messages": say("hi")}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn native_stream_sends_deltas_then_done_for_both_providers() {
    for kind in ["openai", "anthropic"] {
        let up = if kind == "openai" {
            Upstream::openai().await
        } else {
            Upstream::anthropic().await
        };
        up.push([Reply::stream(&["Hel", "lo", " world"])]);
        let extra = format!(
            "{}\n[models.default]\ntargets = [\"p:m1\"]\n",
            provider_toml("p", kind, &up)
        );
        let app = spawn_app_with_env(&extra, &upstream_env()).await;
        let r = app
            .chat(json!({"messages": say("hi"), "stream": true}))
            .await;
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let events = parse_sse(&r.text().await.unwrap());
        assert_eq!(delta_text(&events), "Hello world", "{kind}");
        let done: Vec<_> = events
            .iter()
            .filter(|e| e.event.as_deref() == Some("done"))
            .collect();
        assert_eq!(done.len(), 1, "{kind}");
        let done: Value = serde_json::from_str(&done[0].data).unwrap();
        assert_eq!(done["finish_reason"], "stop", "{kind}");
        assert_eq!(done["provider"], "p");
        assert_eq!(done["usage"]["input_tokens"], 5, "{kind}");
        assert_eq!(done["usage"]["output_tokens"], 3, "{kind}");
        assert!(done.get("message").is_none());
        assert_eq!(up.requests()[0].body["stream"], true);
        assert_eq!(events.last().unwrap().event.as_deref(), Some("done"));
    }
}

#[tokio::test]
async fn models_lists_configured_names_openai_style() {
    let app = spawn_app("[models.fast]\ntargets = [\"mock:echo\"]\n").await;
    let r = app
        .client
        .get(app.url("/api/v1/models"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["default", "fast"]);
    for m in v["data"].as_array().unwrap() {
        assert_eq!(m["object"], "model");
        assert!(m["created"].as_u64().unwrap() > 1_600_000_000);
        assert_eq!(m["owned_by"], "chatgate");
    }
}

#[tokio::test]
async fn health_and_readiness_answer_without_a_key() {
    let app = spawn_app("").await;
    let r = app.get("/health").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": "ok"}));
    let r = app.get("/health/ready").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ready");
}
