//! `POST /api/v1/chat/completions` and `GET /api/v1/models[/{id}]`: OpenAI's
//! format, so the official SDKs work unchanged. The request is read field by
//! field (a wrong type is a 400 naming the field); every field chatgate does
//! not own is kept for OpenAI-kind targets. Responses and chunks are typed
//! structs carrying the fields OpenAI's schema requires (nullable ones as
//! `null`) and the upstream's extra answer fields; streams end with `[DONE]`.

use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Json, Response};
use futures_util::StreamExt;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use super::extract::ApiJson;
use super::{finish, sse_error_json};
use crate::chat::{
    Block, ChatRequest, Completion, Dialect, FinishReason, MaxTokensField, Params, StreamEvent,
    Tool, ToolChoice, Usage, WireMessage,
};
use crate::context::Ctx;
use crate::dispatch;
use crate::error::ApiError;
use crate::state::AppState;

/// The client's body: a JSON object, read field by field by [`Body::into_request`].
#[derive(Deserialize)]
#[serde(transparent)]
pub struct Body(Map<String, Value>);

/// A 400 naming `field`.
pub(super) fn wrong(field: &str, expected: &str) -> ApiError {
    ApiError::invalid_param(field.to_owned(), format!("{field} must be {expected}"))
}

/// Takes `field` out of the body; `null` counts as absent.
pub(super) fn take(body: &mut Map<String, Value>, field: &str) -> Option<Value> {
    body.remove(field).filter(|v| !v.is_null())
}

pub(super) fn take_f64(
    body: &mut Map<String, Value>,
    field: &str,
) -> Result<Option<f64>, ApiError> {
    take(body, field)
        .map(|v| v.as_f64().ok_or_else(|| wrong(field, "a number")))
        .transpose()
}

pub(super) fn take_u32(
    body: &mut Map<String, Value>,
    field: &str,
) -> Result<Option<u32>, ApiError> {
    take(body, field)
        .map(|v| {
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| wrong(field, "a non-negative integer"))
        })
        .transpose()
}

pub(super) fn take_bool(
    body: &mut Map<String, Value>,
    field: &str,
) -> Result<Option<bool>, ApiError> {
    take(body, field)
        .map(|v| v.as_bool().ok_or_else(|| wrong(field, "true or false")))
        .transpose()
}

pub(super) fn take_string(
    body: &mut Map<String, Value>,
    field: &str,
) -> Result<Option<String>, ApiError> {
    take(body, field)
        .map(|v| match v {
            Value::String(s) => Ok(s),
            _ => Err(wrong(field, "a string")),
        })
        .transpose()
}

pub(super) fn take_object(
    body: &mut Map<String, Value>,
    field: &str,
) -> Result<Option<Map<String, Value>>, ApiError> {
    take(body, field)
        .map(|v| match v {
            Value::Object(m) => Ok(m),
            _ => Err(wrong(field, "an object")),
        })
        .transpose()
}

fn stop(value: Option<Value>) -> Result<Vec<String>, ApiError> {
    let expected = || wrong("stop", "a string or a list of strings");
    match value {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s]),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(expected()),
            })
            .collect(),
        Some(_) => Err(expected()),
    }
}

/// `tools`: functions only, each with a string `name` and an object `parameters`.
fn tools(value: Option<Value>) -> Result<Vec<Tool>, ApiError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = value else {
        return Err(wrong("tools", "a list of tools"));
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, raw)| {
            let at = |field: &str| format!("tools[{i}].{field}");
            if raw.get("type").and_then(Value::as_str) != Some("function") {
                return Err(ApiError::invalid_param(
                    at("type"),
                    format!("{} must be `function`", at("type")),
                ));
            }
            let function = raw.get("function");
            let Some(name) = function.and_then(|f| f.get("name")).and_then(Value::as_str) else {
                let field = at("function.name");
                return Err(ApiError::invalid_param(
                    field.clone(),
                    format!("{field} must be a string"),
                ));
            };
            let description = match function.and_then(|f| f.get("description")) {
                None | Some(Value::Null) => None,
                Some(Value::String(d)) => Some(d.clone()),
                Some(_) => {
                    let field = at("function.description");
                    return Err(ApiError::invalid_param(
                        field.clone(),
                        format!("{field} must be a string"),
                    ));
                }
            };
            let parameters = match function.and_then(|f| f.get("parameters")) {
                None | Some(Value::Null) => None,
                Some(p @ Value::Object(_)) => Some(p.clone()),
                Some(_) => {
                    let field = at("function.parameters");
                    return Err(ApiError::invalid_param(
                        field.clone(),
                        format!("{field} must be a JSON Schema object"),
                    ));
                }
            };
            Ok(Tool {
                name: name.to_owned(),
                description,
                parameters,
                raw,
            })
        })
        .collect()
}

