//! LISTEN/NOTIFY: submits wake idle workers, completions wake waiting duplicates.

use std::time::Duration;

use bgops_core::OperationOutcome;
use bgops_storage::{BeginOutcome, BeginRequest, IdempotencyStore, NewTask, TaskStore};
use serde_json::json;

use super::support::storage;

/// Generous: a wakeup that works arrives in milliseconds; only a broken one waits this.
const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn submit_wakes_a_worker_of_that_queue() {
    let (s, _guard) = storage().await;
    let mut wakeup = s.watch_queue("q").await.expect("watch");
    assert!(
        s.claim_next_task("q", "w", WAIT)
            .await
            .expect("claim")
            .is_none()
    );
    let other = s.clone();
    tokio::spawn(async move {
        other
            .submit_task(NewTask::new("elsewhere", "x", json!(0)))
            .await
            .expect("submit");
        other
            .submit_task(NewTask::new("q", "x", json!(1)))
            .await
            .expect("submit");
    });
    assert!(wakeup.wait(WAIT).await, "woken by the submit");
    assert!(
        s.claim_next_task("q", "w", WAIT)
            .await
            .expect("claim")
            .is_some()
    );
}

#[tokio::test]
async fn completion_wakes_a_waiting_duplicate() {
    let (s, _guard) = storage().await;
    let got = s
        .begin(BeginRequest::new("t", "k", "op", "a"))
        .await
        .expect("begin");
    assert!(matches!(got, BeginOutcome::Started(_)));
    let mut wakeup = s.watch_completion("t", "k").await.expect("watch");
    let got = s
        .begin(BeginRequest::new("t", "k", "op", "b"))
        .await
        .expect("begin");
    assert!(matches!(got, BeginOutcome::InProgress { .. }));
    let other = s.clone();
    tokio::spawn(async move {
        other
            .complete("t", "k", "a", OperationOutcome::succeeded(json!(1)))
            .await
            .expect("complete");
    });
    assert!(wakeup.wait(WAIT).await, "woken by the completion");
    let got = s
        .begin(BeginRequest::new("t", "k", "op", "b"))
        .await
        .expect("begin");
    assert!(matches!(got, BeginOutcome::Completed(_)), "{got:?}");
}

/// A submit that rolls back notifies nobody (NOTIFY is delivered at commit only).
#[tokio::test]
async fn rolled_back_submit_wakes_nobody() {
    let (s, _guard) = storage().await;
    let mut wakeup = s.watch_queue("q").await.expect("watch");
    let mut tx = s.pool().begin().await.expect("tx");
    s.submit_task_in(&mut tx, &NewTask::new("q", "x", json!(1)))
        .await
        .expect("submit");
    tx.rollback().await.expect("rollback");
    // Then a committed one: the first notification the waiter sees must be for it.
    s.submit_task(NewTask::new("q", "x", json!(2)))
        .await
        .expect("submit");
    assert!(wakeup.wait(WAIT).await);
    let claimed = s
        .claim_next_task("q", "w", WAIT)
        .await
        .expect("claim")
        .expect("one");
    assert_eq!(claimed.payload, json!(2));
    assert!(
        s.claim_next_task("q", "w", WAIT)
            .await
            .expect("claim")
            .is_none()
    );
}
