//! TEMPORARY stand-in for `bgops_memory::MemoryStorage` until it implements `TaskStore`.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use bgops_core::{SharedClock, Task, TaskAttempt, TaskLease, TaskStatus};
use bgops_storage::{NewTask, StorageError, StorageResult, Submitted, TaskFilter, TaskStore};
use serde_json::Value;
use std::sync::Mutex;

#[derive(Debug)]
pub struct FakeStore {
    clock: SharedClock,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    tasks: HashMap<String, Task>,
    keys: HashMap<(String, String), String>,
    seq: u64,
}

impl FakeStore {
    pub fn new(clock: SharedClock) -> Self {
        Self {
            clock,
            inner: Mutex::new(Inner::default()),
        }
    }
}

fn d(x: Duration) -> time::Duration {
    time::Duration::try_from(x).unwrap()
}

fn lost(id: &str) -> StorageError {
    StorageError::LeaseLost {
        kind: "task",
        id: id.into(),
    }
}

fn expire(t: &mut Task, now: time::OffsetDateTime) {
    if t.status == TaskStatus::Claimed && t.lease.as_ref().is_some_and(|l| l.expires_at <= now) {
        if let Some(h) = t.history.last_mut() {
            h.outcome = Some("lease_expired".into());
            h.finished_at = Some(now);
        }
        t.lease = None;
        if t.attempts >= t.max_attempts {
            t.status = TaskStatus::Failed;
            t.finished_at = Some(now);
            t.error = Some("lease expired".into());
        } else {
            t.status = TaskStatus::Pending;
            t.available_at = now;
        }
        t.updated_at = now;
    }
}

fn claim(t: &mut Task, worker: &str, lease: Duration, now: time::OffsetDateTime) -> Option<Task> {
    expire(t, now);
    if t.status != TaskStatus::Pending || t.available_at > now {
        return None;
    }
    t.attempts += 1;
    t.status = TaskStatus::Claimed;
    t.lease = Some(TaskLease {
        worker_id: worker.into(),
        attempt: t.attempts,
        expires_at: now + d(lease),
    });
    t.history.push(TaskAttempt {
        attempt: t.attempts,
        worker_id: worker.into(),
        claimed_at: now,
        finished_at: None,
        outcome: None,
        error: None,
    });
    t.updated_at = now;
    Some(t.clone())
}

impl Inner {
    fn held(
        &mut self,
        id: &str,
        attempt: u32,
        now: time::OffsetDateTime,
    ) -> StorageResult<&mut Task> {
        let t = self
            .tasks
            .get_mut(id)
            .ok_or_else(|| StorageError::NotFound {
                kind: "task",
                id: id.into(),
            })?;
        expire(t, now);
        if t.status != TaskStatus::Claimed || t.lease.as_ref().map(|l| l.attempt) != Some(attempt) {
            return Err(lost(id));
        }
        Ok(t)
    }
}

#[async_trait]
impl TaskStore for FakeStore {
    async fn submit_task(&self, task: NewTask) -> StorageResult<Submitted> {
        let now = self.clock.now();
        let mut g = self.inner.lock().unwrap();
        if let Some(key) = &task.idempotency_key {
            if let Some(id) = g.keys.get(&(task.queue.clone(), key.clone())) {
                let existing = g.tasks[id].clone();
                if existing.payload != task.payload || existing.task_type != task.task_type {
                    return Err(StorageError::KeyConflict {
                        kind: "task",
                        key: key.clone(),
                    });
                }
                return Ok(Submitted {
                    task: existing,
                    duplicate: true,
                });
            }
        }
        g.seq += 1;
        let id = format!("{:020}-{}", g.seq, uuid::Uuid::new_v4().simple());
        let t = Task {
            task_id: id.clone(),
            queue: task.queue.clone(),
            task_type: task.task_type,
            idempotency_key: task.idempotency_key.clone(),
            payload: task.payload,
            status: TaskStatus::Pending,
            attempts: 0,
            max_attempts: task.max_attempts,
            result: None,
            error: None,
            lease: None,
            history: vec![],
            created_at: now,
            updated_at: now,
            available_at: now + d(task.delay.unwrap_or_default()),
            finished_at: None,
        };
        if let Some(key) = task.idempotency_key {
            g.keys.insert((task.queue, key), id.clone());
        }
        g.tasks.insert(id, t.clone());
        Ok(Submitted {
            task: t,
            duplicate: false,
        })
    }

    async fn claim_task(
        &self,
        id: &str,
        worker: &str,
        lease: Duration,
    ) -> StorageResult<Option<Task>> {
        let now = self.clock.now();
        let mut g = self.inner.lock().unwrap();
        Ok(g.tasks
            .get_mut(id)
            .and_then(|t| claim(t, worker, lease, now)))
    }

