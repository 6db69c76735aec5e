//! [`TaskQueue`]: the queue's API over any [`TaskStore`].

use std::sync::Arc;
use std::time::Duration;

use bgops_core::{Backoff, SharedIds, SharedMetrics, Task, TaskAttempt, TaskStatus};
use bgops_storage::{
    NewTask, StorageError, Submitted, Sweep, TaskCompletion, TaskFilter, TaskReceipt, TaskStore,
};
use serde_json::Value;
use time::OffsetDateTime;

use crate::error::{QueueError, QueueResult};

/// Default page size of [`TaskQueue::list`].
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// The idempotent task queue over a [`TaskStore`]: submit with dedupe, fenced claims,
/// completion, failure with backoff, look-ups and cleanup. Cheap to clone.
#[derive(Clone)]
pub struct TaskQueue {
    store: Arc<dyn TaskStore>,
    metrics: SharedMetrics,
    ids: SharedIds,
    backoff: Backoff,
    lease: Duration,
}

impl std::fmt::Debug for TaskQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskQueue")
            .field("backoff", &self.backoff)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

/// A claim a worker holds: the task as claimed and the attempt number that fences every
/// later call about it. The queue's write methods take the claim: it names the task, the
/// attempt and the queue (for metrics).
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// The task, as it stood right after the claim.
    pub task: Task,
    /// The attempt number (1-based): only this attempt may complete, fail, renew or
    /// release the task.
    pub attempt: u32,
    /// The claiming worker.
    pub worker_id: String,
    /// When the lease runs out unless renewed.
    pub expires_at: OffsetDateTime,
}

impl Claim {
    /// The task's id.
    pub fn task_id(&self) -> &str {
        &self.task.task_id
    }

    pub(crate) fn from_task(task: Task) -> QueueResult<Self> {
        let Some(lease) = task.lease.clone() else {
            return Err(QueueError::Storage(StorageError::Corrupt {
                key: task.task_id.clone(),
                reason: "claimed task without a lease".into(),
            }));
        };
        Ok(Self {
            attempt: lease.attempt,
            worker_id: lease.worker_id,
            expires_at: lease.expires_at,
            task,
        })
    }
}

/// One page of [`TaskQueue::list`].
#[derive(Debug, Clone, PartialEq)]
pub struct TaskPage {
    /// The tasks, oldest first.
    pub tasks: Vec<Task>,
    /// The offset of the next page, if there is one.
    pub next_offset: Option<usize>,
}

/// What one [`TaskQueue::cleanup`] pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Tasks whose lease had expired, put back to `Pending` (or `Failed`).
    pub requeued: u64,
    /// Finished tasks deleted after the retention period.
    pub purged: u64,
    /// Storage keys of tasks that could not be read and were left in place.
    pub corrupt: Vec<String>,
}

impl TaskQueue {
    /// A queue over `store` with no-op metrics, the default [`Backoff`] and a 30 s lease.
    pub fn new(store: Arc<dyn TaskStore>) -> Self {
        Self {
            store,
            metrics: bgops_core::metrics::noop(),
            ids: bgops_core::id::random(),
            backoff: Backoff::default(),
            lease: Duration::from_secs(30),
        }
    }

