//! The background cleanup loop started by `BackgroundOperationsManager::start`.

use std::sync::Arc;
use std::time::Duration;

use bgops_core::MetricsHooks;
use bgops_storage::{Storage, StorageResult};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Records removed per store call; a pass repeats until a batch comes back short.
const BATCH: usize = 1_000;
/// Upper bound of batches per pass, so one pass cannot run forever under heavy churn.
const MAX_BATCHES: usize = 100;

/// A running cleanup loop.
pub(super) struct CleanupTask {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl CleanupTask {
    pub(super) fn spawn(
        storage: Arc<dyn Storage>,
        interval: Duration,
        metrics: Arc<dyn MetricsHooks>,
    ) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let handle = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = stopped.changed() => break,
                }
                // A failing pass is logged and retried at the next tick: cleanup is
                // housekeeping, never a reason to stop the service.
                match run_once(storage.as_ref(), metrics.as_ref()).await {
                    Ok(n) => tracing::debug!(removed = n, "bgops cleanup pass"),
                    Err(e) => {
                        metrics.storage_error("cleanup");
                        tracing::warn!(error = %e, "bgops cleanup pass failed");
                    }
                }
            }
        });
        Self { stop, handle }
    }

    pub(super) async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.handle.await {
            tracing::warn!(error = %e, "bgops cleanup task ended abnormally");
        }
    }
}

/// One pass: purge expired idempotency records and return expired task leases, in
/// batches.
pub(super) async fn run_once(
    storage: &dyn Storage,
    metrics: &dyn MetricsHooks,
) -> StorageResult<u64> {
    let mut total = 0;
    for _ in 0..MAX_BATCHES {
        let n = storage.purge_expired(BATCH).await?;
        total += n;
        if n < BATCH as u64 {
            break;
        }
    }
    for _ in 0..MAX_BATCHES {
        let n = storage.requeue_expired_tasks(BATCH).await?;
        total += n;
        if n < BATCH as u64 {
            break;
        }
    }
    metrics.cleanup_ran(total);
    Ok(total)
}
