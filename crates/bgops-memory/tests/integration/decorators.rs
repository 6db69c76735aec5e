//! The test decorators of `bgops_storage::testing::decorators` on the memory backend: the
//! whole conformance suite passes through them (every method delegates), counts are
//! exact, and injected faults strike before or after the store acted, as told.

use std::sync::Arc;
use std::time::Duration;

use bgops_core::{ManualClock, OperationOutcome, OperationStatus};
use bgops_memory::MemoryStorage;
use bgops_storage::testing::decorators::{CountingStorage, FailingStorage, Fault, Method};
use bgops_storage::testing::{Fixture, token};
use bgops_storage::{
    BeginOutcome, BeginRequest, IdempotencyStore, LockStore, Storage, StorageError,
};
use serde_json::json;

use super::ManualTime;

/// A memory store seen through both decorators, neither of them interfering.
#[allow(clippy::unused_async)]
async fn decorated() -> Fixture {
    let clock = ManualClock::new();
    let memory: Arc<dyn Storage> = Arc::new(MemoryStorage::with_clock(Arc::new(clock.clone())));
    let failing: Arc<dyn Storage> = Arc::new(FailingStorage::failing(memory));
    Fixture {
        storage: Arc::new(CountingStorage::counting(failing)),
        time: Arc::new(ManualTime(clock)),
        short_lease: Duration::from_secs(5),
    }
}

mod through_decorators {
    use super::decorated;
    bgops_storage::conformance_suite!(decorated());
}

fn request(key: &str) -> BeginRequest {
    BeginRequest::new("t", key, "op", token())
}

#[tokio::test]
async fn counting_counts_each_method() {
    let store = CountingStorage::counting(Arc::new(MemoryStorage::new()));
    let BeginOutcome::Started(claim) = store.begin(request("k")).await.unwrap() else {
        panic!("new key");
    };
    store.begin(request("k")).await.unwrap();
    store
        .complete(
            "t",
            "k",
            &claim.token,
            OperationOutcome::succeeded(json!(1)),
        )
        .await
        .unwrap();
    store.get_idempotency("t", "k").await.unwrap();
    let counts = store.hook();
    assert_eq!(counts.of(Method::Begin), 2);
    assert_eq!(counts.of(Method::Complete), 1);
    assert_eq!((counts.total(), counts.writes()), (4, 3));
    assert_eq!(
        counts.snapshot().into_iter().collect::<Vec<_>>(),
        [("begin", 2), ("complete", 1), ("get_idempotency", 1)]
    );
    counts.reset();
    assert_eq!(counts.total(), 0);
}

#[tokio::test]
async fn a_fault_before_the_call_leaves_the_store_untouched() {
    let memory = Arc::new(MemoryStorage::new());
    let store = FailingStorage::failing(memory.clone());
    store
        .hook()
        .fail_times(Method::Begin, Fault::Unavailable, 1);
    let err = store.begin(request("k")).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(memory.get_idempotency("t", "k").await.unwrap(), None);
    assert!(matches!(
        store.begin(request("k")).await.unwrap(),
        BeginOutcome::Started(_)
    ));
    store.hook().fail(Method::GetIdempotency, Fault::Corrupt);
    for _ in 0..3 {
        assert!(matches!(
            store.get_idempotency("t", "k").await,
            Err(StorageError::Corrupt { .. })
        ));
    }
    store.hook().heal();
    assert!(store.get_idempotency("t", "k").await.unwrap().is_some());
    assert_eq!(store.hook().injected(), 4);
}

#[tokio::test]
async fn a_fault_after_the_call_loses_only_the_answer() {
    let memory = Arc::new(MemoryStorage::new());
    let store = FailingStorage::failing(memory.clone());
    let BeginOutcome::Started(claim) = store.begin(request("k")).await.unwrap() else {
        panic!("new key");
    };
    store
        .hook()
        .lose_answer(Method::Complete, Fault::Unavailable, 1);
    let outcome = OperationOutcome::succeeded(json!("done"));
    let lost = store
        .complete("t", "k", &claim.token, outcome.clone())
        .await;
    assert!(matches!(lost, Err(StorageError::Unavailable { .. })));
    let record = memory.get_idempotency("t", "k").await.unwrap().unwrap();
    assert_eq!(record.status, OperationStatus::Completed, "the store acted");
    // The retried completion by the same token gets the first receipt.
    let receipt = store
        .complete("t", "k", &claim.token, outcome)
        .await
        .unwrap();
    assert_eq!(Some(receipt.completed_at), record.completed_at);
}

#[tokio::test]
async fn a_whole_backend_can_be_down() {
    let store = FailingStorage::failing(Arc::new(MemoryStorage::new()));
    store.hook().fail_everything(Fault::Unavailable);
    assert!(store.health().await.is_err());
    assert!(store.begin(request("k")).await.is_err());
    assert!(
        store
            .acquire_lock("l", Duration::from_secs(1))
            .await
            .is_err()
    );
    store.hook().heal();
    assert!(store.health().await.unwrap().healthy);
}
