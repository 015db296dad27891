//! OpenAI Chat Completions (and any OpenAI-compatible API): request body,
//! response and stream-chunk translation.

use std::collections::VecDeque;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use reqwest::header::{AUTHORIZATION, HeaderMap};
use serde::de::{self, MapAccess};
use serde::{Deserialize, Serialize};

use super::http::{Endpoint, json_body, json_error};
use super::known::{Known, deserialize_known};
use super::sse::{Translate, events};
use serde_json::{Map, Value};

use super::{EventStream, Feature, Provider, ProviderError, ProviderRequest};
use crate::chat::{
    AnswerExtra, Block, Completion, FinishReason, ImageSource, MaxTokensField, Message,
    StreamEvent, ToolChoice, ToolOutput, Usage,
};
use crate::config::HttpApi;

pub struct OpenAi {
    endpoint: Endpoint,
}

impl OpenAi {
    pub fn new(config: &HttpApi, client: super::Client) -> Self {
        let bearer = |key: &str| (AUTHORIZATION, format!("Bearer {key}"));
        Self {
            endpoint: Endpoint::new(client, config, "chat/completions", bearer, HeaderMap::new()),
        }
    }
}

/// The upstream request body (public for `benches/hot_path.rs`): the fields
/// chatgate owns, the typed parameters, then every other field the client
/// sent, unchanged.
#[derive(Serialize)]
pub struct Body<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logit_bias: Option<&'a Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_logprobs: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Value>,
    /// The client's tool objects as it sent them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<&'a Value>,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

/// `include_usage` is forced on (streamed tokens are counted); the client's
/// other stream options ride along.
#[derive(Serialize)]
struct StreamOptions<'a> {
    include_usage: bool,
    #[serde(flatten)]
    rest: &'a Map<String, Value>,
}

fn tool_choice(choice: &ToolChoice) -> Value {
    match choice {
        ToolChoice::None => Value::from("none"),
        ToolChoice::Auto => Value::from("auto"),
        ToolChoice::Required => Value::from("required"),
        ToolChoice::Function(name) => {
            serde_json::json!({"type": "function", "function": {"name": name}})
        }
        ToolChoice::Other(raw) => raw.clone(),
    }
}

/// A message in OpenAI's shape: a string stays a string, parts stay parts.
#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    /// `null` for an assistant turn of tool calls only.
    content: Option<Content<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<WireCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
    /// The client's other message fields (`name`, …), unchanged.
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Content<'a> {
    Text(&'a str),
    Parts(Vec<Part<'a>>),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Part<'a> {
    Text { text: &'a str },
    ImageUrl { image_url: ImageUrl<'a> },
}

#[derive(Serialize)]
struct ImageUrl<'a> {
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
}

#[derive(Serialize)]
struct WireCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireFunction<'a>,
}

#[derive(Serialize)]
struct WireFunction<'a> {
    name: &'a str,
    arguments: &'a str,
}

/// Text and images as content parts; tool calls and results live elsewhere in OpenAI's shape.
fn parts(blocks: &[Block]) -> Vec<Part<'_>> {
    blocks
        .iter()
        .filter_map(|b| match b {
            Block::Text(text) => Some(Part::Text { text }),
            Block::Image { source, detail } => Some(Part::ImageUrl {
                image_url: ImageUrl {
                    url: match source {
                        ImageSource::Url(url) => url.clone(),
                        ImageSource::Base64 { media_type, data } => {
                            format!("data:{media_type};base64,{data}")
                        }
                    },
                    detail: detail.as_deref(),
                },
            }),
            Block::ToolCall { .. } | Block::ToolResult { .. } => None,
        })
        .collect()
}

