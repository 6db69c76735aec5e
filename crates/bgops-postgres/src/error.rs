//! The crate's error type, and how driver errors become [`StorageError`]s.

use bgops_storage::StorageError;

use crate::BACKEND;

/// What can go wrong setting up a [`PostgresStorage`](crate::PostgresStorage).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresError {
    /// The schema name is not a plain lowercase SQL identifier.
    #[error(
        "invalid schema name `{0}`: use 1 to 63 characters of a-z, 0-9 and _, starting with a letter or _"
    )]
    InvalidSchema(String),
    /// The URL could not be parsed.
    #[error("invalid PostgreSQL URL: {0}")]
    InvalidUrl(#[source] sqlx::Error),
    /// The server did not answer.
    #[error(
        "cannot connect to PostgreSQL at {url}: {source}; is the server running and the URL \
         right (postgres://user[:password]@host:port/database)?"
    )]
    Connect {
        /// The URL, without its password.
        url: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The schema's tables do not exist (or are older than this crate).
    #[error(
        "the bgops schema `{schema}` is missing or not up to date (found version {found}, need \
         {need}): call `PostgresStorage::migrate()` once, or build with `.migrate(true)`"
    )]
    SchemaMissing {
        /// The schema name.
        schema: String,
        /// The version found (0: none).
        found: i32,
        /// The version this crate needs.
        need: i32,
    },
    /// A migration failed.
    #[error("migration {version} of schema `{schema}` failed: {source}")]
    Migrate {
        /// The schema name.
        schema: String,
        /// The migration's version.
        version: i32,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// Any other driver failure during setup.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<PostgresError> for StorageError {
    fn from(e: PostgresError) -> Self {
        match e {
            PostgresError::Storage(e) => e,
            e @ PostgresError::Connect { .. } => StorageError::Unavailable {
                backend: BACKEND,
                source: Box::new(e),
            },
            e => StorageError::Backend {
                backend: BACKEND,
                source: Box::new(e),
            },
        }
    }
}

/// Maps a driver error: connection trouble, server restarts, serialization failures and
/// deadlocks are `Unavailable` (worth a retry), undecodable values `Corrupt`, a missing
/// table a `Backend` error that says to run the migrations.
pub(crate) fn map(e: sqlx::Error) -> StorageError {
    match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => unavailable(e),
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => StorageError::Corrupt {
            key: "postgres row".to_owned(),
            reason: e.to_string(),
        },
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            if code.starts_with("08")
                || code.starts_with("57P")
                || matches!(code.as_ref(), "40001" | "40P01" | "53300" | "55P03")
            {
                unavailable(e)
            } else if matches!(code.as_ref(), "3F000" | "42P01") {
                StorageError::Backend {
                    backend: BACKEND,
                    source: format!(
                        "{e}: the bgops schema is missing; call `PostgresStorage::migrate()` \
                         once, or build with `.migrate(true)`"
                    )
                    .into(),
                }
            } else {
                backend(e)
            }
        }
        _ => backend(e),
    }
}

fn unavailable(e: sqlx::Error) -> StorageError {
    StorageError::Unavailable {
        backend: BACKEND,
        source: Box::new(e),
    }
}

fn backend(e: sqlx::Error) -> StorageError {
    StorageError::Backend {
        backend: BACKEND,
        source: Box::new(e),
    }
}

/// A value stored by us that does not read back.
pub(crate) fn corrupt(key: impl Into<String>, reason: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt {
        key: key.into(),
        reason: reason.to_string(),
    }
}
