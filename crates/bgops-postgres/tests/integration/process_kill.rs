//! SIGKILL of a process mid-task, mid-saga and mid-transaction; this process recovers.
//!
//! The child is this test binary run again on one test (`child_process`) with the
//! scenario, URL and schema in its environment: it does the work up to the point of the
//! crash, prints `ready`, and waits to be killed.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use bgops_core::{OperationOutcome, SagaStatus, SagaStep, SagaWorkflow, TaskStatus};
use bgops_postgres::PostgresStorage;
use bgops_storage::{
    BeginOutcome, BeginRequest, CreateSaga, IdempotencyStore, NewTask, SagaStore, TaskStore,
};
use serde_json::json;

use super::support::{storage, url};

const SCENARIO: &str = "BGOPS_PG_CHILD_SCENARIO";
const SCHEMA: &str = "BGOPS_PG_CHILD_SCHEMA";
const LEASE: Duration = Duration::from_millis(500);
const LONG: Duration = Duration::from_secs(600);

/// Runs the child on `scenario` with `arg`, waits for its `ready`, and SIGKILLs it.
fn run_and_kill(scenario: &str, schema: &str, arg: &str) {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["process_kill::child_process", "--exact", "--nocapture"])
        .env(SCENARIO, format!("{scenario}:{arg}"))
        .env(SCHEMA, schema)
        .env("BGOPS_TEST_POSTGRES_URL", url())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the child");
    let stdout = child.stdout.take().expect("stdout");
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line == "ready");
    assert!(ready, "the child reached the crash point");
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
}

/// The child's side: a no-op unless started by `run_and_kill`.
#[tokio::test]
async fn child_process() {
    let Ok(scenario) = std::env::var(SCENARIO) else {
        return;
    };
    let schema = std::env::var(SCHEMA).expect("schema");
    let s = PostgresStorage::builder(url())
        .schema(schema)
        .build()
        .await
        .expect("child store");
    let (what, arg) = scenario.split_once(':').expect("scenario:arg");
    match what {
        "task" => {
            let task = s
                .claim_next_task(arg, "doomed", LEASE)
                .await
                .expect("claim")
                .expect("a task");
            assert_eq!(task.status, TaskStatus::Claimed);
        }
        "saga" => {
            let saga = s
                .acquire_saga_lease(arg, "doomed", LEASE)
                .await
                .expect("acquire")
                .expect("free");
            let mut running = saga.clone();
            running.status = SagaStatus::Running;
            s.save_saga(
                &running,
                saga.lease.as_ref().expect("lease").fence,
                &[],
                None,
            )
            .await
            .expect("save");
        }
        "tx" => {
            let BeginOutcome::Started(claim) = s
                .begin(BeginRequest::new("t", arg, "op", "doomed").lease(LEASE))
                .await
                .expect("begin")
            else {
                panic!("started")
            };
            let mut tx = s.pool().begin().await.expect("tx");
            sqlx::query(&format!(
                "INSERT INTO {}.orders (id) VALUES ($1)",
                s.schema()
            ))
            .bind(arg)
            .execute(&mut *tx)
            .await
            .expect("insert");
            s.complete_in(
                &mut tx,
                "t",
                arg,
                &claim.token,
                OperationOutcome::succeeded(json!(1)),
            )
            .await
            .expect("complete in tx");
            println!("ready");
            // Killed here, with the transaction open.
            tokio::time::sleep(LONG).await;
            return;
        }
        other => panic!("unknown scenario {other}"),
    }
    println!("ready");
    tokio::time::sleep(LONG).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_task_is_taken_over_once() {
    let (s, _guard) = storage().await;
    let queue = "kill-q";
    let submitted = s
        .submit_task(NewTask::new(queue, "x", json!(1)).max_attempts(3))
        .await
        .expect("submit");
    run_and_kill("task", s.schema(), queue);
    tokio::time::sleep(LEASE * 2).await;
    let task = s
        .claim_next_task(queue, "survivor", LONG)
        .await
        .expect("claim")
        .expect("the dead worker's task comes back");
    assert_eq!(task.task_id, submitted.task.task_id);
    assert_eq!(task.history[0].worker_id, "doomed");
    assert_eq!(task.history[0].outcome.as_deref(), Some("lease_expired"));
    let attempt = task.lease.as_ref().expect("lease").attempt;
    let done = s
        .complete_task(&task.task_id, attempt, json!("ok"))
        .await
        .expect("complete");
    assert_eq!((done.status, done.attempts), (TaskStatus::Completed, 2));
    // The dead worker's attempt is fenced out.
    assert!(
        s.complete_task(&task.task_id, 1, json!("late"))
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_saga_executor_is_recovered_with_a_higher_fence() {
    let (s, _guard) = storage().await;
    let saga = SagaWorkflow::new(
        "t",
        "wf",
        vec![SagaStep::new("a", "op", json!({}))],
        time::OffsetDateTime::now_utc(),
    );
    assert!(matches!(
        s.create_saga(&saga, None, &[]).await.expect("create"),
        CreateSaga::Created(_)
    ));
    run_and_kill("saga", s.schema(), &saga.saga_id);
    tokio::time::sleep(LEASE * 2).await;
    let recoverable = s.list_recoverable_sagas(10).await.expect("list");
    assert_eq!(recoverable, vec![saga.saga_id.clone()]);
    let resumed = s
        .acquire_saga_lease(&saga.saga_id, "survivor", LONG)
        .await
        .expect("acquire")
        .expect("the dead executor's lease ran out");
    let lease = resumed.lease.clone().expect("lease");
    assert_eq!((lease.owner.as_str(), lease.fence), ("survivor", 2));
    let mut done = resumed.clone();
    done.status = SagaStatus::Completed;
    s.save_saga(&done, 2, &[], None).await.expect("save");
    // The dead executor's fence is out.
    assert!(s.save_saga(&done, 1, &[], None).await.is_err());
}

/// Killed with the transaction open (business write + `complete_in` not committed):
/// neither the order nor the outcome exists, and the retry takes the key over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_before_commit_leaves_no_effect() {
    let (s, _guard) = storage().await;
    sqlx::query(&format!(
        "CREATE TABLE {}.orders (id text PRIMARY KEY)",
        s.schema()
    ))
    .execute(s.pool())
    .await
    .expect("table");
    run_and_kill("tx", s.schema(), "order-1");
    let orders: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {}.orders", s.schema()))
        .fetch_one(s.pool())
        .await
        .expect("count");
    assert_eq!(orders, 0, "no effect");
    tokio::time::sleep(LEASE * 2).await;
    let got = s
        .begin(BeginRequest::new("t", "order-1", "op", "survivor"))
        .await
        .expect("begin");
    assert!(
        matches!(got, BeginOutcome::Started(_)),
        "claimable again: {got:?}"
    );
}
