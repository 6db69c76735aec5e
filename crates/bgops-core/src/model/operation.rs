use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use super::OperationStatus;

/// What kind of background operation a [`BackgroundOperation`] view shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    /// An idempotency record (a claimed key: `run_once`, the HTTP middleware, ...).
    IdempotencyKey,
    /// A task of the queue.
    Task,
    /// A saga workflow.
    Saga,
}

/// One view of any background operation — a claimed key, a task, a saga — by id, with
/// status and timestamps (the seed's `BackgroundOperation` model, "general background
/// operation tracking"). Built on demand from the stored record by
/// `BackgroundOperationsManager::get_operation`; never stored itself.
///
/// Status mapping: a task that waits and a saga not started are `Pending`; a claimed key,
/// a claimed task and a running (or compensating) saga are `InProgress`; a completed key,
/// task or saga is `Completed`; a failed one, or a compensated saga, is `Failed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackgroundOperation {
    /// Unique id: the idempotency key, the task id or the saga id.
    pub operation_id: String,
    /// What it is.
    pub kind: OperationKind,
    /// Owning tenant (for a task, which is scoped by queue rather than tenant: its queue).
    pub tenant_id: String,
    /// Kind of operation (operation type, task type, workflow type).
    pub operation_type: String,
    /// Where it stands.
    pub status: OperationStatus,
    /// Its idempotency key, if any.
    pub idempotency_key: Option<String>,
    /// The saga it belongs to, if any.
    pub saga_id: Option<String>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Result, once completed.
    pub result: Option<Value>,
    /// Error, once failed.
    pub error: Option<String>,
}
