//! A scriptable upstream that speaks the OpenAI and Anthropic APIs over real
//! HTTP on 127.0.0.1:0, including their failures: statuses with Retry-After,
//! hangs, garbage bodies, streams that break mid-way or stream slowly.
//! Each request takes the next scripted reply; the last one repeats.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub enum Reply {
    /// 200 with a whole answer in the API's own format.
    Text(String),
    /// 200 with usage and stop reason chosen.
    TextWith {
        text: String,
        input: u32,
        output: u32,
        stop: String,
    },
    /// Any status, headers and body.
    Status {
        code: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// 200 with a body that is not JSON.
    Garbage,
    /// 200 JSON that breaks the API's shape.
    WrongShape,
    /// Never answers.
    Hang,
    /// 200 SSE stream of these deltas, completed properly.
    Stream(Vec<String>),
    /// 200 SSE stream of these deltas, then the connection breaks.
    BrokenStream(Vec<String>),
    /// 200 SSE stream with a pause before each delta.
    SlowStream(Vec<String>, Duration),
    /// The inner reply, after a pause (a slow upstream).
    Delayed(Duration, Box<Reply>),
    /// 200 SSE stream of these frames, verbatim (`data: …\n\n` or
    /// `event: …\ndata: …\n\n`): tool-call pieces, interleavings.
    Frames(Vec<String>),
    /// 200 with a whole answer of these tool calls `(id, name, arguments)` in
    /// the API's own format (OpenAI: `message.tool_calls`, `finish_reason:
    /// tool_calls`, plus logprobs, `system_fingerprint`, `service_tier`,
    /// usage details and annotations; Anthropic: `tool_use` blocks after a
    /// text block, `stop_reason: tool_use`).
    ToolCalls(Vec<(String, String, String)>),
}

impl Reply {
    pub fn text(t: &str) -> Self {
        Reply::Text(t.into())
    }
    pub fn status(code: u16) -> Self {
        Reply::Status {
            code,
            headers: vec![],
            body: format!(
                r#"{{"error":{{"message":"upstream says {code} SECRET-UPSTREAM-DETAIL","type":"server_error"}}}}"#
            ),
        }
    }
    pub fn status_with(code: u16, header: &str, value: &str) -> Self {
        let Reply::Status { body, .. } = Reply::status(code) else {
            unreachable!()
        };
        Reply::Status {
            code,
            headers: vec![(header.into(), value.into())],
            body,
        }
    }
    pub fn stream(words: &[&str]) -> Self {
        Reply::Stream(words.iter().map(|w| w.to_string()).collect())
    }
    pub fn tool_calls(calls: &[(&str, &str, &str)]) -> Self {
        Reply::ToolCalls(
            calls
                .iter()
                .map(|(i, n, a)| (i.to_string(), n.to_string(), a.to_string()))
                .collect(),
        )
    }
}

/// An OpenAI data-only SSE frame.
pub fn data_frame(v: &Value) -> String {
    format!("data: {v}\n\n")
}

/// One OpenAI stream chunk as a frame: `choices[0]` with this delta and
/// finish reason, from model `gpt`.
pub fn chunk_frame(delta: Value, finish: Value) -> String {
    data_frame(
        &json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt",
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
    )
}

/// A delta carrying one piece of streamed tool call `index`: the first piece
/// of a call has its head (id and function name), the rest only arguments.
pub fn tool_call_piece(index: u32, head: Option<(&str, &str)>, args: &str) -> Value {
    let mut call = json!({"index": index, "function": {"arguments": args}});
    if let Some((id, name)) = head {
        call["id"] = json!(id);
        call["type"] = json!("function");
        call["function"]["name"] = json!(name);
    }
    json!({"tool_calls": [call]})
}

/// An Anthropic SSE frame: the event name is the payload's `type`.
pub fn event_frame(v: &Value) -> String {
    format!("event: {}\ndata: {v}\n\n", v["type"].as_str().unwrap())
}

