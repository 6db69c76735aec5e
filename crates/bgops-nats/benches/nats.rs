//! Task queue throughput on NATS, next to Redis in the same run: submit → claim →
//! complete for a batch of tasks, with 1 and 4 workers, median of several rounds, and the
//! messages (NATS) or commands (Redis) per task. Reads `BGOPS_TEST_NATS_URL` (and
//! `BGOPS_TEST_REDIS_URL` for the comparison); `cargo xtask bench nats` provides both.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bgops_nats::NatsStorage;
use bgops_redis::RedisStorage;
use bgops_storage::{NewTask, TaskStore};
use serde_json::json;

const TASKS: usize = 400;
const ROUNDS: usize = 3;
const LEASE: Duration = Duration::from_secs(30);

/// One round: submit `TASKS` tasks, then `workers` loops claim and complete until all
/// are done. Tasks per second over the whole round.
async fn round(store: Arc<dyn TaskStore>, queue: &str, workers: usize) -> f64 {
    let started = Instant::now();
    for i in 0..TASKS {
        store
            .submit_task(NewTask::new(queue, "bench", json!({"i": i})))
            .await
            .expect("submit");
    }
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let loops: Vec<_> = (0..workers)
        .map(|w| {
            let store = Arc::clone(&store);
            let done = Arc::clone(&done);
            let queue = queue.to_owned();
            tokio::spawn(async move {
                let name = format!("w{w}");
                while done.load(std::sync::atomic::Ordering::Relaxed) < TASKS {
                    let Some(task) = store
                        .claim_next_task(&queue, &name, LEASE)
                        .await
                        .expect("claim")
                    else {
                        tokio::task::yield_now().await;
                        continue;
                    };
                    let attempt = task.lease.as_ref().map_or(0, |l| l.attempt);
                    store
                        .complete_task(&task.task_id, attempt, json!(1))
                        .await
                        .expect("complete");
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            })
        })
        .collect();
    for l in loops {
        l.await.expect("worker");
    }
    TASKS as f64 / started.elapsed().as_secs_f64()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Scripts the Redis server at `url` has run (`EVALSHA`/`EVAL` calls in one raw `INFO
/// commandstats`): one script is one round trip of the Redis backend.
fn redis_commands(url: &str) -> Option<u64> {
    let host = url.strip_prefix("redis://")?.split('/').next()?;
    let host = host.rsplit('@').next()?;
    let mut stream = TcpStream::connect(host).ok()?;
    stream
        .write_all(b"*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n")
        .ok()?;
    // Read until the server goes quiet (the reply is a few kilobytes).
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .ok()?;
    let mut data = Vec::new();
    let mut buf = vec![0; 16_384];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&data);
    let calls = |line: &str| -> Option<u64> {
        line.split(':')
            .nth(1)?
            .split(',')
            .next()?
            .strip_prefix("calls=")?
            .parse()
            .ok()
    };
    Some(
        text.lines()
            .filter(|l| {
                [
                    "cmdstat_evalsha:",
                    "cmdstat_evalsha_ro:",
                    "cmdstat_eval:",
                    "cmdstat_eval_ro:",
                ]
                .iter()
                .any(|p| l.starts_with(p))
            })
            .filter_map(calls)
            .sum(),
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Ok(nats_url) = std::env::var("BGOPS_TEST_NATS_URL") else {
        println!(
            "bgops-nats bench skipped: set BGOPS_TEST_NATS_URL (or run `cargo xtask bench nats`)"
        );
        return;
    };
    let redis_url = std::env::var("BGOPS_TEST_REDIS_URL").ok();
    println!("task queue, submit → claim → complete, {TASKS} tasks per round, median of {ROUNDS}");
    println!(
        "{:<8} {:>8} {:>12} {:>22}",
        "backend", "workers", "tasks/s", "requests per task"
    );
    for workers in [1, 4] {
        let mut rates = Vec::new();
        let mut per_task = Vec::new();
        for r in 0..ROUNDS {
            let storage = NatsStorage::builder(&nats_url)
                .prefix(format!("bench-{}", uuid::Uuid::new_v4().simple()))
                .build()
                .await
                .expect("nats");
            let before = storage.messages_sent();
            rates.push(round(Arc::new(storage.clone()), &format!("q{r}"), workers).await);
            per_task.push((storage.messages_sent() - before) as f64 / TASKS as f64);
            storage.destroy().await.expect("destroy");
        }
        println!(
            "{:<8} {:>8} {:>12.0} {:>22.1}",
            "nats",
            workers,
            median(rates),
            median(per_task)
        );
        let Some(url) = &redis_url else { continue };
        let mut rates = Vec::new();
        let mut per_task = Vec::new();
        for r in 0..ROUNDS {
            let storage = RedisStorage::builder(url)
                .prefix(format!("bench-{}", uuid::Uuid::new_v4().simple()))
                .build()
                .await
                .expect("redis");
            let before = redis_commands(url);
            rates.push(round(Arc::new(storage), &format!("q{r}"), workers).await);
            if let (Some(b), Some(a)) = (before, redis_commands(url)) {
                per_task.push((a - b) as f64 / TASKS as f64);
            }
        }
        let rt = if per_task.is_empty() {
            f64::NAN
        } else {
            median(per_task)
        };
        println!(
            "{:<8} {:>8} {:>12.0} {:>22.1}",
            "redis",
            workers,
            median(rates),
            rt
        );
    }
    println!(
        "(nats: messages the client sent per task: awaited requests plus fire-and-forget acks; redis: scripts run per task, one round trip each)"
    );
}
