//! The chat flow shared by both wire formats: resolve the model, take the
//! request path's steps ([`admit`]: FAQ, budgets, cache), call its targets
//! through `resilience`, account for the answer (cost, spend, cache store),
//! and observe the result (audit fields for the request log, streamed
//! tokens, the interaction log).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, PoisonError};

use futures_util::StreamExt;
use tokio::time::Instant;

use crate::cache::{CacheStatus, Directive, Entry, Pending};
use crate::chat::{ChatRequest, Completion, Message, StreamEvent, Usage};
use crate::config::Price;
use crate::cost;
use crate::error::ApiError;
use crate::faq;
use crate::interaction_log::{Interaction, InteractionLog};
use crate::models::{Model, Target};
use crate::providers::{EventStream, ProviderError, ProviderRequest};
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
    /// The client's `Cache-Control` (`no-cache`, `no-store`).
    pub cache: Directive,
}

/// How a stream ended, filled by the stream itself and read by the request
/// log when the response body ends (a stream's line is written then).
#[derive(Debug, Default)]
pub struct StreamReport {
    streaming: AtomicBool,
    end: OnceLock<StreamEnd>,
}

#[derive(Debug, Clone, Copy)]
pub struct StreamEnd {
    /// `success`, `degraded`, or the code of the `error` event sent.
    pub outcome: &'static str,
    pub usage: Option<Usage>,
    pub cost_usd: Option<f64>,
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
    pub cost_usd: Option<f64>,
    pub degraded: bool,
}

/// Which model and target answered.
#[derive(Debug, Clone)]
pub struct Served {
    pub model: Arc<str>,
    pub provider: Option<Arc<str>>,
    pub provider_model: Option<Arc<str>>,
    pub degraded: bool,
    /// The answering target's price: zero for fallbacks, FAQ answers and cache hits.
    pub price: Price,
    /// Answered from the response cache.
    pub cached: bool,
    /// `x-chatgate-cache`.
    pub cache: CacheStatus,
}

impl Served {
    pub fn audit(&self, usage: Option<Usage>, cost_usd: Option<f64>) -> Audit {
        Audit {
            model: self.model.clone(),
            provider: self.provider.clone(),
            usage,
            cost_usd,
            degraded: self.degraded,
        }
    }

