//! `POST /api/v1/chat`: the native format, as JSON or as SSE
//! (`delta` events, then one `done` or one `error`).

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Json, Response};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::extract::ApiJson;
use super::{finish, sse_error};
use crate::chat::{
    ChatRequest, Dialect, Role, StreamEvent, Usage, WireMessage, normalize_finish_reason,
};
use crate::dispatch::{self, Ctx, Served};
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct Body {
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

#[derive(Serialize)]
struct OutMessage<'a> {
    role: &'static str,
    content: &'a str,
}

/// The response, and (without `message`) the `done` event.
#[derive(Serialize)]
struct Reply<'a> {
    id: &'a str,
    model: &'a str,
    provider: Option<&'a str>,
    provider_model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<OutMessage<'a>>,
    finish_reason: &'a str,
    usage: Usage,
    cached: bool,
    degraded: bool,
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
        usage,
        cached: false,
        degraded: served.degraded,
    }
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
            .map(move |event| -> Result<Event, Infallible> {
                Ok(match event {
                    Ok(StreamEvent::Delta(text)) => Event::default()
                        .event("delta")
                        .json_data(serde_json::json!({ "content": shown(text) }))
                        .unwrap_or_default(),
                    Ok(StreamEvent::Finished {
                        finish_reason,
                        usage,
                    }) => {
                        let reason = normalize_finish_reason(&finish_reason);
                        Event::default()
                            .event("done")
                            .json_data(reply(&id, &served, None, &reason, usage))
                            .unwrap_or_default()
                    }
                    Err(error) => sse_error(&error),
                })
            });
        let response = Sse::new(events)
            .keep_alive(KeepAlive::default())
            .into_response();
        finish(response, &streaming.served, None)
    } else {
        let answer = dispatch::complete(&state, &req, &ctx).await?;
        let c = &answer.completion;
        let content = match escape {
            true => crate::guard::escape_html(&c.content),
            false => std::borrow::Cow::Borrowed(c.content.as_str()),
        };
        let reason = normalize_finish_reason(&c.finish_reason);
        let body = reply(
            &id,
            &answer.served,
            Some(OutMessage {
                role: Role::Assistant.as_str(),
                content: &content,
            }),
            &reason,
            c.usage,
        );
        finish(Json(body).into_response(), &answer.served, Some(c.usage))
    };
    Ok(response)
}
