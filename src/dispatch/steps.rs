//! The request path's steps before and after the providers, in the order of
//! the path (one place, read top to bottom):
//!
//! auth → per-IP/per-key limits → guard → FAQ → budgets → cache → providers → cost accounting
//!
//! Auth and the limits are middleware; the guard's input side runs in
//! `dispatch` right after validation; [`admit`] takes FAQ → budgets → cache;
//! [`account`] (whole answers) and [`account_stream`] (streams) do the cost
//! accounting when an answer ends well.

use std::sync::{Arc, Mutex, PoisonError};

use futures_util::StreamExt;

use super::{Refusal, Streaming};
use crate::cache::{CacheStatus, Entry, Pending};
use crate::chat::{Block, ChatRequest, Completion, FinishReason, StreamEvent, Usage};
use crate::config::Price;
use crate::context::{Ctx, Outcome, Served, StreamEnd};
use crate::error::ApiError;
use crate::faq;
use crate::models::Model;
use crate::providers::{EventStream, ProviderRequest};
use crate::state::AppState;

/// Where the request path sends a chat before any provider call.
pub(super) enum Path {
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

/// FAQ → budgets → cache: the steps between the guard and the providers.
pub(super) async fn admit(
    state: &AppState,
    req: &ChatRequest,
    ctx: &Ctx,
    model: &Model,
) -> Result<Path, Refusal> {
    if let Some(hit) = state.faq.answer(&model.name, &req.messages) {
        state.metrics.faq_answer(&hit.rule);
        return Ok(Path::Faq(hit));
    }
    let checked = state
        .budgets
        .check(ctx.key_id.as_deref(), end_user(ctx, req))
        .await;
    if let Err(ApiError::BudgetExceeded { scope, window, .. }) = &checked {
        let event = crate::audit::Event {
            event: "budget_refused",
            actor: ctx.key_id.as_deref().map(str::to_owned),
            request_id: Some(ctx.request_id.clone()),
            detail: serde_json::json!({"scope": scope, "window": window, "model": &*model.name}),
            ..Default::default()
        };
        crate::audit::record(state.audit.as_ref(), event);
    }
    checked?;
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

/// Whose per-user budget a chat spends: the request's `user` field (a JWT
/// subject, where JWT auth verified one, takes its place).
pub(super) fn end_user<'a>(ctx: &'a Ctx, req: &'a ChatRequest) -> Option<&'a str> {
    ctx.end_user.as_deref().or(req.user.as_deref())
}

/// Cost accounting of an answer that ended well: the cost counter and the
/// budgets' spend. Fallbacks, FAQ answers and cache hits never get here.
pub(super) async fn account(
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

/// Stores a whole answer that ended well, when it is cacheable: text only
/// (an answer with tool calls is not replayed from the cache).
pub(super) async fn store(
    state: &AppState,
    pending: Option<Pending>,
    served: &Served,
    c: &Completion,
) {
    let text_only = c.blocks.iter().all(|b| matches!(b, Block::Text(_)));
    if let (Some(pending), true) = (pending, text_only) {
        let e = entry(served, c.text(), &c.finish_reason);
        state.cache.put(pending, e).await;
    }
}

/// A FAQ answer: `provider: "faq"`, the rule's name as `provider_model`, free.
pub(super) fn faq_answer(model: &Model, hit: &faq::Hit) -> (Served, Completion) {
    let served = Served {
        provider: Some(Arc::from("faq")),
        provider_model: Some(hit.rule.clone()),
        usage: Some(Usage::default()),
        ..model.served()
    };
    let completion =
        Completion::from_text(hit.answer.to_string(), FinishReason::Stop, Usage::default());
    (served, completion)
}

/// An answer from the cache: the stored text, usage 0 (nothing was spent).
pub(super) fn cached_answer(model: &Model, entry: &Entry) -> (Served, Completion) {
    let served = Served {
        provider: entry.provider.as_deref().map(Arc::from),
        provider_model: entry.provider_model.as_deref().map(Arc::from),
        usage: Some(Usage::default()),
        price: Price::default(),
        cached: true,
        cache: CacheStatus::Hit,
        ..model.served()
    };
    let completion = Completion::from_text(
        entry.content.clone(),
        FinishReason::from_native(&entry.finish_reason),
        Usage::default(),
    );
    (served, completion)
}

fn entry(served: &Served, content: String, finish_reason: &FinishReason) -> Entry {
    Entry {
        content,
        finish_reason: finish_reason.native().to_owned(),
        provider: served.provider.as_deref().map(str::to_owned),
        provider_model: served.provider_model.as_deref().map(str::to_owned),
    }
}

/// A whole answer as a stream: one delta, then `Finished` (FAQ answers and cache hits).
pub(super) fn canned_stream(ctx: &Ctx, mut served: Served, completion: Completion) -> Streaming {
    served.usage = None;
    if let Some(report) = &ctx.report {
        report.began();
        report.ended(StreamEnd {
            outcome: Outcome::Success,
            usage: Some(completion.usage),
            cost_usd: Some(0.0),
        });
    }
    let text = completion.text();
    let events = vec![
        Ok(StreamEvent::Delta(text)),
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

/// A stream's cost accounting, when it ends well (before its last event
/// goes out, so the next request sees the spend): cost and spend, and its
/// text stored when cacheable and within the entry cap. A stream that fails,
/// is left unfinished or calls tools stores nothing.
pub(super) fn account_stream(
    state: AppState,
    ctx: &Ctx,
    req: &ChatRequest,
    served: Served,
    store: Option<Pending>,
    events: EventStream,
) -> EventStream {
    let books = Arc::new(Books {
        key_id: ctx.key_id.clone(),
        end_user: end_user(ctx, req).map(str::to_owned),
        served,
        keep: Mutex::new(store.map(|p| (p, String::new()))),
        state,
    });
    events
        .then(move |event| {
            let books = books.clone();
            async move {
                match &event {
                    Ok(StreamEvent::Delta(delta)) => books.keep(delta),
                    Ok(StreamEvent::ToolCall { .. }) => books.drop_store(),
                    Ok(StreamEvent::Extra { .. }) => {}
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
                            let e = entry(&b.served, content, finish_reason);
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

/// What [`account_stream`] keeps while a stream runs.
struct Books {
    state: AppState,
    key_id: Option<Arc<str>>,
    end_user: Option<String>,
    served: Served,
    /// The pending store and the text so far, until it no longer fits.
    keep: Mutex<Option<(Pending, String)>>,
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

    fn drop_store(&self) {
        *self.keep.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    fn take(&self) -> Option<(Pending, String)> {
        self.keep
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}
