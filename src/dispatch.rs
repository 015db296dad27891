//! The chat flow shared by both wire formats: resolve the model, call its
//! targets through `resilience`, and observe the result (audit fields for the
//! request log, streamed tokens, the interaction log).

use std::sync::Arc;

use futures_util::StreamExt;
use tokio::time::Instant;

use crate::chat::{ChatRequest, Completion, StreamEvent, Usage};
use crate::error::ApiError;
use crate::interaction_log::Interaction;
use crate::models::Model;
use crate::providers::{EventStream, ProviderError, ProviderRequest};
use crate::resilience::{self, Complete, Failed, Failure, OpenStream, Outcome};
use crate::state::AppState;

/// Who is asking, and since when.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub request_id: String,
    pub key_id: Option<Arc<str>>,
    pub started: Instant,
}

/// What the request log adds to its line for a chat (set as a response extension).
#[derive(Debug, Clone)]
pub struct Audit {
    pub model: Arc<str>,
    pub provider: Option<Arc<str>>,
    pub usage: Option<Usage>,
    pub degraded: bool,
}

/// Which model and target answered.
#[derive(Debug, Clone)]
pub struct Served {
    pub model: Arc<str>,
    pub provider: Option<Arc<str>>,
    pub provider_model: Option<Arc<str>>,
    pub degraded: bool,
}

impl Served {
    pub fn audit(&self, usage: Option<Usage>) -> Audit {
        Audit {
            model: self.model.clone(),
            provider: self.provider.clone(),
            usage,
            degraded: self.degraded,
        }
    }
}

pub struct Answer {
    pub served: Served,
    pub completion: Completion,
}

pub struct Streaming {
    pub served: Served,
    /// Starts with the first event; ends with `Finished` or one error.
    pub events: EventStream,
}

fn resolve(state: &AppState, req: &ChatRequest) -> Result<Arc<Model>, ApiError> {
    req.validate(&state.config.chat)?;
    let name = req
        .model
        .as_deref()
        .unwrap_or(&state.config.chat.default_model);
    state
        .catalog
        .get(name)
        .cloned()
        .ok_or_else(|| ApiError::ModelNotFound(name.to_owned()))
}

/// A chat that failed, with the audit fields the request log still wants.
#[derive(Debug)]
pub struct Refusal {
    pub error: ApiError,
    pub audit: Option<Audit>,
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Self {
        Self { error, audit: None }
    }
}

impl axum::response::IntoResponse for Refusal {
    fn into_response(self) -> axum::response::Response {
        let mut response = self.error.into_response();
        if let Some(audit) = self.audit {
            response.extensions_mut().insert(audit);
        }
        response
    }
}

fn failed(model: &Model, failed: Failed) -> Refusal {
    tracing::warn!(model = %model.name, failure = ?failed.failure, failures = %failed.trail, "chat failed");
    let error = match failed.failure {
        Failure::BadRequest { detail } => ApiError::invalid(match detail {
            Some(code) => format!("the provider rejected the request as invalid ({code})"),
            None => "the provider rejected the request as invalid".to_owned(),
        }),
        Failure::Timeout => ApiError::Timeout,
        Failure::Unusable => ApiError::UpstreamError,
        Failure::Unavailable => ApiError::UpstreamUnavailable,
    };
    let audit = Audit {
        model: model.name.clone(),
        provider: None,
        usage: None,
        degraded: false,
    };
    Refusal {
        error,
        audit: Some(audit),
    }
}

fn deadline(state: &AppState, ctx: &Ctx) -> Instant {
    ctx.started + state.config.server.request_timeout
}

/// A whole answer (or the fallback message).
pub async fn complete(state: &AppState, req: &ChatRequest, ctx: &Ctx) -> Result<Answer, Refusal> {
    let model = resolve(state, req)?;
    let upstream = model.upstream_request(req, &ctx.request_id);
    let outcome = resilience::call(
        &Complete,
        &model,
        &upstream,
        deadline(state, ctx),
        &state.metrics,
    )
    .await;
    let answer = match outcome {
        Ok(Outcome::Answer { target, value }) => Answer {
            served: Served {
                model: model.name.clone(),
                provider: Some(target.provider.name.clone()),
                provider_model: Some(target.model.clone()),
                degraded: false,
            },
            completion: value,
        },
        Ok(Outcome::Fallback(message)) => Answer {
            served: Served {
                model: model.name.clone(),
                provider: None,
                provider_model: None,
                degraded: true,
            },
            completion: Completion {
                content: message,
                finish_reason: "stop".into(),
                usage: Usage::default(),
            },
        },
        Err(f) => {
            log_interaction(
                state,
                ctx,
                &model.name,
                None,
                &upstream,
                String::new(),
                Usage::default(),
                "error",
            );
            return Err(failed(&model, f));
        }
    };
    let outcome = if answer.served.degraded {
        "degraded"
    } else {
        "success"
    };
    let c = &answer.completion;
    log_interaction(
        state,
        ctx,
        &model.name,
        answer.served.provider.clone(),
        &upstream,
        c.content.clone(),
        c.usage,
        outcome,
    );
    Ok(answer)
}

