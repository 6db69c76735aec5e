//! Shared set-up: a store with a manual clock, a queue over it, metrics that count.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bgops_core::{ManualClock, MetricsHooks};
use bgops_memory::MemoryStorage;
use bgops_queue::{Backoff, TaskQueue};

/// A queue over a fresh in-memory store whose time moves only with `clock`.
pub fn manual_queue() -> (TaskQueue, ManualClock) {
    let clock = ManualClock::new();
    let store = Arc::new(MemoryStorage::with_clock(Arc::new(clock.clone())));
    let queue = TaskQueue::new(store)
        .with_backoff(Backoff::none())
        .with_lease(Duration::from_secs(30));
    (queue, clock)
}

/// A queue over a fresh in-memory store on the system clock (for worker tests in real
/// time).
pub fn system_queue(lease: Duration) -> TaskQueue {
    let store = Arc::new(MemoryStorage::new());
    TaskQueue::new(store)
        .with_backoff(Backoff::none())
        .with_lease(lease)
}

/// Counts every metrics call as `name:queue:detail`.
#[derive(Debug, Default)]
pub struct CountingMetrics(pub Mutex<BTreeMap<String, u64>>);

impl CountingMetrics {
    fn bump(&self, key: String) {
        *self.0.lock().unwrap().entry(key).or_default() += 1;
    }

    pub fn get(&self, key: &str) -> u64 {
        self.0.lock().unwrap().get(key).copied().unwrap_or(0)
    }
}

impl MetricsHooks for CountingMetrics {
    fn task_submitted(&self, queue: &str, duplicate: bool) {
        self.bump(format!("submitted:{queue}:{duplicate}"));
    }
    fn task_finished(&self, queue: &str, outcome: &str) {
        self.bump(format!("finished:{queue}:{outcome}"));
    }
    fn cleanup_ran(&self, purged: u64) {
        self.bump(format!("cleanup:{purged}"));
    }
}

/// Polls `check` every 10 ms until it returns true or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A claim on `task` for attempt `attempt` (to show that a stale attempt is fenced out).
pub fn claim_of(task: &bgops_core::Task, attempt: u32) -> bgops_queue::Claim {
    bgops_queue::Claim {
        task: task.clone(),
        attempt,
        worker_id: "stale".into(),
        expires_at: task.updated_at,
    }
}