impl<'a> WireMessage<'a> {
    fn new(m: &'a Message) -> Self {
        let tool_calls: Vec<WireCall<'a>> = m
            .blocks
            .iter()
            .filter_map(|b| match b {
                Block::ToolCall {
                    id,
                    name,
                    arguments,
                } => Some(WireCall {
                    id,
                    kind: "function",
                    function: WireFunction { name, arguments },
                }),
                _ => None,
            })
            .collect();
        // A tool message carries one result: its call id, and its content as the message's.
        let result = m.blocks.iter().find_map(|b| match b {
            Block::ToolResult {
                call_id, content, ..
            } => Some((call_id.as_str(), content)),
            _ => None,
        });
        let content = match (m.as_string(), result) {
            (Some(text), _) => Some(Content::Text(text)),
            (None, Some((_, ToolOutput::Text(text)))) => Some(Content::Text(text)),
            (None, Some((_, ToolOutput::Blocks(blocks)))) => Some(Content::Parts(parts(blocks))),
            (None, None) => {
                // Tool calls alone: OpenAI's shape is `content: null`.
                let parts = parts(&m.blocks);
                (!parts.is_empty() || tool_calls.is_empty()).then_some(Content::Parts(parts))
            }
        };
        Self {
            role: m.role.as_str(),
            content,
            tool_calls,
            tool_call_id: result.map(|(id, _)| id),
            extra: &m.extra,
        }
    }
}

/// OpenAI's finish words, mapped once; unknown ones are kept (cut short) for native answers.
fn finish_reason(word: &str) -> FinishReason {
    match word {
        "stop" => FinishReason::Stop,
        "length" => FinishReason::Length,
        "tool_calls" => FinishReason::ToolCalls("tool_calls"),
        "content_filter" => FinishReason::ContentFilter("content_filter"),
        other => FinishReason::other(other),
    }
}

impl<'a> Body<'a> {
    pub fn new(req: &'a ProviderRequest, stream: bool) -> Self {
        let p = &*req.params;
        let failed_results = req
            .messages
            .iter()
            .flat_map(|m| &m.blocks)
            .any(|b| matches!(b, Block::ToolResult { is_error: true, .. }));
        if !p.anthropic.is_empty() || failed_results {
            // Anthropic-only hints (`top_k`, …) and `is_error` have no OpenAI equivalent.
            let fields: Vec<&str> = p.anthropic.keys().map(String::as_str).collect();
            tracing::debug!(
                ?fields,
                is_error = failed_results,
                "fields without an OpenAI equivalent were not sent"
            );
        }
        let (max_tokens, max_completion_tokens) = match p.max_tokens_field {
            MaxTokensField::MaxTokens => (req.max_tokens, None),
            MaxTokensField::MaxCompletionTokens => (None, req.max_tokens),
        };
        Self {
            model: &req.model,
            messages: req.messages.iter().map(WireMessage::new).collect(),
            max_tokens,
            max_completion_tokens,
            temperature: req.temperature,
            top_p: req.top_p,
            stop: &req.stop,
            user: req.user.as_deref(),
            stream,
            // Ask for usage in the last chunk, so streamed tokens are counted too.
            stream_options: stream.then_some(StreamOptions {
                include_usage: true,
                rest: &p.stream_options,
            }),
            seed: p.seed,
            frequency_penalty: p.frequency_penalty,
            presence_penalty: p.presence_penalty,
            logit_bias: p.logit_bias.as_ref(),
            response_format: p.response_format.as_ref(),
            n: p.n,
            logprobs: p.logprobs,
            top_logprobs: p.top_logprobs,
            metadata: p.metadata.as_ref(),
            parallel_tool_calls: p.parallel_tool_calls,
            tool_choice: p.tool_choice.as_ref().map(tool_choice),
            tools: p.tools.iter().map(|t| &t.raw).collect(),
            extra: &p.extra,
        }
    }
}

/// A whole upstream answer (public for `benches/hot_path.rs`). Fields this
/// gateway does not read are kept, to be passed through to the OpenAI route.
#[derive(Default)]
pub struct Response {
    choices: Vec<Choice>,
    /// `choices` was there (it is required).
    has_choices: bool,
    usage: Option<WireUsage>,
    extra: Map<String, Value>,
}

impl Known for Response {
    const WHAT: &'static str = "a chat.completion object";
    fn field<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
        match key {
            "choices" => {
                self.choices = map.next_value()?;
                self.has_choices = true;
            }
            "usage" => self.usage = map.next_value()?,
            // Ours on the way out (the client sees chatgate's id, model and time).
            "id" | "object" | "created" | "model" => skip(map)?,
            _ => return Ok(false),
        }
        Ok(true)
    }
    fn rest(&mut self) -> &mut Map<String, Value> {
        &mut self.extra
    }
    fn done<E: de::Error>(self) -> Result<Self, E> {
        // `choices` is required; an answer without it is unusable, as before.
        if self.has_choices {
            Ok(self)
        } else {
            Err(E::missing_field("choices"))
        }
    }
}

