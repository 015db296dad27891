//! The chat domain: messages as typed content blocks, a validated request,
//! answers, stream events and finish reasons,
//! shared by the native and the OpenAI-compatible routes and by every provider.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::ChatConfig;
use crate::error::{ApiError, truncate};

/// Who wrote a message.
///
/// Tool results get their own role (OpenAI's `tool` messages, one result per
/// message) rather than riding in user messages as Anthropic's API has them:
/// the OpenAI wire format maps one to one, the mock and the interaction log
/// keep telling the user's own words from tool output, and Anthropic targets
/// get a `user` message of `tool_result` blocks, which Anthropic merges with
/// the neighbouring user turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
    /// Holds one [`Block::ToolResult`].
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// One piece of a message or an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    Text(String),
    Image {
        source: ImageSource,
        /// OpenAI's `detail` (`low`, `high`, `auto`), passed to OpenAI-kind targets.
        detail: Option<String>,
    },
    /// A call the model asked for (assistant messages and answers).
    ToolCall {
        id: String,
        name: String,
        /// The arguments as JSON text, exactly as the model or client wrote it.
        arguments: String,
    },
    /// What a tool answered (in a [`Role::Tool`] message).
    ToolResult {
        call_id: String,
        content: ToolOutput,
        /// Anthropic's `is_error`: the tool failed. OpenAI has no such flag
        /// (dropped for OpenAI-kind targets, logged at DEBUG).
        is_error: bool,
    },
}

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// An `https://` URL the provider fetches.
    Url(String),
    /// The image itself: `media_type` such as `image/png`, `data` base64.
    Base64 { media_type: String, data: String },
}

/// A tool result's content: one string, or blocks (text and images).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolOutput {
    Text(String),
    Blocks(Vec<Block>),
}

/// How the client wrote a message's content. OpenAI-kind upstreams get the
/// same shape back (a string stays a string, parts stay parts); Anthropic
/// gets a string only for a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    String,
    Parts,
}

/// A message: a role and its content as typed blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub role: Role,
    pub blocks: Vec<Block>,
    pub form: Form,
    /// The message's fields chatgate does not read (OpenAI's `name`, …),
    /// passed unchanged to OpenAI-kind targets; Anthropic has no equivalent
    /// (dropped there, logged at DEBUG).
    pub extra: Map<String, Value>,
}

impl Message {
    /// A message of one text, written as a string.
    pub fn new_text(role: Role, text: impl Into<String>) -> Self {
        Self {
            role,
            blocks: vec![Block::Text(text.into())],
            form: Form::String,
            extra: Map::new(),
        }
    }

    pub fn system_text(text: impl Into<String>) -> Self {
        Self::new_text(Role::System, text)
    }

    pub fn user_text(text: impl Into<String>) -> Self {
        Self::new_text(Role::User, text)
    }

    pub fn assistant_text(text: impl Into<String>) -> Self {
        Self::new_text(Role::Assistant, text)
    }

    /// The text blocks, in order.
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        texts(&self.blocks)
    }

    /// The text blocks joined without a separator (as parts were joined
    /// before messages had blocks): for the interaction log, redaction, the
    /// mock and length checks.
    pub fn text(&self) -> String {
        self.texts().collect()
    }

    /// Characters across the text blocks.
    pub fn text_chars(&self) -> usize {
        self.texts().map(|t| t.chars().count()).sum()
    }

    /// The content as the one string the client sent, if it sent one and it
    /// is still a single text.
    pub fn as_string(&self) -> Option<&str> {
        match (self.form, self.blocks.as_slice()) {
            (Form::String, [Block::Text(text)]) => Some(text),
            _ => None,
        }
    }
}

fn texts(blocks: &[Block]) -> impl Iterator<Item = &str> {
    blocks.iter().filter_map(|b| match b {
        Block::Text(t) => Some(t.as_str()),
        _ => None,
    })
}

impl Message {
    /// Whether `f` holds for any text the message carries: its text blocks
    /// and its tool results' text.
    pub fn any_text(&self, mut f: impl FnMut(&str) -> bool) -> bool {
        fn walk(blocks: &[Block], f: &mut impl FnMut(&str) -> bool) -> bool {
            blocks.iter().any(|b| match b {
                Block::Text(t) => f(t),
                Block::ToolResult {
                    content: ToolOutput::Text(t),
                    ..
                } => f(t),
                Block::ToolResult {
                    content: ToolOutput::Blocks(bs),
                    ..
                } => walk(bs, f),
                _ => false,
            })
        }
        walk(&self.blocks, &mut f)
    }

