//! The facade's error type.

use bgops_core::CoreError;
use bgops_storage::StorageError;

/// Errors of the [`BackgroundOperationsManager`](crate::BackgroundOperationsManager).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad input (empty tenant, bad key, zero TTL, parameters that are not JSON, ...).
    #[error(transparent)]
    Invalid(#[from] CoreError),
    /// The storage backend failed or refused (lease lost, not found, unavailable, ...).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The idempotency engine failed (classified: store unavailable, corrupt record, lost
    /// claim, ...). Its answers about a key map to the variants below.
    #[error(transparent)]
    Idempotency(bgops_idempotency::IdempotencyError),
    /// Another caller is running the operation with this key right now.
    #[error("operation with idempotency key `{key}` is in progress")]
    InProgress {
        /// The key.
        key: String,
    },
    /// The key was already used for a different operation or parameters.
    #[error("idempotency key `{key}` was used for a different request")]
    Mismatch {
        /// The key.
        key: String,
    },
    /// The operation ran before and failed; its failure is what is stored.
    #[error("the operation failed before: {0}")]
    StoredFailure(String),
    /// The operation passed to `run_once` returned an error (nothing was stored).
    #[error("operation failed: {0}")]
    Operation(String),
    /// The saga engine failed (feature `saga`).
    #[cfg(feature = "saga")]
    #[error(transparent)]
    Saga(#[from] bgops_saga::SagaError),
    /// The configuration cannot be used (e.g. `REDIS_URL` set without the `redis` feature).
    #[error("configuration error: {0}")]
    Config(String),
}

impl From<bgops_idempotency::IdempotencyError> for Error {
    fn from(error: bgops_idempotency::IdempotencyError) -> Self {
        use bgops_idempotency::IdempotencyError as E;
        match error {
            E::Invalid(invalid) => Self::Invalid(invalid),
            E::InProgress { key, .. } => Self::InProgress { key },
            E::Mismatch { key } => Self::Mismatch { key },
            E::StoredFailure { error, .. } => Self::StoredFailure(error),
            other => Self::Idempotency(other),
        }
    }
}
