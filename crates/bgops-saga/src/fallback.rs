//! Fallback steps guarded by a circuit breaker (seed 004, python-cqrs `Fallback`).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bgops_core::{SharedClock, SystemClock};
use serde_json::{Value, json};

use crate::handler::{StepContext, StepError};
use crate::typed::{SagaContext, Step};

/// The state of a [`CircuitBreaker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls go through; failures are counted.
    Closed,
    /// Calls are refused until the reset timeout has passed.
    Open,
    /// One trial call is let through; its result closes or reopens the circuit.
    HalfOpen,
}

#[derive(Debug)]
enum Inner {
    Closed { failures: u32 },
    Open { until_ms: i64 },
    HalfOpen { trial_running: bool },
}

/// A circuit breaker: after `fail_max` failures in a row it opens and refuses calls for
/// `reset_timeout`, then lets one trial call through (half-open). Share one breaker (in an
/// `Arc`) between every saga that calls the same service.
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use bgops_core::ManualClock;
/// use bgops_saga::{CircuitBreaker, CircuitState};
/// let clock = ManualClock::new();
/// let breaker = CircuitBreaker::new(2, Duration::from_secs(60)).with_clock(Arc::new(clock.clone()));
/// breaker.record_failure();
/// breaker.record_failure();
/// assert_eq!(breaker.state(), CircuitState::Open);
/// assert!(!breaker.allow());
/// clock.advance(Duration::from_secs(60));
/// assert!(breaker.allow()); // the trial call
/// breaker.record_success();
/// assert_eq!(breaker.state(), CircuitState::Closed);
/// ```
#[derive(Debug)]
pub struct CircuitBreaker {
    fail_max: u32,
    reset_timeout: Duration,
    clock: SharedClock,
    state: Mutex<Inner>,
}

impl CircuitBreaker {
    /// Opens after `fail_max` failures in a row (at least 1), for `reset_timeout`.
    pub fn new(fail_max: u32, reset_timeout: Duration) -> Self {
        Self {
            fail_max: fail_max.max(1),
            reset_timeout,
            clock: Arc::new(SystemClock),
            state: Mutex::new(Inner::Closed { failures: 0 }),
        }
    }

    /// Uses `clock` to time the open state (a `ManualClock` in tests).
    #[must_use]
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The state is a plain enum: a panic elsewhere cannot leave it half-written.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current state (an open circuit past its timeout reports `HalfOpen`).
    pub fn state(&self) -> CircuitState {
        match *self.lock() {
            Inner::Closed { .. } => CircuitState::Closed,
            Inner::Open { until_ms } if self.clock.now_millis() < until_ms => CircuitState::Open,
            Inner::Open { .. } | Inner::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    /// Whether a call may go through now; when it returns `true` the caller must report the
    /// result with [`record_success`](Self::record_success) or
    /// [`record_failure`](Self::record_failure).
    pub fn allow(&self) -> bool {
        let mut state = self.lock();
        match *state {
            Inner::Closed { .. } => true,
            Inner::Open { until_ms } => {
                if self.clock.now_millis() >= until_ms {
                    *state = Inner::HalfOpen {
                        trial_running: true,
                    };
                    true
                } else {
                    false
                }
            }
            Inner::HalfOpen { trial_running } => {
                if trial_running {
                    false
                } else {
                    *state = Inner::HalfOpen {
                        trial_running: true,
                    };
                    true
                }
            }
        }
    }

    /// A call succeeded: the circuit closes.
    pub fn record_success(&self) {
        *self.lock() = Inner::Closed { failures: 0 };
    }

    /// A call failed: counted, and the circuit opens at `fail_max` (or at once when half-open).
    pub fn record_failure(&self) {
        let mut state = self.lock();
        let open = Inner::Open {
            until_ms: self.clock.now_millis()
                + i64::try_from(self.reset_timeout.as_millis()).unwrap_or(i64::MAX / 2),
        };
        *state = match *state {
            Inner::Closed { failures } if failures + 1 < self.fail_max => Inner::Closed {
                failures: failures + 1,
            },
            _ => open,
        };
    }
}

/// A step that runs `primary` and, when it fails or its circuit is open, `fallback`
/// instead (with the context as it was before `primary` ran).
///
/// The step's output is `{"branch": "primary" | "fallback", "output": ...}`; compensation
/// undoes whichever branch ran.
pub struct Fallback<C: SagaContext> {
    primary: Arc<dyn Step<C>>,
    backup: Arc<dyn Step<C>>,
    breaker: Option<Arc<CircuitBreaker>>,
}

impl<C: SagaContext> Fallback<C> {
    /// `primary`, falling back to `fallback`.
    pub fn new(primary: impl Step<C>, fallback: impl Step<C>) -> Self {
        Self {
            primary: Arc::new(primary),
            backup: Arc::new(fallback),
            breaker: None,
        }
    }

    /// Guards `primary` with `breaker`: while it is open, `fallback` runs straight away.
    #[must_use]
    pub fn with_circuit_breaker(mut self, breaker: Arc<CircuitBreaker>) -> Self {
        self.breaker = Some(breaker);
        self
    }
}

#[async_trait]
impl<C: SagaContext> Step<C> for Fallback<C> {
    fn name(&self) -> &str {
        self.primary.name()
    }

    async fn act(&self, context: &mut C, step: &StepContext) -> Result<Value, StepError> {
        let allowed = self.breaker.as_ref().is_none_or(|b| b.allow());
        if allowed {
            let snapshot = context.clone();
            match self.primary.act(context, step).await {
                Ok(output) => {
                    if let Some(b) = &self.breaker {
                        b.record_success();
                    }
                    return Ok(json!({ "branch": "primary", "output": output }));
                }
                Err(e) => {
                    if let Some(b) = &self.breaker {
                        b.record_failure();
                    }
                    tracing::debug!(step = self.primary.name(), error = %e, "primary failed; running fallback");
                    *context = snapshot;
                }
            }
        }
        let output = self.backup.act(context, step).await?;
        Ok(json!({ "branch": "fallback", "output": output }))
    }

    async fn compensate(&self, context: &mut C, step: &StepContext) -> Result<(), StepError> {
        let branch = step
            .output
            .as_ref()
            .and_then(|o| o.get("branch"))
            .and_then(Value::as_str);
        let mut inner = step.clone();
        inner.output = step.output.as_ref().and_then(|o| o.get("output")).cloned();
        if branch == Some("fallback") {
            self.backup.compensate(context, &inner).await
        } else {
            self.primary.compensate(context, &inner).await
        }
    }

    fn max_retries(&self) -> u32 {
        self.primary.max_retries()
    }
}
