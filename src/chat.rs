//! The chat domain: messages, a validated request, answers and stream events,
//! shared by the native and the OpenAI-compatible routes and by every provider.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::ChatConfig;
use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    /// The message's text (accessors keep readers independent of how content is held).
    pub fn text(&self) -> &str {
        &self.content
    }

    pub fn text_mut(&mut self) -> &mut String {
        &mut self.content
    }
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
        let content = match (self.content, dialect) {
            (Value::String(s), _) => s,
            (Value::Array(parts), Dialect::OpenAi) => text_parts(index, parts)?,
            _ => {
                return Err(ApiError::invalid(format!(
                    "messages[{index}].content must be a string"
                )));
            }
        };
        Ok(Message { role, content })
    }
}

/// Joins OpenAI content parts of type `text`; other part types are not supported.
fn text_parts(index: usize, parts: Vec<Value>) -> Result<String, ApiError> {
    let mut out = String::new();
    for part in parts {
        match (
            part.get("type").and_then(Value::as_str),
            part.get("text").and_then(Value::as_str),
        ) {
            (Some("text"), Some(text)) => out.push_str(text),
            _ => {
                return Err(ApiError::invalid(format!(
                    "messages[{index}].content: only text parts are supported"
                )));
            }
        }
    }
    Ok(out)
}

/// `s` cut to `max` characters (with `…` when cut): for client values echoed in errors.
pub(crate) fn truncate(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        Some((at, _)) => Cow::Owned(format!("{}…", &s[..at])),
        None => Cow::Borrowed(s),
    }
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
            if m.content.chars().count() > limits.max_message_chars {
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
    pub content: String,
    pub finish_reason: String,
    pub usage: Usage,
}

/// What a provider's stream yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    Delta(String),
    /// The last event of a stream that ended well.
    Finished {
        finish_reason: String,
        usage: Usage,
    },
}

/// Normalises provider stop words for native answers: `stop`, `length`, or
/// the provider's own word.
pub fn normalize_finish_reason(reason: &str) -> String {
    match reason {
        "end_turn" | "stop_sequence" | "stop" => "stop".into(),
        "max_tokens" | "length" => "length".into(),
        other => other.into(),
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
                content: "ab".into()
            })
        );
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
        let msg = |c: &str| Message {
            role: Role::User,
            content: c.into(),
        };
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
    fn finish_reasons_are_normalised() {
        assert_eq!(normalize_finish_reason("end_turn"), "stop");
        assert_eq!(normalize_finish_reason("max_tokens"), "length");
        assert_eq!(normalize_finish_reason("tool_use"), "tool_use");
    }
}
