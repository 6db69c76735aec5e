//! What [`TaskStore`](crate::TaskStore) promises (semantics §5, store side):
//!
//! - `submit_task` with an idempotency key returns the existing task of that queue and key
//!   (`duplicate: true`, also under concurrent submits); the key with another payload or
//!   task type is `KeyConflict`; keys are per queue;
//! - claims: `claim_task` / `claim_next_task` give a lease with an attempt number;
//!   `claim_next_task` takes the oldest available task of its queue, honours delays and
//!   backoff, and of N concurrent claimers of one task exactly one wins;
//! - the attempt number fences `complete`, `fail`, `renew` and `release`: a stale attempt
//!   is `LeaseLost`; attempt numbers never repeat on a task;
//! - `fail` with attempts left: Pending after the backoff; at the last attempt, or when
//!   failed permanently: Failed;
//!   an expired lease makes the task claimable by another worker (the old attempt is
//!   fenced out), or Failed when it was the last attempt; `release` does not use up an
//!   attempt; `retry_task` gives a Failed task a fresh set of attempts;
//! - lookups by id and key, `list_tasks` by queue and status, oldest first, paged;
//!   `delete_task` frees the key; `requeue_expired_tasks` and `purge_tasks` do their
//!   sweeps in bounded batches that say exactly whether more is due; every attempt is kept
//!   in the task's history;
//! - every write answers a [`TaskReceipt`] reporting the status, attempts, lease and times
//!   as stored;
//! - bad input is a [`StorageError::Invalid`], never a panic;
//! - batches: `submit_tasks` answers each task in order as `submit_task` would (dedupe and
//!   conflicts included), `claim_next_tasks` takes up to `max` distinct tasks oldest first,
//!   `complete_tasks` fences each claim by its own attempt; a store's `task_wakeup`, when
//!   it has one, signals a submit to a waiting worker.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bgops_core::{Task, TaskStatus};
use serde_json::json;

use super::{Fixture, LONG, assert_close, unique};
use crate::{NewTask, StorageError, TaskFilter, TaskReceipt};

/// Defines one `#[tokio::test]` per task case, each on a fresh `$fixture`.
#[macro_export]
macro_rules! task_suite {
    ($fixture:expr) => {
        $crate::__conformance_cases!(
            $fixture,
            task,
            [
                submit_creates_a_pending_task,
                submit_dedupes_by_queue_and_key,
                same_key_with_other_content_is_a_conflict,
                concurrent_submits_create_one_task,
                claim_sets_lease_attempt_and_history,
                claimed_task_cannot_be_claimed_again,
                claim_next_takes_the_oldest_available,
                claim_next_honours_the_delay,
                claim_next_stays_in_its_queue,
                concurrent_claims_of_one_task_exactly_one_wins,
                concurrent_claimers_get_distinct_tasks,
                complete_records_the_result,
                stale_attempt_is_lease_lost,
                fail_with_attempts_left_returns_to_pending_after_backoff,
                fail_at_the_last_attempt_is_failed,
                permanent_failure_ends_the_task_at_once,
                expired_lease_is_claimable_by_another_worker,
                claim_by_id_takes_over_an_expired_claim,
                expired_lease_at_the_last_attempt_fails_the_task,
                renew_extends_the_claim,
                release_does_not_use_up_an_attempt,
                retry_gives_a_failed_task_fresh_attempts,
                get_by_key_finds_the_task,
                list_filters_by_queue_and_status_oldest_first,
                list_pages_with_limit_and_offset,
                delete_removes_the_task_and_frees_its_key,
                requeue_expired_returns_abandoned_tasks,
                purge_removes_old_finished_tasks,
                unknown_task_is_not_found,
                invalid_task_input_is_rejected,
                receipts_report_what_was_stored,
                permanent_failure_is_fenced_and_final,
                requeue_expired_works_in_batches,
                purge_tasks_works_in_batches,
                batch_submit_answers_each_task_in_order,
                batch_claim_takes_up_to_max_oldest_first,
                batch_complete_fences_each_claim,
                wakeup_signals_a_submit,
            ]
        );
    };
}

fn task(queue: &str, n: i64) -> NewTask {
    NewTask::new(queue, "process_order", json!({"order": n}))
}

async fn submit(f: &Fixture, new: NewTask) -> Task {
    let submitted = f.storage.submit_task(new).await.expect("submit");
    assert!(!submitted.duplicate, "expected a new task");
    submitted.task
}

async fn claim(f: &Fixture, task_id: &str, worker: &str, lease: Duration) -> Task {
    f.storage
        .claim_task(task_id, worker, lease)
        .await
        .expect("claim")
        .expect("claimable")
}

fn attempt_of(task: &Task) -> u32 {
    task.lease.as_ref().expect("claimed").attempt
}

async fn get(f: &Fixture, task_id: &str) -> Task {
    f.storage
        .get_task(task_id)
        .await
        .expect("get")
        .expect("stored")
}

/// A new task is Pending with no attempts, and reads back as submitted.
pub async fn submit_creates_a_pending_task(f: Fixture) {
    let queue = unique("queue");
    let new = task(&queue, 1)
        .idempotency_key(unique("key"))
        .max_attempts(5);
    let created = submit(&f, new.clone()).await;
    assert!(!created.task_id.is_empty());
    assert_eq!(created.status, TaskStatus::Pending);
    assert_eq!((created.attempts, created.max_attempts), (0, 5));
    assert_eq!(created.queue, queue);
    assert_eq!(created.task_type, "process_order");
    assert_eq!(created.payload, json!({"order": 1}));
    assert_eq!(created.idempotency_key, new.idempotency_key);
    assert!(created.lease.is_none() && created.history.is_empty() && created.finished_at.is_none());
    assert!(created.available_at <= created.created_at + time::Duration::SECOND);
    assert_eq!(get(&f, &created.task_id).await, created);
}

/// Submitting again with the same queue and key returns the first task, marked duplicate;
/// tasks without a key are never deduplicated.
pub async fn submit_dedupes_by_queue_and_key(f: Fixture) {
    let (queue, key) = (unique("queue"), unique("key"));
    let first = submit(&f, task(&queue, 1).idempotency_key(&key)).await;
    let again = f
        .storage
        .submit_task(task(&queue, 1).idempotency_key(&key))
        .await
        .expect("submit");
    assert!(again.duplicate, "the key was used before");
    assert_eq!(again.task.task_id, first.task_id);

    let other_queue = unique("queue");
    let elsewhere = submit(&f, task(&other_queue, 1).idempotency_key(&key)).await;
    assert_ne!(elsewhere.task_id, first.task_id, "keys are per queue");

    let a = submit(&f, task(&queue, 2)).await;
    let b = submit(&f, task(&queue, 2)).await;
    assert_ne!(
        a.task_id, b.task_id,
        "without a key every submit is a new task"
    );
}

