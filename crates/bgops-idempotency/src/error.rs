//! The error type of the idempotency engine, with the one classification of store errors
//! every adapter maps from: transient, bad input, corrupt data, or a definite answer.

use bgops_core::CoreError;
use bgops_storage::StorageError;
use time::OffsetDateTime;

/// What can go wrong in the engine.
///
/// The classes an adapter maps (the HTTP mapping lives in `bgops-axum`):
///
/// | class | variants | HTTP |
/// |---|---|---|
/// | transient: worth a retry, the only class that may "fail open" | [`Unavailable`](Self::Unavailable) | 503 + `Retry-After`, or run unprotected when failing open |
/// | bad input: nothing was stored | [`Invalid`](Self::Invalid) | 400 |
/// | corrupt data: names the record, never "fail open" | [`Corrupt`](Self::Corrupt) | 500 |
/// | answers about the key | [`InProgress`](Self::InProgress), [`Mismatch`](Self::Mismatch), [`StoredFailure`](Self::StoredFailure) | 409 / 422 / replay |
/// | the claim is gone | [`LeaseLost`](Self::LeaseLost), [`NotFound`](Self::NotFound) | — |
/// | anything else from the backend | [`Storage`](Self::Storage), [`Aborted`](Self::Aborted) | 500 |
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdempotencyError {
    /// Bad input (empty tenant, bad key, zero TTL, parameters that are not JSON, ...):
    /// rejected before anything was stored.
    #[error(transparent)]
    Invalid(#[from] CoreError),
    /// The store could not be reached or did not answer in time. The only transient
    /// class: retrying later may succeed.
    #[error("idempotency store unavailable: {0}")]
    Unavailable(#[source] StorageError),
    /// A stored value could not be read: corrupted, or written by someone else. Never
    /// treated as "no record" (that would run the operation again on every retry).
    #[error("idempotency record `{record}` is corrupt: {reason}")]
    Corrupt {
        /// The record (storage key) concerned.
        record: String,
        /// What was wrong with it.
        reason: String,
    },
    /// Another caller holds a live claim on the key: do not run the operation.
    #[error("operation with idempotency key `{key}` is in progress")]
    InProgress {
        /// The key.
        key: String,
        /// When the holder's lease runs out unless renewed.
        lease_expires_at: OffsetDateTime,
    },
    /// The key was used for a different operation or parameters.
    #[error("idempotency key `{key}` was used for a different request")]
    Mismatch {
        /// The key.
        key: String,
    },
    /// The operation ran before and failed; its remembered failure is the answer.
    #[error("the operation with idempotency key `{key}` failed before: {error}")]
    StoredFailure {
        /// The key.
        key: String,
        /// The stored error.
        error: String,
    },
    /// The claim is no longer current: its lease ran out and another caller took over
    /// (or the record was completed by another token).
    #[error("idempotency claim `{key}` lost: another caller took over")]
    LeaseLost {
        /// The record (`tenant/key`).
        key: String,
    },
    /// The record is gone (deleted, or its TTL passed).
    #[error("idempotency record `{key}` not found (deleted or expired)")]
    NotFound {
        /// The record (`tenant/key`).
        key: String,
    },
    /// Claimed work was dropped before it finished: the runtime is shutting down. Its
    /// claim was not released; it expires with its lease.
    #[error("claimed work was cancelled before it finished (runtime shutting down)")]
    Aborted,
    /// Any other backend failure (not transient, not corrupt data).
    #[error(transparent)]
    Storage(StorageError),
}

impl IdempotencyError {
    /// Whether retrying later may succeed: only [`Unavailable`](Self::Unavailable).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// Whether the caller's input was rejected ([`Invalid`](Self::Invalid)): a 4xx.
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, Self::Invalid(_))
    }
}

impl From<StorageError> for IdempotencyError {
    /// The one classification of store errors.
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::Invalid(core) => Self::Invalid(core),
            StorageError::Serialization(e) => Self::Invalid(CoreError::NotJson(e)),
            StorageError::Corrupt { key, reason } => Self::Corrupt {
                record: key,
                reason,
            },
            StorageError::LeaseLost { id, .. } => Self::LeaseLost { key: id },
            StorageError::NotFound { id, .. } => Self::NotFound { key: id },
            e if e.is_transient() => Self::Unavailable(e),
            other => Self::Storage(other),
        }
    }
}

/// Result of an engine call.
pub type IdempotencyResult<T> = Result<T, IdempotencyError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let unavailable = StorageError::Unavailable {
            backend: "x",
            source: "down".into(),
        };
        assert!(IdempotencyError::from(unavailable).is_transient());
        let corrupt = IdempotencyError::from(StorageError::Corrupt {
            key: "bgops:{t}:idem:k".into(),
            reason: "bad field".into(),
        });
        assert!(!corrupt.is_transient());
        assert!(corrupt.to_string().contains("bgops:{t}:idem:k"));
        let invalid = IdempotencyError::from(StorageError::Invalid(CoreError::EmptyField {
            field: "tenant_id",
        }));
        assert!(invalid.is_invalid_input());
        let backend = IdempotencyError::from(StorageError::Backend {
            backend: "x",
            source: "script error".into(),
        });
        assert!(matches!(backend, IdempotencyError::Storage(_)));
    }
}
