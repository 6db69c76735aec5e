//! The transitions of an execution: each changes the local saga and records one
//! [`SagaEvent`] (streamed now, journaled by the next fenced write).

use std::sync::Arc;
use std::time::Duration;

use bgops_core::{SagaEvent, SagaEventKind, SagaStatus, SagaStepStatus, SagaWorkflow};
use bgops_storage::SagaSaved;
use serde_json::Value;

use super::Run;
use crate::error::{SagaError, SagaResult};
use crate::handler::{HandlerOutput, StepError};
use crate::state::SagaOutcome;

impl Run<'_> {
    pub(super) fn begin_attempt(&mut self, i: usize) {
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

    pub(super) fn complete_step(&mut self, i: usize, out: HandlerOutput) {
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

    pub(super) fn retry_step(&mut self, i: usize, e: &StepError, delay: Duration) {
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

    pub(super) fn fail_step(&mut self, i: usize, error: &str) {
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

    pub(super) fn start_compensation(&mut self, reason: String) {
        self.saga.status = SagaStatus::Compensating;
        self.saga.error = Some(reason.clone());
        self.record(SagaEventKind::Compensating { reason });
    }

    pub(super) fn begin_compensation(&mut self, j: usize) {
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

    pub(super) fn compensated(&mut self, j: usize, context: Option<Value>) {
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

    pub(super) fn retry_compensation(&mut self, j: usize, e: &StepError, delay: Duration) {
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

    pub(super) fn fail_compensation(&mut self, j: usize, error: &str) {
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
    pub(super) async fn finish(&mut self, status: SagaStatus) -> SagaResult<SagaOutcome> {
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
    pub(super) async fn release(&mut self) -> SagaResult<SagaOutcome> {
        self.saga.lease = None;
        self.pending.clear();
        self.flush().await?;
        let finished = self.event(SagaEventKind::Finished);
        self.send(finished);
        Ok(self.outcome())
    }

    /// Ends the stream with `Aborted` (never journaled: the store may be what failed).
    pub(super) fn abort(&mut self, error: &SagaError) {
        tracing::warn!(%error, "saga execution stopped");
        let aborted = self.event(SagaEventKind::Aborted {
            error: error.to_string(),
        });
        self.send(aborted);
    }

    /// Moves the saga out (the run is over): the final state is not cloned.
    pub(super) fn outcome(&mut self) -> SagaOutcome {
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
            template_version: None,
        };
        let saga = std::mem::replace(&mut self.saga, empty);
        SagaOutcome {
            status: saga.status,
            saga,
        }
    }

    /// One fenced compare-and-set of the saga with the pending events; renews the lease
    /// (unless it is being released) by the store's clock.
    pub(super) async fn flush(&mut self) -> SagaResult<()> {
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
    pub(super) fn saved(&mut self, saved: SagaSaved) {
        self.saga.version = saved.version;
        if let (Some(lease), Some(at)) = (&mut self.saga.lease, saved.lease_expires_at) {
            lease.expires_at = at;
        }
    }

    pub(super) fn event(&self, kind: SagaEventKind) -> SagaEvent {
        SagaEvent {
            saga_id: Arc::clone(&self.saga_id),
            at: self.now,
            fence: self.fence,
            status: self.saga.status,
            kind,
        }
    }

    /// Records a fact once: streamed now, journaled with the next write.
    pub(super) fn record(&mut self, kind: SagaEventKind) {
        let event = self.event(kind);
        if let Some(tx) = &self.events {
            // A dropped receiver only means nobody watches any more; the saga goes on.
            let _ = tx.unbounded_send(event.clone());
        }
        self.pending.push(event);
    }

    pub(super) fn send(&self, event: SagaEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.unbounded_send(event);
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
