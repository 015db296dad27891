//! Canary variants on the request path: which variant a chat goes to
//! ([`pick`], right after the model is resolved) and how it ended
//! ([`ended`]: the chat metrics, and the canary's rollback window).

use std::sync::Arc;

use tokio::time::Instant;

use crate::chat::ChatRequest;
use crate::config::Sticky;
use crate::context::{Ctx, Outcome};
use crate::models::Model;
use crate::state::AppState;

/// The stable model, or its canary when the request's sticky id lands in
/// the canary's effective percent.
pub(super) fn pick(model: &Arc<Model>, req: &ChatRequest, ctx: &Ctx) -> Arc<Model> {
    match &model.canary {
        Some(c) if c.rollout.takes(sticky_id(c.rollout.sticky, ctx, req)) => c.model.clone(),
        _ => model.clone(),
    }
}

/// Whose requests stay together: for `user` the verified end user, else the
/// request's `user`, else the key id (else the request id: nothing names the
/// caller); for `key` the key id; for `request` the request id.
pub(super) fn sticky_id<'a>(sticky: Sticky, ctx: &'a Ctx, req: &'a ChatRequest) -> &'a str {
    let key = ctx.key_id.as_deref();
    let id = match sticky {
        Sticky::User => ctx.end_user.as_deref().or(req.user.as_deref()).or(key),
        Sticky::Key => key,
        Sticky::Request => None,
    };
    id.unwrap_or(&ctx.request_id)
}

/// How a chat ended, in the words of `chatgate_chat_requests_total`'s
/// `outcome`: upstream failures and timeouts are `error`; a refusal the
/// client caused (a provider's 400, a blocked answer) is none of them.
fn label(outcome: Outcome) -> Option<&'static str> {
    match outcome {
        Outcome::Success => Some("success"),
        Outcome::Degraded => Some("degraded"),
        Outcome::Timeout | Outcome::UpstreamError | Outcome::Refused("upstream_unavailable") => {
            Some("error")
        }
        _ => None,
    }
}

/// Counts a chat that ended (streams at their end) and, for a canary,
/// feeds its rollback window.
pub(super) fn ended(
    state: &AppState,
    ctx: &Ctx,
    model: &Model,
    started: Instant,
    outcome: Outcome,
) {
    let Some(label) = label(outcome) else {
        return;
    };
    let seconds = started.elapsed().as_secs_f64();
    state
        .metrics
        .chat(&model.name, model.variant.as_str(), label, seconds);
    let rolled = model
        .rollout
        .as_ref()
        .and_then(|r| r.record(label != "success"));
    if let Some(rolled) = rolled {
        let event = crate::audit::Event {
            event: "canary_rollback",
            request_id: Some(ctx.request_id.clone()),
            detail: serde_json::json!({
                "model": &*model.name,
                "error_rate": rolled.error_rate,
                "requests": rolled.requests,
            }),
            ..Default::default()
        };
        crate::audit::record(state.audit.as_ref(), event);
    }
}
