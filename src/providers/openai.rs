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
use crate::chat::{Completion, Message, StreamEvent, Usage};
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
    messages: &'a [Message],
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

impl<'a> Body<'a> {
    pub fn new(req: &'a ProviderRequest, stream: bool) -> Self {
        Self {
            model: &req.model,
            messages: &req.messages,
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
        Ok(Completion {
            content: choice.message.content.unwrap_or_default(),
            finish_reason: choice.finish_reason.unwrap_or_else(|| "stop".into()),
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
    finish_reason: Option<String>,
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
            if choice.finish_reason.is_some() {
                self.finish_reason = choice.finish_reason;
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
    use super::*;

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
                finish_reason: "stop".into(),
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