    /// Every text the message carries (as [`Message::any_text`] sees them),
    /// for cleaning in place.
    pub fn for_each_text_mut(&mut self, mut f: impl FnMut(&mut String)) {
        fn walk(blocks: &mut [Block], f: &mut impl FnMut(&mut String)) {
            for b in blocks {
                match b {
                    Block::Text(t) => f(t),
                    Block::ToolResult {
                        content: ToolOutput::Text(t),
                        ..
                    } => f(t),
                    Block::ToolResult {
                        content: ToolOutput::Blocks(bs),
                        ..
                    } => walk(bs, f),
                    _ => {}
                }
            }
        }
        walk(&mut self.blocks, &mut f);
    }
}

/// A message as it arrives on the wire, before its role and content are checked.
#[derive(Debug, Deserialize)]
pub struct WireMessage {
    pub role: Value,
    #[serde(default)]
    pub content: Value,
    /// OpenAI: an assistant turn's calls.
    #[serde(default)]
    pub tool_calls: Value,
    /// OpenAI: which call a `tool` message answers.
    #[serde(default)]
    pub tool_call_id: Value,
    /// Every other field (OpenAI's `name`, …): kept on the OpenAI route.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// How lenient the message conversion is: the OpenAI route accepts the
/// `developer` and `tool` roles, content parts (text and images) and tool
/// calls, as OpenAI's own API does; the native route stays text-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Native,
    OpenAi,
}

impl WireMessage {
    pub fn into_message(self, index: usize, dialect: Dialect) -> Result<Message, ApiError> {
        let at = |field: &str| format!("messages[{index}].{field}");
        let role = match (self.role.as_str(), dialect) {
            (Some("system"), _) => Role::System,
            (Some("user"), _) => Role::User,
            (Some("assistant"), _) => Role::Assistant,
            (Some("developer"), Dialect::OpenAi) => Role::System,
            (Some("tool"), Dialect::OpenAi) => Role::Tool,
            (Some(other), _) => {
                let expected = match dialect {
                    Dialect::Native => "system, user or assistant",
                    Dialect::OpenAi => "system, developer, user, assistant or tool",
                };
                return Err(ApiError::invalid_param(
                    at("role"),
                    format!(
                        "messages[{index}].role: unknown role `{}` (expected {expected})",
                        truncate(other, 32)
                    ),
                ));
            }
            (None, _) => {
                return Err(ApiError::invalid_param(
                    at("role"),
                    format!("messages[{index}].role must be a string"),
                ));
            }
        };
        if dialect == Dialect::Native {
            return match self.content {
                Value::String(s) => Ok(Message::new_text(role, s)),
                _ => Err(ApiError::invalid_param(
                    at("content"),
                    format!("messages[{index}].content must be a string"),
                )),
            };
        }
        let calls = match (role, self.tool_calls) {
            (_, Value::Null) => Vec::new(),
            (Role::Assistant, Value::Array(calls)) => tool_calls(index, calls)?,
            _ => {
                return Err(ApiError::invalid_param(
                    at("tool_calls"),
                    format!(
                        "messages[{index}].tool_calls must be a list, on assistant messages only"
                    ),
                ));
            }
        };
        let (mut blocks, form) = match self.content {
            Value::String(s) => (vec![Block::Text(s)], Form::String),
            Value::Array(parts) => (content_parts(index, parts)?, Form::Parts),
            // An assistant turn of tool calls alone has `content: null`.
            Value::Null if !calls.is_empty() => (Vec::new(), Form::Parts),
            _ => {
                return Err(ApiError::invalid_param(
                    at("content"),
                    format!(
                        "messages[{index}].content must be a string or a list of content parts"
                    ),
                ));
            }
        };
        if role == Role::Tool {
            let Value::String(call_id) = self.tool_call_id else {
                return Err(ApiError::invalid_param(
                    at("tool_call_id"),
                    format!("messages[{index}].tool_call_id must be a string on tool messages"),
                ));
            };
            let content = match (form, blocks.as_slice()) {
                (Form::String, [Block::Text(text)]) => ToolOutput::Text(text.clone()),
                _ => ToolOutput::Blocks(blocks),
            };
            blocks = vec![Block::ToolResult {
                call_id,
                content,
                is_error: false,
            }];
        }
        blocks.extend(calls);
        Ok(Message {
            role,
            blocks,
            form,
            extra: self.extra,
        })
    }
}

