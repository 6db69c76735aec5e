//! A store whose clock is tokio's (paused in tests), wrapped in the fault decorator.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bgops_core::{Backoff, Clock};
use bgops_idempotency::IdempotencyEngine;
use bgops_memory::MemoryStorage;
use bgops_storage::testing::decorators::FailingStorage;
use time::OffsetDateTime;

/// Wall time that advances with tokio's clock, so a paused runtime moves the store's
/// leases and TTLs too.
#[derive(Debug)]
pub struct TokioClock {
    base: OffsetDateTime,
    start: tokio::time::Instant,
}

impl TokioClock {
    pub fn new() -> Self {
        Self {
            base: OffsetDateTime::now_utc(),
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> OffsetDateTime {
        self.base + self.start.elapsed()
    }
}

/// A memory store on tokio's clock behind a fault injector, and an engine over it.
pub struct Fixture {
    pub store: Arc<FailingStorage>,
    pub engine: IdempotencyEngine,
}

pub fn fixture(lease: Duration) -> Fixture {
    let memory = Arc::new(MemoryStorage::with_clock(Arc::new(TokioClock::new())));
    let store = Arc::new(FailingStorage::failing(memory));
    let engine = IdempotencyEngine::builder(store.clone())
        .lease(lease)
        .ttl(Duration::from_secs(3600))
        .completion_backoff(Backoff::constant(Duration::from_millis(100)))
        .build();
    Fixture { store, engine }
}

/// Counts runs of an operation.
#[derive(Clone, Default)]
pub struct Runs(Arc<AtomicUsize>);

impl Runs {
    pub fn inc(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}
