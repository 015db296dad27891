//! Resilience, in one place: retries with backoff, `Retry-After`, circuit
//! breakers, failover through a model's targets, fallback, and the deadline.
//!
//! For each target in order: skip it if its circuit is open; otherwise try up
//! to `1 + max_retries` attempts, each bounded by the attempt timeout and the
//! request deadline. A client error (400/422) ends everything; any other
//! failure moves on to the next target. When every target failed, the model's
//! `fallback_message` answers, or the failure is reported.

// `backoff` and `circuit` are leaves that the catalog and the providers use
// directly, so neither depends on the failover loop that depends on them.
pub mod backoff;
pub mod circuit;
mod stream;

use backoff::backoff;
pub use stream::{OpenStream, guard};

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::time::Instant;

use crate::chat::{Completion, Usage};
use crate::context::Outcome;
use crate::meters::Metrics;
use crate::models::{Model, Target};
use crate::providers::{self, Class, Feature, Provider, ProviderError, ProviderRequest};

/// One kind of upstream call that the loop below can retry and fail over.
pub trait Attempt {
    type Output: Send;
    fn attempt<'a>(
        &self,
        provider: &'a dyn Provider,
        req: &'a ProviderRequest,
    ) -> BoxFuture<'a, Result<Self::Output, ProviderError>>;
    /// Tokens, when known at the end of the attempt (for its log line).
    fn usage(output: &Self::Output) -> Option<Usage>;
}

/// A whole (non-streaming) answer.
pub struct Complete;

impl Attempt for Complete {
    type Output = Completion;
    fn attempt<'a>(
        &self,
        provider: &'a dyn Provider,
        req: &'a ProviderRequest,
    ) -> BoxFuture<'a, Result<Completion, ProviderError>> {
        provider.complete(req).boxed()
    }
    fn usage(output: &Completion) -> Option<Usage> {
        Some(output.usage)
    }
}

/// How a call ended well.
pub enum Answered<T> {
    By {
        target: Target,
        value: T,
    },
    /// Every target failed; the model's `fallback_message` answers instead.
    Fallback(String),
}

/// Why a call failed, in the terms the HTTP answer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The provider judged the request invalid (400/422); `detail` is its error code.
    BadRequest { detail: Option<String> },
    /// `request_timeout` ran out.
    Timeout,
    /// Every target failed and the last failure was an unusable answer.
    Unusable,
    /// Every target failed (or was skipped by its circuit).
    Unavailable,
    /// Every target was skipped: none can serve this feature of the request.
    Unsupported(Feature),
}

/// One failed attempt on one target, or the target skipped by its open circuit.
#[derive(Debug, Clone)]
pub struct AttemptError {
    pub provider: Arc<str>,
    pub model: Arc<str>,
    /// 1 for the first attempt on this target; 0 when none was made.
    pub attempt: u32,
    /// `None`: the circuit was open, no attempt was made.
    pub error: Option<ProviderError>,
}

impl fmt::Display for AttemptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.error {
            None => write!(f, "{}:{} circuit open", self.provider, self.model),
            Some(error) => write!(
                f,
                "{}:{} attempt {} {error}",
                self.provider, self.model, self.attempt
            ),
        }
    }
}

/// What happened on every target, in order; the log line lists it.
#[derive(Debug, Clone, Default)]
pub struct Trail(pub Vec<AttemptError>);

impl fmt::Display for Trail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|e| write!(f, "{e}; "))
    }
}

impl Trail {
    /// The last thing that happened was an unusable answer (not a circuit, not a status).
    fn ends_unusable(&self) -> bool {
        matches!(
            self.0.last(),
            Some(AttemptError {
                error: Some(ProviderError::Decode(_)),
                ..
            })
        )
    }
}

/// A failed call, with what happened on every target (for the log).
#[derive(Debug, Clone)]
pub struct Failed {
    pub failure: Failure,
    pub trail: Trail,
}

/// Why one target gave no answer.
enum Miss {
    /// Try the next target.
    Next,
    /// Nothing more to try: the deadline passed, or the request itself is bad.
    Stop(Failure),
}

