//! `POST /api/v1/messages`: Anthropic's Messages format, so the official
//! `anthropic` SDKs work with `base_url = "http://host:port/api"`. The request
//! is read field by field into the domain's [`ChatRequest`] (a wrong type or a
//! field chatgate cannot carry is a 400 naming it); each target's provider
//! translates on. Fields without a domain equivalent (`top_k`, `thinking`, …)
//! ride in `Params::anthropic` for Anthropic-kind targets. Answers are
//! `type: "message"` with content blocks; streams are Anthropic's six event
//! types with block indices counted here. Errors get Anthropic's shape from
//! the `error_body` layer (it knows this route by its path).

use std::collections::BTreeMap;
use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Json, Response};
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::extract::ApiJson;
use super::finish;
use super::openai::{take, take_bool, take_f64, take_object, take_string, take_u32, wrong};
use crate::chat::{
    Block, ChatRequest, Completion, FinishReason, Form, Message, Params, Role, StreamEvent, Tool,
    ToolChoice, ToolOutput, Usage, image_source,
};
use crate::context::Ctx;
use crate::dispatch;
use crate::error::{ApiError, anthropic_error_json};
use crate::providers::ProviderError;
use crate::state::AppState;

/// The client's body: a JSON object, read field by field by [`Body::into_request`].
#[derive(serde::Deserialize)]
#[serde(transparent)]
pub struct Body(Map<String, Value>);

fn invalid(param: String, message: String) -> ApiError {
    ApiError::invalid_param(param, message)
}

/// The first key of `object` not in `known`, as a 400 naming `at.key`: a
/// field chatgate cannot carry is refused, never dropped.
fn only(object: &Map<String, Value>, known: &[&str], at: &str) -> Result<(), ApiError> {
    match object.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(key) => {
            let field = format!("{at}.{}", crate::error::truncate(key, 32));
            Err(invalid(
                field.clone(),
                format!("{field} is not supported by this gateway"),
            ))
        }
    }
}

fn string_at(v: &Map<String, Value>, key: &str, at: &str) -> Result<String, ApiError> {
    match v.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(invalid(
            format!("{at}.{key}"),
            format!("{at}.{key} must be a string"),
        )),
    }
}

fn object_at<'v>(v: &'v Value, at: &str) -> Result<&'v Map<String, Value>, ApiError> {
    v.as_object()
        .ok_or_else(|| invalid(at.to_owned(), format!("{at} must be an object")))
}

/// `system`: a string, or a list of text blocks.
fn system(value: Value) -> Result<Message, ApiError> {
    match value {
        Value::String(s) => Ok(Message::system_text(s)),
        Value::Array(items) => {
            let blocks = items
                .iter()
                .enumerate()
                .map(|(j, b)| {
                    let at = format!("system[{j}]");
                    let b = object_at(b, &at)?;
                    if b.get("type").and_then(Value::as_str) != Some("text") {
                        return Err(invalid(
                            format!("{at}.type"),
                            format!("{at}.type must be `text`"),
                        ));
                    }
                    only(b, &["type", "text"], &at)?;
                    Ok(Block::Text(string_at(b, "text", &at)?))
                })
                .collect::<Result<_, _>>()?;
            Ok(Message {
                role: Role::System,
                blocks,
                form: Form::Parts,
                extra: Map::new(),
            })
        }
        _ => Err(wrong("system", "a string or a list of text blocks")),
    }
}

/// An `image` block's `source`: `base64` (checked like a data URL) or `url`.
fn image(b: &Map<String, Value>, at: &str) -> Result<Block, ApiError> {
    only(b, &["type", "source"], at)?;
    let at = format!("{at}.source");
    let source = object_at(b.get("source").unwrap_or(&Value::Null), &at)?;
    let url = match source.get("type").and_then(Value::as_str) {
        Some("base64") => {
            only(source, &["type", "media_type", "data"], &at)?;
            let media_type = string_at(source, "media_type", &at)?;
            let data = string_at(source, "data", &at)?;
            format!("data:{media_type};base64,{data}")
        }
        Some("url") => {
            only(source, &["type", "url"], &at)?;
            string_at(source, "url", &at)?
        }
        _ => {
            return Err(invalid(
                format!("{at}.type"),
                format!("{at}.type must be `base64` or `url`"),
            ));
        }
    };
    let source = image_source(&url).map_err(|why| {
        let why = why.replace("URL", "source");
        invalid(at.clone(), format!("{at} {why}"))
    })?;
    Ok(Block::Image {
        source,
        detail: None,
    })
}

