//! The data bgops persists: idempotency records, sagas, tasks, locks.

mod idempotency;
mod operation;
mod saga;
mod saga_event;
mod task;

pub use idempotency::{IdempotencyKey, IdempotencyRecord, OperationOutcome, OperationStatus};
pub use operation::{BackgroundOperation, OperationKind};
pub use saga::{SagaLease, SagaStatus, SagaStep, SagaStepStatus, SagaWorkflow};
pub use saga_event::{SagaEvent, SagaEventKind};
pub use task::{Task, TaskAttempt, TaskLease, TaskStatus};
