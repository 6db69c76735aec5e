//! One execution of one saga: the state machine between two store writes.
//!
//! Every transition changes the local copy and buffers its history entries; the buffer is
//! written with one fenced `save_saga` right before the next handler runs ("intent before
//! effect") and once at the end. So "step i succeeded" and "step i+1 started" travel in
//! the same write, and a saga of n steps costs n + 2 writes (lease, n intents, end).

use std::borrow::Cow;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bgops_core::{SagaHistoryEntry, SagaLease, SagaStatus, SagaStepStatus, SagaWorkflow};
use bgops_storage::{CreateSaga, StorageError};
use futures::channel::mpsc::UnboundedSender;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::engine::{Inner, SagaOutcome};
use crate::error::{SagaError, SagaResult};
use crate::event::SagaEvent;
use crate::handler::{ErasedHandler, HandlerOutput, Handlers, StepContext, StepError};

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
    history: Vec<SagaHistoryEntry>,
    events: Option<UnboundedSender<SagaEvent>>,
    deadline: Option<OffsetDateTime>,
    /// The time of the current transition: read once per handler call rather than at
    /// every field it stamps (the clock is on the hot path).
    now: OffsetDateTime,
}

impl<'a> Run<'a> {
    pub(crate) async fn start(
        inner: &'a Inner,
        saga_id: &str,
        mode: Mode,
        events: Option<UnboundedSender<SagaEvent>>,
    ) -> SagaResult<SagaOutcome> {
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
        let mut run = Run::new(inner, saga, fence, events);
        run.emit(|r| SagaEvent::Resumed {
            saga_id: r.saga_id.to_string(),
            status: r.saga.status,
            fence,
        });
        let status = run.saga.status;
        match (mode, status) {
            (Mode::RetryCompensation, SagaStatus::CompensationFailed) => {
                for step in &mut run.saga.steps {
                    if step.status == SagaStepStatus::CompensationFailed {
                        step.status = SagaStepStatus::Compensating;
                        step.compensation_attempts = 0;
                    }
                }
                run.saga.status = SagaStatus::Compensating;
                run.push("retry_compensation", None, None, None);
                run.compensate().await
            }
            (Mode::RetryCompensation, _) => {
                // Changed between the check and the lease: release and refuse.
                run.release().await?;
                Err(SagaError::InvalidState {
                    saga_id: saga_id.to_owned(),
                    status,
                    action: "retry compensation",
                })
            }
            (_, s) if s.is_terminal() => run.release().await,
            (_, SagaStatus::Compensating) => run.compensate().await,
            (_, SagaStatus::Pending) => {
                run.saga.status = SagaStatus::Running;
                run.saga.current_step = 0;
                run.forward(false).await
            }
            (_, _) => run.forward(false).await,
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
            history: Vec::with_capacity(4),
            events,
            deadline,
            now: inner.clock.now(),
        }
    }

