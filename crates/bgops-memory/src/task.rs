//! The task queue: one table with its indexes under one mutex, so a claim, its history
//! entry and its index moves are one atomic step. Per-queue sets ordered by availability
//! and by lease expiry make `claim_next_task` and the expiry sweeps cheap range reads
//! instead of scans.
//!
//! Attempt numbers are positions in the task's history (1-based): every claim appends an
//! entry, so they never repeat, while `attempts` counts only the attempts that use up
//! `max_attempts` (a released claim does not). A `max_attempts` of 0 is rejected (`NewTask::validate`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use bgops_core::{Task, TaskAttempt, TaskLease, TaskStatus, validate};
use bgops_storage::{
    NewTask, StorageError, StorageResult, Submitted, Sweep, TaskCompletion, TaskFilter,
    TaskReceipt, TaskStore, TaskWakeup,
};
use serde_json::Value;
use time::OffsetDateTime;

use crate::MemoryStorage;
use crate::deadline::{after, before};

const KIND: &str = "task";
const DEFAULT_PAGE: usize = 100;

/// A time and the task's insertion sequence: ordered by time, ties by age.
type Timed = (OffsetDateTime, u64);

/// Every task, keyed by insertion sequence, and the indexes over them.
#[derive(Debug, Default)]
pub(crate) struct TaskTables {
    tasks: HashMap<u64, Task>,
    ids: HashMap<String, u64>,
    keys: HashMap<(String, String), u64>,
    next_seq: u64,
    index: TaskIndex,
}

#[derive(Debug, Default)]
struct TaskIndex {
    all: BTreeSet<u64>,
    by_queue: HashMap<String, BTreeSet<u64>>,
    by_status: HashMap<TaskStatus, BTreeSet<u64>>,
    by_queue_status: HashMap<(String, TaskStatus), BTreeSet<u64>>,
    /// Pending tasks per queue, by `available_at`.
    ready: HashMap<String, BTreeSet<Timed>>,
    /// Claimed tasks by lease expiry, everywhere and per queue.
    leases: BTreeSet<Timed>,
    queue_leases: HashMap<String, BTreeSet<Timed>>,
    /// Completed and Failed tasks by `finished_at`.
    finished: BTreeSet<Timed>,
}

fn insert<K: Eq + std::hash::Hash, T: Ord>(map: &mut HashMap<K, BTreeSet<T>>, key: K, item: T) {
    map.entry(key).or_default().insert(item);
}

fn remove<K, Q, T>(map: &mut HashMap<K, BTreeSet<T>>, key: &Q, item: &T)
where
    K: Eq + std::hash::Hash + std::borrow::Borrow<Q>,
    Q: Eq + std::hash::Hash + ?Sized,
    T: Ord,
{
    if let Some(set) = map.get_mut(key) {
        set.remove(item);
        if set.is_empty() {
            map.remove(key);
        }
    }
}

impl TaskIndex {
    fn add(&mut self, seq: u64, task: &Task) {
        self.all.insert(seq);
        insert(&mut self.by_queue, task.queue.clone(), seq);
        self.place(seq, task);
    }

    /// The entries that depend on the task's state (all but `all` and `by_queue`).
    fn place(&mut self, seq: u64, task: &Task) {
        insert(&mut self.by_status, task.status, seq);
        insert(
            &mut self.by_queue_status,
            (task.queue.clone(), task.status),
            seq,
        );
        match (task.status, &task.lease, task.finished_at) {
            (TaskStatus::Pending, _, _) => insert(
                &mut self.ready,
                task.queue.clone(),
                (task.available_at, seq),
            ),
            (TaskStatus::Claimed, Some(lease), _) => {
                self.leases.insert((lease.expires_at, seq));
                insert(
                    &mut self.queue_leases,
                    task.queue.clone(),
                    (lease.expires_at, seq),
                );
            }
            (TaskStatus::Completed | TaskStatus::Failed, _, Some(at)) => {
                self.finished.insert((at, seq));
            }
            _ => {}
        }
    }

