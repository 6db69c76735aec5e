//! [`IdempotencyEngine`]: the one driver of an [`IdempotencyStore`]'s claim protocol.

use std::sync::Arc;
use std::time::Duration;

use bgops_core::id::{self, SharedIds};
use bgops_core::{Backoff, IdempotencyRecord, OperationOutcome, SharedMetrics};
use bgops_storage::keepalive::{Kept, OnLost, keep_alive};
use bgops_storage::{BeginOutcome, BeginRequest, Completed, DEFAULT_LEASE, DEFAULT_TTL};
use bgops_storage::{IdempotencyStore, StorageError};
use time::OffsetDateTime;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::claim::{Claim, KeyStatus};
use crate::error::{IdempotencyError, IdempotencyResult};
use crate::request::KeyRequest;

/// The idempotency engine: claims keys, keeps their leases alive while work runs,
/// records outcomes so that an effect that happened is never forgotten, and counts
/// what it does through one set of metrics hooks. The HTTP middleware and the manager
/// both drive the store through it; nothing else calls `begin`, `complete`, `release` or
/// `renew`.
///
/// Cheap to clone (one `Arc`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), bgops_idempotency::IdempotencyError> {
/// use std::sync::Arc;
/// use bgops_idempotency::{IdempotencyEngine, KeyRequest, KeyStatus};
/// use bgops_core::OperationOutcome;
/// use serde_json::json;
///
/// let engine = IdempotencyEngine::builder(Arc::new(bgops_memory::MemoryStorage::new())).build();
/// let request = KeyRequest::new("tenant1", "order-42", "create_order");
/// let KeyStatus::Created(claim) = engine.begin(request.clone()).await? else { unreachable!() };
/// engine.complete(&claim, OperationOutcome::succeeded(json!({"id": 42}))).await?;
/// let KeyStatus::Completed(record) = engine.begin(request).await? else { unreachable!() };
/// assert_eq!(record.result, Some(json!({"id": 42})));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct IdempotencyEngine {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Arc<dyn IdempotencyStore>,
    pub(crate) ttl: Duration,
    pub(crate) lease: Duration,
    pub(crate) metrics: SharedMetrics,
    pub(crate) ids: SharedIds,
    pub(crate) completion_backoff: Backoff,
}

impl std::fmt::Debug for IdempotencyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdempotencyEngine")
            .field("ttl", &self.inner.ttl)
            .field("lease", &self.inner.lease)
            .field("completion_backoff", &self.inner.completion_backoff)
            .finish_non_exhaustive()
    }
}

/// Builds an [`IdempotencyEngine`].
#[must_use]
pub struct EngineBuilder {
    store: Arc<dyn IdempotencyStore>,
    ttl: Duration,
    lease: Duration,
    metrics: SharedMetrics,
    ids: SharedIds,
    completion_backoff: Backoff,
}

impl std::fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("ttl", &self.ttl)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

/// The default wait between completion attempts while the store is unreachable: 50 ms
/// doubling up to 1 s (and never more than a quarter of the lease: once the store is
/// back, the outcome must be stored before a duplicate told to retry later comes back).
pub fn default_completion_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(50), Duration::from_secs(1))
}

impl EngineBuilder {
    /// How long records are kept (default 24 h).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The in-flight lease (default 30 s), renewed every third of it while work runs.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Metrics hooks (default: none).
    pub fn metrics(mut self, metrics: SharedMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The lease-token generator (default: random; tests inject predictable ones).
    pub fn ids(mut self, ids: SharedIds) -> Self {
        self.ids = ids;
        self
    }

    /// The wait between completion attempts while the store is unreachable (default
    /// [`default_completion_backoff`]).
    pub fn completion_backoff(mut self, backoff: Backoff) -> Self {
        self.completion_backoff = backoff;
        self
    }

    /// The engine.
    pub fn build(self) -> IdempotencyEngine {
        IdempotencyEngine {
            inner: Arc::new(Inner {
                store: self.store,
                ttl: self.ttl,
                lease: self.lease,
                metrics: self.metrics,
                ids: self.ids,
                completion_backoff: self.completion_backoff,
            }),
        }
    }
}

/// What [`IdempotencyEngine::complete`] achieved.
#[derive(Debug)]
pub enum Completion {
    /// The outcome is stored.
    Stored(Completed),
    /// The store could not be reached; the outcome is being retried in the background
    /// (the claim's lease kept alive meanwhile) until it is stored or the record's TTL
    /// makes it moot. Duplicates see the key in progress meanwhile.
    Pending(PendingCompletion),
}

/// A completion retried in the background. Dropping it does not stop the retries.
#[derive(Debug)]
pub struct PendingCompletion {
    handle: JoinHandle<IdempotencyResult<Completed>>,
}

impl PendingCompletion {
    /// Waits until the outcome is stored (or the retries end).
    ///
    /// # Errors
    /// The last store error when the retries ended without storing (the record's TTL
    /// passed, or the claim was lost), [`IdempotencyError::Aborted`] when the runtime
    /// shut down first.
    pub async fn wait(self) -> IdempotencyResult<Completed> {
        self.handle.await.unwrap_or(Err(IdempotencyError::Aborted))
    }
}

/// The store's request for `claim` (its token, its lease capped by `ttl`).
fn begin_request(
    claim: &Claim,
    parameters: Option<serde_json::Value>,
    ttl: Duration,
) -> BeginRequest {
    BeginRequest {
        tenant_id: claim.tenant_id.clone(),
        key: claim.key.clone(),
        user_id: claim.user_id.clone(),
        operation_type: claim.operation_type.clone(),
        fingerprint: claim.fingerprint.clone(),
        parameters,
        ttl,
        lease: claim.lease.min(ttl),
        token: claim.token.clone(),
    }
}

/// The store no longer has the record: deleted, expired, or lost by a restart.
fn is_vanished(error: &StorageError) -> bool {
    matches!(error, StorageError::NotFound { .. })
}

impl IdempotencyEngine {
    /// A builder over `store`.
    pub fn builder(store: Arc<dyn IdempotencyStore>) -> EngineBuilder {
        EngineBuilder {
            store,
            ttl: DEFAULT_TTL,
            lease: DEFAULT_LEASE,
            metrics: bgops_core::metrics::noop(),
            ids: id::random(),
            completion_backoff: default_completion_backoff(),
        }
    }

