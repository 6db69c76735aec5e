//! Crash test with real processes on Redis: two worker processes (this test binary,
//! started again in child mode) share a queue; one is SIGKILLed while it holds tasks.
//! Each execution is counted per task and worker process with an HINCRBY. Every task must
//! complete exactly once, the killed worker's tasks must come back after
//! their lease, and the killed attempt's late completion must be fenced out.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bgops_core::{Task, TaskStatus};
use bgops_queue::{Backoff, NewTask, QueueError, TaskContext, TaskError, TaskQueue, Worker};
use fred::interfaces::{ClientLike, HashesInterface};
use serde_json::{Value, json};

use crate::support::{claim_of, eventually};

const QUEUE: &str = "crash";
const TASKS: usize = 60;
const LEASE: Duration = Duration::from_secs(2);
const CHILD_ENV: &str = "BGOPS_QUEUE_CRASH_CHILD";

/// The Redis URL of this test process (the workspace's one policy:
/// `BGOPS_TEST_REDIS_URL`, or a throwaway server started on first use).
pub fn redis_url() -> String {
    bgops_storage::testing::server::redis::url()
}

/// Deletes the test's own keys (the workspace's one `delete_prefix`).
pub fn delete_prefix(url: &str, prefix: &str) {
    bgops_storage::testing::server::redis::delete_prefix(url, prefix)
        .expect("delete the test's keys");
}

pub async fn connect(url: &str, prefix: &str) -> (TaskQueue, fred::clients::Client) {
    let storage = bgops_redis::RedisStorage::builder(url)
        .prefix(prefix)
        .build()
        .await
        .expect("connect to Redis");
    let queue = TaskQueue::new(Arc::new(storage))
        .with_backoff(Backoff::none())
        .with_lease(LEASE);
    let config = fred::types::config::Config::from_url(url).expect("Redis URL");
    let client = fred::clients::Client::new(config, None, None, None);
    client.init().await.expect("connect to Redis");
    (queue, client)
}

fn exec_key(prefix: &str, task_id: &str) -> String {
    format!("{prefix}:crash-exec:{task_id}")
}

/// The child process: a worker that counts each execution (HINCRBY on the task's hash,
/// field = process name), then works for 150 ms, and stops once the queue holds nothing pending or claimed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "started by two_worker_processes_one_killed as a child process"]
async fn crash_child_worker() {
    let Ok(name) = std::env::var(CHILD_ENV) else {
        return;
    };
    let url = std::env::var("BGOPS_TEST_REDIS_URL").expect("url from the parent");
    let prefix = std::env::var("BGOPS_QUEUE_CRASH_PREFIX").expect("prefix from the parent");
    let (queue, client) = connect(&url, &prefix).await;
    let handler = {
        let client = client.clone();
        let prefix = prefix.clone();
        let name = name.clone();
        move |ctx: TaskContext| {
            let client = client.clone();
            let key = exec_key(&prefix, ctx.task_id());
            let name = name.clone();
            async move {
                let _: i64 = client
                    .hincrby(&key, &name, 1)
                    .await
                    .map_err(|e| TaskError::retryable(e.to_string()))?;
                tokio::time::sleep(Duration::from_millis(150)).await;
                Ok::<Value, TaskError>(
                    json!({"worker": name, "worker_id": ctx.worker_id, "attempt": ctx.attempt}),
                )
            }
        }
    };
    let worker = Worker::new(queue.clone(), handler)
        .name(&name)
        .queue_name(QUEUE)
        .concurrency(3)
        .heartbeat(Duration::from_millis(300))
        .poll_interval(Duration::from_millis(20), Duration::from_millis(100))
        .spawn();
    let q = queue.clone();
    eventually(Duration::from_secs(60), || {
        let q = q.clone();
        async move {
            let open = q
                .list_all(Some(QUEUE), Some(TaskStatus::Pending))
                .await
                .unwrap()
                .len()
                + q.list_all(Some(QUEUE), Some(TaskStatus::Claimed))
                    .await
                    .unwrap()
                    .len();
            open == 0
        }
    })
    .await;
    worker.shutdown().await;
}