    fn remove(&mut self, seq: u64, task: &Task) {
        self.all.remove(&seq);
        remove(&mut self.by_queue, task.queue.as_str(), &seq);
        self.unplace(seq, task);
    }

    /// Removes what [`place`](Self::place) added.
    fn unplace(&mut self, seq: u64, task: &Task) {
        remove(&mut self.by_status, &task.status, &seq);
        remove(
            &mut self.by_queue_status,
            &(task.queue.clone(), task.status),
            &seq,
        );
        remove(
            &mut self.ready,
            task.queue.as_str(),
            &(task.available_at, seq),
        );
        if let Some(lease) = &task.lease {
            self.leases.remove(&(lease.expires_at, seq));
            remove(
                &mut self.queue_leases,
                task.queue.as_str(),
                &(lease.expires_at, seq),
            );
        }
        if let Some(at) = task.finished_at {
            self.finished.remove(&(at, seq));
        }
    }
}

impl TaskTables {
    /// Tasks by status name.
    pub(crate) fn counts(&self) -> BTreeMap<String, u64> {
        self.index
            .by_status
            .iter()
            .map(|(status, set)| (status.as_str().to_owned(), set.len() as u64))
            .collect()
    }

    fn seq(&self, task_id: &str) -> StorageResult<u64> {
        self.ids
            .get(task_id)
            .copied()
            .ok_or_else(|| StorageError::NotFound {
                kind: KIND,
                id: task_id.to_owned(),
            })
    }

    /// Runs `change` on the task, moving its index entries along (a task never changes
    /// queue, so its entries in `all` and `by_queue` stay where they are).
    fn modify<R>(&mut self, seq: u64, change: impl FnOnce(&mut Task) -> R) -> Option<R> {
        let task = self.tasks.get_mut(&seq)?;
        self.index.unplace(seq, task);
        let result = change(task);
        self.index.place(seq, task);
        Some(result)
    }

    fn snapshot(&self, seq: u64) -> Option<Task> {
        self.tasks.get(&seq).cloned()
    }

    /// The receipt of a write to the task at `seq`.
    fn receipt(&self, seq: u64, task_id: &str) -> StorageResult<TaskReceipt> {
        let task = self.tasks.get(&seq).ok_or_else(|| StorageError::NotFound {
            kind: KIND,
            id: task_id.to_owned(),
        })?;
        Ok(TaskReceipt {
            status: task.status,
            attempts: task.attempts,
            lease_expires_at: task.lease.as_ref().map(|lease| lease.expires_at),
            available_at: task.available_at,
            updated_at: task.updated_at,
        })
    }

    /// Ends the claims among `due` (sequence numbers whose lease ran out); returns how many.
    fn expire(&mut self, due: Vec<u64>) -> u64 {
        let mut moved = 0;
        for seq in due {
            moved += u64::from(self.modify(seq, expire_claim).is_some());
        }
        moved
    }

    /// Ends this task's claim if its lease ran out.
    fn expire_if_due(&mut self, seq: u64, now: OffsetDateTime) {
        let due = self.tasks.get(&seq).is_some_and(|task| {
            task.status == TaskStatus::Claimed
                && task.lease.as_ref().is_some_and(|l| now >= l.expires_at)
        });
        if due {
            self.modify(seq, expire_claim);
        }
    }

    /// The task if `attempt` holds its live claim (an expired claim is ended first).
    fn claimed_by(
        &mut self,
        task_id: &str,
        attempt: u32,
        now: OffsetDateTime,
    ) -> StorageResult<u64> {
        let seq = self.seq(task_id)?;
        self.expire_if_due(seq, now);
        let holds = self.tasks.get(&seq).is_some_and(|task| {
            task.status == TaskStatus::Claimed
                && task.lease.as_ref().is_some_and(|l| l.attempt == attempt)
        });
        if holds {
            Ok(seq)
        } else {
            Err(StorageError::LeaseLost {
                kind: KIND,
                id: task_id.to_owned(),
            })
        }
    }

