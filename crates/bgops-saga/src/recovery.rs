//! Finding and resuming sagas whose executor died.

use futures::StreamExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::engine::SagaEngine;
use crate::error::{SagaError, SagaResult};

/// What one recovery round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Abandoned sagas the store listed.
    pub found: usize,
    /// Resumed and driven to an end state.
    pub finished: usize,
    /// Taken by another executor first (someone else is on it).
    pub busy: usize,
    /// Resumed but stopped by an error (lease lost, store failure); tried again next round.
    pub failed: usize,
}

impl SagaEngine {
    /// One recovery round: asks the store for `Running` / `Compensating` sagas whose lease
    /// expired (an index lookup, not a scan) and resumes up to
    /// [`recovery_batch`](crate::SagaConfig::recovery_batch) of them,
    /// [`recovery_concurrency`](crate::SagaConfig::recovery_concurrency) at a time.
    ///
    /// # Errors
    /// When the store cannot list the sagas; failures of single sagas are counted instead.
    pub async fn recover_abandoned(&self) -> SagaResult<RecoveryReport> {
        let config = &self.inner.config;
        let ids = self
            .inner
            .store
            .list_recoverable_sagas(config.recovery_batch)
            .await
            .map_err(SagaError::Storage)?;
        let mut report = RecoveryReport {
            found: ids.len(),
            ..RecoveryReport::default()
        };
        let mut results = futures::stream::iter(ids)
            .map(|id| async move {
                let r = self.recover(&id).await;
                (id, r)
            })
            .buffer_unordered(config.recovery_concurrency);
        while let Some((id, result)) = results.next().await {
            match result {
                Ok(_) => report.finished += 1,
                Err(SagaError::Busy(_)) => report.busy += 1,
                Err(e) => {
                    tracing::warn!(saga_id = %id, error = %e, "saga recovery stopped");
                    report.failed += 1;
                }
            }
        }
        Ok(report)
    }

    /// Starts the background recoverer: a task that runs
    /// [`recover_abandoned`](Self::recover_abandoned) every
    /// [`recovery_interval`](crate::SagaConfig::recovery_interval). Must be called within a
    /// tokio runtime. Dropping the handle stops it.
    pub fn spawn_recoverer(&self) -> Recoverer {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let engine = self.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(engine.inner.config.recovery_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => {
                        if let Err(e) = engine.recover_abandoned().await {
                            tracing::warn!(error = %e, "saga recovery round failed");
                        }
                    }
                }
            }
        });
        Recoverer {
            stop: Some(stop),
            task: Some(task),
        }
    }
}

/// The handle of the background recoverer.
#[derive(Debug)]
pub struct Recoverer {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Recoverer {
    /// Stops after the round in progress (if any) and waits for it.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Recoverer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