/// The extra answer fields the OpenAI-kind upstream adds to tool-call answers.
pub fn openai_extras() -> Value {
    json!({
        "system_fingerprint": "fp_test",
        "service_tier": "default",
        "logprobs": {"content": [{"token": "x", "logprob": -0.5, "bytes": [120], "top_logprobs": []}], "refusal": null},
        "annotations": [],
        "usage_details": {"prompt_tokens_details": {"cached_tokens": 3, "audio_tokens": 0},
                          "completion_tokens_details": {"reasoning_tokens": 2, "audio_tokens": 0,
                                                        "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}
    })
}

/// One request the upstream received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
    /// The body exactly as it arrived, for byte-for-byte comparisons.
    pub raw: String,
}

#[derive(Default)]
struct Script {
    replies: VecDeque<Reply>,
    last: Option<Reply>,
    received: Vec<Recorded>,
}

#[derive(Clone)]
struct Shared {
    script: Arc<Mutex<Script>>,
    cancelled: Arc<AtomicBool>,
    anthropic: bool,
}

pub struct Upstream {
    pub addr: SocketAddr,
    shared: Shared,
}

impl Upstream {
    /// An OpenAI-compatible upstream.
    pub async fn openai() -> Self {
        Self::start(false).await
    }

    /// An Anthropic Messages API upstream.
    pub async fn anthropic() -> Self {
        Self::start(true).await
    }

    async fn start(anthropic: bool) -> Self {
        let shared = Shared {
            script: Arc::default(),
            cancelled: Arc::default(),
            anthropic,
        };
        let app = Router::new()
            .route("/v1/chat/completions", post(handle))
            .route("/v1/messages", post(handle))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, shared }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Queues replies, in order.
    pub fn push(&self, replies: impl IntoIterator<Item = Reply>) -> &Self {
        self.shared.script.lock().unwrap().replies.extend(replies);
        self
    }

    pub fn calls(&self) -> usize {
        self.shared.script.lock().unwrap().received.len()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.script.lock().unwrap().received.clone()
    }

    /// Whether a slow stream was dropped by the gateway before it finished.
    pub fn stream_cancelled(&self) -> bool {
        self.shared.cancelled.load(Ordering::SeqCst)
    }
}

async fn handle(
    State(shared): State<Shared>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let raw = String::from_utf8_lossy(&body).into_owned();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let reply = {
        let mut s = shared.script.lock().unwrap();
        s.received.push(Recorded {
            path: uri.path().to_owned(),
            headers,
            body: body.clone(),
            raw,
        });
        let next = s
            .replies
            .pop_front()
            .or_else(|| s.last.clone())
            .unwrap_or(Reply::text("default answer"));
        s.last = Some(next.clone());
        next
    };
    let mut reply = reply;
    while let Reply::Delayed(pause, inner) = reply {
        tokio::time::sleep(pause).await;
        reply = *inner;
    }
    let model = body["model"].as_str().unwrap_or("unknown").to_owned();
    let a = shared.anthropic;
    match reply {
        Reply::Text(text) => whole(a, &model, &text, 5, 7, if a { "end_turn" } else { "stop" }),
        Reply::TextWith {
            text,
            input,
            output,
            stop,
        } => whole(a, &model, &text, input, output, &stop),
        Reply::Status {
            code,
            headers,
            body,
        } => {
            let mut r = (StatusCode::from_u16(code).unwrap(), body).into_response();
            for (k, v) in headers {
                r.headers_mut().insert(
                    axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            r.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            r
        }
        Reply::Garbage => (
            StatusCode::OK,
            [("content-type", "application/json")],
            "<html>not json SECRET-UPSTREAM-DETAIL",
        )
            .into_response(),
        Reply::WrongShape => (
            StatusCode::OK,
            [("content-type", "application/json")],
            r#"{"unexpected": true}"#,
        )
            .into_response(),
        Reply::Hang => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        Reply::Stream(words) => sse(stream_events(a, &model, &words, true), None, None),
        Reply::BrokenStream(words) => sse(stream_events(a, &model, &words, false), None, Some(())),
        Reply::Delayed(..) => unreachable!("unwrapped above"),
        Reply::Frames(frames) => sse(frames, None, None),
        Reply::ToolCalls(calls) => tool_answer(a, &model, &calls),
        Reply::SlowStream(words, pause) => sse(
            stream_events(a, &model, &words, true),
            Some((pause, shared.cancelled.clone())),
            None,
        ),
    }
}

fn whole(
    anthropic: bool,
    model: &str,
    text: &str,
    input: u32,
    output: u32,
    stop: &str,
) -> Response {
    let body = if anthropic {
        json!({"id": "msg_1", "type": "message", "role": "assistant", "model": model,
               "content": [{"type": "text", "text": text}], "stop_reason": stop, "stop_sequence": null,
               "usage": {"input_tokens": input, "output_tokens": output}})
    } else {
        json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
               "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": stop}],
               "usage": {"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output}})
    };
    axum::Json(body).into_response()
}

fn tool_answer(anthropic: bool, model: &str, calls: &[(String, String, String)]) -> Response {
    let body = if anthropic {
        let mut content = vec![json!({"type": "text", "text": "Let me check."})];
        content.extend(calls.iter().map(|(id, name, args)| {
            json!({"type": "tool_use", "id": id, "name": name,
                   "input": serde_json::from_str::<Value>(args).unwrap()})
        }));
        json!({"id": "msg_1", "type": "message", "role": "assistant", "model": model,
               "content": content, "stop_reason": "tool_use", "stop_sequence": null,
               "usage": {"input_tokens": 11, "output_tokens": 13}})
    } else {
        let x = openai_extras();
        let calls: Vec<Value> = calls
            .iter()
            .map(|(id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}}))
            .collect();
        let mut usage = json!({"prompt_tokens": 11, "completion_tokens": 13, "total_tokens": 24});
        for (k, v) in x["usage_details"].as_object().unwrap() {
            usage[k] = v.clone();
        }
        json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
               "system_fingerprint": x["system_fingerprint"], "service_tier": x["service_tier"],
               "choices": [{"index": 0, "logprobs": x["logprobs"], "finish_reason": "tool_calls",
                            "message": {"role": "assistant", "content": null, "refusal": null,
                                        "annotations": x["annotations"], "tool_calls": calls}}],
               "usage": usage})
    };
    axum::Json(body).into_response()
}

