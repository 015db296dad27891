//! The whole Chat Completions request on the OpenAI route: every field an
//! OpenAI-kind target gets unchanged, tools and images translated for
//! Anthropic, tool calls and extra answer fields back (whole and streamed,
//! from both kinds), capability skipping, errors' `type` and `param`,
//! `GET /models/{id}`, and CORS for the JS SDKs' headers.

use crate::support::upstream::{data_frame, event_frame, openai_extras, tool_call_piece};
use crate::support::*;
use serde_json::{Value, json};

/// An app whose `default` model is served by `up` (of `kind`) alone.
async fn app_on(kind: &str, up: &Upstream) -> TestApp {
    let extra = format!(
        "{}\n[models.default]\ntargets = [\"p:m1\"]\nmax_tokens = 100\n",
        provider_toml("p", kind, up)
    );
    spawn_app_with_env(&extra, &upstream_env()).await
}

async fn completions(app: &TestApp, body: Value) -> reqwest::Response {
    app.post("/api/v1/chat/completions", &body).await
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {"name": "weather", "description": "Weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
           "strict": true}})
}

/// A conversation replaying a tool turn, with an image of each kind.
fn tool_turn() -> Value {
    json!([
        {"role": "user", "content": [
            {"type": "text", "text": "What is in these?"},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
        ]},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Lisbon\"}"}}
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "user", "content": "thanks"}
    ])
}

#[tokio::test]
async fn an_openai_target_receives_every_field_it_does_not_own_unchanged() {
    let up = Upstream::openai().await;
    let app = app_on("openai", &up).await;
    let passed = json!({
        "seed": 42, "frequency_penalty": 0.5, "presence_penalty": -0.5,
        "logit_bias": {"50256": -100}, "response_format": {"type": "json_schema", "json_schema":
            {"name": "answer", "schema": {"type": "object"}, "strict": true}},
        "logprobs": true, "top_logprobs": 2, "metadata": {"team": "web"},
        "parallel_tool_calls": false, "tool_choice": {"type": "function", "function": {"name": "weather"}},
        "tools": [weather_tool()], "reasoning_effort": "low", "prediction": {"type": "content", "content": "x"},
        "some_future_field": {"nested": [1, 2.5, null, "s"]}, "user": "u-9",
    });
    let mut body = passed.clone();
    body["model"] = json!("default");
    body["messages"] = tool_turn();
    body["max_completion_tokens"] = json!(500);
    body["stop"] = json!("END");
    body["stream_options"] = json!({"include_usage": false, "include_obfuscation": false});
    up.push([Reply::text("ok")]);
    assert_eq!(completions(&app, body.clone()).await.status(), 200);
    up.push([Reply::stream(&["o", "k"])]);
    body["stream"] = json!(true);
    let r = completions(&app, body).await;
    assert_eq!(r.status(), 200);
    r.text().await.unwrap();

    for (i, sent) in up.requests().iter().enumerate() {
        let sent = &sent.body;
        for (field, value) in passed.as_object().unwrap() {
            assert_eq!(&sent[field], value, "{field} (request {i})");
        }
        assert_eq!(sent["model"], "m1");
        assert_eq!(
            sent["max_completion_tokens"], 100,
            "capped, under the client's own name"
        );
        assert!(sent.get("max_tokens").is_none(), "{sent}");
        assert_eq!(sent["stop"], json!(["END"]));
        assert_eq!(
            sent["messages"],
            json!([
                {"role": "user", "content": [
                    {"type": "text", "text": "What is in these?"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Lisbon\"}"}}
                ]},
                {"role": "tool", "content": "sunny", "tool_call_id": "call_1"},
                {"role": "user", "content": "thanks"}
            ])
        );
    }
    let streamed = &up.requests()[1].body;
    assert_eq!(
        streamed["stream_options"],
        json!({"include_usage": true, "include_obfuscation": false}),
        "chatgate needs usage upstream; the client's other options ride along"
    );
    assert!(up.requests()[0].body.get("stream_options").is_none());
}

