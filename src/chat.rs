//! The chat domain: messages as typed content blocks, a validated request,
//! answers, stream events and finish reasons,
//! shared by the native and the OpenAI-compatible routes and by every provider.

use serde::{Deserialize, Serialize};
use serde_json::Value;

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
}

impl Message {
    /// A message of one text, written as a string.
    pub fn new_text(role: Role, text: impl Into<String>) -> Self {
        Self {
            role,
            blocks: vec![Block::Text(text.into())],
            form: Form::String,
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

/// A message as it arrives on the wire, before its role and content are checked.
#[derive(Debug, Deserialize)]
pub struct WireMessage {
    pub role: Value,
    #[serde(default)]
    pub content: Value,
}

/// How lenient the message conversion is: the OpenAI route accepts the
/// `developer` role and arrays of text parts, as OpenAI's own API does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Native,
    OpenAi,
}

impl WireMessage {
    pub fn into_message(self, index: usize, dialect: Dialect) -> Result<Message, ApiError> {
        let role = match (self.role.as_str(), dialect) {
            (Some("system"), _) => Role::System,
            (Some("user"), _) => Role::User,
            (Some("assistant"), _) => Role::Assistant,
            (Some("developer"), Dialect::OpenAi) => Role::System,
            (Some(other), _) => {
                return Err(ApiError::invalid(format!(
                    "messages[{index}].role: unknown role `{}` (expected system, user or assistant)",
                    truncate(other, 32)
                )));
            }
            (None, _) => {
                return Err(ApiError::invalid(format!(
                    "messages[{index}].role must be a string"
                )));
            }
        };
        let (blocks, form) = match (self.content, dialect) {
            (Value::String(s), _) => (vec![Block::Text(s)], Form::String),
            (Value::Array(parts), Dialect::OpenAi) => (text_parts(index, parts)?, Form::Parts),
            _ => {
                return Err(ApiError::invalid(format!(
                    "messages[{index}].content must be a string"
                )));
            }
        };
        Ok(Message { role, blocks, form })
    }
}

/// OpenAI content parts of type `text`, one block each; other part types are not supported.
fn text_parts(index: usize, parts: Vec<Value>) -> Result<Vec<Block>, ApiError> {
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        match (
            part.get("type").and_then(Value::as_str),
            part.get("text").and_then(Value::as_str),
        ) {
            (Some("text"), Some(text)) => out.push(Block::Text(text.to_owned())),
            _ => {
                return Err(ApiError::invalid(format!(
                    "messages[{index}].content: only text parts are supported"
                )));
            }
        }
    }
    Ok(out)
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
}

impl ChatRequest {
    /// Checks the contract's limits. Message text is never echoed back.
    pub fn validate(&self, limits: &ChatConfig) -> Result<(), ApiError> {
        if self.messages.is_empty() {
            return Err(ApiError::invalid("messages must be a non-empty list"));
        }
        if self.messages.len() > limits.max_messages {
            return Err(ApiError::invalid(format!(
                "too many messages (at most {})",
                limits.max_messages
            )));
        }
        for (i, m) in self.messages.iter().enumerate() {
            if m.text_chars() > limits.max_message_chars {
                return Err(ApiError::invalid(format!(
                    "messages[{i}].content is too long (at most {} characters)",
                    limits.max_message_chars
                )));
            }
        }
        if self.max_tokens == Some(0) {
            return Err(ApiError::invalid("max_tokens must be at least 1"));
        }
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return Err(ApiError::invalid("temperature must be between 0 and 2"));
        }
        if let Some(p) = self.top_p
            && !(0.0..=1.0).contains(&p)
        {
            return Err(ApiError::invalid("top_p must be between 0 and 1"));
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
}

impl Completion {
    /// An answer of one text.
    pub fn from_text(text: impl Into<String>, finish_reason: FinishReason, usage: Usage) -> Self {
        Self {
            blocks: vec![Block::Text(text.into())],
            finish_reason,
            usage,
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
    // Tool-call pieces (index, id and name first, then argument text) go here
    // as their own variant, next to `Delta`.
    /// The last event of a stream that ended well.
    Finished {
        finish_reason: FinishReason,
        usage: Usage,
    },
}

/// Why an answer ended, mapped once by each provider from its own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    /// The model was done (OpenAI `stop`; Anthropic `end_turn`, `stop_sequence`).
    Stop,
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

    /// The native route's word: `stop`, `length`, or the provider's own word.
    pub fn native(&self) -> &str {
        match self {
            FinishReason::Stop => "stop",
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
        }
    }

    #[test]
    fn unknown_role_is_an_invalid_request() {
        let err = wire("wizard", Value::from("hi")).into_message(0, Dialect::Native);
        assert!(matches!(err, Err(ApiError::InvalidRequest(m)) if m.contains("unknown role")));
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
