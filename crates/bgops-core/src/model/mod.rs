//! The data bgops persists: idempotency records, sagas, tasks, locks.

mod idempotency;
mod operation;
mod saga;
mod task;

pub use idempotency::{IdempotencyKey, IdempotencyRecord, OperationOutcome, OperationStatus};
pub use operation::BackgroundOperation;
pub use saga::{SagaHistoryEntry, SagaLease, SagaStatus, SagaStep, SagaStepStatus, SagaWorkflow};
pub use task::{Task, TaskAttempt, TaskLease, TaskStatus};