fn tool_choice(value: Option<Value>) -> Result<Option<ToolChoice>, ApiError> {
    let expected = || {
        wrong(
            "tool_choice",
            "`none`, `auto`, `required` or {\"type\": \"function\", \"function\": {\"name\": …}}",
        )
    };
    Ok(match value {
        None => None,
        Some(Value::String(s)) => Some(match s.as_str() {
            "none" => ToolChoice::None,
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            _ => return Err(expected()),
        }),
        Some(v @ Value::Object(_)) => match v.get("type").and_then(Value::as_str) {
            Some("function") => {
                let name = v
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .ok_or_else(expected)?;
                Some(ToolChoice::Function(name.to_owned()))
            }
            Some(_) => Some(ToolChoice::Other(v)),
            None => return Err(expected()),
        },
        Some(_) => return Err(expected()),
    })
}

/// The request as `/openapi.json` documents it: every field
/// [`Body::into_request`] reads (a unit test keeps the two together); any
/// other field is passed through to OpenAI-kind targets. Only for the doc.
#[derive(utoipa::ToSchema)]
#[schema(as = ChatCompletionRequest)]
#[allow(dead_code)]
pub(super) struct RequestDoc {
    /// Required: OpenAI's message objects.
    #[schema(value_type = Vec<Object>)]
    messages: Vec<Value>,
    model: Option<String>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    /// A string or a list of strings.
    stop: Option<Value>,
    user: Option<String>,
    stream: Option<bool>,
    /// `{"include_usage": bool}`.
    #[schema(value_type = Option<Object>)]
    stream_options: Option<Value>,
    #[schema(value_type = Option<Object>)]
    logit_bias: Option<Value>,
    /// `{"type": "text" | "json_object" | "json_schema", …}`.
    #[schema(value_type = Option<Object>)]
    response_format: Option<Value>,
    seed: Option<i64>,
    frequency_penalty: Option<f64>,
    presence_penalty: Option<f64>,
    n: Option<u32>,
    logprobs: Option<bool>,
    top_logprobs: Option<u32>,
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
    parallel_tool_calls: Option<bool>,
    /// `"none"`, `"auto"`, `"required"` or `{"type": "function", …}`.
    tool_choice: Option<Value>,
    #[schema(value_type = Option<Vec<Object>>)]
    tools: Option<Value>,
}

