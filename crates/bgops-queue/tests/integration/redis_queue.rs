//! The queue API on Redis where it relies on a backend override: failing for good is one
//! step, and the worker never runs a permanently failed task again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bgops_core::TaskStatus;
use bgops_queue::{NewTask, QueueError, TaskContext, TaskError, Worker};
use serde_json::{Value, json};

use crate::crash_redis::{connect, delete_prefix, redis_url};
use crate::support::eventually;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_error_fails_the_task_in_one_step() {
    let url = redis_url();
    let prefix = format!("bgops-test-{}", uuid::Uuid::new_v4().simple());
    let (queue, _client) = connect(&url, &prefix).await;

    let id = queue
        .submit(NewTask::new("perm", "t", json!(1)).max_attempts(5))
        .await
        .unwrap()
        .task
        .task_id;
    let claim = queue.claim_next("perm", "w1").await.unwrap().unwrap();
    queue
        .fail_permanently(&claim, "invalid payload")
        .await
        .unwrap();
    let t = queue.get(&id).await.unwrap().unwrap();
    let stale = queue.fail_permanently(&claim, "again").await;
    let next = queue.claim_next("perm", "w2").await.unwrap();

    // A worker with free slots must not run it a second time either.
    let calls = Arc::new(AtomicU32::new(0));
    let ids: Vec<String> = {
        let mut ids = Vec::new();
        for i in 0..4 {
            let task = NewTask::new("perm-worker", "t", json!(i)).max_attempts(5);
            ids.push(queue.submit(task).await.unwrap().task.task_id);
        }
        ids
    };
    let c = calls.clone();
    let worker = Worker::new(queue.clone(), move |_ctx: TaskContext| {
        let c = c.clone();
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            Err::<Value, TaskError>(TaskError::permanent("no"))
        }
    })
    .queue_name("perm-worker")
    .concurrency(4)
    .poll_interval(Duration::from_millis(5), Duration::from_millis(20))
    .spawn();
    let q = queue.clone();
    let all_failed = eventually(Duration::from_secs(10), || {
        let q = q.clone();
        async move {
            q.list_all(Some("perm-worker"), Some(TaskStatus::Failed))
                .await
                .unwrap()
                .len()
                == 4
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stats = worker.shutdown().await;
    let mut attempts = Vec::new();
    for id in &ids {
        attempts.push(queue.get(id).await.unwrap().unwrap().attempts);
    }
    delete_prefix(&url, &prefix);

    assert_eq!(t.status, TaskStatus::Failed);
    assert_eq!((t.attempts, t.history.len()), (1, 1));
    assert_eq!(t.error.as_deref(), Some("invalid payload"));
    assert!(
        matches!(stale, Err(QueueError::LeaseLost { .. })),
        "{stale:?}"
    );
    assert!(next.is_none());
    assert!(all_failed);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(stats.failed, 4);
    assert_eq!(attempts, [1, 1, 1, 1]);
}