    /// The store (for reads: `get_idempotency`, `delete_idempotency`, `purge_expired`).
    pub fn store(&self) -> &Arc<dyn IdempotencyStore> {
        &self.inner.store
    }

    /// The default TTL.
    pub fn ttl(&self) -> Duration {
        self.inner.ttl
    }

    /// The default lease.
    pub fn lease(&self) -> Duration {
        self.inner.lease
    }

    /// The metrics hooks.
    pub fn metrics(&self) -> &SharedMetrics {
        &self.inner.metrics
    }

    /// Claims the key atomically: exactly one caller among any number of concurrent ones
    /// gets [`KeyStatus::Created`].
    ///
    /// When the store cannot be reached, the claim this call may have created (its
    /// request may have reached the store before the connection broke) is released in
    /// the background once the store answers: the token is this caller's, nobody else
    /// can hold it, so a lost `begin` never blocks the key for a whole lease.
    ///
    /// # Errors
    /// [`IdempotencyError::Invalid`] for bad input, [`IdempotencyError::Unavailable`]
    /// when the store is unreachable, [`IdempotencyError::Corrupt`] naming a record that
    /// cannot be read, [`IdempotencyError::Storage`] for any other backend failure.
    pub async fn begin(&self, request: KeyRequest) -> IdempotencyResult<KeyStatus> {
        let inner = &self.inner;
        let ttl = request.ttl.unwrap_or(inner.ttl);
        let lease = request.lease.unwrap_or(inner.lease).min(ttl);
        let KeyRequest {
            tenant_id,
            key,
            user_id,
            operation_type,
            fingerprint,
            parameters,
            ..
        } = request;
        // The claim this caller will hold if the store says Started; the store's times
        // are filled in from its answer.
        let mut claim = Claim {
            tenant_id,
            key,
            token: inner.ids.token(),
            operation_type,
            created_at: OffsetDateTime::UNIX_EPOCH,
            expires_at: OffsetDateTime::UNIX_EPOCH,
            lease_expires_at: OffsetDateTime::UNIX_EPOCH,
            lease,
            user_id,
            fingerprint,
        };
        let begin = begin_request(&claim, parameters, ttl);
        begin.validate()?;
        let outcome = match inner.store.begin(begin).await {
            Ok(outcome) => outcome,
            Err(error) => {
                inner.metrics.storage_error("idempotency_begin");
                if error.is_transient() {
                    self.release_lost_begin(claim);
                }
                return Err(error.into());
            }
        };
        let metrics = &inner.metrics;
        Ok(match outcome {
            BeginOutcome::Started(claimed) => {
                metrics.idempotency_key_created(&claim.operation_type, &claim.tenant_id);
                claim.created_at = claimed.created_at;
                claim.expires_at = claimed.expires_at;
                claim.lease_expires_at = claimed.lease_expires_at;
                KeyStatus::Created(claim)
            }
            BeginOutcome::InProgress { lease_expires_at } => {
                metrics.idempotency_in_flight(&claim.operation_type, &claim.tenant_id);
                KeyStatus::InProgress {
                    key: claim.key,
                    lease_expires_at,
                }
            }
            BeginOutcome::Completed(record) => {
                metrics.idempotency_replayed(&claim.operation_type, &claim.tenant_id);
                KeyStatus::Completed(record)
            }
            BeginOutcome::Mismatch => KeyStatus::Mismatch { key: claim.key },
        })
    }