/// OpenAI content parts: `text` and `image_url`, one block each.
fn content_parts(index: usize, parts: Vec<Value>) -> Result<Vec<Block>, ApiError> {
    let mut out = Vec::with_capacity(parts.len());
    for (j, part) in parts.into_iter().enumerate() {
        let at = format!("messages[{index}].content[{j}]");
        match part.get("type").and_then(Value::as_str) {
            Some("text") => match part.get("text").and_then(Value::as_str) {
                Some(text) => out.push(Block::Text(text.to_owned())),
                None => {
                    return Err(ApiError::invalid_param(
                        format!("{at}.text"),
                        format!("{at}.text must be a string"),
                    ));
                }
            },
            Some("image_url") => {
                let image = part.get("image_url");
                // OpenAI accepts `image_url` as an object with `url`, or the URL itself.
                let url = image
                    .and_then(|i| i.get("url"))
                    .or(image)
                    .and_then(Value::as_str);
                let Some(url) = url else {
                    return Err(ApiError::invalid_param(
                        format!("{at}.image_url.url"),
                        format!("{at}.image_url.url must be a string"),
                    ));
                };
                let detail = match image.and_then(|i| i.get("detail")) {
                    None | Some(Value::Null) => None,
                    Some(Value::String(d)) => Some(d.clone()),
                    Some(_) => {
                        return Err(ApiError::invalid_param(
                            format!("{at}.image_url.detail"),
                            format!("{at}.image_url.detail must be a string"),
                        ));
                    }
                };
                let source = image_source(url).map_err(|why| {
                    ApiError::invalid_param(
                        format!("{at}.image_url.url"),
                        format!("{at}.image_url.url {why}"),
                    )
                })?;
                out.push(Block::Image { source, detail });
            }
            _ => {
                return Err(ApiError::invalid_param(
                    format!("{at}.type"),
                    format!("{at}.type must be `text` or `image_url`"),
                ));
            }
        }
    }
    Ok(out)
}

/// The media types every provider kind accepts inline.
const IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// An `https://` (or `http://`) URL, or a `data:image/…;base64,…` URL checked
/// for its media type and base64 shape (Anthropic wants both exact).
pub(crate) fn image_source(url: &str) -> Result<ImageSource, &'static str> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (head, data) = rest.split_once(',').ok_or("is a data URL without data")?;
        let media_type = head
            .strip_suffix(";base64")
            .ok_or("must be a base64 data URL (data:image/…;base64,…)")?;
        if !IMAGE_TYPES.contains(&media_type) {
            return Err("must be an image/png, image/jpeg, image/gif or image/webp data URL");
        }
        let base64 = !data.is_empty()
            && data.len() % 4 == 0
            && data
                .trim_end_matches('=')
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
            && data.len() - data.trim_end_matches('=').len() <= 2;
        if !base64 {
            return Err("is not valid base64");
        }
        return Ok(ImageSource::Base64 {
            media_type: media_type.to_owned(),
            data: data.to_owned(),
        });
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        Ok(ImageSource::Url(url.to_owned()))
    } else {
        Err("must be an https:// URL or a data:image/…;base64,… URL")
    }
}

/// An assistant message's `tool_calls`: `{id, type: "function", function: {name, arguments}}`.
fn tool_calls(index: usize, calls: Vec<Value>) -> Result<Vec<Block>, ApiError> {
    calls
        .into_iter()
        .enumerate()
        .map(|(j, call)| {
            let at = format!("messages[{index}].tool_calls[{j}]");
            let text = |v: Option<&Value>, field: &str| -> Result<String, ApiError> {
                v.and_then(Value::as_str).map(str::to_owned).ok_or_else(|| {
                    ApiError::invalid_param(
                        format!("{at}.{field}"),
                        format!("{at}.{field} must be a string"),
                    )
                })
            };
            let function = call.get("function");
            Ok(Block::ToolCall {
                id: text(call.get("id"), "id")?,
                name: text(function.and_then(|f| f.get("name")), "function.name")?,
                arguments: text(
                    function.and_then(|f| f.get("arguments")),
                    "function.arguments",
                )?,
            })
        })
        .collect()
}

/// A chat request that passed validation, in the gateway's own terms.
#[derive(Debug, Clone, Default)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    pub model: Option<String>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub stop: Vec<String>,
    pub user: Option<String>,
    pub stream: bool,
    /// Everything else of an OpenAI-route request (defaults on the native route).
    pub params: Params,
}

