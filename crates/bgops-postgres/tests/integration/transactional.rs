//! The transactional API: an idempotency outcome, a task and a saga step's success
//! written in the caller's transaction commit with the business write, or not at all.

use std::time::Duration;

use bgops_core::{OperationOutcome, OperationStatus, SagaStatus, SagaStep, SagaWorkflow};
use bgops_postgres::PostgresStorage;
use bgops_storage::{
    BeginOutcome, BeginRequest, CreateSaga, IdempotencyStore, NewTask, SagaStore, TaskStore,
};
use serde_json::json;

use super::support::storage;

const LONG: Duration = Duration::from_secs(600);

/// The business table, in the test's schema.
async fn orders(s: &PostgresStorage) -> String {
    let table = format!("{}.orders", s.schema());
    sqlx::query(&format!("CREATE TABLE {table} (id text PRIMARY KEY)"))
        .execute(s.pool())
        .await
        .expect("create table");
    table
}

async fn order_exists(s: &PostgresStorage, table: &str, id: &str) -> bool {
    sqlx::query(&format!("SELECT 1 FROM {table} WHERE id = $1"))
        .bind(id)
        .fetch_optional(s.pool())
        .await
        .expect("select")
        .is_some()
}

async fn claim(s: &PostgresStorage, key: &str, token: &str, lease: Duration) {
    let request = BeginRequest::new("t", key, "create_order", token).lease(lease);
    let got = s.begin(request).await.expect("begin");
    assert!(matches!(got, BeginOutcome::Started(_)), "{got:?}");
}

#[derive(Clone, Copy, Debug)]
enum End {
    Commit,
    Rollback,
    Drop,
}

/// Business insert + `complete_in` in one transaction, ended as `end`.
async fn order_in_tx(s: &PostgresStorage, table: &str, key: &str, token: &str, end: End) {
    let mut tx = s.pool().begin().await.expect("tx");
    sqlx::query(&format!("INSERT INTO {table} (id) VALUES ($1)"))
        .bind(key)
        .execute(&mut *tx)
        .await
        .expect("insert");
    s.complete_in(
        &mut tx,
        "t",
        key,
        token,
        OperationOutcome::succeeded(json!({"order": key})),
    )
    .await
    .expect("complete in tx");
    match end {
        End::Commit => tx.commit().await.expect("commit"),
        End::Rollback => tx.rollback().await.expect("rollback"),
        End::Drop => drop(tx),
    }
}

#[tokio::test]
async fn committed_outcome_and_effect_land_together() {
    let (s, _guard) = storage().await;
    let table = orders(&s).await;
    claim(&s, "k", "a", LONG).await;
    order_in_tx(&s, &table, "k", "a", End::Commit).await;
    assert!(order_exists(&s, &table, "k").await);
    let replay = s
        .begin(BeginRequest::new("t", "k", "create_order", "b"))
        .await
        .expect("begin");
    let BeginOutcome::Completed(record) = replay else {
        panic!("replay: {replay:?}")
    };
    assert_eq!(record.result, Some(json!({"order": "k"})));
}

/// A rollback, or a transaction dropped without commit (a crash before commit), leaves
/// neither the order nor the outcome: the key stays in flight until its lease runs out,
/// then the retry takes it over and runs again.
#[tokio::test]
async fn rollback_or_drop_leaves_no_effect_and_a_claimable_key() {
    let (s, _guard) = storage().await;
    let table = orders(&s).await;
    for (key, end) in [("rolled", End::Rollback), ("dropped", End::Drop)] {
        let lease = Duration::from_millis(300);
        claim(&s, key, "a", lease).await;
        order_in_tx(&s, &table, key, "a", end).await;
        assert!(!order_exists(&s, &table, key).await, "{end:?}: no order");
        let record = s
            .get_idempotency("t", key)
            .await
            .expect("get")
            .expect("still there");
        assert_eq!(record.status, OperationStatus::InProgress, "{end:?}");
        assert_eq!(record.result, None);
        tokio::time::sleep(lease * 2).await;
        claim(&s, key, "b", LONG).await;
        order_in_tx(&s, &table, key, "b", End::Commit).await;
        assert!(
            order_exists(&s, &table, key).await,
            "{end:?}: the retry's order"
        );
    }
}

/// A duplicate that arrives while the completing transaction is open waits on the row,
/// then replays the committed outcome (never runs the operation a second time).
#[tokio::test]
async fn duplicate_during_the_transaction_replays_after_commit() {
    let (s, _guard) = storage().await;
    let table = orders(&s).await;
    claim(&s, "k", "a", LONG).await;
    let mut tx = s.pool().begin().await.expect("tx");
    sqlx::query(&format!("INSERT INTO {table} (id) VALUES ('k')"))
        .execute(&mut *tx)
        .await
        .expect("insert");
    s.complete_in(
        &mut tx,
        "t",
        "k",
        "a",
        OperationOutcome::succeeded(json!(1)),
    )
    .await
    .expect("complete");
    let other = s.clone();
    let duplicate = tokio::spawn(async move {
        other
            .begin(BeginRequest::new("t", "k", "create_order", "b"))
            .await
    });
    tx.commit().await.expect("commit");
    let got = duplicate.await.expect("join").expect("begin");
    assert!(
        matches!(
            got,
            BeginOutcome::Completed(_) | BeginOutcome::InProgress { .. }
        ),
        "{got:?}"
    );
    assert!(!matches!(got, BeginOutcome::Started(_)));
}

