//! The TaskQueue API: dedupe, fencing, backoff, expiry, look-ups, paging, cleanup.

use std::sync::Arc;
use std::time::Duration;

use bgops_core::{Clock, TaskStatus};
use bgops_queue::{Backoff, Claim, NewTask, QueueError, TaskFilter};
use serde_json::json;

use crate::support::{CountingMetrics, manual_queue};

fn order(n: u32) -> NewTask {
    NewTask::new(
        "orders",
        "process_order",
        json!({"order_id": n, "amount": 99.99}),
    )
    .idempotency_key(format!("order-{n}"))
}

#[tokio::test]
async fn submit_dedupes_by_key_and_rejects_other_payloads() {
    let (queue, _) = manual_queue();
    let metrics = Arc::new(CountingMetrics::default());
    let queue = queue.with_metrics(metrics.clone());

    let first = queue.submit(order(1)).await.unwrap();
    assert!(!first.duplicate);
    assert_eq!(first.task.status, TaskStatus::Pending);
    let again = queue.submit(order(1)).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.task.task_id, first.task.task_id);

    let other = queue.submit(order(2)).await.unwrap();
    assert!(!other.duplicate);
    assert_ne!(other.task.task_id, first.task.task_id);

    let changed = NewTask::new(
        "orders",
        "process_order",
        json!({"order_id": 1, "amount": 5}),
    )
    .idempotency_key("order-1");
    assert!(matches!(
        queue.submit(changed).await,
        Err(QueueError::KeyConflict { key }) if key == "order-1"
    ));
    // The same key on another queue is another task.
    let elsewhere = NewTask {
        queue: "refunds".into(),
        ..order(1)
    };
    assert!(!queue.submit(elsewhere).await.unwrap().duplicate);

    assert_eq!(metrics.get("submitted:orders:false"), 2);
    assert_eq!(metrics.get("submitted:orders:true"), 1);
    assert_eq!(metrics.get("submitted:refunds:false"), 1);
}

#[tokio::test]
async fn submit_rejects_bad_input_before_the_store() {
    let (queue, _) = manual_queue();
    assert!(matches!(
        queue.submit(order(1).max_attempts(0)).await,
        Err(QueueError::Invalid(bgops_core::CoreError::OutOfRange {
            field: "max_attempts",
            ..
        }))
    ));
    assert!(matches!(
        queue.submit(NewTask::new(" ", "t", json!(1))).await,
        Err(QueueError::Invalid(_))
    ));
    assert!(matches!(
        queue
            .submit(NewTask::new("q", "t", json!(1)).idempotency_key("has space"))
            .await,
        Err(QueueError::Invalid(_))
    ));
    assert!(queue.list_all(None, None).await.unwrap().is_empty());
}

#[tokio::test]
async fn only_the_current_attempt_may_complete() {
    let (queue, _) = manual_queue();
    let id = queue.submit(order(1)).await.unwrap().task.task_id;

    let claim = queue.claim(&id, "w1").await.unwrap().expect("claimable");
    assert_eq!(claim.attempt, 1);
    assert_eq!(claim.worker_id, "w1");
    assert_eq!(claim.task.status, TaskStatus::Claimed);
    // Claimed tasks cannot be claimed again while the lease is live.
    assert!(queue.claim(&id, "w2").await.unwrap().is_none());
    assert!(queue.claim_next("orders", "w2").await.unwrap().is_none());

    assert!(matches!(
        queue
            .complete(&Claim { attempt: 2, ..claim.clone() }, json!("wrong attempt"))
            .await,
        Err(QueueError::LeaseLost { task_id }) if task_id == id
    ));
    let receipt = queue
        .complete(&claim, json!({"charged": 99.99}))
        .await
        .unwrap();
    assert_eq!(receipt.status, TaskStatus::Completed);
    assert_eq!(receipt.attempts, 1);
    assert_eq!(receipt.lease_expires_at, None);
    let done = queue.get(&id).await.unwrap().unwrap();
    assert_eq!(done.status, TaskStatus::Completed);
    assert_eq!(done.result, Some(json!({"charged": 99.99})));
    // A finished task cannot be completed or failed again.
    assert!(matches!(
        queue.complete(&claim, json!(0)).await,
        Err(QueueError::LeaseLost { .. })
    ));
    assert!(matches!(
        queue.fail(&claim, "late").await,
        Err(QueueError::LeaseLost { .. })
    ));

    let history = queue.history(&id).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].outcome.as_deref(), Some("completed"));
    assert_eq!(history[0].worker_id, "w1");
}