/// Runs `kind` against `model`'s targets, in order, until one answers.
pub async fn call<A: Attempt>(
    kind: &A,
    model: &Model,
    template: &ProviderRequest,
    deadline: Instant,
    metrics: &Metrics,
) -> Result<Answered<A::Output>, Failed> {
    let mut trail = Vec::new();
    // Capability skips (see `skip_unable`) are no failure: they neither count
    // as a fallback nor touch the circuit, and only when every target was
    // skipped is the answer about the feature.
    let mut unsupported = None;
    let mut tried = false;
    for target in &model.targets {
        if skip_unable(model, target, template, &mut unsupported) {
            continue;
        }
        if tried {
            metrics.fallback(&model.name);
        }
        tried = true;
        match try_target(kind, target, template, deadline, metrics, &mut trail).await {
            Ok(value) => {
                let target = target.clone();
                return Ok(Answered::By { target, value });
            }
            Err(Miss::Next) => {}
            Err(Miss::Stop(failure)) => {
                let trail = Trail(trail);
                return Err(Failed { failure, trail });
            }
        }
    }
    let trail = Trail(trail);
    if let (false, Some(feature)) = (tried, unsupported) {
        return Err(Failed {
            failure: Failure::Unsupported(feature),
            trail,
        });
    }
    if let Some(message) = &model.fallback_message {
        metrics.fallback(&model.name);
        tracing::warn!(model = %model.name, failures = %trail, "every target failed; answering with the fallback message");
        return Ok(Answered::Fallback(message.clone()));
    }
    let failure = if trail.ends_unusable() {
        Failure::Unusable
    } else {
        Failure::Unavailable
    };
    Err(Failed { failure, trail })
}

/// Up to `1 + max_retries` attempts on one target (none when its circuit is
/// open), each bounded by the attempt timeout and the request deadline; every
/// failure is added to `trail`.
async fn try_target<A: Attempt>(
    kind: &A,
    target: &Target,
    template: &ProviderRequest,
    deadline: Instant,
    metrics: &Metrics,
    trail: &mut Vec<AttemptError>,
) -> Result<A::Output, Miss> {
    let provider = &target.provider;
    let failed = |attempt, error| AttemptError {
        provider: provider.name.clone(),
        model: target.model.clone(),
        attempt,
        error,
    };
    let Some(permit) = provider.circuit.admit() else {
        trail.push(failed(0, None));
        return Err(Miss::Next);
    };
    let mut req = template.clone();
    req.model = target.model.to_string();
    let mut retry = 0;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(Miss::Stop(Failure::Timeout));
        }
        let attempt_deadline = capped(now, provider.policy.attempt_timeout, deadline);
        // Inside the attempt's trace span (a no-op with tracing off).
        let span = crate::otel::Attempt {
            kind: provider.kind,
            provider: &provider.name,
            model: &target.model,
            number: retry + 1,
        };
        let result = crate::otel::attempt(span, A::usage, async {
            match tokio::time::timeout_at(
                attempt_deadline,
                kind.attempt(provider.client.as_ref(), &req),
            )
            .await
            {
                Ok(result) => result,
                Err(_) => Err(ProviderError::Timeout),
            }
        })
        .await;
        record_attempt::<A>(metrics, target, retry + 1, now, &result);
        let error = match result {
            Ok(value) => {
                permit.success();
                return Ok(value);
            }
            Err(error) => error,
        };
        let (class, retry_after) = (error.class(), error.retry_after());
        let detail = match &error {
            ProviderError::Status { detail, .. } => detail.clone(),
            _ => None,
        };
        trail.push(failed(retry + 1, Some(error)));
        if Instant::now() >= deadline {
            return Err(Miss::Stop(Failure::Timeout));
        }
        match class {
            // The request itself is bad: not the provider's failure, nothing to fail over to.
            Class::ClientError => return Err(Miss::Stop(Failure::BadRequest { detail })),
            Class::Misconfigured | Class::Failed => break,
            Class::Retryable if retry >= provider.policy.max_retries => break,
            Class::Retryable => {
                let wait = match retry_after {
                    // Honoured only when it ends before the deadline; otherwise give this target up.
                    Some(wait) if wait < deadline.saturating_duration_since(Instant::now()) => wait,
                    Some(_) => break,
                    None => backoff(
                        retry,
                        provider.policy.backoff_initial,
                        provider.policy.backoff_max,
                        rand::random(),
                    ),
                };
                tokio::time::sleep_until(capped(Instant::now(), wait, deadline)).await;
                retry += 1;
                metrics.upstream_retry(&provider.name);
            }
        }
    }
    permit.failure();
    Err(Miss::Next)
}

