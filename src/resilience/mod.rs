//! Resilience, in one place: retries with backoff, `Retry-After`, circuit
//! breakers, failover through a model's targets, fallback, and the deadline.
//!
//! For each target in order: skip it if its circuit is open; otherwise try up
//! to `1 + max_retries` attempts, each bounded by the attempt timeout and the
//! request deadline. A client error (400/422) ends everything; any other
//! failure moves on to the next target. When every target failed, the model's
//! `fallback_message` answers, or the failure is reported.

mod backoff;
mod circuit;
mod stream;

pub use backoff::{backoff, parse_retry_after};
pub use circuit::{Circuit, CircuitState, Permit};
pub use stream::{OpenStream, guard};

use std::fmt::Write as _;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::time::Instant;

use crate::chat::{Completion, Usage};
use crate::metrics::Metrics;
use crate::models::{Model, Target};
use crate::providers::{Class, Provider, ProviderError, ProviderRequest};

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
pub enum Outcome<T> {
    Answer {
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
}

/// A failed call, with what happened on every target (for the request log).
#[derive(Debug, Clone)]
pub struct Failed {
    pub failure: Failure,
    pub trail: String,
}

/// Runs `kind` against `model`'s targets until one answers.
pub async fn call<A: Attempt>(
    kind: &A,
    model: &Model,
    template: &ProviderRequest,
    deadline: Instant,
    metrics: &Metrics,
) -> Result<Outcome<A::Output>, Failed> {
    let mut trail = String::new();
    let mut last_unusable = false;
    for (index, target) in model.targets.iter().enumerate() {
        if index > 0 {
            metrics.fallback(&model.name);
        }
        let provider = &target.provider;
        let Some(permit) = provider.circuit.admit() else {
            let _ = write!(trail, "{}:{} circuit open; ", provider.name, target.model);
            last_unusable = false;
            continue;
        };
        let mut req = template.clone();
        req.model = target.model.to_string();
        let mut retry = 0;
        let error = loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(Failed {
                    failure: Failure::Timeout,
                    trail,
                });
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
                    return Ok(Outcome::Answer {
                        target: target.clone(),
                        value,
                    });
                }
                Err(error) => error,
            };
            let _ = write!(
                trail,
                "{}:{} attempt {} {}; ",
                provider.name,
                target.model,
                retry + 1,
                error
            );
            if Instant::now() >= deadline {
                return Err(Failed {
                    failure: Failure::Timeout,
                    trail,
                });
            }
            match error.class() {
                Class::ClientError => {
                    // The request itself is bad: not the provider's failure, nothing to fail over to.
                    drop(permit);
                    let detail = match error {
                        ProviderError::Status { detail, .. } => detail,
                        _ => None,
                    };
                    return Err(Failed {
                        failure: Failure::BadRequest { detail },
                        trail,
                    });
                }
                Class::Misconfigured | Class::Failed => break error,
                Class::Retryable if retry >= provider.policy.max_retries => break error,
                Class::Retryable => {
                    let wait = match error.retry_after() {
                        // Honoured only when it ends before the deadline; otherwise give this target up.
                        Some(wait) if wait < deadline.saturating_duration_since(Instant::now()) => {
                            wait
                        }
                        Some(_) => break error,
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
        };
        permit.failure();
        last_unusable = matches!(error, ProviderError::Decode(_));
    }
    if let Some(message) = &model.fallback_message {
        metrics.fallback(&model.name);
        tracing::warn!(model = %model.name, failures = %trail, "every target failed; answering with the fallback message");
        return Ok(Outcome::Fallback(message.clone()));
    }
    let failure = if last_unusable {
        Failure::Unusable
    } else {
        Failure::Unavailable
    };
    Err(Failed { failure, trail })
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
            metrics.upstream_attempt(provider, model, "success", elapsed.as_secs_f64());
            let usage = A::usage(output);
            if let Some(usage) = usage {
                metrics.tokens(provider, model, usage);
            }
            tracing::info!(
                provider = &**provider,
                model = &**model,
                attempt,
                outcome = "success",
                latency_ms,
                input_tokens = usage.map(|u| u.input_tokens),
                output_tokens = usage.map(|u| u.output_tokens),
                "upstream attempt"
            );
        }
        Err(error) => {
            let outcome = error.outcome();
            metrics.upstream_attempt(provider, model, outcome, elapsed.as_secs_f64());
            if error.class() == Class::Misconfigured {
                tracing::error!(provider = &**provider, model = &**model, attempt, outcome, latency_ms, %error, "upstream refused us: check the provider's key, base_url and model");
            } else {
                tracing::warn!(provider = &**provider, model = &**model, attempt, outcome, latency_ms, %error, "upstream attempt");
            }
        }
    }
}
