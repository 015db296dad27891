//! `POST /api/v1/messages` over real HTTP: the Messages request as each
//! target kind receives it, answers and streams in Anthropic's shapes (event
//! order, block indices, `input_json_delta` pieces that join to JSON), and
//! every error of the route, the middleware's included, in Anthropic's shape
//! with `request-id`.

use crate::support::upstream::{chunk_frame, data_frame};
use crate::support::*;
use serde_json::{Value, json};

async fn app_on(kind: &str, up: &Upstream, extra: &str) -> TestApp {
    let toml = format!(
        "{}\n[models.default]\ntargets = [\"p:m1\"]\n{extra}",
        provider_toml("p", kind, up)
    );
    spawn_app_with_env(&toml, &upstream_env()).await
}

async fn messages(app: &TestApp, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(app.url("/api/v1/messages"))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap()
}

/// A conversation with every block kind: a tool turn of two parallel calls
/// (one failed), images of both sources, system blocks, tools, sampling fields.
fn full_request() -> Value {
    json!({
        "model": "default", "max_tokens": 300,
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "What is in these?"},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
            ]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Lisbon"}},
                {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {"city": "Mars"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": true,
                 "content": [{"type": "text", "text": "no such city"}]}
            ]}
        ],
        "tools": [{"name": "weather", "description": "Weather in a city",
                   "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "stop_sequences": ["END"], "temperature": 0.3, "top_p": 0.9, "top_k": 40,
        "metadata": {"user_id": "u-7"},
        "thinking": {"type": "disabled"}
    })
}

#[tokio::test]
async fn an_anthropic_target_receives_the_messages_request_faithfully() {
    let up = Upstream::anthropic().await;
    let app = app_on("anthropic", &up, "").await;
    assert_eq!(messages(&app, &full_request()).await.status(), 200);
    let sent = &up.requests()[0].body;
    let mut expected = full_request();
    expected["model"] = json!("m1");
    expected["stream"] = json!(false);
    // System text blocks are joined into the one system string.
    expected["system"] = json!("Be brief.");
    assert_eq!(sent, &expected);
}

#[tokio::test]
async fn an_openai_target_receives_the_messages_request_translated() {
    let up = Upstream::openai().await;
    let app = app_on("openai", &up, "").await;
    assert_eq!(messages(&app, &full_request()).await.status(), 200);
    let sent = &up.requests()[0].body;
    assert_eq!(
        sent["messages"],
        json!([
            {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in these?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
            ]},
            {"role": "assistant", "content": [{"type": "text", "text": "Checking."}], "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Lisbon\"}"}},
                {"id": "toolu_2", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Mars\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": "no such city"}]}
        ])
    );
    assert_eq!(
        sent["tools"],
        json!([{"type": "function", "function": {"name": "weather", "description": "Weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
    );
    assert_eq!(sent["tool_choice"], "required");
    assert_eq!(sent["parallel_tool_calls"], false);
    assert_eq!(sent["stop"], json!(["END"]));
    assert_eq!(sent["max_tokens"], 300);
    assert_eq!(sent["temperature"], 0.3);
    assert_eq!(sent["top_p"], 0.9);
    assert_eq!(sent["user"], "u-7");
    for dropped in ["top_k", "thinking", "metadata", "system", "stop_sequences"] {
        assert!(sent.get(dropped).is_none(), "{dropped} in {sent}");
    }
}

#[tokio::test]
async fn a_whole_answer_has_anthropics_shape_with_tool_use_input_as_an_object() {
    let up = Upstream::openai().await;
    up.push([Reply::tool_calls(&[(
        "call_1",
        "weather",
        r#"{"city":"Lisbon"}"#,
    )])]);
    let app = app_on("openai", &up, "").await;
    let body = json!({"model": "default", "max_tokens": 50,
                      "messages": [{"role": "user", "content": "weather?"}]});
    let response = messages(&app, &body).await;
    assert_eq!(response.status(), 200);
    let id = response.headers()["x-request-id"].clone();
    assert_eq!(response.headers()["request-id"], id);
    let v: Value = response.json().await.unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("msg_"), "{v}");
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "default");
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(v["stop_sequence"], Value::Null);
    let content = v["content"].as_array().unwrap();
    assert_eq!(
        content.last().unwrap(),
        &json!({"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Lisbon"}})
    );
    assert!(v["usage"]["input_tokens"].is_u64() && v["usage"]["output_tokens"].is_u64());
}

