//! Saga throughput: 3-step sagas of trivial async steps, created and executed end to end.
//!
//! - memory: sagas/s all-ok, and step 3 failing so that steps 2 and 1 compensate;
//! - Redis (`BGOPS_TEST_REDIS_URL`): store round trips per saga and sagas/s;
//!
//! each through `create` + `execute` (the seed's calls) and through `start` (created
//! already leased). Every store call is one round trip on Redis (one Lua script).
//!
//! Prints the median of several samples. Run with `cargo bench -p bgops-saga`.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark fails loudly

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bgops_core::{SagaEvent, SagaStep, SagaWorkflow};
use bgops_memory::MemoryStorage;
use bgops_saga::{Backoff, NewSaga, SagaConfig, SagaEngine, SagaStatus, StepError};
use bgops_storage::{CreateSaga, SagaFilter, SagaSaved, SagaStore, StorageError, StorageResult};
use serde_json::Value;

const SAMPLES: usize = 5;
/// Tasks driving sagas at once (enough to keep both cores busy); `SAGA_BENCH_CONCURRENCY=1`
/// measures one saga at a time.
fn concurrency() -> usize {
    std::env::var("SAGA_BENCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(
            std::env::var("SAGA_BENCH_THREADS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(2),
        )
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        parallel_group_wall_time().await;
        let n = 30_000;
        let mut ok_rate = 0.0;
        for (label, fail, path) in [
            (
                "3 steps all ok, create + execute",
                false,
                Path::CreateExecute,
            ),
            ("3 steps all ok, start           ", false, Path::Start),
            (
                "step 3 fails (2, 1 undone), c+e ",
                true,
                Path::CreateExecute,
            ),
            ("step 3 fails (2, 1 undone), start", true, Path::Start),
        ] {
            let r = bench(memory, fail, path, n).await;
            if !fail && path == Path::CreateExecute {
                ok_rate = r.rate;
            }
            r.print("memory", label);
            if fail && path == Path::CreateExecute {
                println!(
                    "saga/memory  ratio all-ok / compensating (create + execute): {:.2}",
                    ok_rate / r.rate
                );
            }
        }
        // Reference: the same engine on a bare `Mutex<HashMap>` store (no indexes, no
        // history kept): what the engine itself costs, the rest is the backend's.
        bench(|| Arc::new(BareMap::default()), false, Path::Start, n)
            .await
            .print("bare  ", "3 steps all ok, start (reference)");
        match redis_url() {
            Some(url) => {
                let prefix = format!("bgops-bench-{}", uuid::Uuid::new_v4().simple());
                let store: Arc<dyn SagaStore> = Arc::new(
                    bgops_redis::RedisStorage::builder(url.as_str())
                        .prefix(prefix.as_str())
                        .build()
                        .await
                        .expect("connect to Redis"),
                );
                for (label, fail, path) in [
                    (
                        "3 steps all ok, create + execute",
                        false,
                        Path::CreateExecute,
                    ),
                    ("3 steps all ok, start           ", false, Path::Start),
                    ("step 3 fails (2, 1 undone), start", true, Path::Start),
                ] {
                    bench(|| Arc::clone(&store), fail, path, 2_000)
                        .await
                        .print("redis ", label);
                }
                delete_prefix(&url, &prefix);
            }
            None => println!(
                "saga/redis   skipped: set BGOPS_TEST_REDIS_URL (or run `cargo xtask bench`)"
            ),
        }
    });
}

