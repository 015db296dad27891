//! Anthropic Messages API: `system` extraction, required `max_tokens`,
//! `x-api-key` + `anthropic-version`, its SSE event types, usage and stop reasons.

use std::collections::VecDeque;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use reqwest::header::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::http::{Endpoint, json_body, json_error};
use super::sse::{Translate, events};
use super::{EventStream, Feature, Provider, ProviderError, ProviderRequest};
use crate::chat::{
    AnswerExtra, Block, Completion, FinishReason, ImageSource, Message, Params, Role, StreamEvent,
    ToolChoice, ToolOutput, Usage,
};
use crate::config::HttpApi;

/// The API version this translation speaks.
const ANTHROPIC_VERSION: &str = "2023-06-01";
/// Anthropic requires `max_tokens`; sent when neither the client nor the model sets one.
pub const DEFAULT_MAX_TOKENS: u32 = 1024;

pub struct Anthropic {
    endpoint: Endpoint,
}

impl Anthropic {
    pub fn new(config: &HttpApi, client: super::Client) -> Self {
        let x_api_key = |key: &str| (crate::headers::API_KEY, key.to_owned());
        let mut fixed = HeaderMap::new();
        fixed.insert(
            "anthropic-version",
            HeaderValue::from_static(ANTHROPIC_VERSION),
        );
        Self {
            endpoint: Endpoint::new(client, config, "messages", x_api_key, fixed),
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop_sequences: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Metadata<'a>>,
    stream: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<WireChoice<'a>>,
    /// The Messages route's fields without a domain equivalent (`top_k`, …), unchanged.
    #[serde(flatten)]
    extra: &'a serde_json::Map<String, Value>,
}

/// A function as Anthropic describes it: `input_schema` is OpenAI's `parameters`.
#[derive(Serialize)]
struct WireTool<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    input_schema: Value,
}

#[derive(Serialize)]
struct WireChoice<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    /// OpenAI's `parallel_tool_calls: false`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    disable_parallel_tool_use: bool,
}

/// `tools` and `tool_choice` in Anthropic's terms: `required` → `any`, a named
/// function → `tool`, `none` → no tools at all.
fn tools(p: &Params) -> (Vec<WireTool<'_>>, Option<WireChoice<'_>>) {
    if p.tools.is_empty() || p.tool_choice == Some(ToolChoice::None) {
        return (Vec::new(), None);
    }
    let tools = p
        .tools
        .iter()
        .map(|t| WireTool {
            name: &t.name,
            description: t.description.as_deref(),
            input_schema: t
                .parameters
                .clone()
                .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
        })
        .collect();
    let (kind, name) = match &p.tool_choice {
        Some(ToolChoice::Required) => ("any", None),
        Some(ToolChoice::Function(name)) => ("tool", Some(name.as_str())),
        Some(ToolChoice::Auto | ToolChoice::Other(_) | ToolChoice::None) | None => ("auto", None),
    };
    let disable_parallel_tool_use = p.parallel_tool_calls == Some(false);
    let choice = (p.tool_choice.is_some() || disable_parallel_tool_use).then_some(WireChoice {
        kind,
        name,
        disable_parallel_tool_use,
    });
    (tools, choice)
}