#[tokio::test]
async fn failures_back_off_then_fail_at_the_last_attempt() {
    let (queue, clock) = manual_queue();
    let queue = queue.with_backoff(Backoff::constant(Duration::from_secs(10)));
    let id = queue
        .submit(order(1).max_attempts(2))
        .await
        .unwrap()
        .task
        .task_id;

    let c1 = queue.claim_next("orders", "w1").await.unwrap().unwrap();
    let r = queue.fail(&c1, "temporary error").await.unwrap();
    assert_eq!(r.status, TaskStatus::Pending);
    assert_eq!(r.available_at - clock.now(), time::Duration::seconds(10));
    let t = queue.get(&id).await.unwrap().unwrap();
    assert_eq!(t.error.as_deref(), Some("temporary error"));
    assert_eq!(t.available_at, r.available_at);

    // Not claimable during the backoff.
    assert!(queue.claim_next("orders", "w1").await.unwrap().is_none());
    clock.advance(Duration::from_secs(11));
    let c2 = queue.claim_next("orders", "w2").await.unwrap().unwrap();
    assert_eq!(c2.attempt, 2);

    let r = queue.fail(&c2, "still broken").await.unwrap();
    assert_eq!(r.status, TaskStatus::Failed);
    assert_eq!(r.attempts, 2);
    clock.advance(Duration::from_secs(60));
    assert!(queue.claim_next("orders", "w1").await.unwrap().is_none());

    let outcomes: Vec<_> = queue
        .history(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.attempt, a.outcome, a.error))
        .collect();
    assert_eq!(
        outcomes,
        [
            (1, Some("failed".into()), Some("temporary error".into())),
            (2, Some("failed".into()), Some("still broken".into()))
        ]
    );

    // retry: a fresh set of attempts.
    let t = queue.retry(&id).await.unwrap();
    assert_eq!(t.status, TaskStatus::Pending);
    let c3 = queue.claim_next("orders", "w3").await.unwrap().unwrap();
    assert_eq!(c3.task.task_id, id);
    // Retrying a task that is not failed is refused.
    assert!(matches!(
        queue.retry(&id).await,
        Err(QueueError::InvalidState { .. })
    ));
}

#[tokio::test]
async fn an_expired_lease_comes_back_and_fences_the_old_attempt() {
    let (queue, clock) = manual_queue();
    let id = queue.submit(order(1)).await.unwrap().task.task_id;
    let stale = queue.claim_next("orders", "w1").await.unwrap().unwrap();

    clock.advance(queue.lease() + Duration::from_secs(1));
    // No one ran a recovery loop: the next claim simply finds it.
    let fresh = queue
        .claim_next("orders", "w2")
        .await
        .unwrap()
        .expect("task came back");
    assert_eq!(fresh.task.task_id, id);
    assert_eq!(fresh.attempt, stale.attempt + 1);

    for result in [
        queue.complete(&stale, json!("late")).await,
        queue.fail(&stale, "late").await,
        queue.renew(&stale).await,
        queue.release(&stale).await,
    ] {
        assert!(
            matches!(result, Err(QueueError::LeaseLost { .. })),
            "{result:?}"
        );
    }
    queue.complete(&fresh, json!("w2")).await.unwrap();
    let done = queue.get(&id).await.unwrap().unwrap();
    assert_eq!(done.result, Some(json!("w2")));
    let history = queue.history(&id).await.unwrap();
    assert_eq!(history[0].outcome.as_deref(), Some("lease_expired"));
    assert_eq!(history[1].outcome.as_deref(), Some("completed"));
}

