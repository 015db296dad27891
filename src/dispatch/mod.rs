//! The chat flow shared by both wire formats: resolve the model, take the
//! request path's steps ([`steps`]: FAQ, budgets, cache), call its targets
//! through `resilience`, and observe the result: tokens are counted here,
//! once, when an answer or a stream ends; cost is accounted for; what the
//! request log needs goes into [`Served`]; the interaction log's line is written.

mod journal;
mod steps;
mod variant;

use std::sync::Arc;

use futures_util::StreamExt;
use tokio::time::Instant;

use crate::cache::CacheStatus;
use crate::chat::{ChatRequest, Completion, FinishReason, StreamEvent, Usage};
use crate::context::{Ctx, Outcome, Served, StreamEnd, StreamReport};
use crate::error::ApiError;
use crate::models::{Model, Target};
use crate::providers::{EventStream, ProviderError};
use crate::resilience::{self, Answered, Complete, Failed, Failure, OpenStream};
use crate::state::AppState;
use journal::Journal;
use steps::Path;

pub struct Answer {
    pub served: Served,
    pub completion: Completion,
}

pub struct Streaming {
    pub served: Served,
    /// Starts with the first event; ends with `Finished` or one error.
    pub events: EventStream,
}

/// The model a chat names, already the variant it goes to (before the
/// guard, FAQ, budgets and cache read the model).
fn resolve(state: &AppState, req: &ChatRequest, ctx: &Ctx) -> Result<Arc<Model>, ApiError> {
    req.validate(&state.config.chat)?;
    let name = req
        .model
        .as_deref()
        .unwrap_or(&state.config.chat.default_model);
    let model = state
        .catalog
        .get(name)
        .ok_or_else(|| ApiError::ModelNotFound(name.to_owned()))?;
    Ok(variant::pick(model, req, ctx))
}

/// A chat that failed, with the model the request log still names.
#[derive(Debug)]
pub struct Refusal {
    pub error: ApiError,
    pub served: Option<Served>,
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Self {
        Self {
            error,
            served: None,
        }
    }
}

impl axum::response::IntoResponse for Refusal {
    fn into_response(self) -> axum::response::Response {
        let mut response = self.error.into_response();
        if let Some(served) = self.served {
            // Which variant failed, for the client and whoever compares them.
            let variant = axum::http::HeaderValue::from_static(served.variant.as_str());
            response
                .headers_mut()
                .insert(crate::headers::VARIANT, variant);
            response.extensions_mut().insert(served);
        }
        response
    }
}

/// The refusal of a chat whose every target failed; its interaction line is
/// written with the request log's outcome for the same error.
fn failed(
    state: &AppState,
    ctx: &Ctx,
    model: &Model,
    failed: Failed,
    journal: Option<Journal>,
) -> Refusal {
    tracing::warn!(model = %model.name, failure = ?failed.failure, failures = %failed.trail, "chat failed");
    let error = match failed.failure {
        Failure::BadRequest { detail } => ApiError::invalid(match detail {
            Some(code) => format!("the provider rejected the request as invalid ({code})"),
            None => "the provider rejected the request as invalid".to_owned(),
        }),
        Failure::Timeout => ApiError::Timeout,
        Failure::Unsupported(feature) => ApiError::UnsupportedFeature {
            feature: feature.as_str(),
            param: feature.param(),
        },
        Failure::Unusable => ApiError::UpstreamError,
        Failure::Unavailable => ApiError::UpstreamUnavailable,
    };
    let outcome = Outcome::of_error(error.info().code);
    variant::ended(state, ctx, model, ctx.started, outcome);
    if let Some(j) = journal {
        j.write(None, String::new(), Usage::default(), outcome);
    }
    let served = model.served();
    Refusal {
        error,
        served: Some(served),
    }
}

fn deadline(state: &AppState, ctx: &Ctx) -> Instant {
    ctx.started + state.config.server.request_timeout
}

fn served_by(model: &Model, target: &Target, cache: CacheStatus) -> Served {
    Served {
        provider: Some(target.provider.name.clone()),
        provider_model: Some(target.model.clone()),
        price: target.price,
        cache,
        ..model.served()
    }
}

fn degraded(model: &Model, cache: CacheStatus) -> Served {
    Served {
        degraded: true,
        cache,
        ..model.served()
    }
}