#[tokio::test]
async fn an_anthropic_stop_sequence_comes_back_with_the_sequence() {
    let up = Upstream::anthropic().await;
    up.push([Reply::Status {
        code: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: json!({"id": "m", "type": "message", "role": "assistant", "model": "m1",
                     "content": [{"type": "text", "text": "one two"}], "stop_reason": "stop_sequence",
                     "stop_sequence": "END", "usage": {"input_tokens": 3, "output_tokens": 2}})
        .to_string(),
    }]);
    let app = app_on("anthropic", &up, "").await;
    let body = json!({"max_tokens": 50, "stop_sequences": ["END"],
                      "messages": [{"role": "user", "content": "count"}]});
    let v: Value = messages(&app, &body).await.json().await.unwrap();
    assert_eq!(v["stop_reason"], "stop_sequence");
    assert_eq!(v["stop_sequence"], "END");
    assert_eq!(v["usage"], json!({"input_tokens": 3, "output_tokens": 2}));
}

/// Text, then two tool calls whose argument pieces interleave (OpenAI's way).
fn interleaved() -> Reply {
    let piece = |index: u32, head: Option<(&str, &str)>, args: &str| {
        let mut c = json!({"index": index, "function": {"arguments": args}});
        if let Some((id, name)) = head {
            c["id"] = json!(id);
            c["function"]["name"] = json!(name);
        }
        json!({"tool_calls": [c]})
    };
    Reply::Frames(vec![
        chunk_frame(json!({"content": "Let me "}), Value::Null),
        chunk_frame(json!({"content": "check."}), Value::Null),
        chunk_frame(piece(0, Some(("call_w", "weather")), "{\"ci"), Value::Null),
        chunk_frame(piece(1, Some(("call_t", "time")), "{\"tz\":"), Value::Null),
        chunk_frame(piece(0, None, "ty\":\"Lisbon\"}"), Value::Null),
        chunk_frame(piece(1, None, "\"UTC\"}"), Value::Null),
        chunk_frame(json!({}), json!("tool_calls")),
        data_frame(
            &json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt",
                    "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 11, "total_tokens": 18}}),
        ),
        "data: [DONE]\n\n".into(),
    ])
}

