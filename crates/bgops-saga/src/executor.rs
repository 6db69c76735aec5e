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

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bgops_core::{SagaEvent, SagaEventKind, SagaLease, SagaStatus, SagaStepStatus, SagaWorkflow};
use bgops_storage::keepalive::{Kept, OnLost, keep_alive};
use bgops_storage::{CreateSaga, SagaSaved, StorageError};
use futures::channel::mpsc::UnboundedSender;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::time::Instant;
use tracing::Instrument;

use crate::error::{SagaError, SagaResult};
use crate::handler::{ErasedHandler, HandlerOutput, Handlers, StepContext, StepError};
use crate::state::{Inner, SagaOutcome};

/// What the execution was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Run or resume (forward or compensating, as the journal says).
    Forward,
    /// Try failed compensations again.
    RetryCompensation,
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
            self.begin_attempt(0);
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

    /// Runs one handler call, keeping the lease alive while it runs and enforcing the step
    /// timeout and (forward only) the saga deadline.
    async fn call(
        &mut self,
        handler: &dyn ErasedHandler,
        ctx: StepContext,
        context: Value,
        forward: bool,
    ) -> Result<HandlerOutput, CallError> {
        let fut = handler.call(ctx, context);
        let step_timeout = self.inner.config.step_timeout;
        let step_deadline = step_timeout.map(|t| Instant::now() + t);
        let saga_deadline = if forward {
            self.deadline_instant()
        } else {
            None
        };
        let work = async move {
            tokio::select! {
                biased;
                r = fut => r.map_err(CallError::Step),
                () = sleep_until(step_deadline), if step_deadline.is_some() => {
                    let t = step_timeout.unwrap_or_default();
                    Err(CallError::Step(StepError::retryable(format!(
                        "handler timed out after {t:?}"
                    ))))
                }
                () = sleep_until(saga_deadline), if saga_deadline.is_some() => {
                    Err(CallError::Deadline)
                }
            }
        };
        let r = match self.kept_alive(work).await {
            Ok(r) => r,
            Err(e) => Err(CallError::Saga(e)),
        };
        self.now = self.inner.clock.now();
        r
    }

    /// Sleeps out a backoff, keeping the lease alive.
    async fn sleep(&mut self, delay: Duration) -> SagaResult<()> {
        if delay.is_zero() {
            return Ok(());
        }
        self.kept_alive(tokio::time::sleep(delay)).await?;
        self.now = self.inner.clock.now();
        Ok(())
    }

    /// Runs `work` under [`keep_alive`]: every third of the lease the saga is saved
    /// unchanged (no events) with a renewed lease. A lost lease drops the work.
    async fn kept_alive<T>(&mut self, work: impl Future<Output = T>) -> SagaResult<T> {
        let every = (self.inner.config.lease / 3).max(Duration::from_millis(1));
        let version = AtomicU64::new(self.saga.version);
        let last: Mutex<Option<SagaSaved>> = Mutex::new(None);
        let kept = {
            let (this, version, last) = (&*self, &version, &last);
            keep_alive(
                work,
                every,
                move || async move {
                    // Renewals are rare (a slow handler); the copy costs nothing on the
                    // fast path.
                    let mut saga = this.saga.clone();
                    saga.version = version.load(Ordering::Relaxed);
                    let saved = this
                        .inner
                        .store
                        .save_saga(&saga, this.fence, &[], Some(this.inner.config.lease))
                        .await?;
                    version.store(saved.version, Ordering::Relaxed);
                    *last.lock().unwrap_or_else(PoisonError::into_inner) = Some(saved);
                    Ok(())
                },
                OnLost::Cancel,
            )
            .await
        };
        if let Some(saved) = last.into_inner().unwrap_or_else(PoisonError::into_inner) {
            self.saved(saved);
        }
        match kept {
            Kept::Finished(out) | Kept::FinishedAfterLoss(out, _) => Ok(out),
            Kept::Cancelled(e) => Err(SagaError::from_store(&self.saga_id, e)),
        }
    }

    fn timed_out(&self) -> bool {
        self.deadline.is_some_and(|d| self.now >= d)
    }

    fn deadline_instant(&self) -> Option<Instant> {
        let d = self.deadline?;
        let left = d - self.inner.clock.now();
        Some(Instant::now() + left.try_into().unwrap_or(Duration::ZERO))
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

    fn begin_attempt(&mut self, i: usize) {
        let now = self.now;
        let step = &mut self.saga.steps[i];
        step.status = SagaStepStatus::Running;
        step.attempts += 1;
        step.started_at.get_or_insert(now);
        let kind = SagaEventKind::StepStarted {
            step_index: i,
            name: step.name.clone(),
            attempt: step.attempts,
        };
        self.record(kind);
    }

    fn complete_step(&mut self, i: usize, out: HandlerOutput) {
        let now = self.now;
        if let Some(context) = out.context {
            self.saga.context = context;
        }
        let step = &mut self.saga.steps[i];
        step.status = SagaStepStatus::Completed;
        step.completed_at = Some(now);
        let kind = SagaEventKind::StepSucceeded {
            step_index: i,
            name: step.name.clone(),
            output: out.output.clone(),
        };
        step.result = Some(out.output);
        self.inner.metrics.saga_step_completed(
            &self.saga.workflow_type,
            &self.saga.tenant_id,
            &self.saga.steps[i].name,
        );
        self.record(kind);
    }

    fn retry_step(&mut self, i: usize, e: &StepError, delay: Duration) {
        let step = &mut self.saga.steps[i];
        step.error = Some(e.message.clone());
        let kind = SagaEventKind::StepRetrying {
            step_index: i,
            name: step.name.clone(),
            attempt: step.attempts,
            error: e.message.clone(),
            delay_ms: millis(delay),
        };
        self.record(kind);
    }

    fn fail_step(&mut self, i: usize, error: &str) {
        let now = self.now;
        let step = &mut self.saga.steps[i];
        step.status = SagaStepStatus::Failed;
        step.error = Some(error.to_owned());
        step.completed_at = Some(now);
        let kind = SagaEventKind::StepFailed {
            step_index: i,
            name: step.name.clone(),
            error: error.to_owned(),
        };
        self.inner.metrics.saga_step_failed(
            &self.saga.workflow_type,
            &self.saga.tenant_id,
            &self.saga.steps[i].name,
        );
        self.record(kind);
    }

    fn start_compensation(&mut self, reason: String) {
        self.saga.status = SagaStatus::Compensating;
        self.saga.error = Some(reason.clone());
        self.record(SagaEventKind::Compensating { reason });
    }

    fn begin_compensation(&mut self, j: usize) {
        let step = &mut self.saga.steps[j];
        step.status = SagaStepStatus::Compensating;
        step.compensation_attempts += 1;
        let kind = SagaEventKind::CompensationStarted {
            step_index: j,
            name: step.name.clone(),
            attempt: step.compensation_attempts,
        };
        self.record(kind);
    }

    fn compensated(&mut self, j: usize, context: Option<Value>) {
        let now = self.now;
        if let Some(context) = context {
            self.saga.context = context;
        }
        let step = &mut self.saga.steps[j];
        step.status = SagaStepStatus::Compensated;
        step.compensated_at = Some(now);
        step.compensation_error = None;
        let kind = SagaEventKind::StepCompensated {
            step_index: j,
            name: step.name.clone(),
        };
        self.record(kind);
    }

    fn retry_compensation(&mut self, j: usize, e: &StepError, delay: Duration) {
        let step = &mut self.saga.steps[j];
        step.compensation_error = Some(e.message.clone());
        let kind = SagaEventKind::CompensationRetrying {
            step_index: j,
            name: step.name.clone(),
            attempt: step.compensation_attempts,
            error: e.message.clone(),
            delay_ms: millis(delay),
        };
        self.record(kind);
    }

    fn fail_compensation(&mut self, j: usize, error: &str) {
        let step = &mut self.saga.steps[j];
        step.status = SagaStepStatus::CompensationFailed;
        step.compensation_error = Some(error.to_owned());
        let kind = SagaEventKind::CompensationFailed {
            step_index: j,
            name: step.name.clone(),
            error: error.to_owned(),
        };
        self.record(kind);
    }

    /// Writes the end state and releases the lease in one write; the `Finished` event is
    /// journaled with it and streamed once the write succeeded.
    async fn finish(&mut self, status: SagaStatus) -> SagaResult<SagaOutcome> {
        self.saga.status = status;
        self.saga.lease = None;
        let finished = self.event(SagaEventKind::Finished);
        self.pending.push(finished.clone());
        self.flush().await?;
        self.inner.metrics.saga_finished(
            &self.saga.workflow_type,
            &self.saga.tenant_id,
            status.as_str(),
        );
        self.send(finished);
        Ok(self.outcome())
    }

    /// Gives the lease back without changing anything else (the saga had already ended).
    /// Nothing is journaled: the saga's journal already ends with its `Finished`; the
    /// stream gets it again.
    async fn release(&mut self) -> SagaResult<SagaOutcome> {
        self.saga.lease = None;
        self.pending.clear();
        self.flush().await?;
        let finished = self.event(SagaEventKind::Finished);
        self.send(finished);
        Ok(self.outcome())
    }

    /// Ends the stream with `Aborted` (never journaled: the store may be what failed).
    fn abort(&mut self, error: &SagaError) {
        tracing::warn!(%error, "saga execution stopped");
        let aborted = self.event(SagaEventKind::Aborted {
            error: error.to_string(),
        });
        self.send(aborted);
    }

    /// Moves the saga out (the run is over): the final state is not cloned.
    fn outcome(&mut self) -> SagaOutcome {
        // Built field by field: `SagaWorkflow::new` would draw a fresh id.
        let empty = SagaWorkflow {
            saga_id: String::new(),
            tenant_id: String::new(),
            workflow_type: String::new(),
            steps: Vec::new(),
            status: self.saga.status,
            current_step: 0,
            created_at: self.now,
            updated_at: self.now,
            timeout_seconds: None,
            idempotency_key: None,
            context: Value::Null,
            error: None,
            version: 0,
            lease: None,
        };
        let saga = std::mem::replace(&mut self.saga, empty);
        SagaOutcome {
            status: saga.status,
            saga,
        }
    }

    /// One fenced compare-and-set of the saga with the pending events; renews the lease
    /// (unless it is being released) by the store's clock.
    async fn flush(&mut self) -> SagaResult<()> {
        self.saga.updated_at = self.now;
        let renew = self.saga.lease.is_some().then_some(self.inner.config.lease);
        let saved = self
            .inner
            .store
            .save_saga(&self.saga, self.fence, &self.pending, renew)
            .await
            .map_err(|e| SagaError::from_store(&self.saga_id, e))?;
        self.pending.clear();
        self.saved(saved);
        Ok(())
    }

    /// Takes a write's receipt: the store now holds exactly the local copy with this
    /// version and lease expiry.
    fn saved(&mut self, saved: SagaSaved) {
        self.saga.version = saved.version;
        if let (Some(lease), Some(at)) = (&mut self.saga.lease, saved.lease_expires_at) {
            lease.expires_at = at;
        }
    }

    fn event(&self, kind: SagaEventKind) -> SagaEvent {
        SagaEvent {
            saga_id: Arc::clone(&self.saga_id),
            at: self.now,
            fence: self.fence,
            status: self.saga.status,
            kind,
        }
    }

    /// Records a fact once: streamed now, journaled with the next write.
    fn record(&mut self, kind: SagaEventKind) {
        let event = self.event(kind);
        if let Some(tx) = &self.events {
            // A dropped receiver only means nobody watches any more; the saga goes on.
            let _ = tx.unbounded_send(event.clone());
        }
        self.pending.push(event);
    }

    fn send(&self, event: SagaEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.unbounded_send(event);
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

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