/// The same queue and key with another payload or task type: `KeyConflict`.
pub async fn same_key_with_other_content_is_a_conflict(f: Fixture) {
    let (queue, key) = (unique("queue"), unique("key"));
    submit(&f, task(&queue, 1).idempotency_key(&key)).await;
    let got = f
        .storage
        .submit_task(task(&queue, 2).idempotency_key(&key))
        .await;
    assert!(
        matches!(got, Err(StorageError::KeyConflict { .. })),
        "other payload: {got:?}"
    );
    let mut other_type = task(&queue, 1).idempotency_key(&key);
    other_type.task_type = "send_invoice".into();
    let got = f.storage.submit_task(other_type).await;
    assert!(
        matches!(got, Err(StorageError::KeyConflict { .. })),
        "other task type: {got:?}"
    );
}

/// 20 concurrent submits with one key: one task, exactly one non-duplicate answer.
pub async fn concurrent_submits_create_one_task(f: Fixture) {
    let (queue, key) = (unique("queue"), unique("key"));
    let handles: Vec<_> = (0..20)
        .map(|_| {
            let storage = Arc::clone(&f.storage);
            let new = task(&queue, 1).idempotency_key(&key);
            tokio::spawn(async move { storage.submit_task(new).await })
        })
        .collect();
    let (mut ids, mut fresh) = (HashSet::new(), 0);
    for handle in handles {
        let submitted = handle.await.expect("join").expect("submit");
        fresh += usize::from(!submitted.duplicate);
        ids.insert(submitted.task.task_id);
    }
    assert_eq!((ids.len(), fresh), (1, 1));
    let filter = TaskFilter {
        queue: Some(queue),
        ..TaskFilter::default()
    };
    assert_eq!(f.storage.list_tasks(&filter).await.expect("list").len(), 1);
}

/// A claim: status Claimed, one attempt used, a lease for the worker with attempt 1, and a
/// history entry for the attempt.
pub async fn claim_sets_lease_attempt_and_history(f: Fixture) {
    let queue = unique("queue");
    let created = submit(&f, task(&queue, 1)).await;
    let claimed = claim(&f, &created.task_id, "worker-1", LONG).await;
    assert_eq!(claimed.status, TaskStatus::Claimed);
    assert_eq!(claimed.attempts, 1);
    let lease = claimed.lease.clone().expect("lease");
    assert_eq!((lease.worker_id.as_str(), lease.attempt), ("worker-1", 1));
    assert!(lease.expires_at > claimed.created_at);
    assert_eq!(claimed.history.len(), 1);
    let entry = &claimed.history[0];
    assert_eq!((entry.attempt, entry.worker_id.as_str()), (1, "worker-1"));
    assert!(
        entry.outcome.is_none() && entry.finished_at.is_none(),
        "attempt still running"
    );
    assert_eq!(get(&f, &created.task_id).await, claimed);
}

/// A task under a live claim is not claimable, by id or as the next of its queue.
pub async fn claimed_task_cannot_be_claimed_again(f: Fixture) {
    let queue = unique("queue");
    let created = submit(&f, task(&queue, 1)).await;
    claim(&f, &created.task_id, "worker-1", LONG).await;
    assert_eq!(
        f.storage
            .claim_task(&created.task_id, "worker-2", LONG)
            .await
            .expect("claim"),
        None
    );
    assert_eq!(
        f.storage
            .claim_task(&created.task_id, "worker-1", LONG)
            .await
            .expect("claim"),
        None
    );
    assert_eq!(
        f.storage
            .claim_next_task(&queue, "worker-2", LONG)
            .await
            .expect("claim"),
        None
    );
}

/// `claim_next_task` hands out tasks oldest first, then `None`.
pub async fn claim_next_takes_the_oldest_available(f: Fixture) {
    let queue = unique("queue");
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(submit(&f, task(&queue, n)).await.task_id);
    }
    for id in &ids {
        let next = f
            .storage
            .claim_next_task(&queue, "worker", LONG)
            .await
            .expect("claim");
        assert_eq!(next.map(|t| t.task_id).as_ref(), Some(id), "oldest first");
    }
    assert_eq!(
        f.storage
            .claim_next_task(&queue, "worker", LONG)
            .await
            .expect("claim"),
        None
    );
}

/// A delayed task is not claimable before its delay has passed, then it is.
pub async fn claim_next_honours_the_delay(f: Fixture) {
    let queue = unique("queue");
    let delayed = submit(&f, task(&queue, 1).delay(f.short_lease)).await;
    assert_close(
        delayed.available_at - delayed.created_at,
        f.short_lease,
        "the delay",
    );
    assert_eq!(
        f.storage
            .claim_next_task(&queue, "worker", LONG)
            .await
            .expect("claim"),
        None
    );
    assert_eq!(
        f.storage
            .claim_task(&delayed.task_id, "worker", LONG)
            .await
            .expect("claim"),
        None
    );
    f.expire_short_lease().await;
    let next = f
        .storage
        .claim_next_task(&queue, "worker", LONG)
        .await
        .expect("claim");
    assert_eq!(next.map(|t| t.task_id), Some(delayed.task_id));
}

/// `claim_next_task` never takes a task of another queue.
pub async fn claim_next_stays_in_its_queue(f: Fixture) {
    let (queue, other) = (unique("queue"), unique("queue"));
    submit(&f, task(&other, 1)).await;
    assert_eq!(
        f.storage
            .claim_next_task(&queue, "worker", LONG)
            .await
            .expect("claim"),
        None
    );
    let mine = submit(&f, task(&queue, 2)).await;
    let next = f
        .storage
        .claim_next_task(&queue, "worker", LONG)
        .await
        .expect("claim");
    assert_eq!(next.map(|t| t.task_id), Some(mine.task_id));
}

/// 20 workers calling `claim_next_task` on a queue with one task: exactly one gets it.
pub async fn concurrent_claims_of_one_task_exactly_one_wins(f: Fixture) {
    let queue = unique("queue");
    submit(&f, task(&queue, 1)).await;
    let handles: Vec<_> = (0..20)
        .map(|i| {
            let storage = Arc::clone(&f.storage);
            let queue = queue.clone();
            tokio::spawn(async move {
                storage
                    .claim_next_task(&queue, &format!("worker-{i}"), LONG)
                    .await
            })
        })
        .collect();
    let mut winners = 0;
    for handle in handles {
        winners += usize::from(handle.await.expect("join").expect("claim").is_some());
    }
    assert_eq!(winners, 1);
}