    fn claim(
        &mut self,
        seq: u64,
        worker_id: &str,
        until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Option<Task> {
        self.modify(seq, |task| {
            let attempt = task.history.len() as u32 + 1;
            task.attempts += 1;
            task.status = TaskStatus::Claimed;
            task.lease = Some(TaskLease {
                worker_id: worker_id.to_owned(),
                attempt,
                expires_at: until,
            });
            task.history.push(TaskAttempt {
                attempt,
                worker_id: worker_id.to_owned(),
                claimed_at: now,
                finished_at: None,
                outcome: None,
                error: None,
            });
            task.updated_at = now;
            task.clone()
        })
    }

    /// Stores a new task, or answers the one with the same queue and key.
    fn submit(
        &mut self,
        new: NewTask,
        now: OffsetDateTime,
        available_at: OffsetDateTime,
        ids: &dyn bgops_core::IdGenerator,
    ) -> StorageResult<Submitted> {
        if let Some(key) = &new.idempotency_key {
            if let Some(existing) = self
                .keys
                .get(&(new.queue.clone(), key.clone()))
                .and_then(|seq| self.tasks.get(seq))
            {
                if existing.payload != new.payload || existing.task_type != new.task_type {
                    return Err(StorageError::KeyConflict {
                        kind: KIND,
                        key: key.clone(),
                    });
                }
                return Ok(Submitted {
                    task: existing.clone(),
                    duplicate: true,
                });
            }
        }
        let task = Task {
            task_id: ids.sortable_id(),
            queue: new.queue,
            task_type: new.task_type,
            idempotency_key: new.idempotency_key,
            payload: new.payload,
            status: TaskStatus::Pending,
            attempts: 0,
            max_attempts: new.max_attempts,
            result: None,
            error: None,
            lease: None,
            history: Vec::new(),
            created_at: now,
            updated_at: now,
            available_at,
            finished_at: None,
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.index.add(seq, &task);
        self.ids.insert(task.task_id.clone(), seq);
        if let Some(key) = &task.idempotency_key {
            self.keys.insert((task.queue.clone(), key.clone()), seq);
        }
        self.tasks.insert(seq, task.clone());
        Ok(Submitted {
            task,
            duplicate: false,
        })
    }

    /// Claims up to `max` of the oldest claimable tasks of `queue`; expired claims of the
    /// queue come back first (a dead worker's task returns without a sweeper).
    fn claim_next(
        &mut self,
        queue: &str,
        worker_id: &str,
        until: OffsetDateTime,
        now: OffsetDateTime,
        max: usize,
    ) -> Vec<Task> {
        let due: Vec<u64> = self
            .index
            .queue_leases
            .get(queue)
            .map(|set| {
                set.iter()
                    .take_while(|(at, _)| *at <= now)
                    .map(|(_, seq)| *seq)
                    .collect()
            })
            .unwrap_or_default();
        self.expire(due);
        let next: Vec<u64> = self
            .index
            .ready
            .get(queue)
            .map(|set| {
                set.iter()
                    .take_while(|(available_at, _)| *available_at <= now)
                    .take(max)
                    .map(|(_, seq)| *seq)
                    .collect()
            })
            .unwrap_or_default();
        next.into_iter()
            .filter_map(|seq| self.claim(seq, worker_id, until, now))
            .collect()
    }

    /// Completes the claim `attempt` of the task.
    fn complete(
        &mut self,
        task_id: &str,
        attempt: u32,
        result: Value,
        now: OffsetDateTime,
    ) -> StorageResult<TaskReceipt> {
        let seq = self.claimed_by(task_id, attempt, now)?;
        self.modify(seq, |task| {
            end_attempt(task, now, "completed", None);
            task.status = TaskStatus::Completed;
            task.result = Some(result);
            task.finished_at = Some(now);
        });
        self.receipt(seq, task_id)
    }

    /// Gives memory back after a large sweep: tables that fell well below their capacity
    /// are shrunk (a quarter full or less, so alternating growth and shrinkage does not
    /// reallocate every time).
    fn shrink(&mut self) {
        shrink_map(&mut self.tasks);
        shrink_map(&mut self.ids);
        shrink_map(&mut self.keys);
    }

    fn remove_task(&mut self, seq: u64) -> bool {
        let Some(task) = self.tasks.remove(&seq) else {
            return false;
        };
        self.index.remove(seq, &task);
        self.ids.remove(&task.task_id);
        if let Some(key) = task.idempotency_key {
            let address = (task.queue, key);
            if self.keys.get(&address) == Some(&seq) {
                self.keys.remove(&address);
            }
        }
        true
    }
}

/// Closes the current attempt's history entry and drops the lease.
fn end_attempt(task: &mut Task, at: OffsetDateTime, outcome: &str, error: Option<&str>) {
    if let Some(entry) = task.history.last_mut() {
        entry.finished_at = Some(at);
        entry.outcome = Some(outcome.to_owned());
        entry.error = error.map(str::to_owned);
    }
    task.lease = None;
    task.updated_at = at;
}

/// A claim whose lease ran out: back to Pending, or Failed if it was the last attempt.
fn expire_claim(task: &mut Task) {
    let Some(expired_at) = task.lease.as_ref().map(|lease| lease.expires_at) else {
        return;
    };
    end_attempt(task, expired_at, "lease_expired", None);
    if task.attempts >= task.max_attempts {
        task.status = TaskStatus::Failed;
        task.error = Some(format!(
            "lease expired at attempt {} of {}",
            task.attempts, task.max_attempts
        ));
        task.finished_at = Some(expired_at);
    } else {
        task.status = TaskStatus::Pending;
        task.available_at = expired_at;
    }
}

/// Shrinks `map` when it is a quarter full or less.
fn shrink_map<K: Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > 64 && map.len() <= map.capacity() / 4 {
        map.shrink_to(map.len() * 2);
    }
}

fn check_new(new: &NewTask) -> StorageResult<()> {
    new.validate()?;
    Ok(())
}

fn validate_claim(worker_id: &str, lease: Duration) -> StorageResult<()> {
    validate::name("worker_id", worker_id)?;
    validate::duration("lease", lease)?;
    Ok(())
}

#[async_trait]
impl TaskStore for MemoryStorage {
    async fn submit_task(&self, new: NewTask) -> StorageResult<Submitted> {
        check_new(&new)?;
        let now = self.now();
        let available_at = after(now, "delay", new.delay.unwrap_or_default())?;
        let queue = new.queue.clone();
        let submitted = {
            let mut tables = self.inner.tasks.lock();
            tables.submit(new, now, available_at, &*self.inner.ids)?
        };
        if !submitted.duplicate {
            self.inner.task_signals.notify(&queue);
        }
        Ok(submitted)
    }