/// One content block of a message; `user` says which kinds may appear.
fn block(v: &Value, at: &str, user: bool) -> Result<Block, ApiError> {
    let b = object_at(v, at)?;
    match (b.get("type").and_then(Value::as_str), user) {
        (Some("text"), _) => {
            only(b, &["type", "text"], at)?;
            Ok(Block::Text(string_at(b, "text", at)?))
        }
        (Some("image"), true) => image(b, at),
        (Some("tool_use"), false) => {
            only(b, &["type", "id", "name", "input"], at)?;
            let input = match b.get("input") {
                Some(input @ Value::Object(_)) => input.to_string(),
                _ => {
                    return Err(invalid(
                        format!("{at}.input"),
                        format!("{at}.input must be an object"),
                    ));
                }
            };
            Ok(Block::ToolCall {
                id: string_at(b, "id", at)?,
                name: string_at(b, "name", at)?,
                arguments: input,
            })
        }
        (Some("tool_result"), true) => {
            only(b, &["type", "tool_use_id", "content", "is_error"], at)?;
            let content = match b.get("content") {
                None | Some(Value::Null) => ToolOutput::Text(String::new()),
                Some(Value::String(s)) => ToolOutput::Text(s.clone()),
                Some(Value::Array(items)) => ToolOutput::Blocks(
                    items
                        .iter()
                        .enumerate()
                        .map(|(k, inner)| {
                            let at = format!("{at}.content[{k}]");
                            match block(inner, &at, true)? {
                                b @ (Block::Text(_) | Block::Image { .. }) => Ok(b),
                                _ => Err(invalid(
                                    format!("{at}.type"),
                                    format!("{at}.type must be `text` or `image`"),
                                )),
                            }
                        })
                        .collect::<Result<_, _>>()?,
                ),
                Some(_) => {
                    return Err(invalid(
                        format!("{at}.content"),
                        format!("{at}.content must be a string or a list of blocks"),
                    ));
                }
            };
            let is_error = match b.get("is_error") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(e)) => *e,
                Some(_) => {
                    return Err(invalid(
                        format!("{at}.is_error"),
                        format!("{at}.is_error must be true or false"),
                    ));
                }
            };
            Ok(Block::ToolResult {
                call_id: string_at(b, "tool_use_id", at)?,
                content,
                is_error,
            })
        }
        _ => {
            let expected = if user {
                "`text`, `image` or `tool_result` in user messages"
            } else {
                "`text` or `tool_use` in assistant messages"
            };
            Err(invalid(
                format!("{at}.type"),
                format!("{at}.type must be {expected}"),
            ))
        }
    }
}

/// One Anthropic message as domain messages: a user turn's `tool_result`
/// blocks become tool messages (one result each), then the rest a user message.
fn message(i: usize, v: Value, out: &mut Vec<Message>) -> Result<(), ApiError> {
    let at = format!("messages[{i}]");
    let Value::Object(m) = v else {
        return Err(wrong(&at, "a message object"));
    };
    only(&m, &["role", "content"], &at)?;
    let role = match m.get("role").and_then(Value::as_str) {
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        _ => {
            return Err(invalid(
                format!("{at}.role"),
                format!("{at}.role must be `user` or `assistant` (`system` is a top-level field)"),
            ));
        }
    };
    let (blocks, form) = match m.get("content") {
        Some(Value::String(s)) => (vec![Block::Text(s.clone())], Form::String),
        Some(Value::Array(items)) => (
            items
                .iter()
                .enumerate()
                .map(|(j, b)| block(b, &format!("{at}.content[{j}]"), role == Role::User))
                .collect::<Result<Vec<_>, _>>()?,
            Form::Parts,
        ),
        _ => {
            return Err(invalid(
                format!("{at}.content"),
                format!("{at}.content must be a string or a list of content blocks"),
            ));
        }
    };
    let (results, rest): (Vec<Block>, Vec<Block>) = blocks
        .into_iter()
        .partition(|b| matches!(b, Block::ToolResult { .. }));
    let had_results = !results.is_empty();
    out.extend(results.into_iter().map(|r| Message {
        role: Role::Tool,
        blocks: vec![r],
        form: Form::Parts,
        extra: Map::new(),
    }));
    if !rest.is_empty() || !had_results {
        out.push(Message {
            role,
            blocks: rest,
            form,
            extra: Map::new(),
        });
    }
    Ok(())
}

