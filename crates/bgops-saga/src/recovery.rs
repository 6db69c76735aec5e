//! Finding and resuming sagas whose executor died.

use bgops_storage::Periodic;
use futures::StreamExt;

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

    /// Retention: purges finished sagas (and their history) whose last write is older
    /// than [`retention`](crate::SagaConfig::retention), in batches of
    /// [`recovery_batch`](crate::SagaConfig::recovery_batch) until none is due; returns
    /// how many went. Does nothing when retention is `None`.
    ///
    /// # Errors
    /// When the store fails (what was purged before stays purged).
    pub async fn purge_finished(&self) -> SagaResult<u64> {
        let config = &self.inner.config;
        let Some(retention) = config.retention else {
            return Ok(0);
        };
        let mut purged = 0;
        loop {
            let sweep = self
                .inner
                .store
                .purge_sagas(retention, config.recovery_batch)
                .await
                .map_err(SagaError::Storage)?;
            for key in &sweep.corrupt {
                tracing::warn!(saga = %key, "unreadable saga left in place by retention");
            }
            purged += sweep.done;
            if !sweep.more || sweep.done == 0 {
                return Ok(purged);
            }
        }
    }

    /// Starts the background recoverer: runs
    /// [`recover_abandoned`](Self::recover_abandoned) and then
    /// [`purge_finished`](Self::purge_finished) every
    /// [`recovery_interval`](crate::SagaConfig::recovery_interval) through the workspace's
    /// one periodic loop ([`Periodic`]). Must be called within a tokio runtime. Dropping
    /// the handle stops it.
    pub fn spawn_recoverer(&self) -> Recoverer {
        let engine = self.clone();
        let periodic = Periodic::spawn(
            "saga_recoverer",
            self.inner.config.recovery_interval,
            move || {
                let engine = engine.clone();
                async move {
                    if let Err(e) = engine.recover_abandoned().await {
                        tracing::warn!(error = %e, "saga recovery round failed");
                    }
                    if let Err(e) = engine.purge_finished().await {
                        tracing::warn!(error = %e, "saga retention round failed");
                    }
                }
            },
        );
        Recoverer {
            periodic: Some(periodic),
        }
    }
}

/// The handle of the background recoverer.
#[derive(Debug)]
pub struct Recoverer {
    periodic: Option<Periodic>,
}

impl Recoverer {
    /// Stops after the round in progress (if any) and waits for it.
    pub async fn shutdown(mut self) {
        if let Some(periodic) = self.periodic.take() {
            periodic.stop().await;
        }
    }
}

impl Drop for Recoverer {
    fn drop(&mut self) {
        if let Some(periodic) = &self.periodic {
            periodic.abort();
        }
    }
}