/// 10 workers, 10 tasks, all claiming at once: every task is claimed exactly once.
pub async fn concurrent_claimers_get_distinct_tasks(f: Fixture) {
    let queue = unique("queue");
    for n in 0..10 {
        submit(&f, task(&queue, n)).await;
    }
    let handles: Vec<_> = (0..10)
        .map(|i| {
            let storage = Arc::clone(&f.storage);
            let queue = queue.clone();
            tokio::spawn(async move {
                storage
                    .claim_next_task(&queue, &format!("worker-{i}"), LONG)
                    .await
            })
        })
        .collect();
    let mut ids = HashSet::new();
    for handle in handles {
        let claimed = handle
            .await
            .expect("join")
            .expect("claim")
            .expect("a task for everyone");
        assert!(ids.insert(claimed.task_id), "a task was handed out twice");
    }
    assert_eq!(ids.len(), 10);
}

/// Completing the current attempt stores the result and ends the task; it cannot be
/// completed again or claimed.
pub async fn complete_records_the_result(f: Fixture) {
    let queue = unique("queue");
    let created = submit(&f, task(&queue, 1)).await;
    let claimed = claim(&f, &created.task_id, "worker", LONG).await;
    let attempt = attempt_of(&claimed);
    let done = f
        .storage
        .complete_task(&created.task_id, attempt, json!({"ok": true}))
        .await
        .expect("complete");
    assert_eq!(done.status, TaskStatus::Completed);
    assert_eq!((done.attempts, done.lease_expires_at), (1, None));
    let stored = get(&f, &created.task_id).await;
    assert_eq!(stored.status, TaskStatus::Completed);
    assert_eq!(stored.result, Some(json!({"ok": true})));
    assert!(stored.lease.is_none() && stored.finished_at.is_some());
    assert_eq!(stored.history[0].outcome.as_deref(), Some("completed"));
    assert!(stored.history[0].finished_at.is_some());
    assert_eq!(stored.updated_at, done.updated_at);

    let again = f
        .storage
        .complete_task(&created.task_id, attempt, json!("again"))
        .await;
    assert!(
        again.is_err(),
        "a completed task cannot be completed again: {again:?}"
    );
    assert!(
        f.storage
            .fail_task(&created.task_id, attempt, "late", Duration::ZERO)
            .await
            .is_err()
    );
    assert_eq!(
        f.storage
            .claim_task(&created.task_id, "worker", LONG)
            .await
            .expect("claim"),
        None
    );
    assert_eq!(
        get(&f, &created.task_id).await.result,
        Some(json!({"ok": true}))
    );
}

/// Another attempt number than the current claim's: complete, fail, renew and release are
/// all `LeaseLost`, and the claim stays as it was.
pub async fn stale_attempt_is_lease_lost(f: Fixture) {
    let queue = unique("queue");
    let created = submit(&f, task(&queue, 1)).await;
    let claimed = claim(&f, &created.task_id, "worker", LONG).await;
    let wrong = attempt_of(&claimed) + 1;
    let id = created.task_id.as_str();
    let got = f.storage.complete_task(id, wrong, json!(1)).await;
    assert!(
        matches!(got, Err(StorageError::LeaseLost { .. })),
        "complete: {got:?}"
    );
    let got = f.storage.fail_task(id, wrong, "boom", Duration::ZERO).await;
    assert!(
        matches!(got, Err(StorageError::LeaseLost { .. })),
        "fail: {got:?}"
    );
    let got = f.storage.renew_task_lease(id, wrong, LONG).await;
    assert!(
        matches!(got, Err(StorageError::LeaseLost { .. })),
        "renew: {got:?}"
    );
    let got = f.storage.release_task(id, wrong).await;
    assert!(
        matches!(got, Err(StorageError::LeaseLost { .. })),
        "release: {got:?}"
    );
    assert_eq!(get(&f, id).await, claimed);
}

/// A failure with attempts left: Pending, error kept, not claimable during the backoff,
/// claimable after it with the next attempt number.
pub async fn fail_with_attempts_left_returns_to_pending_after_backoff(f: Fixture) {
    let queue = unique("queue");
    let created = submit(&f, task(&queue, 1).max_attempts(3)).await;
    let first = claim(&f, &created.task_id, "worker", LONG).await;
    let failed = f
        .storage
        .fail_task(&created.task_id, attempt_of(&first), "boom", f.short_lease)
        .await;
    let receipt = failed.expect("fail");
    assert_eq!(
        (receipt.status, receipt.attempts, receipt.lease_expires_at),
        (TaskStatus::Pending, 1, None)
    );
    let failed = get(&f, &created.task_id).await;
    assert_eq!(receipt.available_at, failed.available_at);
    assert_eq!(failed.status, TaskStatus::Pending);
    assert_eq!(
        (failed.attempts, failed.error.as_deref()),
        (1, Some("boom"))
    );
    assert!(failed.lease.is_none() && failed.finished_at.is_none());
    assert!(
        failed.available_at > first.history[0].claimed_at,
        "backoff pushes availability out"
    );
    assert_eq!(failed.history[0].outcome.as_deref(), Some("failed"));
    assert_eq!(failed.history[0].error.as_deref(), Some("boom"));
    assert_eq!(
        f.storage
            .claim_next_task(&queue, "worker", LONG)
            .await
            .expect("claim"),
        None,
        "backoff"
    );

    f.expire_short_lease().await;
    let second = f
        .storage
        .claim_next_task(&queue, "worker", LONG)
        .await
        .expect("claim")
        .expect("due");
    assert_eq!(second.attempts, 2);
    assert!(attempt_of(&second) > attempt_of(&first));
    assert_eq!(second.history.len(), 2);
}

/// A failure at the last attempt: Failed, finished, no longer claimable.
pub async fn fail_at_the_last_attempt_is_failed(f: Fixture) {
    let queue = unique("queue");
    let created = submit(&f, task(&queue, 1).max_attempts(2)).await;
    for round in 1..=2u32 {
        let claimed = claim(&f, &created.task_id, "worker", LONG).await;
        let failed = f
            .storage
            .fail_task(
                &created.task_id,
                attempt_of(&claimed),
                "boom",
                Duration::ZERO,
            )
            .await;
        let failed = failed.expect("fail");
        let expected = if round == 2 {
            TaskStatus::Failed
        } else {
            TaskStatus::Pending
        };
        assert_eq!(failed.status, expected, "after failure {round} of 2");
    }
    let failed = get(&f, &created.task_id).await;
    assert!(failed.finished_at.is_some());
    assert_eq!(failed.attempts, 2);
    assert_eq!(
        f.storage
            .claim_task(&created.task_id, "worker", LONG)
            .await
            .expect("claim"),
        None
    );
    assert_eq!(
        f.storage
            .claim_next_task(&queue, "worker", LONG)
            .await
            .expect("claim"),
        None
    );
}

