//! Focused checks of each store against the schema.

use std::time::Duration;

use bgops_core::{OperationOutcome, SagaStatus, SagaStep, SagaWorkflow, TaskStatus};
use bgops_storage::{
    BeginOutcome, BeginRequest, CreateSaga, IdempotencyStore, LockStore, NewTask, SagaFilter,
    SagaStore, Storage, StorageError, TaskFilter, TaskStore,
};
use serde_json::json;

use super::support::storage;

const LONG: Duration = Duration::from_secs(600);

#[tokio::test]
async fn idempotency_lifecycle() {
    let (s, _guard) = storage().await;
    let req = BeginRequest::new("t", "k1", "op", "tok1").fingerprint("fp");
    let BeginOutcome::Started(claim) = s.begin(req.clone()).await.unwrap() else {
        panic!("first begin starts")
    };
    assert!(claim.lease_expires_at > claim.created_at);
    // Same token: started again. Other token: in progress. Other fingerprint: mismatch.
    assert!(matches!(
        s.begin(req.clone()).await.unwrap(),
        BeginOutcome::Started(_)
    ));
    let other = BeginRequest::new("t", "k1", "op", "tok2").fingerprint("fp");
    assert!(matches!(
        s.begin(other.clone()).await.unwrap(),
        BeginOutcome::InProgress { .. }
    ));
    let mismatch = BeginRequest::new("t", "k1", "op", "tok2").fingerprint("other");
    assert_eq!(s.begin(mismatch).await.unwrap(), BeginOutcome::Mismatch);
    let done = s
        .complete(
            "t",
            "k1",
            "tok1",
            OperationOutcome::succeeded(json!({"a": 1})).with_payload(vec![0_u8, 1, 2, 255]),
        )
        .await
        .unwrap();
    // Repeated complete: the first receipt.
    let again = s
        .complete("t", "k1", "tok1", OperationOutcome::succeeded(json!(2)))
        .await
        .unwrap();
    assert_eq!(done, again);
    let err = s
        .complete("t", "k1", "tok2", OperationOutcome::succeeded(json!(2)))
        .await;
    assert!(
        matches!(err, Err(StorageError::LeaseLost { .. })),
        "{err:?}"
    );
    let BeginOutcome::Completed(record) = s.begin(other).await.unwrap() else {
        panic!("replay")
    };
    assert_eq!(record.result, Some(json!({"a": 1})));
    assert_eq!(record.payload.as_deref(), Some(&[0_u8, 1, 2, 255][..]));
    let err = s
        .complete("t", "nope", "tok1", OperationOutcome::succeeded(json!(2)))
        .await;
    assert!(matches!(err, Err(StorageError::NotFound { .. })), "{err:?}");

    // Release, renew, takeover after the lease.
    let r = BeginRequest::new("t", "k2", "op", "a").lease(Duration::from_millis(300));
    assert!(matches!(
        s.begin(r).await.unwrap(),
        BeginOutcome::Started(_)
    ));
    let renewed = s
        .renew("t", "k2", "a", Duration::from_millis(300))
        .await
        .unwrap();
    assert!(renewed > time::OffsetDateTime::UNIX_EPOCH);
    assert!(matches!(
        s.renew("t", "k2", "b", LONG).await,
        Err(StorageError::LeaseLost { .. })
    ));
    tokio::time::sleep(Duration::from_millis(700)).await;
    let BeginOutcome::Started(_) = s
        .begin(BeginRequest::new("t", "k2", "op", "b"))
        .await
        .unwrap()
    else {
        panic!("takeover")
    };
    assert!(matches!(
        s.complete("t", "k2", "a", OperationOutcome::failed("x"))
            .await,
        Err(StorageError::LeaseLost { .. })
    ));
    s.release("t", "k2", "b").await.unwrap();
    assert!(s.get_idempotency("t", "k2").await.unwrap().is_none());
    assert!(s.get_idempotency("t", "k1").await.unwrap().is_some());
    assert!(s.delete_idempotency("t", "k1").await.unwrap());

    // Expiry and purge.
    let r = BeginRequest::new("t", "k3", "op", "a").ttl(Duration::from_millis(200));
    assert!(matches!(
        s.begin(r).await.unwrap(),
        BeginOutcome::Started(_)
    ));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(s.get_idempotency("t", "k3").await.unwrap().is_none());
    let sweep = s.purge_expired(10).await.unwrap();
    assert_eq!((sweep.done, sweep.more), (1, false));
}

#[tokio::test]
async fn locks_are_fenced() {
    let (s, _guard) = storage().await;
    let a = s.acquire_lock("l", LONG).await.unwrap().expect("free");
    assert!(s.acquire_lock("l", LONG).await.unwrap().is_none());
    let renewed = s.renew_lock(&a, LONG).await.unwrap().expect("owner");
    assert_eq!(renewed.fence, a.fence);
    assert!(s.release_lock(&a).await.unwrap());
    assert!(!s.release_lock(&a).await.unwrap());
    let b = s
        .acquire_lock("l", LONG)
        .await
        .unwrap()
        .expect("free again");
    assert!(b.fence > a.fence);
    assert!(s.renew_lock(&a, LONG).await.unwrap().is_none());
    assert_eq!(s.stats().await.unwrap().locks, 1);
}