    /// What an answer of `usage` cost.
    pub fn cost(&self, usage: Usage) -> f64 {
        cost::of(self.price, usage)
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
        cost_usd: None,
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

fn served_by(model: &Model, target: &Target, cache: CacheStatus) -> Served {
    Served {
        model: model.name.clone(),
        provider: Some(target.provider.name.clone()),
        provider_model: Some(target.model.clone()),
        degraded: false,
        price: target.price,
        cached: false,
        cache,
    }
}

fn degraded(model: &Model, cache: CacheStatus) -> Served {
    Served {
        model: model.name.clone(),
        provider: None,
        provider_model: None,
        degraded: true,
        price: Price::default(),
        cached: false,
        cache,
    }
}

/// Where the request path sends a chat before any provider call.
enum Path {
    /// A FAQ rule answers.
    Faq(faq::Hit),
    /// The response cache answers.
    Cached(Arc<Entry>),
    /// A provider is called; `store` keeps its answer when it finishes well.
    Call {
        upstream: ProviderRequest,
        cache: CacheStatus,
        store: Option<Pending>,
    },
}

/// The request path, in order. Before it, the middleware stack ran auth and
/// the per-IP/per-key limits; after it come the providers and the cost
/// accounting ([`account`], when the answer ends):
///
/// auth → per-IP/per-key limits → [guard] → FAQ → budgets → cache → providers → cost accounting
async fn admit(
    state: &AppState,
    req: &ChatRequest,
    ctx: &Ctx,
    model: &Model,
) -> Result<Path, Refusal> {
    // guard: content safety (its own step, added here when it exists).
    if let Some(hit) = state.faq.answer(&model.name, &req.messages) {
        state.metrics.faq_answer(&hit.rule);
        return Ok(Path::Faq(hit));
    }
    state
        .budgets
        .check(ctx.key_id.as_deref(), end_user(req))
        .await?;
    let upstream = model.upstream_request(req, &ctx.request_id);
    let lookup = state
        .cache
        .lookup(ctx.key_id.as_deref(), model, &upstream, ctx.cache)
        .await;
    if let Some(entry) = lookup.hit {
        return Ok(Path::Cached(entry));
    }
    Ok(Path::Call {
        upstream,
        cache: lookup.status,
        store: lookup.store,
    })
}

/// Whose per-user budget a chat spends: the `user` field (the JWT subject
/// will take its place when JWT auth exists).
fn end_user(req: &ChatRequest) -> Option<&str> {
    req.user.as_deref()
}

/// Cost accounting of an answer that ended well: the cost counter and the
/// budgets' spend. Fallbacks, FAQ answers and cache hits never get here.
async fn account(
    state: &AppState,
    key_id: Option<&Arc<str>>,
    end_user: Option<&str>,
    served: &Served,
    usage: Usage,
) {
    let cost = served.cost(usage);
    if let (Some(provider), Some(model)) = (&served.provider, &served.provider_model) {
        state.metrics.cost(provider, model, key_id, cost);
    }
    state
        .budgets
        .record(key_id.map(|k| &**k), end_user, usage, cost)
        .await;
}

/// A FAQ answer: `provider: "faq"`, the rule's name as `provider_model`, free.
fn faq_answer(model: &Model, hit: &faq::Hit) -> (Served, Completion) {
    let served = Served {
        model: model.name.clone(),
        provider: Some(Arc::from("faq")),
        provider_model: Some(hit.rule.clone()),
        degraded: false,
        price: Price::default(),
        cached: false,
        cache: CacheStatus::Bypass,
    };
    let completion = Completion {
        content: hit.answer.to_string(),
        finish_reason: "stop".into(),
        usage: Usage::default(),
    };
    (served, completion)
}

/// An answer from the cache: the stored text, usage 0 (nothing was spent).
fn cached_answer(model: &Model, entry: &Entry) -> (Served, Completion) {
    let served = Served {
        model: model.name.clone(),
        provider: entry.provider.as_deref().map(Arc::from),
        provider_model: entry.provider_model.as_deref().map(Arc::from),
        degraded: false,
        price: Price::default(),
        cached: true,
        cache: CacheStatus::Hit,
    };
    let completion = Completion {
        content: entry.content.clone(),
        finish_reason: entry.finish_reason.clone(),
        usage: Usage::default(),
    };
    (served, completion)
}

fn entry(served: &Served, content: String, finish_reason: String) -> Entry {
    Entry {
        content,
        finish_reason,
        provider: served.provider.as_deref().map(str::to_owned),
        provider_model: served.provider_model.as_deref().map(str::to_owned),
    }
}

/// A whole answer (or the fallback message).
pub async fn complete(state: &AppState, req: &ChatRequest, ctx: &Ctx) -> Result<Answer, Refusal> {
    let model = resolve(state, req)?;
    let (upstream, cache, store) = match admit(state, req, ctx, &model).await? {
        Path::Faq(hit) => {
            let (served, completion) = faq_answer(&model, &hit);
            return Ok(Answer { served, completion });
        }
        Path::Cached(entry) => {
            let (served, completion) = cached_answer(&model, &entry);
            return Ok(Answer { served, completion });
        }
        Path::Call {
            upstream,
            cache,
            store,
        } => (upstream, cache, store),
    };
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
            served: served_by(&model, &target, cache),
            completion: value,
        },
        Ok(Outcome::Fallback(message)) => Answer {
            served: degraded(&model, cache),
            completion: Completion {
                content: message,
                finish_reason: "stop".into(),
                usage: Usage::default(),
            },
        },
        Err(f) => {
            if let Some(j) = journal {
                j.write(None, String::new(), Usage::default(), "error");
            }
            return Err(failed(&model, f));
        }
    };
    if let Some(j) = journal {
        let c = &answer.completion;
        j.write(
            answer.served.provider.clone(),
            c.content.clone(),
            c.usage,
            answer.served.outcome(),
        );
    }
    if !answer.served.degraded {
        let usage = answer.completion.usage;
        account(
            state,
            ctx.key_id.as_ref(),
            end_user(req),
            &answer.served,
            usage,
        )
        .await;
        if let Some(pending) = store {
            let c = &answer.completion;
            let e = entry(&answer.served, c.content.clone(), c.finish_reason.clone());
            state.cache.put(pending, e).await;
        }
    }
    Ok(answer)
}

