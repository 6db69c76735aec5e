//! Saga state and journal: insert-if-absent, fenced compare-and-set, history, recovery
//! index.

use std::time::Duration;

use async_trait::async_trait;
use bgops_core::{SagaHistoryEntry, SagaStatus, SagaWorkflow};

use crate::StorageResult;

/// The answer of [`SagaStore::create_saga`].
#[derive(Debug, Clone, PartialEq)]
pub enum CreateSaga {
    /// The saga was stored.
    Created(SagaWorkflow),
    /// A saga with the same id, or the same tenant and idempotency key, already existed;
    /// it is returned unchanged.
    Existing(SagaWorkflow),
}

impl CreateSaga {
    /// The saga, created or existing.
    pub fn into_saga(self) -> SagaWorkflow {
        match self {
            Self::Created(s) | Self::Existing(s) => s,
        }
    }
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
    /// one with the same tenant and key exists; then that one is returned.
    async fn create_saga(&self, saga: SagaWorkflow) -> StorageResult<CreateSaga>;

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
    /// same atomic step. The lease stored is `saga.lease` (set it to `None` to release).
    /// Returns the new version (`saga.version + 1`): the saga as stored is exactly `saga`
    /// with that version, so the caller keeps its own copy instead of receiving one back
    /// (saves happen at every step transition; a returned copy would cost a clone or a
    /// read-back each time).
    ///
    /// # Errors
    /// [`StorageError::LeaseLost`](crate::StorageError::LeaseLost) when the fence differs
    /// (another executor took over), [`StorageError::VersionConflict`](crate::StorageError::VersionConflict)
    /// when only the version differs.
    async fn save_saga(
        &self,
        saga: &SagaWorkflow,
        fence: u64,
        history: &[SagaHistoryEntry],
    ) -> StorageResult<u64>;

    /// Appends one history entry (unfenced; for notes outside execution).
    async fn append_saga_history(
        &self,
        saga_id: &str,
        entry: &SagaHistoryEntry,
    ) -> StorageResult<()>;

    /// The saga's history, oldest first.
    async fn get_saga_history(&self, saga_id: &str) -> StorageResult<Vec<SagaHistoryEntry>>;

    /// Sagas matching `filter`, newest first, through an index (never a full scan).
    async fn list_sagas(&self, filter: &SagaFilter) -> StorageResult<Vec<SagaWorkflow>>;

    /// Ids of up to `limit` sagas that are `Running` or `Compensating` and whose executor
    /// lease has expired (or that have none): the ones a recoverer should resume.
    async fn list_recoverable_sagas(&self, limit: usize) -> StorageResult<Vec<String>>;

    /// Deletes the saga, its history and its index entries; `true` if it existed.
    async fn delete_saga(&self, saga_id: &str) -> StorageResult<bool>;
}
