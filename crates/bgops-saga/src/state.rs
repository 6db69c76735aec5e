//! What the engine and its executions share: the store, settings, clock, ids, metrics and
//! handlers, plus the outcome of an execution. Its own module so that `engine` (the
//! public API) and `executor` (one execution) both depend on it and not on each other.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bgops_core::{SagaStatus, SagaWorkflow, SharedClock, SharedIds, SharedMetrics};
use bgops_storage::SagaStore;

use crate::config::SagaConfig;
use crate::handler::Registry;
use crate::template::Templates;

/// The state behind a [`SagaEngine`](crate::SagaEngine) and its clones.
pub(crate) struct Inner {
    pub store: Arc<dyn SagaStore>,
    pub config: SagaConfig,
    pub clock: SharedClock,
    pub ids: SharedIds,
    pub metrics: SharedMetrics,
    pub registry: Registry,
    pub templates: Templates,
    pub owner: String,
    /// Numbers the executions of this engine, so each holds a lease of its own.
    pub executions: AtomicU64,
}

impl Inner {
    /// The lease owner of one execution: `{engine owner}#{n}`. Two executions of the same
    /// saga in one process then exclude each other like executions in two processes.
    pub(crate) fn execution_owner(&self) -> String {
        format!(
            "{}#{}",
            self.owner,
            self.executions.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq)]
pub struct SagaOutcome {
    /// The end state (or the state found, when the saga had already ended).
    pub status: SagaStatus,
    /// The saga as last stored.
    pub saga: SagaWorkflow,
}

impl SagaOutcome {
    /// Whether every step succeeded (the seed's `execute_saga_workflow` result).
    pub fn succeeded(&self) -> bool {
        self.status == SagaStatus::Completed
    }
}
