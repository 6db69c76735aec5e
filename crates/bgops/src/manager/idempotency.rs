//! The seed's idempotency API on the manager, atomic underneath (`begin` / `complete`).

use std::sync::Arc;
use std::time::Duration;

use bgops_core::{IdempotencyRecord, OperationOutcome, validate};
use bgops_storage::{BeginOutcome, BeginRequest};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::BackgroundOperationsManager;
use crate::Error;

/// The right to run an operation once: returned by
/// [`BackgroundOperationsManager::create_idempotency_key`] to the one caller that must run
/// it. Hand it back to [`complete_idempotent_operation`](BackgroundOperationsManager::complete_idempotent_operation)
/// (or [`release_idempotency_key`](BackgroundOperationsManager::release_idempotency_key)).
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    record: Arc<IdempotencyRecord>,
    token: String,
}

impl Claim {
    /// The idempotency key.
    pub fn key(&self) -> &str {
        &self.record.key
    }

    /// The tenant.
    pub fn tenant_id(&self) -> &str {
        &self.record.tenant_id
    }

    /// The record as created (status `InProgress`).
    pub fn record(&self) -> &Arc<IdempotencyRecord> {
        &self.record
    }

    /// The lease token (opaque).
    pub fn token(&self) -> &str {
        &self.token
    }
}

/// What [`BackgroundOperationsManager::create_idempotency_key`] found.
///
/// Records are shared with the store (`Arc`), not copied; each is a snapshot that later
/// state changes leave as it was.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyStatus {
    /// New: the caller must run the operation and then complete the claim.
    Created(Claim),
    /// Another caller is running it right now: do not run it.
    InProgress(Arc<IdempotencyRecord>),
    /// It already ran: here is its stored outcome (`Completed` or `Failed`).
    Completed(Arc<IdempotencyRecord>),
    /// The key was used for a different operation or parameters.
    Mismatch(Arc<IdempotencyRecord>),
}

impl KeyStatus {
    /// The record, whichever the status.
    pub fn record(&self) -> &Arc<IdempotencyRecord> {
        match self {
            Self::Created(claim) => &claim.record,
            Self::InProgress(r) | Self::Completed(r) | Self::Mismatch(r) => r,
        }
    }
}

impl BackgroundOperationsManager {
    /// Creates an idempotency key for an operation, atomically: exactly one caller among
    /// any number of concurrent ones gets [`KeyStatus::Created`].
    ///
    /// `key` is the client's key; `None` derives the deterministic key from tenant, user,
    /// operation type and parameters (compatible with the seed's Python package). The
    /// parameters' fingerprint is stored, so reusing a key with other parameters gives
    /// [`KeyStatus::Mismatch`]. `ttl` defaults to the configured `default_ttl`.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an empty tenant or operation type, a bad key, a zero TTL or
    /// parameters that are not JSON; [`Error::Storage`] when the store fails.
    pub async fn create_idempotency_key<P: Serialize + ?Sized>(
        &self,
        tenant_id: &str,
        user_id: Option<&str>,
        operation_type: &str,
        key: Option<&str>,
        parameters: Option<&P>,
        ttl: Option<Duration>,
    ) -> Result<KeyStatus, Error> {
        let parameters = parameters
            .map(serde_json::to_value)
            .transpose()
            .map_err(bgops_core::CoreError::NotJson)?;
        // The canonical text serves both the derived key and the fingerprint: written once.
        let canonical = parameters.as_ref().map(bgops_core::key::python_json);
        let key = match key {
            Some(k) => k.to_owned(),
            None => bgops_core::key::derive_key_from_json(
                tenant_id,
                user_id,
                operation_type,
                canonical.as_deref().unwrap_or("{}"),
            )?,
        };
        let mut request = BeginRequest::new(tenant_id, key, operation_type)
            .ttl(ttl.unwrap_or(self.inner.config.default_ttl))
            .lease(
                self.inner
                    .config
                    .default_lease
                    .min(ttl.unwrap_or(Duration::MAX)),
            );
        request.fingerprint = Some(fingerprint(operation_type, canonical.as_deref()));
        request.user_id = user_id.map(str::to_owned);
        request.parameters = parameters;
        request.validate()?;
        let metrics = &self.inner.metrics;
        let outcome = self.inner.storage.begin(request).await.inspect_err(|_| {
            metrics.storage_error("begin");
        })?;
        Ok(match outcome {
            BeginOutcome::Started { token, record } => {
                metrics.idempotency_key_created(operation_type, tenant_id);
                KeyStatus::Created(Claim { record, token })
            }
            BeginOutcome::InProgress(r) => {
                metrics.idempotency_in_flight(operation_type, tenant_id);
                KeyStatus::InProgress(r)
            }
            BeginOutcome::Completed(r) => {
                metrics.idempotency_replayed(operation_type, tenant_id);
                KeyStatus::Completed(r)
            }
            BeginOutcome::Mismatch(r) => KeyStatus::Mismatch(r),
        })
    }

