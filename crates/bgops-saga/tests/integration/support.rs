//! Shared set-up: a store on a manual clock (wrapped to count writes), engines with tiny
//! backoffs, and a recorder of handler executions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bgops_core::ManualClock;
use bgops_memory::MemoryStorage;
use bgops_saga::{Backoff, SagaConfig, SagaEngine};
use bgops_storage::SagaStore;
use bgops_storage::testing::decorators::CountingStorage;

pub const LEASE: Duration = Duration::from_secs(10);

pub struct Setup {
    pub clock: ManualClock,
    /// The memory store, wrapped to count its calls.
    pub store: Arc<CountingStorage>,
}

impl Setup {
    pub fn new() -> Self {
        let clock = ManualClock::new();
        let memory = Arc::new(MemoryStorage::with_clock(Arc::new(clock.clone())));
        Self {
            clock,
            store: Arc::new(CountingStorage::counting(memory)),
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

    /// Store calls that may write (create, acquire, save, ...).
    pub fn writes(&self) -> u64 {
        self.store.hook().writes()
    }

    pub fn expire_lease(&self) {
        self.clock.advance(LEASE * 2);
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