/// `tools`: client tools with `name`, `description` and `input_schema`. OpenAI
/// targets get each as a function (its `raw`), Anthropic ones as they came.
fn tools(value: Option<Value>) -> Result<Vec<Tool>, ApiError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = value else {
        return Err(wrong("tools", "a list of tools"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let at = format!("tools[{i}]");
            let t = object_at(t, &at)?;
            match t.get("type") {
                None | Some(Value::Null) => {}
                Some(Value::String(kind)) if kind == "custom" => {}
                Some(_) => {
                    return Err(invalid(
                        format!("{at}.type"),
                        format!("{at}.type: only client tools (`custom`) are supported"),
                    ));
                }
            }
            only(t, &["type", "name", "description", "input_schema"], &at)?;
            let name = string_at(t, "name", &at)?;
            let description = match t.get("description") {
                None | Some(Value::Null) => None,
                Some(Value::String(d)) => Some(d.clone()),
                Some(_) => return Err(wrong(&format!("{at}.description"), "a string")),
            };
            let schema = match t.get("input_schema") {
                Some(s @ Value::Object(_)) => s.clone(),
                _ => {
                    return Err(wrong(&format!("{at}.input_schema"), "a JSON Schema object"));
                }
            };
            let mut function = json!({"name": name, "parameters": schema});
            if let Some(d) = &description {
                function["description"] = Value::from(d.as_str());
            }
            Ok(Tool {
                name,
                description,
                parameters: Some(schema),
                raw: json!({"type": "function", "function": function}),
            })
        })
        .collect()
}

/// `tool_choice`: `auto`, `any` (OpenAI `required`), `tool` (a named
/// function), `none`; `disable_parallel_tool_use` is `parallel_tool_calls: false`.
fn tool_choice(value: Option<Value>) -> Result<(Option<ToolChoice>, Option<bool>), ApiError> {
    let Some(value) = value else {
        return Ok((None, None));
    };
    let expected = || {
        wrong(
            "tool_choice",
            "an object with `type` auto, any, tool or none",
        )
    };
    let Value::Object(c) = value else {
        return Err(expected());
    };
    only(
        &c,
        &["type", "name", "disable_parallel_tool_use"],
        "tool_choice",
    )?;
    let choice = match c.get("type").and_then(Value::as_str) {
        Some("auto") => ToolChoice::Auto,
        Some("any") => ToolChoice::Required,
        Some("none") => ToolChoice::None,
        Some("tool") => ToolChoice::Function(string_at(&c, "name", "tool_choice")?),
        _ => return Err(expected()),
    };
    let parallel = match c.get("disable_parallel_tool_use") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(disable)) => Some(!disable),
        Some(_) => {
            return Err(wrong(
                "tool_choice.disable_parallel_tool_use",
                "true or false",
            ));
        }
    };
    Ok((Some(choice), parallel))
}