    async fn submit_tasks(
        &self,
        tasks: Vec<NewTask>,
    ) -> StorageResult<Vec<StorageResult<Submitted>>> {
        let now = self.now();
        let mut answers = Vec::with_capacity(tasks.len());
        let mut woken: Vec<String> = Vec::new();
        {
            let mut tables = self.inner.tasks.lock();
            for new in tasks {
                let queue = new.queue.clone();
                let answer = check_new(&new)
                    .and_then(|()| after(now, "delay", new.delay.unwrap_or_default()))
                    .and_then(|available_at| {
                        tables.submit(new, now, available_at, &*self.inner.ids)
                    });
                if answer.as_ref().is_ok_and(|s| !s.duplicate) && !woken.contains(&queue) {
                    woken.push(queue);
                }
                answers.push(answer);
            }
        }
        for queue in &woken {
            self.inner.task_signals.notify(queue);
        }
        Ok(answers)
    }

    async fn claim_next_tasks(
        &self,
        queue: &str,
        worker_id: &str,
        lease: Duration,
        max: usize,
    ) -> StorageResult<Vec<Task>> {
        validate::name("queue", queue)?;
        validate_claim(worker_id, lease)?;
        let mut tables = self.inner.tasks.lock();
        let now = self.now();
        let until = after(now, "lease", lease)?;
        Ok(tables.claim_next(queue, worker_id, until, now, max))
    }