/// `fail_task_permanently` makes the task Failed at once, attempts left or not; only the
/// current attempt may do it.
pub async fn permanent_failure_ends_the_task_at_once(f: Fixture) {
    let queue = unique("queue");
    let created = submit(&f, task(&queue, 1).max_attempts(5)).await;
    let claimed = claim(&f, &created.task_id, "worker", LONG).await;
    let attempt = attempt_of(&claimed);
    let got = f
        .storage
        .fail_task_permanently(&created.task_id, attempt + 1, "bad input")
        .await;
    assert!(
        matches!(got, Err(StorageError::LeaseLost { .. })),
        "stale attempt: {got:?}"
    );
    let failed = f
        .storage
        .fail_task_permanently(&created.task_id, attempt, "bad input")
        .await;
    let receipt = failed.expect("fail permanently");
    assert_eq!(
        (receipt.status, receipt.attempts, receipt.lease_expires_at),
        (TaskStatus::Failed, 1, None)
    );
    let failed = get(&f, &created.task_id).await;
    assert_eq!(failed.status, TaskStatus::Failed);
    assert_eq!(failed.error.as_deref(), Some("bad input"));
    assert!(failed.finished_at.is_some() && failed.lease.is_none());
    assert_eq!(failed.history.len(), 1, "no further attempts were made");
    assert_eq!(failed.history[0].outcome.as_deref(), Some("failed"));
    assert_eq!(
        f.storage
            .claim_next_task(&queue, "worker", LONG)
            .await
            .expect("claim"),
        None
    );
}

/// A worker whose lease ran out loses the task: another worker claims it (next attempt)
/// without anyone sweeping, and the first worker's complete is `LeaseLost`.
pub async fn expired_lease_is_claimable_by_another_worker(f: Fixture) {
    let queue = unique("queue");
    let created = submit(&f, task(&queue, 1).max_attempts(3)).await;
    let first = claim(&f, &created.task_id, "worker-1", f.short_lease).await;
    f.expire_short_lease().await;
    let second = f
        .storage
        .claim_next_task(&queue, "worker-2", LONG)
        .await
        .expect("claim")
        .expect("reclaimable");
    assert_eq!(second.task_id, created.task_id);
    assert!(attempt_of(&second) > attempt_of(&first));
    assert_eq!(
        second.lease.as_ref().map(|l| l.worker_id.as_str()),
        Some("worker-2")
    );
    assert_eq!(second.history[0].outcome.as_deref(), Some("lease_expired"));

    let got = f
        .storage
        .complete_task(&created.task_id, attempt_of(&first), json!("late"))
        .await;
    assert!(
        matches!(got, Err(StorageError::LeaseLost { .. })),
        "old attempt: {got:?}"
    );
    let done = f
        .storage
        .complete_task(&created.task_id, attempt_of(&second), json!("ok"))
        .await;
    assert_eq!(done.expect("complete").status, TaskStatus::Completed);
    assert_eq!(get(&f, &created.task_id).await.result, Some(json!("ok")));
}

/// `claim_task` on a task whose claim expired takes it over (attempts left), and the
/// old attempt is fenced out.
pub async fn claim_by_id_takes_over_an_expired_claim(f: Fixture) {
    let queue = unique("queue");
    let created = submit(&f, task(&queue, 1).max_attempts(2)).await;
    let first = claim(&f, &created.task_id, "worker-1", f.short_lease).await;
    f.expire_short_lease().await;
    let second = claim(&f, &created.task_id, "worker-2", LONG).await;
    assert_eq!(second.attempts, 2);
    assert!(attempt_of(&second) > attempt_of(&first));
    let got = f
        .storage
        .renew_task_lease(&created.task_id, attempt_of(&first), LONG)
        .await;
    assert!(
        matches!(got, Err(StorageError::LeaseLost { .. })),
        "old attempt: {got:?}"
    );
}

/// A lease that runs out at the last attempt fails the task instead of requeueing it.
pub async fn expired_lease_at_the_last_attempt_fails_the_task(f: Fixture) {
    let queue = unique("queue");
    let created = submit(&f, task(&queue, 1).max_attempts(1)).await;
    let claimed = claim(&f, &created.task_id, "worker", f.short_lease).await;
    f.expire_short_lease().await;
    assert_eq!(
        f.storage
            .claim_next_task(&queue, "worker-2", LONG)
            .await
            .expect("claim"),
        None
    );
    assert_eq!(
        f.storage
            .claim_task(&created.task_id, "worker-2", LONG)
            .await
            .expect("claim"),
        None
    );
    f.storage.requeue_expired_tasks(100).await.expect("requeue");
    let failed = get(&f, &created.task_id).await;
    assert_eq!(failed.status, TaskStatus::Failed);
    assert!(failed.lease.is_none() && failed.finished_at.is_some());
    assert_eq!(failed.history[0].outcome.as_deref(), Some("lease_expired"));
    let got = f
        .storage
        .complete_task(&created.task_id, attempt_of(&claimed), json!("late"))
        .await;
    assert!(got.is_err(), "the expired attempt cannot complete: {got:?}");
}

/// Renewing the claim moves its expiry out: the task is not reclaimable after the first
/// lease, and the worker can still complete it.
pub async fn renew_extends_the_claim(f: Fixture) {
    let queue = unique("queue");
    let created = submit(&f, task(&queue, 1)).await;
    let claimed = claim(&f, &created.task_id, "worker", f.short_lease).await;
    let attempt = attempt_of(&claimed);
    let renewed = f
        .storage
        .renew_task_lease(&created.task_id, attempt, LONG)
        .await
        .expect("renew");
    let stored = get(&f, &created.task_id).await;
    let (before, after) = (
        claimed.lease.expect("lease"),
        stored.lease.clone().expect("lease"),
    );
    assert_eq!(renewed.lease_expires_at, Some(after.expires_at));
    assert_eq!((renewed.status, renewed.attempts), (TaskStatus::Claimed, 1));
    assert!(after.expires_at > before.expires_at);
    assert_eq!(
        (after.attempt, after.worker_id),
        (before.attempt, before.worker_id)
    );
    f.expire_short_lease().await;
    assert_eq!(
        f.storage
            .claim_next_task(&queue, "worker-2", LONG)
            .await
            .expect("claim"),
        None
    );
    f.storage
        .complete_task(&created.task_id, attempt, json!(1))
        .await
        .expect("complete");
}

