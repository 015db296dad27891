//! Finish reasons, mapped once by each provider: native answers say `stop`,
//! `length` or the provider's own word; the OpenAI route says OpenAI's word.

use crate::support::*;
use serde_json::{Value, json};

/// The native and the OpenAI-route finish reason for an upstream answer ending with `word`.
async fn finish_words(kind: &str, word: &str) -> (String, String) {
    let up = if kind == "openai" {
        Upstream::openai().await
    } else {
        Upstream::anthropic().await
    };
    // The last scripted reply repeats: both chats get it.
    up.push([Reply::TextWith {
        text: "x".into(),
        input: 1,
        output: 1,
        stop: word.into(),
    }]);
    let extra = format!(
        "{}\n[models.default]\ntargets = [\"p:m\"]\n",
        provider_toml("p", kind, &up)
    );
    let app = spawn_app_with_env(&extra, &upstream_env()).await;
    let native: Value = app
        .chat(json!({"messages": say("hi")}))
        .await
        .json()
        .await
        .unwrap();
    let openai: Value = app
        .post("/api/v1/chat/completions", &json!({"messages": say("hi")}))
        .await
        .json()
        .await
        .unwrap();
    (
        native["finish_reason"].as_str().unwrap().to_owned(),
        openai["choices"][0]["finish_reason"]
            .as_str()
            .unwrap()
            .to_owned(),
    )
}

#[tokio::test]
async fn each_providers_words_map_to_native_and_openai_finish_reasons() {
    let cases = [
        ("openai", "stop", "stop", "stop"),
        ("openai", "length", "length", "length"),
        ("openai", "tool_calls", "tool_calls", "tool_calls"),
        (
            "openai",
            "content_filter",
            "content_filter",
            "content_filter",
        ),
        ("anthropic", "end_turn", "stop", "stop"),
        ("anthropic", "stop_sequence", "stop", "stop"),
        ("anthropic", "max_tokens", "length", "length"),
        ("anthropic", "tool_use", "tool_use", "tool_calls"),
        ("anthropic", "refusal", "refusal", "content_filter"),
        ("anthropic", "pause_turn", "pause_turn", "stop"),
    ];
    for (kind, word, native, openai) in cases {
        assert_eq!(
            finish_words(kind, word).await,
            (native.to_owned(), openai.to_owned()),
            "{kind} {word}"
        );
    }
}

#[tokio::test]
async fn an_unknown_finish_word_is_cut_to_64_characters_on_the_native_route() {
    let long = "w".repeat(5000);
    let (native, openai) = finish_words("openai", &long).await;
    assert_eq!(native, "w".repeat(64));
    assert_eq!(openai, "stop");
}
