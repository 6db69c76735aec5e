//! TEMPORARY: a minimal SagaStore used only until `MemoryStorage` implements `SagaStore`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bgops_core::{SagaHistoryEntry, SagaLease, SagaStatus, SagaWorkflow, SharedClock};
use bgops_storage::{CreateSaga, SagaFilter, SagaStore, StorageError, StorageResult};

#[derive(Default)]
struct State {
    sagas: HashMap<String, SagaWorkflow>,
    history: HashMap<String, Vec<SagaHistoryEntry>>,
    keys: HashMap<(String, String), String>,
    fences: HashMap<String, u64>,
}

pub struct FakeStore {
    clock: SharedClock,
    state: Mutex<State>,
}

impl FakeStore {
    pub fn new(clock: SharedClock) -> Self {
        Self { clock, state: Mutex::default() }
    }
}

#[async_trait]
impl SagaStore for FakeStore {
    async fn create_saga(&self, saga: SagaWorkflow) -> StorageResult<CreateSaga> {
        let mut s = self.state.lock().unwrap();
        if let Some(existing) = s.sagas.get(&saga.saga_id) {
            return Ok(CreateSaga::Existing(existing.clone()));
        }
        if let Some(key) = &saga.idempotency_key {
            if let Some(id) = s.keys.get(&(saga.tenant_id.clone(), key.clone())) {
                return Ok(CreateSaga::Existing(s.sagas[id].clone()));
            }
            s.keys.insert((saga.tenant_id.clone(), key.clone()), saga.saga_id.clone());
        }
        s.sagas.insert(saga.saga_id.clone(), saga.clone());
        Ok(CreateSaga::Created(saga))
    }

    async fn get_saga(&self, saga_id: &str) -> StorageResult<Option<SagaWorkflow>> {
        Ok(self.state.lock().unwrap().sagas.get(saga_id).cloned())
    }

    async fn acquire_saga_lease(
        &self,
        saga_id: &str,
        owner: &str,
        lease: Duration,
    ) -> StorageResult<Option<SagaWorkflow>> {
        let now = self.clock.now();
        let mut s = self.state.lock().unwrap();
        let fence = s.fences.get(saga_id).copied().unwrap_or(0) + 1;
        let saga = s
            .sagas
            .get_mut(saga_id)
            .ok_or(StorageError::NotFound { kind: "saga", id: saga_id.into() })?;
        if let Some(l) = &saga.lease {
            if l.owner != owner && l.expires_at > now {
                return Ok(None);
            }
        }
        saga.lease = Some(SagaLease { owner: owner.into(), fence, expires_at: now + lease });
        saga.version += 1;
        let out = saga.clone();
        s.fences.insert(saga_id.into(), fence);
        Ok(Some(out))
    }

    async fn save_saga(
        &self,
        saga: &SagaWorkflow,
        fence: u64,
        history: &[SagaHistoryEntry],
    ) -> StorageResult<SagaWorkflow> {
        let mut s = self.state.lock().unwrap();
        let stored = s
            .sagas
            .get_mut(&saga.saga_id)
            .ok_or(StorageError::NotFound { kind: "saga", id: saga.saga_id.clone() })?;
        if stored.lease.as_ref().map(|l| l.fence) != Some(fence) {
            return Err(StorageError::LeaseLost { kind: "saga", id: saga.saga_id.clone() });
        }
        if stored.version != saga.version {
            return Err(StorageError::VersionConflict {
                kind: "saga",
                id: saga.saga_id.clone(),
                expected: saga.version,
                found: stored.version,
            });
        }
        let mut next = saga.clone();
        next.version += 1;
        *stored = next.clone();
        s.history.entry(saga.saga_id.clone()).or_default().extend_from_slice(history);
        Ok(next)
    }

    async fn append_saga_history(&self, saga_id: &str, entry: &SagaHistoryEntry) -> StorageResult<()> {
        self.state.lock().unwrap().history.entry(saga_id.into()).or_default().push(entry.clone());
        Ok(())
    }

    async fn get_saga_history(&self, saga_id: &str) -> StorageResult<Vec<SagaHistoryEntry>> {
        Ok(self.state.lock().unwrap().history.get(saga_id).cloned().unwrap_or_default())
    }

    async fn list_sagas(&self, filter: &SagaFilter) -> StorageResult<Vec<SagaWorkflow>> {
        let s = self.state.lock().unwrap();
        Ok(s.sagas.values().filter(|x| filter.status.is_none_or(|st| st == x.status)).cloned().collect())
    }

    async fn list_recoverable_sagas(&self, limit: usize) -> StorageResult<Vec<String>> {
        let now = self.clock.now();
        let s = self.state.lock().unwrap();
        Ok(s.sagas
            .values()
            .filter(|x| matches!(x.status, SagaStatus::Running | SagaStatus::Compensating))
            .filter(|x| x.lease.as_ref().is_none_or(|l| l.expires_at <= now))
            .take(limit)
            .map(|x| x.saga_id.clone())
            .collect())
    }

    async fn delete_saga(&self, saga_id: &str) -> StorageResult<bool> {
        Ok(self.state.lock().unwrap().sagas.remove(saga_id).is_some())
    }
}