impl Body {
    pub fn into_request(self) -> Result<ChatRequest, ApiError> {
        let mut body = self.0;
        let b = &mut body;
        let mut messages = Vec::new();
        if let Some(s) = take(b, "system") {
            messages.push(system(s)?);
        }
        match take(b, "messages") {
            None => return Err(ApiError::invalid_param("messages", "messages is required")),
            Some(Value::Array(items)) => {
                for (i, m) in items.into_iter().enumerate() {
                    message(i, m, &mut messages)?;
                }
            }
            Some(_) => return Err(wrong("messages", "a list of messages")),
        }
        let Some(max_tokens) = take_u32(b, "max_tokens")? else {
            return Err(ApiError::invalid_param(
                "max_tokens",
                "max_tokens is required",
            ));
        };
        let stop = match take(b, "stop_sequences") {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    _ => Err(wrong("stop_sequences", "a list of strings")),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(wrong("stop_sequences", "a list of strings")),
        };
        // Anthropic's `metadata` holds `user_id` only: the domain's `user`.
        let user = match take_object(b, "metadata")? {
            None => None,
            Some(m) => {
                only(&m, &["user_id"], "metadata")?;
                match m.get("user_id") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(u)) => Some(u.clone()),
                    Some(_) => return Err(wrong("metadata.user_id", "a string")),
                }
            }
        };
        if let Some(k) = b.get("top_k")
            && !k.is_null()
            && k.as_u64().is_none()
        {
            return Err(wrong("top_k", "a non-negative integer"));
        }
        let (tool_choice, parallel_tool_calls) = tool_choice(take(b, "tool_choice"))?;
        let req = ChatRequest {
            messages,
            model: take_string(b, "model")?,
            max_tokens: Some(max_tokens),
            temperature: take_f64(b, "temperature")?,
            top_p: take_f64(b, "top_p")?,
            stop,
            user,
            stream: take_bool(b, "stream")?.unwrap_or(false),
            params: Params {
                tools: tools(take(b, "tools"))?,
                tool_choice,
                parallel_tool_calls,
                // `top_k`, `thinking`, `service_tier` and fields added later:
                // Anthropic-kind targets get them unchanged.
                anthropic: body,
                ..Params::default()
            },
        };
        Ok(req)
    }
}

/// Anthropic's stop reason for any provider's finish reason.
fn stop_reason(reason: &FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "end_turn",
        FinishReason::StopSequence(_) => "stop_sequence",
        FinishReason::Length => "max_tokens",
        FinishReason::ToolCalls(_) => "tool_use",
        FinishReason::ContentFilter(_) => "refusal",
        FinishReason::Other(word) if word == "pause_turn" => "pause_turn",
        FinishReason::Other(_) => "end_turn",
    }
}

fn stop_sequence(reason: &FinishReason) -> Option<&str> {
    match reason {
        FinishReason::StopSequence(s) => s.as_deref(),
        _ => None,
    }
}

#[derive(Serialize)]
struct UsageOut {
    input_tokens: u32,
    output_tokens: u32,
}

impl From<Usage> for UsageOut {
    fn from(u: Usage) -> Self {
        Self {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
        }
    }
}

#[derive(Serialize)]
struct MessageOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<Value>,
    stop_reason: Option<&'static str>,
    stop_sequence: Option<&'a str>,
    usage: UsageOut,
}

/// A tool call's arguments as Anthropic's `input` object (`""` is `{}`, as
/// OpenAI models write it for tools without parameters).
fn input(arguments: &str) -> Option<Value> {
    if arguments.trim().is_empty() {
        return Some(Value::Object(Map::new()));
    }
    serde_json::from_str::<Value>(arguments)
        .ok()
        .filter(Value::is_object)
}

fn content(c: &Completion) -> Result<Vec<Value>, ApiError> {
    c.blocks
        .iter()
        .filter_map(|b| match b {
            Block::Text(text) => Some(Ok(json!({"type": "text", "text": text}))),
            Block::ToolCall {
                id,
                name,
                arguments,
            } => Some(match input(arguments) {
                Some(input) => {
                    Ok(json!({"type": "tool_use", "id": id, "name": name, "input": input}))
                }
                None => {
                    tracing::warn!("a provider's tool arguments are not a JSON object");
                    Err(ApiError::UpstreamError)
                }
            }),
            Block::Image { .. } | Block::ToolResult { .. } => None,
        })
        .collect()
}

fn message_id() -> String {
    format!("msg_{}", uuid::Uuid::new_v4().simple())
}