#[tokio::test]
async fn an_anthropic_target_receives_tools_tool_choice_and_images_translated() {
    let up = Upstream::anthropic().await;
    let app = app_on("anthropic", &up).await;
    let body = |choice: Value, parallel: Value| {
        json!({"messages": tool_turn(), "tools": [weather_tool()], "tool_choice": choice,
               "parallel_tool_calls": parallel, "stop": "END", "seed": 7, "presence_penalty": 1,
               "logit_bias": {"1": 2}, "metadata": {"a": "b"}, "user": "u-1", "reasoning_effort": "low"})
    };
    for (choice, parallel) in [
        (json!("auto"), json!(null)),
        (json!("required"), json!(false)),
        (
            json!({"type": "function", "function": {"name": "weather"}}),
            json!(null),
        ),
        (json!("none"), json!(null)),
    ] {
        assert_eq!(
            completions(&app, body(choice, parallel)).await.status(),
            200
        );
    }
    let sent: Vec<Value> = up.requests().into_iter().map(|r| r.body).collect();
    let tool = json!([{"name": "weather", "description": "Weather in a city",
                       "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]);
    assert_eq!(sent[0]["tools"], tool);
    assert_eq!(sent[0]["tool_choice"], json!({"type": "auto"}));
    assert_eq!(
        sent[1]["tool_choice"],
        json!({"type": "any", "disable_parallel_tool_use": true})
    );
    assert_eq!(
        sent[2]["tool_choice"],
        json!({"type": "tool", "name": "weather"})
    );
    assert!(
        sent[3].get("tools").is_none() && sent[3].get("tool_choice").is_none(),
        "none sends no tools: {}",
        sent[3]
    );
    for s in &sent {
        assert_eq!(s["stop_sequences"], json!(["END"]));
        assert_eq!(s["metadata"], json!({"user_id": "u-1"}));
        for dropped in [
            "seed",
            "presence_penalty",
            "logit_bias",
            "reasoning_effort",
            "stop",
            "parallel_tool_calls",
        ] {
            assert!(s.get(dropped).is_none(), "{dropped} in {s}");
        }
        assert_eq!(
            s["messages"],
            json!([
                {"role": "user", "content": [
                    {"type": "text", "text": "What is in these?"},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
                ]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Lisbon"}}
                ]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"}]},
                {"role": "user", "content": "thanks"}
            ])
        );
    }
}

#[tokio::test]
async fn tool_calls_and_the_upstreams_extra_answer_fields_come_back_from_openai() {
    let up = Upstream::openai().await;
    let app = app_on("openai", &up).await;
    up.push([Reply::tool_calls(&[
        ("call_a", "weather", r#"{"city":"Lisbon"}"#),
        ("call_b", "weather", r#"{"city":"Porto"}"#),
    ])]);
    let r = completions(
        &app,
        json!({"messages": say("weather?"), "tools": [weather_tool()], "logprobs": true}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let x = openai_extras();
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    assert_eq!(choice["message"]["refusal"], Value::Null);
    assert_eq!(choice["message"]["annotations"], json!([]));
    assert_eq!(
        choice["message"]["tool_calls"],
        json!([
            {"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Lisbon\"}"}},
            {"id": "call_b", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Porto\"}"}}
        ])
    );
    assert_eq!(choice["logprobs"], x["logprobs"]);
    assert_eq!(v["system_fingerprint"], "fp_test");
    assert_eq!(v["service_tier"], "default");
    assert_eq!(v["model"], "default", "ours, not the upstream's");
    assert_eq!(
        v["usage"]["prompt_tokens_details"],
        x["usage_details"]["prompt_tokens_details"]
    );
    assert_eq!(
        v["usage"]["completion_tokens_details"],
        x["usage_details"]["completion_tokens_details"]
    );
    assert_eq!(v["usage"]["total_tokens"], 24);
}

#[tokio::test]
async fn tool_use_blocks_from_anthropic_come_back_as_tool_calls() {
    let up = Upstream::anthropic().await;
    let app = app_on("anthropic", &up).await;
    up.push([Reply::tool_calls(&[(
        "toolu_1",
        "weather",
        r#"{"city":"Lisbon"}"#,
    )])]);
    let r = completions(
        &app,
        json!({"messages": say("weather?"), "tools": [weather_tool()]}),
    )
    .await;
    let v: Value = r.json().await.unwrap();
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], "Let me check.");
    assert_eq!(
        choice["message"]["tool_calls"],
        json!([{"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Lisbon\"}"}}])
    );
    assert_eq!(choice["logprobs"], Value::Null);
}

/// The chunks of an OpenAI-route stream, before `[DONE]`.
async fn chunks(r: reqwest::Response) -> Vec<Value> {
    assert_eq!(r.status(), 200);
    let events = parse_sse(&r.text().await.unwrap());
    assert_eq!(events.last().unwrap().data, "[DONE]");
    events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect()
}

/// Every `delta.tool_calls` piece, in order.
fn pieces(chunks: &[Value]) -> Vec<Value> {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .cloned()
        .collect()
}

/// Each call's (id, name, concatenated arguments), by index.
fn assembled(pieces: &[Value]) -> Vec<(String, String, String)> {
    let mut calls: Vec<(String, String, String)> = Vec::new();
    for p in pieces {
        let i = p["index"].as_u64().unwrap() as usize;
        if let Some(id) = p["id"].as_str() {
            assert_eq!(i, calls.len(), "a call's first piece comes in index order");
            assert_eq!(p["type"], "function", "{p}");
            calls.push((
                id.into(),
                p["function"]["name"].as_str().unwrap().into(),
                String::new(),
            ));
        } else {
            assert!(
                p.get("type").is_none() && p["function"].get("name").is_none(),
                "{p}"
            );
        }
        calls[i]
            .2
            .push_str(p["function"]["arguments"].as_str().unwrap());
    }
    calls
}

fn expected_calls() -> Vec<(String, String, String)> {
    vec![
        (
            "call_a".into(),
            "weather".into(),
            r#"{"city":"Lisbon"}"#.into(),
        ),
        ("call_b".into(), "time".into(), r#"{"tz":"UTC"}"#.into()),
    ]
}

fn finish_of(chunks: &[Value]) -> Vec<Value> {
    chunks
        .iter()
        .filter_map(|c| c["choices"].get(0).map(|c| c["finish_reason"].clone()))
        .collect()
}

#[tokio::test]
async fn two_interleaved_tool_calls_stream_from_openai_as_indexed_pieces() {
    let up = Upstream::openai().await;
    let app = app_on("openai", &up).await;
    let chunk = |delta: Value, finish: Value| {
        data_frame(
            &json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m1",
                           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
        )
    };
    up.push([Reply::Frames(vec![
        chunk(json!({"role": "assistant", "content": null}), Value::Null),
        chunk(tool_call_piece(0, Some(("call_a", "weather")), ""), Value::Null),
        chunk(tool_call_piece(1, Some(("call_b", "time")), "{\"tz\""), Value::Null),
        chunk(tool_call_piece(0, None, "{\"city\":"), Value::Null),
        chunk(tool_call_piece(1, None, ":\"UTC\"}"), Value::Null),
        chunk(tool_call_piece(0, None, "\"Lisbon\"}"), Value::Null),
        chunk(json!({}), json!("tool_calls")),
        data_frame(
            &json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m1", "choices": [],
                           "usage": {"prompt_tokens": 4, "completion_tokens": 9, "total_tokens": 13}}),
        ),
        "data: [DONE]\n\n".into(),
    ])]);
    let r = completions(
        &app,
        json!({"messages": say("both?"), "tools": [weather_tool()], "stream": true,
                      "stream_options": {"include_usage": true}}),
    )
    .await;
    let chunks = chunks(r).await;
    let pieces = pieces(&chunks);
    assert_eq!(pieces.len(), 5, "{pieces:?}");
    assert_eq!(assembled(&pieces), expected_calls());
    let finishes = finish_of(&chunks);
    assert_eq!(finishes.last().unwrap(), "tool_calls");
    assert!(finishes[..finishes.len() - 1].iter().all(Value::is_null));
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 9);
}

