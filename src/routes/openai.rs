//! `POST /api/v1/chat/completions`: OpenAI's Chat Completions format, so the
//! official SDKs work unchanged. Responses and chunks carry the fields that
//! OpenAI's schema requires (nullable ones as `null`); streams end with `[DONE]`.

use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Json, Response};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::extract::ApiJson;
use super::{finish, sse_error_json};
use crate::chat::{ChatRequest, Dialect, FinishReason, StreamEvent, Usage, WireMessage};
use crate::context::Ctx;
use crate::dispatch;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct Body {
    messages: Option<Vec<WireMessage>>,
    model: Option<String>,
    max_tokens: Option<u32>,
    /// OpenAI's newer name for `max_tokens`.
    max_completion_tokens: Option<u32>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    #[serde(default)]
    stop: Option<Value>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    user: Option<String>,
    n: Option<u32>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
}

#[derive(Deserialize, Default)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

impl Body {
    pub fn into_request(self) -> Result<(ChatRequest, bool), ApiError> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(ApiError::invalid("only n = 1 is supported"));
        }
        if self.tools.as_ref().is_some_and(|t| !t.is_empty()) {
            return Err(ApiError::invalid("tools are not supported by this gateway"));
        }
        let stop = match self.stop {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![s],
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|v| {
                    v.as_str().map(str::to_owned).ok_or_else(|| {
                        ApiError::invalid("stop must be a string or a list of strings")
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(ApiError::invalid(
                    "stop must be a string or a list of strings",
                ));
            }
        };
        let messages = self
            .messages
            .ok_or_else(|| ApiError::invalid("messages is required"))?
            .into_iter()
            .enumerate()
            .map(|(i, m)| m.into_message(i, Dialect::OpenAi))
            .collect::<Result<_, _>>()?;
        let include_usage = self.stream_options.unwrap_or_default().include_usage;
        let req = ChatRequest {
            messages,
            model: self.model,
            max_tokens: self.max_completion_tokens.or(self.max_tokens),
            temperature: self.temperature,
            top_p: self.top_p,
            stop,
            user: self.user,
            stream: self.stream,
        };
        Ok((req, include_usage))
    }
}

/// OpenAI's finish words for any provider's reason; unknown ones are `stop`.
fn finish_reason(reason: &FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop | FinishReason::Other(_) => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls(_) => "tool_calls",
        FinishReason::ContentFilter(_) => "content_filter",
    }
}

fn usage_json(u: Usage) -> Value {
    json!({
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
    })
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Value>,
}

pub async fn completions(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<Body>,
) -> Result<Response, dispatch::Refusal> {
    let (req, include_usage) = body.into_request()?;
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = now_unix();
    if !req.stream {
        let answer = dispatch::complete(&state, &req, &ctx).await?;
        let c = &answer.completion;
        let body = json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": &*answer.served.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": c.text(), "refusal": null},
                "logprobs": null,
                "finish_reason": finish_reason(&c.finish_reason),
            }],
            "usage": usage_json(c.usage),
        });
        return Ok(finish(Json(body).into_response(), &answer.served));
    }

    let streaming = dispatch::stream(&state, &req, &ctx).await?;
    let model = streaming.served.model.clone();
    let chunk = move |choices: Vec<Value>, usage: Option<Value>| -> Event {
        let c = Chunk {
            id: &id,
            object: "chat.completion.chunk",
            created,
            model: &model,
            choices,
            usage,
        };
        Event::default().json_data(c).unwrap_or_default()
    };
    // The first chunk announces the role, as OpenAI's does.
    let opening = chunk(
        vec![
            json!({"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}),
        ],
        None,
    );
    let events = streaming.events.flat_map(move |event| {
        let out: Vec<Event> = match event {
            Ok(StreamEvent::Delta(text)) => {
                vec![chunk(vec![json!({"index": 0, "delta": {"content": text}, "logprobs": null, "finish_reason": null})], None)]
            }
            Ok(StreamEvent::Finished { finish_reason: reason, usage }) => {
                let mut out = vec![chunk(vec![json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": finish_reason(&reason)})], None)];
                if include_usage {
                    out.push(chunk(Vec::new(), Some(usage_json(usage))));
                }
                out.push(Event::default().data("[DONE]"));
                out
            }
            // An error chunk, then [DONE]: the SDKs raise on a chunk with `error`.
            Err(error) => vec![Event::default().data(sse_error_json(&error)), Event::default().data("[DONE]")],
        };
        futures_util::stream::iter(out.into_iter().map(Ok::<_, Infallible>))
    });
    let events =
        futures_util::stream::once(async move { Ok::<_, Infallible>(opening) }).chain(events);
    let response = Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response();
    Ok(finish(response, &streaming.served))
}

/// `GET /api/v1/models`: the configured model names, OpenAI-style.
pub async fn models(State(state): State<AppState>) -> Json<Value> {
    let mut names: Vec<&String> = state.catalog.models.keys().collect();
    names.sort();
    let data: Vec<Value> =
        names.into_iter().map(|id| json!({"id": id, "object": "model", "created": state.started_at, "owned_by": "chatgate"})).collect();
    Json(json!({"object": "list", "data": data}))
}