pub async fn messages(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<Body>,
) -> Result<Response, dispatch::Refusal> {
    let req = body.into_request()?;
    let id = message_id();
    if !req.stream {
        let answer = dispatch::complete(&state, &req, &ctx).await?;
        let c = &answer.completion;
        let out = MessageOut {
            id: &id,
            kind: "message",
            role: "assistant",
            model: &answer.served.model,
            content: content(c)?,
            stop_reason: Some(stop_reason(&c.finish_reason)),
            stop_sequence: stop_sequence(&c.finish_reason),
            usage: c.usage.into(),
        };
        return Ok(finish(Json(out).into_response(), &answer.served));
    }

    let streaming = dispatch::stream(&state, &req, &ctx).await?;
    let start = MessageOut {
        id: &id,
        kind: "message",
        role: "assistant",
        model: &streaming.served.model,
        content: Vec::new(),
        stop_reason: None,
        stop_sequence: None,
        usage: Usage::default().into(),
    };
    let opening = [
        event(
            "message_start",
            &json!({"type": "message_start", "message": start}),
        ),
        event("ping", &json!({"type": "ping"})),
    ];
    let mut blocks = Blocks::default();
    let events = streaming.events.flat_map(move |e| {
        let mut out = Vec::new();
        blocks.next(e, &mut out);
        futures_util::stream::iter(out.into_iter().map(Ok::<_, Infallible>))
    });
    let events = futures_util::stream::iter(opening.map(Ok::<_, Infallible>)).chain(events);
    let response = Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response();
    Ok(finish(response, &streaming.served))
}

fn event(name: &'static str, data: &impl Serialize) -> Event {
    super::json_event(name, data)
}

/// The data of the events sent for every piece of a stream, written from
/// borrowed text rather than built as `json!` trees first. Fields are in the
/// order `json!`'s sorted map wrote them, so the bytes are as they were.
#[derive(Serialize)]
struct BlockDelta<D> {
    delta: D,
    index: u32,
    #[serde(rename = "type")]
    kind: &'static str,
}

impl<D> BlockDelta<D> {
    fn new(index: u32, delta: D) -> Self {
        Self {
            delta,
            index,
            kind: "content_block_delta",
        }
    }
}