#[tokio::test]
async fn two_tool_use_blocks_stream_from_anthropic_as_indexed_pieces() {
    let up = Upstream::anthropic().await;
    let app = app_on("anthropic", &up).await;
    let delta = |index: u32, delta: Value| {
        event_frame(&json!({"type": "content_block_delta", "index": index, "delta": delta}))
    };
    let json_piece = |index: u32, s: &str| {
        delta(
            index,
            json!({"type": "input_json_delta", "partial_json": s}),
        )
    };
    let start_tool = |index: u32, id: &str, name: &str| {
        event_frame(&json!({"type": "content_block_start", "index": index,
                            "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}))
    };
    let stop = |index: u32| event_frame(&json!({"type": "content_block_stop", "index": index}));
    up.push([Reply::Frames(vec![
        event_frame(
            &json!({"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 6, "output_tokens": 1}}}),
        ),
        event_frame(
            &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        delta(0, json!({"type": "text_delta", "text": "Checking."})),
        stop(0),
        start_tool(1, "call_a", "weather"),
        json_piece(1, ""),
        json_piece(1, "{\"city\":"),
        json_piece(1, "\"Lisbon\"}"),
        stop(1),
        start_tool(2, "call_b", "time"),
        json_piece(2, "{\"tz\":\"UTC\"}"),
        stop(2),
        event_frame(
            &json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 20}}),
        ),
        event_frame(&json!({"type": "message_stop"})),
    ])]);
    let r = completions(
        &app,
        json!({"messages": say("both?"), "tools": [weather_tool()], "stream": true}),
    )
    .await;
    let chunks = chunks(r).await;
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Checking.");
    let pieces = pieces(&chunks);
    assert_eq!(
        pieces[0],
        json!({"index": 0, "id": "call_a", "type": "function", "function": {"name": "weather", "arguments": ""}})
    );
    assert_eq!(
        assembled(&pieces),
        expected_calls(),
        "tool indexes count tool_use blocks only"
    );
    assert_eq!(finish_of(&chunks).last().unwrap(), "tool_calls");
}

/// A model on an Anthropic target first and an OpenAI one second, with
/// circuits that open after one failed request.
async fn anthropic_then_openai(claude: &Upstream, gpt: &Upstream) -> TestApp {
    let toml = format!(
        "{}{}\n[models.default]\ntargets = [\"claude:c1\", \"gpt:g1\"]\n",
        Provider::new("claude", "anthropic", claude).circuit(1, "60s"),
        Provider::openai("gpt", gpt).circuit(1, "60s"),
    );
    spawn_app_with_env(&toml, &upstream_env()).await
}

#[tokio::test]
async fn a_target_that_cannot_serve_a_feature_is_skipped_without_counting_as_a_failure() {
    let (claude, gpt) = (Upstream::anthropic().await, Upstream::openai().await);
    let app = anthropic_then_openai(&claude, &gpt).await;
    for feature in [
        json!({"response_format": {"type": "json_object"}}),
        json!({"n": 2}),
        json!({"logprobs": true}),
    ] {
        let mut body = feature.clone();
        body["messages"] = say("hi");
        let r = completions(&app, body).await;
        if feature.get("n").is_some() {
            // No kind answers more than one choice yet: nobody is left.
            let (_, e) = error_of(r, 400, "unsupported_feature").await;
            assert_eq!(e["param"], "n");
            continue;
        }
        assert_eq!(r.status(), 200, "{feature}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "default answer");
    }
    assert_eq!(claude.calls(), 0, "a skipped target gets no attempt");
    assert_eq!(gpt.calls(), 2);
    let metrics = app.metrics().await;
    assert_eq!(
        prometheus::series(
            &metrics,
            "chatgate_fallbacks_total",
            &[("model", "default")]
        ),
        None,
        "a skip is not a fallback"
    );
    // The circuit (threshold 1) is still closed: a plain chat goes to claude.
    let r = app.chat(json!({"messages": say("hi")})).await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["provider"], "claude");
    assert_eq!(claude.calls(), 1);
}

#[tokio::test]
async fn with_no_target_able_to_serve_a_feature_the_answer_is_400_unsupported_feature() {
    let claude = Upstream::anthropic().await;
    let app = app_on("anthropic", &claude).await;
    for (body, param) in [
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}),
            "response_format",
        ),
        (json!({"top_logprobs": 3, "logprobs": true}), "logprobs"),
    ] {
        let mut body = body;
        body["messages"] = say("hi");
        let (_, e) = error_of(completions(&app, body).await, 400, "unsupported_feature").await;
        assert_eq!(e["param"], param);
        assert_eq!(e["type"], "invalid_request_error");
    }
    assert_eq!(claude.calls(), 0);
    // The mock echoes text: tools and images are beyond it.
    let app = spawn_app("").await;
    let r = completions(
        &app,
        json!({"messages": say("hi"), "tools": [weather_tool()]}),
    )
    .await;
    let (_, e) = error_of(r, 400, "unsupported_feature").await;
    assert_eq!(e["param"], "tools");
    assert!(e["message"].as_str().unwrap().contains("tools"), "{e}");
}

