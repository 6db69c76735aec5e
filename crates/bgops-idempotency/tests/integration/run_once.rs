//! `run_once`: a long operation keeps its lease, a dropped caller does not cancel it.

use std::time::Duration;

use bgops_idempotency::{IdempotencyError, KeyRequest};
use serde_json::{Value, json};

use crate::support::{Runs, fixture};

fn request() -> KeyRequest {
    KeyRequest::for_operation("t1", None, "charge", None, Some(&json!({"amount": 5}))).unwrap()
}

fn operation(
    runs: &Runs,
    takes: Duration,
) -> impl Future<Output = Result<Value, String>> + Send + 'static {
    let n = runs.inc();
    async move {
        tokio::time::sleep(takes).await;
        Ok(json!({ "run": n }))
    }
}

/// Issue 9 defect 1: lease 1 s, a 2.5 s operation, a second caller at 1.5 s. Without
/// renewal the lease ran out at 1 s and the second caller ran the operation again.
#[tokio::test(start_paused = true)]
async fn a_long_operation_runs_once_while_its_lease_is_renewed() {
    let f = fixture(Duration::from_secs(1));
    let runs = Runs::default();
    let first = {
        let (engine, runs) = (f.engine.clone(), runs.clone());
        tokio::spawn(async move {
            engine
                .run_once(request(), || operation(&runs, Duration::from_millis(2500)))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = f
        .engine
        .run_once(request(), || operation(&runs, Duration::from_millis(2500)))
        .await;
    assert!(
        matches!(second, Err(IdempotencyError::InProgress { .. })),
        "{second:?}"
    );
    let first = first.await.unwrap().unwrap().unwrap();
    assert_eq!(first, json!({"run": 1}));
    let third = f
        .engine
        .run_once(request(), || operation(&runs, Duration::ZERO))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(third, first, "the stored value is replayed");
    assert_eq!(runs.get(), 1, "the operation ran once");
}

#[tokio::test(start_paused = true)]
async fn dropping_the_caller_does_not_cancel_the_operation() {
    let f = fixture(Duration::from_secs(1));
    let runs = Runs::default();
    let dropped = tokio::time::timeout(
        Duration::from_millis(300),
        f.engine
            .run_once(request(), || operation(&runs, Duration::from_secs(2))),
    )
    .await;
    assert!(dropped.is_err(), "the caller gave up");
    // Meanwhile a retry is told to wait; the claim was not released.
    let retry = f
        .engine
        .run_once(request(), || operation(&runs, Duration::ZERO))
        .await;
    assert!(
        matches!(retry, Err(IdempotencyError::InProgress { .. })),
        "{retry:?}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = f
        .engine
        .run_once(request(), || operation(&runs, Duration::ZERO))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after, json!({"run": 1}));
    assert_eq!(runs.get(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_operation_error_releases_the_claim() {
    let f = fixture(Duration::from_secs(1));
    let failed = f
        .engine
        .run_once(request(), || async { Err::<Value, _>("boom") })
        .await
        .unwrap();
    assert_eq!(failed, Err("boom"));
    let again = f
        .engine
        .run_once(request(), || async { Ok::<_, String>(json!(2)) })
        .await
        .unwrap();
    assert_eq!(again, Ok(json!(2)), "a retry runs again");
}

#[tokio::test(start_paused = true)]
async fn a_remembered_failure_is_replayed_as_stored_failure() {
    let f = fixture(Duration::from_secs(1));
    let bgops_idempotency::KeyStatus::Created(claim) = f.engine.begin(request()).await.unwrap()
    else {
        panic!("first begin creates")
    };
    f.engine
        .complete(
            &claim,
            bgops_core::OperationOutcome::failed("card declined"),
        )
        .await
        .unwrap();
    let again = f
        .engine
        .run_once(request(), || async { Ok::<_, String>(json!(1)) })
        .await;
    assert!(
        matches!(&again, Err(IdempotencyError::StoredFailure { error, .. }) if error == "card declined"),
        "{again:?}"
    );
}
