//! The board's one error type, rendered as an HTML error page.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bgops_storage::StorageError;

/// Why a board page could not be shown.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BoardError {
    /// The saga, task or record does not exist.
    #[error("{kind} `{id}` not found")]
    NotFound {
        /// What was looked up.
        kind: &'static str,
        /// Its id.
        id: String,
    },
    /// The request was malformed (bad filter, bad key).
    #[error("{0}")]
    BadRequest(String),
    /// A write came without a valid CSRF token or from another site.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// The action does not apply in the record's state.
    #[error("{0}")]
    Conflict(String),
    /// The store failed or cannot be reached.
    #[error("store error: {0}")]
    Store(#[source] StorageError),
}

impl From<StorageError> for BoardError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::Invalid(e) => Self::BadRequest(e.to_string()),
            StorageError::NotFound { kind, id } => Self::NotFound { kind, id },
            e @ (StorageError::InvalidState { .. }
            | StorageError::LeaseLost { .. }
            | StorageError::VersionConflict { .. }
            | StorageError::KeyConflict { .. }) => Self::Conflict(e.to_string()),
            e => Self::Store(e),
        }
    }
}

impl BoardError {
    fn status(&self) -> StatusCode {
        match self {
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Store(e) if e.is_transient() => StatusCode::SERVICE_UNAVAILABLE,
            Self::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for BoardError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = crate::view::error_page(status, &self.to_string());
        (status, body).into_response()
    }
}