#[tokio::test]
async fn errors_carry_openais_type_and_the_offending_param() {
    let app = spawn_app("").await;
    let cases = [
        (
            json!({"messages": say("hi"), "temperature": "hot"}),
            "temperature",
        ),
        (
            json!({"messages": say("hi"), "temperature": 3}),
            "temperature",
        ),
        (json!({"messages": say("hi"), "seed": 1.5}), "seed"),
        (json!({"messages": say("hi"), "stop": [1]}), "stop"),
        (
            json!({"messages": say("hi"), "tools": [{"type": "function", "function": {}}]}),
            "tools[0].function.name",
        ),
        (
            json!({"messages": say("hi"), "tool_choice": "sometimes"}),
            "tool_choice",
        ),
        (
            json!({"messages": [{"role": "user", "content": "a"}, {"role": "wizard", "content": "b"}]}),
            "messages[1].role",
        ),
        (
            json!({"messages": [{"role": "tool", "content": "r"}]}),
            "messages[0].tool_call_id",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,AAAA"}}]}]}),
            "messages[0].content[0].image_url.url",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,not base64!"}}]}]}),
            "messages[0].content[0].image_url.url",
        ),
        (json!({"messages": []}), "messages"),
    ];
    for (body, param) in cases {
        let (_, e) = error_of(
            completions(&app, body.clone()).await,
            400,
            "invalid_request",
        )
        .await;
        assert_eq!(e["param"], param, "{body}");
        assert_eq!(e["type"], "invalid_request_error");
    }
    // The native route too, and errors without a field to blame.
    let (_, e) = error_of(
        app.chat(json!({"messages": say("hi"), "temperature": 9}))
            .await,
        400,
        "invalid_request",
    )
    .await;
    assert_eq!(e["param"], "temperature");
    let r = app
        .client
        .post(app.url("/api/v1/chat"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let (_, e) = error_of(r, 401, "unauthorized").await;
    assert_eq!(e["type"], "authentication_error");
    assert_eq!(e["param"], Value::Null);
    let (_, e) = error_of(app.get("/nope").await, 404, "not_found").await;
    assert_eq!(e["type"], "invalid_request_error");
    let r = completions(&app, json!({"model": "nope", "messages": say("hi")})).await;
    let (_, e) = error_of(r, 404, "model_not_found").await;
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("GET /api/v1/models"),
        "{e}"
    );
}

#[tokio::test]
async fn an_sse_error_event_carries_type_and_param_too() {
    let up = Upstream::openai().await;
    let app = app_on("openai", &up).await;
    up.push([Reply::BrokenStream(vec!["a".into()])]);
    let r = app
        .chat(json!({"messages": say("hi"), "stream": true}))
        .await;
    let events = parse_sse(&r.text().await.unwrap());
    let error = events
        .iter()
        .find(|e| e.event.as_deref() == Some("error"))
        .unwrap();
    let v: Value = serde_json::from_str(&error.data).unwrap();
    assert_eq!(v["error"]["type"], "api_error");
    assert_eq!(v["error"]["param"], Value::Null);
}

#[tokio::test]
async fn models_retrieve_answers_one_model_or_404_model_not_found() {
    let app = spawn_app("[models.fast]\ntargets = [\"mock:echo\"]\n").await;
    let get = |path: String| app.client.get(app.url(&path)).bearer_auth(KEY).send();
    let r = get("/api/v1/models/fast".into()).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["id"], "fast");
    assert_eq!(v["object"], "model");
    assert_eq!(v["owned_by"], "chatgate");
    assert!(v["created"].as_u64().unwrap() > 0);
    let long = "x".repeat(500);
    let r = get(format!("/api/v1/models/{long}")).await.unwrap();
    let (_, e) = error_of(r, 404, "model_not_found").await;
    let message = e["message"].as_str().unwrap();
    assert!(message.contains("GET /api/v1/models"), "{message}");
    assert!(
        message.chars().filter(|c| *c == 'x').count() <= 64,
        "{message}"
    );
    let r = app
        .client
        .get(app.url("/api/v1/models/fast"))
        .send()
        .await
        .unwrap();
    error_of(r, 401, "unauthorized").await;
}