#[derive(Serialize)]
struct TextDelta<'a> {
    text: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct JsonDelta<'a> {
    partial_json: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct BlockStop {
    index: u32,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// A tool call the stream has seen.
enum Call {
    /// Waiting while another block is open: its pieces so far.
    Pending {
        id: String,
        name: String,
        arguments: String,
    },
    /// Streaming live as this content block.
    Open(u32),
    /// Its block was stopped.
    Closed,
}

/// Turns domain stream events into Anthropic content blocks, one open at a
/// time as Anthropic streams them: text opens a text block; a tool call opens
/// a `tool_use` block when nothing else is open, else waits (OpenAI upstreams
/// may interleave the pieces of parallel calls) and is sent whole, in order,
/// at the end. The waiting pieces are bounded by the upstream answer limit.
#[derive(Default)]
struct Blocks {
    /// The next content block's index.
    next: u32,
    /// The open block: its index, and the tool call it is, if one.
    open: Option<(u32, Option<u32>)>,
    calls: BTreeMap<u32, Call>,
    done: bool,
}

impl Blocks {
    fn close(&mut self, out: &mut Vec<Event>) {
        if let Some((index, call)) = self.open.take() {
            let stop = BlockStop {
                index,
                kind: "content_block_stop",
            };
            out.push(event("content_block_stop", &stop));
            if let Some(call) = call {
                self.calls.insert(call, Call::Closed);
            }
        }
    }

    fn start(&mut self, block: Value, call: Option<u32>, out: &mut Vec<Event>) -> u32 {
        let index = self.next;
        self.next += 1;
        self.open = Some((index, call));
        out.push(event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        ));
        index
    }

    fn json_delta(index: u32, piece: &str, out: &mut Vec<Event>) {
        if !piece.is_empty() {
            let delta = JsonDelta {
                partial_json: piece,
                kind: "input_json_delta",
            };
            out.push(event("content_block_delta", &BlockDelta::new(index, delta)));
        }
    }

    fn open_call(
        &mut self,
        call: u32,
        id: &str,
        name: &str,
        arguments: &str,
        out: &mut Vec<Event>,
    ) {
        let block = json!({"type": "tool_use", "id": id, "name": name, "input": {}});
        let index = self.start(block, Some(call), out);
        self.calls.insert(call, Call::Open(index));
        Self::json_delta(index, arguments, out);
    }

    fn fail(&mut self, error: &ApiError, out: &mut Vec<Event>) {
        self.done = true;
        let data = anthropic_error_json(error.status(), &error.info(), None);
        out.push(Event::default().event("error").data(data));
    }

    fn next(&mut self, event_in: Result<StreamEvent, ProviderError>, out: &mut Vec<Event>) {
        if self.done {
            return;
        }
        match event_in {
            // An OpenAI-kind upstream's own chunk fields: the Messages format has no place for them.
            Ok(StreamEvent::Extra { .. }) => {}
            Ok(StreamEvent::Delta(text)) => {
                let index = match self.open {
                    Some((index, None)) => index,
                    _ => {
                        self.close(out);
                        self.start(json!({"type": "text", "text": ""}), None, out)
                    }
                };
                let delta = TextDelta {
                    text: &text,
                    kind: "text_delta",
                };
                out.push(event("content_block_delta", &BlockDelta::new(index, delta)));
            }
            Ok(StreamEvent::ToolCall {
                index: call,
                id,
                name,
                arguments,
            }) => match self.calls.get_mut(&call) {
                Some(Call::Open(index)) => Self::json_delta(*index, &arguments, out),
                Some(Call::Pending { arguments: a, .. }) => a.push_str(&arguments),
                Some(Call::Closed) => {
                    tracing::warn!(
                        call,
                        "a tool call's arguments continued after text; the stream cannot carry them"
                    );
                    self.fail(&ApiError::UpstreamError, out);
                }
                None => {
                    let id = id.unwrap_or_default();
                    let name = name.unwrap_or_default();
                    match self.open {
                        Some((_, Some(_))) => {
                            self.calls.insert(
                                call,
                                Call::Pending {
                                    id,
                                    name,
                                    arguments,
                                },
                            );
                        }
                        _ => {
                            self.close(out);
                            self.open_call(call, &id, &name, &arguments, out);
                        }
                    }
                }
            },
            Ok(StreamEvent::Finished {
                finish_reason,
                usage,
            }) => {
                self.close(out);
                let pending: Vec<(u32, String, String, String)> = std::mem::take(&mut self.calls)
                    .into_iter()
                    .filter_map(|(call, c)| match c {
                        Call::Pending {
                            id,
                            name,
                            arguments,
                        } => Some((call, id, name, arguments)),
                        _ => None,
                    })
                    .collect();
                for (call, id, name, arguments) in pending {
                    self.open_call(call, &id, &name, &arguments, out);
                    self.close(out);
                }
                out.push(event(
                    "message_delta",
                    &json!({"type": "message_delta",
                            "delta": {"stop_reason": stop_reason(&finish_reason),
                                      "stop_sequence": stop_sequence(&finish_reason)},
                            "usage": {"input_tokens": usage.input_tokens,
                                      "output_tokens": usage.output_tokens}}),
                ));
                out.push(event("message_stop", &json!({"type": "message_stop"})));
                self.done = true;
            }
            Err(error) => self.fail(&super::stream_error(&error), out),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn stream_event_data_is_byte_for_byte_what_the_json_trees_wrote() {
        let text = "a \"quoted\"\nline, é and </script>";
        let delta = TextDelta {
            text,
            kind: "text_delta",
        };
        assert_eq!(
            serde_json::to_string(&BlockDelta::new(3, delta)).unwrap(),
            json!({"type": "content_block_delta", "index": 3,
                   "delta": {"type": "text_delta", "text": text}})
            .to_string()
        );
        let delta = JsonDelta {
            partial_json: "{\"city\": \"Lis",
            kind: "input_json_delta",
        };
        assert_eq!(
            serde_json::to_string(&BlockDelta::new(0, delta)).unwrap(),
            json!({"type": "content_block_delta", "index": 0,
                   "delta": {"type": "input_json_delta", "partial_json": "{\"city\": \"Lis"}})
            .to_string()
        );
        let stop = BlockStop {
            index: 7,
            kind: "content_block_stop",
        };
        assert_eq!(
            serde_json::to_string(&stop).unwrap(),
            json!({"type": "content_block_stop", "index": 7}).to_string()
        );
    }

    #[test]
    fn finish_reasons_map_to_anthropics_stop_reasons() {
        assert_eq!(stop_reason(&FinishReason::Stop), "end_turn");
        assert_eq!(stop_reason(&FinishReason::Length), "max_tokens");
        assert_eq!(
            stop_reason(&FinishReason::ToolCalls("tool_calls")),
            "tool_use"
        );
        assert_eq!(
            stop_reason(&FinishReason::StopSequence(Some("END".into()))),
            "stop_sequence"
        );
        assert_eq!(stop_reason(&FinishReason::other("weird")), "end_turn");
    }
}