/// A whole answer (or the fallback message).
pub async fn complete(state: &AppState, req: &ChatRequest, ctx: &Ctx) -> Result<Answer, Refusal> {
    let model = resolve(state, req, ctx)?;
    let flags = ctx.flags();
    // guard: sanitising, client system messages, input rules (before FAQ,
    // budgets, cache and providers read the request).
    let req = &*state.guard.admit(req, &flags)?;
    let (upstream, cache, store) = match steps::admit(state, req, ctx, &model).await? {
        Path::Faq(hit) => {
            variant::ended(state, ctx, &model, ctx.started, Outcome::Success);
            let (served, completion) = steps::faq_answer(&model, &hit);
            return Ok(Answer { served, completion });
        }
        Path::Cached(entry) => {
            variant::ended(state, ctx, &model, ctx.started, Outcome::Success);
            let (served, completion) = steps::cached_answer(&model, &entry);
            return Ok(Answer { served, completion });
        }
        Path::Call {
            upstream,
            cache,
            store,
        } => (upstream, cache, store),
    };
    let journal = Journal::start(state, ctx, &model, &upstream.messages);
    let deadline = deadline(state, ctx);
    let answer =
        match resilience::call(&Complete, &model, &upstream, deadline, &state.metrics).await {
            Ok(Answered::By { target, value }) => {
                let mut served = served_by(&model, &target, cache);
                served.usage = Some(value.usage);
                count_tokens(state, &served, value.usage);
                Answer {
                    served,
                    completion: value,
                }
            }
            Ok(Answered::Fallback(message)) => Answer {
                served: Served {
                    usage: Some(Usage::default()),
                    ..degraded(&model, cache)
                },
                completion: Completion::from_text(message, FinishReason::Stop, Usage::default()),
            },
            Err(f) => return Err(failed(state, ctx, &model, f, journal)),
        };
    // guard: output rules and the leak check, before the answer is sent.
    let text = answer.completion.text();
    let blocked = state.guard.screen_answer(&model.name, &text, &flags);
    let outcome = match blocked {
        Some(_) => Outcome::Refused("content_blocked"),
        None => answer.served.outcome(),
    };
    variant::ended(state, ctx, &model, ctx.started, outcome);
    if let Some(j) = journal {
        j.write(
            answer.served.provider.clone(),
            text,
            answer.completion.usage,
            outcome,
        );
    }
    if !answer.served.degraded {
        // Tokens were spent upstream even when the answer is withheld.
        let usage = answer.completion.usage;
        let user = steps::end_user(ctx, req);
        steps::account(state, ctx.key_id.as_ref(), user, &answer.served, usage).await;
        if blocked.is_none() {
            steps::store(state, store, &answer.served, &answer.completion).await;
        }
    }
    if let Some(blocked) = blocked {
        return Err(Refusal {
            error: blocked.error(),
            served: Some(answer.served),
        });
    }
    Ok(answer)
}

/// A stream whose first event has arrived (or the fallback message as a stream).
pub async fn stream(state: &AppState, req: &ChatRequest, ctx: &Ctx) -> Result<Streaming, Refusal> {
    let model = resolve(state, req, ctx)?;
    let flags = ctx.flags();
    let req = &*state.guard.admit(req, &flags)?;
    let (upstream, cache, store) = match steps::admit(state, req, ctx, &model).await? {
        Path::Faq(hit) => {
            variant::ended(state, ctx, &model, ctx.started, Outcome::Success);
            let (served, completion) = steps::faq_answer(&model, &hit);
            return Ok(steps::canned_stream(ctx, served, completion));
        }
        Path::Cached(entry) => {
            variant::ended(state, ctx, &model, ctx.started, Outcome::Success);
            let (served, completion) = steps::cached_answer(&model, &entry);
            return Ok(steps::canned_stream(ctx, served, completion));
        }
        Path::Call {
            upstream,
            cache,
            store,
        } => (upstream, cache, store),
    };
    let journal = Journal::start(state, ctx, &model, &upstream.messages);
    let deadline = deadline(state, ctx);
    let (served, events) =
        match resilience::call(&OpenStream, &model, &upstream, deadline, &state.metrics).await {
            Ok(Answered::By {
                target,
                value: (first, rest),
            }) => {
                let idle = target.provider.policy.attempt_timeout;
                let first = futures_util::stream::once(async move { Ok(first) });
                (
                    served_by(&model, &target, cache),
                    first.chain(resilience::guard(rest, deadline, idle)).boxed(),
                )
            }
            Ok(Answered::Fallback(message)) => {
                let finished = StreamEvent::Finished {
                    finish_reason: FinishReason::Stop,
                    usage: Usage::default(),
                };
                let events = vec![Ok(StreamEvent::Delta(message)), Ok(finished)];
                (
                    degraded(&model, cache),
                    futures_util::stream::iter(events).boxed(),
                )
            }
            Err(f) => return Err(failed(state, ctx, &model, f, journal)),
        };
    if let Some(report) = &ctx.report {
        report.began();
    }
    // guard: output rules and the leak check as the text accumulates.
    let events = state.guard.screen_stream(&model.name, events, flags);
    let events = observe(
        state.clone(),
        (model.clone(), ctx.clone(), ctx.started),
        served.clone(),
        journal,
        ctx.report.clone(),
        events,
    );
    let events = if served.degraded {
        events
    } else {
        steps::account_stream(state.clone(), ctx, req, served.clone(), store, events)
    };
    Ok(Streaming { served, events })
}

