//! The error type of `bgops-saga`.

use bgops_core::{CoreError, SagaStatus};
use bgops_storage::{BoxError, StorageError};

/// What can go wrong when creating, executing or recovering a saga.
///
/// A failing *step* is not an error: it turns the saga to compensation and shows in the
/// [`SagaOutcome`](crate::SagaOutcome). These errors mean the engine could not do its job.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SagaError {
    /// The input was rejected (empty tenant, bad idempotency key, no steps, ...).
    #[error(transparent)]
    Invalid(#[from] CoreError),
    /// A step names an operation (or compensation) with no registered handler.
    #[error("no handler registered for {kind} `{operation}`")]
    UnknownOperation {
        /// `operation` or `compensation`.
        kind: &'static str,
        /// The operation's name.
        operation: String,
    },
    /// No saga with this id exists.
    #[error("saga `{0}` not found")]
    NotFound(String),
    /// Another executor holds a live lease on the saga; it is running elsewhere.
    #[error("saga `{0}` is being executed by another executor")]
    Busy(String),
    /// This executor's lease was taken over (its fence is no longer current); it stopped
    /// without writing anything further. The new holder carries on.
    #[error("saga `{0}`: lease lost to another executor; this executor stopped")]
    LeaseLost(String),
    /// The saga is in a state where the request does not apply (e.g. `retry_compensation`
    /// on a saga that did not fail to compensate).
    #[error("saga `{saga_id}` is {status:?}; cannot {action}")]
    InvalidState {
        /// The saga.
        saga_id: String,
        /// Its status.
        status: SagaStatus,
        /// What was asked.
        action: &'static str,
    },
    /// A typed saga's context could not be encoded or decoded.
    #[error("saga context of `{workflow_type}` could not be (de)serialized: {source}")]
    Context {
        /// The typed saga's workflow type.
        workflow_type: String,
        /// The serializer's error.
        #[source]
        source: BoxError,
    },
    /// A typed saga was registered twice, or with duplicate step names.
    #[error("invalid saga definition `{workflow_type}`: {reason}")]
    Definition {
        /// The workflow type.
        workflow_type: String,
        /// What is wrong.
        reason: String,
    },
    /// The store failed.
    #[error("saga store: {0}")]
    Storage(#[source] StorageError),
}

impl SagaError {
    /// Maps a store error on saga `saga_id`, turning a lost fence into [`SagaError::LeaseLost`]
    /// and a missing record into [`SagaError::NotFound`].
    pub(crate) fn from_store(saga_id: &str, error: StorageError) -> Self {
        match error {
            StorageError::LeaseLost { .. } => Self::LeaseLost(saga_id.to_owned()),
            StorageError::NotFound { .. } => Self::NotFound(saga_id.to_owned()),
            StorageError::Invalid(e) => Self::Invalid(e),
            other => Self::Storage(other),
        }
    }

    /// Whether retrying later may succeed (store unreachable, or the saga is busy).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Busy(_) => true,
            Self::Storage(e) => e.is_transient(),
            _ => false,
        }
    }
}

/// Result of a saga engine call.
pub type SagaResult<T> = Result<T, SagaError>;
