//! What is specific to the memory backend: exact counts, clock boundaries, shared clones,
//! and consistency under parallel load.

use std::sync::Arc;
use std::time::Duration;

use bgops_core::{ManualClock, OperationOutcome, OperationStatus, TaskStatus};
use bgops_memory::MemoryStorage;
use bgops_storage::{
    BeginOutcome, BeginRequest, IdempotencyStore, NewTask, Storage, TaskFilter, TaskStore,
};
use serde_json::json;

fn manual() -> (MemoryStorage, ManualClock) {
    let clock = ManualClock::new();
    (MemoryStorage::with_clock(Arc::new(clock.clone())), clock)
}

fn token(outcome: BeginOutcome) -> String {
    match outcome {
        BeginOutcome::Started(claim) => claim.token,
        other => panic!("expected Started, got {other:?}"),
    }
}

/// A request with a fresh token.
fn request(tenant: &str, key: &str) -> BeginRequest {
    BeginRequest::new(tenant, key, "op", bgops_storage::testing::token())
}

#[tokio::test]
async fn clones_share_their_data() {
    let store = MemoryStorage::new();
    let clone = store.clone();
    let started = store.begin(request("t", "k")).await.unwrap();
    clone
        .complete(
            "t",
            "k",
            &token(started),
            OperationOutcome::succeeded(json!(1)),
        )
        .await
        .unwrap();
    let record = store.get_idempotency("t", "k").await.unwrap().unwrap();
    assert_eq!(record.status, OperationStatus::Completed);
}

#[tokio::test]
async fn ttl_ends_exactly_at_expires_at() {
    let (store, clock) = manual();
    let request = request("t", "k").ttl(Duration::from_secs(10));
    let started = store.begin(request.clone()).await.unwrap();
    store
        .complete(
            "t",
            "k",
            &token(started),
            OperationOutcome::succeeded(json!(1)),
        )
        .await
        .unwrap();
    clock.advance(Duration::from_millis(9_999));
    assert!(
        store.get_idempotency("t", "k").await.unwrap().is_some(),
        "1 ms before expiry"
    );
    clock.advance(Duration::from_millis(1));
    assert!(
        store.get_idempotency("t", "k").await.unwrap().is_none(),
        "at expires_at"
    );
    assert!(matches!(
        store.begin(request).await.unwrap(),
        BeginOutcome::Started(_)
    ));
}

#[tokio::test]
async fn lease_ends_exactly_at_lease_expiry() {
    let (store, clock) = manual();
    // Each begin brings its own token: another caller than the holder.
    let other = || request("t", "k").lease(Duration::from_secs(5));
    store.begin(other()).await.unwrap();
    clock.advance(Duration::from_millis(4_999));
    assert!(matches!(
        store.begin(other()).await.unwrap(),
        BeginOutcome::InProgress { .. }
    ));
    clock.advance(Duration::from_millis(1));
    assert!(matches!(
        store.begin(other()).await.unwrap(),
        BeginOutcome::Started(_)
    ));
}

#[tokio::test]
async fn purge_counts_exactly_across_shards() {
    let (store, clock) = manual();
    for i in 0..200 {
        let request = request("t", &format!("k{i}")).ttl(Duration::from_secs(1));
        store.begin(request).await.unwrap();
    }
    store.begin(request("t", "live")).await.unwrap();
    assert_eq!(store.stats().await.unwrap().idempotency_records, 201);
    clock.advance(Duration::from_secs(2));
    let first = store.purge_expired(50).await.unwrap();
    assert_eq!((first.done, first.more), (50, true));
    let second = store.purge_expired(1_000).await.unwrap();
    assert_eq!((second.done, second.more), (150, false));
    assert_eq!(store.purge_expired(1_000).await.unwrap().done, 0);
    assert_eq!(store.stats().await.unwrap().idempotency_records, 1);
}

#[tokio::test]
async fn health_names_the_backend_and_its_shards() {
    let report = MemoryStorage::new().health().await.unwrap();
    assert_eq!((report.backend, report.healthy), ("memory", true));
    assert_eq!(report.details.get("shards").map(String::as_str), Some("64"));
}

/// Many workers running whole lifecycles at once on overlapping keys: every key ends
/// with exactly one recorded outcome, and nobody got an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_lifecycles_stay_consistent() {
    let store = MemoryStorage::new();
    let mut handles = Vec::new();
    for worker in 0..8 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut started = 0;
            for i in 0..500 {
                let key = format!("key-{}", (i * 7 + worker) % 300);
                match store.begin(request("t", &key)).await.unwrap() {
                    BeginOutcome::Started(claim) => {
                        let token = claim.token;
                        let outcome = OperationOutcome::succeeded(json!(worker));
                        store.complete("t", &key, &token, outcome).await.unwrap();
                        started += 1;
                    }
                    BeginOutcome::InProgress { .. } | BeginOutcome::Completed(_) => {}
                    BeginOutcome::Mismatch => panic!("no fingerprints here"),
                }
            }
            started
        }));
    }
    let mut started = 0;
    for handle in handles {
        started += handle.await.unwrap();
    }
    assert_eq!(started, 300, "each of the 300 keys ran exactly once");
    assert_eq!(store.stats().await.unwrap().idempotency_records, 300);
}

/// Workers draining one queue in parallel: each task completed once, none left over.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_workers_drain_a_queue_once() {
    let store = MemoryStorage::new();
    for n in 0..400 {
        store
            .submit_task(NewTask::new("q", "t", json!(n)))
            .await
            .unwrap();
    }
    let mut handles = Vec::new();
    for worker in 0..6 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut done = Vec::new();
            let id = format!("worker-{worker}");
            while let Some(task) = store
                .claim_next_task("q", &id, Duration::from_secs(30))
                .await
                .unwrap()
            {
                let attempt = task.lease.as_ref().unwrap().attempt;
                store
                    .complete_task(&task.task_id, attempt, json!("ok"))
                    .await
                    .unwrap();
                done.push(task.task_id);
            }
            done
        }));
    }
    let mut all = Vec::new();
    for handle in handles {
        all.extend(handle.await.unwrap());
    }
    let distinct: std::collections::HashSet<_> = all.iter().collect();
    assert_eq!((all.len(), distinct.len()), (400, 400));
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.tasks_by_status.get("completed").copied(), Some(400));
    assert_eq!(stats.tasks_by_status.get("pending"), None);
    let filter = TaskFilter {
        status: Some(TaskStatus::Completed),
        limit: 1000,
        ..TaskFilter::default()
    };
    assert_eq!(store.list_tasks(&filter).await.unwrap().len(), 400);
}

/// Task ids and lock tokens come from the injected id generator.
#[tokio::test]
async fn ids_and_tokens_come_from_the_injected_generator() {
    use bgops_core::id::SequentialIds;
    use bgops_storage::LockStore;
    let store = MemoryStorage::with_clock_and_ids(
        Arc::new(ManualClock::new()),
        Arc::new(SequentialIds::new("m")),
    );
    let task = store
        .submit_task(NewTask::new("q", "t", json!(1)))
        .await
        .unwrap()
        .task;
    assert_eq!(task.task_id, "m-000001");
    let lock = store
        .acquire_lock("l", Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lock.token, "tm-000002");
}
