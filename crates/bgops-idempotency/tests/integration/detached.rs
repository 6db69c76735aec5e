//! Claimed work runs detached: a caller that goes away hands nothing back silently.

use std::time::Duration;

use bgops_core::OperationOutcome;
use bgops_idempotency::{KeyRequest, KeyStatus, Settle, Stored};
use serde_json::json;

use crate::support::{Runs, fixture};

fn request(key: &str) -> KeyRequest {
    KeyRequest::new("t1", key, "op")
}

#[tokio::test(start_paused = true)]
async fn a_dropped_caller_leaves_the_work_running_and_stored() {
    let f = fixture(Duration::from_secs(1));
    let KeyStatus::Created(claim) = f.engine.begin(request("d1")).await.unwrap() else {
        panic!("creates")
    };
    let runs = Runs::default();
    let r = runs.clone();
    drop(f.engine.spawn_claimed(claim, async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        r.inc();
        Settle::Complete((), OperationOutcome::succeeded(json!("effect")))
    }));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(matches!(
        f.engine.begin(request("d1")).await.unwrap(),
        KeyStatus::InProgress { .. }
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(runs.get(), 1);
    assert!(matches!(
        f.engine.begin(request("d1")).await.unwrap(),
        KeyStatus::Completed(_)
    ));
}

#[tokio::test(start_paused = true)]
async fn release_settles_by_giving_the_claim_back() {
    let f = fixture(Duration::from_secs(1));
    let KeyStatus::Created(claim) = f.engine.begin(request("d2")).await.unwrap() else {
        panic!("creates")
    };
    let ran = f
        .engine
        .spawn_claimed(claim, async { Settle::Release(5) })
        .await
        .unwrap();
    assert_eq!(ran.value, 5);
    assert!(matches!(ran.stored, Stored::Released));
    assert!(matches!(
        f.engine.begin(request("d2")).await.unwrap(),
        KeyStatus::Created(_)
    ));
}

#[tokio::test(start_paused = true)]
async fn a_panic_releases_the_claim_and_reaches_the_caller() {
    let f = fixture(Duration::from_secs(1));
    let KeyStatus::Created(claim) = f.engine.begin(request("d3")).await.unwrap() else {
        panic!("creates")
    };
    let bug = std::hint::black_box(true);
    let run = f.engine.spawn_claimed(claim, async move {
        assert!(!bug, "handler bug");
        Settle::Release(())
    });
    let caller = tokio::spawn(run).await;
    assert!(
        caller.unwrap_err().is_panic(),
        "the panic reached the caller"
    );
    assert!(matches!(
        f.engine.begin(request("d3")).await.unwrap(),
        KeyStatus::Created(_)
    ));
}

#[tokio::test(start_paused = true)]
async fn a_claim_travels_to_another_engine() {
    let f = fixture(Duration::from_secs(1));
    let KeyStatus::Created(claim) = f.engine.begin(request("d4")).await.unwrap() else {
        panic!("creates")
    };
    let wire = serde_json::to_string(&claim).unwrap();
    let other = bgops_idempotency::IdempotencyEngine::builder(f.store.clone()).build();
    let received: bgops_idempotency::Claim = serde_json::from_str(&wire).unwrap();
    assert_eq!(received, claim);
    other
        .complete(&received, OperationOutcome::succeeded(json!("remote")))
        .await
        .unwrap();
    assert!(matches!(
        f.engine.begin(request("d4")).await.unwrap(),
        KeyStatus::Completed(_)
    ));
}

#[tokio::test(start_paused = true)]
async fn hold_keeps_a_hand_driven_claim_alive() {
    let f = fixture(Duration::from_secs(1));
    let KeyStatus::Created(claim) = f.engine.begin(request("d5")).await.unwrap() else {
        panic!("creates")
    };
    let engine = f.engine.clone();
    let (out, lost) = f
        .engine
        .hold(&claim, async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            // A duplicate in the middle of the work finds the key still claimed.
            engine.begin(request("d5")).await.unwrap()
        })
        .await;
    assert!(matches!(out, KeyStatus::InProgress { .. }), "{out:?}");
    assert!(lost.is_none());
}