/// A whole answer as a stream: one delta, then `Finished` (FAQ answers and cache hits).
fn canned_stream(ctx: &Ctx, served: Served, completion: Completion) -> Streaming {
    if let Some(report) = &ctx.report {
        report.streaming.store(true, Ordering::Relaxed);
        report.ended(StreamEnd {
            outcome: "success",
            usage: Some(completion.usage),
            cost_usd: Some(0.0),
        });
    }
    let events = vec![
        Ok(StreamEvent::Delta(completion.content)),
        Ok(StreamEvent::Finished {
            finish_reason: completion.finish_reason,
            usage: completion.usage,
        }),
    ];
    Streaming {
        served,
        events: futures_util::stream::iter(events).boxed(),
    }
}

/// A stream whose first event has arrived (or the fallback message as a stream).
pub async fn stream(state: &AppState, req: &ChatRequest, ctx: &Ctx) -> Result<Streaming, Refusal> {
    let model = resolve(state, req)?;
    let (upstream, cache, store) = match admit(state, req, ctx, &model).await? {
        Path::Faq(hit) => {
            let (served, completion) = faq_answer(&model, &hit);
            return Ok(canned_stream(ctx, served, completion));
        }
        Path::Cached(entry) => {
            let (served, completion) = cached_answer(&model, &entry);
            return Ok(canned_stream(ctx, served, completion));
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
            Ok(Outcome::Answer {
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
            Ok(Outcome::Fallback(message)) => {
                let finished = StreamEvent::Finished {
                    finish_reason: "stop".into(),
                    usage: Usage::default(),
                };
                let events = vec![Ok(StreamEvent::Delta(message)), Ok(finished)];
                (
                    degraded(&model, cache),
                    futures_util::stream::iter(events).boxed(),
                )
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
    let events = observe(
        state.metrics.clone(),
        served.clone(),
        journal,
        ctx.report.clone(),
        events,
    );
    let events = if served.degraded {
        events
    } else {
        account_stream(state.clone(), ctx, req, served.clone(), store, events)
    };
    Ok(Streaming { served, events })
}

/// A stream's cost accounting, when it ends well (before its last event
/// goes out, so the next request sees the spend): cost and spend, and its
/// text stored when cacheable and within the entry cap. A stream that
/// fails or is left unfinished stores nothing.
fn account_stream(
    state: AppState,
    ctx: &Ctx,
    req: &ChatRequest,
    served: Served,
    store: Option<Pending>,
    events: EventStream,
) -> EventStream {
    struct Books {
        state: AppState,
        key_id: Option<Arc<str>>,
        end_user: Option<String>,
        served: Served,
        /// The pending store and the text so far, until it no longer fits.
        keep: std::sync::Mutex<Option<(Pending, String)>>,
    }
    impl Books {
        fn keep(&self, delta: &str) {
            let mut keep = self.keep.lock().unwrap_or_else(PoisonError::into_inner);
            let fits = keep
                .as_ref()
                .is_some_and(|(_, t)| self.state.cache.fits(t.len() + delta.len()));
            match keep.as_mut() {
                Some((_, t)) if fits => t.push_str(delta),
                _ => *keep = None,
            }
        }
        fn take(&self) -> Option<(Pending, String)> {
            self.keep
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
        }
    }
    let books = Arc::new(Books {
        state,
        key_id: ctx.key_id.clone(),
        end_user: end_user(req).map(str::to_owned),
        served,
        keep: std::sync::Mutex::new(store.map(|p| (p, String::new()))),
    });
    events
        .then(move |event| {
            let books = books.clone();
            async move {
                match &event {
                    Ok(StreamEvent::Delta(delta)) => books.keep(delta),
                    Ok(StreamEvent::Finished {
                        finish_reason,
                        usage,
                    }) => {
                        let b = &*books;
                        account(
                            &b.state,
                            b.key_id.as_ref(),
                            b.end_user.as_deref(),
                            &b.served,
                            *usage,
                        )
                        .await;
                        if let Some((pending, content)) = b.take() {
                            let e = entry(&b.served, content, finish_reason.clone());
                            b.state.cache.put(pending, e).await;
                        }
                    }
                    Err(_) => {}
                }
                event
            }
        })
        .boxed()
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
                            cost_usd: Some(served.cost(*usage)),
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
                    let timeout = matches!(error, ProviderError::Timeout);
                    if let Some(r) = &report {
                        // The code of the `error` event the client gets.
                        let code = if timeout { "timeout" } else { "upstream_error" };
                        r.ended(StreamEnd {
                            outcome: code,
                            usage: None,
                            cost_usd: None,
                        });
                    }
                    if let Some(j) = journal.take() {
                        let outcome = if timeout { "timeout" } else { "error" };
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
            answer,
        });
    }
}