    /// Releases, in the background, the claim a `begin` that failed transiently may have
    /// made. Stops at the first definite answer (released, nothing there, someone else's)
    /// or after one lease, when such a claim could be taken over anyway.
    fn release_lost_begin(&self, claim: Claim) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let inner = Arc::clone(&self.inner);
        runtime.spawn(async move {
            let deadline = Instant::now() + claim.lease;
            let mut attempt = 0;
            loop {
                let released = inner
                    .store
                    .release(&claim.tenant_id, &claim.key, &claim.token)
                    .await;
                match released {
                    Ok(()) => {
                        tracing::info!(record = %claim.record_name(), "released the claim of a begin whose answer was lost");
                        return;
                    }
                    Err(error) if error.is_transient() && Instant::now() < deadline => {
                        attempt += 1;
                        tokio::time::sleep(inner.completion_backoff.delay(attempt)).await;
                    }
                    // NotFound: the lost begin never landed; LeaseLost: not ours.
                    Err(_) => return,
                }
            }
        });
    }

    /// The live record of `key` under `tenant_id`, if any.
    ///
    /// # Errors
    /// As [`begin`](Self::begin), classified the same way.
    pub async fn get(
        &self,
        tenant_id: &str,
        key: &str,
    ) -> IdempotencyResult<Option<Arc<IdempotencyRecord>>> {
        bgops_storage::validate_address(tenant_id, key)?;
        Ok(self.inner.store.get_idempotency(tenant_id, key).await?)
    }

    /// Records the outcome of a claimed operation. The effect happened, so its outcome is
    /// never given up on a transient error: the first attempt is made here, and if the
    /// store cannot be reached the outcome is retried in the background with backoff
    /// (keeping the claim's lease alive meanwhile, so no duplicate runs it again) until it
    /// is stored or the record's TTL makes it moot ([`Completion::Pending`]).
    ///
    /// A record the store no longer has (`NotFound`: lost by a restart without
    /// persistence) is made again under the claim's token in the background, so the
    /// outcome is kept — never over another caller's claim.
    ///
    /// Repeating `complete` with the same claim is harmless (the store answers with the
    /// first receipt).
    ///
    /// # Errors
    /// [`IdempotencyError::LeaseLost`] when another caller took over, or another
    /// non-transient store error (corrupt record, backend failure).
    pub async fn complete(
        &self,
        claim: &Claim,
        outcome: OperationOutcome,
    ) -> IdempotencyResult<Completion> {
        let failed = outcome.error.is_some();
        // Kept for a retry: the store call consumes the outcome (payloads are shared
        // bytes; only a JSON result is copied).
        let retry = outcome.clone();
        let first = self
            .inner
            .store
            .complete(&claim.tenant_id, &claim.key, &claim.token, outcome)
            .await;
        match first {
            Ok(completed) => {
                self.completed(claim, failed);
                Ok(Completion::Stored(completed))
            }
            Err(error) if error.is_transient() || is_vanished(&error) => {
                self.inner.metrics.storage_error("idempotency_complete");
                tracing::warn!(%error, record = %claim.record_name(), "storing an outcome failed; retrying in the background while holding the claim");
                let engine = self.clone();
                let claim = claim.clone();
                let handle = tokio::spawn(async move {
                    engine.complete_until_stored(&claim, retry, failed).await
                });
                Ok(Completion::Pending(PendingCompletion { handle }))
            }
            Err(error) => {
                self.inner.metrics.storage_error("idempotency_complete");
                Err(error.into())
            }
        }
    }

    fn completed(&self, claim: &Claim, failed: bool) {
        self.inner
            .metrics
            .idempotency_completed(&claim.operation_type, &claim.tenant_id, failed);
    }

