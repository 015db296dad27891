//! A circuit breaker per provider: closed → open after `threshold` consecutive
//! failed requests → half-open after `cooldown`, letting exactly one trial through.
//!
//! The lock guards a few integers and is never held across an `.await`. Time
//! is tokio's, so tests run the cooldown on a paused clock.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// The gauge values of `chatgate_circuit_breaker_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed = 0,
    HalfOpen = 1,
    Open = 2,
}

#[derive(Debug)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { trial_in_flight: bool },
}

#[derive(Debug)]
pub struct Circuit {
    threshold: u32,
    cooldown: Duration,
    inner: Mutex<Inner>,
    gauge: metrics::Gauge,
}

impl Circuit {
    pub fn new(threshold: NonZeroU32, cooldown: Duration, gauge: metrics::Gauge) -> Arc<Self> {
        gauge.set(0.0);
        Arc::new(Self {
            threshold: threshold.get(),
            cooldown,
            inner: Mutex::new(Inner::Closed { failures: 0 }),
            gauge,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The critical sections cannot panic halfway, so a poisoned lock still holds a valid state.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The state as of now (an open circuit past its cooldown reads half-open).
    pub fn state(&self) -> CircuitState {
        match &*self.lock() {
            Inner::Closed { .. } => CircuitState::Closed,
            Inner::Open { until } if Instant::now() >= *until => CircuitState::HalfOpen,
            Inner::Open { .. } => CircuitState::Open,
            Inner::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    /// Refreshes the gauge (an open circuit turns half-open by time alone).
    pub fn publish(&self) {
        self.gauge.set(f64::from(self.state() as u8));
    }

    /// Lets a request through, or `None` while the circuit is open (or its
    /// half-open trial is already in flight).
    pub fn admit(self: &Arc<Self>) -> Option<Permit> {
        let mut inner = self.lock();
        let trial = match &mut *inner {
            Inner::Closed { .. } => false,
            Inner::Open { until } => {
                if Instant::now() < *until {
                    return None;
                }
                *inner = Inner::HalfOpen {
                    trial_in_flight: true,
                };
                true
            }
            Inner::HalfOpen { trial_in_flight } => {
                if *trial_in_flight {
                    return None;
                }
                *trial_in_flight = true;
                true
            }
        };
        drop(inner);
        if trial {
            self.gauge.set(f64::from(CircuitState::HalfOpen as u8));
        }
        Some(Permit {
            circuit: Arc::clone(self),
            trial,
            settled: false,
        })
    }

    fn settle(&self, trial: bool, success: Option<bool>) {
        let mut inner = self.lock();
        let next = match (&*inner, success) {
            // Neither success nor failure (the client's own 400): free the trial slot.
            (Inner::HalfOpen { .. }, None) if trial => Inner::HalfOpen {
                trial_in_flight: false,
            },
            (_, None) => return,
            (Inner::HalfOpen { .. }, Some(true)) if trial => Inner::Closed { failures: 0 },
            (Inner::HalfOpen { .. }, Some(false)) if trial => Inner::Open {
                until: Instant::now() + self.cooldown,
            },
            (Inner::Closed { .. }, Some(true)) => Inner::Closed { failures: 0 },
            (Inner::Closed { failures }, Some(false)) => {
                let failures = failures + 1;
                if failures >= self.threshold {
                    Inner::Open {
                        until: Instant::now() + self.cooldown,
                    }
                } else {
                    Inner::Closed { failures }
                }
            }
            // A request admitted before the circuit opened, finishing late: no say.
            _ => return,
        };
        *inner = next;
        drop(inner);
        self.publish();
    }
}

/// A request's pass through the circuit; report how it went. Dropped
/// unsettled, it counts as neither (and frees a half-open trial).
#[derive(Debug)]
pub struct Permit {
    circuit: Arc<Circuit>,
    trial: bool,
    settled: bool,
}

impl Permit {
    pub fn success(mut self) {
        self.settled = true;
        self.circuit.settle(self.trial, Some(true));
    }

    pub fn failure(mut self) {
        self.settled = true;
        self.circuit.settle(self.trial, Some(false));
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.settled {
            self.circuit.settle(self.trial, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn circuit() -> Arc<Circuit> {
        Circuit::new(
            NonZeroU32::MIN.saturating_add(2),
            Duration::from_secs(30),
            metrics::Gauge::noop(),
        )
    }

    fn fail(c: &Arc<Circuit>) {
        if let Some(p) = c.admit() {
            p.failure();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_consecutive_failures() {
        let c = circuit();
        fail(&c);
        fail(&c);
        assert_eq!(c.state(), CircuitState::Closed);
        fail(&c);
        assert_eq!(c.state(), CircuitState::Open);
        assert!(c.admit().is_none(), "an open circuit admits nothing");
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_count() {
        let c = circuit();
        fail(&c);
        fail(&c);
        if let Some(a) = c.admit() {
            Permit::success(a)
        }
        fail(&c);
        fail(&c);
        assert_eq!(c.state(), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn half_opens_after_cooldown_with_exactly_one_trial() {
        let c = circuit();
        (0..3).for_each(|_| fail(&c));
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(c.admit().is_none());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(c.state(), CircuitState::HalfOpen);
        let trial = c.admit();
        assert!(trial.is_some());
        assert!(c.admit().is_none(), "only one trial while half-open");
        if let Some(_trial) = trial {
            Permit::success(_trial)
        }
        assert_eq!(c.state(), CircuitState::Closed);
        assert!(c.admit().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_trial_opens_again_for_a_full_cooldown() {
        let c = circuit();
        (0..3).for_each(|_| fail(&c));
        tokio::time::advance(Duration::from_secs(30)).await;
        fail(&c);
        assert_eq!(c.state(), CircuitState::Open);
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(c.admit().is_none());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(c.admit().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn an_unsettled_trial_frees_the_slot_without_changing_state() {
        let c = circuit();
        (0..3).for_each(|_| fail(&c));
        tokio::time::advance(Duration::from_secs(30)).await;
        drop(c.admit());
        assert_eq!(c.state(), CircuitState::HalfOpen);
        assert!(c.admit().is_some(), "the slot is free again");
    }
}