    async fn complete_tasks(
        &self,
        done: Vec<TaskCompletion>,
    ) -> StorageResult<Vec<StorageResult<TaskReceipt>>> {
        let now = self.now();
        let mut tables = self.inner.tasks.lock();
        Ok(done
            .into_iter()
            .map(|c| tables.complete(&c.task_id, c.attempt, c.result, now))
            .collect())
    }

    fn task_wakeup(&self, queue: &str) -> Option<TaskWakeup> {
        Some(self.inner.task_signals.subscribe(queue))
    }

    async fn claim_task(
        &self,
        task_id: &str,
        worker_id: &str,
        lease: Duration,
    ) -> StorageResult<Option<Task>> {
        validate_claim(worker_id, lease)?;
        let mut tables = self.inner.tasks.lock();
        // Under the lock, as in `claim_next_task`.
        let now = self.now();
        let until = after(now, "lease", lease)?;
        let Ok(seq) = tables.seq(task_id) else {
            return Ok(None);
        };
        tables.expire_if_due(seq, now);
        let claimable = tables
            .tasks
            .get(&seq)
            .is_some_and(|task| task.status == TaskStatus::Pending && task.available_at <= now);
        Ok(if claimable {
            tables.claim(seq, worker_id, until, now)
        } else {
            None
        })
    }

    async fn claim_next_task(
        &self,
        queue: &str,
        worker_id: &str,
        lease: Duration,
    ) -> StorageResult<Option<Task>> {
        validate::name("queue", queue)?;
        validate_claim(worker_id, lease)?;
        let mut tables = self.inner.tasks.lock();
        // The clock is read under the lock: read before it, a claim racing a submit could
        // compare the submitted task's `available_at` with an earlier "now" and miss it.
        let now = self.now();
        let until = after(now, "lease", lease)?;
        Ok(tables.claim_next(queue, worker_id, until, now, 1).pop())
    }

    async fn complete_task(
        &self,
        task_id: &str,
        attempt: u32,
        result: Value,
    ) -> StorageResult<TaskReceipt> {
        let now = self.now();
        self.inner
            .tasks
            .lock()
            .complete(task_id, attempt, result, now)
    }

    async fn fail_task(
        &self,
        task_id: &str,
        attempt: u32,
        error: &str,
        retry_after: Duration,
    ) -> StorageResult<TaskReceipt> {
        let now = self.now();
        let retry_at = after(now, "retry_after", retry_after)?;
        let mut tables = self.inner.tasks.lock();
        let seq = tables.claimed_by(task_id, attempt, now)?;
        tables.modify(seq, |task| {
            end_attempt(task, now, "failed", Some(error));
            task.error = Some(error.to_owned());
            if task.attempts >= task.max_attempts {
                task.status = TaskStatus::Failed;
                task.finished_at = Some(now);
            } else {
                task.status = TaskStatus::Pending;
                task.available_at = retry_at;
            }
        });
        tables.receipt(seq, task_id)
    }

    async fn fail_task_permanently(
        &self,
        task_id: &str,
        attempt: u32,
        error: &str,
    ) -> StorageResult<TaskReceipt> {
        let now = self.now();
        let mut tables = self.inner.tasks.lock();
        let seq = tables.claimed_by(task_id, attempt, now)?;
        tables.modify(seq, |task| {
            end_attempt(task, now, "failed", Some(error));
            task.error = Some(error.to_owned());
            task.status = TaskStatus::Failed;
            task.finished_at = Some(now);
        });
        tables.receipt(seq, task_id)
    }

