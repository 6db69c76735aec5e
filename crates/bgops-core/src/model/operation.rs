use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use super::OperationStatus;

/// A general background operation, as tracked by the seed's `BackgroundOperation` model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackgroundOperation {
    /// Unique id.
    pub operation_id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Kind of operation.
    pub operation_type: String,
    /// Where it stands.
    pub status: OperationStatus,
    /// Its idempotency key, if any.
    pub idempotency_key: Option<String>,
    /// The saga it belongs to, if any.
    pub saga_id: Option<String>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Result, once completed.
    pub result: Option<Value>,
    /// Error, once failed.
    pub error: Option<String>,
}
