//! The task queue (being written).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use bgops_core::Task;
use bgops_storage::{NewTask, StorageError, StorageResult, Submitted, TaskFilter, TaskStore};
use serde_json::Value;

use crate::MemoryStorage;

/// Every task and its indexes.
#[derive(Debug, Default)]
pub(crate) struct TaskTables {}

impl TaskTables {
    /// Tasks by status name.
    #[allow(clippy::unused_self)]
    pub(crate) fn counts(&self) -> BTreeMap<String, u64> {
        BTreeMap::new()
    }
}

fn todo() -> StorageError {
    StorageError::Backend {
        backend: "memory",
        source: "the memory task queue is not written yet".into(),
    }
}

#[async_trait]
impl TaskStore for MemoryStorage {
    async fn submit_task(&self, _task: NewTask) -> StorageResult<Submitted> {
        Err(todo())
    }
    async fn claim_task(&self, _: &str, _: &str, _: Duration) -> StorageResult<Option<Task>> {
        Err(todo())
    }
    async fn claim_next_task(&self, _: &str, _: &str, _: Duration) -> StorageResult<Option<Task>> {
        Err(todo())
    }
    async fn complete_task(&self, _: &str, _: u32, _: Value) -> StorageResult<Task> {
        Err(todo())
    }
    async fn fail_task(&self, _: &str, _: u32, _: &str, _: Duration) -> StorageResult<Task> {
        Err(todo())
    }
    async fn renew_task_lease(&self, _: &str, _: u32, _: Duration) -> StorageResult<Task> {
        Err(todo())
    }
    async fn release_task(&self, _: &str, _: u32) -> StorageResult<Task> {
        Err(todo())
    }
    async fn retry_task(&self, _: &str) -> StorageResult<Task> {
        Err(todo())
    }
    async fn get_task(&self, _: &str) -> StorageResult<Option<Task>> {
        Err(todo())
    }
    async fn get_task_by_key(&self, _: &str, _: &str) -> StorageResult<Option<Task>> {
        Err(todo())
    }
    async fn list_tasks(&self, _: &TaskFilter) -> StorageResult<Vec<Task>> {
        Err(todo())
    }
    async fn delete_task(&self, _: &str) -> StorageResult<bool> {
        Err(todo())
    }
    async fn requeue_expired_tasks(&self, _: usize) -> StorageResult<u64> {
        Err(todo())
    }
    async fn purge_tasks(&self, _: Duration, _: usize) -> StorageResult<u64> {
        Err(todo())
    }
}