#[derive(Default)]
struct Choice {
    /// `None` only until read: the field is required.
    message: Option<ResponseMessage>,
    finish_reason: Option<String>,
    extra: Map<String, Value>,
}

impl Known for Choice {
    const WHAT: &'static str = "a choice";
    fn field<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
        match key {
            "message" => self.message = Some(map.next_value()?),
            "finish_reason" => self.finish_reason = map.next_value()?,
            "index" => skip(map)?,
            _ => return Ok(false),
        }
        Ok(true)
    }
    fn rest(&mut self) -> &mut Map<String, Value> {
        &mut self.extra
    }
    fn done<E: de::Error>(self) -> Result<Self, E> {
        if self.message.is_some() {
            Ok(self)
        } else {
            Err(E::missing_field("message"))
        }
    }
}

#[derive(Default)]
struct ResponseMessage {
    content: Option<String>,
    tool_calls: Option<Vec<ResponseCall>>,
    extra: Map<String, Value>,
}

impl Known for ResponseMessage {
    const WHAT: &'static str = "a message";
    fn field<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
        match key {
            "content" => self.content = map.next_value()?,
            "tool_calls" => self.tool_calls = map.next_value()?,
            "role" => skip(map)?,
            _ => return Ok(false),
        }
        Ok(true)
    }
    fn rest(&mut self) -> &mut Map<String, Value> {
        &mut self.extra
    }
}

#[derive(Deserialize)]
struct ResponseCall {
    #[serde(default)]
    id: String,
    #[serde(default)]
    function: ResponseFunction,
}

#[derive(Deserialize, Default)]
struct ResponseFunction {
    #[serde(default)]
    name: String,
    #[serde(default)]
    arguments: String,
}

#[derive(Default)]
struct WireUsage {
    prompt_tokens: u32,
    completion_tokens: u32,
    /// `prompt_tokens_details`, `completion_tokens_details`, …
    extra: Map<String, Value>,
}

impl Known for WireUsage {
    const WHAT: &'static str = "a usage object";
    fn field<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
        match key {
            "prompt_tokens" => self.prompt_tokens = map.next_value()?,
            "completion_tokens" => self.completion_tokens = map.next_value()?,
            "total_tokens" => skip(map)?,
            _ => return Ok(false),
        }
        Ok(true)
    }
    fn rest(&mut self) -> &mut Map<String, Value> {
        &mut self.extra
    }
}

/// Reads a field's value without keeping it.
fn skip<'de, A: MapAccess<'de>>(map: &mut A) -> Result<(), A::Error> {
    map.next_value::<de::IgnoredAny>().map(drop)
}

impl From<&WireUsage> for Usage {
    fn from(u: &WireUsage) -> Self {
        Usage {
            input_tokens: u.prompt_tokens,
            output_tokens: u.completion_tokens,
        }
    }
}

impl Response {
    pub fn into_completion(self) -> Result<Completion, ProviderError> {
        let choice = self
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| ProviderError::Decode("no choices".into()))?;
        let message = choice.message.unwrap_or_default();
        let calls = message
            .tool_calls
            .unwrap_or_default()
            .into_iter()
            .map(|c| Block::ToolCall {
                id: c.id,
                name: c.function.name,
                arguments: c.function.arguments,
            });
        let usage = self.usage.as_ref().map(Usage::from).unwrap_or_default();
        Ok(Completion {
            blocks: message
                .content
                .map(Block::Text)
                .into_iter()
                .chain(calls)
                .collect(),
            finish_reason: choice
                .finish_reason
                .as_deref()
                .map_or(FinishReason::Stop, finish_reason),
            usage,
            extra: AnswerExtra {
                top: self.extra,
                choice: choice.extra,
                message: message.extra,
                usage: self.usage.map(|u| u.extra).unwrap_or_default(),
            },
        })
    }
}

