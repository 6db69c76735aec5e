//! The idempotent task queue's store: submit with dedupe, fenced claims, leases that
//! expire by themselves.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use bgops_core::{Task, TaskStatus};
use serde_json::Value;
use time::OffsetDateTime;

use tokio::sync::watch;

use crate::StorageResult;

/// One claim to complete in [`TaskStore::complete_tasks`].
#[derive(Debug, Clone, PartialEq)]
pub struct TaskCompletion {
    /// The task.
    pub task_id: String,
    /// The claim's attempt number (fences the write, as in [`TaskStore::complete_task`]).
    pub attempt: u32,
    /// The result to store.
    pub result: Value,
}

/// A push signal that a queue may have claimable tasks (a submit, a release, a retry, a
/// failed attempt put back): a worker marks it seen, looks for tasks, and when it found
/// none waits for [`changed`](Self::changed) instead of polling. A signal sent between
/// the mark and the wait is not lost: the wait returns at once.
#[derive(Debug, Clone)]
pub struct TaskWakeup(watch::Receiver<u64>);

impl TaskWakeup {
    /// Marks every signal so far as seen (call it before looking for tasks).
    pub fn mark_seen(&mut self) {
        self.0.borrow_and_update();
    }

    /// Resolves at the first signal after the last [`mark_seen`](Self::mark_seen) (at
    /// once if one came since). Never resolves once the store dropped its sender.
    pub async fn changed(&mut self) {
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The sending side of [`TaskWakeup`]s, one channel per queue that someone waits on; a
/// store keeps one and calls [`notify`](Self::notify) whenever a task of a queue may have
/// become claimable. Notifying a queue nobody waits on costs a map look-up.
#[derive(Debug, Default)]
pub struct TaskSignals {
    queues: RwLock<HashMap<String, watch::Sender<u64>>>,
}

impl TaskSignals {
    /// A wakeup for `queue`.
    pub fn subscribe(&self, queue: &str) -> TaskWakeup {
        if let Some(tx) = self
            .queues
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(queue)
        {
            return TaskWakeup(tx.subscribe());
        }
        let mut queues = self.queues.write().unwrap_or_else(PoisonError::into_inner);
        let tx = queues
            .entry(queue.to_owned())
            .or_insert_with(|| watch::channel(0).0);
        TaskWakeup(tx.subscribe())
    }

    /// Whether someone ever subscribed to `queue` (a store may skip sending signals
    /// nobody listens to).
    pub fn is_watched(&self, queue: &str) -> bool {
        self.queues
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(queue)
    }

    /// Wakes every waiter of `queue`.
    pub fn notify(&self, queue: &str) {
        if let Some(tx) = self
            .queues
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(queue)
        {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

/// A task to submit.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    /// The queue.
    pub queue: String,
    /// The kind of task.
    pub task_type: String,
    /// Submitting again with this key (on the same queue) returns the first task.
    pub idempotency_key: Option<String>,
    /// The work to do.
    pub payload: Value,
    /// Attempts allowed in all (at least 1).
    pub max_attempts: u32,
    /// Not claimable before this much time has passed.
    pub delay: Option<Duration>,
}

impl NewTask {
    /// A task with 3 attempts, no key, no delay.
    pub fn new(queue: impl Into<String>, task_type: impl Into<String>, payload: Value) -> Self {
        Self {
            queue: queue.into(),
            task_type: task_type.into(),
            idempotency_key: None,
            payload,
            max_attempts: 3,
            delay: None,
        }
    }

    /// Sets the idempotency key.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Sets the number of attempts allowed.
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Checks every field; backends call this first (one rule for every backend).
    ///
    /// # Errors
    /// A [`CoreError`](bgops_core::CoreError) naming the bad field: an empty or over-long
    /// queue or task type, a bad idempotency key, zero attempts, or a delay over ten years.
    pub fn validate(&self) -> Result<(), bgops_core::CoreError> {
        use bgops_core::validate;
        validate::name("queue", &self.queue)?;
        validate::name("task_type", &self.task_type)?;
        if let Some(key) = &self.idempotency_key {
            validate::idempotency_key(key)?;
        }
        if self.max_attempts == 0 {
            return Err(bgops_core::CoreError::OutOfRange {
                field: "max_attempts",
                got: 0,
                expected: "at least 1 attempt",
            });
        }
        if let Some(delay) = self.delay.filter(|d| !d.is_zero()) {
            validate::duration("delay", delay)?;
        }
        Ok(())
    }

    /// Delays the first claim.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
}

/// The answer of [`TaskStore::submit_task`].
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    /// The task, new or existing.
    pub task: Task,
    /// `true` when the idempotency key was already used and the existing task is returned.
    pub duplicate: bool,
}

/// What a task write left: the receipt of complete, fail, renew, release and retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskReceipt {
    /// The task's status now.
    pub status: TaskStatus,
    /// Attempts counted so far.
    pub attempts: u32,
    /// While claimed: when the lease runs out (by the store's clock).
    pub lease_expires_at: Option<OffsetDateTime>,
    /// While pending: when it becomes claimable.
    pub available_at: OffsetDateTime,
    /// When the write happened (by the store's clock).
    pub updated_at: OffsetDateTime,
}

/// Which tasks [`TaskStore::list_tasks`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this status.
    pub status: Option<TaskStatus>,
    /// At most this many (0 means 100).
    pub limit: usize,
    /// Skip this many.
    pub offset: usize,
}

/// The task queue's store. Every state change is one atomic step; a claim's attempt
/// number fences completion, failure and renewal.
#[async_trait]
pub trait TaskStore: Send + Sync {
    /// Stores a new task, or returns the existing task with the same queue and key.
    ///
    /// # Errors
    /// [`StorageError::KeyConflict`](crate::StorageError::KeyConflict) when the key was used
    /// with another payload or task type.
    async fn submit_task(&self, task: NewTask) -> StorageResult<Submitted>;