/// Whether `target` cannot serve a feature of `req`: then it gets no attempt,
/// its circuit is untouched, and the skip is logged at INFO (the feature is
/// kept in `unsupported` for the answer when every target is skipped).
fn skip_unable(
    model: &Model,
    target: &Target,
    req: &ProviderRequest,
    unsupported: &mut Option<Feature>,
) -> bool {
    let Some(feature) = providers::unsupported(target.provider.client.as_ref(), req) else {
        return false;
    };
    tracing::info!(
        model = %model.name,
        provider = &*target.provider.name,
        feature = feature.as_str(),
        "target skipped: it cannot serve a feature of the request"
    );
    unsupported.get_or_insert(feature);
    true
}

/// The earlier of `now + wait` and `deadline`, without ever computing an
/// instant past `deadline`: a peer's `Retry-After` can be any number, and
/// `Instant + Duration` panics past what the clock can represent.
fn capped(now: Instant, wait: Duration, deadline: Instant) -> Instant {
    now + wait.min(deadline.saturating_duration_since(now))
}

/// One metrics sample and one log event per upstream attempt.
fn record_attempt<A: Attempt>(
    metrics: &Metrics,
    target: &Target,
    attempt: u32,
    started: Instant,
    result: &Result<A::Output, ProviderError>,
) {
    let elapsed = started.elapsed();
    let latency_ms = elapsed.as_millis() as u64;
    let provider = &target.provider.name;
    let model = &target.model;
    match result {
        Ok(output) => {
            metrics.upstream_attempt(provider, model, Outcome::Success, elapsed.as_secs_f64());
            // Logged here; counted once, by `dispatch`, when the answer ends.
            let usage = A::usage(output);
            tracing::info!(
                provider = &**provider,
                model = &**model,
                attempt,
                outcome = Outcome::Success.as_str(),
                latency_ms,
                input_tokens = usage.map(|u| u.input_tokens),
                output_tokens = usage.map(|u| u.output_tokens),
                "upstream attempt"
            );
        }
        Err(error) => {
            let outcome = error.outcome();
            metrics.upstream_attempt(provider, model, outcome, elapsed.as_secs_f64());
            let outcome = outcome.as_str();
            if error.class() == Class::Misconfigured {
                tracing::error!(provider = &**provider, model = &**model, attempt, outcome, latency_ms, %error, "upstream refused us: check the provider's key, base_url and model");
            } else {
                tracing::warn!(provider = &**provider, model = &**model, attempt, outcome, latency_ms, %error, "upstream attempt");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn miss(attempt: u32, error: Option<ProviderError>) -> AttemptError {
        AttemptError {
            provider: "first".into(),
            model: "m1".into(),
            attempt,
            error,
        }
    }

    #[test]
    fn the_trail_reads_as_the_log_line_always_did() {
        let trail = Trail(vec![miss(1, Some(ProviderError::Timeout)), miss(0, None)]);
        assert_eq!(
            trail.to_string(),
            "first:m1 attempt 1 attempt timed out; first:m1 circuit open; "
        );
    }

    #[test]
    fn only_an_unusable_answer_last_makes_the_failure_unusable() {
        let decode = Some(ProviderError::Decode("x".into()));
        assert!(Trail(vec![miss(1, decode.clone())]).ends_unusable());
        assert!(!Trail(vec![miss(1, decode), miss(0, None)]).ends_unusable());
        assert!(!Trail::default().ends_unusable());
    }
}
