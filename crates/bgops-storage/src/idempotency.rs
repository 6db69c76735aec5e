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
}

impl BeginRequest {
    /// A request with the default TTL (24 h) and lease (30 s).
    pub fn new(
        tenant_id: impl Into<String>,
        key: impl Into<String>,
        operation_type: impl Into<String>,
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

/// The one answer `begin` gives.
///
/// Records are shared (`Arc`), not copied: a backend that keeps records in memory hands
/// out its own, and readers that only inspect a record pay no deep copy.
#[derive(Debug, Clone, PartialEq)]
pub enum BeginOutcome {
    /// No live record existed (or the previous holder's lease ran out): the caller holds
    /// the claim and must run the operation, then `complete` or `release` with `token`.
    Started {
        /// The lease token; only it may complete, release or renew.
        token: String,
        /// The record as created (status `InProgress`).
        record: Arc<IdempotencyRecord>,
    },
    /// Another caller holds a live claim with the same fingerprint: do not run.
    InProgress(Arc<IdempotencyRecord>),
    /// The operation already has an outcome (`Completed` or `Failed`): replay it.
    Completed(Arc<IdempotencyRecord>),
    /// The key is in use with another fingerprint.
    Mismatch(Arc<IdempotencyRecord>),
}

/// Atomic idempotency records, addressed by tenant and key.
///
/// Every method that changes state is atomic in the backend: under any number of
/// concurrent `begin`s on one key exactly one gets [`BeginOutcome::Started`].
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Atomically creates the record, or reports the live one. See [`BeginOutcome`].
    async fn begin(&self, request: BeginRequest) -> StorageResult<BeginOutcome>;

    /// Records the outcome; succeeds only for the current token. The record then lives
    /// until its TTL (counted from creation).
    ///
    /// # Errors
    /// [`StorageError::NotFound`](crate::StorageError::NotFound) when there is no live
    /// record, [`StorageError::LeaseLost`](crate::StorageError::LeaseLost) when `token`
    /// is not the current claim.
    async fn complete(
        &self,
        tenant_id: &str,
        key: &str,
        token: &str,
        outcome: OperationOutcome,
    ) -> StorageResult<Arc<IdempotencyRecord>>;

    /// Deletes an in-flight claim so that a retry can run the operation again; only for
    /// the current token.
    async fn release(&self, tenant_id: &str, key: &str, token: &str) -> StorageResult<()>;

    /// Extends the current claim's lease to `lease` from now; only for the current token.
    /// Returns the new lease expiry.
    async fn renew(
        &self,
        tenant_id: &str,
        key: &str,
        token: &str,
        lease: Duration,
    ) -> StorageResult<OffsetDateTime>;

    /// The live record, if any (expired records are not returned).
    async fn get_idempotency(
        &self,
        tenant_id: &str,
        key: &str,
    ) -> StorageResult<Option<Arc<IdempotencyRecord>>>;

    /// Deletes the record; `true` if one existed.
    async fn delete_idempotency(&self, tenant_id: &str, key: &str) -> StorageResult<bool>;

    /// Removes up to `limit` expired records (and abandoned in-flight claims); returns how
    /// many were removed.
    async fn purge_expired(&self, limit: usize) -> StorageResult<u64>;
}