/// Which name the client gave the token limit; OpenAI-kind targets get the same
/// name back (reasoning models accept only `max_completion_tokens`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MaxTokensField {
    #[default]
    MaxTokens,
    MaxCompletionTokens,
}

/// An OpenAI request's parameters beyond the basic ones: typed where a
/// provider must read or translate them, and every field chatgate does not
/// know, kept unchanged for OpenAI-kind targets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params {
    pub seed: Option<i64>,
    pub frequency_penalty: Option<f64>,
    pub presence_penalty: Option<f64>,
    pub logit_bias: Option<Map<String, Value>>,
    /// An object with a string `type` (`text`, `json_object`, `json_schema`).
    pub response_format: Option<Value>,
    pub n: Option<u32>,
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<u32>,
    pub metadata: Option<Map<String, Value>>,
    pub parallel_tool_calls: Option<bool>,
    pub tool_choice: Option<ToolChoice>,
    pub tools: Vec<Tool>,
    pub max_tokens_field: MaxTokensField,
    /// The client's `stream_options` other than `include_usage` (which chatgate owns upstream).
    pub stream_options: Map<String, Value>,
    /// Every other field of the client's body, unchanged (OpenAI route):
    /// OpenAI-kind targets get these, Anthropic-kind ones drop them (DEBUG).
    pub extra: Map<String, Value>,
    /// The Messages route's fields without a domain equivalent (`top_k`,
    /// `thinking`, unknown fields), unchanged: Anthropic-kind targets get
    /// these, OpenAI-kind ones drop them (DEBUG), as `extra` the other way.
    pub anthropic: Map<String, Value>,
}

impl Params {
    /// Whether the request asks for JSON output (a `response_format` other than `text`).
    pub fn wants_format(&self) -> bool {
        self.response_format
            .as_ref()
            .and_then(|f| f.get("type"))
            .and_then(Value::as_str)
            .is_some_and(|t| t != "text")
    }

    /// Whether the request asks for log probabilities.
    pub fn wants_logprobs(&self) -> bool {
        self.logprobs == Some(true) || self.top_logprobs.is_some_and(|n| n > 0)
    }
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// The JSON Schema of the arguments.
    pub parameters: Option<Value>,
    /// The client's own tool object, which OpenAI-kind targets get unchanged.
    pub raw: Value,
}

/// OpenAI's `tool_choice`.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolChoice {
    None,
    Auto,
    Required,
    /// One named function.
    Function(String),
    /// A form this gateway does not translate (e.g. `allowed_tools`): OpenAI
    /// targets get it unchanged, Anthropic targets `auto`.
    Other(Value),
}

impl ChatRequest {
    /// Checks the contract's limits. Message text is never echoed back.
    pub fn validate(&self, limits: &ChatConfig) -> Result<(), ApiError> {
        if self.messages.is_empty() {
            return Err(ApiError::invalid_param(
                "messages",
                "messages must be a non-empty list",
            ));
        }
        if self.messages.len() > limits.max_messages {
            return Err(ApiError::invalid_param(
                "messages",
                format!("too many messages (at most {})", limits.max_messages),
            ));
        }
        for (i, m) in self.messages.iter().enumerate() {
            if m.text_chars() > limits.max_message_chars {
                return Err(ApiError::invalid_param(
                    format!("messages[{i}].content"),
                    format!(
                        "messages[{i}].content is too long (at most {} characters)",
                        limits.max_message_chars
                    ),
                ));
            }
        }
        if self.max_tokens == Some(0) {
            let field = match self.params.max_tokens_field {
                MaxTokensField::MaxTokens => "max_tokens",
                MaxTokensField::MaxCompletionTokens => "max_completion_tokens",
            };
            return Err(ApiError::invalid_param(
                field,
                format!("{field} must be at least 1"),
            ));
        }
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return Err(ApiError::invalid_param(
                "temperature",
                "temperature must be between 0 and 2",
            ));
        }
        if let Some(p) = self.top_p
            && !(0.0..=1.0).contains(&p)
        {
            return Err(ApiError::invalid_param(
                "top_p",
                "top_p must be between 0 and 1",
            ));
        }
        let p = &self.params;
        for (field, value) in [
            ("frequency_penalty", p.frequency_penalty),
            ("presence_penalty", p.presence_penalty),
        ] {
            if value.is_some_and(|v| !(-2.0..=2.0).contains(&v)) {
                return Err(ApiError::invalid_param(
                    field,
                    format!("{field} must be between -2 and 2"),
                ));
            }
        }
        if p.n == Some(0) {
            return Err(ApiError::invalid_param("n", "n must be at least 1"));
        }
        if p.top_logprobs.is_some_and(|n| n > 20) {
            return Err(ApiError::invalid_param(
                "top_logprobs",
                "top_logprobs must be between 0 and 20",
            ));
        }
        if let Some(ToolChoice::Function(name)) = &p.tool_choice
            && !p.tools.iter().any(|t| &t.name == name)
        {
            return Err(ApiError::invalid_param(
                "tool_choice",
                "tool_choice names a function that is not in tools",
            ));
        }
        Ok(())
    }
}