    async fn claim_next_task(
        &self,
        queue: &str,
        worker: &str,
        lease: Duration,
    ) -> StorageResult<Option<Task>> {
        let now = self.clock.now();
        let mut g = self.inner.lock().unwrap();
        let mut ids: Vec<String> = g
            .tasks
            .values()
            .filter(|t| t.queue == queue)
            .map(|t| t.task_id.clone())
            .collect();
        ids.sort();
        for id in ids {
            if let Some(t) = claim(g.tasks.get_mut(&id).unwrap(), worker, lease, now) {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }

    async fn complete_task(&self, id: &str, attempt: u32, result: Value) -> StorageResult<Task> {
        let now = self.clock.now();
        let mut g = self.inner.lock().unwrap();
        let t = g.held(id, attempt, now)?;
        t.status = TaskStatus::Completed;
        t.result = Some(result);
        t.lease = None;
        t.finished_at = Some(now);
        if let Some(h) = t.history.last_mut() {
            h.outcome = Some("completed".into());
            h.finished_at = Some(now);
        }
        Ok(t.clone())
    }

    async fn fail_task(
        &self,
        id: &str,
        attempt: u32,
        error: &str,
        retry_after: Duration,
    ) -> StorageResult<Task> {
        let now = self.clock.now();
        let mut g = self.inner.lock().unwrap();
        let t = g.held(id, attempt, now)?;
        t.lease = None;
        t.error = Some(error.into());
        if let Some(h) = t.history.last_mut() {
            h.outcome = Some("failed".into());
            h.error = Some(error.into());
            h.finished_at = Some(now);
        }
        if t.attempts >= t.max_attempts {
            t.status = TaskStatus::Failed;
            t.finished_at = Some(now);
        } else {
            t.status = TaskStatus::Pending;
            t.available_at = now + d(retry_after);
        }
        Ok(t.clone())
    }

    async fn renew_task_lease(
        &self,
        id: &str,
        attempt: u32,
        lease: Duration,
    ) -> StorageResult<Task> {
        let now = self.clock.now();
        let mut g = self.inner.lock().unwrap();
        let t = g.held(id, attempt, now)?;
        if let Some(l) = t.lease.as_mut() {
            l.expires_at = now + d(lease);
        }
        Ok(t.clone())
    }

    async fn release_task(&self, id: &str, attempt: u32) -> StorageResult<Task> {
        let now = self.clock.now();
        let mut g = self.inner.lock().unwrap();
        let t = g.held(id, attempt, now)?;
        t.lease = None;
        t.status = TaskStatus::Pending;
        t.attempts -= 1;
        t.available_at = now;
        if let Some(h) = t.history.last_mut() {
            h.outcome = Some("released".into());
            h.finished_at = Some(now);
        }
        Ok(t.clone())
    }

    async fn retry_task(&self, id: &str) -> StorageResult<Task> {
        let now = self.clock.now();
        let mut g = self.inner.lock().unwrap();
        let t = g.tasks.get_mut(id).ok_or_else(|| StorageError::NotFound {
            kind: "task",
            id: id.into(),
        })?;
        if t.status != TaskStatus::Failed {
            return Err(StorageError::InvalidState {
                kind: "task",
                id: id.into(),
                state: t.status.as_str().into(),
                action: "retry",
            });
        }
        t.status = TaskStatus::Pending;
        t.attempts = 0;
        t.available_at = now;
        t.finished_at = None;
        Ok(t.clone())
    }

    async fn get_task(&self, id: &str) -> StorageResult<Option<Task>> {
        let now = self.clock.now();
        let mut g = self.inner.lock().unwrap();
        Ok(g.tasks.get_mut(id).map(|t| {
            expire(t, now);
            t.clone()
        }))
    }

    async fn get_task_by_key(&self, queue: &str, key: &str) -> StorageResult<Option<Task>> {
        let id = self
            .inner
            .lock()
            .unwrap()
            .keys
            .get(&(queue.into(), key.into()))
            .cloned();
        match id {
            Some(id) => self.get_task(&id).await,
            None => Ok(None),
        }
    }

    async fn list_tasks(&self, f: &TaskFilter) -> StorageResult<Vec<Task>> {
        let g = self.inner.lock().unwrap();
        let mut v: Vec<Task> = g
            .tasks
            .values()
            .filter(|t| {
                f.queue.as_ref().is_none_or(|q| *q == t.queue)
                    && f.status.is_none_or(|s| s == t.status)
            })
            .cloned()
            .collect();
        v.sort_by(|a, b| a.task_id.cmp(&b.task_id));
        let limit = if f.limit == 0 { 100 } else { f.limit };
        Ok(v.into_iter().skip(f.offset).take(limit).collect())
    }

    async fn delete_task(&self, id: &str) -> StorageResult<bool> {
        let mut g = self.inner.lock().unwrap();
        let Some(t) = g.tasks.remove(id) else {
            return Ok(false);
        };
        if let Some(k) = t.idempotency_key {
            g.keys.remove(&(t.queue, k));
        }
        Ok(true)
    }

    async fn requeue_expired_tasks(&self, limit: usize) -> StorageResult<u64> {
        let now = self.clock.now();
        let mut g = self.inner.lock().unwrap();
        let mut n = 0;
        for t in g.tasks.values_mut() {
            if n as usize >= limit {
                break;
            }
            let before = t.status;
            expire(t, now);
            if before != t.status {
                n += 1;
            }
        }
        Ok(n)
    }

    async fn purge_tasks(&self, older_than: Duration, limit: usize) -> StorageResult<u64> {
        let now = self.clock.now();
        let mut g = self.inner.lock().unwrap();
        let ids: Vec<String> = g
            .tasks
            .values()
            .filter(|t| t.finished_at.is_some_and(|f| f + d(older_than) <= now))
            .map(|t| t.task_id.clone())
            .take(limit)
            .collect();
        for id in &ids {
            if let Some(t) = g.tasks.remove(id) {
                if let Some(k) = t.idempotency_key {
                    g.keys.remove(&(t.queue, k));
                }
            }
        }
        Ok(ids.len() as u64)
    }
}
