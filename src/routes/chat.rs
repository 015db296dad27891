//! `POST /api/v1/chat`: the native format, as JSON or as SSE
//! (`delta` events, then one `done` or one `error`).

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Json, Response};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::extract::ApiJson;
use super::{finish, json_event, sse_error};
use crate::chat::{ChatRequest, Dialect, Role, StreamEvent, Usage, WireMessage};
use crate::context::{Ctx, Served};
use crate::dispatch;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct Body {
    /// Required: `{role, content}` objects (`content` a string or content blocks).
    #[schema(value_type = Vec<Object>)]
    messages: Option<Vec<WireMessage>>,
    model: Option<String>,
    max_tokens: Option<u32>,
    temperature: Option<f64>,
    #[serde(default)]
    stream: bool,
    user: Option<String>,
}

impl Body {
    pub(super) fn into_request(self) -> Result<ChatRequest, ApiError> {
        let messages = self
            .messages
            .ok_or_else(|| ApiError::invalid("messages is required"))?
            .into_iter()
            .enumerate()
            .map(|(i, m)| m.into_message(i, Dialect::Native))
            .collect::<Result<_, _>>()?;
        Ok(ChatRequest {
            messages,
            model: self.model,
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            user: self.user,
            stream: self.stream,
            ..Default::default()
        })
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct OutMessage<'a> {
    role: &'static str,
    content: &'a str,
}

/// The response, and (without `message`) the `done` event.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Reply<'a> {
    id: &'a str,
    model: &'a str,
    provider: Option<&'a str>,
    provider_model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<OutMessage<'a>>,
    finish_reason: &'a str,
    usage: UsageOut,
    cached: bool,
    degraded: bool,
    /// `stable` or `canary` (always sent: `stable` for a model without a canary).
    variant: &'static str,
}

fn reply<'a>(
    id: &'a str,
    served: &'a Served,
    message: Option<OutMessage<'a>>,
    finish_reason: &'a str,
    usage: Usage,
) -> Reply<'a> {
    Reply {
        id,
        model: &served.model,
        provider: served.provider.as_deref(),
        provider_model: served.provider_model.as_deref(),
        message,
        finish_reason,
        usage: UsageOut {
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cost_usd: served.cost(usage),
        },
        cached: served.cached,
        degraded: served.degraded,
        variant: served.variant.as_str(),
    }
}

/// Native `usage`: tokens and what they cost.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct UsageOut {
    input_tokens: u32,
    output_tokens: u32,
    cost_usd: f64,
}

pub fn chat_id() -> String {
    format!("chat-{}", uuid::Uuid::new_v4().simple())
}

pub async fn chat(
    State(state): State<AppState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<Body>,
) -> Result<Response, dispatch::Refusal> {
    let req = body.into_request()?;
    let id = chat_id();
    // Native route only: the OpenAI route's clients expect the text as it is.
    let escape = state.config.output.escape_html;
    let shown = move |text: String| -> String {
        if escape {
            crate::guard::escape_html_owned(text)
        } else {
            text
        }
    };
    let response = if req.stream {
        let streaming = dispatch::stream(&state, &req, &ctx).await?;
        let served = streaming.served.clone();
        let events = streaming
            .events
            // The native route offers no tools, so no target calls one; a
            // stray call piece has no place in the native format.
            .filter(|event| {
                std::future::ready(!matches!(
                    event,
                    Ok(StreamEvent::ToolCall { .. } | StreamEvent::Extra { .. })
                ))
            })
            .map(move |event| -> Result<Event, Infallible> {
                Ok(match event {
                    Ok(StreamEvent::Delta(text)) => {
                        #[derive(serde::Serialize)]
                        struct Delta {
                            content: String,
                        }
                        json_event(
                            "delta",
                            &Delta {
                                content: shown(text),
                            },
                        )
                    }
                    Ok(StreamEvent::Finished {
                        finish_reason,
                        usage,
                    }) => json_event(
                        "done",
                        &reply(&id, &served, None, finish_reason.native(), usage),
                    ),
                    Err(error) => sse_error(&error),
                    Ok(StreamEvent::ToolCall { .. } | StreamEvent::Extra { .. }) => {
                        Event::default().comment("tool call")
                    }
                })
            });
        let response = Sse::new(events)
            .keep_alive(KeepAlive::default())
            .into_response();
        finish(response, &streaming.served)
    } else {
        let answer = dispatch::complete(&state, &req, &ctx).await?;
        let c = &answer.completion;
        let text = c.text();
        let content = match escape {
            true => crate::guard::escape_html(&text),
            false => std::borrow::Cow::Borrowed(text.as_str()),
        };
        let body = reply(
            &id,
            &answer.served,
            Some(OutMessage {
                role: Role::Assistant.as_str(),
                content: &content,
            }),
            c.finish_reason.native(),
            c.usage,
        );
        finish(Json(body).into_response(), &answer.served)
    };
    Ok(response)
}