#[tokio::test]
async fn renew_keeps_a_claim_alive_and_release_does_not_count() {
    let (queue, clock) = manual_queue();
    let id = queue
        .submit(order(1).max_attempts(1))
        .await
        .unwrap()
        .task
        .task_id;
    let claim = queue.claim_next("orders", "w1").await.unwrap().unwrap();
    for _ in 0..3 {
        clock.advance(queue.lease() / 2);
        let r = queue.renew(&claim).await.unwrap();
        assert_eq!(r.lease_expires_at, Some(clock.now() + queue.lease()));
    }
    // 1.5 leases later, still ours.
    assert!(queue.claim_next("orders", "w2").await.unwrap().is_none());

    let t = queue.release(&claim).await.unwrap();
    assert_eq!(t.status, TaskStatus::Pending);
    // With max_attempts 1, the released attempt must not have used up the only one.
    let again = queue.claim_next("orders", "w2").await.unwrap().unwrap();
    assert_eq!(again.task.task_id, id);
    assert_eq!(
        queue.complete(&again, json!(1)).await.unwrap().status,
        TaskStatus::Completed
    );
}

#[tokio::test]
async fn fail_permanently_uses_up_the_attempts() {
    let (queue, _) = manual_queue();
    let metrics = Arc::new(CountingMetrics::default());
    let queue = queue
        .with_metrics(metrics.clone())
        .with_backoff(Backoff::constant(Duration::from_secs(60)));
    let id = queue
        .submit(order(1).max_attempts(4))
        .await
        .unwrap()
        .task
        .task_id;
    let claim = queue.claim_next("orders", "w1").await.unwrap().unwrap();
    let r = queue
        .fail_permanently(&claim, "invalid payload")
        .await
        .unwrap();
    assert_eq!(r.status, TaskStatus::Failed);
    let t = queue.get(&id).await.unwrap().unwrap();
    assert_eq!(t.status, TaskStatus::Failed);
    // One step: no extra attempts were used up to get there.
    assert_eq!(t.attempts, 1);
    assert_eq!(t.history.len(), 1);
    assert_eq!(t.error.as_deref(), Some("invalid payload"));
    assert!(queue.claim_next("orders", "w2").await.unwrap().is_none());
    assert!(matches!(
        queue.fail_permanently(&claim, "again").await,
        Err(QueueError::LeaseLost { .. })
    ));
    assert_eq!(metrics.get("finished:orders:failed"), 1);
    assert_eq!(metrics.get("finished:orders:retrying"), 0);
}

#[tokio::test]
async fn look_ups_paging_and_delete() {
    let (queue, _) = manual_queue();
    let mut ids = Vec::new();
    for n in 1..=5 {
        ids.push(queue.submit(order(n)).await.unwrap().task.task_id);
    }
    queue
        .submit(NewTask::new("other", "t", json!(0)))
        .await
        .unwrap();

    let by_key = queue
        .get_by_idempotency_key("orders", "order-3")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_key.task_id, ids[2]);
    assert!(
        queue
            .get_by_idempotency_key("orders", "order-9")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        queue
            .get_by_idempotency_key("other", "order-3")
            .await
            .unwrap()
            .is_none()
    );

    let c = queue.claim_next("orders", "w").await.unwrap().unwrap();
    queue.complete(&c, json!(null)).await.unwrap();

    let mut filter = TaskFilter {
        queue: Some("orders".into()),
        status: Some(TaskStatus::Pending),
        limit: 3,
        offset: 0,
    };
    let page1 = queue.list(&filter).await.unwrap();
    assert_eq!(page1.tasks.len(), 3);
    assert_eq!(page1.next_offset, Some(3));
    filter.offset = 3;
    let page2 = queue.list(&filter).await.unwrap();
    assert_eq!(page2.tasks.len(), 1);
    assert_eq!(page2.next_offset, None);
    let pending: Vec<_> = page1
        .tasks
        .iter()
        .chain(&page2.tasks)
        .map(|t| t.task_id.clone())
        .collect();
    assert_eq!(pending, ids[1..]);

    let completed = queue
        .list_all(Some("orders"), Some(TaskStatus::Completed))
        .await
        .unwrap();
    assert_eq!(completed.len(), 1);
    assert_eq!(queue.list_all(None, None).await.unwrap().len(), 6);

    assert!(queue.delete(&ids[2]).await.unwrap());
    assert!(!queue.delete(&ids[2]).await.unwrap());
    assert!(queue.get(&ids[2]).await.unwrap().is_none());
    assert!(matches!(
        queue.history(&ids[2]).await,
        Err(QueueError::NotFound { .. })
    ));
    // The key is free again: a new task.
    let again = queue.submit(order(3)).await.unwrap();
    assert!(!again.duplicate);
    assert_ne!(again.task.task_id, ids[2]);
}

