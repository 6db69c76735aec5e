//! One execution of one saga: the state machine between two store writes.
//!
//! Every transition changes the local copy and records one [`SagaEvent`]: the same value
//! goes to the execution's stream (if someone watches) and into the batch of events that
//! the next fenced `save_saga` journals. The batch is written right before the next
//! handler runs ("intent before effect") and once at the end, so "step i succeeded" and
//! "step i+1 started" travel in the same write, and a saga of n steps costs n + 2 writes
//! (lease, n intents, end).
//!
//! **Leases.** Expiries come from the store's clock only: every write asks the store to
//! renew the lease for [`SagaConfig::lease`](crate::SagaConfig::lease) and the receipt
//! says until when. While a handler runs (or a backoff sleeps) the lease is kept alive by
//! [`bgops_storage::keepalive::keep_alive`] with [`OnLost::Cancel`]: when another executor
//! has taken the saga over, this one's handler call is dropped at once and the execution
//! stops with [`SagaError::LeaseLost`]. Its result could not be stored anyway (every write
//! is fenced), and the new holder runs the step again under the same
//! [`step_key`](crate::StepContext::step_key), so the step's own idempotency covers a
//! half-done effect. Transient store errors during renewal are retried while the handler
//! runs.
//!
//! **Tracing.** Each execution runs in a `bgops.saga` span (`saga_id`, `workflow_type`,
//! `fence`, `mode`), each handler call in a `bgops.saga.step` or
//! `bgops.saga.compensation` span (`step_index`, `step`, `attempt`).

use std::sync::Arc;
use std::time::Duration;

use bgops_core::{SagaEvent, SagaEventKind, SagaLease, SagaStatus, SagaStepStatus, SagaWorkflow};
use bgops_storage::{CreateSaga, StorageError};
use futures::channel::mpsc::UnboundedSender;
use serde_json::Value;
use time::OffsetDateTime;
use tracing::Instrument;

use crate::error::{SagaError, SagaResult};
use crate::handler::{ErasedHandler, Handlers, StepContext, StepError};
use crate::state::{Inner, SagaOutcome};

mod group;
mod journal;
mod lease;

/// What the execution was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Run or resume (forward or compensating, as the journal says).
    Forward,
    /// Try failed compensations again.
    RetryCompensation,
    /// Compensate a completed saga (a parent saga undoing its child).
    Undo,
}

/// Why a handler call ended without an output.
enum CallError {
    /// The handler failed.
    Step(StepError),
    /// The saga's deadline passed while the handler ran (the handler was dropped).
    Deadline,
    /// The engine could not go on (lease lost, store failure).
    Saga(SagaError),
}

pub(crate) struct Run<'a> {
    inner: &'a Inner,
    handlers: Arc<Handlers>,
    saga: SagaWorkflow,
    fence: u64,
    saga_id: Arc<str>,
    tenant_id: Arc<str>,
    /// Events recorded since the last write; journaled by the next one.
    pending: Vec<SagaEvent>,
    events: Option<UnboundedSender<SagaEvent>>,
    deadline: Option<OffsetDateTime>,
    /// The time of the current transition: read once per handler call rather than at
    /// every field it stamps (the clock is on the hot path).
    now: OffsetDateTime,
}

/// The span of one execution; `workflow_type` and `fence` are filled in once known.
fn execution_span(saga_id: &str, mode: Mode) -> tracing::Span {
    tracing::info_span!(
        "bgops.saga",
        saga_id = %saga_id,
        workflow_type = tracing::field::Empty,
        fence = tracing::field::Empty,
        mode = ?mode,
    )
}

impl<'a> Run<'a> {
    /// Takes the saga's lease and runs it (see [`Mode`]). A stream, if given, ends with
    /// `Finished` or `Aborted`.
    pub(crate) async fn start(
        inner: &'a Inner,
        saga_id: &str,
        mode: Mode,
        events: Option<UnboundedSender<SagaEvent>>,
    ) -> SagaResult<SagaOutcome> {
        let span = execution_span(saga_id, mode);
        async move {
            let (saga, fence) = match Self::acquire(inner, saga_id, mode).await {
                Ok(taken) => taken,
                Err(e) => {
                    abort_unleased(inner, saga_id, events.as_ref(), &e);
                    return Err(e);
                }
            };
            let span = tracing::Span::current();
            span.record("workflow_type", saga.workflow_type.as_str());
            span.record("fence", fence);
            let mut run = Run::new(inner, saga, fence, events);
            let result = run.resume(mode).await;
            if let Err(e) = &result {
                run.abort(e);
            }
            result
        }
        .instrument(span)
        .await
    }