#[tokio::test]
async fn sagas_cas_history_recovery() {
    let (s, _guard) = storage().await;
    let now = time::OffsetDateTime::now_utc();
    let mut saga = SagaWorkflow::new(
        "t",
        "wf",
        vec![SagaStep::new("a", "op", json!({"x": 1}))],
        now,
    );
    saga.idempotency_key = Some("ik".into());
    let created = s.create_saga(&saga, None, &[]).await.unwrap();
    assert!(matches!(created, CreateSaga::Created(_)));
    let mut dup = SagaWorkflow::new("t", "wf", vec![], now);
    dup.idempotency_key = Some("ik".into());
    let CreateSaga::Existing(existing) = s.create_saga(&dup, None, &[]).await.unwrap() else {
        panic!("dedupe by key")
    };
    assert_eq!(existing.saga_id, saga.saga_id);
    let leased = s
        .acquire_saga_lease(&saga.saga_id, "exec", LONG)
        .await
        .unwrap()
        .expect("free");
    let lease = leased.lease.clone().expect("lease");
    assert_eq!((lease.fence, leased.version), (1, 1));
    assert!(
        s.acquire_saga_lease(&saga.saga_id, "other", LONG)
            .await
            .unwrap()
            .is_none()
    );
    let mut next = leased.clone();
    next.status = SagaStatus::Running;
    let event = bgops_core::SagaEvent {
        saga_id: saga.saga_id.as_str().into(),
        at: now,
        fence: 1,
        status: SagaStatus::Running,
        kind: bgops_core::SagaEventKind::Resumed,
    };
    let saved = s
        .save_saga(
            &next,
            1,
            &[event.clone(), event.clone()],
            Some(Duration::from_millis(200)),
        )
        .await
        .unwrap();
    assert_eq!(saved.version, 2);
    assert!(matches!(
        s.save_saga(&next, 1, &[], None).await,
        Err(StorageError::VersionConflict { .. })
    ));
    assert!(matches!(
        s.save_saga(&next, 7, &[], None).await,
        Err(StorageError::LeaseLost { .. })
    ));
    assert_eq!(s.get_saga_history(&saga.saga_id).await.unwrap().len(), 2);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        s.list_recoverable_sagas(10).await.unwrap(),
        vec![saga.saga_id.clone()]
    );
    let listed = s
        .list_sagas(&SagaFilter {
            status: Some(SagaStatus::Running),
            tenant_id: Some("t".into()),
            ..SagaFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].version, 2);
    assert!(s.delete_saga(&saga.saga_id).await.unwrap());
    assert!(s.get_saga(&saga.saga_id).await.unwrap().is_none());
}

#[tokio::test]
async fn tasks_lifecycle() {
    let (s, _guard) = storage().await;
    let new = NewTask::new("q", "send", json!({"n": 1})).idempotency_key("k");
    let first = s.submit_task(new.clone()).await.unwrap();
    assert!(!first.duplicate);
    assert!(s.submit_task(new.clone()).await.unwrap().duplicate);
    assert!(matches!(
        s.submit_task(NewTask::new("q", "send", json!(2)).idempotency_key("k"))
            .await,
        Err(StorageError::KeyConflict { .. })
    ));
    let id = first.task.task_id.clone();
    let claimed = s
        .claim_next_task("q", "w", Duration::from_millis(300))
        .await
        .unwrap()
        .expect("one");
    assert_eq!(claimed.lease.as_ref().unwrap().attempt, 1);
    assert!(s.claim_next_task("q", "w", LONG).await.unwrap().is_none());
    tokio::time::sleep(Duration::from_millis(600)).await;
    let again = s
        .claim_next_task("q", "w2", LONG)
        .await
        .unwrap()
        .expect("expired");
    assert_eq!(again.history[0].outcome.as_deref(), Some("lease_expired"));
    assert!(matches!(
        s.complete_task(&id, 1, json!(1)).await,
        Err(StorageError::LeaseLost { .. })
    ));
    let failed = s.fail_task(&id, 2, "boom", Duration::ZERO).await.unwrap();
    assert_eq!(failed.status, TaskStatus::Pending);
    let third = s.claim_task(&id, "w3", LONG).await.unwrap().expect("again");
    let released = s.release_task(&id, 3).await.unwrap();
    assert_eq!(released.attempts, 2);
    let fourth = s.claim_task(&id, "w3", LONG).await.unwrap().expect("again");
    assert_eq!(fourth.lease.as_ref().unwrap().attempt, 4);
    let _ = third;
    s.renew_task_lease(&id, 4, LONG).await.unwrap();
    let done = s.complete_task(&id, 4, json!("ok")).await.unwrap();
    assert_eq!(done.status, TaskStatus::Completed);
    let task = s.get_task(&id).await.unwrap().unwrap();
    assert_eq!(task.result, Some(json!("ok")));
    assert_eq!(task.history.len(), 4);
    assert!(matches!(
        s.retry_task(&id).await,
        Err(StorageError::InvalidState { .. })
    ));
    let listed = s
        .list_tasks(&TaskFilter {
            queue: Some("q".into()),
            status: Some(TaskStatus::Completed),
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    let p = s
        .submit_task(NewTask::new("q", "x", json!(1)).max_attempts(1))
        .await
        .unwrap();
    s.claim_task(&p.task.task_id, "w", Duration::from_millis(100))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sweep = s.requeue_expired_tasks(10).await.unwrap();
    assert_eq!(sweep.done, 1);
    let dead = s.get_task(&p.task.task_id).await.unwrap().unwrap();
    assert_eq!(dead.status, TaskStatus::Failed);
    s.retry_task(&p.task.task_id).await.unwrap();
    let c = s
        .claim_task(&p.task.task_id, "w", LONG)
        .await
        .unwrap()
        .unwrap();
    s.fail_task_permanently(&p.task.task_id, c.lease.unwrap().attempt, "no")
        .await
        .unwrap();
    let sweep = s.purge_tasks(Duration::ZERO, 10).await.unwrap();
    assert_eq!(sweep.done, 2);
    let stats = s.stats().await.unwrap();
    assert!(stats.tasks_by_status.is_empty(), "{stats:?}");
    assert!(s.health().await.unwrap().healthy);
}