/// Tokens counted by the provider (or by the mock: words).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub input_tokens: u32,
    pub output_tokens: u32,
}

/// One whole answer from a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// Text, and tool calls once the routes offer tools.
    pub blocks: Vec<Block>,
    pub finish_reason: FinishReason,
    pub usage: Usage,
    /// The upstream's answer fields this gateway does not read (OpenAI-kind
    /// upstreams), passed through to the OpenAI route only.
    pub extra: AnswerExtra,
}

/// Answer fields kept as the upstream sent them, by where they were.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnswerExtra {
    /// Top level: `system_fingerprint`, `service_tier`, …
    pub top: Map<String, Value>,
    /// The choice: `logprobs`, …
    pub choice: Map<String, Value>,
    /// The message: `refusal`, `annotations`, `audio`, …
    pub message: Map<String, Value>,
    /// Usage: `prompt_tokens_details`, `completion_tokens_details`, …
    pub usage: Map<String, Value>,
}

impl Completion {
    /// An answer of one text.
    pub fn from_text(text: impl Into<String>, finish_reason: FinishReason, usage: Usage) -> Self {
        Self {
            blocks: vec![Block::Text(text.into())],
            finish_reason,
            usage,
            extra: AnswerExtra::default(),
        }
    }

    /// The text blocks joined without a separator.
    pub fn text(&self) -> String {
        texts(&self.blocks).collect()
    }
}

/// What a provider's stream yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// A piece of the answer's text.
    Delta(String),
    /// A piece of a tool call: the first piece of each call carries its `id`
    /// and `name`, later ones only argument text. `index` counts the answer's
    /// tool calls from 0 (as OpenAI's `delta.tool_calls[].index` does).
    ToolCall {
        index: u32,
        id: Option<String>,
        name: Option<String>,
        arguments: String,
    },
    /// Fields of an OpenAI-kind upstream's chunk that chatgate does not own
    /// (`logprobs`, `system_fingerprint`, `service_tier`, …): passed on by the
    /// OpenAI route only, in a chunk of its own; other routes skip them.
    Extra {
        /// Of the chunk's choice (`logprobs`, …).
        choice: Map<String, Value>,
        /// Of the chunk itself (`system_fingerprint`, …).
        top: Map<String, Value>,
    },
    /// The last event of a stream that ended well.
    Finished {
        finish_reason: FinishReason,
        usage: Usage,
    },
}

