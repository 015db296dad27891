//! The chat flow shared by both wire formats: resolve the model, call its
//! targets through `resilience`, and observe the result (audit fields for the
//! request log, streamed tokens, the interaction log).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use futures_util::StreamExt;
use tokio::time::Instant;

use crate::chat::{ChatRequest, Completion, Message, StreamEvent, Usage};
use crate::error::ApiError;
use crate::guard::{Blocked, Flags};
use crate::interaction_log::{Interaction, InteractionLog};
use crate::models::{Model, Target};
use crate::providers::{EventStream, ProviderError};
use crate::resilience::{self, Complete, Failed, Failure, OpenStream, Outcome};
use crate::state::AppState;

/// Who is asking, and since when (the request's arrival at the stack).
#[derive(Debug, Clone)]
pub struct Ctx {
    pub request_id: String,
    pub key_id: Option<Arc<str>>,
    pub started: Instant,
    /// Where a stream reports how it ended, for the request log.
    pub report: Option<Arc<StreamReport>>,
}

impl Ctx {
    /// Where the guard notes `flag` matches for this request's log lines.
    fn flags(&self) -> Flags {
        self.report
            .as_ref()
            .map(|r| r.flags.clone())
            .unwrap_or_default()
    }
}

/// How a stream ended, filled by the stream itself and read by the request
/// log when the response body ends (a stream's line is written then).
#[derive(Debug, Default)]
pub struct StreamReport {
    streaming: AtomicBool,
    end: OnceLock<StreamEnd>,
    /// Guard rules with `action = "flag"` that matched (whole answers too).
    pub flags: Flags,
}

#[derive(Debug, Clone, Copy)]
pub struct StreamEnd {
    /// `success`, `degraded`, or the code of the `error` event sent.
    pub outcome: &'static str,
    pub usage: Option<Usage>,
}

impl StreamReport {
    /// `None` for a whole answer; `Some(None)` for a stream that has not ended
    /// (its client left mid-way); otherwise how it ended.
    pub fn stream_end(&self) -> Option<Option<StreamEnd>> {
        self.streaming
            .load(Ordering::Relaxed)
            .then(|| self.end.get().copied())
    }

    fn ended(&self, end: StreamEnd) {
        let _ = self.end.set(end);
    }
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
    /// The guard's verdict: a blocked answer is never sent nor cached.
    pub blocked: Option<Blocked>,
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

fn served_by(model: &Model, target: &Target) -> Served {
    Served {
        model: model.name.clone(),
        provider: Some(target.provider.name.clone()),
        provider_model: Some(target.model.clone()),
        degraded: false,
    }
}

fn degraded(model: &Model) -> Served {
    Served {
        model: model.name.clone(),
        provider: None,
        provider_model: None,
        degraded: true,
    }
}

/// A whole answer (or the fallback message).
pub async fn complete(state: &AppState, req: &ChatRequest, ctx: &Ctx) -> Result<Answer, Refusal> {
    let model = resolve(state, req)?;
    let flags = ctx.flags();
    let req = &*state.guard.admit(req, &flags)?;
    let upstream = model.upstream_request(req, &ctx.request_id);
    let journal = Journal::start(state, ctx, &model, &upstream.messages);
    let answer = match resilience::call(
        &Complete,
        &model,
        &upstream,
        deadline(state, ctx),
        &state.metrics,
    )
    .await
    {
        Ok(Outcome::Answer { target, value }) => Answer {
            served: served_by(&model, &target),
            completion: value,
            blocked: None,
        },
        Ok(Outcome::Fallback(message)) => Answer {
            served: degraded(&model),
            completion: Completion {
                content: message,
                finish_reason: "stop".into(),
                usage: Usage::default(),
            },
            blocked: None,
        },
        Err(f) => {
            if let Some(j) = journal {
                j.write(None, String::new(), Usage::default(), "error");
            }
            return Err(failed(&model, f));
        }
    };
    let mut answer = answer;
    answer.blocked = state
        .guard
        .screen_answer(&model.name, &answer.completion.content, &flags);
    if let Some(j) = journal {
        let c = &answer.completion;
        let outcome = match answer.blocked {
            Some(_) => BLOCKED,
            None => answer.served.outcome(),
        };
        j.write(
            answer.served.provider.clone(),
            c.content.clone(),
            c.usage,
            outcome,
        );
    }
    if let Some(blocked) = &answer.blocked {
        // Tokens were spent upstream even though the answer is withheld.
        let audit = answer.served.audit(Some(answer.completion.usage));
        return Err(Refusal {
            error: blocked.error(),
            audit: Some(audit),
        });
    }
    Ok(answer)
}

/// The interaction log's `outcome` of an answer the guard withheld.
const BLOCKED: &str = "blocked";

/// A stream whose first event has arrived (or the fallback message as a stream).
pub async fn stream(state: &AppState, req: &ChatRequest, ctx: &Ctx) -> Result<Streaming, Refusal> {
    let model = resolve(state, req)?;
    let flags = ctx.flags();
    let req = &*state.guard.admit(req, &flags)?;
    let upstream = model.upstream_request(req, &ctx.request_id);
    let journal = Journal::start(state, ctx, &model, &upstream.messages);
    let deadline = deadline(state, ctx);
    let (served, events) =
        match resilience::call(&OpenStream, &model, &upstream, deadline, &state.metrics).await {
            Ok(Outcome::Answer {
                target,
                value: (first, rest),
            }) => {
                let idle = target.provider.policy.attempt_timeout;
                let first = futures_util::stream::once(async move { Ok(first) });
                (
                    served_by(&model, &target),
                    first.chain(resilience::guard(rest, deadline, idle)).boxed(),
                )
            }
            Ok(Outcome::Fallback(message)) => {
                let finished = StreamEvent::Finished {
                    finish_reason: "stop".into(),
                    usage: Usage::default(),
                };
                let events = vec![Ok(StreamEvent::Delta(message)), Ok(finished)];
                (degraded(&model), futures_util::stream::iter(events).boxed())
            }
            Err(f) => {
                if let Some(j) = journal {
                    j.write(None, String::new(), Usage::default(), "error");
                }
                return Err(failed(&model, f));
            }
        };
    if let Some(report) = &ctx.report {
        report.streaming.store(true, Ordering::Relaxed);
    }
    let events = state.guard.screen_stream(&model.name, events, flags);
    let events = observe(
        state.metrics.clone(),
        served.clone(),
        journal,
        ctx.report.clone(),
        events,
    );
    Ok(Streaming { served, events })
}

impl Served {
    /// The interaction log's `outcome` for an answer.
    fn outcome(&self) -> &'static str {
        if self.degraded { "degraded" } else { "success" }
    }
}

