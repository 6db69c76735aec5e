//! The retention loop: requeues expired leases and deletes old finished tasks, through the
//! workspace's one periodic loop ([`Periodic`]).

use std::time::Duration;

use bgops_storage::Periodic;
use tracing::Instrument;

use crate::queue::TaskQueue;

/// A running cleanup loop (see [`TaskQueue::spawn_cleanup`]). Dropping the handle stops
/// the loop too (after the pass in progress).
#[derive(Debug)]
pub struct CleanupHandle {
    periodic: Option<Periodic>,
}

impl CleanupHandle {
    /// Stops the loop (after the pass in progress, if any) and waits for it.
    pub async fn stop(mut self) {
        if let Some(periodic) = self.periodic.take() {
            periodic.stop().await;
        }
    }
}

impl Drop for CleanupHandle {
    fn drop(&mut self) {
        if let Some(periodic) = &self.periodic {
            periodic.abort();
        }
    }
}

impl TaskQueue {
    /// Runs [`TaskQueue::cleanup`] every `interval` in a tokio task, deleting tasks
    /// finished more than `retention` ago (the seed's "task cleanup", without a
    /// hand-written loop). Failures are logged and counted, and the loop goes on.
    pub fn spawn_cleanup(&self, interval: Duration, retention: Duration) -> CleanupHandle {
        let queue = self.clone();
        let periodic = Periodic::spawn("task_cleanup", interval, move || {
            let queue = queue.clone();
            async move {
                match queue.cleanup(retention, 500).await {
                    Ok(report) => tracing::debug!(?report, "task cleanup ran"),
                    Err(e) => tracing::warn!(error = %e, "task cleanup failed"),
                }
            }
            .instrument(tracing::info_span!("bgops.task_cleanup"))
        });
        CleanupHandle {
            periodic: Some(periodic),
        }
    }
}
