//! OpenAI Chat Completions (and any OpenAI-compatible API): request body,
//! response and stream-chunk translation.

use std::collections::VecDeque;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use reqwest::header::{AUTHORIZATION, HeaderMap};
use serde::{Deserialize, Serialize};

use super::http::{Endpoint, json_body, json_error};
use super::sse::{Translate, events};
use super::{EventStream, Provider, ProviderError, ProviderRequest};
use crate::chat::{
    Block, Completion, FinishReason, ImageSource, Message, StreamEvent, ToolOutput, Usage,
};
use crate::config::HttpApi;

pub struct OpenAi {
    endpoint: Endpoint,
}

impl OpenAi {
    pub fn new(config: &HttpApi, client: reqwest::Client) -> Self {
        let bearer = |key: &str| (AUTHORIZATION, format!("Bearer {key}"));
        Self {
            endpoint: Endpoint::new(client, config, "chat/completions", bearer, HeaderMap::new()),
        }
    }
}

/// The upstream request body (public for `benches/hot_path.rs`).
#[derive(Serialize)]
pub struct Body<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
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
    stream_options: Option<StreamOptions>,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
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
    ImageUrl { image_url: ImageUrl },
}

#[derive(Serialize)]
struct ImageUrl {
    url: String,
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
            Block::Image { source } => Some(Part::ImageUrl {
                image_url: ImageUrl {
                    url: match source {
                        ImageSource::Url(url) => url.clone(),
                        ImageSource::Base64 { media_type, data } => {
                            format!("data:{media_type};base64,{data}")
                        }
                    },
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
            Block::ToolResult { call_id, content } => Some((call_id.as_str(), content)),
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
        Self {
            model: &req.model,
            messages: req.messages.iter().map(WireMessage::new).collect(),
            max_tokens: req.max_tokens,
            temperature: req.temperature,
            top_p: req.top_p,
            stop: &req.stop,
            user: req.user.as_deref(),
            stream,
            // Ask for usage in the last chunk, so streamed tokens are counted too.
            stream_options: stream.then_some(StreamOptions {
                include_usage: true,
            }),
        }
    }
}

/// A whole upstream answer (public for `benches/hot_path.rs`).
#[derive(Deserialize)]
pub struct Response {
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Choice {
    message: ResponseMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ResponseMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ResponseCall>>,
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

#[derive(Deserialize, Clone, Copy)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u32,
    #[serde(default)]
    completion_tokens: u32,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
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
        let message = choice.message;
        let calls = message
            .tool_calls
            .unwrap_or_default()
            .into_iter()
            .map(|c| Block::ToolCall {
                id: c.id,
                name: c.function.name,
                arguments: c.function.arguments,
            });
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
            usage: self.usage.map(Usage::from).unwrap_or_default(),
        })
    }
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
}

/// Reads `data: {chunk}` lines until `data: [DONE]`.
#[derive(Default)]
pub struct ChunkReader {
    finish_reason: Option<FinishReason>,
    usage: Usage,
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
        for choice in chunk.choices {
            if let Some(text) = choice
                .delta
                .and_then(|d| d.content)
                .filter(|t| !t.is_empty())
            {
                out.push_back(StreamEvent::Delta(text));
            }
            if let Some(word) = choice.finish_reason {
                self.finish_reason = Some(finish_reason(&word));
            }
        }
        if let Some(u) = chunk.usage {
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
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::chat::{Form, Role};

    fn request(messages: Vec<Message>) -> ProviderRequest {
        ProviderRequest {
            model: "gpt".into(),
            messages: Arc::from(messages),
            max_tokens: None,
            temperature: None,
            top_p: None,
            stop: Arc::from(Vec::<String>::new()),
            user: None,
            request_id: "r".into(),
        }
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
                    },
                ],
                form: Form::Parts,
            },
            Message {
                role: Role::Assistant,
                blocks: vec![Block::ToolCall {
                    id: "call_1".into(),
                    name: "weather".into(),
                    arguments: r#"{"city":"Lisbon"}"#.into(),
                }],
                form: Form::Parts,
            },
            Message {
                role: Role::Tool,
                blocks: vec![Block::ToolResult {
                    call_id: "call_1".into(),
                    content: ToolOutput::Text("sunny".into()),
                }],
                form: Form::Parts,
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
        let r: Response = serde_json::from_str(r#"{"choices":[]}"#).unwrap_or(Response {
            choices: vec![],
            usage: None,
        });
        assert!(matches!(r.into_completion(), Err(ProviderError::Decode(_))));
    }
}