    /// Sets the metrics hooks.
    pub fn with_metrics(mut self, metrics: SharedMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Sets the id generator (worker ids of the [`Worker`](crate::Worker)s built on this
    /// queue). Default: [`bgops_core::id::random`].
    pub fn with_ids(mut self, ids: SharedIds) -> Self {
        self.ids = ids;
        self
    }

    /// The id generator.
    pub fn ids(&self) -> &SharedIds {
        &self.ids
    }

    /// Sets the wait between a failed attempt and the next one.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets the lease of a claim: how long a silent worker keeps a task.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn TaskStore> {
        &self.store
    }

    /// The metrics hooks.
    pub fn metrics(&self) -> &SharedMetrics {
        &self.metrics
    }

    /// The backoff policy.
    pub fn backoff(&self) -> Backoff {
        self.backoff
    }

    /// The lease of a claim.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Submits a task. With an idempotency key already used on the same queue, returns
    /// the existing task and `duplicate: true` instead of creating another.
    ///
    /// # Errors
    /// [`QueueError::KeyConflict`] when the key was used with another payload or type.
    pub async fn submit(&self, task: NewTask) -> QueueResult<Submitted> {
        check_new(&task)?;
        let queue = task.queue.clone();
        let submitted = self.observe("submit_task", self.store.submit_task(task).await)?;
        self.metrics.task_submitted(&queue, submitted.duplicate);
        Ok(submitted)
    }

    /// Submits several tasks in one store call (one round trip on Redis), each as
    /// [`submit`](Self::submit) would; one answer per task, in order. A task rejected
    /// before reaching the store (bad name, `max_attempts` of 0) gets its error in its
    /// place and the others are still submitted.
    ///
    /// # Errors
    /// A storage failure of the whole call: nothing is known about any task (submitting
    /// them again is safe for the tasks that have an idempotency key).
    pub async fn submit_many(
        &self,
        tasks: impl IntoIterator<Item = NewTask>,
    ) -> QueueResult<Vec<QueueResult<Submitted>>> {
        let mut answers: Vec<Option<QueueResult<Submitted>>> = Vec::new();
        let mut valid = Vec::new();
        for task in tasks {
            match check_new(&task) {
                Ok(()) => {
                    answers.push(None);
                    valid.push(task);
                }
                Err(e) => answers.push(Some(Err(e))),
            }
        }
        let queues: Vec<String> = valid.iter().map(|t| t.queue.clone()).collect();
        let stored = if valid.is_empty() {
            Vec::new()
        } else {
            self.observe("submit_tasks", self.store.submit_tasks(valid).await)?
        };
        let mut stored = stored.into_iter().zip(queues);
        Ok(answers
            .into_iter()
            .map(|answer| match answer {
                Some(rejected) => rejected,
                None => match stored.next() {
                    Some((Ok(submitted), queue)) => {
                        self.metrics.task_submitted(&queue, submitted.duplicate);
                        Ok(submitted)
                    }
                    Some((Err(e), _)) => self.observe("submit_tasks", Err(e)),
                    None => Err(QueueError::Storage(StorageError::Corrupt {
                        key: "submit_tasks".into(),
                        reason: "the store answered fewer tasks than were submitted".into(),
                    })),
                },
            })
            .collect())
    }

    /// Claims the task `task_id` for `worker_id` if it is claimable now; `None` otherwise.
    pub async fn claim(&self, task_id: &str, worker_id: &str) -> QueueResult<Option<Claim>> {
        let task = self.observe(
            "claim_task",
            self.store.claim_task(task_id, worker_id, self.lease).await,
        )?;
        task.map(Claim::from_task).transpose()
    }

    /// Claims the oldest claimable task of `queue` for `worker_id`; `None` when there is
    /// none. A task whose previous holder's lease ran out is claimable again.
    pub async fn claim_next(&self, queue: &str, worker_id: &str) -> QueueResult<Option<Claim>> {
        let task = self.observe(
            "claim_next_task",
            self.store
                .claim_next_task(queue, worker_id, self.lease)
                .await,
        )?;
        task.map(Claim::from_task).transpose()
    }

    /// Claims up to `max` of the oldest claimable tasks of `queue` for `worker_id` in one
    /// store call (one round trip on Redis); fewer, or none, when fewer are claimable.
    pub async fn claim_batch(
        &self,
        queue: &str,
        worker_id: &str,
        max: usize,
    ) -> QueueResult<Vec<Claim>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let tasks = self.observe(
            "claim_next_tasks",
            self.store
                .claim_next_tasks(queue, worker_id, self.lease, max)
                .await,
        )?;
        tasks.into_iter().map(Claim::from_task).collect()
    }

    /// Completes several claims in one store call (one round trip on Redis), each as
    /// [`complete`](Self::complete) would; one answer per claim, in order.
    ///
    /// # Errors
    /// A storage failure of the whole call: nothing is known about any of them.
    pub async fn complete_many(
        &self,
        done: Vec<(&Claim, Value)>,
    ) -> QueueResult<Vec<QueueResult<TaskReceipt>>> {
        let queues: Vec<&str> = done.iter().map(|(c, _)| c.task.queue.as_str()).collect();
        let items = done
            .into_iter()
            .map(|(claim, result)| TaskCompletion {
                task_id: claim.task.task_id.clone(),
                attempt: claim.attempt,
                result,
            })
            .collect();
        let answers = self.observe("complete_tasks", self.store.complete_tasks(items).await)?;
        Ok(answers
            .into_iter()
            .zip(queues)
            .map(|(answer, queue)| {
                let receipt = self.observe("complete_tasks", answer)?;
                self.metrics.task_finished(queue, "completed");
                Ok(receipt)
            })
            .collect())
    }