/// The one place tokens are counted: when a whole answer arrives, or when a
/// stream ends. A fallback answer has no target and counts nothing.
fn count_tokens(state: &AppState, served: &Served, usage: Usage) {
    if let (Some(provider), Some(model)) = (&served.provider, &served.provider_model) {
        state.metrics.tokens(provider, model, usage);
    }
}

/// How a stream that began ended with `error`: the code of the `error` event
/// the client gets.
fn broken_stream(error: &ProviderError) -> Outcome {
    match error {
        ProviderError::Timeout => Outcome::Timeout,
        ProviderError::Blocked(_) => Outcome::Refused("content_blocked"),
        _ => Outcome::UpstreamError,
    }
}

/// Counts streamed tokens when the stream ends, reports how it ended to the
/// request log, and writes its interaction line. Runs while the response body
/// is polled, inside the request span (see `middleware::body_guard`).
fn observe(
    state: AppState,
    (model, ctx, started): (Arc<Model>, Ctx, Instant),
    served: Served,
    journal: Option<Journal>,
    report: Option<Arc<StreamReport>>,
    events: EventStream,
) -> EventStream {
    let mut watch = Watch {
        state,
        model,
        ctx,
        started,
        ended: false,
        served,
        journal,
        report,
        text: String::new(),
        chars: 0,
    };
    events
        .map(move |event| {
            match &event {
                Ok(StreamEvent::Delta(delta)) => watch.delta(delta),
                // Tool calls reach the OpenAI route only; the interaction log keeps text.
                Ok(StreamEvent::ToolCall { .. } | StreamEvent::Extra { .. }) => {}
                Ok(StreamEvent::Finished { usage, .. }) => {
                    count_tokens(&watch.state, &watch.served, *usage);
                    watch.end(watch.served.outcome(), Some(*usage));
                }
                Err(error) => {
                    tracing::warn!(%error, "stream ended with an error after it began");
                    watch.end(broken_stream(error), None);
                }
            }
            event
        })
        .boxed()
}

/// What `observe` keeps while a stream runs.
struct Watch {
    state: AppState,
    /// The variant that answers, and when the chat began (the chat metrics).
    model: Arc<Model>,
    ctx: Ctx,
    started: Instant,
    ended: bool,
    served: Served,
    journal: Option<Journal>,
    report: Option<Arc<StreamReport>>,
    /// The answer so far, for the interaction log (only when sampled).
    text: String,
    chars: usize,
}

impl Watch {
    fn delta(&mut self, delta: &str) {
        if let Some(j) = &self.journal {
            j.keep(&mut self.text, &mut self.chars, delta);
        }
    }

    /// Reports the end once (a stream ends after its first error).
    fn end(&mut self, outcome: Outcome, usage: Option<Usage>) {
        if !std::mem::replace(&mut self.ended, true) {
            variant::ended(&self.state, &self.ctx, &self.model, self.started, outcome);
        }
        if let Some(r) = &self.report {
            let cost_usd = usage.map(|u| self.served.cost(u));
            r.ended(StreamEnd {
                outcome,
                usage,
                cost_usd,
            });
        }
        if let Some(j) = self.journal.take() {
            j.write(
                self.served.provider.clone(),
                std::mem::take(&mut self.text),
                usage.unwrap_or_default(),
                outcome,
            );
        }
    }
}
