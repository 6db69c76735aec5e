//! The seed's idempotency API on the manager: names and arguments of the seed, every call
//! made by the one engine (`bgops-idempotency`); no protocol logic here.

use std::sync::Arc;
use std::time::Duration;

use bgops_core::{IdempotencyRecord, OperationOutcome};
use bgops_idempotency::{Claim, Completion, KeyRequest, KeyStatus};
use serde::Serialize;
use serde_json::Value;

use super::BackgroundOperationsManager;
use crate::Error;

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
    /// parameters that are not JSON; [`Error::Idempotency`] when the store fails
    /// (classified: unavailable, corrupt, other).
    pub async fn create_idempotency_key<P: Serialize + ?Sized>(
        &self,
        tenant_id: &str,
        user_id: Option<&str>,
        operation_type: &str,
        key: Option<&str>,
        parameters: Option<&P>,
        ttl: Option<Duration>,
    ) -> Result<KeyStatus, Error> {
        let mut request =
            KeyRequest::for_operation(tenant_id, user_id, operation_type, key, parameters)?;
        request.ttl = ttl;
        Ok(self.inner.engine.begin(request).await?)
    }

    /// The live record of `key` under `tenant_id`, if any (the seed's
    /// `check_idempotency`, scoped by tenant so one tenant never sees another's record).
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad tenant or key, [`Error::Idempotency`] when the store
    /// fails.
    pub async fn check_idempotency(
        &self,
        tenant_id: &str,
        key: &str,
    ) -> Result<Option<Arc<IdempotencyRecord>>, Error> {
        Ok(self.inner.engine.get(tenant_id, key).await?)
    }

    /// Records the outcome of a claimed operation: `error` set means it failed (the failure
    /// is remembered and replayed, as in the seed), otherwise it succeeded with `result`.
    ///
    /// The effect happened, so a transient store error does not lose the outcome: it is
    /// retried in the background (the claim's lease kept alive) until stored, and the
    /// answer is [`Completion::Pending`].
    ///
    /// # Errors
    /// [`Error::Idempotency`] with `LeaseLost` when the claim is no longer current (its
    /// lease ran out and another caller took over). A record that vanished (its TTL
    /// passed, or the store lost it) is retried in the background like a transient error
    /// ([`Completion::Pending`]).
    pub async fn complete_idempotent_operation(
        &self,
        claim: &Claim,
        result: Option<Value>,
        error: Option<String>,
    ) -> Result<Completion, Error> {
        let outcome = OperationOutcome {
            result,
            error,
            payload: None,
        };
        Ok(self.inner.engine.complete(claim, outcome).await?)
    }

    /// Gives a claim back without an outcome, so a retry may run the operation again (use
    /// it when the operation failed in a way that must not be remembered).
    ///
    /// # Errors
    /// [`Error::Idempotency`] with `LeaseLost` when the claim is no longer current.
    pub async fn release_idempotency_key(&self, claim: &Claim) -> Result<(), Error> {
        Ok(self.inner.engine.release(claim).await?)
    }

    /// Runs `operation` at most once for these inputs: derives the key, claims it, runs the
    /// operation (in its own task: dropping this future does not cancel it), keeps the
    /// claim's lease alive while it runs, stores its result and returns it; a later call
    /// with the same inputs returns the stored result without running anything.
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
        Fut: Future<Output = Result<Value, E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let request =
            KeyRequest::for_operation(tenant_id, user_id, operation_type, None, Some(parameters))?;
        self.inner
            .engine
            .run_once(request, operation)
            .await?
            .map_err(|e| Error::Operation(e.to_string()))
    }
}