    /// Claims this task for `worker_id` if it is claimable (pending and available, or
    /// claimed with an expired lease); `None` otherwise.
    async fn claim_task(
        &self,
        task_id: &str,
        worker_id: &str,
        lease: Duration,
    ) -> StorageResult<Option<Task>>;

    /// Claims the oldest claimable task of `queue`; `None` when there is none.
    async fn claim_next_task(
        &self,
        queue: &str,
        worker_id: &str,
        lease: Duration,
    ) -> StorageResult<Option<Task>>;

    /// Completes the claim `attempt` with `result`.
    ///
    /// # Errors
    /// [`StorageError::LeaseLost`](crate::StorageError::LeaseLost) when `attempt` is not
    /// the current claim.
    async fn complete_task(
        &self,
        task_id: &str,
        attempt: u32,
        result: Value,
    ) -> StorageResult<TaskReceipt>;

    /// Fails the claim `attempt`: back to `Pending`, claimable after `retry_after`, while
    /// attempts remain; `Failed` at the last.
    async fn fail_task(
        &self,
        task_id: &str,
        attempt: u32,
        error: &str,
        retry_after: Duration,
    ) -> StorageResult<TaskReceipt>;

    /// Extends the claim `attempt` to `lease` from now.
    async fn renew_task_lease(
        &self,
        task_id: &str,
        attempt: u32,
        lease: Duration,
    ) -> StorageResult<TaskReceipt>;

    /// Gives the claim `attempt` back (graceful shutdown): `Pending` again at once, and the
    /// released attempt does not count against `max_attempts`.
    async fn release_task(&self, task_id: &str, attempt: u32) -> StorageResult<TaskReceipt>;

    /// Puts a `Failed` task back to `Pending` with a fresh set of attempts.
    async fn retry_task(&self, task_id: &str) -> StorageResult<TaskReceipt>;

    /// The task, if it exists.
    async fn get_task(&self, task_id: &str) -> StorageResult<Option<Task>>;

