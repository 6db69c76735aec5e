//! Crash test with real processes on Redis. A child process (this test binary started
//! again in child mode) creates and runs sagas whose handlers count each execution with
//! an HINCRBY, then work a moment; the test SIGKILLs it mid-step, starts a second process
//! that recovers every saga, and checks: every saga ends Completed or Compensated, no step
//! that had succeeded ran again, and compensations ran exactly for the steps that
//! succeeded.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bgops_core::{SagaStatus, SagaStepStatus, SagaWorkflow};
use bgops_saga::{Backoff, NewSaga, SagaConfig, SagaEngine, StepContext, StepError};
use fred::interfaces::{ClientLike, HashesInterface, ListInterface};
use rand::Rng;
use serde_json::Value;

use crate::dynamic::{steps3, steps3_grouped};

const SAGAS: usize = 30;
const LEASE: Duration = Duration::from_secs(2);
const ROLE_ENV: &str = "BGOPS_SAGA_CRASH_ROLE";
const PREFIX_ENV: &str = "BGOPS_SAGA_CRASH_PREFIX";

/// The Redis URL of this test process (the workspace's one policy:
/// `BGOPS_TEST_REDIS_URL`, or a throwaway server started on first use).
fn redis_url() -> String {
    bgops_storage::testing::server::redis::url()
}

/// Deletes the test's own keys (the workspace's one `delete_prefix`).
fn delete_prefix(url: &str, prefix: &str) {
    bgops_storage::testing::server::redis::delete_prefix(url, prefix)
        .expect("delete the test's keys");
}

struct Conn {
    engine: SagaEngine,
    client: fred::clients::Client,
}

async fn connect(url: &str, prefix: &str) -> Conn {
    let storage = bgops_redis::RedisStorage::builder(url)
        .prefix(prefix)
        .build()
        .await
        .expect("connect to Redis");
    let config = SagaConfig::default()
        .with_lease(LEASE)
        .with_retry(
            Backoff::new(Duration::from_millis(5), Duration::from_secs(30)).with_jitter(0.5),
        )
        .with_compensation_retry(
            Backoff::new(Duration::from_millis(5), Duration::from_secs(30)).with_jitter(0.5),
        )
        .with_recovery_batch(100, 32);
    let engine = SagaEngine::builder(Arc::new(storage))
        .config(config)
        .build();
    let config = fred::types::config::Config::from_url(url).expect("Redis URL");
    let client = fred::clients::Client::new(config, None, None, None);
    client.init().await.expect("connect to Redis");
    Conn { engine, client }
}

fn exec_key(prefix: &str) -> String {
    format!("{prefix}:crash-exec")
}

fn ids_key(prefix: &str) -> String {
    format!("{prefix}:crash-ids")
}

/// Handlers that count each execution by step key (HINCRBY), then work 20-80 ms (the
/// window the SIGKILL lands in). Sagas of tenant `fail` fail terminally at step c.
fn register(conn: &Conn, prefix: &str) {
    for n in ["a", "b", "c"] {
        for comp in [false, true] {
            let client = conn.client.clone();
            let key = exec_key(prefix);
            let handler = move |step: StepContext| {
                let client = client.clone();
                let key = key.clone();
                async move {
                    let _: i64 = client
                        .hincrby(&key, step.step_key(), 1)
                        .await
                        .map_err(|e| StepError::retryable(e.to_string()))?;
                    let ms = rand::rng().random_range(20..80);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    if !comp && n == "c" && &*step.tenant_id == "fail" {
                        return Err(StepError::terminal("declined"));
                    }
                    Ok(Value::Null)
                }
            };
            if comp {
                conn.engine
                    .register_compensation_handler(format!("undo_{n}"), handler);
            } else {
                conn.engine
                    .register_operation_handler(format!("do_{n}"), handler);
            }
        }
    }
}

/// The child process. `run`: create the sagas, publish their ids, execute them all at
/// once (the parent kills it midway). `recover`: resume every saga until all have ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "started by a_killed_executor_process_is_recovered_by_another as a child process"]
async fn saga_crash_child() {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return;
    };
    let url = std::env::var("BGOPS_TEST_REDIS_URL").expect("url from the parent");
    let prefix = std::env::var(PREFIX_ENV).expect("prefix from the parent");
    let conn = connect(&url, &prefix).await;
    register(&conn, &prefix);
    if role == "run" {
        let mut runs = Vec::new();
        for k in 0..SAGAS {
            let tenant = if k % 3 == 0 { "fail" } else { "ok" };
            // Every other pair of sagas runs steps b and c as a parallel group.
            let steps3 = if k % 4 >= 2 { steps3_grouped } else { steps3 };
            let engine = conn.engine.clone();
            if k % 2 == 0 {
                let saga = engine
                    .create(tenant, "crash", steps3(), None)
                    .await
                    .unwrap();
                let _: i64 = conn
                    .client
                    .rpush(ids_key(&prefix), saga.saga_id.clone())
                    .await
                    .unwrap();
                runs.push(tokio::spawn(async move {
                    engine.execute(&saga.saga_id).await.map(|_| ())
                }));
            } else {
                // Created and run in one go (stored already leased, first intent included).
                let id = uuid::Uuid::now_v7().to_string();
                let _: i64 = conn
                    .client
                    .rpush(ids_key(&prefix), id.clone())
                    .await
                    .unwrap();
                let new = NewSaga::new(tenant, "crash", steps3()).saga_id(id);
                runs.push(tokio::spawn(
                    async move { engine.start(new).await.map(|_| ()) },
                ));
            }
        }
        let _ = futures::future::join_all(runs).await;
        // Should the parent be late, stay alive until it kills us.
        tokio::time::sleep(Duration::from_secs(60)).await;
    } else {
        let ids: Vec<String> = conn.client.lrange(ids_key(&prefix), 0, -1).await.unwrap();
        for _ in 0..600 {
            let mut open = 0;
            for id in &ids {
                // Killed between publishing the id and `start` storing the saga: none.
                let Some(saga) = conn.engine.get(id).await.unwrap() else {
                    continue;
                };
                match saga.status {
                    SagaStatus::Pending => {
                        // Created but never started: nothing to recover, just run it.
                        conn.engine.execute(id).await.unwrap();
                    }
                    s if !s.is_terminal() => open += 1,
                    _ => {}
                }
            }
            if open == 0 {
                return;
            }
            conn.engine.recover_abandoned().await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("sagas still open after 60 s");
    }
}