impl Body {
    /// The validated request, and whether the client asked for the usage chunk.
    pub fn into_request(self) -> Result<(ChatRequest, bool), ApiError> {
        let mut body = self.0;
        let b = &mut body;
        let messages = match take(b, "messages") {
            None => return Err(ApiError::invalid_param("messages", "messages is required")),
            Some(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, m)| {
                    serde_json::from_value::<WireMessage>(m)
                        .map_err(|_| wrong(&format!("messages[{i}]"), "a message object"))?
                        .into_message(i, Dialect::OpenAi)
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(wrong("messages", "a list of messages")),
        };
        let max_tokens = take_u32(b, "max_tokens")?;
        let max_completion_tokens = take_u32(b, "max_completion_tokens")?;
        let (max_tokens, max_tokens_field) = match max_completion_tokens {
            Some(n) => (Some(n), MaxTokensField::MaxCompletionTokens),
            None => (max_tokens, MaxTokensField::MaxTokens),
        };
        let stream = take_bool(b, "stream")?.unwrap_or(false);
        let mut stream_options = take_object(b, "stream_options")?.unwrap_or_default();
        let include_usage = match stream_options.remove("include_usage") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(on)) => on,
            Some(_) => return Err(wrong("stream_options.include_usage", "true or false")),
        };
        let logit_bias = take_object(b, "logit_bias")?;
        if logit_bias
            .as_ref()
            .is_some_and(|m| m.values().any(|v| !v.is_number()))
        {
            return Err(wrong("logit_bias", "an object of token ids to numbers"));
        }
        let response_format = take_object(b, "response_format")?;
        if response_format
            .as_ref()
            .is_some_and(|f| !f.get("type").is_some_and(Value::is_string))
        {
            return Err(wrong(
                "response_format",
                "an object with a string `type` (text, json_object, json_schema)",
            ));
        }
        let seed = take(b, "seed")
            .map(|v| v.as_i64().ok_or_else(|| wrong("seed", "an integer")))
            .transpose()?;
        let req = ChatRequest {
            messages,
            model: take_string(b, "model")?,
            max_tokens,
            temperature: take_f64(b, "temperature")?,
            top_p: take_f64(b, "top_p")?,
            stop: stop(take(b, "stop"))?,
            user: take_string(b, "user")?,
            stream,
            params: Params {
                seed,
                frequency_penalty: take_f64(b, "frequency_penalty")?,
                presence_penalty: take_f64(b, "presence_penalty")?,
                logit_bias,
                response_format: response_format.map(Value::Object),
                n: take_u32(b, "n")?,
                logprobs: take_bool(b, "logprobs")?,
                top_logprobs: take_u32(b, "top_logprobs")?,
                metadata: take_object(b, "metadata")?,
                parallel_tool_calls: take_bool(b, "parallel_tool_calls")?,
                tool_choice: tool_choice(take(b, "tool_choice"))?,
                tools: tools(take(b, "tools"))?,
                max_tokens_field,
                stream_options,
                // What is left is not ours: OpenAI-kind targets get it unchanged.
                extra: body,
                anthropic: Map::new(),
            },
        };
        Ok((req, include_usage))
    }
}

/// OpenAI's finish words for any provider's reason; unknown ones are `stop`.
fn finish_reason(reason: &FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop | FinishReason::StopSequence(_) | FinishReason::Other(_) => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls(_) => "tool_calls",
        FinishReason::ContentFilter(_) => "content_filter",
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An upstream's extra fields, less those this struct writes itself.
struct Without<'a> {
    map: &'a Map<String, Value>,
    skip: &'static str,
}

impl Serialize for Without<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for (k, v) in self.map.iter().filter(|(k, _)| *k != self.skip) {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct UsageOut<'a> {
    prompt_tokens: u32,
    completion_tokens: u32,
    total_tokens: u32,
    /// `prompt_tokens_details`, `completion_tokens_details` from the upstream.
    #[serde(flatten)]
    details: Option<&'a Map<String, Value>>,
}

fn usage_out(u: Usage, details: Option<&Map<String, Value>>) -> UsageOut<'_> {
    UsageOut {
        prompt_tokens: u.input_tokens,
        completion_tokens: u.output_tokens,
        total_tokens: u.input_tokens.saturating_add(u.output_tokens),
        details,
    }
}

#[derive(Serialize)]
struct ChatCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [AnswerChoice<'a>; 1],
    usage: UsageOut<'a>,
    /// `system_fingerprint`, `service_tier`, …
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

#[derive(Serialize)]
struct AnswerChoice<'a> {
    index: u32,
    message: AnswerMessage<'a>,
    /// Required by the schema: the upstream's, or `null`.
    logprobs: &'a Value,
    finish_reason: &'static str,
    #[serde(flatten)]
    extra: Without<'a>,
}

#[derive(Serialize)]
struct AnswerMessage<'a> {
    role: &'static str,
    /// `null` for an answer of tool calls only.
    content: Option<String>,
    /// Required by the schema: the upstream's, or `null`.
    refusal: &'a Value,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<CallOut<'a>>,
    /// `annotations`, `audio`, …
    #[serde(flatten)]
    extra: Without<'a>,
}