    /// Checks the request and takes the lease: the saga as taken and its fence.
    async fn acquire(inner: &Inner, saga_id: &str, mode: Mode) -> SagaResult<(SagaWorkflow, u64)> {
        let store = &inner.store;
        let err = |e| SagaError::from_store(saga_id, e);
        if mode == Mode::RetryCompensation {
            // Checked before taking the lease so a wrong call leaves no trace.
            let saga = store.get_saga(saga_id).await.map_err(err)?;
            let saga = saga.ok_or_else(|| SagaError::NotFound(saga_id.to_owned()))?;
            if saga.status != SagaStatus::CompensationFailed {
                return Err(SagaError::InvalidState {
                    saga_id: saga_id.to_owned(),
                    status: saga.status,
                    action: "retry compensation",
                });
            }
        }
        let saga = store
            .acquire_saga_lease(saga_id, &inner.execution_owner(), inner.config.lease)
            .await
            .map_err(err)?
            .ok_or_else(|| SagaError::Busy(saga_id.to_owned()))?;
        let fence = saga.lease.as_ref().map(|l| l.fence).ok_or_else(|| {
            SagaError::Storage(StorageError::Corrupt {
                key: saga_id.to_owned(),
                reason: "acquire_saga_lease returned a saga without a lease".into(),
            })
        })?;
        Ok((saga, fence))
    }

    /// Carries on from where the journal says the saga stopped.
    async fn resume(&mut self, mode: Mode) -> SagaResult<SagaOutcome> {
        let status = self.saga.status;
        self.record(SagaEventKind::Resumed);
        match (mode, status) {
            (Mode::RetryCompensation, SagaStatus::CompensationFailed) => {
                for step in &mut self.saga.steps {
                    if step.status == SagaStepStatus::CompensationFailed {
                        step.status = SagaStepStatus::Compensating;
                        step.compensation_attempts = 0;
                    }
                }
                self.saga.status = SagaStatus::Compensating;
                self.record(SagaEventKind::Compensating {
                    reason: "compensation retried".into(),
                });
                self.compensate().await
            }
            (Mode::Undo, SagaStatus::Completed) => {
                self.start_compensation("compensated on request (e.g. by its parent saga)".into());
                self.compensate().await
            }
            (Mode::Undo, _) => {
                self.release().await?;
                Err(SagaError::InvalidState {
                    saga_id: self.saga_id.to_string(),
                    status,
                    action: "compensate a completed saga",
                })
            }
            (Mode::RetryCompensation, _) => {
                // Changed between the check and the lease: release and refuse.
                self.release().await?;
                Err(SagaError::InvalidState {
                    saga_id: self.saga_id.to_string(),
                    status,
                    action: "retry compensation",
                })
            }
            (_, s) if s.is_terminal() => self.release().await,
            (_, SagaStatus::Compensating) => self.compensate().await,
            (_, SagaStatus::Pending) => {
                self.saga.status = SagaStatus::Running;
                self.saga.current_step = 0;
                self.forward(false).await
            }
            (_, _) => self.forward(false).await,
        }
    }

    fn new(
        inner: &'a Inner,
        saga: SagaWorkflow,
        fence: u64,
        events: Option<UnboundedSender<SagaEvent>>,
    ) -> Self {
        let deadline = saga
            .timeout_seconds
            .map(|s| saga.created_at + Duration::from_secs(s));
        Run {
            inner,
            handlers: inner.registry.snapshot(),
            saga_id: Arc::from(saga.saga_id.as_str()),
            tenant_id: Arc::from(saga.tenant_id.as_str()),
            saga,
            fence,
            pending: Vec::with_capacity(4),
            events,
            deadline,
            now: inner.clock.now(),
        }
    }

    /// Stores a new saga already leased to this engine, with its first step's intent, and
    /// runs it: the write that creates it is also the lease and the first intent.
    pub(crate) async fn start_new(
        inner: &'a Inner,
        saga: SagaWorkflow,
        events: Option<UnboundedSender<SagaEvent>>,
    ) -> SagaResult<SagaOutcome> {
        let span = execution_span(&saga.saga_id, Mode::Forward);
        span.record("workflow_type", saga.workflow_type.as_str());
        async move {
            let mut run = Run::new_leased(inner, saga, events);
            let result = run.create_and_run().await;
            if let Err(e) = &result {
                run.abort(e);
            }
            result
        }
        .instrument(span)
        .await
    }

    fn new_leased(
        inner: &'a Inner,
        mut saga: SagaWorkflow,
        events: Option<UnboundedSender<SagaEvent>>,
    ) -> Self {
        // A saga that does not exist yet has had no lease: fence 1 is the first, and the
        // store records it as the highest handed out, so any later taker gets 2 or more.
        const FIRST_FENCE: u64 = 1;
        saga.lease = Some(SagaLease {
            owner: inner.execution_owner(),
            fence: FIRST_FENCE,
            // Set by the store (its clock) when it creates the saga.
            expires_at: saga.created_at,
        });
        Run::new(inner, saga, FIRST_FENCE, events)
    }

