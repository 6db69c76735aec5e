//! The queue's error type.

use bgops_storage::StorageError;

/// What can go wrong in a queue call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The input was rejected before reaching the store.
    #[error("invalid input: {0}")]
    Invalid(#[source] bgops_core::CoreError),
    /// An argument is out of range (e.g. `max_attempts` of 0).
    #[error("invalid `{field}`: {reason}")]
    BadArgument {
        /// The argument's name.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The idempotency key was already used on this queue with another payload or type.
    #[error("idempotency key `{key}` was already used with a different payload")]
    KeyConflict {
        /// The key.
        key: String,
    },
    /// The task does not exist.
    #[error("task `{task_id}` not found")]
    NotFound {
        /// The task's id.
        task_id: String,
    },
    /// The attempt is no longer the current claim of the task: its lease expired and the
    /// task was requeued or claimed again. The caller must stop working on it.
    #[error("task `{task_id}`: lease lost")]
    LeaseLost {
        /// The task's id.
        task_id: String,
    },
    /// The task is not in a state that allows the call (e.g. retrying a task that is not
    /// failed).
    #[error("task `{task_id}` is {state}; cannot {action}")]
    InvalidState {
        /// The task's id.
        task_id: String,
        /// Its current state.
        state: String,
        /// What was asked.
        action: &'static str,
    },
    /// Any other storage failure (unreachable backend, corrupt data, ...).
    #[error("task store: {0}")]
    Storage(#[source] StorageError),
}

impl QueueError {
    /// Whether retrying the same call later may succeed (the store was unreachable).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Storage(e) if e.is_transient())
    }
}

impl From<StorageError> for QueueError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::KeyConflict { key, .. } => Self::KeyConflict { key },
            StorageError::NotFound { id, .. } => Self::NotFound { task_id: id },
            StorageError::LeaseLost { id, .. } => Self::LeaseLost { task_id: id },
            StorageError::InvalidState {
                id, state, action, ..
            } => Self::InvalidState {
                task_id: id,
                state,
                action,
            },
            StorageError::Invalid(e) => Self::Invalid(e),
            other => Self::Storage(other),
        }
    }
}

impl From<bgops_core::CoreError> for QueueError {
    fn from(err: bgops_core::CoreError) -> Self {
        Self::Invalid(err)
    }
}

/// Result of a queue call.
pub type QueueResult<T> = Result<T, QueueError>;