/// SSE frames for `words`; `complete` adds the provider's end-of-stream events.
fn stream_events(anthropic: bool, model: &str, words: &[String], complete: bool) -> Vec<String> {
    let mut out = Vec::new();
    if anthropic {
        out.push(format!("event: message_start\ndata: {}\n\n", json!({"type": "message_start", "message": {"id": "msg_1", "model": model, "usage": {"input_tokens": 5, "output_tokens": 1}}})));
        out.push("event: ping\ndata: {\"type\": \"ping\"}\n\n".into());
        for w in words {
            out.push(format!("event: content_block_delta\ndata: {}\n\n", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}})));
        }
        if complete {
            out.push(format!("event: message_delta\ndata: {}\n\n", json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": words.len()}})));
            out.push("event: message_stop\ndata: {\"type\": \"message_stop\"}\n\n".into());
        }
    } else {
        for w in words {
            out.push(format!("data: {}\n\n", json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": null}]})));
        }
        if complete {
            out.push(format!("data: {}\n\n", json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})));
            out.push(format!("data: {}\n\n", json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": words.len(), "total_tokens": 5 + words.len()}})));
            out.push("data: [DONE]\n\n".into());
        }
    }
    out
}

/// Sets the flag when dropped before the stream finished.
struct CancelGuard(Option<Arc<AtomicBool>>);

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if let Some(flag) = self.0.take() {
            flag.store(true, Ordering::SeqCst);
        }
    }
}

fn sse(
    frames: Vec<String>,
    slow: Option<(Duration, Arc<AtomicBool>)>,
    break_at_end: Option<()>,
) -> Response {
    let pause = slow.as_ref().map(|(p, _)| *p);
    let guard = CancelGuard(slow.map(|(_, flag)| flag));
    let stream = futures_util::stream::unfold(
        (frames.into_iter(), guard, false),
        move |(mut it, mut guard, done)| async move {
            if done {
                return None;
            }
            match it.next() {
                Some(frame) => {
                    if let Some(p) = pause {
                        tokio::time::sleep(p).await;
                    }
                    Some((
                        Ok::<Bytes, std::io::Error>(Bytes::from(frame)),
                        (it, guard, false),
                    ))
                }
                None => {
                    guard.0 = None; // finished normally
                    if break_at_end.is_some() {
                        // hyper writes buffered frames out when the body is
                        // pending: yield once, so they reach the client before the break.
                        tokio::task::yield_now().await;
                    }
                    break_at_end.map(|()| {
                        (
                            Err(std::io::Error::other("connection reset")),
                            (it, guard, true),
                        )
                    })
                }
            }
        },
    );
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}
