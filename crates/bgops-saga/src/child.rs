//! Child sagas: a step that starts another saga (made from a template) and waits for its
//! outcome.
//!
//! The child's id is the parent step's [`step_key`](crate::StepContext::step_key)
//! (`{parent_id}:{index}`), so however often the step runs — retries, a parent recovered
//! after a crash — the child is created once: a later run finds it (create-or-resume) and
//! resumes it or reads how it ended. A child outlives its parent's executor: its own
//! lease and journal make it recoverable on its own, and the recovered parent waits for
//! whoever runs it.
//!
//! The step succeeds when the child ends `Completed` (output: `{"child_saga_id",
//! "status"}`) and fails terminally when it ends `Compensated` or `CompensationFailed`
//! (the child has already undone its own work). When the parent compensates a step whose
//! child completed, the child is compensated in turn ([`SagaEngine::compensate`]); a
//! child found still running is first driven to its end.

use std::sync::Weak;
use std::time::Duration;

use bgops_core::{SagaStatus, SagaStep};
use serde_json::{Value, json};

use crate::engine::SagaEngine;
use crate::error::SagaError;
use crate::handler::{self, Registry, StepContext, StepError};
use crate::state::{Inner, SagaOutcome};

/// The operation of a child-saga step (registered by every engine).
pub const CHILD_SAGA_OPERATION: &str = "bgops.child_saga";
/// The compensation of a child-saga step (registered by every engine).
pub const CHILD_SAGA_COMPENSATION: &str = "bgops.child_saga.compensate";

/// A step that runs a child saga made from template `template` (its latest version when
/// the child is created) with `params`.
///
/// ```
/// use bgops_saga::child_saga_step;
/// use serde_json::json;
/// let step = child_saga_step("Provision", "provisioning", json!({ "plan": "pro" }));
/// assert_eq!(step.operation, bgops_saga::CHILD_SAGA_OPERATION);
/// ```
pub fn child_saga_step(name: &str, template: &str, params: Value) -> SagaStep {
    let mut parameters = serde_json::Map::new();
    parameters.insert("template".to_owned(), Value::from(template));
    parameters.insert("params".to_owned(), params);
    SagaStep::new(name, CHILD_SAGA_OPERATION, Value::Object(parameters))
        .with_compensation(CHILD_SAGA_COMPENSATION, Value::Null)
        // Each run waits for the child rather than failing fast: retries are for store
        // hiccups only.
        .with_max_retries(3)
}

/// Registers the built-in child-saga handlers, which reach the engine through `weak`.
pub(crate) fn register_handlers(registry: &Registry, weak: &Weak<Inner>) {
    let run = weak.clone();
    let undo = weak.clone();
    let run = handler::from_fn(move |step: StepContext| {
        let engine = upgrade(&run);
        async move { run_child(engine?, step).await }
    });
    let undo = handler::from_fn(move |step: StepContext| {
        let engine = upgrade(&undo);
        async move { undo_child(engine?, step).await }
    });
    registry.update(|m| {
        m.operations.insert(CHILD_SAGA_OPERATION.to_owned(), run);
        m.compensations
            .insert(CHILD_SAGA_COMPENSATION.to_owned(), undo);
    });
}

fn upgrade(weak: &Weak<Inner>) -> Result<SagaEngine, StepError> {
    weak.upgrade()
        .map(|inner| SagaEngine { inner })
        .ok_or_else(|| StepError::retryable("the saga engine is shutting down"))
}

/// The child's id: the parent step's key (the same for every run of the step).
fn child_id(step: &StepContext) -> String {
    format!("{}:{}", step.saga_id, step.step_index)
}

/// How long to wait before looking again at a child another executor is running.
fn poll(engine: &SagaEngine) -> Duration {
    (engine.config().lease / 3).min(Duration::from_millis(50))
}

fn store_error(e: &SagaError) -> StepError {
    if e.is_transient() {
        StepError::retryable(e.to_string())
    } else {
        StepError::terminal(e.to_string())
    }
}

async fn run_child(engine: SagaEngine, step: StepContext) -> Result<Value, StepError> {
    let template = step.parameters["template"]
        .as_str()
        .ok_or_else(|| StepError::terminal("child saga step without a `template`"))?;
    let id = child_id(&step);
    let new = engine
        .template_saga(&step.tenant_id, template, None, &step.parameters["params"])
        .map_err(|e| StepError::terminal(e.to_string()))?
        .saga_id(id.clone());
    loop {
        // Create-or-resume: creates the child once; afterwards runs it on or reads its end.
        match engine.start(new.clone()).await {
            Ok(SagaOutcome { status, .. }) => {
                return match status {
                    SagaStatus::Completed => {
                        Ok(json!({ "child_saga_id": id, "status": status.as_str() }))
                    }
                    _ => Err(StepError::terminal(format!(
                        "child saga {id} ended {}",
                        status.as_str()
                    ))),
                };
            }
            // Another executor (a recoverer) runs it: wait for it to end.
            Err(SagaError::Busy(_)) => tokio::time::sleep(poll(&engine)).await,
            Err(e) => return Err(store_error(&e)),
        }
    }
}

async fn undo_child(engine: SagaEngine, step: StepContext) -> Result<Value, StepError> {
    let id = child_id(&step);
    loop {
        let Some(child) = engine.get(&id).await.map_err(|e| store_error(&e))? else {
            // Never created: nothing to undo.
            return Ok(Value::Null);
        };
        let attempt = match child.status {
            SagaStatus::Compensated => return Ok(Value::Null),
            SagaStatus::Completed => engine.compensate(&id).await,
            SagaStatus::CompensationFailed => engine.retry_compensation(&id).await,
            // Still running (the parent's outcome of this step was unknown): let it end.
            _ => engine.execute(&id).await,
        };
        match attempt {
            Ok(SagaOutcome {
                status: SagaStatus::Compensated,
                ..
            }) => return Ok(Value::Null),
            Ok(SagaOutcome {
                status: SagaStatus::CompensationFailed,
                ..
            }) => {
                return Err(StepError::retryable(format!(
                    "child saga {id} failed to compensate"
                )));
            }
            // Ended otherwise (completed), or changed under us: look again.
            Ok(_) | Err(SagaError::InvalidState { .. }) => {}
            Err(SagaError::Busy(_)) => tokio::time::sleep(poll(&engine)).await,
            Err(e) => return Err(store_error(&e)),
        }
    }
}