    /// The live record of `key` under `tenant_id`, if any (the seed's
    /// `check_idempotency`, scoped by tenant so one tenant never sees another's record).
    ///
    /// # Errors
    /// [`Error::Storage`] when the store fails.
    pub async fn check_idempotency(
        &self,
        tenant_id: &str,
        key: &str,
    ) -> Result<Option<Arc<IdempotencyRecord>>, Error> {
        validate::name("tenant_id", tenant_id)?;
        validate::idempotency_key(key)?;
        Ok(self.inner.storage.get_idempotency(tenant_id, key).await?)
    }

    /// Records the outcome of a claimed operation: `error` set means it failed (the failure
    /// is remembered and replayed, as in the seed), otherwise it succeeded with `result`.
    ///
    /// # Errors
    /// [`Error::Storage`] with `LeaseLost` when the claim is no longer current (its lease
    /// ran out and another caller took over), `NotFound` when the record expired.
    pub async fn complete_idempotent_operation(
        &self,
        claim: &Claim,
        result: Option<Value>,
        error: Option<String>,
    ) -> Result<Arc<IdempotencyRecord>, Error> {
        self.complete_claimed(claim.tenant_id(), claim.key(), &claim.token, result, error)
            .await
    }

    /// [`complete_idempotent_operation`](Self::complete_idempotent_operation) by parts, so
    /// that `run_once` need not keep the claim's in-flight record alive: with no other
    /// holder, a store that keeps records in memory updates its record in place.
    async fn complete_claimed(
        &self,
        tenant_id: &str,
        key: &str,
        token: &str,
        result: Option<Value>,
        error: Option<String>,
    ) -> Result<Arc<IdempotencyRecord>, Error> {
        let failed = error.is_some();
        let outcome = match error {
            Some(error) => OperationOutcome::Failed { error, result },
            None => OperationOutcome::Succeeded(result.unwrap_or(Value::Null)),
        };
        let record = self
            .inner
            .storage
            .complete(tenant_id, key, token, outcome)
            .await?;
        self.inner
            .metrics
            .idempotency_completed(&record.operation_type, &record.tenant_id, failed);
        Ok(record)
    }

    /// Gives a claim back without an outcome, so a retry may run the operation again (use
    /// it when the operation failed in a way that must not be remembered).
    ///
    /// # Errors
    /// [`Error::Storage`] with `LeaseLost` when the claim is no longer current.
    pub async fn release_idempotency_key(&self, claim: &Claim) -> Result<(), Error> {
        Ok(self
            .inner
            .storage
            .release(claim.tenant_id(), claim.key(), &claim.token)
            .await?)
    }

    /// Runs `operation` at most once for these inputs: derives the key, claims it, runs the
    /// operation, stores its result and returns it; a later call with the same inputs
    /// returns the stored result without running anything.
    ///
    /// An `Err` from `operation` releases the claim (nothing is remembered, a retry runs
    /// again) and is returned as [`Error::Operation`].
    ///
    /// # Errors
    /// [`Error::InProgress`] when another caller is running it now, [`Error::Mismatch`]
    /// when the key was used for other inputs, [`Error::StoredFailure`] when the stored
    /// outcome is a failure, plus the errors of
    /// [`create_idempotency_key`](Self::create_idempotency_key).
    pub async fn run_once<P, F, Fut, E>(
        &self,
        tenant_id: &str,
        user_id: Option<&str>,
        operation_type: &str,
        parameters: &P,
        operation: F,
    ) -> Result<Value, Error>
    where
        P: Serialize + ?Sized,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Value, E>>,
        E: std::fmt::Display,
    {
        let status = self
            .create_idempotency_key(
                tenant_id,
                user_id,
                operation_type,
                None,
                Some(parameters),
                None,
            )
            .await?;
        match status {
            KeyStatus::Created(Claim { record, token }) => {
                // Only the key is kept; see `complete_claimed`.
                let key = record.key.clone();
                drop(record);
                match operation().await {
                    Ok(value) => {
                        self.complete_claimed(tenant_id, &key, &token, Some(value.clone()), None)
                            .await?;
                        Ok(value)
                    }
                    Err(e) => {
                        let released = self.inner.storage.release(tenant_id, &key, &token).await;
                        if let Err(release) = released {
                            tracing::warn!(error = %release, "could not release idempotency claim");
                        }
                        Err(Error::Operation(e.to_string()))
                    }
                }
            }
            // The record is shared with the store: only the fields returned are copied.
            KeyStatus::Completed(record) => match &record.error {
                Some(error) => Err(Error::StoredFailure(error.clone())),
                None => Ok(record.result.clone().unwrap_or(Value::Null)),
            },
            KeyStatus::InProgress(record) => Err(Error::InProgress {
                key: record.key.clone(),
            }),
            KeyStatus::Mismatch(record) => Err(Error::Mismatch {
                key: record.key.clone(),
            }),
        }
    }
}

/// What identifies "the same request" for a key: operation type and canonical parameters.
fn fingerprint(operation_type: &str, canonical_parameters: Option<&str>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(operation_type.as_bytes());
    hasher.update([0]);
    if let Some(p) = canonical_parameters {
        hasher.update(p.as_bytes());
    }
    hex::encode(hasher.finalize())
}
