//! Counters of what a worker did.

use std::sync::atomic::{AtomicU64, Ordering};

/// What a worker did, counted since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Tasks claimed.
    pub claimed: u64,
    /// Attempts completed.
    pub completed: u64,
    /// Attempts failed with attempts left (the task will be retried).
    pub retried: u64,
    /// Attempts that failed the task for good.
    pub failed: u64,
    /// Attempts abandoned because their lease was lost (their result was dropped).
    pub lease_lost: u64,
    /// Attempts given back unfinished at shutdown.
    pub released: u64,
    /// Store calls that failed.
    pub storage_errors: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) claimed: AtomicU64,
    pub(crate) completed: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) lease_lost: AtomicU64,
    pub(crate) released: AtomicU64,
    pub(crate) storage_errors: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> WorkerStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WorkerStats {
            claimed: get(&self.claimed),
            completed: get(&self.completed),
            retried: get(&self.retried),
            failed: get(&self.failed),
            lease_lost: get(&self.lease_lost),
            released: get(&self.released),
            storage_errors: get(&self.storage_errors),
        }
    }
}