/// The request's fields Anthropic has no equivalent for, dropped for this
/// target (the contract's "translated"): sampling hints and unknown fields.
fn dropped(p: &Params) -> Vec<&str> {
    let mut out: Vec<&str> = [
        ("seed", p.seed.is_some()),
        ("frequency_penalty", p.frequency_penalty.is_some()),
        ("presence_penalty", p.presence_penalty.is_some()),
        ("logit_bias", p.logit_bias.is_some()),
        ("metadata", p.metadata.is_some()),
        (
            "parallel_tool_calls",
            p.parallel_tool_calls.is_some() && p.tools.is_empty(),
        ),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    out.extend(p.extra.keys().map(String::as_str));
    out.extend(p.stream_options.keys().map(String::as_str));
    out
}

/// Message fields Anthropic has no equivalent for (OpenAI's `name`, …), as `messages[i].field`.
fn dropped_message_fields(messages: &[Message]) -> Vec<String> {
    messages
        .iter()
        .enumerate()
        .flat_map(|(i, m)| m.extra.keys().map(move |k| format!("messages[{i}].{k}")))
        .collect()
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: Content<'a>,
}

/// A string when the client sent one, content blocks otherwise.
#[derive(Serialize)]
#[serde(untagged)]
enum Content<'a> {
    Text(&'a str),
    Blocks(Vec<WireBlock<'a>>),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireBlock<'a> {
    Text {
        text: &'a str,
    },
    Image {
        source: Source<'a>,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Value,
    },
    ToolResult {
        tool_use_id: &'a str,
        content: Content<'a>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Source<'a> {
    Base64 { media_type: &'a str, data: &'a str },
    Url { url: &'a str },
}

fn blocks(blocks: &[Block]) -> Vec<WireBlock<'_>> {
    blocks
        .iter()
        .map(|b| match b {
            Block::Text(text) => WireBlock::Text { text },
            Block::Image { source, .. } => WireBlock::Image {
                source: match source {
                    ImageSource::Url(url) => Source::Url { url },
                    ImageSource::Base64 { media_type, data } => Source::Base64 { media_type, data },
                },
            },
            Block::ToolCall {
                id,
                name,
                arguments,
            } => WireBlock::ToolUse {
                id,
                name,
                // Anthropic wants an object; OpenAI clients may send "" for no arguments.
                input: serde_json::from_str::<Value>(arguments)
                    .ok()
                    .filter(Value::is_object)
                    .unwrap_or_else(|| Value::Object(serde_json::Map::new())),
            },
            Block::ToolResult {
                call_id,
                content,
                is_error,
            } => WireBlock::ToolResult {
                tool_use_id: call_id,
                content: match content {
                    ToolOutput::Text(text) => Content::Text(text),
                    ToolOutput::Blocks(inner) => Content::Blocks(self::blocks(inner)),
                },
                is_error: *is_error,
            },
        })
        .collect()
}

/// System messages as the top-level `system` text, joined by blank lines.
fn system(messages: &[Message]) -> Option<String> {
    let system: Vec<String> = messages
        .iter()
        .filter(|m| m.role == Role::System)
        .map(Message::text)
        .collect();
    (!system.is_empty()).then(|| system.join("\n\n"))
}

/// The conversation in Anthropic's turns: consecutive tool messages (the
/// results of parallel calls) become one user turn of `tool_result` blocks,
/// as Anthropic wants them and as the Messages route received them.
fn turns(messages: &[Message]) -> Vec<WireMessage<'_>> {
    let mut out: Vec<WireMessage<'_>> = Vec::with_capacity(messages.len());
    let mut after_tool = false;
    for m in messages.iter().filter(|m| m.role != Role::System) {
        let joins = after_tool && m.role == Role::Tool;
        after_tool = m.role == Role::Tool;
        if joins && let Some(last) = out.last_mut() {
            let mut merged = match std::mem::replace(&mut last.content, Content::Blocks(vec![])) {
                Content::Blocks(b) => b,
                Content::Text(text) => vec![WireBlock::Text { text }],
            };
            merged.extend(blocks(&m.blocks));
            last.content = Content::Blocks(merged);
            continue;
        }
        out.push(WireMessage::new(m));
    }
    out
}

impl<'a> WireMessage<'a> {
    fn new(m: &'a Message) -> Self {
        Self {
            // Anthropic has no tool role: tool results are user turns of `tool_result` blocks.
            role: match m.role {
                Role::Tool => Role::User.as_str(),
                role => role.as_str(),
            },
            content: match m.as_string() {
                Some(text) => Content::Text(text),
                None => Content::Blocks(blocks(&m.blocks)),
            },
        }
    }
}

/// Anthropic's stop reasons, mapped once; unknown ones are kept (cut short) for native answers.
fn finish_reason(word: &str) -> FinishReason {
    match word {
        "end_turn" => FinishReason::Stop,
        "stop_sequence" => FinishReason::StopSequence(None),
        "max_tokens" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls("tool_use"),
        "refusal" => FinishReason::ContentFilter("refusal"),
        other => FinishReason::other(other),
    }
}

/// The stop sequence that matched, on a `stop_sequence` reason.
fn with_sequence(reason: FinishReason, sequence: Option<String>) -> FinishReason {
    match reason {
        FinishReason::StopSequence(None) => FinishReason::StopSequence(sequence),
        other => other,
    }
}

#[derive(Serialize)]
struct Metadata<'a> {
    user_id: &'a str,
}

impl<'a> Body<'a> {
    /// System messages go to the top-level `system` field, joined by blank lines.
    fn new(req: &'a ProviderRequest, stream: bool) -> Self {
        let dropped = dropped(&req.params);
        let in_messages = dropped_message_fields(&req.messages);
        if !dropped.is_empty() || !in_messages.is_empty() {
            tracing::debug!(fields = ?dropped, message_fields = ?in_messages, "fields without an Anthropic equivalent were not sent");
        }
        let (tools, tool_choice) = tools(&req.params);
        Self {
            model: &req.model,
            max_tokens: req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            system: system(&req.messages),
            messages: turns(&req.messages),
            temperature: req.temperature,
            top_p: req.top_p,
            stop_sequences: &req.stop,
            metadata: req.user.as_deref().map(|user_id| Metadata { user_id }),
            stream,
            tools,
            tool_choice,
            extra: &req.params.anthropic,
        }
    }
}

#[derive(Deserialize)]
struct Response {
    content: Vec<ResponseBlock>,
    #[serde(default)]
    stop_reason: Option<String>,
    /// Which stop sequence matched (`stop_reason: stop_sequence`).
    #[serde(default)]
    stop_sequence: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct ResponseBlock {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    input: Option<Value>,
}

#[derive(Deserialize, Clone, Copy, Default)]
struct WireUsage {
    #[serde(default)]
    input_tokens: u32,
    #[serde(default)]
    output_tokens: u32,
}

impl Response {
    fn into_completion(self) -> Completion {
        let blocks = self
            .content
            .into_iter()
            .filter_map(|b| match b.kind.as_str() {
                "text" => b.text.map(Block::Text),
                "tool_use" => Some(Block::ToolCall {
                    id: b.id,
                    name: b.name,
                    arguments: b.input.map_or_else(|| "{}".into(), |v| v.to_string()),
                }),
                // thinking, server tool results, and types added later.
                _ => None,
            })
            .collect();
        let usage = self.usage.unwrap_or_default();
        Completion {
            blocks,
            finish_reason: with_sequence(
                self.stop_reason
                    .as_deref()
                    .map_or(FinishReason::Stop, finish_reason),
                self.stop_sequence,
            ),
            usage: Usage {
                input_tokens: usage.input_tokens,
                output_tokens: usage.output_tokens,
            },
            extra: AnswerExtra::default(),
        }
    }
}

/// Reads `message_start` … `content_block_delta` … `message_delta` … `message_stop`.
#[derive(Default)]
struct EventReader {
    stop_reason: Option<FinishReason>,
    usage: Usage,
    /// Tool-use blocks seen so far: the next one's OpenAI index.
    tools: u32,
    /// The open tool-use block: its Anthropic block index and its tool index
    /// (Anthropic streams one block at a time).
    open_tool: Option<(u64, u32)>,
}

fn field<'v>(v: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(v, |v, key| v.get(key))
}

fn count(v: &Value, path: &[&str]) -> Option<u32> {
    field(v, path)
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
}

impl Translate for EventReader {
    fn event(
        &mut self,
        name: &str,
        data: &str,
        out: &mut VecDeque<StreamEvent>,
    ) -> Result<bool, ProviderError> {
        let v: Value =
            serde_json::from_str(data).map_err(|e| json_error("stream event", &e, data.len()))?;
        let kind = v.get("type").and_then(Value::as_str).unwrap_or(name);
        match kind {
            "message_start" => {
                if let Some(n) = count(&v, &["message", "usage", "input_tokens"]) {
                    self.usage.input_tokens = n;
                }
            }
            "content_block_start" => {
                let block = field(&v, &["content_block"]);
                if block.and_then(|b| b.get("type")).and_then(Value::as_str) == Some("tool_use") {
                    let text = |key: &str| {
                        block
                            .and_then(|b| b.get(key))
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    };
                    let index = self.tools;
                    self.tools += 1;
                    let block_index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                    self.open_tool = Some((block_index, index));
                    out.push_back(StreamEvent::ToolCall {
                        index,
                        id: text("id"),
                        name: text("name"),
                        arguments: String::new(),
                    });
                }
            }
            "content_block_delta" => {
                if let Some(text) = field(&v, &["delta", "text"])
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                {
                    out.push_back(StreamEvent::Delta(text.to_owned()));
                }
                if let Some(json) = field(&v, &["delta", "partial_json"])
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                {
                    let block_index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                    let Some((_, index)) = self.open_tool.filter(|(b, _)| *b == block_index) else {
                        return Err(ProviderError::Decode(
                            "input_json_delta outside a tool_use block".into(),
                        ));
                    };
                    out.push_back(StreamEvent::ToolCall {
                        index,
                        id: None,
                        name: None,
                        arguments: json.to_owned(),
                    });
                }
            }
            "content_block_stop" => self.open_tool = None,
            "message_delta" => {
                if let Some(reason) = field(&v, &["delta", "stop_reason"]).and_then(Value::as_str) {
                    let sequence = field(&v, &["delta", "stop_sequence"])
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    self.stop_reason = Some(with_sequence(finish_reason(reason), sequence));
                }
                if let Some(n) = count(&v, &["usage", "output_tokens"]) {
                    self.usage.output_tokens = n;
                }
                if let Some(n) = count(&v, &["usage", "input_tokens"]) {
                    self.usage.input_tokens = n;
                }
            }
            "message_stop" => return Ok(true),
            "error" => {
                let status = match field(&v, &["error", "type"]).and_then(Value::as_str) {
                    Some("overloaded_error") => 529,
                    Some("rate_limit_error") => 429,
                    _ => 500,
                };
                return Err(ProviderError::Status {
                    status,
                    retry_after: None,
                    detail: None,
                });
            }
            // ping, and types added later.
            _ => {}
        }
        Ok(false)
    }

    fn finish(&mut self) -> Result<StreamEvent, ProviderError> {
        let finish_reason = self
            .stop_reason
            .take()
            .ok_or_else(|| ProviderError::Connect("stream ended before a stop reason".into()))?;
        Ok(StreamEvent::Finished {
            finish_reason,
            usage: self.usage,
        })
    }
}

impl Provider for Anthropic {
    fn complete<'a>(
        &'a self,
        req: &'a ProviderRequest,
    ) -> BoxFuture<'a, Result<Completion, ProviderError>> {
        async move {
            let response = self
                .endpoint
                .post(&req.request_id, &Body::new(req, false))
                .await?;
            Ok(json_body::<Response>(response).await?.into_completion())
        }
        .boxed()
    }

    fn stream<'a>(
        &'a self,
        req: &'a ProviderRequest,
    ) -> BoxFuture<'a, Result<EventStream, ProviderError>> {
        async move {
            let response = self
                .endpoint
                .post(&req.request_id, &Body::new(req, true))
                .await?;
            events(response, EventReader::default())
        }
        .boxed()
    }

    /// One answer per request, no output-format or log-probability control.
    fn supports(&self, feature: Feature) -> bool {
        matches!(feature, Feature::Tools | Feature::Images)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::chat::Form;

    fn request(messages: Vec<Message>) -> ProviderRequest {
        ProviderRequest::of("claude", messages)
    }

    #[test]
    fn every_block_kind_becomes_an_anthropic_content_block() {
        let req = request(vec![
            Message {
                role: Role::User,
                blocks: vec![
                    Block::Text("look".into()),
                    Block::Image {
                        source: ImageSource::Base64 {
                            media_type: "image/png".into(),
                            data: "iVBO".into(),
                        },
                        detail: None,
                    },
                    Block::Image {
                        source: ImageSource::Url("https://example.com/a.png".into()),
                        detail: Some("high".into()),
                    },
                ],
                form: Form::Parts,
                extra: Default::default(),
            },
            Message {
                role: Role::Assistant,
                blocks: vec![Block::ToolCall {
                    id: "call_1".into(),
                    name: "weather".into(),
                    arguments: r#"{"city":"Lisbon"}"#.into(),
                }],
                form: Form::Parts,
                extra: Default::default(),
            },
            Message {
                role: Role::Tool,
                blocks: vec![Block::ToolResult {
                    call_id: "call_1".into(),
                    content: ToolOutput::Text("sunny".into()),
                    is_error: false,
                }],
                form: Form::Parts,
                extra: Default::default(),
            },
        ]);
        let body = serde_json::to_value(Body::new(&req, false)).unwrap_or_default();
        assert_eq!(
            body["messages"],
            serde_json::json!([
                {"role": "user", "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
                ]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Lisbon"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"}
                ]}
            ])
        );
    }

    #[test]
    fn stop_reasons_are_mapped_once_keeping_the_native_word() {
        let native = |w: &str| finish_reason(w).native().to_owned();
        assert_eq!(native("end_turn"), "stop");
        assert_eq!(native("stop_sequence"), "stop");
        assert_eq!(native("max_tokens"), "length");
        assert_eq!(native("tool_use"), "tool_use");
        assert_eq!(
            finish_reason("tool_use"),
            FinishReason::ToolCalls("tool_use")
        );
        assert_eq!(
            finish_reason("refusal"),
            FinishReason::ContentFilter("refusal")
        );
        assert_eq!(native("pause_turn"), "pause_turn");
    }

    #[test]
    fn tool_use_blocks_in_an_answer_become_tool_calls() {
        let r: Option<Response> = serde_json::from_str(
            r#"{"content":[{"type":"text","text":"Let me check."},{"type":"tool_use","id":"toolu_1","name":"weather","input":{"city":"Lisbon"}}],"stop_reason":"tool_use"}"#,
        )
        .ok();
        let c = r.map(Response::into_completion);
        assert_eq!(
            c.map(|c| (c.blocks, c.finish_reason)),
            Some((
                vec![
                    Block::Text("Let me check.".into()),
                    Block::ToolCall {
                        id: "toolu_1".into(),
                        name: "weather".into(),
                        arguments: r#"{"city":"Lisbon"}"#.into(),
                    }
                ],
                FinishReason::ToolCalls("tool_use")
            ))
        );
    }

    #[test]
    fn system_messages_move_to_the_system_field() {
        let req = ProviderRequest {
            model: "claude".into(),
            messages: Arc::from(vec![
                Message::system_text("be brief"),
                Message::user_text("hi"),
                Message::system_text("be kind"),
            ]),
            max_tokens: None,
            temperature: None,
            top_p: None,
            stop: Arc::from(Vec::<String>::new()),
            user: Some("u1".into()),
            params: Arc::default(),
            request_id: "r".into(),
        };
        let body = serde_json::to_value(Body::new(&req, false)).unwrap_or_default();
        assert_eq!(body["system"], "be brief\n\nbe kind");
        assert_eq!(
            body["messages"],
            serde_json::json!([{"role": "user", "content": "hi"}])
        );
        assert_eq!(body["max_tokens"], DEFAULT_MAX_TOKENS);
        assert_eq!(body["metadata"]["user_id"], "u1");
    }

    #[test]
    fn stream_events_yield_text_usage_and_stop_reason() {
        let mut r = EventReader::default();
        let mut out = VecDeque::new();
        let events = [
            (
                "message_start",
                r#"{"type":"message_start","message":{"usage":{"input_tokens":7,"output_tokens":1}}}"#,
            ),
            ("ping", r#"{"type":"ping"}"#),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"lo"}}"#,
            ),
            (
                "message_delta",
                r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":2}}"#,
            ),
        ];
        for (name, data) in events {
            assert_eq!(r.event(name, data, &mut out), Ok(false));
        }
        assert_eq!(
            r.event("message_stop", r#"{"type":"message_stop"}"#, &mut out),
            Ok(true)
        );
        assert_eq!(
            out,
            VecDeque::from([
                StreamEvent::Delta("Hel".into()),
                StreamEvent::Delta("lo".into())
            ])
        );
        assert_eq!(
            r.finish(),
            Ok(StreamEvent::Finished {
                finish_reason: FinishReason::Stop,
                usage: Usage {
                    input_tokens: 7,
                    output_tokens: 2
                }
            })
        );
    }

    #[test]
    fn an_overloaded_error_event_is_retryable() {
        let mut r = EventReader::default();
        let err = r.event(
            "error",
            r#"{"type":"error","error":{"type":"overloaded_error","message":"x"}}"#,
            &mut VecDeque::new(),
        );
        assert!(matches!(
            err,
            Err(ProviderError::Status { status: 529, .. })
        ));
    }
}
