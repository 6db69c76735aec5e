//! The queue against apalis-redis, and on memory: submit, batch submit, drain with 1
//! and 4 workers, submit→handler-start latency with idle workers, and Redis commands
//! per task.
//!
//! `cargo bench -p bgops-queue` (Redis part: set `BGOPS_TEST_REDIS_URL`; `cargo xtask
//! bench queue` starts a throwaway server). `BGOPS_BENCH_TASKS` (default 5000) and
//! `BGOPS_BENCH_ROUNDS` (default 3) size it.
//!
//! Every round runs bgops and apalis-redis back to back on the same Redis with the same
//! trivial handler (it does nothing and returns); figures are medians over rounds, and
//! ratios are medians of the per-round ratios.
//!
//! - **submit**: `n` single submits from one task, one after the other; **batch
//!   submit**: `submit_many` (apalis: `push_bulk`) in chunks of 500;
//! - **drain**: `n` tasks queued first, then `w` workers (each its own `Worker` with
//!   concurrency 1; apalis: `w` workers with its default fetch batch of 10) run them to the
//!   last completion;
//! - **latency**: one idle worker, one task submitted at a time; time from before the
//!   submit call to the handler's first line, p50 and p99 of 200;
//! - **commands per task** (Redis): `INFO commandstats` deltas over one submit + drain
//!   of `n` tasks with one worker: script calls (`EVALSHA`), other top-level commands, and
//!   the commands run inside scripts. Run it against a server nobody else uses.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark aborts on any failure

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bgops_queue::{Backoff, NewTask, TaskContext, TaskError, TaskQueue, Worker};
use bgops_storage::TaskStore;
use serde_json::{Value, json};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn queue_name() -> String {
    format!("bench-{}", uuid::Uuid::new_v4().simple())
}

fn tasks(name: &str, n: usize) -> impl Iterator<Item = NewTask> + '_ {
    (0..n).map(move |i| NewTask::new(name, "bench", json!({"i": i})))
}

