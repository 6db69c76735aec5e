//! The error type every storage backend returns.

use bgops_core::CoreError;

/// A boxed driver error kept as the source of a [`StorageError`], so that no driver's
/// error type leaks into the public API.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What can go wrong in a store call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The input was rejected before reaching the store.
    #[error(transparent)]
    Invalid(#[from] CoreError),
    /// The record does not exist (or has expired).
    #[error("{kind} `{id}` not found")]
    NotFound {
        /// `idempotency`, `saga`, `task`, `lock`.
        kind: &'static str,
        /// Its id or key.
        id: String,
    },
    /// The caller's token, fence or attempt number is no longer the current one: someone
    /// else took over (or the record moved on). The caller must stop acting on it.
    #[error("{kind} `{id}`: lease lost (the token or fencing number is no longer current)")]
    LeaseLost {
        /// `idempotency`, `saga`, `task`, `lock`.
        kind: &'static str,
        /// Its id or key.
        id: String,
    },
    /// A compare-and-set failed: the stored version differs from the expected one.
    #[error("{kind} `{id}`: version conflict (expected {expected}, found {found})")]
    VersionConflict {
        /// `saga`, ...
        kind: &'static str,
        /// Its id.
        id: String,
        /// The version the caller expected.
        expected: u64,
        /// The version stored.
        found: u64,
    },
    /// The same idempotency key was used with a different request or payload.
    #[error("{kind}: idempotency key `{key}` was already used with different content")]
    KeyConflict {
        /// `task`, `saga`, ...
        kind: &'static str,
        /// The key.
        key: String,
    },
    /// The operation does not apply to the record in its current state (e.g. retrying a
    /// task that is not failed).
    #[error("{kind} `{id}` is {state}; cannot {action}")]
    InvalidState {
        /// `task`, `saga`, ...
        kind: &'static str,
        /// Its id.
        id: String,
        /// Its current state.
        state: String,
        /// What was asked.
        action: &'static str,
    },
    /// The backend cannot be reached or did not answer in time. Worth a retry.
    #[error("{backend} unavailable: {source}")]
    Unavailable {
        /// The backend's name.
        backend: &'static str,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
    /// A value under one of our keys could not be read: corrupted, or written by someone
    /// else.
    #[error("corrupt value under `{key}`: {reason}")]
    Corrupt {
        /// The storage key.
        key: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A value could not be encoded.
    #[error("serialization failed: {0}")]
    Serialization(#[source] serde_json::Error),
    /// Any other backend failure.
    #[error("{backend} error: {source}")]
    Backend {
        /// The backend's name.
        backend: &'static str,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
}

impl StorageError {
    /// Whether retrying the same call later may succeed (the backend was unreachable).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// Result of a store call.
pub type StorageResult<T> = Result<T, StorageError>;
