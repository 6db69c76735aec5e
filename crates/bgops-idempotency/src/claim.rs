//! What `begin` answers: a [`Claim`] for the one caller that runs the operation, or why
//! not ([`KeyStatus`]).

use std::sync::Arc;
use std::time::Duration;

use bgops_core::IdempotencyRecord;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The right to run an operation once, held by the one caller that got
/// [`KeyStatus::Created`]. It names the record and carries the lease token; hand it to
/// [`IdempotencyEngine::complete`](crate::IdempotencyEngine::complete) (or `release`,
/// or `spawn_claimed` to run the work detached).
///
/// A claim is plain data (serde): it can be handed to another process (a worker) and
/// completed there by an engine over the same store.
///
/// ```
/// # use bgops_idempotency::Claim;
/// # fn send(claim: &Claim) -> String {
/// let wire = serde_json::to_string(claim).unwrap();
/// # wire }
/// # fn receive(wire: &str) -> Claim {
/// let claim: Claim = serde_json::from_str(wire).unwrap();
/// # claim }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub(crate) tenant_id: String,
    pub(crate) key: String,
    pub(crate) token: String,
    pub(crate) operation_type: String,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) lease_expires_at: OffsetDateTime,
    pub(crate) lease: Duration,
    /// Kept so that a record lost by the store (a restart without persistence) can be
    /// re-created under this claim's token to store the outcome.
    #[serde(default)]
    pub(crate) user_id: Option<String>,
    #[serde(default)]
    pub(crate) fingerprint: Option<String>,
}

impl Claim {
    /// The tenant.
    pub fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    /// The (storage) key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The lease token (opaque; only it may complete, release or renew the claim).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The operation type.
    pub fn operation_type(&self) -> &str {
        &self.operation_type
    }

    /// When the record was created (by the store's clock).
    pub fn created_at(&self) -> OffsetDateTime {
        self.created_at
    }

    /// When the record stops being remembered (creation + TTL).
    pub fn expires_at(&self) -> OffsetDateTime {
        self.expires_at
    }

    /// When the lease ran out as of `begin` (renewals move it; this is the first).
    pub fn lease_expires_at(&self) -> OffsetDateTime {
        self.lease_expires_at
    }

    /// The lease length renewals ask for.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// `tenant/key`, as errors name records.
    pub fn record_name(&self) -> String {
        format!("{}/{}", self.tenant_id, self.key)
    }
}

/// What [`IdempotencyEngine::begin`](crate::IdempotencyEngine::begin) found.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyStatus {
    /// New (or taken over from an abandoned claim): the caller must run the operation,
    /// then complete the claim.
    Created(Claim),
    /// Another caller is running it right now: do not run it.
    InProgress {
        /// The key.
        key: String,
        /// When the holder's lease runs out unless renewed (a hint for `Retry-After`).
        lease_expires_at: OffsetDateTime,
    },
    /// It already ran: its stored outcome (`Completed` or `Failed`), shared, not copied.
    Completed(Arc<IdempotencyRecord>),
    /// The key was used for a different operation or parameters.
    Mismatch {
        /// The key.
        key: String,
    },
}

impl KeyStatus {
    /// The claim, when this caller must run the operation.
    pub fn claim(&self) -> Option<&Claim> {
        match self {
            Self::Created(claim) => Some(claim),
            _ => None,
        }
    }
}
