use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

/// Where an idempotent operation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationStatus {
    /// Created but not started (the seed's initial state).
    Pending,
    /// Claimed by a caller that holds the lease token and is running it.
    InProgress,
    /// Finished successfully; `result` holds the outcome.
    Completed,
    /// Finished with an error; `error` holds it. Replayed like a completed outcome.
    Failed,
}

impl OperationStatus {
    /// Whether the operation has an outcome that must be replayed, not run again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }

    /// The name used in storage and APIs (`pending`, `in_progress`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }
}

/// One idempotency record, scoped by tenant: the seed's `IdempotencyKey` model plus what
/// atomic use needs (request fingerprint and lease expiry). The lease token itself is
/// never part of the record a caller reads back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// The idempotency key (derived or given by the client).
    pub key: String,
    /// The tenant the record belongs to; part of its storage address.
    pub tenant_id: String,
    /// The user, if any.
    pub user_id: Option<String>,
    /// The kind of operation (`send_email`, `POST /orders`, ...).
    pub operation_type: String,
    /// When the record was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When the record stops being remembered.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// Where the operation stands.
    pub status: OperationStatus,
    /// The result of a completed operation.
    pub result: Option<Value>,
    /// The error of a failed operation.
    pub error: Option<String>,
    /// The operation's parameters, as given at creation.
    pub parameters: Option<Value>,
    /// Fingerprint of the request that created the record; a later request with the same
    /// key and another fingerprint is a mismatch.
    pub fingerprint: Option<String>,
    /// While in progress: when the current holder's lease runs out.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub lease_expires_at: Option<OffsetDateTime>,
    /// When the outcome was recorded.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub completed_at: Option<OffsetDateTime>,
    /// Opaque bytes stored with the outcome (the HTTP middleware keeps the encoded
    /// response here). They travel as bytes end to end: no base64, no JSON wrapping.
    #[serde(skip)]
    pub payload: Option<Bytes>,
}

/// The seed's name for [`IdempotencyRecord`].
pub type IdempotencyKey = IdempotencyRecord;

impl IdempotencyRecord {
    /// Whether the record has expired at `now`.
    pub fn is_expired_at(&self, now: OffsetDateTime) -> bool {
        now >= self.expires_at
    }
}

/// The outcome recorded by `complete`: a success (no `error`) or a remembered failure,
/// with an optional JSON result and optional opaque bytes.
///
/// ```
/// use bgops_core::{OperationOutcome, OperationStatus};
/// use serde_json::json;
/// let ok = OperationOutcome::succeeded(json!({"id": 7}));
/// assert_eq!(ok.status(), OperationStatus::Completed);
/// let failed = OperationOutcome::failed("card declined").with_payload(&b"HTTP/1.1 402"[..]);
/// assert_eq!(failed.status(), OperationStatus::Failed);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OperationOutcome {
    /// The result (the JSON the status endpoint shows), if any.
    pub result: Option<Value>,
    /// Set for a failure: the failure is remembered and replayed like a success.
    pub error: Option<String>,
    /// Opaque bytes kept with the outcome (e.g. an encoded HTTP response).
    pub payload: Option<Bytes>,
}

impl OperationOutcome {
    /// A success with this result.
    pub fn succeeded(result: Value) -> Self {
        Self {
            result: Some(result),
            ..Self::default()
        }
    }

    /// A failure with this error (remembered and replayed).
    pub fn failed(error: impl Into<String>) -> Self {
        Self {
            error: Some(error.into()),
            ..Self::default()
        }
    }

    /// Sets the JSON result.
    pub fn with_result(mut self, result: Value) -> Self {
        self.result = Some(result);
        self
    }

    /// Sets the opaque payload.
    pub fn with_payload(mut self, payload: impl Into<Bytes>) -> Self {
        self.payload = Some(payload.into());
        self
    }

    /// The status a record takes with this outcome: `Failed` when `error` is set,
    /// otherwise `Completed`.
    pub fn status(&self) -> OperationStatus {
        if self.error.is_some() {
            OperationStatus::Failed
        } else {
            OperationStatus::Completed
        }
    }
}
