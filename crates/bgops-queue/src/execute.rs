//! One attempt: run the handler under the workspace's one lease keep-alive, then record
//! the outcome.

use std::sync::Arc;
use std::time::Duration;

use bgops_storage::keepalive::{Kept, OnLost, keep_alive};
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::task::{JoinError, JoinHandle};
use tracing::Instrument;

use crate::complete::Completer;
use crate::error::QueueError;
use crate::handler::{TaskContext, TaskError, TaskHandler};
use crate::queue::{Claim, TaskQueue};
use crate::stats::Counters;

/// What an attempt needs from its worker.
pub(crate) struct Execution {
    pub(crate) queue: TaskQueue,
    pub(crate) handler: Arc<dyn TaskHandler>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) heartbeat: Duration,
    pub(crate) completer: Completer,
    /// Turns `true` when shutdown's grace period is over.
    pub(crate) release: watch::Receiver<bool>,
}

/// Aborts the handler's tokio task when dropped, so an abandoned attempt (lease lost,
/// released, or the worker itself aborted) never runs on unobserved.
struct AbortOnDrop(JoinHandle<Result<Value, TaskError>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

enum Ending {
    Finished(Result<Result<Value, TaskError>, JoinError>),
    LeaseLost,
    Release,
}

/// Runs one claimed attempt to its end; `permit` (the worker's concurrency slot) is
/// given back as soon as the handler is done, before its outcome is stored.
pub(crate) async fn run_attempt(exec: Execution, claim: Claim, permit: OwnedSemaphorePermit) {
    let span = tracing::info_span!(
        "bgops.task",
        task_id = %claim.task.task_id,
        queue = %claim.task.queue,
        task_type = %claim.task.task_type,
        attempt = claim.attempt,
        max_attempts = claim.task.max_attempts,
        worker_id = %claim.worker_id,
        outcome = tracing::field::Empty,
    );
    attempt_inner(exec, claim, permit).instrument(span).await;
}

async fn attempt_inner(exec: Execution, claim: Claim, permit: OwnedSemaphorePermit) {
    let queue_name = claim.task.queue.clone();
    tracing::debug!("attempt started");

    let (cancel_tx, cancel_rx) = watch::channel(false);
    let ctx = TaskContext::new(
        claim.task.clone(),
        claim.attempt,
        claim.worker_id.clone(),
        cancel_rx,
    );
    let handler = exec.handler.clone();
    let mut job = AbortOnDrop(tokio::spawn(
        async move { handler.handle(ctx).await }.instrument(tracing::Span::current()),
    ));

    // The heartbeat is the workspace's one keep-alive: transient store errors are retried
    // while the handler runs (the lease may still be ours when the store is back), a
    // definite loss (the attempt was fenced out) cancels the handler at once.
    let mut release = exec.release.clone();
    let ending = {
        let (queue, counters, claim) = (&exec.queue, &exec.counters, &claim);
        let renew = move || async move {
            let renewed = queue.renew_lease(claim).await.map(|_| ());
            if let Err(e) = &renewed {
                Counters::bump(&counters.storage_errors);
                queue.metrics().storage_error("renew_task_lease");
                tracing::warn!(error = %e, "lease renewal failed");
            }
            renewed
        };
        tokio::select! {
            biased;
            kept = keep_alive(&mut job.0, exec.heartbeat, renew, OnLost::Cancel) => match kept {
                Kept::Finished(result) | Kept::FinishedAfterLoss(result, _) => {
                    Ending::Finished(result)
                }
                Kept::Cancelled(_) => Ending::LeaseLost,
            },
            () = wait_true(&mut release) => Ending::Release,
        }
    };

    drop(permit);
    match ending {
        Ending::LeaseLost => {
            let _ = cancel_tx.send(true);
            drop(job);
            lease_lost(&exec, &queue_name);
        }
        Ending::Release => {
            let _ = cancel_tx.send(true);
            drop(job);
            match exec.queue.release(&claim).await {
                Ok(_) => {
                    Counters::bump(&exec.counters.released);
                    record("released");
                }
                Err(QueueError::LeaseLost { .. }) => lease_lost(&exec, &queue_name),
                Err(e) => store_failed(&exec, "release", &e),
            }
        }
        Ending::Finished(Ok(Ok(value))) => match exec.completer.complete(claim, value).await {
            Ok(_) => {
                Counters::bump(&exec.counters.completed);
                record("completed");
            }
            Err(QueueError::LeaseLost { .. }) => lease_lost(&exec, &queue_name),
            Err(e) => store_failed(&exec, "complete", &e),
        },
        Ending::Finished(Ok(Err(error))) => {
            fail(&exec, &claim, &queue_name, &error).await;
        }
        Ending::Finished(Err(join_error)) => {
            let error = TaskError::retryable(format!("handler panicked: {join_error}"));
            fail(&exec, &claim, &queue_name, &error).await;
        }
    }
}

async fn fail(exec: &Execution, claim: &Claim, queue_name: &str, error: &TaskError) {
    let result = if error.is_permanent() {
        exec.queue.fail_permanently(claim, error.message()).await
    } else {
        exec.queue.fail(claim, error.message()).await
    };
    match result {
        Ok(receipt) if receipt.status == bgops_core::TaskStatus::Failed => {
            Counters::bump(&exec.counters.failed);
            record("failed");
            tracing::warn!(error = %error, "task failed for good");
        }
        Ok(_) => {
            Counters::bump(&exec.counters.retried);
            record("retrying");
            tracing::info!(error = %error, "attempt failed; will retry");
        }
        Err(QueueError::LeaseLost { .. }) => lease_lost(exec, queue_name),
        Err(e) => store_failed(exec, "fail", &e),
    }
}

fn lease_lost(exec: &Execution, queue_name: &str) {
    Counters::bump(&exec.counters.lease_lost);
    exec.queue
        .metrics()
        .task_finished(queue_name, "lease_expired");
    record("lease_expired");
    tracing::warn!("lease lost; the attempt's result was dropped");
}

/// The outcome could not be stored: the lease will run out and the task come back.
fn store_failed(exec: &Execution, what: &str, e: &QueueError) {
    Counters::bump(&exec.counters.storage_errors);
    tracing::error!(error = %e, "could not {what} the task; it will be retried after its lease");
}

fn record(outcome: &str) {
    tracing::Span::current().record("outcome", outcome);
}

async fn wait_true(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|v| *v).await.is_err() {
        std::future::pending::<()>().await;
    }
}