fn start_child(name: &str, url: &str, prefix: &str) -> Child {
    Command::new(std::env::current_exe().expect("test binary path"))
        .args([
            "crash_redis::crash_child_worker",
            "--exact",
            "--ignored",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CHILD_ENV, name)
        .env("BGOPS_TEST_REDIS_URL", url)
        .env("BGOPS_QUEUE_CRASH_PREFIX", prefix)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a worker process")
}

fn worker_of(task: &Task) -> Option<String> {
    task.lease.as_ref().map(|l| l.worker_id.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_one_killed() {
    let url = redis_url();
    let prefix = format!("bgops-test-{}", uuid::Uuid::new_v4().simple());
    let (queue, client) = connect(&url, &prefix).await;
    let mut ids = Vec::new();
    for i in 0..TASKS {
        let task = NewTask::new(QUEUE, "crash", json!({"i": i}))
            .idempotency_key(format!("crash-{i}"))
            .max_attempts(3);
        ids.push(queue.submit(task).await.unwrap().task.task_id);
    }

    let mut victim = start_child("victim", &url, &prefix);
    let mut survivor = start_child("survivor", &url, &prefix);

    // Wait until the victim has finished some tasks and holds some: then kill it.
    let q = queue.clone();
    let victim_busy = eventually(Duration::from_secs(30), || {
        let q = q.clone();
        async move {
            let done = q
                .list_all(Some(QUEUE), Some(TaskStatus::Completed))
                .await
                .unwrap();
            let held = q
                .list_all(Some(QUEUE), Some(TaskStatus::Claimed))
                .await
                .unwrap();
            let mine = |w: Option<String>| w.is_some_and(|w| w.starts_with("victim:"));
            done.iter()
                .filter(|t| {
                    mine(
                        t.result
                            .as_ref()
                            .and_then(|r| r["worker_id"].as_str().map(str::to_owned)),
                    )
                })
                .count()
                >= 2
                && held.iter().filter(|t| mine(worker_of(t))).count() >= 1
        }
    })
    .await;
    assert!(victim_busy, "the victim process never held tasks");
    victim.kill().expect("SIGKILL the victim");
    victim.wait().expect("reap the victim");

    // What the victim held when it died (its leases can no longer change).
    let held: HashMap<String, Task> = queue
        .list_all(Some(QUEUE), Some(TaskStatus::Claimed))
        .await
        .unwrap()
        .into_iter()
        .filter(|t| worker_of(t).is_some_and(|w| w.starts_with("victim:")))
        .map(|t| (t.task_id.clone(), t))
        .collect();
    assert!(!held.is_empty(), "the victim held no task when killed");

    let exited = tokio::task::spawn_blocking(move || {
        for _ in 0..600 {
            if let Some(status) = survivor.try_wait().expect("survivor status") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = survivor.kill();
        None
    })
    .await
    .unwrap();
    assert!(
        exited.is_some_and(|s| s.success()),
        "the surviving worker did not finish: {exited:?}"
    );

    // Read everything, clean up, then judge (so a failed assertion leaves no keys behind).
    let mut outcome = Vec::new();
    for id in &ids {
        let task = queue.get(id).await.unwrap().unwrap();
        let runs: HashMap<String, i64> = client.hgetall(exec_key(&prefix, id)).await.unwrap();
        let late = match held.get(id) {
            Some(at_kill) => Some(
                queue
                    .complete(
                        &claim_of(&task, at_kill.lease.as_ref().unwrap().attempt),
                        json!("late"),
                    )
                    .await,
            ),
            None => None,
        };
        outcome.push((task, runs, late));
    }
    delete_prefix(&url, &prefix);
    let _ = client.quit().await;

    for (task, runs, late) in &outcome {
        let id = &task.task_id;
        assert_eq!(task.status, TaskStatus::Completed, "{id}: {task:?}");
        let completions = task
            .history
            .iter()
            .filter(|a| a.outcome.as_deref() == Some("completed"))
            .count();
        assert_eq!(completions, 1, "{id} completed {completions} times");
        let result_worker = task
            .result
            .as_ref()
            .and_then(|r| r["worker"].as_str())
            .unwrap();
        let by = |name: &str| runs.get(name).copied().unwrap_or(0);
        if let Some(at_kill) = held.get(id) {
            // The victim died holding it (maybe before its handler even started); the
            // survivor ran it once, after the dead lease ran out.
            assert!(by("victim") <= 1, "{id}: {runs:?}");
            assert_eq!(by("survivor"), 1, "{id}: {runs:?}");
            assert_eq!(result_worker, "survivor");
            let dead = at_kill.lease.as_ref().unwrap();
            let dead_attempt = task
                .history
                .iter()
                .find(|a| a.attempt == dead.attempt)
                .expect("the dead attempt");
            assert_eq!(
                dead_attempt.outcome.as_deref(),
                Some("lease_expired"),
                "{id}: {:?}",
                task.history
            );
            let retaken = task
                .history
                .iter()
                .find(|a| a.attempt > dead.attempt)
                .expect("a later attempt");
            assert!(
                retaken.claimed_at >= dead.expires_at,
                "{id} was taken before the dead lease ran out"
            );
            // The killed attempt, had it lived to report, is fenced out.
            assert!(
                matches!(late, Some(Err(QueueError::LeaseLost { .. }))),
                "{late:?}"
            );
        } else {
            assert_eq!(
                by("victim") + by("survivor"),
                1,
                "{id} ran more than once: {runs:?}"
            );
            assert_eq!(
                runs.get(result_worker),
                Some(&1),
                "{id}: result from a worker that did not run it"
            );
        }
    }
    eprintln!(
        "crash test: {TASKS} tasks, the victim held {} at SIGKILL; every task completed once, the held ones re-run by the survivor after their lease",
        held.len()
    );
}