#[tokio::test]
async fn a_cors_preflight_allows_the_js_sdks_stainless_headers() {
    const ORIGIN: &str = "https://app.example.com";
    let app = spawn_app(&format!(
        "[server]\ncors_allowed_origins = [\"{ORIGIN}\"]\n"
    ))
    .await;
    let asked =
        "authorization,content-type,x-stainless-os,x-stainless-lang,x-stainless-retry-count";
    let r = app
        .client
        .request(
            reqwest::Method::OPTIONS,
            app.url("/api/v1/chat/completions"),
        )
        .header("origin", ORIGIN)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", asked)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(r.headers()["access-control-allow-origin"], ORIGIN);
    let allowed = r.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for header in asked.split(',') {
        assert!(allowed.contains(header), "{header} not in {allowed}");
    }
    let r = app
        .client
        .post(app.url("/api/v1/chat/completions"))
        .header("origin", ORIGIN)
        .bearer_auth(KEY)
        .json(&json!({"messages": say("hi")}))
        .send()
        .await
        .unwrap();
    let exposed = r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for header in ["x-request-id", "retry-after", "x-chatgate-degraded"] {
        assert!(exposed.contains(header), "{header} not in {exposed}");
    }
}

#[tokio::test]
async fn a_messages_name_and_other_fields_reach_an_openai_target_and_not_anthropic() {
    let body = json!({"model": "default", "messages": [
        {"role": "user", "name": "alice", "content": "hi", "x_future": 1}
    ]});
    let up = Upstream::openai().await;
    let app = app_on("openai", &up).await;
    assert_eq!(completions(&app, body.clone()).await.status(), 200);
    assert_eq!(
        up.requests()[0].body["messages"][0],
        json!({"role": "user", "name": "alice", "content": "hi", "x_future": 1})
    );
    let up = Upstream::anthropic().await;
    let app = app_on("anthropic", &up).await;
    assert_eq!(completions(&app, body).await.status(), 200);
    assert_eq!(
        up.requests()[0].body["messages"][0],
        json!({"role": "user", "content": "hi"})
    );
}

