//! The HTML pages.

pub(crate) mod keys;
pub(crate) mod overview;
pub(crate) mod sagas;
pub(crate) mod tasks;

use bgops_core::{SagaStatus, TaskStatus};

/// Every saga status, in lifecycle order.
pub(crate) const SAGA_STATUSES: [SagaStatus; 6] = [
    SagaStatus::Pending,
    SagaStatus::Running,
    SagaStatus::Completed,
    SagaStatus::Compensating,
    SagaStatus::Compensated,
    SagaStatus::CompensationFailed,
];

/// Every task status, in lifecycle order.
pub(crate) const TASK_STATUSES: [TaskStatus; 4] = [
    TaskStatus::Pending,
    TaskStatus::Claimed,
    TaskStatus::Completed,
    TaskStatus::Failed,
];

/// Parses a saga status filter.
pub(crate) fn saga_status(text: &str) -> Result<SagaStatus, crate::BoardError> {
    SAGA_STATUSES
        .into_iter()
        .find(|s| s.as_str() == text)
        .ok_or_else(|| crate::BoardError::BadRequest(format!("unknown saga status `{text}`")))
}

/// Parses a task status filter.
pub(crate) fn task_status(text: &str) -> Result<TaskStatus, crate::BoardError> {
    TASK_STATUSES
        .into_iter()
        .find(|s| s.as_str() == text)
        .ok_or_else(|| crate::BoardError::BadRequest(format!("unknown task status `{text}`")))
}