/// Releasing gives the task back at once without using up an attempt; the released
/// attempt is fenced out of the next claim.
pub async fn release_does_not_use_up_an_attempt(f: Fixture) {
    let queue = unique("queue");
    let created = submit(&f, task(&queue, 1).max_attempts(2)).await;
    let first = claim(&f, &created.task_id, "worker-1", LONG).await;
    let released = f
        .storage
        .release_task(&created.task_id, attempt_of(&first))
        .await
        .expect("release");
    assert_eq!(released.status, TaskStatus::Pending);
    assert_eq!(released.attempts, 0, "a released attempt does not count");
    assert!(released.lease_expires_at.is_none());
    let stored = get(&f, &created.task_id).await;
    assert_eq!(released.available_at, stored.available_at);
    assert!(stored.lease.is_none());
    assert_eq!(stored.history[0].outcome.as_deref(), Some("released"));

    let second = f
        .storage
        .claim_next_task(&queue, "worker-2", LONG)
        .await
        .expect("claim")
        .expect("at once");
    assert!(
        attempt_of(&second) > attempt_of(&first),
        "attempt numbers never repeat"
    );
    let got = f
        .storage
        .complete_task(&created.task_id, attempt_of(&first), json!("late"))
        .await;
    assert!(
        matches!(got, Err(StorageError::LeaseLost { .. })),
        "released attempt: {got:?}"
    );
    // With the release not counted, one failure of two allowed leaves the task pending.
    let failed = f
        .storage
        .fail_task(
            &created.task_id,
            attempt_of(&second),
            "boom",
            Duration::ZERO,
        )
        .await;
    assert_eq!(failed.expect("fail").status, TaskStatus::Pending);
}

/// `retry_task` puts a Failed task back to Pending with fresh attempts; on any other
/// state it is `InvalidState`.
pub async fn retry_gives_a_failed_task_fresh_attempts(f: Fixture) {
    let queue = unique("queue");
    let created = submit(&f, task(&queue, 1).max_attempts(1)).await;
    let got = f.storage.retry_task(&created.task_id).await;
    assert!(
        matches!(got, Err(StorageError::InvalidState { .. })),
        "retry of a pending task: {got:?}"
    );
    let first = claim(&f, &created.task_id, "worker", LONG).await;
    f.storage
        .fail_task(&created.task_id, attempt_of(&first), "boom", Duration::ZERO)
        .await
        .expect("fail");

    let retried = f.storage.retry_task(&created.task_id).await.expect("retry");
    assert_eq!(retried.status, TaskStatus::Pending);
    assert_eq!(retried.attempts, 0);
    assert_eq!(retried.lease_expires_at, None);
    assert!(get(&f, &created.task_id).await.finished_at.is_none());
    let second = f
        .storage
        .claim_next_task(&queue, "worker", LONG)
        .await
        .expect("claim")
        .expect("claimable");
    assert!(attempt_of(&second) > attempt_of(&first));
    assert_eq!(
        second.history.len(),
        2,
        "the history keeps the earlier attempt"
    );
    let done = f
        .storage
        .complete_task(&created.task_id, attempt_of(&second), json!(1))
        .await;
    assert_eq!(done.expect("complete").status, TaskStatus::Completed);
}

/// `get_task_by_key` finds the task of that queue and key, and nothing elsewhere.
pub async fn get_by_key_finds_the_task(f: Fixture) {
    let (queue, key) = (unique("queue"), unique("key"));
    let created = submit(&f, task(&queue, 1).idempotency_key(&key)).await;
    let found = f
        .storage
        .get_task_by_key(&queue, &key)
        .await
        .expect("get")
        .expect("found");
    assert_eq!(found.task_id, created.task_id);
    assert_eq!(
        f.storage
            .get_task_by_key(&unique("queue"), &key)
            .await
            .expect("get"),
        None
    );
    assert_eq!(
        f.storage
            .get_task_by_key(&queue, &unique("key"))
            .await
            .expect("get"),
        None
    );
    assert_eq!(
        f.storage.get_task(&unique("missing")).await.expect("get"),
        None
    );
}

/// `list_tasks` filters by queue and status, oldest first, and follows status changes.
pub async fn list_filters_by_queue_and_status_oldest_first(f: Fixture) {
    let (queue, other) = (unique("queue"), unique("queue"));
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(submit(&f, task(&queue, n)).await.task_id);
    }
    submit(&f, task(&other, 9)).await;
    claim(&f, &ids[1], "worker", LONG).await;
    let done = claim(&f, &ids[2], "worker", LONG).await;
    f.storage
        .complete_task(&ids[2], attempt_of(&done), json!(1))
        .await
        .expect("complete");

    let list = |status| TaskFilter {
        queue: Some(queue.clone()),
        status,
        limit: 0,
        offset: 0,
    };
    let ids_of = |tasks: Vec<Task>| tasks.into_iter().map(|t| t.task_id).collect::<Vec<_>>();
    let pending = ids_of(
        f.storage
            .list_tasks(&list(Some(TaskStatus::Pending)))
            .await
            .expect("list"),
    );
    assert_eq!(pending, [ids[0].clone(), ids[3].clone()], "oldest first");
    let claimed = ids_of(
        f.storage
            .list_tasks(&list(Some(TaskStatus::Claimed)))
            .await
            .expect("list"),
    );
    assert_eq!(claimed, [ids[1].clone()]);
    let completed = ids_of(
        f.storage
            .list_tasks(&list(Some(TaskStatus::Completed)))
            .await
            .expect("list"),
    );
    assert_eq!(completed, [ids[2].clone()]);
    let all = ids_of(f.storage.list_tasks(&list(None)).await.expect("list"));
    assert_eq!(all, ids, "the whole queue, oldest first");

    let by_status = TaskFilter {
        status: Some(TaskStatus::Claimed),
        ..TaskFilter::default()
    };
    let anywhere = f.storage.list_tasks(&by_status).await.expect("list");
    assert!(anywhere.iter().all(|t| t.status == TaskStatus::Claimed));
    assert!(anywhere.iter().any(|t| t.task_id == ids[1]));
}

/// `limit` and `offset` page through the oldest-first list.
pub async fn list_pages_with_limit_and_offset(f: Fixture) {
    let queue = unique("queue");
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(submit(&f, task(&queue, n)).await.task_id);
    }
    let page = |limit, offset| TaskFilter {
        queue: Some(queue.clone()),
        status: None,
        limit,
        offset,
    };
    let ids_of = |tasks: Vec<Task>| tasks.into_iter().map(|t| t.task_id).collect::<Vec<_>>();
    assert_eq!(
        ids_of(f.storage.list_tasks(&page(2, 1)).await.expect("list")),
        ids[1..3]
    );
    assert_eq!(
        ids_of(f.storage.list_tasks(&page(2, 4)).await.expect("list")),
        ids[4..]
    );
    assert!(
        f.storage
            .list_tasks(&page(2, 5))
            .await
            .expect("list")
            .is_empty()
    );
    assert_eq!(
        f.storage.list_tasks(&page(0, 0)).await.expect("list").len(),
        5,
        "0 means 100"
    );
}

