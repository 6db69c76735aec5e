//! Issue 9 defect 1 on Redis and Redis Cluster, in real time (Redis keeps its own clock):
//! lease 1 s, a 2.5 s operation, a second `run_once` at 1.5 s.

use std::sync::Arc;
use std::time::Duration;

use bgops_idempotency::{IdempotencyEngine, IdempotencyError, KeyRequest};
use bgops_storage::testing::server::redis as launcher;
use serde_json::json;

use crate::support::Runs;

async fn engine(url: String) -> IdempotencyEngine {
    let store = bgops_redis::RedisStorage::builder(url)
        .prefix(format!("bgops-test-{}", uuid::Uuid::new_v4().simple()))
        .pool_size(2)
        .build()
        .await
        .expect("the test Redis");
    IdempotencyEngine::builder(Arc::new(store))
        .lease(Duration::from_secs(1))
        .build()
}

async fn long_operation_runs_once(engine: IdempotencyEngine) {
    let runs = Runs::default();
    let request = || KeyRequest::new("t1", "charge-1", "charge").fingerprint("fp");
    let op = |runs: Runs| async move {
        runs.inc();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        Ok::<_, String>(json!({"charged": true}))
    };
    let first = {
        let (engine, runs) = (engine.clone(), runs.clone());
        tokio::spawn(async move { engine.run_once(request(), || op(runs)).await })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = engine.run_once(request(), || op(runs.clone())).await;
    assert!(
        matches!(second, Err(IdempotencyError::InProgress { .. })),
        "{second:?}"
    );
    assert_eq!(
        first.await.unwrap().unwrap().unwrap(),
        json!({"charged": true})
    );
    let third = engine.run_once(request(), || op(runs.clone())).await;
    assert_eq!(third.unwrap().unwrap(), json!({"charged": true}));
    assert_eq!(runs.get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_operation_runs_once_on_redis() {
    long_operation_runs_once(engine(launcher::url()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_operation_runs_once_on_redis_cluster() {
    long_operation_runs_once(engine(launcher::cluster_url()).await).await;
}