/// One saga at a time, on memory: a parallel group of three 20 ms steps against the same
/// three steps in sequence (median wall time of 21 runs each).
async fn parallel_group_wall_time() {
    let engine = SagaEngine::new(memory());
    engine.register_operation_handler("sleep20", |_| async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(Value::Null)
    });
    for grouped in [true, false] {
        let steps: Vec<SagaStep> = (0..3)
            .map(|i| {
                let step = SagaStep::new(format!("s{i}"), "sleep20", Value::Null);
                if grouped { step.in_group("g") } else { step }
            })
            .collect();
        let mut times = Vec::new();
        for _ in 0..21 {
            let t = Instant::now();
            let outcome = engine
                .start(NewSaga::new("bench", "bench", steps.clone()))
                .await
                .expect("start");
            times.push(t.elapsed());
            assert_eq!(outcome.status, SagaStatus::Completed);
        }
        times.sort();
        let label = if grouped {
            "parallel group of 3 x 20 ms steps"
        } else {
            "3 x 20 ms steps in sequence      "
        };
        println!(
            "saga/memory  {label}: {:>6.1} ms wall time per saga (median of 21)",
            times[10].as_secs_f64() * 1e3
        );
    }
}

/// How a saga is created and run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    /// `create` then `execute` (the seed's two calls).
    CreateExecute,
    /// `start`: stored already leased with the first intent.
    Start,
}

struct Figures {
    rate: f64,
    calls: f64,
    cpu_us: Option<f64>,
}

impl Figures {
    fn print(&self, backend: &str, label: &str) {
        let cpu = self
            .cpu_us
            .map_or_else(String::new, |us| format!(", {us:.1} CPU-µs/saga"));
        println!(
            "saga/{backend}  {label}: {:>9.0} sagas/s (median of {SAMPLES}), {:.2} store round trips/saga incl. create{cpu}",
            self.rate, self.calls
        );
    }
}

fn redis_url() -> Option<String> {
    std::env::var("BGOPS_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// The workspace's one `delete_prefix`.
fn delete_prefix(url: &str, prefix: &str) {
    bgops_storage::testing::server::redis::delete_prefix(url, prefix)
        .expect("delete the bench's keys");
}

/// CPU time of the whole process so far, in nanoseconds from each thread's
/// `/proc/self/task/*/schedstat` (the 10 ms ticks of `/proc/self/stat` made the per-saga
/// figure move in steps of 0.33 µs); `None` off Linux. Robust where wall time is not:
/// other processes sharing the two cores. The runtime's threads live through the whole
/// bench, so none of the time measured is lost with an exited thread.
fn cpu_time() -> Option<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(total))
}

fn memory() -> Arc<dyn SagaStore> {
    Arc::new(MemoryStorage::new())
}

/// Runs `SAMPLES` samples of `n` sagas, each on a store from `store` (a fresh one per
/// sample for memory, so samples do not slow down as the heap grows).
async fn bench(
    store: impl Fn() -> Arc<dyn SagaStore>,
    fail_last: bool,
    path: Path,
    n: usize,
) -> Figures {
    let mut rates = Vec::with_capacity(SAMPLES);
    let mut cpu = Vec::with_capacity(SAMPLES);
    let mut calls = 0.0;
    for sample in 0..=SAMPLES {
        let counting = Arc::new(Counting {
            inner: store(),
            calls: AtomicU64::new(0),
        });
        let engine = engine(counting.clone(), fail_last);
        let expected = if fail_last {
            SagaStatus::Compensated
        } else {
            SagaStatus::Completed
        };
        let steps: Vec<SagaStep> = ["s1", "s2", "s3"]
            .iter()
            .map(|op| {
                SagaStep::new(*op, *op, Value::Null)
                    .with_compensation(format!("undo_{op}"), Value::Null)
                    .with_max_retries(0)
            })
            .collect();
        // The first round only warms up; every task runs the same number of sagas.
        let n = if sample == 0 { n / 10 } else { n };
        let n = n.div_ceil(concurrency()) * concurrency();
        let cpu_before = cpu_time();
        let t = Instant::now();
        run(&engine, &steps, n, expected, path).await;
        let elapsed = t.elapsed();
        if sample > 0 {
            calls = counting.calls.load(Ordering::Relaxed) as f64 / n as f64;
            rates.push(n as f64 / elapsed.as_secs_f64());
            if let (Some(a), Some(b)) = (cpu_before, cpu_time()) {
                cpu.push(b.saturating_sub(a).as_secs_f64() * 1e6 / n as f64);
            }
        }
    }
    rates.sort_by(f64::total_cmp);
    cpu.sort_by(f64::total_cmp);
    Figures {
        rate: rates[SAMPLES / 2],
        calls,
        cpu_us: cpu.get(SAMPLES / 2).copied(),
    }
}