/// A stream whose first event has arrived (or the fallback message as a stream).
pub async fn stream(state: &AppState, req: &ChatRequest, ctx: &Ctx) -> Result<Streaming, Refusal> {
    let model = resolve(state, req)?;
    let upstream = model.upstream_request(req, &ctx.request_id);
    let deadline = deadline(state, ctx);
    match resilience::call(&OpenStream, &model, &upstream, deadline, &state.metrics).await {
        Ok(Outcome::Answer {
            target,
            value: (first, rest),
        }) => {
            let idle = target.provider.policy.attempt_timeout;
            let events = futures_util::stream::once(async move { Ok(first) })
                .chain(resilience::guard(rest, deadline, idle))
                .boxed();
            let served = Served {
                model: model.name.clone(),
                provider: Some(target.provider.name.clone()),
                provider_model: Some(target.model.clone()),
                degraded: false,
            };
            let events = observe(
                state.clone(),
                ctx.clone(),
                served.clone(),
                upstream,
                &target.model,
                events,
            );
            Ok(Streaming { served, events })
        }
        Ok(Outcome::Fallback(message)) => {
            let served = Served {
                model: model.name.clone(),
                provider: None,
                provider_model: None,
                degraded: true,
            };
            let events = vec![
                Ok(StreamEvent::Delta(message)),
                Ok(StreamEvent::Finished {
                    finish_reason: "stop".into(),
                    usage: Usage::default(),
                }),
            ];
            let events = observe(
                state.clone(),
                ctx.clone(),
                served.clone(),
                upstream,
                "",
                futures_util::stream::iter(events).boxed(),
            );
            Ok(Streaming { served, events })
        }
        Err(f) => {
            log_interaction(
                state,
                ctx,
                &model.name,
                None,
                &upstream,
                String::new(),
                Usage::default(),
                "error",
            );
            Err(failed(&model, f))
        }
    }
}

/// Counts streamed tokens and writes the interaction line when the stream ends.
fn observe(
    state: AppState,
    ctx: Ctx,
    served: Served,
    upstream: ProviderRequest,
    provider_model: &str,
    events: EventStream,
) -> EventStream {
    let provider_model: Arc<str> = Arc::from(provider_model);
    let keep_text = state.interactions.as_ref().is_some_and(|log| log.sampled());
    let mut text = String::new();
    events
        .map(move |event| {
            match &event {
                Ok(StreamEvent::Delta(delta)) if keep_text => text.push_str(delta),
                Ok(StreamEvent::Delta(_)) => {}
                Ok(StreamEvent::Finished { usage, .. }) => {
                    if let Some(provider) = &served.provider {
                        state.metrics.tokens(provider, &provider_model, *usage);
                    }
                    let outcome = if served.degraded { "degraded" } else { "success" };
                    if keep_text {
                        let answer = std::mem::take(&mut text);
                        record(&state, &ctx, &served.model, served.provider.clone(), &upstream, answer, *usage, outcome);
                    }
                }
                Err(error) => {
                    tracing::warn!(request_id = %ctx.request_id, %error, "stream ended with an error after it began");
                    if keep_text {
                        let answer = std::mem::take(&mut text);
                        record(&state, &ctx, &served.model, served.provider.clone(), &upstream, answer, Usage::default(), stream_outcome(error));
                    }
                }
            }
            event
        })
        .boxed()
}

fn stream_outcome(error: &ProviderError) -> &'static str {
    match error {
        ProviderError::Timeout => "timeout",
        _ => "error",
    }
}

#[allow(clippy::too_many_arguments)]
fn log_interaction(
    state: &AppState,
    ctx: &Ctx,
    model: &Arc<str>,
    provider: Option<Arc<str>>,
    upstream: &ProviderRequest,
    answer: String,
    usage: Usage,
    outcome: &'static str,
) {
    if state.interactions.as_ref().is_some_and(|log| log.sampled()) {
        record(
            state, ctx, model, provider, upstream, answer, usage, outcome,
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn record(
    state: &AppState,
    ctx: &Ctx,
    model: &Arc<str>,
    provider: Option<Arc<str>>,
    upstream: &ProviderRequest,
    answer: String,
    usage: Usage,
    outcome: &'static str,
) {
    if let Some(log) = &state.interactions {
        log.record(Interaction {
            request_id: ctx.request_id.clone(),
            key_id: ctx.key_id.clone(),
            model: model.clone(),
            provider,
            usage,
            latency_ms: ctx.started.elapsed().as_millis() as u64,
            outcome,
            messages: upstream.messages.clone(),
            answer,
        });
    }
}