    async fn create_and_run(&mut self) -> SagaResult<SagaOutcome> {
        tracing::Span::current().record("fence", self.fence);
        // Nothing is streamed before the saga exists: its first events go out once the
        // write that creates it succeeded.
        let events = self.events.take();
        self.record(SagaEventKind::Created);
        self.record(SagaEventKind::Resumed);
        self.saga.status = SagaStatus::Running;
        let timed_out = self.timed_out();
        if !timed_out {
            for k in self.saga.unit_at(0) {
                self.begin_attempt(k);
            }
        }
        let created = self
            .inner
            .store
            .create_saga(&self.saga, Some(self.inner.config.lease), &self.pending)
            .await;
        let created = match created {
            Ok(created) => created,
            Err(e) => {
                self.events = events;
                return Err(SagaError::from_store(&self.saga_id, e));
            }
        };
        match created {
            CreateSaga::Created(saved) => {
                self.events = events;
                for event in std::mem::take(&mut self.pending) {
                    self.send(event);
                }
                self.saved(saved);
                self.forward(!timed_out).await
            }
            // The idempotency key is taken: run (or return) that saga the ordinary way.
            // Nothing of this run was stored or streamed; its stream is handed on.
            CreateSaga::Existing(existing) => {
                self.pending.clear();
                Box::pin(Run::start(
                    self.inner,
                    &existing.saga_id,
                    Mode::Forward,
                    events,
                ))
                .await
            }
        }
    }

    /// Forward execution from `current_step`. With `begun`, the current step's attempt is
    /// already stored (by [`start_new`](Self::start_new)): its handler runs straight away.
    async fn forward(&mut self, mut begun: bool) -> SagaResult<SagaOutcome> {
        let n = self.saga.steps.len();
        // Whether the current step's last attempt is known to have failed (in this run);
        // otherwise a step found `Running` may have had its effect.
        let mut failed_cleanly = false;
        loop {
            let i = self.saga.current_step;
            if i >= n {
                return self.finish(SagaStatus::Completed).await;
            }
            let unit = self.saga.unit_at(i);
            if unit.len() > 1 {
                let end = unit.end;
                if let Some(outcome) = self.run_group(unit, begun).await? {
                    return Ok(outcome);
                }
                begun = false;
                failed_cleanly = false;
                self.saga.current_step = end;
                continue;
            }
            match self.saga.steps[i].status {
                SagaStepStatus::Completed => {
                    self.saga.current_step += 1;
                    failed_cleanly = false;
                    continue;
                }
                SagaStepStatus::Pending | SagaStepStatus::Running => {}
                _ => {
                    // Not reachable through this engine (failure and compensation are one
                    // write); compensate rather than guess.
                    self.start_compensation(format!("step {i} found in an unexpected state"));
                    return self.compensate().await;
                }
            }
            let started = self.saga.steps[i].status == SagaStepStatus::Running;
            if self.timed_out() {
                if started && failed_cleanly {
                    self.fail_step(i, "saga timed out");
                }
                // A step left started with unknown outcome stays `Running` and is
                // compensated; a pending one is not.
                self.start_compensation("saga timed out".into());
                return self.compensate().await;
            }
            let step = &self.saga.steps[i];
            if started && !failed_cleanly && !begun && step.attempts > step.max_retries {
                // Resumed after a crash with every attempt used and the last one's outcome
                // unknown: treat it as maybe done, so it is compensated too.
                let reason = format!(
                    "step {i} ({}): attempts exhausted, outcome of the last one unknown",
                    step.name
                );
                self.start_compensation(reason);
                return self.compensate().await;
            }
            let Some(handler) = self.handlers.operation(&step.operation).cloned() else {
                let reason = format!("no handler registered for operation `{}`", step.operation);
                self.fail_step(i, &reason);
                self.start_compensation(reason);
                return self.compensate().await;
            };
            if begun {
                begun = false;
            } else {
                self.begin_attempt(i);
                self.flush().await?;
            }
            let ctx = self.step_context(i, false);
            let context = self.context_for(handler.as_ref());
            let span = tracing::info_span!(
                "bgops.saga.step",
                step_index = i,
                step = %self.saga.steps[i].name,
                attempt = self.saga.steps[i].attempts,
            );
            match self
                .call(handler.as_ref(), ctx, context, true)
                .instrument(span)
                .await
            {
                Ok(out) => {
                    self.complete_step(i, out);
                    self.saga.current_step = i + 1;
                    failed_cleanly = false;
                }
                Err(CallError::Step(e)) => {
                    let step = &self.saga.steps[i];
                    if !e.is_terminal() && step.attempts <= step.max_retries {
                        let delay = self.inner.config.retry.delay(step.attempts);
                        self.retry_step(i, &e, delay);
                        self.sleep(delay).await?;
                        failed_cleanly = true;
                        continue;
                    }
                    let reason = format!("step {i} ({}) failed: {}", step.name, e.message);
                    self.fail_step(i, &e.message);
                    self.start_compensation(reason);
                    return self.compensate().await;
                }
                Err(CallError::Deadline) => {
                    self.start_compensation("saga timed out".into());
                    return self.compensate().await;
                }
                Err(CallError::Saga(e)) => return Err(e),
            }
        }
    }