fn engine(store: Arc<Counting>, fail_last: bool) -> SagaEngine {
    let engine = SagaEngine::builder(store)
        .config(
            SagaConfig::default()
                .with_retry(Backoff::none())
                .with_compensation_retry(Backoff::none()),
        )
        .build();
    for op in ["s1", "s2", "s3"] {
        engine.register_operation_handler(op, |_| async { Ok(Value::Null) });
        engine.register_compensation_handler(format!("undo_{op}"), |_| async { Ok(Value::Null) });
    }
    if fail_last {
        engine.register_operation_handler("s3", |_| async { Err(StepError::terminal("no")) });
    }
    engine
}

async fn run(engine: &SagaEngine, steps: &[SagaStep], n: usize, expected: SagaStatus, path: Path) {
    let per_task = n.div_ceil(concurrency());
    let mut tasks = Vec::with_capacity(concurrency());
    for _ in 0..concurrency() {
        let engine = engine.clone();
        let steps = steps.to_vec();
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_task {
                let outcome = match path {
                    Path::CreateExecute => {
                        let saga = engine
                            .create("bench", "bench", steps.clone(), None)
                            .await
                            .expect("create");
                        engine.execute(&saga.saga_id).await.expect("execute")
                    }
                    Path::Start => engine
                        .start(NewSaga::new("bench", "bench", steps.clone()))
                        .await
                        .expect("start"),
                };
                assert_eq!(outcome.status, expected);
            }
        }));
    }
    for t in tasks {
        t.await.expect("bench task");
    }
}

/// Counts every store call (each one is a round trip on a networked backend).
struct Counting {
    inner: Arc<dyn SagaStore>,
    calls: AtomicU64,
}

impl Counting {
    fn tick(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }
}

#[async_trait]
impl SagaStore for Counting {
    async fn create_saga(
        &self,
        saga: &SagaWorkflow,
        lease: Option<Duration>,
        history: &[SagaEvent],
    ) -> StorageResult<CreateSaga> {
        self.tick();
        self.inner.create_saga(saga, lease, history).await
    }
    async fn get_saga(&self, saga_id: &str) -> StorageResult<Option<SagaWorkflow>> {
        self.tick();
        self.inner.get_saga(saga_id).await
    }
    async fn acquire_saga_lease(
        &self,
        saga_id: &str,
        owner: &str,
        lease: Duration,
    ) -> StorageResult<Option<SagaWorkflow>> {
        self.tick();
        self.inner.acquire_saga_lease(saga_id, owner, lease).await
    }
    async fn save_saga(
        &self,
        saga: &SagaWorkflow,
        fence: u64,
        history: &[SagaEvent],
        renew: Option<Duration>,
    ) -> StorageResult<SagaSaved> {
        self.tick();
        self.inner.save_saga(saga, fence, history, renew).await
    }
    async fn get_saga_history(&self, saga_id: &str) -> StorageResult<Vec<SagaEvent>> {
        self.tick();
        self.inner.get_saga_history(saga_id).await
    }
    async fn list_sagas(&self, filter: &SagaFilter) -> StorageResult<Vec<SagaWorkflow>> {
        self.tick();
        self.inner.list_sagas(filter).await
    }
    async fn list_recoverable_sagas(&self, limit: usize) -> StorageResult<Vec<String>> {
        self.tick();
        self.inner.list_recoverable_sagas(limit).await
    }
    async fn delete_saga(&self, saga_id: &str) -> StorageResult<bool> {
        self.tick();
        self.inner.delete_saga(saga_id).await
    }
}

