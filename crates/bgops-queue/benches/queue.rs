//! Throughput of submit → claim → complete, on memory and on Redis, with 1 and 4
//! concurrent workers, plus Redis round trips per task.
//!
//! `cargo bench -p bgops-queue` (Redis part: set `BGOPS_TEST_REDIS_URL`; it is skipped
//! with a notice otherwise). Every figure is the median of several runs.
//!
//! Two measures per backend and worker count:
//! - **api**: each worker loops `submit` → `claim_next` → `complete` on the raw
//!   `TaskQueue` API (three store calls per task);
//! - **runtime**: tasks are submitted first, then `Worker`s with a no-op handler drain
//!   them (claim, run, complete, with heartbeats and polling as in production).
//!
//! Round trips per task on Redis come from `INFO commandstats` deltas: script calls
//! (EVAL/EVALSHA) plus top-level commands that no bgops Lua script issues (commands run
//! inside scripts are counted by Redis too, and are not round trips). Run it against a
//! server nobody else is using for exact figures.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark aborts on any failure

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bgops_queue::{Backoff, NewTask, TaskContext, TaskError, TaskQueue, Worker};
use bgops_storage::TaskStore;
use serde_json::{Value, json};

const REPS: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn queue_name() -> String {
    format!("bench-{}", uuid::Uuid::new_v4().simple())
}