#[derive(Serialize)]
struct CallOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionOut<'a>,
}

#[derive(Serialize)]
struct FunctionOut<'a> {
    name: &'a str,
    arguments: &'a str,
}

const NULL: Value = Value::Null;

fn completion<'a>(
    id: &'a str,
    created: u64,
    model: &'a str,
    c: &'a Completion,
) -> ChatCompletion<'a> {
    let tool_calls: Vec<CallOut<'a>> = c
        .blocks
        .iter()
        .filter_map(|b| match b {
            Block::ToolCall {
                id,
                name,
                arguments,
            } => Some(CallOut {
                id,
                kind: "function",
                function: FunctionOut { name, arguments },
            }),
            _ => None,
        })
        .collect();
    let text = c.text();
    let has_text = c.blocks.iter().any(|b| matches!(b, Block::Text(_)));
    let x = &c.extra;
    ChatCompletion {
        id,
        object: "chat.completion",
        created,
        model,
        choices: [AnswerChoice {
            index: 0,
            message: AnswerMessage {
                role: "assistant",
                content: (has_text || tool_calls.is_empty()).then_some(text),
                refusal: x.message.get("refusal").unwrap_or(&NULL),
                tool_calls,
                extra: Without {
                    map: &x.message,
                    skip: "refusal",
                },
            },
            logprobs: x.choice.get("logprobs").unwrap_or(&NULL),
            finish_reason: finish_reason(&c.finish_reason),
            extra: Without {
                map: &x.choice,
                skip: "logprobs",
            },
        }],
        usage: usage_out(c.usage, Some(&x.usage)),
        extra: &x.top,
    }
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<ChunkChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<UsageOut<'a>>,
    /// The upstream chunk's own fields (`system_fingerprint`, …), passed on.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    extra: Option<&'a Map<String, Value>>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    /// Required and nullable in OpenAI's schema: `null` unless the upstream sent some.
    logprobs: Option<&'a Value>,
    finish_reason: Option<&'static str>,
    /// The upstream choice's other fields, passed on.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    extra: Option<&'a Map<String, Value>>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<DeltaCall<'a>>,
}

/// A piece of a tool call: `id`, `type` and `function.name` on the first piece of each.
#[derive(Serialize)]
struct DeltaCall<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: DeltaFunction<'a>,
}

#[derive(Serialize)]
struct DeltaFunction<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

/// Every chunk of one stream shares its id, time and model.
struct Chunks {
    id: String,
    created: u64,
    model: std::sync::Arc<str>,
    /// What every text chunk holds before its text (see [`Chunks::text`]).
    text_head: String,
}

/// What a text chunk holds after its text: `Chunk`'s fields after `content`
/// when the delta has nothing else, as serde writes them.
const TEXT_TAIL: &str = r#"},"logprobs":null,"finish_reason":null}]}"#;

