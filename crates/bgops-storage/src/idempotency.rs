//! Atomic idempotency records: `begin` / `complete` / `release` under a lease token.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bgops_core::{CoreError, IdempotencyRecord, OperationOutcome, validate};
use serde_json::Value;
use time::OffsetDateTime;

use crate::{StorageError, StorageResult};

/// Default retention of an idempotency record.
pub const DEFAULT_TTL: Duration = Duration::from_secs(86_400);
/// Default in-flight lease.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// What `begin` needs: the record's address (tenant + key) and how to create it.
#[derive(Debug, Clone, PartialEq)]
pub struct BeginRequest {
    /// Tenant scope; part of the storage address.
    pub tenant_id: String,
    /// The idempotency key.
    pub key: String,
    /// The user, if any.
    pub user_id: Option<String>,
    /// Kind of operation.
    pub operation_type: String,
    /// Request fingerprint; a later `begin` with another fingerprint is a mismatch.
    /// `None` matches any fingerprint.
    pub fingerprint: Option<String>,
    /// Parameters stored with the record.
    pub parameters: Option<Value>,
    /// How long the record (and its outcome) is kept.
    pub ttl: Duration,
    /// How long the claim lives before another caller may take over.
    pub lease: Duration,
    /// The lease token this caller will hold if it gets the claim, made by the caller
    /// (the engine's id generator). A `begin` repeated with the token that currently
    /// holds the claim answers `Started` again, so a `begin` whose answer was lost (the
    /// connection broke after the store applied it) can be repeated, or its claim
    /// released, instead of blocking the key for a whole lease.
    pub token: String,
}

impl BeginRequest {
    /// A request with the default TTL (24 h) and lease (30 s), claiming with `token`.
    pub fn new(
        tenant_id: impl Into<String>,
        key: impl Into<String>,
        operation_type: impl Into<String>,
        token: impl Into<String>,
    ) -> Self {
        Self {
            tenant_id: tenant_id.into(),
            key: key.into(),
            user_id: None,
            operation_type: operation_type.into(),
            fingerprint: None,
            parameters: None,
            ttl: DEFAULT_TTL,
            lease: DEFAULT_LEASE,
            token: token.into(),
        }
    }

    /// Sets the user.
    pub fn user_id(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }

    /// Sets the fingerprint.
    pub fn fingerprint(mut self, fingerprint: impl Into<String>) -> Self {
        self.fingerprint = Some(fingerprint.into());
        self
    }

    /// Sets the parameters.
    pub fn parameters(mut self, parameters: Value) -> Self {
        self.parameters = Some(parameters);
        self
    }

    /// Sets the retention TTL.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets the in-flight lease.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Checks every field; backends call this first.
    ///
    /// # Errors
    /// A [`CoreError`] naming the bad field: empty tenant or operation type, key over
    /// 255 bytes or not visible ASCII, zero or huge TTL or lease.
    pub fn validate(&self) -> Result<(), CoreError> {
        validate::name("tenant_id", &self.tenant_id)?;
        validate::name("operation_type", &self.operation_type)?;
        validate::idempotency_key(&self.key)?;
        validate::duration("ttl", self.ttl)?;
        validate::duration("lease", self.lease)?;
        validate::token(&self.token)?;
        Ok(())
    }
}

/// Validates a record's address (tenant and key), as every backend does before any store
/// access.
///
/// # Errors
/// A [`CoreError`] naming the bad field.
pub fn validate_address(tenant_id: &str, key: &str) -> Result<(), CoreError> {
    validate::name("tenant_id", tenant_id)?;
    validate::idempotency_key(key)
}

/// `NotFound` for the idempotency record at (tenant, key).
pub fn record_not_found(tenant_id: &str, key: &str) -> StorageError {
    StorageError::NotFound {
        kind: KIND,
        id: format!("{tenant_id}/{key}"),
    }
}

/// `LeaseLost` for the idempotency record at (tenant, key).
pub fn record_lease_lost(tenant_id: &str, key: &str) -> StorageError {
    StorageError::LeaseLost {
        kind: KIND,
        id: format!("{tenant_id}/{key}"),
    }
}

/// The `kind` of idempotency errors.
const KIND: &str = "idempotency";

/// What the caller of a `Started` claim needs next: its token and the times the store
/// set (by the store's own clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// The lease token (the request's); only it may complete, release or renew.
    pub token: String,
    /// When the record was created (an earlier time when this `begin` took over an
    /// abandoned claim or repeated a lost `begin`).
    pub created_at: OffsetDateTime,
    /// When the record stops being remembered (creation + TTL).
    pub expires_at: OffsetDateTime,
    /// When this claim's lease runs out unless renewed.
    pub lease_expires_at: OffsetDateTime,
}