/// Deleting removes the task from lookups, lists and its queue, and frees its key.
pub async fn delete_removes_the_task_and_frees_its_key(f: Fixture) {
    let (queue, key) = (unique("queue"), unique("key"));
    let created = submit(&f, task(&queue, 1).idempotency_key(&key)).await;
    assert!(
        f.storage
            .delete_task(&created.task_id)
            .await
            .expect("delete")
    );
    assert_eq!(
        f.storage.get_task(&created.task_id).await.expect("get"),
        None
    );
    assert_eq!(
        f.storage.get_task_by_key(&queue, &key).await.expect("get"),
        None
    );
    assert_eq!(
        f.storage
            .claim_next_task(&queue, "worker", LONG)
            .await
            .expect("claim"),
        None
    );
    let filter = TaskFilter {
        queue: Some(queue.clone()),
        ..TaskFilter::default()
    };
    assert!(
        f.storage
            .list_tasks(&filter)
            .await
            .expect("list")
            .is_empty()
    );
    assert!(
        !f.storage
            .delete_task(&created.task_id)
            .await
            .expect("delete again")
    );
    let fresh = submit(&f, task(&queue, 1).idempotency_key(&key)).await;
    assert_ne!(fresh.task_id, created.task_id);
}

/// `requeue_expired_tasks` returns tasks whose lease ran out to Pending (counting them),
/// leaves live claims alone, and finds nothing the second time.
pub async fn requeue_expired_returns_abandoned_tasks(f: Fixture) {
    let queue = unique("queue");
    let abandoned = submit(&f, task(&queue, 1).max_attempts(3)).await;
    let live = submit(&f, task(&queue, 2)).await;
    claim(&f, &abandoned.task_id, "dead-worker", f.short_lease).await;
    claim(&f, &live.task_id, "worker", LONG).await;
    f.expire_short_lease().await;

    assert_eq!(
        f.storage
            .requeue_expired_tasks(100)
            .await
            .expect("requeue")
            .done,
        1
    );
    let requeued = get(&f, &abandoned.task_id).await;
    assert_eq!(requeued.status, TaskStatus::Pending);
    assert!(requeued.lease.is_none());
    assert_eq!(
        requeued.history[0].outcome.as_deref(),
        Some("lease_expired")
    );
    assert_eq!(get(&f, &live.task_id).await.status, TaskStatus::Claimed);
    assert_eq!(
        f.storage
            .requeue_expired_tasks(100)
            .await
            .expect("requeue")
            .done,
        0
    );
    let next = f
        .storage
        .claim_next_task(&queue, "worker-2", LONG)
        .await
        .expect("claim");
    assert_eq!(next.map(|t| t.task_id), Some(abandoned.task_id));
}

/// `purge_tasks` deletes Completed and Failed tasks finished more than `older_than` ago,
/// and nothing else.
pub async fn purge_removes_old_finished_tasks(f: Fixture) {
    let queue = unique("queue");
    let completed = submit(&f, task(&queue, 1)).await;
    let failed = submit(&f, task(&queue, 2).max_attempts(1)).await;
    let pending = submit(&f, task(&queue, 3)).await;
    let claimed = claim(&f, &completed.task_id, "worker", LONG).await;
    f.storage
        .complete_task(&completed.task_id, attempt_of(&claimed), json!(1))
        .await
        .expect("complete");
    let claimed = claim(&f, &failed.task_id, "worker", LONG).await;
    f.storage
        .fail_task(
            &failed.task_id,
            attempt_of(&claimed),
            "boom",
            Duration::ZERO,
        )
        .await
        .expect("fail");

    assert_eq!(
        f.storage.purge_tasks(LONG, 100).await.expect("purge").done,
        0,
        "finished too recently"
    );
    f.expire_short_lease().await;
    assert_eq!(
        f.storage
            .purge_tasks(f.short_lease, 1)
            .await
            .expect("purge")
            .done,
        1,
        "limit"
    );
    assert_eq!(
        f.storage
            .purge_tasks(f.short_lease, 100)
            .await
            .expect("purge")
            .done,
        1
    );
    assert_eq!(
        f.storage.get_task(&completed.task_id).await.expect("get"),
        None
    );
    assert_eq!(
        f.storage.get_task(&failed.task_id).await.expect("get"),
        None
    );
    assert_eq!(get(&f, &pending.task_id).await.status, TaskStatus::Pending);
}

/// Acting on a task that does not exist is `NotFound`.
pub async fn unknown_task_is_not_found(f: Fixture) {
    let id = unique("missing");
    let got = f.storage.complete_task(&id, 1, json!(1)).await;
    assert!(
        matches!(got, Err(StorageError::NotFound { .. })),
        "complete: {got:?}"
    );
    let got = f.storage.fail_task(&id, 1, "boom", Duration::ZERO).await;
    assert!(
        matches!(got, Err(StorageError::NotFound { .. })),
        "fail: {got:?}"
    );
    let got = f.storage.retry_task(&id).await;
    assert!(
        matches!(got, Err(StorageError::NotFound { .. })),
        "retry: {got:?}"
    );
    assert_eq!(
        f.storage
            .claim_task(&id, "worker", LONG)
            .await
            .expect("claim"),
        None
    );
    assert!(!f.storage.delete_task(&id).await.expect("delete"));
}

/// Empty queue, task type or worker, a bad key, zero attempts, zero leases:
/// `StorageError::Invalid` (zero attempts may instead be stored as one).
pub async fn invalid_task_input_is_rejected(f: Fixture) {
    let queue = unique("queue");
    let got = f.storage.submit_task(task("", 1)).await;
    assert!(
        matches!(got, Err(StorageError::Invalid(_))),
        "empty queue: {got:?}"
    );
    let got = f
        .storage
        .submit_task(NewTask::new(&queue, "", json!(1)))
        .await;
    assert!(
        matches!(got, Err(StorageError::Invalid(_))),
        "empty task type: {got:?}"
    );
    let got = f
        .storage
        .submit_task(task(&queue, 1).idempotency_key("a key"))
        .await;
    assert!(
        matches!(got, Err(StorageError::Invalid(_))),
        "key with a space: {got:?}"
    );
    let got = f
        .storage
        .submit_task(task(&queue, 1).idempotency_key("k".repeat(256)))
        .await;
    assert!(
        matches!(got, Err(StorageError::Invalid(_))),
        "key over 255 bytes: {got:?}"
    );
    let got = f.storage.submit_task(task(&queue, 1).max_attempts(0)).await;
    assert!(
        matches!(got, Err(StorageError::Invalid(_))),
        "zero attempts: {got:?}"
    );
    let created = submit(&f, task(&queue, 2)).await;
    let got = f
        .storage
        .claim_task(&created.task_id, "worker", Duration::ZERO)
        .await;
    assert!(
        matches!(got, Err(StorageError::Invalid(_))),
        "zero lease: {got:?}"
    );
    let got = f.storage.claim_next_task(&queue, "", LONG).await;
    assert!(
        matches!(got, Err(StorageError::Invalid(_))),
        "empty worker: {got:?}"
    );
    let got = f.storage.claim_next_task("", "worker", LONG).await;
    assert!(
        matches!(got, Err(StorageError::Invalid(_))),
        "empty queue: {got:?}"
    );
    assert_eq!(
        get(&f, &created.task_id).await.status,
        TaskStatus::Pending,
        "nothing claimed"
    );
}

