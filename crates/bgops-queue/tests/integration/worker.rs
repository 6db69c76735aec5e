//! The worker runtime: concurrency, retries, permanent errors, panics, heartbeats, lease
//! loss, graceful shutdown and an in-process crash.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use bgops_core::TaskStatus;
use bgops_queue::{NewTask, QueueError, TaskContext, TaskError, TaskQueue, Worker};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::support::{CountingMetrics, claim_of, eventually, manual_queue, system_queue};

async fn submit_n(queue: &TaskQueue, n: usize, max_attempts: u32) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let task = NewTask::new("jobs", "work", json!({"n": i})).max_attempts(max_attempts);
        ids.push(queue.submit(task).await.unwrap().task.task_id);
    }
    ids
}

async fn all_finished(queue: &TaskQueue) -> bool {
    let open = queue
        .list_all(Some("jobs"), Some(TaskStatus::Pending))
        .await
        .unwrap()
        .len()
        + queue
            .list_all(Some("jobs"), Some(TaskStatus::Claimed))
            .await
            .unwrap()
            .len();
    open == 0
}

fn fast(worker: Worker) -> Worker {
    worker
        .queue_name("jobs")
        .poll_interval(Duration::from_millis(5), Duration::from_millis(20))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_tasks_concurrently_each_once() {
    let queue = system_queue(Duration::from_secs(10));
    let ids = submit_n(&queue, 20, 3).await;
    let calls: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (c, r, p) = (calls.clone(), running.clone(), peak.clone());
    let worker = fast(Worker::new(queue.clone(), move |ctx: TaskContext| {
        let (c, r, p) = (c.clone(), r.clone(), p.clone());
        async move {
            *c.lock().await.entry(ctx.task_id().to_owned()).or_default() += 1;
            let now = r.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(30)).await;
            r.fetch_sub(1, Ordering::SeqCst);
            Ok::<Value, TaskError>(json!({"n": ctx.payload()["n"], "by": ctx.worker_id}))
        }
    }))
    .concurrency(4)
    .spawn();
    let worker_id = worker.worker_id().to_owned();

    assert!(eventually(Duration::from_secs(10), || all_finished(&queue)).await);
    let stats = worker.shutdown().await;
    assert_eq!(stats.completed, 20);
    assert_eq!(stats.claimed, 20);
    let peak = peak.load(Ordering::SeqCst);
    assert!((2..=4).contains(&peak), "peak concurrency {peak}");
    let calls = calls.lock().await;
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(calls.get(id), Some(&1));
        let t = queue.get(id).await.unwrap().unwrap();
        assert_eq!(t.status, TaskStatus::Completed);
        assert_eq!(t.result, Some(json!({"n": i, "by": worker_id})));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_failures_permanent_errors_and_panics() {
    let queue = system_queue(Duration::from_secs(10));
    let metrics = Arc::new(CountingMetrics::default());
    let queue = queue.with_metrics(metrics.clone());
    let flaky = queue
        .submit(NewTask::new("jobs", "flaky", json!(1)).max_attempts(3))
        .await
        .unwrap()
        .task
        .task_id;
    let broken = queue
        .submit(NewTask::new("jobs", "broken", json!(2)).max_attempts(3))
        .await
        .unwrap()
        .task
        .task_id;
    let invalid = queue
        .submit(NewTask::new("jobs", "invalid", json!(3)).max_attempts(5))
        .await
        .unwrap()
        .task
        .task_id;
    let panics = queue
        .submit(NewTask::new("jobs", "panics", json!(4)).max_attempts(2))
        .await
        .unwrap()
        .task
        .task_id;
    let calls: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let c = calls.clone();
    let worker = fast(Worker::new(queue.clone(), move |ctx: TaskContext| {
        let c = c.clone();
        async move {
            *c.lock()
                .await
                .entry(ctx.task.task_type.clone())
                .or_default() += 1;
            match ctx.task.task_type.as_str() {
                "flaky" if ctx.attempt < 3 => Err(TaskError::retryable("temporary error")),
                "flaky" => Ok(json!("finally")),
                "broken" => Err(std::io::Error::other("always down").into()),
                "invalid" => Err(TaskError::permanent("invalid payload")),
                _ => panic!("handler bug"),
            }
        }
    }))
    .concurrency(2)
    .spawn();
    assert!(eventually(Duration::from_secs(10), || all_finished(&queue)).await);
    let stats = worker.shutdown().await;

    let flaky = queue.get(&flaky).await.unwrap().unwrap();
    assert_eq!(flaky.status, TaskStatus::Completed);
    assert_eq!(flaky.attempts, 3);
    assert_eq!(flaky.result, Some(json!("finally")));
    let broken = queue.get(&broken).await.unwrap().unwrap();
    assert_eq!((broken.status, broken.attempts), (TaskStatus::Failed, 3));
    assert_eq!(broken.error.as_deref(), Some("always down"));
    let invalid = queue.get(&invalid).await.unwrap().unwrap();
    assert_eq!(invalid.status, TaskStatus::Failed);
    let panics = queue.get(&panics).await.unwrap().unwrap();
    assert_eq!(panics.status, TaskStatus::Failed);
    assert!(
        panics.error.as_deref().unwrap().contains("panicked"),
        "{:?}",
        panics.error
    );

    let calls = calls.lock().await;
    assert_eq!(calls["flaky"], 3);
    assert_eq!(calls["broken"], 3);
    assert_eq!(calls["invalid"], 1, "a permanent error must not be retried");
    assert_eq!(calls["panics"], 2);
    assert_eq!(stats.completed, 1);
    assert_eq!(stats.failed, 3);
    assert_eq!(stats.retried, 2 + 2 + 1);
    assert_eq!(metrics.get("finished:jobs:completed"), 1);
    assert_eq!(metrics.get("finished:jobs:failed"), 3);
    assert_eq!(metrics.get("finished:jobs:retrying"), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_a_long_task_from_being_taken_over() {
    let lease = Duration::from_millis(500);
    let queue = system_queue(lease);
    let id = submit_n(&queue, 1, 3).await.remove(0);
    let calls = Arc::new(AtomicU32::new(0));
    let handler = {
        let calls = calls.clone();
        move |_ctx: TaskContext| {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                // Three leases long: only heartbeats keep the claim.
                tokio::time::sleep(Duration::from_millis(1500)).await;
                Ok::<Value, TaskError>(json!("done"))
            }
        }
    };
    let a = fast(Worker::new(queue.clone(), handler.clone()))
        .heartbeat(Duration::from_millis(50))
        .spawn();
    assert!(
        eventually(Duration::from_secs(2), || async {
            calls.load(Ordering::SeqCst) == 1
        })
        .await
    );
    let b = fast(Worker::new(queue.clone(), handler)).spawn();
    assert!(eventually(Duration::from_secs(10), || all_finished(&queue)).await);
    let (a, b) = (a.shutdown().await, b.shutdown().await);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!((a.completed, b.completed, a.lease_lost), (1, 0, 0));
    let t = queue.get(&id).await.unwrap().unwrap();
    assert_eq!((t.status, t.attempts), (TaskStatus::Completed, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_cancels_the_handler_and_drops_its_result() {
    let (queue, clock) = manual_queue();
    let metrics = Arc::new(CountingMetrics::default());
    let queue = queue
        .with_lease(Duration::from_secs(30))
        .with_metrics(metrics.clone());
    let id = submit_n(&queue, 1, 3).await.remove(0);
    let started = Arc::new(AtomicU32::new(0));
    let cancelled = Arc::new(AtomicU32::new(0));
    let (s, c) = (started.clone(), cancelled.clone());
    let worker = fast(Worker::new(queue.clone(), move |ctx: TaskContext| {
        let (s, c) = (s.clone(), c.clone());
        async move {
            s.fetch_add(1, Ordering::SeqCst);
            ctx.cancelled().await;
            c.fetch_add(1, Ordering::SeqCst);
            Ok::<Value, TaskError>(json!("must not be stored"))
        }
    }))
    .heartbeat(Duration::from_millis(20))
    .spawn();
    assert!(
        eventually(Duration::from_secs(5), || async {
            started.load(Ordering::SeqCst) == 1
        })
        .await
    );

    // The store's clock jumps past the lease and someone else takes the task over.
    clock.advance(Duration::from_secs(31));
    let thief = queue
        .claim(&id, "thief")
        .await
        .unwrap()
        .expect("expired lease is claimable");
    assert_eq!(thief.attempt, 2);
    assert!(
        eventually(Duration::from_secs(5), || async {
            worker.stats().lease_lost == 1
        })
        .await
    );
    let stats = worker.shutdown().await;
    assert_eq!(stats.completed, 0);
    // The handler saw the cancellation only if it was polled once more; either way it
    // must not have produced a stored result.
    assert!(cancelled.load(Ordering::SeqCst) <= 1);
    let t = queue.get(&id).await.unwrap().unwrap();
    assert_eq!(t.status, TaskStatus::Claimed);
    assert_eq!(t.lease.unwrap().worker_id, "thief");
    assert_eq!(t.result, None);
    assert_eq!(metrics.get("finished:jobs:lease_expired"), 1);
    assert_eq!(metrics.get("finished:jobs:completed"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_within_grace_then_releases() {
    let metrics = Arc::new(CountingMetrics::default());
    let queue = system_queue(Duration::from_secs(30)).with_metrics(metrics.clone());
    let ids = submit_n(&queue, 2, 1).await;
    let handler = |ctx: TaskContext| async move {
        let wait = if ctx.payload()["n"] == 0 { 100 } else { 60_000 };
        tokio::time::sleep(Duration::from_millis(wait)).await;
        Ok::<Value, TaskError>(json!(wait))
    };
    let worker = fast(Worker::new(queue.clone(), handler))
        .concurrency(2)
        .shutdown_grace(Duration::from_millis(500))
        .spawn();
    assert!(
        eventually(Duration::from_secs(5), || async {
            worker.stats().claimed == 2
        })
        .await
    );
    let stats = worker.shutdown().await;
    assert_eq!((stats.completed, stats.released), (1, 1));
    assert_eq!(metrics.get("finished:jobs:released"), 1);

    let short = queue.get(&ids[0]).await.unwrap().unwrap();
    assert_eq!(short.status, TaskStatus::Completed);
    let long = queue.get(&ids[1]).await.unwrap().unwrap();
    assert_eq!(long.status, TaskStatus::Pending);
    // max_attempts is 1: a released attempt must leave the task claimable.
    let again = queue
        .claim(&ids[1], "next")
        .await
        .unwrap()
        .expect("released task is claimable");
    assert_eq!(again.task.task_id, ids[1]);
    // No claim after shutdown.
    assert!(
        matches!(queue.complete(&again, json!(1)).await, Ok(t) if t.status == TaskStatus::Completed)
    );
}

/// A worker dies mid-task (its tokio task is aborted, as a crash would stop it): the task
/// stays claimed until its lease runs out, then another worker runs it exactly once more,
/// and the dead attempt's late completion is fenced out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_workers_tasks_come_back_after_the_lease() {
    let (queue, clock) = manual_queue();
    let ids = submit_n(&queue, 3, 3).await;
    let executions: Arc<Mutex<Vec<(String, u32, String)>>> = Arc::default();
    let hang = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let handler = {
        let executions = executions.clone();
        let hang = hang.clone();
        move |ctx: TaskContext| {
            let executions = executions.clone();
            let hang = hang.clone();
            async move {
                executions.lock().await.push((
                    ctx.task_id().to_owned(),
                    ctx.attempt,
                    ctx.worker_id.clone(),
                ));
                if hang.load(Ordering::SeqCst) {
                    std::future::pending::<()>().await;
                }
                Ok::<Value, TaskError>(json!({"by": ctx.worker_id}))
            }
        }
    };
    let doomed = fast(Worker::new(queue.clone(), handler.clone()))
        .concurrency(3)
        .spawn();
    let doomed_id = doomed.worker_id().to_owned();
    assert!(
        eventually(Duration::from_secs(5), || async {
            executions.lock().await.len() == 3
        })
        .await
    );
    doomed.abort();
    hang.store(false, Ordering::SeqCst);

    let survivor = fast(Worker::new(queue.clone(), handler))
        .concurrency(2)
        .spawn();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // While the dead worker's leases live, nothing is run again.
    assert_eq!(executions.lock().await.len(), 3);
    for id in &ids {
        assert_eq!(
            queue.get(id).await.unwrap().unwrap().status,
            TaskStatus::Claimed
        );
    }
    clock.advance(queue.lease() + Duration::from_secs(1));
    assert!(eventually(Duration::from_secs(10), || all_finished(&queue)).await);
    let stats = survivor.shutdown().await;
    assert_eq!(stats.completed, 3);

    let executions = executions.lock().await;
    assert_eq!(executions.len(), 6);
    for id in &ids {
        let t = queue.get(id).await.unwrap().unwrap();
        assert_eq!(t.status, TaskStatus::Completed);
        assert_ne!(t.result, Some(json!({"by": doomed_id})));
        assert_eq!(t.history[0].outcome.as_deref(), Some("lease_expired"));
        assert_eq!(t.history[1].outcome.as_deref(), Some("completed"));
        // The dead attempt's result, arriving late, is refused.
        assert!(matches!(
            queue.complete(&claim_of(&t, 1), json!("late")).await,
            Err(QueueError::LeaseLost { .. })
        ));
    }
}

#[tokio::test]
async fn worker_ids_come_from_the_queues_id_generator() {
    let (queue, _) = manual_queue();
    let queue = queue.with_ids(Arc::new(bgops_core::id::SequentialIds::new("q")));
    let worker = Worker::new(queue.clone(), |_ctx: TaskContext| async {
        Ok::<Value, TaskError>(json!(null))
    });
    assert!(worker.id().starts_with("worker:"), "{}", worker.id());
    assert!(worker.id().ends_with(":tq-000001"), "{}", worker.id());
    let named = worker.name("billing");
    assert!(named.id().starts_with("billing:"), "{}", named.id());
    assert!(named.id().ends_with(":tq-000002"), "{}", named.id());
}

/// The heartbeat is the workspace's one keep-alive: a renewal the store could not take
/// (transient) is retried while the handler runs, and the attempt is not abandoned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_renewal_failures_are_retried_without_abandoning_the_attempt() {
    use bgops_storage::testing::decorators::{FailingStorage, Fault, Method};
    let store = Arc::new(FailingStorage::failing(Arc::new(
        bgops_memory::MemoryStorage::new(),
    )));
    store
        .hook()
        .fail_times(Method::RenewTaskLease, Fault::Unavailable, 3);
    let queue = TaskQueue::new(store.clone())
        .with_backoff(bgops_queue::Backoff::none())
        .with_lease(Duration::from_millis(600));
    let id = submit_n(&queue, 1, 1).await.remove(0);
    let worker = fast(Worker::new(queue.clone(), |_ctx: TaskContext| async {
        // Long enough for the failing renewals and a good one after them.
        tokio::time::sleep(Duration::from_millis(700)).await;
        Ok::<Value, TaskError>(json!("done"))
    }))
    .heartbeat(Duration::from_millis(100))
    .spawn();
    assert!(eventually(Duration::from_secs(10), || all_finished(&queue)).await);
    let stats = worker.shutdown().await;
    assert_eq!((stats.completed, stats.lease_lost), (1, 0));
    assert_eq!(stats.storage_errors, 3, "each failed renewal is counted");
    let t = queue.get(&id).await.unwrap().unwrap();
    assert_eq!((t.status, t.attempts), (TaskStatus::Completed, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_is_woken_by_a_submit_not_by_polling() {
    let queue = system_queue(Duration::from_secs(30));
    let done = Arc::new(AtomicUsize::new(0));
    let seen = done.clone();
    let worker = Worker::new(queue.clone(), move |_ctx: TaskContext| {
        let seen = seen.clone();
        async move {
            seen.fetch_add(1, Ordering::SeqCst);
            Ok::<Value, TaskError>(Value::Null)
        }
    })
    .queue_name("jobs")
    // Polling alone would not find the task within the test's bound.
    .poll_interval(Duration::from_secs(3600), Duration::from_secs(3600))
    .spawn();
    // Let the worker find the queue empty and go idle.
    tokio::time::sleep(Duration::from_millis(50)).await;
    submit_n(&queue, 1, 1).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            done.load(Ordering::SeqCst) == 1
        })
        .await,
        "the submit woke the idle worker"
    );
    assert_eq!(worker.shutdown().await.completed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetched_tasks_are_given_back_at_shutdown() {
    let queue = system_queue(Duration::from_secs(30));
    let ids = submit_n(&queue, 4, 3).await;
    let started = Arc::new(AtomicUsize::new(0));
    let count = started.clone();
    let worker = Worker::new(queue.clone(), move |ctx: TaskContext| {
        let count = count.clone();
        async move {
            count.fetch_add(1, Ordering::SeqCst);
            ctx.cancelled().await;
            Ok::<Value, TaskError>(Value::Null)
        }
    })
    .queue_name("jobs")
    .concurrency(1)
    .prefetch(3)
    .shutdown_grace(Duration::from_millis(50))
    .spawn();
    assert!(
        eventually(Duration::from_secs(10), || async {
            started.load(Ordering::SeqCst) == 1
        })
        .await
    );
    let stats = worker.shutdown().await;
    assert_eq!(stats.claimed, 4, "one running and three prefetched");
    assert_eq!(started.load(Ordering::SeqCst), 1, "only one ever started");
    for id in ids {
        let task = queue.get(&id).await.unwrap().unwrap();
        assert_eq!(task.status, TaskStatus::Pending, "given back");
        assert_eq!(task.attempts, 0, "a given-back claim does not count");
    }
}