    async fn renew_task_lease(
        &self,
        task_id: &str,
        attempt: u32,
        lease: Duration,
    ) -> StorageResult<TaskReceipt> {
        validate::duration("lease", lease)?;
        let now = self.now();
        let until = after(now, "lease", lease)?;
        let mut tables = self.inner.tasks.lock();
        let seq = tables.claimed_by(task_id, attempt, now)?;
        tables.modify(seq, |task| {
            if let Some(lease) = &mut task.lease {
                lease.expires_at = until;
            }
            task.updated_at = now;
        });
        tables.receipt(seq, task_id)
    }

    async fn release_task(&self, task_id: &str, attempt: u32) -> StorageResult<TaskReceipt> {
        let now = self.now();
        let mut tables = self.inner.tasks.lock();
        let seq = tables.claimed_by(task_id, attempt, now)?;
        let queue = tables.modify(seq, |task| {
            end_attempt(task, now, "released", None);
            task.attempts = task.attempts.saturating_sub(1);
            task.status = TaskStatus::Pending;
            task.available_at = now;
            task.queue.clone()
        });
        let receipt = tables.receipt(seq, task_id);
        drop(tables);
        if let Some(queue) = queue {
            self.inner.task_signals.notify(&queue);
        }
        receipt
    }

    async fn retry_task(&self, task_id: &str) -> StorageResult<TaskReceipt> {
        let now = self.now();
        let mut tables = self.inner.tasks.lock();
        let seq = tables.seq(task_id)?;
        tables.expire_if_due(seq, now);
        let status = tables.tasks.get(&seq).map(|task| task.status);
        if status != Some(TaskStatus::Failed) {
            return Err(StorageError::InvalidState {
                kind: KIND,
                id: task_id.to_owned(),
                state: status.map_or("missing", TaskStatus::as_str).to_owned(),
                action: "retry",
            });
        }
        let queue = tables.modify(seq, |task| {
            task.status = TaskStatus::Pending;
            task.attempts = 0;
            task.available_at = now;
            task.finished_at = None;
            task.updated_at = now;
            task.queue.clone()
        });
        let receipt = tables.receipt(seq, task_id);
        drop(tables);
        if let Some(queue) = queue {
            self.inner.task_signals.notify(&queue);
        }
        receipt
    }

    async fn get_task(&self, task_id: &str) -> StorageResult<Option<Task>> {
        let tables = self.inner.tasks.lock();
        Ok(tables
            .ids
            .get(task_id)
            .and_then(|seq| tables.snapshot(*seq)))
    }