fn start_child(role: &str, url: &str, prefix: &str) -> Child {
    Command::new(std::env::current_exe().expect("test binary path"))
        .args([
            "crash_redis::saga_crash_child",
            "--exact",
            "--ignored",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(ROLE_ENV, role)
        .env("BGOPS_TEST_REDIS_URL", url)
        .env(PREFIX_ENV, prefix)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start a child process")
}

async fn snapshot(conn: &Conn, prefix: &str) -> (Vec<SagaWorkflow>, HashMap<String, i64>) {
    let ids: Vec<String> = conn.client.lrange(ids_key(prefix), 0, -1).await.unwrap();
    let mut sagas = Vec::new();
    for id in &ids {
        // A saga killed between publishing its id and `start` storing it does not exist.
        if let Some(saga) = conn.engine.get(id).await.unwrap() {
            sagas.push(saga);
        }
    }
    let counts: HashMap<String, i64> = conn.client.hgetall(exec_key(prefix)).await.unwrap();
    (sagas, counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_executor_process_is_recovered_by_another() {
    let url = redis_url();
    let prefix = format!("bgops-test-{}", uuid::Uuid::new_v4().simple());
    let conn = connect(&url, &prefix).await;

    let mut victim = start_child("run", &url, &prefix);
    // Kill once the sagas are well under way (of about 110 handler calls in all, 75 made):
    // some have ended, most are mid-step or mid-compensation.
    let mut busy = false;
    for _ in 0..3000 {
        let counts: HashMap<String, i64> = conn.client.hgetall(exec_key(&prefix)).await.unwrap();
        if counts.values().sum::<i64>() >= 75 {
            busy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    victim.kill().expect("SIGKILL the executor");
    victim.wait().expect("reap it");
    assert!(busy, "the executor process never got going");
    let (before, counts_before) = snapshot(&conn, &prefix).await;

    let recoverer = start_child("recover", &url, &prefix);
    let exited = tokio::task::spawn_blocking(move || {
        let mut recoverer = recoverer;
        for _ in 0..900 {
            if let Some(status) = recoverer.try_wait().expect("recoverer status") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = recoverer.kill();
        None
    })
    .await
    .unwrap();
    let (after, counts) = snapshot(&conn, &prefix).await;
    delete_prefix(&url, &prefix);
    let _ = conn.client.quit().await;
    assert!(
        exited.is_some_and(|s| s.success()),
        "the recovering process failed: {exited:?}"
    );

    assert_eq!(before.len(), after.len());
    assert!(
        before.len() + 1 >= SAGAS,
        "at most the saga being created at the kill is missing"
    );
    let interrupted = before.iter().filter(|s| !s.status.is_terminal()).count();
    let mid_step = before
        .iter()
        .filter(|s| {
            s.steps.iter().any(|st| {
                matches!(
                    st.status,
                    SagaStepStatus::Running | SagaStepStatus::Compensating
                )
            })
        })
        .count();
    let compensating = before
        .iter()
        .filter(|s| s.status == SagaStatus::Compensating)
        .count();
    let count = |m: &HashMap<String, i64>, k: &str| m.get(k).copied().unwrap_or(0);
    for (prior, after) in before.iter().zip(&after) {
        let id = &after.saga_id;
        let fails = after.tenant_id == "fail";
        let expected = if fails {
            SagaStatus::Compensated
        } else {
            SagaStatus::Completed
        };
        assert_eq!(after.status, expected, "saga {id}");
        for (i, step) in prior.steps.iter().enumerate() {
            let key = format!("{id}:{i}");
            if matches!(
                step.status,
                SagaStepStatus::Completed
                    | SagaStepStatus::Compensating
                    | SagaStepStatus::Compensated
            ) {
                assert_eq!(
                    count(&counts, &key),
                    count(&counts_before, &key),
                    "succeeded step {key} ran again"
                );
            }
            assert!(count(&counts, &key) >= 1, "{key} never ran");
            let comp = count(&counts, &format!("{key}:comp"));
            if fails && i < 2 {
                assert!(comp >= 1, "{key} succeeded but was not compensated");
                if step.status != SagaStepStatus::Compensating {
                    assert_eq!(comp, 1, "{key} compensated twice without a crash in it");
                }
            } else {
                assert_eq!(comp, 0, "{key} compensated though it did not succeed");
            }
        }
    }
    assert!(interrupted > 0, "no saga was interrupted by the SIGKILL");
    eprintln!(
        "saga crash test: {SAGAS} sagas, {interrupted} unfinished at SIGKILL ({mid_step} mid-step, {compensating} compensating); all recovered by a second process"
    );
}