    /// Completes the claim's attempt with `result`.
    ///
    /// # Errors
    /// [`QueueError::LeaseLost`] when the claim's attempt is no longer the current one: the
    /// result is dropped.
    pub async fn complete(&self, claim: &Claim, result: Value) -> QueueResult<TaskReceipt> {
        let receipt = self.observe(
            "complete_task",
            self.store
                .complete_task(claim.task_id(), claim.attempt, result)
                .await,
        )?;
        self.metrics.task_finished(&claim.task.queue, "completed");
        Ok(receipt)
    }

    /// Fails the claim's attempt: back to `Pending` after the backoff while attempts
    /// remain, `Failed` at the last.
    ///
    /// # Errors
    /// [`QueueError::LeaseLost`] when the claim's attempt is no longer the current one.
    pub async fn fail(&self, claim: &Claim, error: &str) -> QueueResult<TaskReceipt> {
        let wait = self.backoff.delay(claim.attempt);
        let receipt = self.observe(
            "fail_task",
            self.store
                .fail_task(claim.task_id(), claim.attempt, error, wait)
                .await,
        )?;
        self.metrics
            .task_finished(&claim.task.queue, failure_outcome(&receipt));
        Ok(receipt)
    }

    /// Fails the claim's attempt with no retry (a permanent error): the task ends `Failed`
    /// whatever attempts remain, in one atomic store call
    /// ([`TaskStore::fail_task_permanently`]).
    ///
    /// # Errors
    /// [`QueueError::LeaseLost`] when the claim's attempt is no longer the current one.
    pub async fn fail_permanently(&self, claim: &Claim, error: &str) -> QueueResult<TaskReceipt> {
        let receipt = self.observe(
            "fail_task_permanently",
            self.store
                .fail_task_permanently(claim.task_id(), claim.attempt, error)
                .await,
        )?;
        self.metrics
            .task_finished(&claim.task.queue, failure_outcome(&receipt));
        Ok(receipt)
    }

    /// Extends the claim's lease to the queue's lease from now (a heartbeat); the receipt
    /// says until when, by the store's clock.
    ///
    /// # Errors
    /// [`QueueError::LeaseLost`] when the claim's attempt is no longer the current one.
    pub async fn renew(&self, claim: &Claim) -> QueueResult<TaskReceipt> {
        self.observe("renew_task_lease", self.renew_lease(claim).await)
    }

    /// The store call of [`renew`](Self::renew), unmapped (the worker's keep-alive needs
    /// the store's error to tell a transient failure from a loss).
    pub(crate) async fn renew_lease(&self, claim: &Claim) -> Result<TaskReceipt, StorageError> {
        self.store
            .renew_task_lease(claim.task_id(), claim.attempt, self.lease)
            .await
    }

    /// Gives the claim's attempt back unfinished (graceful shutdown): `Pending` again at
    /// once, and the attempt does not count against `max_attempts`.
    ///
    /// # Errors
    /// [`QueueError::LeaseLost`] when the claim's attempt is no longer the current one.
    pub async fn release(&self, claim: &Claim) -> QueueResult<TaskReceipt> {
        let receipt = self.observe(
            "release_task",
            self.store
                .release_task(claim.task_id(), claim.attempt)
                .await,
        )?;
        self.metrics.task_finished(&claim.task.queue, "released");
        Ok(receipt)
    }

    /// Puts a `Failed` task back to `Pending` with a fresh set of attempts.
    ///
    /// # Errors
    /// [`QueueError::InvalidState`] when the task is not failed.
    pub async fn retry(&self, task_id: &str) -> QueueResult<TaskReceipt> {
        self.observe("retry_task", self.store.retry_task(task_id).await)
    }

    /// The task, if it exists.
    pub async fn get(&self, task_id: &str) -> QueueResult<Option<Task>> {
        self.observe("get_task", self.store.get_task(task_id).await)
    }

    /// The task submitted on `queue` with idempotency key `key`, if any.
    pub async fn get_by_idempotency_key(
        &self,
        queue: &str,
        key: &str,
    ) -> QueueResult<Option<Task>> {
        self.observe(
            "get_task_by_key",
            self.store.get_task_by_key(queue, key).await,
        )
    }

    /// One page of tasks matching `filter` (a `limit` of 0 means [`DEFAULT_PAGE_SIZE`]),
    /// oldest first, with the offset of the next page.
    pub async fn list(&self, filter: &TaskFilter) -> QueueResult<TaskPage> {
        let limit = if filter.limit == 0 {
            DEFAULT_PAGE_SIZE
        } else {
            filter.limit
        };
        // One more than asked tells whether another page follows.
        let probe = TaskFilter {
            limit: limit + 1,
            ..filter.clone()
        };
        let mut tasks = self.observe("list_tasks", self.store.list_tasks(&probe).await)?;
        let next_offset = (tasks.len() > limit).then(|| filter.offset + limit);
        tasks.truncate(limit);
        Ok(TaskPage { tasks, next_offset })
    }