/// Why an answer ended, mapped once by each provider from its own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    /// The model was done (OpenAI `stop`; Anthropic `end_turn`).
    Stop,
    /// A stop sequence ended it (Anthropic `stop_sequence`, with the one that
    /// matched; OpenAI reports these as `stop`).
    StopSequence(Option<String>),
    /// `max_tokens` ran out (OpenAI `length`; Anthropic `max_tokens`).
    Length,
    /// The model called tools; the provider's own word (`tool_calls`,
    /// `tool_use`), which native answers show.
    ToolCalls(&'static str),
    /// Withheld by a filter or refused; the provider's own word
    /// (`content_filter`, `refusal`).
    ContentFilter(&'static str),
    /// A word this gateway does not know, at most [`FinishReason::MAX_OTHER`] characters.
    Other(String),
}

impl FinishReason {
    /// The longest unknown word kept: an upstream cannot make answers grow with it.
    pub const MAX_OTHER: usize = 64;

    /// An unknown word, cut to [`FinishReason::MAX_OTHER`] characters.
    pub fn other(word: &str) -> Self {
        FinishReason::Other(word.chars().take(Self::MAX_OTHER).collect())
    }

    /// Back from [`FinishReason::native`] (what the response cache stores).
    pub fn from_native(word: &str) -> Self {
        match word {
            "stop" => FinishReason::Stop,
            "length" => FinishReason::Length,
            "tool_calls" => FinishReason::ToolCalls("tool_calls"),
            "tool_use" => FinishReason::ToolCalls("tool_use"),
            "content_filter" => FinishReason::ContentFilter("content_filter"),
            "refusal" => FinishReason::ContentFilter("refusal"),
            other => FinishReason::other(other),
        }
    }

    /// The native route's word: `stop`, `length`, or the provider's own word.
    pub fn native(&self) -> &str {
        match self {
            FinishReason::Stop | FinishReason::StopSequence(_) => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls(word) | FinishReason::ContentFilter(word) => word,
            FinishReason::Other(word) => word,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(role: &str, content: Value) -> WireMessage {
        WireMessage {
            role: Value::from(role),
            content,
            tool_calls: Value::Null,
            tool_call_id: Value::Null,
            extra: Map::new(),
        }
    }

    #[test]
    fn unknown_role_is_an_invalid_request() {
        let err = wire("wizard", Value::from("hi")).into_message(0, Dialect::Native);
        assert!(
            matches!(err, Err(ApiError::InvalidRequest { message, .. }) if message.contains("unknown role"))
        );
    }

    #[test]
    fn developer_role_and_text_parts_are_openai_only() {
        let parts =
            serde_json::json!([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]);
        let m = wire("developer", parts.clone()).into_message(0, Dialect::OpenAi);
        assert_eq!(
            m,
            Ok(Message {
                role: Role::System,
                blocks: vec![Block::Text("a".into()), Block::Text("b".into())],
                form: Form::Parts,
                extra: Default::default(),
            })
        );
        assert_eq!(m.map(|m| m.text()), Ok("ab".to_owned()));
        assert!(
            wire("developer", Value::from("x"))
                .into_message(0, Dialect::Native)
                .is_err()
        );
        assert!(
            wire("user", parts)
                .into_message(0, Dialect::Native)
                .is_err()
        );
    }

    #[test]
    fn validation_enforces_the_limits() {
        let limits = ChatConfig {
            default_model: "d".into(),
            max_messages: 2,
            max_message_chars: 5,
        };
        let msg = Message::user_text;
        let ok = ChatRequest {
            messages: vec![msg("hello")],
            ..Default::default()
        };
        assert!(ok.validate(&limits).is_ok());
        let cases = [
            ChatRequest {
                messages: vec![],
                ..Default::default()
            },
            ChatRequest {
                messages: vec![msg("a"), msg("b"), msg("c")],
                ..Default::default()
            },
            ChatRequest {
                messages: vec![msg("toolong")],
                ..Default::default()
            },
            ChatRequest {
                messages: vec![msg("a")],
                max_tokens: Some(0),
                ..Default::default()
            },
            ChatRequest {
                messages: vec![msg("a")],
                temperature: Some(2.5),
                ..Default::default()
            },
            ChatRequest {
                messages: vec![msg("a")],
                temperature: Some(-0.1),
                ..Default::default()
            },
        ];
        for case in cases {
            assert!(case.validate(&limits).is_err(), "{case:?}");
        }
    }

    #[test]
    fn text_parts_count_together_against_the_length_limit() {
        let limits = ChatConfig {
            default_model: "d".into(),
            max_messages: 2,
            max_message_chars: 5,
        };
        let parts = |a: &str, b: &str| ChatRequest {
            messages: vec![Message {
                role: Role::User,
                blocks: vec![Block::Text(a.into()), Block::Text(b.into())],
                form: Form::Parts,
                extra: Default::default(),
            }],
            ..Default::default()
        };
        assert!(parts("hé", "llo").validate(&limits).is_ok());
        assert!(parts("hel", "lo!").validate(&limits).is_err());
    }

    #[test]
    fn a_string_is_a_string_only_while_it_is_one_text() {
        let mut m = Message::user_text("hi");
        assert_eq!(m.as_string(), Some("hi"));
        m.blocks.push(Block::Text(" there".into()));
        assert_eq!(m.as_string(), None);
        assert_eq!(m.text(), "hi there");
    }

    #[test]
    fn native_finish_words_keep_the_providers_own_word() {
        assert_eq!(FinishReason::Stop.native(), "stop");
        assert_eq!(FinishReason::Length.native(), "length");
        assert_eq!(FinishReason::ToolCalls("tool_use").native(), "tool_use");
        assert_eq!(FinishReason::ContentFilter("refusal").native(), "refusal");
        assert_eq!(FinishReason::other("pause_turn").native(), "pause_turn");
    }

    #[test]
    fn an_unknown_finish_word_is_cut_to_64_characters() {
        let long = "é".repeat(100);
        assert_eq!(FinishReason::other(&long).native().chars().count(), 64);
    }
}