/// `workers` loops of submit → claim_next → complete sharing `n` tasks; tasks/s.
async fn api_pipeline(queue: &TaskQueue, n: usize, workers: usize) -> f64 {
    let name = queue_name();
    let start = Instant::now();
    let mut joins = Vec::new();
    for w in 0..workers {
        let queue = queue.clone();
        let name = name.clone();
        let share = n / workers + usize::from(w < n % workers);
        joins.push(tokio::spawn(async move {
            let worker_id = format!("bench-worker-{w}");
            for i in 0..share {
                let task = NewTask::new(&name, "bench", json!({"w": w, "i": i}));
                queue.submit(task).await.expect("submit");
                // Another loop may have taken ours, but one is always left for us; a
                // claim racing a submit in the same instant can still miss it: ask again.
                let claim = loop {
                    if let Some(claim) = queue.claim_next(&name, &worker_id).await.expect("claim") {
                        break claim;
                    }
                    tokio::task::yield_now().await;
                };
                queue.complete(&claim, json!(null)).await.expect("complete");
            }
        }));
    }
    for j in joins {
        j.await.expect("bench worker");
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Submits `n` tasks, then drains them with `workers` `Worker`s; (submit/s, drain/s).
async fn runtime_drain(queue: &TaskQueue, n: usize, workers: usize) -> (f64, f64) {
    let name = queue_name();
    let start = Instant::now();
    for i in 0..n {
        queue
            .submit(NewTask::new(&name, "bench", json!({"i": i})))
            .await
            .expect("submit");
    }
    let submit_rate = n as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            Worker::new(queue.clone(), |_ctx: TaskContext| async {
                Ok::<Value, TaskError>(Value::Null)
            })
            .queue_name(&name)
            .poll_interval(Duration::from_millis(1), Duration::from_millis(5))
            .spawn()
        })
        .collect();
    loop {
        let done: u64 = handles.iter().map(|h| h.stats().completed).sum();
        if done >= n as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    let drain_rate = n as f64 / start.elapsed().as_secs_f64();
    for h in handles {
        h.shutdown().await;
    }
    (submit_rate, drain_rate)
}

async fn bench_backend(label: &str, queue: &TaskQueue, n: usize) {
    let mut medians = Vec::new();
    for workers in [1, 4] {
        let mut api = Vec::new();
        let mut submit = Vec::new();
        let mut drain = Vec::new();
        for _ in 0..REPS {
            api.push(api_pipeline(queue, n, workers).await);
            let (s, d) = runtime_drain(queue, n, workers).await;
            submit.push(s);
            drain.push(d);
        }
        let (api, submit, drain) = (median(api), median(submit), median(drain));
        println!(
            "{label:<7} workers={workers}  api submit→claim→complete: {api:>8.0} tasks/s   runtime: submit {submit:>8.0}/s, drain {drain:>8.0} tasks/s   (median of {REPS}, {n} tasks)"
        );
        medians.push((api, drain));
    }
    if let [(api1, drain1), (api4, drain4)] = medians[..] {
        println!(
            "{label:<7} 4 workers / 1 worker: api {:.2}×, runtime drain {:.2}×",
            api4 / api1,
            drain4 / drain1
        );
    }
}

async fn purge_all(queue: &TaskQueue) {
    while queue
        .purge(Duration::ZERO, 1000)
        .await
        .is_ok_and(|sweep| sweep.more)
    {}
}

fn parse_commandstats(info: &str) -> BTreeMap<String, u64> {
    info.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("cmdstat_")?;
            let (name, fields) = rest.split_once(':')?;
            let calls = fields
                .split(',')
                .find_map(|f| f.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

/// Commands that bgops' Lua scripts issue (lower case).
fn script_commands() -> BTreeSet<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../bgops-redis/lua");
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        for call in ["redis.call(", "redis.pcall("] {
            for piece in text.split(call).skip(1) {
                let piece = piece.trim_start_matches([' ', '\'', '"']);
                let name: String = piece
                    .chars()
                    .take_while(char::is_ascii_alphabetic)
                    .collect();
                if !name.is_empty() {
                    names.insert(name.to_ascii_lowercase());
                }
            }
        }
    }
    names
}

async fn redis_info(client: &fred::clients::Client) -> BTreeMap<String, u64> {
    use fred::interfaces::ClientLike;
    let info: String = client
        .info(Some(fred::types::InfoKind::CommandStats))
        .await
        .expect("INFO commandstats");
    parse_commandstats(&info)
}

async fn bench_redis(url: &str) {
    use fred::interfaces::ClientLike;
    let prefix = format!("bgops-bench-{}", uuid::Uuid::new_v4().simple());
    let storage = bgops_redis::RedisStorage::builder(url)
        .prefix(&prefix)
        .build()
        .await
        .expect("connect to Redis");
    let store: Arc<dyn TaskStore> = Arc::new(storage);
    let queue = TaskQueue::new(store).with_backoff(Backoff::none());

    // Round trips per task: one api pipeline of 500 tasks, one worker.
    let config = fred::types::config::Config::from_url(url).expect("Redis URL");
    let client = fred::clients::Client::new(config, None, None, None);
    client.init().await.expect("connect to Redis");
    let n = 500;
    let before = redis_info(&client).await;
    api_pipeline(&queue, n, 1).await;
    let after = redis_info(&client).await;
    let inner = script_commands();
    let mut scripts = 0;
    let mut other = 0;
    let mut loads = 0;
    let mut detail = Vec::new();
    for (name, calls) in &after {
        let delta = calls - before.get(name).copied().unwrap_or(0);
        if delta == 0 || name == "info" {
            continue;
        }
        detail.push(format!("{name}={delta}"));
        if name.starts_with("script") {
            // SCRIPT LOAD happens once per script and connection, not per task.
            loads += delta;
        } else if name.starts_with("eval") || name.starts_with("fcall") {
            scripts += delta;
        } else if !inner.contains(name) {
            other += delta;
        }
    }
    let per_task = (scripts + other) as f64 / n as f64;
    println!(
        "redis   round trips per task (submit→claim→complete): {per_task:.2} (target ≤ 3; {scripts} script calls + {other} other commands for {n} tasks, + {loads} one-time SCRIPT LOADs)"
    );
    println!("        commandstats deltas: {}", detail.join(" "));

    bench_backend("redis", &queue, 1000).await;
    purge_all(&queue).await;
    let _ = client.quit().await;
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        println!("bgops-queue: submit → claim → complete");
        let memory = TaskQueue::new(Arc::new(bgops_memory::MemoryStorage::new())).with_backoff(Backoff::none());
        bench_backend("memory", &memory, 5000).await;
        match std::env::var("BGOPS_TEST_REDIS_URL") {
            Ok(url) if !url.is_empty() => bench_redis(&url).await,
            _ => println!(
                "redis   skipped: set BGOPS_TEST_REDIS_URL (or run `cargo xtask bench`, which starts a throwaway server)"
            ),
        }
    });
}