#[tokio::test]
async fn a_stream_has_the_six_event_types_in_order_with_one_block_at_a_time() {
    let up = Upstream::openai().await;
    up.push([interleaved()]);
    let app = app_on("openai", &up, "").await;
    let body = json!({"max_tokens": 50, "stream": true,
                      "messages": [{"role": "user", "content": "weather and time?"}]});
    let response = messages(&app, &body).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("request-id"));
    let events = parse_sse(&response.text().await.unwrap());
    let data: Vec<Value> = events
        .iter()
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect();
    for (e, d) in events.iter().zip(&data) {
        assert_eq!(
            e.event.as_deref(),
            d["type"].as_str(),
            "event name is the type"
        );
    }
    let kinds: Vec<&str> = data.iter().map(|d| d["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            // The second call waited while the first was open: sent whole.
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let start = &data[0]["message"];
    assert!(start["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(start["content"], json!([]));
    assert_eq!(start["stop_reason"], Value::Null);
    // Each block's index; a block's deltas and stop carry its index.
    let mut text = String::new();
    let mut inputs: Vec<String> = vec![String::new(); 3];
    let mut open = None;
    for d in &data {
        match d["type"].as_str().unwrap() {
            "content_block_start" => {
                let i = d["index"].as_u64().unwrap();
                assert_eq!(open, None, "one block at a time");
                open = Some(i);
            }
            "content_block_delta" => {
                assert_eq!(open, d["index"].as_u64());
                match d["delta"]["type"].as_str().unwrap() {
                    "text_delta" => text.push_str(d["delta"]["text"].as_str().unwrap()),
                    "input_json_delta" => inputs[d["index"].as_u64().unwrap() as usize]
                        .push_str(d["delta"]["partial_json"].as_str().unwrap()),
                    other => panic!("{other}"),
                }
            }
            "content_block_stop" => {
                assert_eq!(open, d["index"].as_u64());
                open = None;
            }
            _ => {}
        }
    }
    assert_eq!(text, "Let me check.");
    let starts: Vec<&Value> = data
        .iter()
        .filter(|d| d["type"] == "content_block_start")
        .collect();
    assert_eq!(
        starts
            .iter()
            .map(|d| d["index"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert_eq!(
        starts[0]["content_block"],
        json!({"type": "text", "text": ""})
    );
    assert_eq!(
        starts[1]["content_block"],
        json!({"type": "tool_use", "id": "call_w", "name": "weather", "input": {}})
    );
    assert_eq!(starts[2]["content_block"]["id"], "call_t");
    let parsed = |s: &str| serde_json::from_str::<Value>(s).unwrap();
    assert_eq!(parsed(&inputs[1]), json!({"city": "Lisbon"}));
    assert_eq!(parsed(&inputs[2]), json!({"tz": "UTC"}));
    let delta = &data[data.len() - 2];
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(delta["delta"]["stop_sequence"], Value::Null);
    assert_eq!(delta["usage"]["output_tokens"], 11);
    assert_eq!(delta["usage"]["input_tokens"], 7);
}

#[tokio::test]
async fn a_stream_that_breaks_after_the_start_ends_with_an_anthropic_error_event() {
    let up = Upstream::anthropic().await;
    up.push([Reply::BrokenStream(vec!["partial".into()])]);
    let app = app_on("anthropic", &up, "").await;
    let body = json!({"max_tokens": 50, "stream": true,
                      "messages": [{"role": "user", "content": "hi"}]});
    let events = parse_sse(&messages(&app, &body).await.text().await.unwrap());
    let last = events.last().unwrap();
    assert_eq!(last.event.as_deref(), Some("error"));
    let v: Value = serde_json::from_str(&last.data).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "api_error");
    assert!(v["error"]["message"].is_string());
    assert!(
        events
            .iter()
            .all(|e| e.event.as_deref() != Some("message_stop"))
    );
}

async fn expect_error(response: reqwest::Response, status: u16, kind: &str) -> Value {
    assert_eq!(response.status(), status);
    let id = response.headers()["x-request-id"].clone();
    assert_eq!(response.headers()["request-id"], id, "request-id on errors");
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], kind, "{v}");
    assert!(v["error"]["message"].is_string());
    assert_eq!(v["request_id"], id.to_str().unwrap());
    v
}

#[tokio::test]
async fn every_error_on_the_messages_route_has_anthropics_shape() {
    let up = Upstream::anthropic().await;
    let app = app_on(
        "anthropic",
        &up,
        "[server]\nmax_body_bytes = 2048\n[auth.keys.test]\nrequests_per_minute = 1\nburst = 6\n",
    )
    .await;
    let ok = json!({"max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let url = app.url("/api/v1/messages");
    let client = reqwest::Client::new();

    // The guards': no key, a wrong key.
    let r = client.post(&url).json(&ok).send().await.unwrap();
    expect_error(r, 401, "authentication_error").await;
    let r = client
        .post(&url)
        .header("x-api-key", "wrong")
        .json(&ok)
        .send()
        .await
        .unwrap();
    expect_error(r, 401, "authentication_error").await;
    // The extractor's and the body limit's.
    let r = client
        .post(&url)
        .header("x-api-key", KEY)
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .await
        .unwrap();
    expect_error(r, 415, "invalid_request_error").await;
    let big =
        json!({"max_tokens": 10, "messages": [{"role": "user", "content": "x".repeat(4096)}]});
    expect_error(messages(&app, &big).await, 413, "request_too_large").await;
    // The handler's.
    let unknown =
        json!({"model": "nope", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let v = expect_error(messages(&app, &unknown).await, 404, "not_found_error").await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/api/v1/models")
    );
    let no_max = json!({"messages": [{"role": "user", "content": "hi"}]});
    let v = expect_error(messages(&app, &no_max).await, 400, "invalid_request_error").await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_tokens")
    );
    let cache = json!({"max_tokens": 10, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}]});
    let v = expect_error(messages(&app, &cache).await, 400, "invalid_request_error").await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("messages[0].content[0].cache_control"),
        "{v}"
    );
    assert_eq!(up.calls(), 0, "none of these reached the upstream");
    // The per-key limit, once its burst is spent.
    let mut limited = None;
    for _ in 0..8 {
        let r = messages(&app, &ok).await;
        if r.status() == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("the per-key limit refuses");
    assert!(r.headers().contains_key("retry-after"));
    expect_error(r, 429, "rate_limit_error").await;

    // An Anthropic SDK with the wrong base URL hits /v1/messages: a 404 it can read, with the hint.
    let r = client
        .post(app.url("/v1/messages"))
        .json(&ok)
        .send()
        .await
        .unwrap();
    let v = expect_error(r, 404, "not_found_error").await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/api/v1/messages")
    );
    // Other routes keep the contract's shape.
    let r = client
        .post(app.url("/api/v1/chat"))
        .json(&ok)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "unauthorized");
}