    /// The retry loop behind [`Completion::Pending`]: backoff between attempts, the lease
    /// renewed meanwhile, until stored, a definite refusal, or the record's TTL.
    async fn complete_until_stored(
        &self,
        claim: &Claim,
        outcome: OperationOutcome,
        failed: bool,
    ) -> IdempotencyResult<Completed> {
        let remaining = (claim.expires_at - OffsetDateTime::now_utc())
            .try_into()
            .unwrap_or(Duration::ZERO);
        let deadline = Instant::now() + remaining;
        let store = &self.inner.store;
        let retries = async {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let wait = self.inner.completion_backoff.delay(attempt);
                tokio::time::sleep(wait.min(claim.lease / 4)).await;
                let done = store
                    .complete(&claim.tenant_id, &claim.key, &claim.token, outcome.clone())
                    .await;
                match done {
                    Ok(completed) => return Ok(completed),
                    Err(error) if error.is_transient() && Instant::now() < deadline => {
                        tracing::debug!(%error, attempt, record = %claim.record_name(), "completion retry failed");
                    }
                    Err(error) if is_vanished(&error) && Instant::now() < deadline => {
                        // The store lost the record (a restart without persistence):
                        // the effect happened, so the record is made again under this
                        // claim's token, unless someone else claimed the key meanwhile.
                        match self.reclaim(claim, deadline).await {
                            Ok(true) => {}
                            // Another caller holds (or completed) the key now.
                            Ok(false) => {
                                return Err(IdempotencyError::LeaseLost {
                                    key: claim.record_name(),
                                });
                            }
                            Err(again) if again.is_transient() => {}
                            Err(again) => return Err(IdempotencyError::from(again)),
                        }
                    }
                    Err(error) => return Err(IdempotencyError::from(error)),
                }
            }
        };
        let result = match self.keep_claim_alive(claim, retries).await {
            Ok(result) | Err((result, _)) => result,
        };
        match &result {
            Ok(_) => {
                tracing::info!(record = %claim.record_name(), "outcome stored after the store came back");
                self.completed(claim, failed);
            }
            Err(error) => {
                self.inner.metrics.storage_error("idempotency_complete");
                tracing::error!(%error, record = %claim.record_name(), "an outcome could not be stored; a retry may run the operation again");
            }
        }
        result
    }

    /// Re-creates a record the store lost, under the claim's own token (a `begin`
    /// repeated with the holder's token answers Started). `false` when another caller
    /// holds or completed the key now.
    async fn reclaim(&self, claim: &Claim, deadline: Instant) -> Result<bool, StorageError> {
        let ttl = deadline.saturating_duration_since(Instant::now());
        if ttl.is_zero() {
            return Ok(false);
        }
        let request = begin_request(claim, None, ttl);
        let started = matches!(
            self.inner.store.begin(request).await?,
            BeginOutcome::Started(_)
        );
        if started {
            tracing::warn!(record = %claim.record_name(), "the store lost an in-flight record; re-created it to store the outcome");
        }
        Ok(started)
    }

    /// Runs `work` here (not detached) while keeping the claim's lease alive: for callers
    /// that drive a claim by hand (`begin`, the work, `complete`). Returns the work's
    /// output, and the loss if the lease was lost on the way (another caller may then
    /// have taken the key over; the work still ran to its end).
    ///
    /// Dropping this future drops the work; the claim is not released (it expires with its
    /// lease). [`spawn_claimed`](Self::spawn_claimed) runs work that must finish even if
    /// its caller goes away.
    pub async fn hold<F: Future>(
        &self,
        claim: &Claim,
        work: F,
    ) -> (F::Output, Option<IdempotencyError>) {
        match self.keep_claim_alive(claim, work).await {
            Ok(out) => (out, None),
            Err((out, lost)) => (out, Some(lost.into())),
        }
    }

    /// Runs `work` while renewing the claim's lease every third of it (the workspace's
    /// one keep-alive, with [`OnLost::Continue`]: an effect that may be happening is
    /// finished, never abandoned). `Err` carries the output and the loss when the lease
    /// was lost on the way.
    pub(crate) async fn keep_claim_alive<F: Future>(
        &self,
        claim: &Claim,
        work: F,
    ) -> Result<F::Output, (F::Output, StorageError)> {
        let store = &self.inner.store;
        let metrics = &self.inner.metrics;
        let renew = || async {
            store
                .renew(&claim.tenant_id, &claim.key, &claim.token, claim.lease)
                .await
                .map(|_| ())
                .inspect_err(|_| metrics.storage_error("idempotency_renew"))
        };
        match keep_alive(work, claim.lease / 3, renew, OnLost::Continue).await {
            Kept::Finished(out) => Ok(out),
            Kept::FinishedAfterLoss(out, lost) => {
                tracing::warn!(error = %lost, record = %claim.record_name(), "idempotency lease lost while the work ran");
                Err((out, lost))
            }
            // OnLost::Continue never cancels.
            Kept::Cancelled(lost) => unreachable!("OnLost::Continue cancelled: {lost}"),
        }
    }

    /// Gives a claim back without an outcome, so a retry may run the operation again. Use
    /// it only when the operation is known not to have had an effect.
    ///
    /// # Errors
    /// [`IdempotencyError::LeaseLost`] when the claim is no longer current,
    /// [`IdempotencyError::NotFound`] when the record is gone, or a store error.
    pub async fn release(&self, claim: &Claim) -> IdempotencyResult<()> {
        self.inner
            .store
            .release(&claim.tenant_id, &claim.key, &claim.token)
            .await
            .map_err(|error| {
                self.inner.metrics.storage_error("idempotency_release");
                tracing::warn!(%error, record = %claim.record_name(), "releasing an idempotency claim failed; it expires with its lease");
                error.into()
            })
    }
}