/// Asserts that `receipt` reports what the store holds for `task_id` now.
async fn assert_receipt(f: &Fixture, task_id: &str, receipt: &TaskReceipt, what: &str) {
    let stored = get(f, task_id).await;
    assert_eq!(receipt.status, stored.status, "{what}: status");
    assert_eq!(receipt.attempts, stored.attempts, "{what}: attempts");
    assert_eq!(
        receipt.lease_expires_at,
        stored.lease.as_ref().map(|lease| lease.expires_at),
        "{what}: lease"
    );
    assert_eq!(
        receipt.available_at, stored.available_at,
        "{what}: available_at"
    );
    assert_eq!(receipt.updated_at, stored.updated_at, "{what}: updated_at");
}

/// Every write's receipt (renew, fail, release, complete, retry) reports the task's status,
/// attempts, lease and times as stored.
pub async fn receipts_report_what_was_stored(f: Fixture) {
    let queue = unique("queue");
    let created = submit(&f, task(&queue, 1).max_attempts(3)).await;
    let id = created.task_id.as_str();

    let first = claim(&f, id, "worker", f.short_lease).await;
    let renewed = f
        .storage
        .renew_task_lease(id, attempt_of(&first), LONG)
        .await
        .expect("renew");
    assert_eq!((renewed.status, renewed.attempts), (TaskStatus::Claimed, 1));
    let until = renewed.lease_expires_at.expect("claimed");
    assert!(until > first.lease.as_ref().expect("lease").expires_at);
    assert_receipt(&f, id, &renewed, "renew").await;

    let failed = f
        .storage
        .fail_task(id, attempt_of(&first), "boom", Duration::from_secs(3600))
        .await
        .expect("fail");
    assert_eq!(
        (failed.status, failed.attempts, failed.lease_expires_at),
        (TaskStatus::Pending, 1, None)
    );
    assert_close(
        failed.available_at - failed.updated_at,
        Duration::from_secs(3600),
        "backoff",
    );
    assert_receipt(&f, id, &failed, "fail").await;
    f.storage.retry_task(id).await.expect_err("not failed");

    let other = submit(&f, task(&queue, 2).max_attempts(1)).await;
    let oid = other.task_id.as_str();
    let claimed = claim(&f, oid, "worker", LONG).await;
    let released = f
        .storage
        .release_task(oid, attempt_of(&claimed))
        .await
        .expect("release");
    assert_eq!(
        (
            released.status,
            released.attempts,
            released.lease_expires_at
        ),
        (TaskStatus::Pending, 0, None)
    );
    assert_receipt(&f, oid, &released, "release").await;
    let claimed = claim(&f, oid, "worker", LONG).await;
    let failed = f
        .storage
        .fail_task(oid, attempt_of(&claimed), "boom", Duration::ZERO)
        .await
        .expect("fail");
    assert_eq!(
        (failed.status, failed.attempts, failed.lease_expires_at),
        (TaskStatus::Failed, 1, None)
    );
    assert_receipt(&f, oid, &failed, "last fail").await;
    let retried = f.storage.retry_task(oid).await.expect("retry");
    assert_eq!(
        (retried.status, retried.attempts, retried.lease_expires_at),
        (TaskStatus::Pending, 0, None)
    );
    assert_receipt(&f, oid, &retried, "retry").await;
    let claimed = claim(&f, oid, "worker", LONG).await;
    let done = f
        .storage
        .complete_task(oid, attempt_of(&claimed), json!("ok"))
        .await
        .expect("complete");
    assert_eq!(
        (done.status, done.attempts, done.lease_expires_at),
        (TaskStatus::Completed, 1, None)
    );
    assert_receipt(&f, oid, &done, "complete").await;
}

/// `fail_task_permanently` ends the task at once (attempts left or not) with a receipt
/// saying so, and the attempt it ended is fenced out of every later write.
pub async fn permanent_failure_is_fenced_and_final(f: Fixture) {
    let queue = unique("queue");
    let created = submit(&f, task(&queue, 1).max_attempts(10)).await;
    let id = created.task_id.as_str();
    let claimed = claim(&f, id, "worker", LONG).await;
    let attempt = attempt_of(&claimed);
    let receipt = f
        .storage
        .fail_task_permanently(id, attempt, "invalid order")
        .await
        .expect("fail permanently");
    assert_eq!(
        (receipt.status, receipt.attempts, receipt.lease_expires_at),
        (TaskStatus::Failed, 1, None)
    );
    assert_receipt(&f, id, &receipt, "fail permanently").await;
    let stored = get(&f, id).await;
    assert!(stored.finished_at.is_some());
    assert_eq!(stored.error.as_deref(), Some("invalid order"));
    let again = f.storage.fail_task_permanently(id, attempt, "again").await;
    assert!(
        matches!(again, Err(StorageError::LeaseLost { .. })),
        "repeat: {again:?}"
    );
    let got = f.storage.complete_task(id, attempt, json!("late")).await;
    assert!(
        matches!(got, Err(StorageError::LeaseLost { .. })),
        "complete after: {got:?}"
    );
    let got = f.storage.renew_task_lease(id, attempt, LONG).await;
    assert!(
        matches!(got, Err(StorageError::LeaseLost { .. })),
        "renew after: {got:?}"
    );
    assert_eq!(
        f.storage
            .claim_task(id, "worker-2", LONG)
            .await
            .expect("claim"),
        None
    );
    assert_eq!(get(&f, id).await, stored, "nothing changed");
}