/// The one answer `begin` gives.
///
/// Only `Completed` carries a record (its outcome is what the caller replays); the
/// others carry what the caller needs and nothing more. Records are shared (`Arc`), not
/// copied.
#[derive(Debug, Clone, PartialEq)]
pub enum BeginOutcome {
    /// No live record existed, the previous holder's lease ran out, or this token already
    /// holds the claim: the caller holds the claim and must run the operation, then
    /// `complete` (or `release`, if it knows the operation had no effect).
    Started(Claimed),
    /// Another caller holds a live claim with the same fingerprint: do not run.
    InProgress {
        /// When the holder's lease runs out unless renewed (a hint for `Retry-After`).
        lease_expires_at: OffsetDateTime,
    },
    /// The operation already has an outcome (`Completed` or `Failed`): replay it.
    Completed(Arc<IdempotencyRecord>),
    /// The key is in use with another fingerprint.
    Mismatch,
}

/// What `complete` stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completed {
    /// When the outcome was recorded (the first time, for a repeated `complete`).
    pub completed_at: OffsetDateTime,
    /// When the record stops being remembered (creation + TTL).
    pub expires_at: OffsetDateTime,
}

/// What one bounded batch of a cleanup did; cleanup loops call again while `more`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Entries removed (or, for expired task leases, returned to the queue).
    pub done: u64,
    /// Entries that could not be read and were left in place, by storage key; they are
    /// reported once per batch and do not stop the sweep.
    pub corrupt: Vec<String>,
    /// Whether due entries remain beyond this batch.
    pub more: bool,
}

/// Atomic idempotency records, addressed by tenant and key.
///
/// Every method that changes state is atomic in the backend: under any number of
/// concurrent `begin`s on one key exactly one gets [`BeginOutcome::Started`]. Times come
/// from the store's clock only.
///
/// The late-completion contract (semantics §2): `complete` succeeds for the current token
/// even after its lease ran out, as long as nobody took over; an abandoned in-flight
/// record is kept until its TTL, so only a takeover (a later `begin`, which fences the
/// old token out) lets a retry run the operation again, never a vanished record.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Atomically creates the record, or reports the live one. See [`BeginOutcome`].
    async fn begin(&self, request: BeginRequest) -> StorageResult<BeginOutcome>;

    /// Records the outcome (its payload bytes too); succeeds for the current token, even
    /// after its lease ran out as long as nobody took over. Repeating `complete` with the
    /// token that completed the record succeeds again with the first receipt and changes
    /// nothing (a completion whose answer was lost can be retried). The record then lives
    /// until its TTL (counted from creation).
    ///
    /// # Errors
    /// [`StorageError::NotFound`](crate::StorageError::NotFound) when there is no record
    /// (deleted, or its TTL passed), [`StorageError::LeaseLost`](crate::StorageError::LeaseLost)
    /// when another token holds or completed it.
    async fn complete(
        &self,
        tenant_id: &str,
        key: &str,
        token: &str,
        outcome: OperationOutcome,
    ) -> StorageResult<Completed>;

    /// Deletes an in-flight claim so that a retry can run the operation again; only for
    /// the current token. Use it only when the operation is known not to have had an
    /// effect.
    ///
    /// # Errors
    /// `NotFound` when there is no record, `LeaseLost` when another token holds it or it
    /// is completed.
    async fn release(&self, tenant_id: &str, key: &str, token: &str) -> StorageResult<()>;

    /// Extends the current claim's lease to `lease` from the store's now; only for the
    /// current token, and never past the record's TTL. Returns the new lease expiry.
    ///
    /// # Errors
    /// `NotFound` when there is no record, `LeaseLost` when another token holds it or it
    /// is completed.
    async fn renew(
        &self,
        tenant_id: &str,
        key: &str,
        token: &str,
        lease: Duration,
    ) -> StorageResult<OffsetDateTime>;

    /// The live record, if any (records past their TTL are not returned).
    async fn get_idempotency(
        &self,
        tenant_id: &str,
        key: &str,
    ) -> StorageResult<Option<Arc<IdempotencyRecord>>>;

    /// Deletes the record; `true` if one existed.
    async fn delete_idempotency(&self, tenant_id: &str, key: &str) -> StorageResult<bool>;

    /// Removes up to `limit` records past their TTL (completed or abandoned in flight).
    /// A record that cannot be read is skipped and named in [`Sweep::corrupt`], never
    /// stopping the batch.
    async fn purge_expired(&self, limit: usize) -> StorageResult<Sweep>;
}
