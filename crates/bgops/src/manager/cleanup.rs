//! The background cleanup loop started by `BackgroundOperationsManager::start`, on the
//! workspace's one periodic loop ([`Periodic`]).

use std::sync::Arc;
use std::time::Duration;

use bgops_core::MetricsHooks;
use bgops_storage::{Periodic, Storage, StorageResult, Sweep};

/// Entries handled per store call. A pass calls again while the store says more are due,
/// so it keeps up with any rate the store can absorb; each call stays bounded.
const BATCH: usize = 1_000;

/// What one cleanup pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Expired idempotency records removed.
    pub purged: u64,
    /// Expired task leases returned to their queues.
    pub requeued: u64,
    /// Entries that could not be read and were left in place (storage keys), reported
    /// and skipped.
    pub corrupt: Vec<String>,
}

impl CleanupReport {
    /// Records removed plus tasks requeued.
    pub fn total(&self) -> u64 {
        self.purged + self.requeued
    }
}

/// Starts the loop: one [`pass`] every `interval` (the first at once).
pub(super) fn spawn(
    storage: Arc<dyn Storage>,
    interval: Duration,
    metrics: Arc<dyn MetricsHooks>,
) -> Periodic {
    Periodic::spawn("bgops-cleanup", interval, move || {
        let storage = Arc::clone(&storage);
        let metrics = Arc::clone(&metrics);
        async move {
            // A failing pass is logged and retried at the next tick: cleanup is
            // housekeeping, never a reason to stop the service.
            match pass(storage.as_ref(), metrics.as_ref()).await {
                Ok(report) => tracing::debug!(
                    purged = report.purged,
                    requeued = report.requeued,
                    corrupt = report.corrupt.len(),
                    "bgops cleanup pass"
                ),
                Err(e) => {
                    metrics.storage_error("cleanup");
                    tracing::warn!(error = %e, "bgops cleanup pass failed");
                }
            }
        }
    })
}

/// One pass: expired idempotency records, then expired task leases, each in batches
/// until the store says nothing more is due. A failing purge does not skip the requeue.
pub(super) async fn pass(
    storage: &dyn Storage,
    metrics: &dyn MetricsHooks,
) -> StorageResult<CleanupReport> {
    let mut report = CleanupReport::default();
    let purged = drain(|| storage.purge_expired(BATCH), &mut report.corrupt).await;
    let requeued = drain(|| storage.requeue_expired_tasks(BATCH), &mut report.corrupt).await;
    report.purged = purged.as_ref().map_or(0, |n| *n);
    report.requeued = requeued.as_ref().map_or(0, |n| *n);
    metrics.cleanup_ran(report.total());
    purged?;
    requeued?;
    Ok(report)
}

/// Calls `batch` while the store reports more due entries, collecting corrupt ones. Stops
/// when a batch makes no progress (only corrupt entries left), so a pass always ends.
async fn drain<F, Fut>(mut batch: F, corrupt: &mut Vec<String>) -> StorageResult<u64>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = StorageResult<Sweep>>,
{
    let mut done = 0;
    loop {
        let sweep = batch().await?;
        done += sweep.done;
        for key in &sweep.corrupt {
            tracing::error!(%key, "cleanup skipped a corrupt entry");
        }
        let progress = sweep.done > 0;
        corrupt.extend(sweep.corrupt);
        if !sweep.more || !progress {
            return Ok(done);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test]
    async fn drains_batches_until_done_and_reports_corrupt() {
        let sweeps = Mutex::new(vec![
            Sweep {
                done: 0,
                corrupt: vec!["k3".into()],
                more: false,
            },
            Sweep {
                done: 1000,
                corrupt: vec!["k2".into()],
                more: true,
            },
            Sweep {
                done: 1000,
                corrupt: vec![],
                more: true,
            },
        ]);
        let mut corrupt = vec![];
        let done = drain(
            || {
                let next = sweeps.lock().unwrap().pop().unwrap();
                async move { Ok(next) }
            },
            &mut corrupt,
        )
        .await
        .unwrap();
        assert_eq!(done, 2000);
        assert_eq!(corrupt, ["k2", "k3"]);
        assert!(sweeps.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn stops_when_a_batch_makes_no_progress() {
        let mut calls = 0;
        let mut corrupt = vec![];
        let done = drain(
            || {
                calls += 1;
                async {
                    Ok(Sweep {
                        done: 0,
                        corrupt: vec!["bad".into()],
                        more: true,
                    })
                }
            },
            &mut corrupt,
        )
        .await
        .unwrap();
        assert_eq!((done, calls), (0, 1));
    }
}
