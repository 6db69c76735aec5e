//! # bgops-queue
//!
//! The idempotent task queue of bgops (seed 002's `tasks` package, made safe for many
//! workers): tasks submitted with an idempotency key are deduplicated; a claim carries a
//! lease and an attempt number that fences every later call, so a worker that stalled past
//! its lease cannot complete a task someone else took over; an expired lease puts the task
//! back by itself; failures are retried with exponential backoff and jitter.
//!
//! - [`TaskQueue`]: submit, claim, complete, fail, retry, look-ups, history, cleanup, over
//!   any [`TaskStore`](bgops_storage::TaskStore) (`bgops-memory`, `bgops-redis`).
//! - [`Worker`]: a runtime with concurrency, lease heartbeats, backoff, graceful shutdown,
//!   a tracing span per task and [`MetricsHooks`](bgops_core::MetricsHooks) calls.
//!
//! Mechanisms shared with the rest of bgops, each with one home: the [`Backoff`] of
//! `bgops-core`, its id generator ([`TaskQueue::with_ids`]: worker ids), the lease
//! keep-alive of `bgops-storage` ([`bgops_storage::keepalive`], used for the worker's
//! heartbeat with `OnLost::Cancel`: a handler whose attempt was fenced out is cancelled)
//! and its periodic loop ([`TaskQueue::spawn_cleanup`]).
//!
//! ## Observability
//!
//! Each worker runs in a `bgops.worker` span (`worker_id`, `queue`) and each attempt in a
//! `bgops.task` span (`task_id`, `queue`, `task_type`, `attempt`, `max_attempts`,
//! `worker_id`, and `outcome` once known). [`MetricsHooks`](bgops_core::MetricsHooks)
//! get `task_submitted(queue, duplicate)`, `task_finished(queue, outcome)` with outcome
//! `completed`, `retrying`, `failed`, `released` or `lease_expired`, `cleanup_ran` and
//! `storage_error(operation)`.
//!
//! ## Example
//!
//! ```
//! use std::sync::Arc;
//! use bgops_queue::{NewTask, TaskContext, TaskError, TaskQueue, Worker};
//! use serde_json::{Value, json};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), bgops_queue::QueueError> {
//! let queue = TaskQueue::new(Arc::new(bgops_memory::MemoryStorage::new()));
//! let order = NewTask::new("orders", "process_order", json!({"order_id": "12345"}))
//!     .idempotency_key("order-12345");
//! let first = queue.submit(order.clone()).await?;
//! let again = queue.submit(order).await?;
//! assert!(again.duplicate);
//! assert_eq!(first.task.task_id, again.task.task_id);
//!
//! let worker = Worker::new(queue.clone(), |ctx: TaskContext| async move {
//!     Ok::<Value, TaskError>(json!({"processed": ctx.payload()["order_id"]}))
//! })
//! .queue_name("orders")
//! .concurrency(4)
//! .spawn();
//! while queue.get(&first.task.task_id).await?.is_some_and(|t| t.result.is_none()) {
//!     tokio::time::sleep(std::time::Duration::from_millis(10)).await;
//! }
//! let stats = worker.shutdown().await;
//! assert_eq!(stats.completed, 1);
//! # Ok(())
//! # }
//! ```

mod cleanup;
mod complete;
mod error;
mod execute;
mod handler;
mod queue;
mod stats;
mod worker;

pub use bgops_core::Backoff;
pub use bgops_core::id::{IdGenerator, SharedIds};
pub use bgops_storage::{
    NewTask, Submitted, Sweep, TaskCompletion, TaskFilter, TaskReceipt, TaskWakeup,
};
pub use cleanup::CleanupHandle;
pub use error::{QueueError, QueueResult};
pub use handler::{TaskContext, TaskError, TaskHandler};
pub use queue::{Claim, CleanupReport, DEFAULT_PAGE_SIZE, TaskPage, TaskQueue};
pub use stats::WorkerStats;
pub use worker::{DEFAULT_PREFETCH, Worker, WorkerHandle};
