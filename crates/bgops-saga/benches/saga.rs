//! Saga throughput: 3-step sagas of trivial async steps, created and executed end to end.
//!
//! - memory: sagas/s all-ok, and step 3 failing so that steps 2 and 1 compensate;
//! - Redis (`BGOPS_TEST_REDIS_URL`): store round trips per saga and sagas/s.
//!
//! Prints the median of several samples. Run with `cargo bench -p bgops-saga`.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark fails loudly

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bgops_core::{SagaHistoryEntry, SagaStep, SagaWorkflow};
use bgops_memory::MemoryStorage;
use bgops_saga::{RetryPolicy, SagaConfig, SagaEngine, SagaStatus, StepError};
use bgops_storage::{CreateSaga, SagaFilter, SagaStore, StorageResult};
use serde_json::Value;

const SAMPLES: usize = 5;
/// Tasks driving sagas at once (enough to keep both cores busy).
const CONCURRENCY: usize = 32;

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
        let per_sample = 40_000;
        let ok = bench(memory, false, per_sample).await;
        let fail = bench(memory, true, per_sample).await;
        println!("saga/memory   3 steps all ok          : {:>10.0} sagas/s (median of {SAMPLES}, {:.2} store calls/saga)", ok.0, ok.1);
        println!("saga/memory   step 3 fails, 2+1 undone : {:>10.0} sagas/s (median of {SAMPLES}, {:.2} store calls/saga)", fail.0, fail.1);
        println!("saga/memory   ratio ok / compensating   : {:>10.2}", ok.0 / fail.0);
        match redis().await {
            Some(store) => {
                let ok = bench(|| store.clone(), false, 2_000).await;
                let fail = bench(|| store.clone(), true, 2_000).await;
                println!("saga/redis    3 steps all ok          : {:>10.0} sagas/s (median of {SAMPLES}, {:.2} round trips/saga incl. create)", ok.0, ok.1);
                println!("saga/redis    step 3 fails, 2+1 undone : {:>10.0} sagas/s (median of {SAMPLES}, {:.2} round trips/saga incl. create)", fail.0, fail.1);
            }
            None => println!("saga/redis    skipped: set BGOPS_TEST_REDIS_URL (or run `cargo xtask bench`)"),
        }
    });
}

fn memory() -> Arc<dyn SagaStore> {
    Arc::new(MemoryStorage::new())
}

#[allow(clippy::unused_async)]
async fn redis() -> Option<Arc<dyn SagaStore>> {
    let _url = std::env::var("BGOPS_TEST_REDIS_URL").ok()?;
    None
}

/// Runs `SAMPLES` samples of `n` sagas, each on a store from `store` (a fresh one per
/// sample for memory, so samples do not slow down as the heap grows); returns (median
/// sagas/s, store calls per saga).
async fn bench(store: impl Fn() -> Arc<dyn SagaStore>, fail_last: bool, n: usize) -> (f64, f64) {
    let mut rates = Vec::with_capacity(SAMPLES);
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
        // The first round only warms up.
        let n = if sample == 0 { n / 10 } else { n };
        let t = Instant::now();
        run(&engine, &steps, n, expected).await;
        let elapsed = t.elapsed();
        if sample > 0 {
            calls = counting.calls.load(Ordering::Relaxed) as f64 / n as f64;
            rates.push(n as f64 / elapsed.as_secs_f64());
        }
    }
    rates.sort_by(f64::total_cmp);
    (rates[SAMPLES / 2], calls)
}

fn engine(store: Arc<Counting>, fail_last: bool) -> SagaEngine {
    let engine = SagaEngine::builder(store)
        .config(
            SagaConfig::default()
                .with_retry(RetryPolicy::immediate())
                .with_compensation_retry(RetryPolicy::immediate()),
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

async fn run(engine: &SagaEngine, steps: &[SagaStep], n: usize, expected: SagaStatus) {
    let per_task = n.div_ceil(CONCURRENCY);
    let mut tasks = Vec::with_capacity(CONCURRENCY);
    for _ in 0..CONCURRENCY {
        let engine = engine.clone();
        let steps = steps.to_vec();
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_task {
                let saga = engine
                    .create("bench", "bench", steps.clone(), None)
                    .await
                    .expect("create");
                let outcome = engine.execute(&saga.saga_id).await.expect("execute");
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
    async fn create_saga(&self, saga: SagaWorkflow) -> StorageResult<CreateSaga> {
        self.tick();
        self.inner.create_saga(saga).await
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
        history: &[SagaHistoryEntry],
    ) -> StorageResult<SagaWorkflow> {
        self.tick();
        self.inner.save_saga(saga, fence, history).await
    }
    async fn append_saga_history(
        &self,
        saga_id: &str,
        entry: &SagaHistoryEntry,
    ) -> StorageResult<()> {
        self.tick();
        self.inner.append_saga_history(saga_id, entry).await
    }
    async fn get_saga_history(&self, saga_id: &str) -> StorageResult<Vec<SagaHistoryEntry>> {
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