    /// The task submitted with this queue and key, if any.
    async fn get_task_by_key(&self, queue: &str, key: &str) -> StorageResult<Option<Task>>;

    /// Tasks matching `filter`, oldest first, through an index.
    async fn list_tasks(&self, filter: &TaskFilter) -> StorageResult<Vec<Task>>;

    /// Deletes the task and its key; `true` if it existed.
    async fn delete_task(&self, task_id: &str) -> StorageResult<bool>;

    /// Returns up to `limit` tasks whose lease expired to `Pending` (or `Failed` at their
    /// last attempt). Claims also do this lazily, so a dead worker's task comes back
    /// without anyone calling this. A task that cannot be read is skipped and named in
    /// [`Sweep::corrupt`](crate::Sweep), never stopping the batch.
    async fn requeue_expired_tasks(&self, limit: usize) -> StorageResult<crate::Sweep>;

    /// Deletes up to `limit` `Completed` or `Failed` tasks finished more than `older_than`
    /// ago (corrupt ones are skipped and named, as in `requeue_expired_tasks`).
    async fn purge_tasks(&self, older_than: Duration, limit: usize) -> StorageResult<crate::Sweep>;

    /// Fails the claim `attempt` for good (a permanent error): `Failed` at once, whatever
    /// attempts remain; one atomic step.
    ///
    /// # Errors
    /// [`StorageError::LeaseLost`](crate::StorageError::LeaseLost) when `attempt` is not
    /// the current claim.
    async fn fail_task_permanently(
        &self,
        task_id: &str,
        attempt: u32,
        error: &str,
    ) -> StorageResult<TaskReceipt>;

    /// Submits several tasks, each as [`submit_task`](Self::submit_task) would (dedupe by
    /// key included), in one round trip where the store can; one answer per task, in
    /// order. The outer error means nothing is known about any of them.
    ///
    /// The default calls `submit_task` for each.
    async fn submit_tasks(
        &self,
        tasks: Vec<NewTask>,
    ) -> StorageResult<Vec<StorageResult<Submitted>>> {
        let mut answers = Vec::with_capacity(tasks.len());
        for task in tasks {
            answers.push(self.submit_task(task).await);
        }
        Ok(answers)
    }

    /// Claims up to `max` claimable tasks of `queue`, oldest first, each as
    /// [`claim_next_task`](Self::claim_next_task) would, in one round trip where the
    /// store can. Fewer (or none) when fewer are claimable.
    ///
    /// The default calls `claim_next_task` until it answers `None` or `max` are claimed.
    async fn claim_next_tasks(
        &self,
        queue: &str,
        worker_id: &str,
        lease: Duration,
        max: usize,
    ) -> StorageResult<Vec<Task>> {
        let mut claimed = Vec::new();
        while claimed.len() < max {
            match self.claim_next_task(queue, worker_id, lease).await? {
                Some(task) => claimed.push(task),
                None => break,
            }
        }
        Ok(claimed)
    }

    /// Completes several claims, each as [`complete_task`](Self::complete_task) would
    /// (fenced by its attempt), in one round trip where the store can; one answer per
    /// claim, in order. The outer error means nothing is known about any of them.
    ///
    /// The default calls `complete_task` for each.
    async fn complete_tasks(
        &self,
        done: Vec<TaskCompletion>,
    ) -> StorageResult<Vec<StorageResult<TaskReceipt>>> {
        let mut answers = Vec::with_capacity(done.len());
        for c in done {
            answers.push(self.complete_task(&c.task_id, c.attempt, c.result).await);
        }
        Ok(answers)
    }

    /// A push signal for `queue` ([`TaskWakeup`]), or `None` when the store has none (the
    /// default): workers then poll. A store that has one sends it at least when a task of
    /// the queue is submitted, released or put back by a retry; tasks that become
    /// claimable by time alone (a delay, a backoff, an expired lease) may go unsignalled,
    /// so a worker still polls, only less often.
    fn task_wakeup(&self, queue: &str) -> Option<TaskWakeup> {
        let _ = queue;
        None
    }
}