    /// Every task of `queue` (all queues when `None`) with `status` (any when `None`),
    /// read page by page.
    pub async fn list_all(
        &self,
        queue: Option<&str>,
        status: Option<TaskStatus>,
    ) -> QueueResult<Vec<Task>> {
        let mut filter = TaskFilter {
            queue: queue.map(str::to_owned),
            status,
            limit: DEFAULT_PAGE_SIZE,
            offset: 0,
        };
        let mut all = Vec::new();
        loop {
            let page = self.list(&filter).await?;
            all.extend(page.tasks);
            match page.next_offset {
                Some(next) => filter.offset = next,
                None => return Ok(all),
            }
        }
    }

    /// Deletes the task and frees its idempotency key; `true` if it existed.
    pub async fn delete(&self, task_id: &str) -> QueueResult<bool> {
        self.observe("delete_task", self.store.delete_task(task_id).await)
    }

    /// The task's attempts, oldest first.
    ///
    /// # Errors
    /// [`QueueError::NotFound`] when the task does not exist.
    pub async fn history(&self, task_id: &str) -> QueueResult<Vec<TaskAttempt>> {
        match self.get(task_id).await? {
            Some(task) => Ok(task.history),
            None => Err(QueueError::NotFound {
                task_id: task_id.to_owned(),
            }),
        }
    }

    /// Puts up to `limit` tasks whose lease ran out back to `Pending` (or `Failed` at
    /// their last attempt). Claims do this lazily anyway; this makes it visible sooner.
    /// The [`Sweep`] says how many moved, which could not be read, and whether more are
    /// due.
    pub async fn requeue_expired(&self, limit: usize) -> QueueResult<Sweep> {
        self.observe(
            "requeue_expired_tasks",
            self.store.requeue_expired_tasks(limit).await,
        )
    }

    /// Deletes up to `limit` finished tasks older than `retention`.
    pub async fn purge(&self, retention: Duration, limit: usize) -> QueueResult<Sweep> {
        self.observe(
            "purge_tasks",
            self.store.purge_tasks(retention, limit).await,
        )
    }

    /// One cleanup pass: requeues every expired lease, then deletes every task finished
    /// more than `retention` ago, in batches of `batch` while the store says more are due.
    /// Corrupt tasks are skipped, logged and listed in the report.
    pub async fn cleanup(&self, retention: Duration, batch: usize) -> QueueResult<CleanupReport> {
        let batch = batch.max(1);
        let mut report = CleanupReport::default();
        loop {
            let sweep = self.requeue_expired(batch).await?;
            report.requeued += sweep.done;
            // A batch that moved nothing would be met again (all of it unreadable).
            let more = sweep.more && sweep.done > 0;
            note_corrupt(&mut report, sweep.corrupt);
            if !more {
                break;
            }
        }
        loop {
            let sweep = self.purge(retention, batch).await?;
            report.purged += sweep.done;
            // A batch that moved nothing would be met again (all of it unreadable).
            let more = sweep.more && sweep.done > 0;
            note_corrupt(&mut report, sweep.corrupt);
            if !more {
                break;
            }
        }
        self.metrics.cleanup_ran(report.purged);
        Ok(report)
    }

    /// Passes a store answer through, counting storage failures.
    pub(crate) fn observe<T>(
        &self,
        operation: &str,
        result: Result<T, StorageError>,
    ) -> QueueResult<T> {
        result.map_err(|e| {
            let e = QueueError::from(e);
            if matches!(e, QueueError::Storage(_)) {
                self.metrics.storage_error(operation);
            }
            e
        })
    }
}

/// Checks a task before it goes to the store.
fn check_new(task: &NewTask) -> QueueResult<()> {
    Ok(task.validate()?)
}

/// The outcome name of a failed attempt for metrics.
fn failure_outcome(receipt: &TaskReceipt) -> &'static str {
    if receipt.status == TaskStatus::Failed {
        "failed"
    } else {
        "retrying"
    }
}

/// Adds a batch's unreadable tasks to the report (each is reported by every batch that
/// meets it, so it is listed once).
fn note_corrupt(report: &mut CleanupReport, corrupt: Vec<String>) {
    for key in corrupt {
        if !report.corrupt.contains(&key) {
            tracing::warn!(key = %key, "task cleanup skipped a task it could not read");
            report.corrupt.push(key);
        }
    }
}
