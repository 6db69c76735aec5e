//! Focused checks of the NATS schema: payload bytes, delivery through the work stream,
//! cleanup.

use std::time::Duration;

use bgops_core::{OperationOutcome, TaskStatus};
use bgops_storage::{
    BeginOutcome, BeginRequest, IdempotencyStore, LockStore, NewTask, Storage, TaskStore,
};
use serde_json::json;

use super::support::{SHORT_LEASE, Scoped};

const LONG: Duration = Duration::from_secs(600);

#[tokio::test]
async fn payload_bytes_round_trip_raw() {
    let s = Scoped::new().await;
    let req = BeginRequest::new("t1", "k1", "op", "tok-1").lease(LONG);
    assert!(matches!(
        s.begin(req.clone()).await.unwrap(),
        BeginOutcome::Started(_)
    ));
    let bytes: &[u8] = &[0, 159, 146, 150, 255, b'\n'];
    s.complete(
        "t1",
        "k1",
        "tok-1",
        OperationOutcome::succeeded(json!({"id": 1})).with_payload(bytes.to_vec()),
    )
    .await
    .unwrap();
    let replay = s
        .begin(BeginRequest::new("t1", "k1", "op", "tok-2"))
        .await
        .unwrap();
    let BeginOutcome::Completed(record) = replay else {
        panic!("{replay:?}")
    };
    assert_eq!(record.payload.as_deref(), Some(bytes));
    assert_eq!(record.result, Some(json!({"id": 1})));
}

#[tokio::test]
async fn tasks_flow_submit_claim_complete() {
    let s = Scoped::new().await;
    let queue = "q.with spaces";
    let a = s
        .submit_task(NewTask::new(queue, "t", json!(1)).idempotency_key("k1"))
        .await
        .unwrap();
    let dup = s
        .submit_task(NewTask::new(queue, "t", json!(1)).idempotency_key("k1"))
        .await
        .unwrap();
    assert!(dup.duplicate);
    assert_eq!(dup.task.task_id, a.task.task_id);
    let b = s
        .submit_task(NewTask::new(queue, "t", json!(2)))
        .await
        .unwrap();
    let first = s.claim_next_task(queue, "w1", LONG).await.unwrap().unwrap();
    assert_eq!(first.task_id, a.task.task_id);
    let second = s.claim_next_task(queue, "w1", LONG).await.unwrap().unwrap();
    assert_eq!(second.task_id, b.task.task_id);
    assert!(
        s.claim_next_task(queue, "w1", LONG)
            .await
            .unwrap()
            .is_none()
    );
    let attempt = first.lease.as_ref().unwrap().attempt;
    let receipt = s
        .complete_task(&first.task_id, attempt, json!("ok"))
        .await
        .unwrap();
    assert_eq!(receipt.status, TaskStatus::Completed);
    let attempt = second.lease.as_ref().unwrap().attempt;
    let receipt = s
        .fail_task(&second.task_id, attempt, "boom", Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(receipt.status, TaskStatus::Pending);
    let again = s.claim_next_task(queue, "w2", LONG).await.unwrap().unwrap();
    assert_eq!(again.task_id, b.task.task_id);
    assert_eq!(again.attempts, 2);
    let stats = s.stats().await.unwrap();
    assert_eq!(stats.tasks_by_status.get("completed"), Some(&1));
    assert_eq!(stats.tasks_by_status.get("claimed"), Some(&1));
}

#[tokio::test]
async fn an_expired_claim_is_delivered_again() {
    let s = Scoped::new().await;
    let task = s
        .submit_task(NewTask::new("q", "t", json!(1)))
        .await
        .unwrap();
    let claimed = s
        .claim_next_task("q", "dead", SHORT_LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.task_id, task.task.task_id);
    assert!(s.claim_next_task("q", "w2", LONG).await.unwrap().is_none());
    tokio::time::sleep(SHORT_LEASE * 2).await;
    let taken = s.claim_next_task("q", "w2", LONG).await.unwrap().unwrap();
    assert_eq!(taken.task_id, task.task.task_id);
    assert_eq!(taken.lease.unwrap().attempt, 2);
}

#[tokio::test]
async fn locks_fence_rises() {
    let s = Scoped::new().await;
    let a = s.acquire_lock("res", LONG).await.unwrap().unwrap();
    assert!(s.acquire_lock("res", LONG).await.unwrap().is_none());
    assert!(s.release_lock(&a).await.unwrap());
    let b = s.acquire_lock("res", LONG).await.unwrap().unwrap();
    assert!(b.fence > a.fence);
    assert_eq!(s.stats().await.unwrap().locks, 1);
}

#[tokio::test]
async fn purge_expired_visits_due_minutes() {
    let s = Scoped::new().await;
    let req = BeginRequest::new("t1", "k1", "op", "tok")
        .ttl(Duration::from_millis(300))
        .lease(Duration::from_millis(200));
    assert!(matches!(
        s.begin(req).await.unwrap(),
        BeginOutcome::Started(_)
    ));
    assert_eq!(s.stats().await.unwrap().idempotency_records, 1);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let sweep = s.purge_expired(10).await.unwrap();
    assert_eq!(sweep.done, 1);
    assert_eq!(s.stats().await.unwrap().idempotency_records, 0);
}