/// Single submits, one after the other; tasks/s.
async fn bgops_submit(queue: &TaskQueue, name: &str, n: usize) -> f64 {
    let start = Instant::now();
    for task in tasks(name, n) {
        queue.submit(task).await.expect("submit");
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// `submit_many` in chunks of 500; tasks/s.
async fn bgops_submit_many(queue: &TaskQueue, name: &str, n: usize) -> f64 {
    let start = Instant::now();
    let all: Vec<NewTask> = tasks(name, n).collect();
    for chunk in all.chunks(500) {
        for answer in queue
            .submit_many(chunk.to_vec())
            .await
            .expect("submit_many")
        {
            answer.expect("submitted");
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Drains `n` queued tasks of `name` with `workers` workers of `concurrency`; tasks/s.
async fn bgops_drain(
    queue: &TaskQueue,
    name: &str,
    n: usize,
    workers: usize,
    concurrency: usize,
) -> f64 {
    let start = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            Worker::new(queue.clone(), |_ctx: TaskContext| async {
                Ok::<Value, TaskError>(Value::Null)
            })
            .queue_name(name)
            .concurrency(concurrency)
            .poll_interval(Duration::from_millis(1), Duration::from_millis(50))
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
    let rate = n as f64 / start.elapsed().as_secs_f64();
    for h in handles {
        h.shutdown().await;
    }
    rate
}

/// Submit→handler-start latency with one idle worker, in ms: (p50, p99).
async fn bgops_latency(queue: &TaskQueue, samples: usize) -> (f64, f64) {
    let name = queue_name();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let worker = Worker::new(queue.clone(), move |_ctx: TaskContext| {
        let started = Instant::now();
        let tx = tx.clone();
        async move {
            let _ = tx.send(started);
            Ok::<Value, TaskError>(Value::Null)
        }
    })
    .queue_name(&name)
    // Polling alone would show up as latency of up to a second here.
    .poll_interval(Duration::from_secs(1), Duration::from_secs(1))
    .spawn();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut lat = Vec::with_capacity(samples);
    for i in 0..samples {
        // Let the worker go idle (waiting for the signal) before each submit.
        tokio::time::sleep(Duration::from_millis(3)).await;
        let before = Instant::now();
        queue
            .submit(NewTask::new(&name, "bench", json!({"i": i})))
            .await
            .expect("submit");
        let started = rx.recv().await.expect("handler ran");
        lat.push(started.duration_since(before).as_secs_f64() * 1e3);
    }
    worker.shutdown().await;
    (percentile(lat.clone(), 0.5), percentile(lat, 0.99))
}

async fn purge_all(queue: &TaskQueue) {
    while queue
        .purge(Duration::ZERO, 1000)
        .await
        .is_ok_and(|sweep| sweep.more)
    {}
}

async fn bench_memory(n: usize, rounds: usize) {
    let queue =
        TaskQueue::new(Arc::new(bgops_memory::MemoryStorage::new())).with_backoff(Backoff::none());
    let mut rows: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for _ in 0..rounds {
        let name = queue_name();
        rows.entry("submit")
            .or_default()
            .push(bgops_submit(&queue, &name, n).await);
        rows.entry("drain, 1 worker")
            .or_default()
            .push(bgops_drain(&queue, &name, n, 1, 1).await);
        let name = queue_name();
        rows.entry("submit_many")
            .or_default()
            .push(bgops_submit_many(&queue, &name, n).await);
        rows.entry("drain, 4 workers")
            .or_default()
            .push(bgops_drain(&queue, &name, n, 4, 1).await);
        let name = queue_name();
        bgops_submit_many(&queue, &name, n).await;
        rows.entry("drain, 1 worker × concurrency 4")
            .or_default()
            .push(bgops_drain(&queue, &name, n, 1, 4).await);
        purge_all(&queue).await;
    }
    for (what, v) in rows {
        println!("memory  {what:<34} {:>9.0} tasks/s", median(v));
    }
    let (p50, p99) = bgops_latency(&queue, 200).await;
    println!("memory  submit→start latency, idle worker: p50 {p50:.3} ms, p99 {p99:.3} ms");
}

// ---- apalis-redis, the contender ----

static APALIS_DONE: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct ApalisJob {
    i: usize,
}

async fn apalis_handler(_job: ApalisJob) -> Result<(), apalis::prelude::BoxDynError> {
    APALIS_DONE.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

type ApalisStorage = apalis_redis::RedisStorage<ApalisJob>;

async fn apalis_storage(url: &str, name: &str) -> ApalisStorage {
    let conn = apalis_redis::connect(url).await.expect("apalis connect");
    apalis_redis::RedisStorage::new(conn).with_config(apalis_redis::Config::default().queue(name))
}

async fn apalis_submit(storage: &mut ApalisStorage, n: usize) -> f64 {
    use apalis::prelude::TaskSink;
    let start = Instant::now();
    for i in 0..n {
        storage.push(ApalisJob { i }).await.expect("apalis push");
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn apalis_submit_bulk(storage: &mut ApalisStorage, n: usize) -> f64 {
    use apalis::prelude::TaskSink;
    let start = Instant::now();
    let all: Vec<ApalisJob> = (0..n).map(|i| ApalisJob { i }).collect();
    for chunk in all.chunks(500) {
        storage
            .push_bulk(chunk.to_vec())
            .await
            .expect("apalis push_bulk");
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn apalis_drain(url: &str, name: &str, n: usize, workers: usize) -> f64 {
    use apalis::prelude::WorkerBuilder;
    APALIS_DONE.store(0, Ordering::SeqCst);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let start = Instant::now();
    let mut joins = Vec::new();
    for w in 0..workers {
        let storage = apalis_storage(url, name).await;
        let worker = WorkerBuilder::new(format!("{name}-w{w}"))
            .backend(storage)
            .build(apalis_handler);
        let mut stop = stop_rx.clone();
        joins.push(tokio::spawn(async move {
            let _ = worker
                .run_until(async move {
                    let _ = stop.wait_for(|s| *s).await;
                    Ok::<(), std::io::Error>(())
                })
                .await;
        }));
    }
    while APALIS_DONE.load(Ordering::Relaxed) < n as u64 {
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    for j in joins {
        let _ = tokio::time::timeout(Duration::from_secs(5), j).await;
    }
    rate
}

// ---- Redis command counts ----

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

async fn redis_info(client: &fred::clients::Client) -> BTreeMap<String, u64> {
    use fred::interfaces::ClientLike;
    let info: String = client
        .info(Some(fred::types::InfoKind::CommandStats))
        .await
        .expect("INFO commandstats");
    parse_commandstats(&info)
}

/// Commands per task between two commandstats: (script calls, other top-level, inside
/// scripts, detail). `top_level` names the commands the client itself sends.
fn per_task(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    n: usize,
    top_level: &[&str],
) -> (f64, f64, f64, String) {
    let (mut scripts, mut other, mut inside) = (0u64, 0u64, 0u64);
    let mut detail = Vec::new();
    for (name, calls) in after {
        let delta = calls - before.get(name).copied().unwrap_or(0);
        if delta == 0 || name == "info" || name.starts_with("script") {
            continue;
        }
        detail.push(format!("{name}={delta}"));
        if name.starts_with("eval") || name.starts_with("fcall") {
            scripts += delta;
        } else if top_level.contains(&name.as_str()) {
            other += delta;
        } else {
            inside += delta;
        }
    }
    let n = n as f64;
    (
        scripts as f64 / n,
        other as f64 / n,
        inside as f64 / n,
        detail.join(" "),
    )
}

async fn bench_redis(url: &str, n: usize, rounds: usize) {
    use fred::interfaces::ClientLike;
    let prefix = format!("bgops-bench-{}", uuid::Uuid::new_v4().simple());
    let storage = bgops_redis::RedisStorage::builder(url)
        .prefix(&prefix)
        .build()
        .await
        .expect("connect to Redis");
    let store: Arc<dyn TaskStore> = Arc::new(storage);
    let queue = TaskQueue::new(store).with_backoff(Backoff::none());
    let config = fred::types::config::Config::from_url(url).expect("Redis URL");
    let client = fred::clients::Client::new(config, None, None, None);
    client.init().await.expect("connect to Redis");

    // Commands per task, one worker, submit + drain.
    let name = queue_name();
    let before = redis_info(&client).await;
    bgops_submit(&queue, &name, n).await;
    bgops_drain(&queue, &name, n, 1, 1).await;
    let after = redis_info(&client).await;
    let (scripts, other, inside, detail) =
        per_task(&before, &after, n, &["publish", "subscribe", "ping"]);
    println!(
        "redis   bgops  commands per task (submit + drain, 1 worker): {scripts:.2} script calls + {other:.2} other top-level; {inside:.2} inside scripts"
    );
    println!("        commandstats: {detail}");
    let name = queue_name();
    let mut apalis = apalis_storage(url, &name).await;
    let before = redis_info(&client).await;
    apalis_submit(&mut apalis, n).await;
    apalis_drain(url, &name, n, 1).await;
    let after = redis_info(&client).await;
    // apalis sends some commands itself (its heartbeat, its signal list); counted as
    // inside unless named here.
    let (scripts, other, inside, detail) =
        per_task(&before, &after, n, &["ping", "publish", "subscribe"]);
    println!(
        "redis   apalis commands per task (submit + drain, 1 worker): {scripts:.2} script calls + {other:.2} other top-level; {inside:.2} other commands (inside scripts or top-level)"
    );
    println!("        commandstats: {detail}");

    let mut rows: BTreeMap<String, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    let mut push = |what: &str, ours: f64, theirs: f64| {
        let e = rows.entry(what.to_owned()).or_default();
        e.0.push(ours);
        e.1.push(theirs);
    };
    for _ in 0..rounds {
        for workers in [1, 4] {
            let name = queue_name();
            let ours_submit = bgops_submit(&queue, &name, n).await;
            let ours_drain = bgops_drain(&queue, &name, n, workers, 1).await;
            let apalis_name = queue_name();
            let mut apalis = apalis_storage(url, &apalis_name).await;
            let theirs_submit = apalis_submit(&mut apalis, n).await;
            let theirs_drain = apalis_drain(url, &apalis_name, n, workers).await;
            push("submit", ours_submit, theirs_submit);
            push(
                &format!("drain, {workers} worker(s)"),
                ours_drain,
                theirs_drain,
            );
        }
        let name = queue_name();
        let ours = bgops_submit_many(&queue, &name, n).await;
        let ours_drain = bgops_drain(&queue, &name, n, 1, 4).await;
        let apalis_name = queue_name();
        let mut apalis = apalis_storage(url, &apalis_name).await;
        let theirs = apalis_submit_bulk(&mut apalis, n).await;
        let theirs_drain = apalis_drain(url, &apalis_name, n, 1).await;
        push("batch submit (submit_many / push_bulk)", ours, theirs);
        push(
            "drain, 1 worker × concurrency 4 (apalis: 1 worker)",
            ours_drain,
            theirs_drain,
        );
        purge_all(&queue).await;
    }
    println!(
        "redis   {n} tasks, {rounds} interleaved rounds: bgops / apalis-redis 1.0 (tasks/s, median; ratio = median of per-round ratios)"
    );
    for (what, (ours, theirs)) in rows {
        let ratios: Vec<f64> = ours.iter().zip(&theirs).map(|(a, b)| a / b).collect();
        println!(
            "redis   {what:<52} {:>8.0} vs {:>8.0}  {:.2}×",
            median(ours),
            median(theirs),
            median(ratios)
        );
    }
    let (p50, p99) = bgops_latency(&queue, 200).await;
    println!("redis   submit→start latency, idle worker: p50 {p50:.3} ms, p99 {p99:.3} ms");
    purge_all(&queue).await;
    let _ = client.quit().await;
}

fn main() {
    let n = env_usize("BGOPS_BENCH_TASKS", 5000);
    let rounds = env_usize("BGOPS_BENCH_ROUNDS", 3).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        println!("bgops-queue: {n} trivial tasks per measure, {rounds} rounds");
        if std::env::var("BGOPS_BENCH_SKIP_MEMORY").is_err() {
            bench_memory(n, rounds).await;
        }
        match std::env::var("BGOPS_TEST_REDIS_URL") {
            Ok(url) if !url.is_empty() => bench_redis(&url, n, rounds).await,
            _ => println!(
                "redis   skipped: set BGOPS_TEST_REDIS_URL (or run `cargo xtask bench queue`, which starts a throwaway server)"
            ),
        }
    });
}
