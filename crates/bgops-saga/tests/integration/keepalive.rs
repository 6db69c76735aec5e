//! The executor's lease keep-alive (the workspace's one `keep_alive`, `OnLost::Cancel`) and
//! the injected id generator.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bgops_core::id::SequentialIds;
use bgops_core::{Clock, SagaStatus};
use bgops_saga::{SagaEngine, SagaError};
use serde_json::json;

use crate::dynamic::{register_ok, steps3, wait_for_step};
use crate::support::{Recorder, Setup};

/// Sets its flag when dropped: tells that a handler's future was dropped mid-way.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_handler_whose_lease_was_taken_over_is_cancelled_at_the_next_renewal() {
    let s = Setup::new();
    // Renewals every 100 ms of real time; lease expiry on the manual clock.
    let config = Setup::config().with_lease(Duration::from_millis(300));
    let slow = s.engine_with(config.clone());
    let rec = Recorder::default();
    register_ok(&slow, &rec);
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = dropped.clone();
    slow.register_operation_handler("do_b", move |_| {
        let guard = DropFlag(flag.clone());
        async move {
            let _guard = guard;
            std::future::pending::<()>().await;
            Ok(json!("never"))
        }
    });
    let saga = slow.create("t1", "w", steps3(), None).await.unwrap();
    let e = slow.clone();
    let id = saga.saga_id.clone();
    let stale = tokio::spawn(async move { e.execute(&id).await });
    wait_for_step(&slow, &saga.saga_id, 1).await;

    let fresh = s.engine_with(config);
    register_ok(&fresh, &rec);
    // A renewal may land between the clock jump and the takeover: then try again.
    let mut outcome = None;
    for _ in 0..50 {
        s.expire_lease();
        match fresh.recover(&saga.saga_id).await {
            Err(SagaError::Busy(_)) => tokio::time::sleep(Duration::from_millis(5)).await,
            other => {
                outcome = Some(other.unwrap());
                break;
            }
        }
    }
    let outcome = outcome.expect("the lease was taken over");
    assert_eq!(outcome.status, SagaStatus::Completed);

    // The stale executor's next renewal finds the fence moved: its handler is dropped
    // (it never finishes by itself) and the execution stops with LeaseLost.
    let err = stale.await.unwrap().unwrap_err();
    assert!(matches!(err, SagaError::LeaseLost(_)), "{err}");
    assert!(dropped.load(Ordering::SeqCst), "the handler was cancelled");
    let stored = fresh.get(&saga.saga_id).await.unwrap().unwrap();
    assert_eq!(
        stored, outcome.saga,
        "the stale executor wrote nothing after"
    );
}

#[tokio::test]
async fn renewals_journal_nothing_and_lease_expiries_come_from_the_stores_clock() {
    let s = Setup::new();
    // The store's clock is an hour behind the engine's (system) clock: a lease expiry
    // computed by the engine would be an hour off.
    s.clock.set(s.clock.now() - Duration::from_secs(3600));
    let lease = Duration::from_millis(300);
    let engine = SagaEngine::builder(s.store.clone() as Arc<dyn bgops_storage::SagaStore>)
        .config(Setup::config().with_lease(lease))
        .build();
    let rec = Recorder::default();
    register_ok(&engine, &rec);
    engine.register_operation_handler("do_b", |_| async {
        // Several renewals (every 100 ms) while it runs.
        tokio::time::sleep(Duration::from_millis(700)).await;
        Ok(json!("slow"))
    });
    let saga = engine.create("t1", "w", steps3(), None).await.unwrap();
    let before = s.writes();
    let e = engine.clone();
    let id = saga.saga_id.clone();
    let running = tokio::spawn(async move { e.execute(&id).await });
    wait_for_step(&engine, &saga.saga_id, 1).await;
    let held = engine.get(&saga.saga_id).await.unwrap().unwrap();
    let expires = held.lease.map(|l| l.expires_at);
    assert_eq!(
        expires,
        Some(s.clock.now() + lease),
        "set by the store's clock"
    );

    let outcome = running.await.unwrap().unwrap();
    assert!(outcome.succeeded());
    assert!(
        s.writes() - before > 5 + 2,
        "renewals are writes of their own"
    );
    let kinds: Vec<_> = engine
        .history(&saga.saga_id)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind.name())
        .collect();
    assert_eq!(
        kinds,
        [
            "created",
            "resumed",
            "step_started",
            "step_succeeded",
            "step_started",
            "step_succeeded",
            "step_started",
            "step_succeeded",
            "finished"
        ],
        "renewals journal nothing"
    );
}

#[tokio::test]
async fn saga_ids_and_owner_come_from_the_injected_generator() {
    let s = Setup::new();
    let engine = SagaEngine::builder(s.store.clone() as Arc<dyn bgops_storage::SagaStore>)
        .config(Setup::config())
        .ids(Arc::new(SequentialIds::new("sg")))
        .build();
    // The owner took the first token.
    assert!(
        engine.owner().ends_with(":tsg-000001"),
        "{}",
        engine.owner()
    );
    let rec = Recorder::default();
    register_ok(&engine, &rec);
    let a = engine.create("t1", "w", steps3(), None).await.unwrap();
    let b = engine.create("t1", "w", steps3(), None).await.unwrap();
    assert_eq!(
        (a.saga_id.as_str(), b.saga_id.as_str()),
        ("sg-000002", "sg-000003")
    );
    let outcome = engine.execute(&a.saga_id).await.unwrap();
    assert!(outcome.succeeded());
}