impl Chunks {
    fn new(id: String, created: u64, model: std::sync::Arc<str>) -> Self {
        // `Chunk` as serde writes it, up to a text delta's content.
        let mut head = Vec::with_capacity(128 + id.len() + model.len());
        head.extend_from_slice(br#"{"id":"#);
        write_json_str(&mut head, &id);
        head.extend_from_slice(br#","object":"chat.completion.chunk","created":"#);
        head.extend_from_slice(created.to_string().as_bytes());
        head.extend_from_slice(br#","model":"#);
        write_json_str(&mut head, &model);
        head.extend_from_slice(br#","choices":[{"index":0,"delta":{"content":"#);
        Self {
            id,
            created,
            model,
            text_head: String::from_utf8(head).unwrap_or_default(),
        }
    }

    /// A text delta, the chunk of nearly every event of a stream: the
    /// stream's own head written once, then only the text is escaped per
    /// chunk, into one buffer — no `Chunk` tree serialised for it. The bytes
    /// are the ones `delta` would write (unit test below).
    fn text_json(&self, text: &str) -> String {
        let mut out = Vec::with_capacity(self.text_head.len() + text.len() + TEXT_TAIL.len() + 8);
        out.extend_from_slice(self.text_head.as_bytes());
        write_json_str(&mut out, text);
        out.extend_from_slice(TEXT_TAIL.as_bytes());
        // Every piece is UTF-8 (the head is, and serde_json writes the
        // text's own bytes and ASCII escapes), so this never falls back.
        String::from_utf8(out).unwrap_or_default()
    }

    fn text(&self, text: &str) -> Event {
        Event::default().data(self.text_json(text))
    }

    fn event(&self, choice: Option<ChunkChoice<'_>>, usage: Option<UsageOut<'_>>) -> Event {
        self.chunk(choice, usage, None)
    }

    fn chunk(
        &self,
        choice: Option<ChunkChoice<'_>>,
        usage: Option<UsageOut<'_>>,
        extra: Option<&Map<String, Value>>,
    ) -> Event {
        let chunk = Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: choice.into_iter().collect(),
            usage,
            extra,
        };
        // Serialised into one string, then copied into the event once: axum's
        // `json_data` sends each of serde's many small writes through its
        // newline-splitting writer and grows the event's buffer piece by piece
        // (the costliest part of a stream before this, in callgrind).
        serde_json::to_string(&chunk)
            .map_or_else(|_| Event::default(), |json| Event::default().data(json))
    }

    fn delta(&self, delta: Delta<'_>, finish_reason: Option<&'static str>) -> Event {
        let choice = ChunkChoice {
            index: 0,
            delta,
            logprobs: None,
            finish_reason,
            extra: None,
        };
        self.event(Some(choice), None)
    }

    /// The upstream's own fields of a chunk (`logprobs`, `system_fingerprint`,
    /// …) in a chunk with an empty delta.
    fn extra(&self, choice: &Map<String, Value>, top: &Map<String, Value>) -> Event {
        let mut rest = choice.clone();
        let logprobs = rest.remove("logprobs");
        let choice = ChunkChoice {
            index: 0,
            delta: Delta::default(),
            logprobs: logprobs.as_ref(),
            finish_reason: None,
            extra: (!rest.is_empty()).then_some(&rest),
        };
        self.chunk(Some(choice), None, (!top.is_empty()).then_some(top))
    }
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
        let body = completion(&id, created, &answer.served.model, c);
        let response = Json(body).into_response();
        return Ok(finish(response, &answer.served));
    }

    let streaming = dispatch::stream(&state, &req, &ctx).await?;
    let chunks = Chunks::new(id, created, streaming.served.model.clone());
    // The first chunk announces the role, as OpenAI's does.
    let opening = chunks.delta(
        Delta {
            role: Some("assistant"),
            content: Some(""),
            ..Delta::default()
        },
        None,
    );
    // Each event is one chunk, and the last a few more: those go in a `Vec`,
    // which stays unallocated for the others.
    let events = streaming.events.flat_map(move |event| {
        let (chunk, more): (Event, Vec<Event>) = match event {
            Ok(StreamEvent::Delta(text)) => (chunks.text(&text), Vec::new()),
            Ok(StreamEvent::Extra { choice, top }) => (chunks.extra(&choice, &top), Vec::new()),
            Ok(StreamEvent::ToolCall {
                index,
                id,
                name,
                arguments,
            }) => {
                let call = DeltaCall {
                    index,
                    kind: id.is_some().then_some("function"),
                    id: id.as_deref(),
                    function: DeltaFunction {
                        name: name.as_deref(),
                        arguments: &arguments,
                    },
                };
                let delta = Delta {
                    tool_calls: vec![call],
                    ..Delta::default()
                };
                (chunks.delta(delta, None), Vec::new())
            }
            Ok(StreamEvent::Finished {
                finish_reason: reason,
                usage,
            }) => {
                let last = chunks.delta(Delta::default(), Some(finish_reason(&reason)));
                let mut more = Vec::with_capacity(2);
                if include_usage {
                    more.push(chunks.event(None, Some(usage_out(usage, None))));
                }
                more.push(Event::default().data("[DONE]"));
                (last, more)
            }
            // An error chunk, then [DONE]: the SDKs raise on a chunk with `error`.
            Err(error) => (
                Event::default().data(sse_error_json(&error)),
                vec![Event::default().data("[DONE]")],
            ),
        };
        futures_util::stream::iter(std::iter::once(chunk).chain(more).map(Ok::<_, Infallible>))
    });
    let events =
        futures_util::stream::once(async move { Ok::<_, Infallible>(opening) }).chain(events);
    let response = Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response();
    Ok(finish(response, &streaming.served))
}

/// `text` as a JSON string, as serde_json writes it (writing to a `Vec`
/// cannot fail).
fn write_json_str(out: &mut Vec<u8>, text: &str) {
    let _ = serde_json::to_writer(out, text);
}

/// One model, as OpenAI's schema has it.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ModelOut<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ModelList<'a> {
    object: &'static str,
    data: Vec<ModelOut<'a>>,
}

fn model_out(id: &str, created: u64) -> ModelOut<'_> {
    ModelOut {
        id,
        object: "model",
        created,
        owned_by: "chatgate",
    }
}