/// A task submitted in the caller's transaction exists iff the transaction commits.
#[tokio::test]
async fn task_submitted_in_a_transaction_exists_iff_it_commits() {
    let (s, _guard) = storage().await;
    for (key, commit) in [("kept", true), ("dropped", false)] {
        let mut tx = s.pool().begin().await.expect("tx");
        let submitted = s
            .submit_task_in(
                &mut tx,
                &NewTask::new("q", "email", json!({"to": key})).idempotency_key(key),
            )
            .await
            .expect("submit in tx");
        if commit {
            tx.commit().await.expect("commit");
        } else {
            tx.rollback().await.expect("rollback");
        }
        let found = s.get_task(&submitted.task.task_id).await.expect("get");
        assert_eq!(found.is_some(), commit, "{key}");
        assert_eq!(
            s.get_task_by_key("q", key).await.expect("by key").is_some(),
            commit
        );
    }
    let next = s.claim_next_task("q", "w", LONG).await.expect("claim");
    assert_eq!(
        next.and_then(|t| t.idempotency_key).as_deref(),
        Some("kept"),
        "only the committed task is claimable"
    );
}

/// A saga step's success saved in the caller's transaction commits with its effect; on
/// rollback the saga is where it was (the step runs again on recovery).
#[tokio::test]
async fn saga_step_success_commits_with_its_effect() {
    let (s, _guard) = storage().await;
    let table = orders(&s).await;
    let saga = SagaWorkflow::new(
        "t",
        "wf",
        vec![SagaStep::new("insert", "op", json!({}))],
        time::OffsetDateTime::now_utc(),
    );
    assert!(matches!(
        s.create_saga(&saga, None, &[]).await.expect("create"),
        CreateSaga::Created(_)
    ));
    let leased = s
        .acquire_saga_lease(&saga.saga_id, "exec", LONG)
        .await
        .expect("acquire")
        .expect("free");
    let fence = leased.lease.as_ref().expect("lease").fence;
    for (id, commit) in [("first", false), ("second", true)] {
        let mut next = leased.clone();
        next.status = SagaStatus::Completed;
        next.current_step = 1;
        let mut tx = s.pool().begin().await.expect("tx");
        sqlx::query(&format!("INSERT INTO {table} (id) VALUES ($1)"))
            .bind(id)
            .execute(&mut *tx)
            .await
            .expect("insert");
        s.save_saga_in(&mut tx, &next, fence, &[], None)
            .await
            .expect("save in tx");
        if commit {
            tx.commit().await.expect("commit");
        } else {
            tx.rollback().await.expect("rollback");
        }
        let stored = s.get_saga(&saga.saga_id).await.expect("get").expect("saga");
        assert_eq!(stored.version, leased.version + u64::from(commit), "{id}");
        assert_eq!(order_exists(&s, &table, id).await, commit, "{id}");
    }
}

/// A task's effect and its completion commit together: after a rollback the claim is
/// as it was (no effect, still the worker's), after the commit both exist.
#[tokio::test]
async fn task_completion_commits_with_its_effect() {
    let (s, _guard) = storage().await;
    let table = orders(&s).await;
    s.submit_task(NewTask::new("q", "ship", json!({"order": 7})))
        .await
        .expect("submit");
    let task = s
        .claim_next_task("q", "w", LONG)
        .await
        .expect("claim")
        .expect("one");
    let attempt = task.lease.as_ref().expect("lease").attempt;
    for commit in [false, true] {
        let mut tx = s.pool().begin().await.expect("tx");
        sqlx::query(&format!("INSERT INTO {table} (id) VALUES ('order-7')"))
            .execute(&mut *tx)
            .await
            .expect("insert");
        let receipt = s
            .complete_task_in(&mut tx, &task.task_id, attempt, json!("shipped"))
            .await
            .expect("complete in tx");
        assert_eq!(receipt.status, bgops_core::TaskStatus::Completed);
        if commit {
            tx.commit().await.expect("commit");
        } else {
            tx.rollback().await.expect("rollback");
        }
        let stored = s.get_task(&task.task_id).await.expect("get").expect("task");
        let expected = if commit {
            bgops_core::TaskStatus::Completed
        } else {
            bgops_core::TaskStatus::Claimed
        };
        assert_eq!(stored.status, expected);
        assert_eq!(order_exists(&s, &table, "order-7").await, commit);
    }
}

/// A saga created in the caller's transaction exists iff it commits; committed
/// `Running` without a lease, the recoverer finds it.
#[tokio::test]
async fn saga_created_in_a_transaction_exists_iff_it_commits() {
    let (s, _guard) = storage().await;
    for commit in [false, true] {
        let mut saga = SagaWorkflow::new(
            "t",
            "wf",
            vec![SagaStep::new("pay", "op", json!({}))],
            time::OffsetDateTime::now_utc(),
        );
        saga.status = SagaStatus::Running;
        let mut tx = s.pool().begin().await.expect("tx");
        let created = s
            .create_saga_in(&mut tx, &saga, None, &[])
            .await
            .expect("create in tx");
        assert!(matches!(created, CreateSaga::Created(_)));
        if commit {
            tx.commit().await.expect("commit");
        } else {
            tx.rollback().await.expect("rollback");
        }
        assert_eq!(
            s.get_saga(&saga.saga_id).await.expect("get").is_some(),
            commit
        );
        let recoverable = s.list_recoverable_sagas(10).await.expect("list");
        assert_eq!(recoverable.contains(&saga.saga_id), commit);
    }
}