#[tokio::test]
async fn streamed_logprobs_and_system_fingerprint_reach_the_client_and_ours_stay_ours() {
    let up = Upstream::openai().await;
    let app = app_on("openai", &up).await;
    let logprobs = |token: &str| json!({"content": [{"token": token, "logprob": -0.25, "bytes": null, "top_logprobs": []}]});
    let chunk = |delta: Value, lp: Value, finish: Value| {
        data_frame(
            &json!({"id": "upstream-id", "object": "chat.completion.chunk", "created": 1,
                           "model": "m1", "system_fingerprint": "fp_123",
                           "choices": [{"index": 0, "delta": delta, "logprobs": lp, "finish_reason": finish}]}),
        )
    };
    up.push([Reply::Frames(vec![
        chunk(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
            Value::Null,
        ),
        chunk(json!({"content": "Hel"}), logprobs("Hel"), Value::Null),
        chunk(json!({"content": "lo"}), logprobs("lo"), Value::Null),
        chunk(json!({}), Value::Null, json!("stop")),
        "data: [DONE]\n\n".into(),
    ])]);
    let r = completions(
        &app,
        json!({"messages": say("hi"), "stream": true, "logprobs": true}),
    )
    .await;
    let chunks = chunks(r).await;
    let tokens: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["logprobs"]["content"][0]["token"].as_str())
        .collect();
    assert_eq!(tokens, ["Hel", "lo"], "{chunks:?}");
    assert!(
        chunks.iter().any(|c| c["system_fingerprint"] == "fp_123"),
        "{chunks:?}"
    );
    let id = &chunks[0]["id"];
    assert!(
        chunks
            .iter()
            .all(|c| &c["id"] == id && c["id"] != "upstream-id"),
        "one id of ours on every chunk: {chunks:?}"
    );
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Hello");
}
