//! Saga state and journal: insert-if-absent, fenced compare-and-set, history, recovery
//! index.

use std::time::Duration;

use async_trait::async_trait;
use bgops_core::{SagaEvent, SagaStatus, SagaWorkflow};
use time::OffsetDateTime;

use crate::{StorageResult, Sweep};

/// What a saga write stored: the receipt of [`SagaStore::create_saga`] and
/// [`SagaStore::save_saga`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SagaSaved {
    /// The saga's version now.
    pub version: u64,
    /// The executor lease's expiry as the store set it (by its own clock), `None` when no
    /// lease is held.
    pub lease_expires_at: Option<OffsetDateTime>,
}

/// The answer of [`SagaStore::create_saga`].
// One answer per create, moved once to the caller: boxing the saga would cost an
// allocation on the `Existing` path to save stack bytes nobody keeps.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum CreateSaga {
    /// The saga was stored exactly as given, with this receipt; the caller keeps its own
    /// copy.
    Created(SagaSaved),
    /// A saga with the same id, or the same tenant and idempotency key, already existed;
    /// it is returned unchanged.
    Existing(SagaWorkflow),
}

/// Which sagas [`SagaStore::list_sagas`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SagaFilter {
    /// Only sagas in this status.
    pub status: Option<SagaStatus>,
    /// Only sagas of this tenant.
    pub tenant_id: Option<String>,
    /// At most this many (0 means the backend's default page of 100).
    pub limit: usize,
    /// Skip this many (simple paging).
    pub offset: usize,
}

/// Saga state, journal and executor leases.
#[async_trait]
pub trait SagaStore: Send + Sync {
    /// Stores a new saga unless one with its id exists, or (when `idempotency_key` is set)
    /// one with the same tenant and key exists; then that one is returned. `history` is
    /// stored as its first events.
    ///
    /// When `saga.lease` is set the saga is created already leased (the executor's first
    /// run needs no separate acquire): the store keeps its owner and fence (the first
    /// fence, 1, unless given higher) and sets its expiry to the store's now + `lease`
    /// (the `expires_at` given is ignored; time comes from the store's clock only).
    ///
    /// # Errors
    /// `Invalid` when `saga.lease` is set and `lease` is `None`.
    async fn create_saga(
        &self,
        saga: &SagaWorkflow,
        lease: Option<Duration>,
        history: &[SagaEvent],
    ) -> StorageResult<CreateSaga>;

    /// The saga, if it exists.
    async fn get_saga(&self, saga_id: &str) -> StorageResult<Option<SagaWorkflow>>;

    /// Takes the executor lease for `owner` unless another owner holds a live one. The
    /// stored lease gets a fence one higher than any before on this saga, the version is
    /// incremented, and the updated saga is returned. `None` when a live lease is held by
    /// someone else.
    ///
    /// # Errors
    /// [`StorageError::NotFound`](crate::StorageError::NotFound) when the saga does not
    /// exist.
    async fn acquire_saga_lease(
        &self,
        saga_id: &str,
        owner: &str,
        lease: Duration,
    ) -> StorageResult<Option<SagaWorkflow>>;

    /// Compare-and-set: stores `saga` (with `version + 1`) only if the stored saga's lease
    /// fence equals `fence` and its version equals `saga.version`; appends `history` in the
    /// same atomic step. The lease: `saga.lease = None` releases it; otherwise `renew =
    /// Some(d)` sets its expiry to the store's now + `d`, and `renew = None` keeps the
    /// stored expiry (the `expires_at` in `saga.lease` is ignored: lease times come from
    /// the store's clock only).
    /// Returns the receipt (new version `saga.version + 1`, lease expiry): the saga as
    /// stored is exactly `saga` with those, so the caller keeps its own copy instead of
    /// receiving one back (saves happen at every step transition).
    ///
    /// # Errors
    /// [`StorageError::LeaseLost`](crate::StorageError::LeaseLost) when the fence differs
    /// (another executor took over), [`StorageError::VersionConflict`](crate::StorageError::VersionConflict)
    /// when only the version differs.
    async fn save_saga(
        &self,
        saga: &SagaWorkflow,
        fence: u64,
        history: &[SagaEvent],
        renew: Option<Duration>,
    ) -> StorageResult<SagaSaved>;

    /// The saga's history (its stored events), oldest first.
    async fn get_saga_history(&self, saga_id: &str) -> StorageResult<Vec<SagaEvent>>;

    /// Sagas matching `filter`, newest first, through an index (never a full scan).
    async fn list_sagas(&self, filter: &SagaFilter) -> StorageResult<Vec<SagaWorkflow>>;

    /// Ids of up to `limit` sagas that are `Running` or `Compensating` and whose executor
    /// lease has expired (or that have none): the ones a recoverer should resume.
    async fn list_recoverable_sagas(&self, limit: usize) -> StorageResult<Vec<String>>;

    /// Deletes the saga, its history and its index entries; `true` if it existed.
    async fn delete_saga(&self, saga_id: &str) -> StorageResult<bool>;

    /// Retention: deletes (as [`delete_saga`](Self::delete_saga) does, history and index
    /// entries included) up to `limit` finished sagas — `Completed`, `Compensated` or
    /// `CompensationFailed` — whose last write was more than `older_than` ago, oldest
    /// first. `more` says whether due sagas remain beyond this batch. Sagas that are not
    /// finished are never touched.
    ///
    /// Backends record when each saga was last written while finished by their own clock
    /// (memory, Redis). The default implementation, for a backend that has not done so
    /// yet, pages through [`list_sagas`](Self::list_sagas) by finished status and judges
    /// age by the saga's `updated_at` against the system clock.
    async fn purge_sagas(&self, older_than: Duration, limit: usize) -> StorageResult<Sweep> {
        let cutoff = OffsetDateTime::now_utc() - older_than;
        let mut due = Vec::new();
        let mut more = false;
        'statuses: for status in [
            SagaStatus::Completed,
            SagaStatus::Compensated,
            SagaStatus::CompensationFailed,
        ] {
            let mut offset = 0;
            loop {
                let filter = SagaFilter {
                    status: Some(status),
                    tenant_id: None,
                    limit: 100,
                    offset,
                };
                let page = self.list_sagas(&filter).await?;
                let len = page.len();
                for saga in page {
                    if saga.updated_at < cutoff {
                        if due.len() == limit {
                            more = true;
                            break 'statuses;
                        }
                        due.push(saga.saga_id);
                    }
                }
                if len < 100 {
                    break;
                }
                offset += len;
            }
        }
        let mut done = 0;
        for saga_id in due {
            if self.delete_saga(&saga_id).await? {
                done += 1;
            }
        }
        Ok(Sweep {
            done,
            corrupt: Vec::new(),
            more,
        })
    }
}