    /// Stores a new saga already leased to this engine, with its first step's intent, and
    /// runs it: the write that creates it is also the lease and the first intent.
    pub(crate) async fn start_new(
        inner: &'a Inner,
        mut saga: SagaWorkflow,
        events: Option<UnboundedSender<SagaEvent>>,
    ) -> SagaResult<SagaOutcome> {
        // A saga that does not exist yet has had no lease: fence 1 is the first, and the
        // store records it as the highest handed out, so any later taker gets 2 or more.
        const FIRST_FENCE: u64 = 1;
        let now = inner.clock.now();
        saga.status = SagaStatus::Running;
        saga.lease = Some(SagaLease {
            owner: inner.execution_owner(),
            fence: FIRST_FENCE,
            expires_at: now + inner.config.lease,
        });
        let mut run = Run::new(inner, saga, FIRST_FENCE, events);
        run.emit(|r| SagaEvent::Resumed {
            saga_id: r.saga_id.to_string(),
            status: SagaStatus::Pending,
            fence: FIRST_FENCE,
        });
        let timed_out = run.timed_out();
        if !timed_out {
            run.begin_attempt(0);
        }
        // Handed over, not cloned: the store gives the saga back as stored.
        let saga = run.take_saga();
        let created = inner
            .store
            .create_saga(saga)
            .await
            .map_err(|e| SagaError::from_store(&run.saga_id, e))?;
        match created {
            CreateSaga::Created(stored) => {
                run.saga = stored;
                if timed_out {
                    run.forward(false).await
                } else {
                    run.forward(true).await
                }
            }
            // The idempotency key is taken: run (or return) that saga the ordinary way.
            CreateSaga::Existing(existing) => {
                let events = run.events.take();
                Run::start(inner, &existing.saga_id, Mode::Forward, events).await
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
            match self.call(handler.as_ref(), ctx, context, true).await {
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
            match self.call(handler.as_ref(), ctx, context, false).await {
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

    /// Runs one handler call, renewing the lease while it runs and enforcing the step
    /// timeout and (forward only) the saga deadline.
    async fn call(
        &mut self,
        handler: &dyn ErasedHandler,
        ctx: StepContext,
        context: Value,
        forward: bool,
    ) -> Result<HandlerOutput, CallError> {
        let mut fut = pin!(handler.call(ctx, context));
        // Most handlers of a fast saga finish on their first poll: no timer needed.
        if let Poll::Ready(r) = futures::poll!(fut.as_mut()) {
            self.now = self.inner.clock.now();
            return r.map_err(CallError::Step);
        }
        let r = self.call_slow(fut, forward).await;
        self.now = self.inner.clock.now();
        r
    }

    /// The handler did not finish at once: wait for it with timers.
    async fn call_slow(
        &mut self,
        mut fut: std::pin::Pin<&mut crate::handler::BoxFuture<Result<HandlerOutput, StepError>>>,
        forward: bool,
    ) -> Result<HandlerOutput, CallError> {
        let renew_every = (self.inner.config.lease / 3).max(Duration::from_millis(1));
        let step_deadline = self.inner.config.step_timeout.map(|t| Instant::now() + t);
        let saga_deadline = if forward {
            self.deadline_instant()
        } else {
            None
        };
        loop {
            let renew = tokio::time::sleep(renew_every);
            tokio::select! {
                r = fut.as_mut() => return r.map_err(CallError::Step),
                () = renew => {
                    self.now = self.inner.clock.now();
                    self.flush().await.map_err(CallError::Saga)?;
                }
                () = sleep_until(step_deadline), if step_deadline.is_some() => {
                    let t = self.inner.config.step_timeout.unwrap_or_default();
                    return Err(CallError::Step(StepError::retryable(format!(
                        "handler timed out after {t:?}"
                    ))));
                }
                () = sleep_until(saga_deadline), if saga_deadline.is_some() => {
                    return Err(CallError::Deadline);
                }
            }
        }
    }

    /// Sleeps out a backoff, renewing the lease when the sleep is long.
    async fn sleep(&mut self, delay: Duration) -> SagaResult<()> {
        if delay.is_zero() {
            return Ok(());
        }
        let renew_every = (self.inner.config.lease / 3).max(Duration::from_millis(1));
        let mut left = delay;
        while left > renew_every {
            tokio::time::sleep(renew_every).await;
            self.now = self.inner.clock.now();
            self.flush().await?;
            left -= renew_every;
        }
        tokio::time::sleep(left).await;
        self.now = self.inner.clock.now();
        Ok(())
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
        let attempt = step.attempts;
        self.push("step_started", Some(i), Some(attempt), None);
        self.emit(|r| SagaEvent::StepStarted {
            saga_id: r.saga_id.to_string(),
            step_index: i,
            name: r.saga.steps[i].name.clone(),
            attempt,
        });
    }

    fn complete_step(&mut self, i: usize, out: HandlerOutput) {
        let now = self.now;
        if let Some(context) = out.context {
            self.saga.context = context;
        }
        let step = &mut self.saga.steps[i];
        step.status = SagaStepStatus::Completed;
        step.completed_at = Some(now);
        step.result = Some(out.output);
        let attempt = step.attempts;
        self.push("step_succeeded", Some(i), Some(attempt), None);
        self.inner.metrics.saga_step_completed(
            &self.saga.workflow_type,
            &self.saga.tenant_id,
            &self.saga.steps[i].name,
        );
        self.emit(|r| SagaEvent::StepSucceeded {
            saga_id: r.saga_id.to_string(),
            step_index: i,
            name: r.saga.steps[i].name.clone(),
            output: r.saga.steps[i].result.clone().unwrap_or(Value::Null),
        });
    }

    fn retry_step(&mut self, i: usize, e: &StepError, delay: Duration) {
        let step = &mut self.saga.steps[i];
        step.error = Some(e.message.clone());
        let attempt = step.attempts;
        let detail = json!({ "error": e.message, "delay_ms": delay.as_millis() as u64 });
        self.push("step_retrying", Some(i), Some(attempt), Some(detail));
        self.emit(|r| SagaEvent::StepRetrying {
            saga_id: r.saga_id.to_string(),
            step_index: i,
            name: r.saga.steps[i].name.clone(),
            attempt,
            error: e.message.clone(),
            delay_ms: delay.as_millis() as u64,
        });
    }

    fn fail_step(&mut self, i: usize, error: &str) {
        let now = self.now;
        let step = &mut self.saga.steps[i];
        step.status = SagaStepStatus::Failed;
        step.error = Some(error.to_owned());
        step.completed_at = Some(now);
        let attempt = step.attempts;
        self.push(
            "step_failed",
            Some(i),
            Some(attempt),
            Some(json!({ "error": error })),
        );
        self.inner.metrics.saga_step_failed(
            &self.saga.workflow_type,
            &self.saga.tenant_id,
            &self.saga.steps[i].name,
        );
        self.emit(|r| SagaEvent::StepFailed {
            saga_id: r.saga_id.to_string(),
            step_index: i,
            name: r.saga.steps[i].name.clone(),
            error: error.to_owned(),
        });
    }

    fn start_compensation(&mut self, reason: String) {
        self.saga.status = SagaStatus::Compensating;
        self.push(
            "compensating",
            None,
            None,
            Some(json!({ "reason": reason })),
        );
        self.emit(|r| SagaEvent::Compensating {
            saga_id: r.saga_id.to_string(),
            reason: reason.clone(),
        });
        self.saga.error = Some(reason);
    }

    fn begin_compensation(&mut self, j: usize) {
        let step = &mut self.saga.steps[j];
        step.status = SagaStepStatus::Compensating;
        step.compensation_attempts += 1;
        let attempt = step.compensation_attempts;
        self.push("compensation_started", Some(j), Some(attempt), None);
        self.emit(|r| SagaEvent::CompensationStarted {
            saga_id: r.saga_id.to_string(),
            step_index: j,
            name: r.saga.steps[j].name.clone(),
            attempt,
        });
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
        let attempt = step.compensation_attempts;
        self.push("step_compensated", Some(j), Some(attempt), None);
        self.emit(|r| SagaEvent::StepCompensated {
            saga_id: r.saga_id.to_string(),
            step_index: j,
            name: r.saga.steps[j].name.clone(),
        });
    }

    fn retry_compensation(&mut self, j: usize, e: &StepError, delay: Duration) {
        let step = &mut self.saga.steps[j];
        step.compensation_error = Some(e.message.clone());
        let attempt = step.compensation_attempts;
        let detail = json!({ "error": e.message, "delay_ms": delay.as_millis() as u64 });
        self.push(
            "compensation_retrying",
            Some(j),
            Some(attempt),
            Some(detail),
        );
        self.emit(|r| SagaEvent::CompensationRetrying {
            saga_id: r.saga_id.to_string(),
            step_index: j,
            name: r.saga.steps[j].name.clone(),
            attempt,
            error: e.message.clone(),
            delay_ms: delay.as_millis() as u64,
        });
    }

    fn fail_compensation(&mut self, j: usize, error: &str) {
        let step = &mut self.saga.steps[j];
        step.status = SagaStepStatus::CompensationFailed;
        step.compensation_error = Some(error.to_owned());
        let attempt = step.compensation_attempts;
        self.push(
            "compensation_failed",
            Some(j),
            Some(attempt),
            Some(json!({ "error": error })),
        );
        self.emit(|r| SagaEvent::CompensationFailed {
            saga_id: r.saga_id.to_string(),
            step_index: j,
            name: r.saga.steps[j].name.clone(),
            error: error.to_owned(),
        });
    }

    /// Writes the end state and releases the lease in one write.
    async fn finish(&mut self, status: SagaStatus) -> SagaResult<SagaOutcome> {
        self.saga.status = status;
        self.push("finished", None, None, None);
        self.saga.lease = None;
        self.flush().await?;
        self.inner.metrics.saga_finished(
            &self.saga.workflow_type,
            &self.saga.tenant_id,
            status.as_str(),
        );
        self.emit(|r| SagaEvent::Finished {
            saga_id: r.saga_id.to_string(),
            status,
        });
        Ok(self.outcome())
    }

    /// Gives the lease back without changing anything else (the saga had already ended).
    async fn release(&mut self) -> SagaResult<SagaOutcome> {
        self.saga.lease = None;
        self.flush().await?;
        let status = self.saga.status;
        self.emit(|r| SagaEvent::Finished {
            saga_id: r.saga_id.to_string(),
            status,
        });
        Ok(self.outcome())
    }

    /// Moves the saga out (the run is over): the final state is not cloned.
    fn outcome(&mut self) -> SagaOutcome {
        let saga = self.take_saga();
        SagaOutcome {
            status: saga.status,
            saga,
        }
    }

    /// Moves the saga out, leaving an empty placeholder.
    fn take_saga(&mut self) -> SagaWorkflow {
        // Built field by field: `SagaWorkflow::new` would draw a fresh uuid.
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
        std::mem::replace(&mut self.saga, empty)
    }

    /// One fenced compare-and-set of the saga with the buffered history; extends the
    /// lease (unless it is being released).
    async fn flush(&mut self) -> SagaResult<()> {
        let now = self.now;
        self.saga.updated_at = now;
        if let Some(lease) = &mut self.saga.lease {
            lease.expires_at = now + self.inner.config.lease;
        }
        let version = self
            .inner
            .store
            .save_saga(&self.saga, self.fence, &self.history)
            .await
            .map_err(|e| SagaError::from_store(&self.saga_id, e))?;
        self.history.clear();
        // The store now holds exactly the local copy with this version.
        self.saga.version = version;
        Ok(())
    }

    fn push(
        &mut self,
        event: &'static str,
        step: Option<usize>,
        attempt: Option<u32>,
        detail: Option<Value>,
    ) {
        self.history.push(SagaHistoryEntry {
            at: self.now,
            event: Cow::Borrowed(event),
            step_index: step,
            attempt,
            status: self.saga.status,
            fence: self.fence,
            detail,
        });
    }

    fn emit(&self, event: impl FnOnce(&Self) -> SagaEvent) {
        if let Some(tx) = &self.events {
            // A dropped receiver only means nobody watches any more; the saga goes on.
            let _ = tx.unbounded_send(event(self));
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
