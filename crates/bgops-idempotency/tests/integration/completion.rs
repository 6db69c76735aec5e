//! Issue 10 item 1: an effect that happened is never forgotten when the store is down at
//! completion; the claim is held meanwhile and duplicates see it in progress.

use std::time::Duration;

use bgops_core::OperationOutcome;
use bgops_idempotency::{Completion, KeyRequest, KeyStatus, Settle, Stored};
use bgops_storage::IdempotencyStore as _;
use bgops_storage::testing::decorators::{Fault, Method};
use serde_json::json;

use crate::support::{Runs, fixture};

fn request(key: &str) -> KeyRequest {
    KeyRequest::new("t1", key, "op").fingerprint("fp")
}

async fn begin_status(f: &crate::support::Fixture, key: &str) -> KeyStatus {
    f.engine.begin(request(key)).await.unwrap()
}

/// The store dies while the work runs, for longer than the lease, and comes back: the
/// outcome is stored once it is back, and the work ran once.
#[tokio::test(start_paused = true)]
async fn store_down_mid_work_then_back_the_outcome_is_stored() {
    let f = fixture(Duration::from_secs(1));
    let KeyStatus::Created(claim) = begin_status(&f, "k1").await else {
        panic!("creates")
    };
    let runs = Runs::default();
    let r = runs.clone();
    let run = f.engine.spawn_claimed(claim, async move {
        r.inc();
        tokio::time::sleep(Duration::from_secs(1)).await;
        Settle::Complete("done", OperationOutcome::succeeded(json!({"v": 1})))
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    f.store.hook().fail_everything(Fault::Unavailable);
    let ran = run.await.unwrap();
    assert_eq!(ran.value, "done");
    assert!(matches!(ran.stored, Stored::Pending), "{:?}", ran.stored);
    // Down for 3 s (three leases); then back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    f.store.hook().heal();
    tokio::time::sleep(Duration::from_millis(500)).await;
    match begin_status(&f, "k1").await {
        KeyStatus::Completed(record) => assert_eq!(record.result, Some(json!({"v": 1}))),
        other => panic!("the outcome was not stored: {other:?}"),
    }
    assert_eq!(runs.get(), 1);
}

/// While the outcome waits to be stored (only `complete` fails), the lease is kept alive:
/// a duplicate sees the key in progress, never a free key.
#[tokio::test(start_paused = true)]
async fn a_pending_outcome_holds_the_claim() {
    let f = fixture(Duration::from_secs(1));
    let KeyStatus::Created(claim) = begin_status(&f, "k2").await else {
        panic!("creates")
    };
    f.store.hook().fail(Method::Complete, Fault::Unavailable);
    let completion = f
        .engine
        .complete(&claim, OperationOutcome::succeeded(json!(2)))
        .await
        .unwrap();
    let Completion::Pending(pending) = completion else {
        panic!("the store refused the completion")
    };
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            matches!(begin_status(&f, "k2").await, KeyStatus::InProgress { .. }),
            "a duplicate found the key free while its outcome was pending"
        );
    }
    f.store.hook().heal();
    pending.wait().await.unwrap();
    assert!(matches!(
        begin_status(&f, "k2").await,
        KeyStatus::Completed(_)
    ));
}

/// The store applied a completion but its answer was lost: the retry is answered with
/// the first receipt.
#[tokio::test(start_paused = true)]
async fn a_lost_completion_answer_is_retried() {
    let f = fixture(Duration::from_secs(1));
    let KeyStatus::Created(claim) = begin_status(&f, "k3").await else {
        panic!("creates")
    };
    f.store
        .hook()
        .lose_answer(Method::Complete, Fault::Unavailable, 1);
    let Completion::Pending(pending) = f
        .engine
        .complete(&claim, OperationOutcome::succeeded(json!(3)))
        .await
        .unwrap()
    else {
        panic!("the answer was lost")
    };
    pending.wait().await.unwrap();
    match begin_status(&f, "k3").await {
        KeyStatus::Completed(record) => assert_eq!(record.result, Some(json!(3))),
        other => panic!("{other:?}"),
    }
}

/// The store lost the in-flight record (a Redis restart without persistence): the outcome
/// is stored anyway, in a record re-created under the claim's own token.
#[tokio::test(start_paused = true)]
async fn a_record_lost_by_the_store_is_recreated_to_keep_the_outcome() {
    let f = fixture(Duration::from_secs(1));
    let KeyStatus::Created(claim) = begin_status(&f, "k4").await else {
        panic!("creates")
    };
    assert!(f.store.delete_idempotency("t1", "k4").await.unwrap());
    let Completion::Pending(pending) = f
        .engine
        .complete(&claim, OperationOutcome::succeeded(json!(4)))
        .await
        .unwrap()
    else {
        panic!("the record was gone")
    };
    pending.wait().await.unwrap();
    match begin_status(&f, "k4").await {
        KeyStatus::Completed(record) => assert_eq!(record.result, Some(json!(4))),
        other => panic!("{other:?}"),
    }
}

/// ...but not over someone else's claim made after the loss.
#[tokio::test(start_paused = true)]
async fn a_lost_record_claimed_by_another_is_not_overwritten() {
    let f = fixture(Duration::from_secs(1));
    let KeyStatus::Created(claim) = begin_status(&f, "k5").await else {
        panic!("creates")
    };
    assert!(f.store.delete_idempotency("t1", "k5").await.unwrap());
    let KeyStatus::Created(other) = begin_status(&f, "k5").await else {
        panic!("the key was free")
    };
    let done = f
        .engine
        .complete(&claim, OperationOutcome::succeeded(json!("old")))
        .await;
    let failed = match done {
        Err(e) => e,
        Ok(Completion::Pending(pending)) => pending.wait().await.unwrap_err(),
        Ok(Completion::Stored(_)) => panic!("overwrote another claim"),
    };
    assert!(
        matches!(
            failed,
            bgops_idempotency::IdempotencyError::LeaseLost { .. }
        ),
        "{failed:?}"
    );
    f.engine
        .complete(&other, OperationOutcome::succeeded(json!("new")))
        .await
        .unwrap();
}