#[tokio::test]
async fn cleanup_requeues_expired_and_purges_old_finished_tasks() {
    let (queue, clock) = manual_queue();
    let metrics = Arc::new(CountingMetrics::default());
    let queue = queue.with_metrics(metrics.clone());
    let done = queue.submit(order(1)).await.unwrap().task.task_id;
    let abandoned = queue.submit(order(2)).await.unwrap().task.task_id;
    let c = queue.claim(&done, "w").await.unwrap().unwrap();
    queue.complete(&c, json!(1)).await.unwrap();
    queue.claim(&abandoned, "w").await.unwrap().unwrap();

    let retention = Duration::from_secs(3600);
    let report = queue.cleanup(retention, 1).await.unwrap();
    assert_eq!((report.requeued, report.purged), (0, 0));

    clock.advance(Duration::from_secs(3601));
    let report = queue.cleanup(retention, 1).await.unwrap();
    assert_eq!((report.requeued, report.purged), (1, 1));
    assert!(queue.get(&done).await.unwrap().is_none());
    assert_eq!(
        queue.get(&abandoned).await.unwrap().unwrap().status,
        TaskStatus::Pending
    );
    assert_eq!(metrics.get("cleanup:1"), 1);
}

#[tokio::test]
async fn the_cleanup_loop_runs_until_stopped() {
    let (queue, clock) = manual_queue();
    let id = queue.submit(order(1)).await.unwrap().task.task_id;
    let c = queue.claim(&id, "w").await.unwrap().unwrap();
    queue.complete(&c, json!(1)).await.unwrap();
    clock.advance(Duration::from_secs(120));

    let handle = queue.spawn_cleanup(Duration::from_millis(20), Duration::from_secs(60));
    let q = queue.clone();
    let purged = crate::support::eventually(Duration::from_secs(5), || {
        let q = q.clone();
        let id = id.clone();
        async move { q.get(&id).await.unwrap().is_none() }
    })
    .await;
    handle.stop().await;
    assert!(purged, "the loop should have purged the old task");
}

#[tokio::test]
async fn submit_many_answers_each_task_in_place() {
    let (queue, _) = manual_queue();
    queue.submit(order(1)).await.unwrap();
    let answers = queue
        .submit_many(vec![
            order(2),
            order(1),
            NewTask::new("orders", "process_order", json!({})).max_attempts(0),
            order(3),
        ])
        .await
        .unwrap();
    assert_eq!(answers.len(), 4);
    assert!(!answers[0].as_ref().unwrap().duplicate);
    assert!(answers[1].as_ref().unwrap().duplicate);
    assert!(matches!(answers[2], Err(QueueError::Invalid(_))));
    assert!(!answers[3].as_ref().unwrap().duplicate);
    let pending = queue
        .list_all(Some("orders"), Some(TaskStatus::Pending))
        .await
        .unwrap();
    assert_eq!(pending.len(), 3);
}

#[tokio::test]
async fn claim_batch_and_complete_many_fence_each_claim() {
    let (queue, _) = manual_queue();
    for n in 0..3 {
        queue.submit(order(n)).await.unwrap();
    }
    let claims = queue.claim_batch("orders", "w1", 5).await.unwrap();
    assert_eq!(claims.len(), 3);
    assert!(
        queue
            .claim_batch("orders", "w1", 5)
            .await
            .unwrap()
            .is_empty()
    );
    let stale = Claim {
        attempt: claims[2].attempt + 1,
        ..claims[2].clone()
    };
    let answers = queue
        .complete_many(vec![
            (&claims[0], json!(0)),
            (&claims[1], json!(1)),
            (&stale, json!(2)),
        ])
        .await
        .unwrap();
    assert_eq!(answers[0].as_ref().unwrap().status, TaskStatus::Completed);
    assert_eq!(answers[1].as_ref().unwrap().status, TaskStatus::Completed);
    assert!(matches!(answers[2], Err(QueueError::LeaseLost { .. })));
    let third = queue.get(claims[2].task_id()).await.unwrap().unwrap();
    assert_eq!(third.status, TaskStatus::Claimed);
}
