//! Shared set-up: a store on a manual clock (wrapped to count writes), engines with tiny
//! backoffs, and a recorder of handler executions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bgops_core::{ManualClock, SagaEvent, SagaWorkflow};
use bgops_memory::MemoryStorage;
use bgops_saga::{Backoff, SagaConfig, SagaEngine};
use bgops_storage::{CreateSaga, SagaFilter, SagaSaved, SagaStore, StorageResult};

pub const LEASE: Duration = Duration::from_secs(10);

pub struct Setup {
    pub clock: ManualClock,
    pub store: Arc<CountingStore>,
}

impl Setup {
    pub fn new() -> Self {
        let clock = ManualClock::new();
        let inner: Arc<dyn SagaStore> =
            Arc::new(MemoryStorage::with_clock(Arc::new(clock.clone())));
        Self {
            clock,
            store: Arc::new(CountingStore {
                inner,
                writes: AtomicU64::new(0),
            }),
        }
    }

    pub fn config() -> SagaConfig {
        SagaConfig::default()
            .with_lease(LEASE)
            .with_retry(
                Backoff::new(Duration::from_millis(1), Duration::from_millis(4)).with_jitter(0.5),
            )
            .with_compensation_retry(
                Backoff::new(Duration::from_millis(1), Duration::from_millis(4)).with_jitter(0.5),
            )
    }

    pub fn engine(&self) -> SagaEngine {
        self.engine_with(Self::config())
    }

    pub fn engine_with(&self, config: SagaConfig) -> SagaEngine {
        SagaEngine::builder(self.store.clone() as Arc<dyn SagaStore>)
            .config(config)
            .clock(Arc::new(self.clock.clone()))
            .build()
    }

    pub fn writes(&self) -> u64 {
        self.store.writes.load(Ordering::SeqCst)
    }

    pub fn expire_lease(&self) {
        self.clock.advance(LEASE * 2);
    }
}

/// Counts every state-changing store call.
pub struct CountingStore {
    pub inner: Arc<dyn SagaStore>,
    pub writes: AtomicU64,
}

impl CountingStore {
    fn count(&self) {
        self.writes.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl SagaStore for CountingStore {
    async fn create_saga(
        &self,
        saga: &SagaWorkflow,
        lease: Option<Duration>,
        history: &[SagaEvent],
    ) -> StorageResult<CreateSaga> {
        self.count();
        self.inner.create_saga(saga, lease, history).await
    }
    async fn get_saga(&self, saga_id: &str) -> StorageResult<Option<SagaWorkflow>> {
        self.inner.get_saga(saga_id).await
    }
    async fn acquire_saga_lease(
        &self,
        saga_id: &str,
        owner: &str,
        lease: Duration,
    ) -> StorageResult<Option<SagaWorkflow>> {
        self.count();
        self.inner.acquire_saga_lease(saga_id, owner, lease).await
    }
    async fn save_saga(
        &self,
        saga: &SagaWorkflow,
        fence: u64,
        history: &[SagaEvent],
        renew: Option<Duration>,
    ) -> StorageResult<SagaSaved> {
        self.count();
        self.inner.save_saga(saga, fence, history, renew).await
    }
    async fn get_saga_history(&self, saga_id: &str) -> StorageResult<Vec<SagaEvent>> {
        self.inner.get_saga_history(saga_id).await
    }
    async fn list_sagas(&self, filter: &SagaFilter) -> StorageResult<Vec<SagaWorkflow>> {
        self.inner.list_sagas(filter).await
    }
    async fn list_recoverable_sagas(&self, limit: usize) -> StorageResult<Vec<String>> {
        self.inner.list_recoverable_sagas(limit).await
    }
    async fn delete_saga(&self, saga_id: &str) -> StorageResult<bool> {
        self.inner.delete_saga(saga_id).await
    }
}

/// Records handler executions: an ordered log and a count per key.
#[derive(Clone, Default)]
pub struct Recorder {
    inner: Arc<Mutex<Records>>,
}

/// The ordered log and the count per key.
type Records = (Vec<String>, HashMap<String, u32>);

impl Recorder {
    pub fn record(&self, what: impl Into<String>) {
        let what = what.into();
        let mut g = self.inner.lock().unwrap();
        *g.1.entry(what.clone()).or_default() += 1;
        g.0.push(what);
    }

    pub fn log(&self) -> Vec<String> {
        self.inner.lock().unwrap().0.clone()
    }

    pub fn count(&self, what: &str) -> u32 {
        self.inner.lock().unwrap().1.get(what).copied().unwrap_or(0)
    }
}