/// A minimal store for the reference line: one map, fenced compare-and-set, nothing else.
#[derive(Default)]
struct BareMap {
    sagas: std::sync::Mutex<std::collections::HashMap<String, SagaWorkflow>>,
}

#[async_trait]
impl SagaStore for BareMap {
    async fn create_saga(
        &self,
        saga: &SagaWorkflow,
        lease: Option<Duration>,
        _history: &[SagaEvent],
    ) -> StorageResult<CreateSaga> {
        let mut map = self.sagas.lock().unwrap();
        if let Some(existing) = map.get(&saga.saga_id) {
            return Ok(CreateSaga::Existing(existing.clone()));
        }
        let mut stored = saga.clone();
        let expires = lease.map(|d| time::OffsetDateTime::now_utc() + d);
        if let (Some(l), Some(at)) = (&mut stored.lease, expires) {
            l.expires_at = at;
        }
        let version = stored.version;
        map.insert(saga.saga_id.clone(), stored);
        Ok(CreateSaga::Created(SagaSaved {
            version,
            lease_expires_at: expires,
        }))
    }
    async fn get_saga(&self, saga_id: &str) -> StorageResult<Option<SagaWorkflow>> {
        Ok(self.sagas.lock().unwrap().get(saga_id).cloned())
    }
    async fn acquire_saga_lease(
        &self,
        saga_id: &str,
        owner: &str,
        lease: Duration,
    ) -> StorageResult<Option<SagaWorkflow>> {
        let mut map = self.sagas.lock().unwrap();
        let saga = map.get_mut(saga_id).ok_or(StorageError::NotFound {
            kind: "saga",
            id: saga_id.into(),
        })?;
        let fence = saga.lease.as_ref().map_or(0, |l| l.fence) + 1;
        let expires_at = time::OffsetDateTime::now_utc() + lease;
        saga.lease = Some(bgops_core::SagaLease {
            owner: owner.into(),
            fence,
            expires_at,
        });
        saga.version += 1;
        Ok(Some(saga.clone()))
    }
    async fn save_saga(
        &self,
        saga: &SagaWorkflow,
        fence: u64,
        _history: &[SagaEvent],
        renew: Option<Duration>,
    ) -> StorageResult<SagaSaved> {
        let mut map = self.sagas.lock().unwrap();
        let stored = map.get_mut(&saga.saga_id).ok_or(StorageError::NotFound {
            kind: "saga",
            id: saga.saga_id.clone(),
        })?;
        if stored.lease.as_ref().map(|l| l.fence) != Some(fence) || stored.version != saga.version {
            return Err(StorageError::LeaseLost {
                kind: "saga",
                id: saga.saga_id.clone(),
            });
        }
        let mut next = saga.clone();
        next.version += 1;
        let expires = renew.map(|d| time::OffsetDateTime::now_utc() + d);
        if let (Some(l), Some(at)) = (&mut next.lease, expires) {
            l.expires_at = at;
        }
        let lease_expires_at = next.lease.as_ref().map(|l| l.expires_at);
        *stored = next;
        Ok(SagaSaved {
            version: stored.version,
            lease_expires_at,
        })
    }
    async fn get_saga_history(&self, _: &str) -> StorageResult<Vec<SagaEvent>> {
        Ok(Vec::new())
    }
    async fn list_sagas(&self, _: &SagaFilter) -> StorageResult<Vec<SagaWorkflow>> {
        Ok(Vec::new())
    }
    async fn list_recoverable_sagas(&self, _: usize) -> StorageResult<Vec<String>> {
        Ok(Vec::new())
    }
    async fn delete_saga(&self, saga_id: &str) -> StorageResult<bool> {
        Ok(self.sagas.lock().unwrap().remove(saga_id).is_some())
    }
}