#[derive(Default)]
struct Chunk {
    choices: Vec<ChunkChoice>,
    usage: Option<WireUsage>,
    error: Option<serde_json::Value>,
    /// Every other field but `id`, `object`, `created` and `model` (ours on
    /// the way out): passed on.
    extra: Map<String, Value>,
}

impl Known for Chunk {
    const WHAT: &'static str = "a chat.completion.chunk object";
    fn field<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
        match key {
            "choices" => self.choices = map.next_value()?,
            "usage" => self.usage = map.next_value()?,
            "error" => self.error = map.next_value()?,
            "id" | "object" | "created" | "model" => skip(map)?,
            _ => return Ok(false),
        }
        Ok(true)
    }
    fn rest(&mut self) -> &mut Map<String, Value> {
        &mut self.extra
    }
}

#[derive(Default)]
struct ChunkChoice {
    delta: Option<Delta>,
    finish_reason: Option<String>,
    /// `logprobs` and any other field of the choice; `index` is ours.
    extra: Map<String, Value>,
}

impl Known for ChunkChoice {
    const WHAT: &'static str = "a chunk choice";
    fn field<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
        match key {
            "delta" => self.delta = map.next_value()?,
            "finish_reason" => self.finish_reason = map.next_value()?,
            "index" => skip(map)?,
            _ => return Ok(false),
        }
        Ok(true)
    }
    fn rest(&mut self) -> &mut Map<String, Value> {
        &mut self.extra
    }
}

deserialize_known!(
    Response,
    Choice,
    ResponseMessage,
    WireUsage,
    Chunk,
    ChunkChoice
);

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<DeltaCall>,
}

/// A piece of a streamed tool call: `id` and `function.name` on its first piece.
#[derive(Deserialize)]
struct DeltaCall {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<DeltaFunction>,
}

#[derive(Deserialize)]
struct DeltaFunction {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

/// Reads `data: {chunk}` lines until `data: [DONE]`.
#[derive(Default)]
pub struct ChunkReader {
    finish_reason: Option<FinishReason>,
    usage: Usage,
    /// The chunk-level extras went out once (`system_fingerprint` repeats on
    /// every chunk; a choice's `logprobs` go out with each chunk that has them).
    top_sent: bool,
}

impl Translate for ChunkReader {
    fn event(
        &mut self,
        _name: &str,
        data: &str,
        out: &mut VecDeque<StreamEvent>,
    ) -> Result<bool, ProviderError> {
        if data.trim() == "[DONE]" {
            return Ok(true);
        }
        let chunk: Chunk =
            serde_json::from_str(data).map_err(|e| json_error("stream chunk", &e, data.len()))?;
        if chunk.error.is_some() {
            // An error reported inside a 200 stream: the provider failed mid-way.
            return Err(ProviderError::Status {
                status: 500,
                retry_after: None,
                detail: None,
            });
        }
        let mut top = chunk.extra;
        top.retain(|_, v| !v.is_null());
        for choice in chunk.choices {
            let mut extra = choice.extra;
            extra.retain(|_, v| !v.is_null());
            if !extra.is_empty() || (!top.is_empty() && !self.top_sent) {
                // Before the chunk's text, as the upstream ordered them.
                out.push_back(StreamEvent::Extra {
                    choice: extra,
                    top: std::mem::take(&mut top),
                });
                self.top_sent = true;
            }
            if let Some(delta) = choice.delta {
                if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                    out.push_back(StreamEvent::Delta(text));
                }
                for call in delta.tool_calls {
                    let (name, arguments) = call
                        .function
                        .map_or((None, None), |f| (f.name, f.arguments));
                    out.push_back(StreamEvent::ToolCall {
                        index: call.index,
                        id: call.id,
                        name,
                        arguments: arguments.unwrap_or_default(),
                    });
                }
            }
            if let Some(word) = choice.finish_reason {
                self.finish_reason = Some(finish_reason(&word));
            }
        }
        if let Some(u) = &chunk.usage {
            self.usage = u.into();
        }
        Ok(false)
    }

