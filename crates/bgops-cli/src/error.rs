//! The CLI's one error type and its exit codes.

use bgops_storage::StorageError;

/// What the process exits with (see the crate docs' table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// Done.
    Ok = 0,
    /// The thing asked for does not exist.
    NotFound = 1,
    /// Bad arguments or input.
    Usage = 2,
    /// The store cannot be reached or is unhealthy.
    Unreachable = 3,
    /// Refused: wrong state, conflict or busy.
    Refused = 4,
    /// The store failed otherwise.
    Store = 5,
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// Bad arguments or input.
    #[error("{0}")]
    Usage(String),
    /// The saga, task or record does not exist.
    #[error("{kind} `{id}` not found")]
    NotFound {
        /// `saga`, `task`, `idempotency record`.
        kind: &'static str,
        /// What was looked up.
        id: String,
    },
    /// The store cannot be reached.
    #[error("cannot reach the store: {0}")]
    Unreachable(#[source] StorageError),
    /// The store answered but reports itself unhealthy.
    #[error("the {backend} store reports itself unhealthy")]
    Unhealthy {
        /// The backend's name.
        backend: &'static str,
    },
    /// The command does not apply to the record in its current state.
    #[error("refused: {0}")]
    Refused(String),
    /// Any other store failure.
    #[error("store error: {0}")]
    Store(#[source] StorageError),
}

impl CliError {
    /// The exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Usage(_) => ExitCode::Usage,
            Self::NotFound { .. } => ExitCode::NotFound,
            Self::Unreachable(_) | Self::Unhealthy { .. } => ExitCode::Unreachable,
            Self::Refused(_) => ExitCode::Refused,
            Self::Store(_) => ExitCode::Store,
        }
    }
}

impl From<StorageError> for CliError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::Invalid(e) => Self::Usage(e.to_string()),
            StorageError::NotFound { kind, id } => Self::NotFound { kind, id },
            e @ (StorageError::LeaseLost { .. }
            | StorageError::VersionConflict { .. }
            | StorageError::KeyConflict { .. }
            | StorageError::InvalidState { .. }) => Self::Refused(e.to_string()),
            e if e.is_transient() => Self::Unreachable(e),
            e => Self::Store(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_to_exit_codes() {
        let unreachable = StorageError::Unavailable {
            backend: "redis",
            source: "connection refused".into(),
        };
        assert_eq!(
            CliError::from(unreachable).exit_code(),
            ExitCode::Unreachable
        );
        let missing = StorageError::NotFound {
            kind: "task",
            id: "t1".into(),
        };
        assert_eq!(CliError::from(missing).exit_code(), ExitCode::NotFound);
        let state = StorageError::InvalidState {
            kind: "task",
            id: "t1".into(),
            state: "pending".into(),
            action: "retry",
        };
        assert_eq!(CliError::from(state).exit_code(), ExitCode::Refused);
        let corrupt = StorageError::Corrupt {
            key: "k".into(),
            reason: "bad json".into(),
        };
        assert_eq!(CliError::from(corrupt).exit_code(), ExitCode::Store);
        let invalid =
            StorageError::Invalid(bgops_core::CoreError::EmptyField { field: "tenant_id" });
        assert_eq!(CliError::from(invalid).exit_code(), ExitCode::Usage);
    }
}