/// `requeue_expired_tasks(limit)` works in batches: with more expired claims than
/// `limit` it moves `limit` and says `more`; the next batch moves the rest and says no
/// more; live claims are never touched.
pub async fn requeue_expired_works_in_batches(f: Fixture) {
    let queue = unique("queue");
    let mut expired = Vec::new();
    for n in 0..4 {
        let created = submit(&f, task(&queue, n).max_attempts(3)).await;
        claim(&f, &created.task_id, "dead-worker", f.short_lease).await;
        expired.push(created.task_id);
    }
    let live = submit(&f, task(&queue, 9)).await;
    claim(&f, &live.task_id, "worker", LONG).await;
    f.expire_short_lease().await;

    let first = f.storage.requeue_expired_tasks(2).await.expect("requeue");
    assert_eq!((first.done, first.more), (2, true), "{first:?}");
    let second = f.storage.requeue_expired_tasks(2).await.expect("requeue");
    assert_eq!((second.done, second.more), (2, false), "{second:?}");
    let third = f.storage.requeue_expired_tasks(2).await.expect("requeue");
    assert_eq!((third.done, third.more), (0, false), "{third:?}");
    assert!(first.corrupt.is_empty() && second.corrupt.is_empty());
    for id in &expired {
        assert_eq!(get(&f, id).await.status, TaskStatus::Pending);
    }
    assert_eq!(get(&f, &live.task_id).await.status, TaskStatus::Claimed);
}

/// `purge_tasks(older_than, limit)` works in batches: `limit` per call with `more` while
/// old finished tasks remain; recent and unfinished tasks stay.
pub async fn purge_tasks_works_in_batches(f: Fixture) {
    let queue = unique("queue");
    let mut old = Vec::new();
    for n in 0..5 {
        let created = submit(&f, task(&queue, n)).await;
        let claimed = claim(&f, &created.task_id, "worker", LONG).await;
        f.storage
            .complete_task(&created.task_id, attempt_of(&claimed), json!(n))
            .await
            .expect("complete");
        old.push(created.task_id);
    }
    let pending = submit(&f, task(&queue, 10)).await;
    f.expire_short_lease().await;
    let recent = submit(&f, task(&queue, 11)).await;
    let claimed = claim(&f, &recent.task_id, "worker", LONG).await;
    f.storage
        .complete_task(&recent.task_id, attempt_of(&claimed), json!(11))
        .await
        .expect("complete");

    let older_than = f.short_lease;
    let mut done = 0;
    for (round, expect_more) in [(1, true), (2, true), (3, false)] {
        let sweep = f.storage.purge_tasks(older_than, 2).await.expect("purge");
        let expect_done = if round == 3 { 1 } else { 2 };
        assert_eq!(
            (sweep.done, sweep.more),
            (expect_done, expect_more),
            "batch {round}: {sweep:?}"
        );
        done += sweep.done;
    }
    assert_eq!(done, 5);
    for id in &old {
        assert_eq!(f.storage.get_task(id).await.expect("get"), None);
    }
    assert_eq!(get(&f, &pending.task_id).await.status, TaskStatus::Pending);
    assert_eq!(get(&f, &recent.task_id).await.status, TaskStatus::Completed);
}

/// `submit_tasks` answers each task in order: created, duplicate, conflict.
pub async fn batch_submit_answers_each_task_in_order(f: Fixture) {
    let queue = unique("queue");
    let first = submit(&f, task(&queue, 1).idempotency_key("k")).await;
    let answers = f
        .storage
        .submit_tasks(vec![
            task(&queue, 2),
            task(&queue, 1).idempotency_key("k"),
            task(&queue, 3).idempotency_key("k"),
            task(&queue, 4),
        ])
        .await
        .expect("submit_tasks");
    assert_eq!(answers.len(), 4);
    let mut answers = answers.into_iter();
    let created = answers.next().expect("1").expect("created");
    assert!(!created.duplicate);
    assert_eq!(created.task.payload, json!({"order": 2}));
    let dup = answers.next().expect("2").expect("duplicate");
    assert!(dup.duplicate);
    assert_eq!(dup.task.task_id, first.task_id);
    assert!(matches!(
        answers.next().expect("3"),
        Err(StorageError::KeyConflict { .. })
    ));
    let last = answers.next().expect("4").expect("created");
    assert_eq!(
        get(&f, &last.task.task_id).await.status,
        TaskStatus::Pending
    );
}

/// `claim_next_tasks` takes up to `max` distinct tasks, oldest first, then fewer, then none.
pub async fn batch_claim_takes_up_to_max_oldest_first(f: Fixture) {
    let queue = unique("queue");
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(submit(&f, task(&queue, n)).await.task_id);
    }
    let first = f
        .storage
        .claim_next_tasks(&queue, "worker", LONG, 3)
        .await
        .expect("claim");
    let got: Vec<&str> = first.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(got, ids[..3].iter().map(String::as_str).collect::<Vec<_>>());
    for t in &first {
        assert_eq!(t.status, TaskStatus::Claimed);
        assert_eq!(attempt_of(t), 1);
        assert_eq!(get(&f, &t.task_id).await.status, TaskStatus::Claimed);
    }
    let rest = f
        .storage
        .claim_next_tasks(&queue, "worker", LONG, 3)
        .await
        .expect("claim");
    let got: Vec<&str> = rest.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(got, ids[3..].iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        f.storage
            .claim_next_tasks(&queue, "worker", LONG, 3)
            .await
            .expect("claim")
            .is_empty()
    );
}

/// `complete_tasks` completes the live claims and answers `LeaseLost` for a stale one.
pub async fn batch_complete_fences_each_claim(f: Fixture) {
    let queue = unique("queue");
    let a = submit(&f, task(&queue, 1)).await;
    let b = submit(&f, task(&queue, 2)).await;
    let a = claim(&f, &a.task_id, "worker", LONG).await;
    let b = claim(&f, &b.task_id, "worker", LONG).await;
    let answers = f
        .storage
        .complete_tasks(vec![
            crate::TaskCompletion {
                task_id: a.task_id.clone(),
                attempt: attempt_of(&a),
                result: json!("a"),
            },
            crate::TaskCompletion {
                task_id: b.task_id.clone(),
                attempt: attempt_of(&b) + 1,
                result: json!("b"),
            },
        ])
        .await
        .expect("complete_tasks");
    let mut answers = answers.into_iter();
    let receipt = answers.next().expect("a").expect("completed");
    assert_eq!(receipt.status, TaskStatus::Completed);
    assert!(matches!(
        answers.next().expect("b"),
        Err(StorageError::LeaseLost { .. })
    ));
    assert_eq!(get(&f, &a.task_id).await.result, Some(json!("a")));
    assert_eq!(get(&f, &b.task_id).await.status, TaskStatus::Claimed);
}

/// A store with push wakeups signals a submit to a worker that marked its wakeup before
/// looking (the signal is not lost between the look and the wait).
pub async fn wakeup_signals_a_submit(f: Fixture) {
    let queue = unique("queue");
    let Some(mut wakeup) = f.storage.task_wakeup(&queue) else {
        return;
    };
    wakeup.mark_seen();
    submit(&f, task(&queue, 1)).await;
    // A liveness bound, not a speed assertion: the signal must come at all.
    tokio::time::timeout(Duration::from_secs(10), wakeup.changed())
        .await
        .expect("the submit was signalled");
}