/// Counts streamed tokens when the stream ends, reports how it ended to the
/// request log, and writes its interaction line. Runs while the response body
/// is polled, inside the request span (see `middleware::body_guard`).
fn observe(
    metrics: crate::metrics::Metrics,
    served: Served,
    journal: Option<Journal>,
    report: Option<Arc<StreamReport>>,
    events: EventStream,
) -> EventStream {
    let mut text = String::new();
    let mut chars = 0;
    let mut journal = journal;
    events
        .map(move |event| {
            match &event {
                Ok(StreamEvent::Delta(delta)) => {
                    if let Some(j) = &journal {
                        j.keep(&mut text, &mut chars, delta);
                    }
                }
                Ok(StreamEvent::Finished { usage, .. }) => {
                    if let (Some(provider), Some(model)) =
                        (&served.provider, &served.provider_model)
                    {
                        metrics.tokens(provider, model, *usage);
                    }
                    if let Some(r) = &report {
                        r.ended(StreamEnd {
                            outcome: served.outcome(),
                            usage: Some(*usage),
                        });
                    }
                    if let Some(j) = journal.take() {
                        j.write(
                            served.provider.clone(),
                            std::mem::take(&mut text),
                            *usage,
                            served.outcome(),
                        );
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "stream ended with an error after it began");
                    // The code of the `error` event the client gets, and the interaction log's outcome.
                    let (code, outcome) = match error {
                        ProviderError::Timeout => ("timeout", "timeout"),
                        ProviderError::Blocked(_) => ("content_blocked", BLOCKED),
                        _ => ("upstream_error", "error"),
                    };
                    if let Some(r) = &report {
                        r.ended(StreamEnd {
                            outcome: code,
                            usage: None,
                        });
                    }
                    if let Some(j) = journal.take() {
                        j.write(
                            served.provider.clone(),
                            std::mem::take(&mut text),
                            Usage::default(),
                            outcome,
                        );
                    }
                }
            }
            event
        })
        .boxed()
}

/// The interaction-log line of one sampled chat, written when it ends.
struct Journal {
    log: InteractionLog,
    request_id: String,
    key_id: Option<Arc<str>>,
    started: Instant,
    model: Arc<str>,
    messages: Arc<[Message]>,
    flags: Flags,
    /// At most this many characters of an answer are logged (`chat.max_message_chars`,
    /// what one message may hold), so a long stream cannot grow the buffer without end.
    answer_cap: usize,
}

impl Journal {
    /// `None` when the log is off or this chat is not sampled.
    fn start(
        state: &AppState,
        ctx: &Ctx,
        model: &Model,
        messages: &Arc<[Message]>,
    ) -> Option<Self> {
        let log = state.interactions.as_ref().filter(|log| log.sampled())?;
        Some(Self {
            log: log.clone(),
            request_id: ctx.request_id.clone(),
            key_id: ctx.key_id.clone(),
            started: ctx.started,
            model: model.name.clone(),
            messages: messages.clone(),
            flags: ctx.flags(),
            answer_cap: state.config.chat.max_message_chars,
        })
    }

    /// Appends `delta` to a streamed answer's `text` (`chars` characters so
    /// far), up to the cap; past it, a delta costs nothing.
    fn keep(&self, text: &mut String, chars: &mut usize, delta: &str) {
        let room = self.answer_cap.saturating_sub(*chars);
        if room == 0 {
            return;
        }
        let before = text.len();
        text.extend(delta.chars().take(room));
        *chars += text[before..].chars().count();
    }

    fn write(
        self,
        provider: Option<Arc<str>>,
        answer: String,
        usage: Usage,
        outcome: &'static str,
    ) {
        let answer = match answer.char_indices().nth(self.answer_cap) {
            Some((at, _)) => answer[..at].to_owned(),
            None => answer,
        };
        self.log.record(Interaction {
            request_id: self.request_id,
            key_id: self.key_id,
            model: self.model,
            provider,
            usage,
            latency_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            outcome,
            messages: self.messages,
            flags: self.flags.names(),
            answer,
        });
    }
}
