//! Faults: a server crash and restart under load (nothing acknowledged is lost, nothing
//! runs twice, clients reconnect by themselves), a stopped server, connection refused and
//! a missing schema (clear errors that say what to do). Each test owns its server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bgops_core::OperationOutcome;
use bgops_postgres::{PostgresError, PostgresStorage};
use bgops_storage::{
    BeginOutcome, BeginRequest, IdempotencyStore, NewTask, StorageError, TaskStore,
};
use serde_json::json;

use super::support::{PostgresServer, storage_at};

#[derive(Default)]
struct Acked {
    keys: Vec<String>,
    tasks: Vec<String>,
    errors: Vec<String>,
}

fn server() -> PostgresServer {
    PostgresServer::spawn().expect("a throwaway PostgreSQL (needs initdb and pg_ctl)")
}

async fn wait_for_progress(acked: &Mutex<Acked>, at_least: usize) {
    for _ in 0..600 {
        if acked.lock().unwrap().keys.len() >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let acked = acked.lock().unwrap();
    panic!(
        "no progress: {} acknowledged, errors: {:?}",
        acked.keys.len(),
        acked.errors.iter().rev().take(5).collect::<Vec<_>>()
    );
}

/// `pg_ctl restart -m immediate` (a crash) while four clients run lifecycles and submit
/// tasks: every acknowledged completion and submit survives, a new token never gets to
/// run an acknowledged key again, the errors seen meanwhile are all transient, and the
/// same store works again afterwards without being rebuilt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_restart_under_load_loses_nothing_acknowledged() {
    let server = server();
    let (s, _guard) = storage_at(&server.url).await;
    let acked = Arc::new(Mutex::new(Acked::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for n in 0..4 {
        let (s, acked, stop) = (s.clone(), acked.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let key = format!("w{n}-{i}");
                let token = format!("tok-{key}");
                let result = async {
                    let got = s.begin(BeginRequest::new("t", &key, "op", &token)).await?;
                    assert!(matches!(got, BeginOutcome::Started(_)), "{key}: {got:?}");
                    s.complete("t", &key, &token, OperationOutcome::succeeded(json!(i)))
                        .await?;
                    acked.lock().unwrap().keys.push(key.clone());
                    let task = s
                        .submit_task(NewTask::new("q", "x", json!(i)).idempotency_key(&key))
                        .await?;
                    acked.lock().unwrap().tasks.push(task.task.task_id);
                    Ok::<_, StorageError>(())
                }
                .await;
                if let Err(e) = result {
                    assert!(
                        e.is_transient(),
                        "a non-transient error in the fault: {e:?}"
                    );
                    acked.lock().unwrap().errors.push(e.to_string());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    wait_for_progress(&acked, 40).await;
    let restarted = tokio::task::spawn_blocking(move || {
        server.restart_immediate().expect("pg_ctl restart");
        server
    });
    let server = restarted.await.expect("join");
    let before = acked.lock().unwrap().keys.len();
    wait_for_progress(&acked, before + 40).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("worker");
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    for key in &acked.keys {
        let got = s
            .begin(BeginRequest::new("t", key, "op", "late-retry"))
            .await
            .expect("begin");
        assert!(
            matches!(got, BeginOutcome::Completed(_)),
            "acknowledged {key} lost: {got:?}"
        );
    }
    for id in &acked.tasks {
        assert!(
            s.get_task(id).await.expect("get").is_some(),
            "task {id} lost"
        );
    }
    eprintln!(
        "restart under load: {} lifecycles and {} submits acknowledged, {} transient errors",
        acked.keys.len(),
        acked.tasks.len(),
        acked.errors.len()
    );
    drop(server);
}

/// A stopped server makes calls fail as `Unavailable` (worth a retry); once it is back
/// the same store answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_server_is_unavailable_then_recovers() {
    let server = server();
    let (s, _guard) = storage_at(&server.url).await;
    s.submit_task(NewTask::new("q", "x", json!(1)))
        .await
        .expect("submit");
    server.stop_immediate().expect("stop");
    let got = s.submit_task(NewTask::new("q", "x", json!(2))).await;
    assert!(
        matches!(got, Err(StorageError::Unavailable { .. })),
        "server down: {got:?}"
    );
    server.start().expect("start");
    let mut ok = false;
    for _ in 0..100 {
        if s.submit_task(NewTask::new("q", "x", json!(3)))
            .await
            .is_ok()
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "the store reconnects by itself");
}

#[tokio::test]
async fn connection_refused_says_what_to_do() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let got = PostgresStorage::builder(format!("postgres://app:secret@127.0.0.1:{port}/x"))
        .acquire_timeout(Duration::from_secs(2))
        .build()
        .await;
    let err = got.expect_err("nothing listens there");
    assert!(matches!(err, PostgresError::Connect { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("is the server running"), "{message}");
    assert!(
        !message.contains("secret"),
        "no password in messages: {message}"
    );
    assert!(StorageError::from(err).is_transient());
}

#[tokio::test]
async fn missing_schema_says_to_migrate() {
    let url = super::support::url();
    let schema = format!("bgops_missing_{}", uuid::Uuid::new_v4().simple());
    let err = PostgresStorage::builder(&url)
        .schema(&schema)
        .build()
        .await
        .expect_err("not migrated");
    assert!(
        matches!(err, PostgresError::SchemaMissing { found: 0, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("migrate"), "{err}");

    // Dropped under a running store: calls say the same.
    let (s, _guard) = storage_at(&url).await;
    sqlx::query(&format!("DROP SCHEMA {} CASCADE", s.schema()))
        .execute(s.pool())
        .await
        .expect("drop");
    let err = s
        .submit_task(NewTask::new("q", "x", json!(1)))
        .await
        .expect_err("no tables");
    assert!(err.to_string().contains("migrate"), "{err}");
    let err = PostgresStorage::builder(&url)
        .schema("Not-A-Schema")
        .build()
        .await
        .expect_err("bad name");
    assert!(matches!(err, PostgresError::InvalidSchema(_)), "{err:?}");
}