    fn finish(&mut self) -> Result<StreamEvent, ProviderError> {
        let finish_reason = self
            .finish_reason
            .take()
            .ok_or_else(|| ProviderError::Connect("stream ended before a finish reason".into()))?;
        Ok(StreamEvent::Finished {
            finish_reason,
            usage: self.usage,
        })
    }
}

impl Provider for OpenAi {
    fn complete<'a>(
        &'a self,
        req: &'a ProviderRequest,
    ) -> BoxFuture<'a, Result<Completion, ProviderError>> {
        async move {
            let response = self
                .endpoint
                .post(&req.request_id, &Body::new(req, false))
                .await?;
            json_body::<Response>(response).await?.into_completion()
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
            events(response, ChunkReader::default())
        }
        .boxed()
    }

    fn supports(&self, feature: Feature) -> bool {
        // Answers hold one choice: `n` > 1 would lose the others.
        feature != Feature::Choices
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{Form, Role};

    fn request(messages: Vec<Message>) -> ProviderRequest {
        ProviderRequest::of("gpt", messages)
    }

    #[test]
    fn every_block_kind_takes_its_place_in_openais_message_shape() {
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
            Message::user_text("thanks"),
        ]);
        let body = serde_json::to_value(Body::new(&req, false)).unwrap_or_default();
        assert_eq!(
            body["messages"],
            serde_json::json!([
                {"role": "user", "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}}
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Lisbon\"}"}}
                ]},
                {"role": "tool", "content": "sunny", "tool_call_id": "call_1"},
                {"role": "user", "content": "thanks"}
            ])
        );
    }

    #[test]
    fn finish_words_are_mapped_once_keeping_the_native_word() {
        assert_eq!(finish_reason("stop"), FinishReason::Stop);
        assert_eq!(finish_reason("length"), FinishReason::Length);
        assert_eq!(finish_reason("tool_calls").native(), "tool_calls");
        assert_eq!(finish_reason("content_filter").native(), "content_filter");
        assert_eq!(finish_reason("function_call").native(), "function_call");
    }

    #[test]
    fn tool_calls_in_an_answer_become_tool_call_blocks() {
        let r: Option<Response> = serde_json::from_str(
            r#"{"choices":[{"message":{"content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"weather","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}"#,
        )
        .ok();
        let c = r.map(|r| r.into_completion());
        assert_eq!(
            c.map(|c| c.map(|c| (c.blocks, c.finish_reason))),
            Some(Ok((
                vec![Block::ToolCall {
                    id: "call_1".into(),
                    name: "weather".into(),
                    arguments: "{}".into(),
                }],
                FinishReason::ToolCalls("tool_calls")
            )))
        );
    }

    #[test]
    fn chunks_yield_deltas_then_finish_with_usage() {
        let mut reader = ChunkReader::default();
        let mut out = VecDeque::new();
        let chunks = [
            r#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#,
            r#"{"choices":[{"delta":{"content":"Hi"}}]}"#,
            r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":1}}"#,
        ];
        for c in chunks {
            assert_eq!(reader.event("message", c, &mut out), Ok(false));
        }
        assert_eq!(reader.event("message", "[DONE]", &mut out), Ok(true));
        assert_eq!(out, VecDeque::from([StreamEvent::Delta("Hi".into())]));
        assert_eq!(
            reader.finish(),
            Ok(StreamEvent::Finished {
                finish_reason: FinishReason::Stop,
                usage: Usage {
                    input_tokens: 5,
                    output_tokens: 1
                }
            })
        );
    }

    #[test]
    fn a_stream_cut_before_its_finish_reason_is_an_error() {
        let mut reader = ChunkReader::default();
        let mut out = VecDeque::new();
        assert_eq!(
            reader.event(
                "message",
                r#"{"choices":[{"delta":{"content":"Hi"}}]}"#,
                &mut out
            ),
            Ok(false)
        );
        assert!(reader.finish().is_err());
    }

    #[test]
    fn a_response_without_choices_is_unusable() {
        let r: Option<Response> = serde_json::from_str(r#"{"choices":[]}"#).ok();
        assert!(matches!(
            r.map(Response::into_completion),
            Some(Err(ProviderError::Decode(_)))
        ));
    }
}
