//! The retention loop: requeues expired leases and deletes old finished tasks, forever.

use std::time::Duration;

use tokio::sync::watch;
use tracing::Instrument;

use crate::queue::TaskQueue;

/// A running cleanup loop (see [`TaskQueue::spawn_cleanup`]). Dropping the handle stops
/// the loop too.
#[derive(Debug)]
pub struct CleanupHandle {
    stop: watch::Sender<bool>,
    join: tokio::task::JoinHandle<()>,
}

impl CleanupHandle {
    /// Stops the loop (after the pass in progress, if any).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.join.await;
    }
}

impl TaskQueue {
    /// Runs [`TaskQueue::cleanup`] every `interval` in a tokio task, deleting tasks
    /// finished more than `retention` ago (the seed's "task cleanup", without a
    /// hand-written loop). Failures are logged and counted, and the loop goes on.
    pub fn spawn_cleanup(&self, interval: Duration, retention: Duration) -> CleanupHandle {
        let (stop, mut stopped) = watch::channel(false);
        let queue = self.clone();
        let join = tokio::spawn(
            async move {
                let mut ticker = tokio::time::interval(interval);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        biased;
                        _ = stopped.wait_for(|s| *s) => return,
                        _ = ticker.tick() => {}
                    }
                    match queue.cleanup(retention, 500).await {
                        Ok(report) => tracing::debug!(?report, "task cleanup ran"),
                        Err(e) => tracing::warn!(error = %e, "task cleanup failed"),
                    }
                }
            }
            .instrument(tracing::info_span!("bgops.task_cleanup")),
        );
        CleanupHandle { stop, join }
    }
}