    async fn get_task_by_key(&self, queue: &str, key: &str) -> StorageResult<Option<Task>> {
        let tables = self.inner.tasks.lock();
        Ok(tables
            .keys
            .get(&(queue.to_owned(), key.to_owned()))
            .and_then(|seq| tables.snapshot(*seq)))
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> StorageResult<Vec<Task>> {
        let limit = if filter.limit == 0 {
            DEFAULT_PAGE
        } else {
            filter.limit
        };
        let tables = self.inner.tasks.lock();
        let index = &tables.index;
        let set = match (&filter.queue, filter.status) {
            (Some(queue), Some(status)) => index.by_queue_status.get(&(queue.clone(), status)),
            (Some(queue), None) => index.by_queue.get(queue),
            (None, Some(status)) => index.by_status.get(&status),
            (None, None) => Some(&index.all),
        };
        Ok(set
            .into_iter()
            .flatten()
            .skip(filter.offset)
            .take(limit)
            .filter_map(|seq| tables.snapshot(*seq))
            .collect())
    }

    async fn delete_task(&self, task_id: &str) -> StorageResult<bool> {
        let mut tables = self.inner.tasks.lock();
        let Ok(seq) = tables.seq(task_id) else {
            return Ok(false);
        };
        Ok(tables.remove_task(seq))
    }

    async fn requeue_expired_tasks(&self, limit: usize) -> StorageResult<Sweep> {
        let mut tables = self.inner.tasks.lock();
        // Read under the lock: a lease set by a call that took the lock just before this
        // one is compared with a "now" no earlier than its own.
        let now = self.now();
        let mut due: Vec<u64> = tables
            .index
            .leases
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(limit.saturating_add(1))
            .map(|(_, seq)| *seq)
            .collect();
        let more = due.len() > limit;
        due.truncate(limit);
        let done = tables.expire(due);
        tables.shrink();
        Ok(Sweep {
            done,
            corrupt: Vec::new(),
            more,
        })
    }

    async fn purge_tasks(&self, older_than: Duration, limit: usize) -> StorageResult<Sweep> {
        let mut tables = self.inner.tasks.lock();
        let cutoff = before(self.now(), older_than);
        let mut old: Vec<u64> = tables
            .index
            .finished
            .iter()
            .take_while(|(at, _)| *at < cutoff)
            .take(limit.saturating_add(1))
            .map(|(_, seq)| *seq)
            .collect();
        let more = old.len() > limit;
        old.truncate(limit);
        let mut done = 0;
        for seq in old {
            done += u64::from(tables.remove_task(seq));
        }
        tables.shrink();
        Ok(Sweep {
            done,
            corrupt: Vec::new(),
            more,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bgops_core::ManualClock;
    use serde_json::json;

    use super::*;

    /// Every index holds exactly the tasks it should, at the position it should.
    fn check_indexes(tables: &TaskTables) {
        let index = &tables.index;
        assert_eq!(index.all.len(), tables.tasks.len());
        assert_eq!(tables.ids.len(), tables.tasks.len());
        let sizes = |m: &HashMap<_, BTreeSet<_>>| m.values().map(BTreeSet::len).sum::<usize>();
        assert_eq!(sizes(&index.by_queue), tables.tasks.len());
        assert_eq!(
            index.by_status.values().map(BTreeSet::len).sum::<usize>(),
            tables.tasks.len()
        );
        assert_eq!(
            index
                .by_queue_status
                .values()
                .map(BTreeSet::len)
                .sum::<usize>(),
            tables.tasks.len()
        );
        let (mut ready, mut claimed, mut finished) = (0, 0, 0);
        for (seq, task) in &tables.tasks {
            assert_eq!(tables.ids.get(&task.task_id), Some(seq));
            assert!(index.by_queue_status[&(task.queue.clone(), task.status)].contains(seq));
            match task.status {
                TaskStatus::Pending => {
                    ready += 1;
                    assert!(task.lease.is_none());
                    assert!(index.ready[&task.queue].contains(&(task.available_at, *seq)));
                }
                TaskStatus::Claimed => {
                    claimed += 1;
                    let lease = task.lease.as_ref().expect("a claimed task has a lease");
                    assert_eq!(lease.attempt as usize, task.history.len());
                    assert!(index.leases.contains(&(lease.expires_at, *seq)));
                    assert!(index.queue_leases[&task.queue].contains(&(lease.expires_at, *seq)));
                }
                TaskStatus::Completed | TaskStatus::Failed => {
                    finished += 1;
                    assert!(task.lease.is_none());
                    assert!(
                        index
                            .finished
                            .contains(&(task.finished_at.expect("finished"), *seq))
                    );
                }
            }
            assert!(task.attempts <= task.max_attempts);
        }
        assert_eq!(
            index.ready.values().map(BTreeSet::len).sum::<usize>(),
            ready
        );
        let queue_leases = index
            .queue_leases
            .values()
            .map(BTreeSet::len)
            .sum::<usize>();
        assert_eq!((index.leases.len(), queue_leases), (claimed, claimed));
        assert_eq!(index.finished.len(), finished);
        for (address, seq) in &tables.keys {
            let task = &tables.tasks[seq];
            assert_eq!(
                (&task.queue, task.idempotency_key.as_ref()),
                (&address.0, Some(&address.1))
            );
        }
    }

    /// A long pseudo-random mix of every operation keeps the indexes exact.
    #[tokio::test]
    async fn indexes_stay_exact_under_a_random_mix_of_operations() {
        let clock = ManualClock::new();
        let store = MemoryStorage::with_clock(Arc::new(clock.clone()));
        let lease = Duration::from_secs(10);
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: u64| {
            // xorshift64: deterministic, no dependency.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let mut held: Vec<(String, u32)> = Vec::new();
        for step in 0..3_000 {
            let queue = format!("q{}", next(3));
            match next(10) {
                0 | 1 => {
                    let mut new =
                        NewTask::new(&queue, "t", json!(next(5))).max_attempts(1 + next(3) as u32);
                    if next(2) == 0 {
                        new = new.idempotency_key(format!("k{}", next(40)));
                    }
                    let _conflict_is_fine = store.submit_task(new).await;
                }
                2 | 3 => {
                    if let Some(task) = store.claim_next_task(&queue, "w", lease).await.unwrap() {
                        held.push((task.task_id.clone(), task.lease.unwrap().attempt));
                    }
                }
                4 | 5 if !held.is_empty() => {
                    let (id, attempt) = held.swap_remove(next(held.len() as u64) as usize);
                    let _lost_is_fine = match next(4) {
                        0 => store.complete_task(&id, attempt, json!(step)).await,
                        1 => {
                            store
                                .fail_task(&id, attempt, "boom", Duration::from_secs(next(5)))
                                .await
                        }
                        2 => store.release_task(&id, attempt).await,
                        _ => store.renew_task_lease(&id, attempt, lease).await,
                    };
                }
                6 => clock.advance(Duration::from_secs(next(8))),
                7 => {
                    store.requeue_expired_tasks(next(4) as usize).await.unwrap();
                }
                8 => {
                    let failed = TaskFilter {
                        status: Some(TaskStatus::Failed),
                        limit: 1,
                        ..TaskFilter::default()
                    };
                    if let Some(task) = store.list_tasks(&failed).await.unwrap().pop() {
                        store.retry_task(&task.task_id).await.unwrap();
                    }
                }
                _ => {
                    if next(2) == 0 {
                        store
                            .purge_tasks(Duration::from_secs(next(20)), 3)
                            .await
                            .unwrap();
                    } else if let Some(task) = store
                        .list_tasks(&TaskFilter::default())
                        .await
                        .unwrap()
                        .first()
                    {
                        store.delete_task(&task.task_id).await.unwrap();
                    }
                }
            }
            check_indexes(&store.inner.tasks.lock());
        }
        assert!(
            !store.inner.tasks.lock().tasks.is_empty(),
            "the mix kept some tasks"
        );
    }

    /// A large `purge_tasks` gives the tables' memory back.
    #[tokio::test]
    async fn a_large_purge_shrinks_the_tables() {
        let clock = ManualClock::new();
        let store = MemoryStorage::with_clock(Arc::new(clock.clone()));
        for n in 0..5_000 {
            let new = NewTask::new("q", "t", json!(n)).idempotency_key(format!("k{n}"));
            store.submit_task(new).await.unwrap();
        }
        while let Some(task) = store
            .claim_next_task("q", "w", Duration::from_secs(10))
            .await
            .unwrap()
        {
            let attempt = task.lease.unwrap().attempt;
            store
                .complete_task(&task.task_id, attempt, json!(1))
                .await
                .unwrap();
        }
        let full = store.inner.tasks.lock().tasks.capacity();
        assert!(full >= 5_000);
        clock.advance(Duration::from_secs(60));
        loop {
            let sweep = store
                .purge_tasks(Duration::from_secs(30), 1_000)
                .await
                .unwrap();
            if !sweep.more {
                break;
            }
        }
        let tables = store.inner.tasks.lock();
        assert!(tables.tasks.is_empty());
        for capacity in [
            tables.tasks.capacity(),
            tables.ids.capacity(),
            tables.keys.capacity(),
        ] {
            assert!(
                capacity <= 64,
                "capacity {capacity} after the purge (was {full})"
            );
        }
        check_indexes(&tables);
    }
}
