//! The queue engine (`bgops-queue`) on NATS, as the worker and producer examples run it:
//! a producer submits with keys, two workers split the tasks, each task runs once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bgops_core::TaskStatus;
use bgops_queue::{NewTask, TaskContext, TaskError, TaskQueue, Worker};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::support::Scoped;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_queue_workers_split_the_tasks_each_once() {
    let store = Scoped::new().await;
    let queue = TaskQueue::new(Arc::new(store.0.clone())).with_lease(Duration::from_secs(10));
    for i in 0..30 {
        let task = NewTask::new("orders", "process_order", json!({"n": i}))
            .idempotency_key(format!("order-{i}"));
        queue.submit(task).await.expect("submit");
    }
    let again = queue
        .submit(NewTask::new("orders", "process_order", json!({"n": 0})).idempotency_key("order-0"))
        .await
        .expect("submit again");
    assert!(again.duplicate, "the key dedupes");

    let runs: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
    let worker = |name: &'static str| {
        let runs = Arc::clone(&runs);
        Worker::new(queue.clone(), move |ctx: TaskContext| {
            let runs = Arc::clone(&runs);
            async move {
                runs.lock()
                    .await
                    .entry(ctx.task_id().to_owned())
                    .or_default()
                    .push(name.to_owned());
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok::<Value, TaskError>(json!({"by": name}))
            }
        })
        .name(name)
        .queue_name("orders")
        .concurrency(2)
        .poll_interval(Duration::from_millis(5), Duration::from_millis(50))
        .spawn()
    };
    let (one, two) = (worker("worker-1"), worker("worker-2"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done = queue
            .list_all(Some("orders"), Some(TaskStatus::Completed))
            .await
            .expect("list")
            .len();
        if done == 30 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (a, b) = (one.shutdown().await, two.shutdown().await);
    assert_eq!(a.completed + b.completed, 30, "{a:?} {b:?}");
    assert!(
        a.completed > 0 && b.completed > 0,
        "both workers took tasks: {a:?} {b:?}"
    );
    let runs = runs.lock().await;
    assert_eq!(runs.len(), 30);
    assert!(
        runs.values().all(|r| r.len() == 1),
        "each task ran once: {runs:?}"
    );
}