/// `GET /api/v1/models`: the configured model names, OpenAI-style.
pub async fn models(State(state): State<AppState>) -> Response {
    let mut names: Vec<&String> = state.catalog.models.keys().collect();
    names.sort();
    let data = names
        .into_iter()
        .map(|id| model_out(id, state.started_at))
        .collect();
    Json(ModelList {
        object: "list",
        data,
    })
    .into_response()
}

/// `GET /api/v1/models/{id}` (the SDKs' `models.retrieve`); the id may hold `/`.
pub async fn model(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match state.catalog.get(&id) {
        Some(model) => Ok(Json(model_out(&model.name, state.started_at)).into_response()),
        None => Err(ApiError::ModelNotFound(id)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod doc_tests {
    use super::*;

    #[test]
    fn every_request_field_the_parser_reads_is_in_the_documented_schema() {
        use utoipa::PartialSchema;
        let schema = serde_json::to_value(RequestDoc::schema()).unwrap();
        let documented = schema["properties"].as_object().unwrap();
        let source = include_str!("openai.rs");
        let parser = &source[source.find("fn into_request").unwrap()..];
        let parser = &parser[..parser.find("\n    }\n}").unwrap()];
        let read: Vec<&str> = parser
            .split("(b, \"")
            .skip(1)
            .map(|rest| &rest[..rest.find('"').unwrap()])
            .collect();
        assert!(read.len() > 20, "{read:?}");
        for field in read {
            assert!(
                documented.contains_key(field),
                "{field} is read but not documented"
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod chunk_tests {
    use super::*;

    /// The chunk `Chunks::delta` serialises for a text delta.
    fn serialised(chunks: &Chunks, text: &str) -> String {
        serde_json::to_string(&Chunk {
            id: &chunks.id,
            object: "chat.completion.chunk",
            created: chunks.created,
            model: &chunks.model,
            choices: vec![ChunkChoice {
                index: 0,
                delta: Delta {
                    content: Some(text),
                    ..Delta::default()
                },
                logprobs: None,
                finish_reason: None,
                extra: None,
            }],
            usage: None,
            extra: None,
        })
        .unwrap()
    }

    #[test]
    fn a_text_chunk_written_from_the_stream_head_is_the_chunk_serde_writes() {
        let streams = [
            Chunks::new("chatcmpl-1".into(), 1_700_000_000, "default".into()),
            Chunks::new("chatcmpl-\"2\"".into(), 0, "team/model \\ é\u{1}".into()),
        ];
        let texts = [
            "Lisbon",
            "",
            " with \"quotes\" and \\ and\nnew\r\nlines\t",
            "é 日本 🎉 \u{0} \u{1f} \u{7f} \u{2028}",
        ];
        for chunks in &streams {
            for text in texts {
                let ours = chunks.text_json(text);
                assert_eq!(ours, serialised(chunks, text));
                let back: Value = serde_json::from_str(&ours).unwrap();
                assert_eq!(back["choices"][0]["delta"]["content"], text);
            }
        }
    }
}