    /// Compensates, in reverse, every step that succeeded or may have had its effect.
    async fn compensate(&mut self) -> SagaResult<SagaOutcome> {
        let max_retries = self.inner.config.compensation_max_retries;
        let mut failed_cleanly = false;
        loop {
            let next = self.saga.steps.iter().rposition(|s| {
                matches!(
                    s.status,
                    SagaStepStatus::Completed
                        | SagaStepStatus::Running
                        | SagaStepStatus::Compensating
                )
            });
            let Some(j) = next else {
                let failed = self
                    .saga
                    .steps
                    .iter()
                    .any(|s| s.status == SagaStepStatus::CompensationFailed);
                let end = if failed {
                    SagaStatus::CompensationFailed
                } else {
                    SagaStatus::Compensated
                };
                return self.finish(end).await;
            };
            let step = &self.saga.steps[j];
            let Some(op) = step.compensation_operation.as_deref() else {
                // Nothing to undo: recorded with the next write.
                self.compensated(j, None);
                failed_cleanly = false;
                continue;
            };
            let Some(handler) = self.handlers.compensation(op).cloned() else {
                let msg = format!("no compensation handler registered for `{op}`");
                self.fail_compensation(j, &msg);
                continue;
            };
            if step.status == SagaStepStatus::Compensating
                && !failed_cleanly
                && step.compensation_attempts > max_retries
            {
                self.fail_compensation(j, "attempts exhausted, outcome of the last one unknown");
                continue;
            }
            self.begin_compensation(j);
            self.flush().await?;
            let ctx = self.step_context(j, true);
            let context = self.context_for(handler.as_ref());
            let span = tracing::info_span!(
                "bgops.saga.compensation",
                step_index = j,
                step = %self.saga.steps[j].name,
                attempt = self.saga.steps[j].compensation_attempts,
            );
            match self
                .call(handler.as_ref(), ctx, context, false)
                .instrument(span)
                .await
            {
                Ok(out) => {
                    self.compensated(j, out.context);
                    failed_cleanly = false;
                }
                Err(CallError::Step(e)) => {
                    let attempts = self.saga.steps[j].compensation_attempts;
                    if !e.is_terminal() && attempts <= max_retries {
                        let delay = self.inner.config.compensation_retry.delay(attempts);
                        self.retry_compensation(j, &e, delay);
                        self.sleep(delay).await?;
                        failed_cleanly = true;
                        continue;
                    }
                    self.fail_compensation(j, &e.message);
                    failed_cleanly = false;
                }
                Err(CallError::Deadline) => {
                    // Compensations run without a deadline; not produced here.
                    failed_cleanly = false;
                }
                Err(CallError::Saga(e)) => return Err(e),
            }
        }
    }

    fn step_context(&self, i: usize, compensation: bool) -> StepContext {
        let step = &self.saga.steps[i];
        let (attempt, parameters, output) = if compensation {
            (
                step.compensation_attempts,
                step.compensation_parameters.clone().unwrap_or(Value::Null),
                step.result.clone(),
            )
        } else {
            (step.attempts, step.parameters.clone(), None)
        };
        StepContext {
            saga_id: Arc::clone(&self.saga_id),
            tenant_id: Arc::clone(&self.tenant_id),
            step_index: i,
            attempt,
            fence: self.fence,
            compensation,
            parameters,
            output,
        }
    }

    fn context_for(&self, handler: &dyn ErasedHandler) -> Value {
        if handler.wants_context() {
            self.saga.context.clone()
        } else {
            Value::Null
        }
    }
}

/// Ends the stream of an execution that never held the lease (unknown saga, busy, store
/// down): fence 0, and the status, which is not known, given as `Pending`.
fn abort_unleased(
    inner: &Inner,
    saga_id: &str,
    events: Option<&UnboundedSender<SagaEvent>>,
    error: &SagaError,
) {
    if let Some(tx) = events {
        let _ = tx.unbounded_send(SagaEvent {
            saga_id: Arc::from(saga_id),
            at: inner.clock.now(),
            fence: 0,
            status: SagaStatus::Pending,
            kind: SagaEventKind::Aborted {
                error: error.to_string(),
            },
        });
    }
}
