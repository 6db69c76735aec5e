//! Dynamic sagas (seed 001): handlers by operation name, retries, compensation, leases.

use std::sync::Arc;
use std::time::Duration;

use bgops_core::{SagaStatus, SagaStep, SagaStepStatus};
use bgops_saga::{NewSaga, SagaEngine, SagaError, SagaEventKind, StepError};
use serde_json::json;
use tokio::sync::Notify;

use crate::support::{Recorder, Setup};

pub fn steps3() -> Vec<SagaStep> {
    ["a", "b", "c"]
        .iter()
        .map(|n| {
            SagaStep::new(format!("step {n}"), format!("do_{n}"), json!({ "n": n }))
                .with_compensation(format!("undo_{n}"), json!({ "n": n }))
                .with_max_retries(2)
        })
        .collect()
}

/// [`steps3`] with steps b and c in one parallel group `bc` (a runs first, alone).
pub fn steps3_grouped() -> Vec<SagaStep> {
    steps3()
        .into_iter()
        .enumerate()
        .map(|(i, s)| if i == 0 { s } else { s.in_group("bc") })
        .collect()
}

/// `do_x` / `undo_x` for x in a, b, c: record the call and succeed.
pub fn register_ok(engine: &SagaEngine, rec: &Recorder) {
    for n in ["a", "b", "c"] {
        let r = rec.clone();
        engine.register_operation_handler(format!("do_{n}"), move |step| {
            r.record(format!("do_{n}"));
            async move {
                Ok(json!({ "done": step.parameters["n"], "key": step.step_key(), "attempt": step.attempt }))
            }
        });
        let r = rec.clone();
        engine.register_compensation_handler(format!("undo_{n}"), move |step| {
            r.record(format!("undo_{n}"));
            async move { Ok(json!({ "undone": step.parameters["n"], "key": step.step_key() })) }
        });
    }
}

fn fail_terminal(engine: &SagaEngine, rec: &Recorder, op: &'static str) {
    let r = rec.clone();
    engine.register_operation_handler(op, move |_| {
        r.record(op);
        async { Err(StepError::terminal("declined")) }
    });
}

#[tokio::test]
async fn success_runs_steps_in_order_with_steps_plus_two_writes() {
    let s = Setup::new();
    let engine = s.engine();
    let rec = Recorder::default();
    register_ok(&engine, &rec);
    let saga = engine
        .create("t1", "onboarding", steps3(), None)
        .await
        .unwrap();
    assert_eq!(saga.status, SagaStatus::Pending);
    let before = s.writes();
    let outcome = engine.execute(&saga.saga_id).await.unwrap();
    assert!(outcome.succeeded());
    assert_eq!(
        s.writes() - before,
        3 + 2,
        "lease + one write per step + end"
    );
    assert_eq!(rec.log(), ["do_a", "do_b", "do_c"]);
    let stored = engine.get(&saga.saga_id).await.unwrap().unwrap();
    assert_eq!(stored, outcome.saga);
    assert_eq!(stored.status, SagaStatus::Completed);
    assert!(stored.lease.is_none(), "lease released at the end");
    for (i, step) in stored.steps.iter().enumerate() {
        assert_eq!(step.status, SagaStepStatus::Completed);
        assert_eq!(step.attempts, 1);
        let result = step.result.as_ref().unwrap();
        assert_eq!(result["key"], json!(format!("{}:{i}", saga.saga_id)));
        assert_eq!(result["attempt"], json!(1));
    }
    let events: Vec<_> = engine
        .history(&saga.saga_id)
        .await
        .unwrap()
        .into_iter()
        .map(|h| (h.kind.name().to_owned(), h.kind.step_index()))
        .collect();
    let expect = [
        ("created", None),
        ("resumed", None),
        ("step_started", Some(0)),
        ("step_succeeded", Some(0)),
        ("step_started", Some(1)),
        ("step_succeeded", Some(1)),
        ("step_started", Some(2)),
        ("step_succeeded", Some(2)),
        ("finished", None),
    ];
    let expect: Vec<_> = expect.iter().map(|(e, i)| ((*e).to_owned(), *i)).collect();
    assert_eq!(events, expect);
    // Executing an ended saga runs nothing and returns it as it is.
    let again = engine.execute(&saga.saga_id).await.unwrap();
    assert_eq!(again.status, SagaStatus::Completed);
    assert_eq!(rec.log().len(), 3);
}

#[tokio::test]
async fn failure_compensates_completed_steps_in_reverse_not_the_failed_one() {
    let s = Setup::new();
    let engine = s.engine();
    let rec = Recorder::default();
    register_ok(&engine, &rec);
    fail_terminal(&engine, &rec, "do_c");
    let saga = engine
        .create("t1", "onboarding", steps3(), None)
        .await
        .unwrap();
    let outcome = engine.execute(&saga.saga_id).await.unwrap();
    assert!(!outcome.succeeded());
    assert_eq!(outcome.status, SagaStatus::Compensated);
    assert_eq!(rec.log(), ["do_a", "do_b", "do_c", "undo_b", "undo_a"]);
    let steps = &outcome.saga.steps;
    assert_eq!(steps[2].status, SagaStepStatus::Failed);
    assert_eq!(steps[2].attempts, 1, "terminal errors are not retried");
    assert_eq!(steps[2].error.as_deref(), Some("declined"));
    for i in [0, 1] {
        assert_eq!(steps[i].status, SagaStepStatus::Compensated);
        assert_eq!(steps[i].compensation_attempts, 1);
        assert!(steps[i].compensated_at.is_some());
    }
    assert!(outcome.saga.error.as_deref().unwrap().contains("declined"));
}

#[tokio::test]
async fn compensation_gets_its_key_parameters_and_the_step_output() {
    let s = Setup::new();
    let engine = s.engine();
    let rec = Recorder::default();
    register_ok(&engine, &rec);
    fail_terminal(&engine, &rec, "do_b");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    engine.register_compensation_handler("undo_a", move |step| {
        tx.send((
            step.step_key(),
            step.parameters.clone(),
            step.output.clone(),
            step.compensation,
        ))
        .unwrap();
        async { Ok(json!(null)) }
    });
    let saga = engine.create("t1", "w", steps3(), None).await.unwrap();
    engine.execute(&saga.saga_id).await.unwrap();
    let (key, params, output, comp) = rx.recv().await.unwrap();
    assert_eq!(key, format!("{}:0:comp", saga.saga_id));
    assert_eq!(params, json!({ "n": "a" }));
    assert_eq!(output.unwrap()["done"], json!("a"));
    assert!(comp);
}

#[tokio::test]
async fn flaky_step_succeeds_after_retries() {
    let s = Setup::new();
    let engine = s.engine();
    let rec = Recorder::default();
    register_ok(&engine, &rec);
    let r = rec.clone();
    engine.register_operation_handler("do_b", move |step| {
        r.record("do_b");
        async move {
            if step.attempt < 3 {
                Err(StepError::retryable(format!("flaky {}", step.attempt)))
            } else {
                Ok(json!({ "attempt": step.attempt }))
            }
        }
    });
    let saga = engine.create("t1", "w", steps3(), None).await.unwrap();
    let before = s.writes();
    let outcome = engine.execute(&saga.saga_id).await.unwrap();
    assert_eq!(outcome.status, SagaStatus::Completed);
    assert_eq!(rec.count("do_b"), 3);
    assert_eq!(outcome.saga.steps[1].attempts, 3);
    assert_eq!(outcome.saga.steps[1].result, Some(json!({ "attempt": 3 })));
    assert_eq!(s.writes() - before, 5 + 2, "one extra write per retry");
    let history = engine.history(&saga.saga_id).await.unwrap();
    let retries: Vec<_> = history
        .iter()
        .filter_map(|h| match h.kind {
            SagaEventKind::StepRetrying { attempt, .. } => Some(attempt),
            _ => None,
        })
        .collect();
    assert_eq!(retries, [1, 2]);
}

#[tokio::test]
async fn retries_exhausted_then_compensate() {
    let s = Setup::new();
    let engine = s.engine();
    let rec = Recorder::default();
    register_ok(&engine, &rec);
    let r = rec.clone();
    engine.register_operation_handler("do_b", move |_| {
        r.record("do_b");
        async { Err(StepError::retryable("down")) }
    });
    let saga = engine.create("t1", "w", steps3(), None).await.unwrap();
    let outcome = engine.execute(&saga.saga_id).await.unwrap();
    assert_eq!(outcome.status, SagaStatus::Compensated);
    assert_eq!(rec.count("do_b"), 3, "max_retries 2 = 3 attempts");
    assert_eq!(rec.log()[4..], ["undo_a"]);
    assert_eq!(rec.count("do_c"), 0);
    assert_eq!(outcome.saga.steps[2].status, SagaStepStatus::Pending);
}

#[tokio::test]
async fn failing_compensation_is_recorded_others_still_run_and_retry_repairs_it() {
    let s = Setup::new();
    let engine = s.engine_with(Setup::config().with_compensation_max_retries(2));
    let rec = Recorder::default();
    register_ok(&engine, &rec);
    fail_terminal(&engine, &rec, "do_c");
    let r = rec.clone();
    engine.register_compensation_handler("undo_b", move |_| {
        r.record("undo_b");
        async { Err(StepError::retryable("refund service down")) }
    });
    let saga = engine.create("t1", "w", steps3(), None).await.unwrap();
    let outcome = engine.execute(&saga.saga_id).await.unwrap();
    assert_eq!(outcome.status, SagaStatus::CompensationFailed);
    assert_eq!(rec.count("undo_b"), 3);
    assert_eq!(
        rec.count("undo_a"),
        1,
        "a failed compensation does not stop the others"
    );
    let steps = &outcome.saga.steps;
    assert_eq!(steps[1].status, SagaStepStatus::CompensationFailed);
    assert_eq!(
        steps[1].compensation_error.as_deref(),
        Some("refund service down")
    );
    assert_eq!(steps[0].status, SagaStepStatus::Compensated);
    assert!(
        engine
            .store()
            .list_recoverable_sagas(10)
            .await
            .unwrap()
            .is_empty()
    );

    // The service is back: retry_compensation runs only what is left.
    register_ok(&engine, &rec);
    let outcome = engine.retry_compensation(&saga.saga_id).await.unwrap();
    assert_eq!(outcome.status, SagaStatus::Compensated);
    assert_eq!(rec.count("undo_b"), 4);
    assert_eq!(rec.count("undo_a"), 1);
    assert_eq!(
        outcome.saga.steps[1].compensation_attempts, 1,
        "a fresh round of retries"
    );
    assert_eq!(
        rec.count("do_a") + rec.count("do_b"),
        2,
        "never forward again"
    );

    let err = engine.retry_compensation(&saga.saga_id).await.unwrap_err();
    assert!(
        matches!(
            err,
            SagaError::InvalidState {
                status: SagaStatus::Compensated,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn steps_without_compensation_are_skipped_when_compensating() {
    let s = Setup::new();
    let engine = s.engine();
    let rec = Recorder::default();
    register_ok(&engine, &rec);
    fail_terminal(&engine, &rec, "do_c");
    let mut steps = steps3();
    steps[1].compensation_operation = None;
    let saga = engine.create("t1", "w", steps, None).await.unwrap();
    let outcome = engine.execute(&saga.saga_id).await.unwrap();
    assert_eq!(outcome.status, SagaStatus::Compensated);
    assert_eq!(rec.log(), ["do_a", "do_b", "do_c", "undo_a"]);
    assert_eq!(outcome.saga.steps[1].status, SagaStepStatus::Compensated);
}

#[tokio::test]
async fn same_idempotency_key_returns_the_same_saga_per_tenant() {
    let s = Setup::new();
    let engine = s.engine();
    register_ok(&engine, &Recorder::default());
    let a = engine
        .create("t1", "w", steps3(), Some("order-1"))
        .await
        .unwrap();
    let b = engine
        .create("t1", "w", steps3(), Some("order-1"))
        .await
        .unwrap();
    assert_eq!(a.saga_id, b.saga_id);
    let created = engine
        .create_saga(NewSaga::new("t1", "w", steps3()).idempotency_key("order-1"))
        .await
        .unwrap();
    assert!(created.is_existing());
    let other = engine
        .create("t2", "w", steps3(), Some("order-1"))
        .await
        .unwrap();
    assert_ne!(other.saga_id, a.saga_id);
    let fresh = engine.create("t1", "w", steps3(), None).await.unwrap();
    assert_ne!(fresh.saga_id, a.saga_id);
}

#[tokio::test]
async fn bad_input_is_rejected_at_create() {
    let s = Setup::new();
    let engine = s.engine();
    register_ok(&engine, &Recorder::default());
    let mut steps = steps3();
    steps[1].operation = "nope".into();
    let err = engine.create("t1", "w", steps, None).await.unwrap_err();
    assert!(
        matches!(
            err,
            SagaError::UnknownOperation {
                kind: "operation",
                ..
            }
        ),
        "{err}"
    );
    let mut steps = steps3();
    steps[0].compensation_operation = Some("nope".into());
    let err = engine.create("t1", "w", steps, None).await.unwrap_err();
    assert!(
        matches!(
            err,
            SagaError::UnknownOperation {
                kind: "compensation",
                ..
            }
        ),
        "{err}"
    );
    assert!(matches!(
        engine.create("t1", "w", vec![], None).await,
        Err(SagaError::Invalid(_))
    ));
    assert!(matches!(
        engine.create("", "w", steps3(), None).await,
        Err(SagaError::Invalid(_))
    ));
    assert!(matches!(
        engine.create("t1", "w", steps3(), Some("bad key")).await,
        Err(SagaError::Invalid(_))
    ));
    assert_eq!(s.writes(), 0, "nothing stored for rejected input");
    assert!(matches!(
        engine.execute("missing").await,
        Err(SagaError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_live_lease_makes_other_executors_busy() {
    let s = Setup::new();
    let engine = s.engine();
    let rec = Recorder::default();
    register_ok(&engine, &rec);
    let gate = Arc::new(Notify::new());
    let g = gate.clone();
    engine.register_operation_handler("do_b", move |_| {
        let g = g.clone();
        async move {
            g.notified().await;
            Ok(json!(null))
        }
    });
    let saga = engine.create("t1", "w", steps3(), None).await.unwrap();
    let e1 = engine.clone();
    let id = saga.saga_id.clone();
    let running = tokio::spawn(async move { e1.execute(&id).await });
    wait_for_step(&engine, &saga.saga_id, 1).await;
    let other = s.engine();
    register_ok(&other, &rec);
    let err = other.execute(&saga.saga_id).await.unwrap_err();
    assert!(matches!(err, SagaError::Busy(_)), "{err}");
    assert!(err.is_transient());
    gate.notify_one();
    assert_eq!(
        running.await.unwrap().unwrap().status,
        SagaStatus::Completed
    );
}

/// Waits until step `i` of the saga is stored as `Running`.
pub async fn wait_for_step(engine: &SagaEngine, saga_id: &str, i: usize) {
    for _ in 0..2000 {
        let saga = engine.get(saga_id).await.unwrap();
        if saga.is_some_and(|s| s.steps[i].status == SagaStepStatus::Running) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("step {i} never started");
}

#[tokio::test]
async fn a_stale_executor_stops_with_lease_lost_and_writes_nothing() {
    let s = Setup::new();
    let rec = Recorder::default();
    let slow = s.engine();
    register_ok(&slow, &rec);
    let gate = Arc::new(Notify::new());
    let g = gate.clone();
    let r = rec.clone();
    slow.register_operation_handler("do_b", move |_| {
        r.record("slow do_b");
        let g = g.clone();
        async move {
            g.notified().await;
            Ok(json!("slow"))
        }
    });
    let saga = slow.create("t1", "w", steps3(), None).await.unwrap();
    let e = slow.clone();
    let id = saga.saga_id.clone();
    let stale = tokio::spawn(async move { e.execute(&id).await });
    wait_for_step(&slow, &saga.saga_id, 1).await;

    // The slow executor's lease runs out; another takes over and finishes the saga.
    s.expire_lease();
    let fresh = s.engine();
    register_ok(&fresh, &rec);
    let outcome = fresh.recover(&saga.saga_id).await.unwrap();
    assert_eq!(outcome.status, SagaStatus::Completed);
    assert_eq!(
        outcome.saga.steps[1].attempts, 2,
        "the step left started ran again"
    );

    gate.notify_one();
    let err = stale.await.unwrap().unwrap_err();
    assert!(matches!(err, SagaError::LeaseLost(_)), "{err}");
    let stored = fresh.get(&saga.saga_id).await.unwrap().unwrap();
    assert_eq!(stored, outcome.saga, "the stale executor wrote nothing");
    assert_eq!(rec.count("do_c"), 1);
    let fences: Vec<u64> = fresh
        .history(&saga.saga_id)
        .await
        .unwrap()
        .iter()
        .map(|h| h.fence)
        .collect();
    assert!(fences.windows(2).all(|w| w[0] <= w[1]), "{fences:?}");
}

#[tokio::test]
async fn saga_timeout_fails_into_compensation() {
    let s = Setup::new();
    let engine = s.engine();
    let rec = Recorder::default();
    register_ok(&engine, &rec);
    let clock = s.clock.clone();
    let r = rec.clone();
    engine.register_operation_handler("do_b", move |_| {
        r.record("do_b");
        // Time passes beyond the saga's timeout while the attempt fails.
        clock.advance(Duration::from_secs(120));
        async { Err(StepError::retryable("slow service")) }
    });
    let saga = engine
        .create_saga(NewSaga::new("t1", "w", steps3()).timeout(Duration::from_secs(60)))
        .await
        .unwrap()
        .into_saga();
    assert_eq!(saga.timeout_seconds, Some(60));
    let outcome = engine.execute(&saga.saga_id).await.unwrap();
    assert_eq!(outcome.status, SagaStatus::Compensated);
    assert_eq!(rec.count("do_b"), 1, "no retry after the deadline");
    assert_eq!(outcome.saga.steps[1].status, SagaStepStatus::Failed);
    assert_eq!(outcome.saga.error.as_deref(), Some("saga timed out"));
    assert_eq!(rec.log()[2..], ["undo_a"]);
}

#[tokio::test]
async fn a_handler_over_the_step_timeout_is_retried() {
    let s = Setup::new();
    let engine = s.engine_with(Setup::config().with_step_timeout(Duration::from_millis(20)));
    let rec = Recorder::default();
    register_ok(&engine, &rec);
    engine.register_operation_handler("do_a", |step| async move {
        if step.attempt == 1 {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        Ok(json!(step.attempt))
    });
    let saga = engine.create("t1", "w", steps3(), None).await.unwrap();
    let outcome = engine.execute(&saga.saga_id).await.unwrap();
    assert_eq!(outcome.status, SagaStatus::Completed);
    assert_eq!(outcome.saga.steps[0].result, Some(json!(2)));
}

#[tokio::test]
async fn start_creates_and_runs_in_steps_plus_one_writes() {
    let s = Setup::new();
    let engine = s.engine();
    let rec = Recorder::default();
    register_ok(&engine, &rec);
    let outcome = engine
        .start(NewSaga::new("t1", "w", steps3()))
        .await
        .unwrap();
    assert_eq!(outcome.status, SagaStatus::Completed);
    assert_eq!(
        s.writes(),
        3 + 1,
        "create with lease and first intent, then one per step"
    );
    assert_eq!(rec.log(), ["do_a", "do_b", "do_c"]);
    let stored = engine.get(&outcome.saga.saga_id).await.unwrap().unwrap();
    assert_eq!(stored, outcome.saga);
    assert!(stored.lease.is_none());
    let history = engine.history(&stored.saga_id).await.unwrap();
    let events: Vec<_> = history
        .iter()
        .map(|h| (h.kind.name(), h.kind.step_index()))
        .collect();
    assert_eq!(
        events,
        [
            ("created", None),
            ("resumed", None),
            ("step_started", Some(0)),
            ("step_succeeded", Some(0)),
            ("step_started", Some(1)),
            ("step_succeeded", Some(1)),
            ("step_started", Some(2)),
            ("step_succeeded", Some(2)),
            ("finished", None),
        ]
    );
    assert!(history.iter().all(|h| h.fence == 1));
}

#[tokio::test]
async fn start_with_a_used_key_runs_or_returns_the_existing_saga() {
    let s = Setup::new();
    let engine = s.engine();
    let rec = Recorder::default();
    register_ok(&engine, &rec);
    let created = engine
        .create("t1", "w", steps3(), Some("k1"))
        .await
        .unwrap();
    let outcome = engine
        .start(NewSaga::new("t1", "w", steps3()).idempotency_key("k1"))
        .await
        .unwrap();
    assert_eq!(outcome.saga.saga_id, created.saga_id);
    assert_eq!(outcome.status, SagaStatus::Completed);
    let again = engine
        .start(NewSaga::new("t1", "w", steps3()).idempotency_key("k1"))
        .await
        .unwrap();
    assert_eq!(again.saga.saga_id, created.saga_id);
    assert_eq!(rec.log(), ["do_a", "do_b", "do_c"], "ran once");
}

#[tokio::test]
async fn a_started_saga_is_fenced_like_any_other() {
    let s = Setup::new();
    let rec = Recorder::default();
    let slow = s.engine();
    register_ok(&slow, &rec);
    let gate = Arc::new(Notify::new());
    let g = gate.clone();
    slow.register_operation_handler("do_a", move |_| {
        let g = g.clone();
        async move {
            g.notified().await;
            Ok(json!("late"))
        }
    });
    let (id, events) = slow
        .start_stream(NewSaga::new("t1", "w", steps3()))
        .unwrap();
    wait_for_step(&slow, &id, 0).await;
    let stored = slow.get(&id).await.unwrap().unwrap();
    assert_eq!(stored.lease.as_ref().map(|l| l.fence), Some(1));
    assert_eq!(
        stored.steps[0].attempts, 1,
        "the first intent is stored with the saga"
    );
    s.expire_lease();
    let fresh = s.engine();
    register_ok(&fresh, &rec);
    let outcome = fresh.recover(&id).await.unwrap();
    assert_eq!(outcome.status, SagaStatus::Completed);
    assert_eq!(outcome.saga.steps[0].attempts, 2);
    gate.notify_one();
    let events: Vec<_> = futures::StreamExt::collect::<Vec<_>>(events).await;
    assert!(
        matches!(events.last().map(|e| &e.kind), Some(SagaEventKind::Aborted { error }) if error.contains("lease lost")),
        "{events:?}"
    );
    assert_eq!(fresh.get(&id).await.unwrap().unwrap(), outcome.saga);
    let fences: Vec<u64> = fresh
        .history(&id)
        .await
        .unwrap()
        .iter()
        .map(|h| h.fence)
        .collect();
    // The creating executor (fence 1) journaled its creation, lease and first intent;
    // everything after is the new holder's.
    assert_eq!(fences[..3], [1, 1, 1], "{fences:?}");
    assert!(fences[3..].iter().all(|f| *f == 2), "{fences:?}");
}

#[tokio::test]
async fn two_executions_in_one_engine_exclude_each_other() {
    let s = Setup::new();
    let engine = s.engine();
    let rec = Recorder::default();
    register_ok(&engine, &rec);
    let gate = Arc::new(Notify::new());
    let g = gate.clone();
    engine.register_operation_handler("do_a", move |_| {
        let g = g.clone();
        async move {
            g.notified().await;
            Ok(json!(null))
        }
    });
    let saga = engine.create("t1", "w", steps3(), None).await.unwrap();
    let e = engine.clone();
    let id = saga.saga_id.clone();
    let first = tokio::spawn(async move { e.execute(&id).await });
    wait_for_step(&engine, &saga.saga_id, 0).await;
    let err = engine.execute(&saga.saga_id).await.unwrap_err();
    assert!(matches!(err, SagaError::Busy(_)), "{err}");
    gate.notify_one();
    assert_eq!(first.await.unwrap().unwrap().status, SagaStatus::Completed);
}

#[tokio::test]
async fn the_lease_is_renewed_while_a_long_handler_runs() {
    // Real time here: the renewal timer and the store's lease expiry both run on it.
    let store: Arc<dyn bgops_storage::SagaStore> = Arc::new(bgops_memory::MemoryStorage::new());
    let config = Setup::config().with_lease(Duration::from_millis(600));
    let engine = SagaEngine::builder(store.clone())
        .config(config.clone())
        .build();
    let rec = Recorder::default();
    register_ok(&engine, &rec);
    engine.register_operation_handler("do_b", |_| async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        Ok(json!("slow"))
    });
    let saga = engine.create("t1", "w", steps3(), None).await.unwrap();
    let e = engine.clone();
    let id = saga.saga_id.clone();
    let running = tokio::spawn(async move { e.execute(&id).await });
    // Well past the first lease's end, the saga is still held: renewals kept it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let other = SagaEngine::builder(store).config(config).build();
    register_ok(&other, &rec);
    assert!(matches!(
        other.execute(&saga.saga_id).await,
        Err(SagaError::Busy(_))
    ));
    assert!(
        other
            .store()
            .list_recoverable_sagas(10)
            .await
            .unwrap()
            .is_empty()
    );
    let outcome = running.await.unwrap().unwrap();
    assert_eq!(outcome.status, SagaStatus::Completed);
    assert_eq!(outcome.saga.steps[1].attempts, 1);
}

#[tokio::test]
async fn the_saga_deadline_stops_a_running_handler_and_compensates_it_as_maybe_done() {
    // Real time: the deadline timer runs on it (timeouts are whole seconds).
    let store: Arc<dyn bgops_storage::SagaStore> = Arc::new(bgops_memory::MemoryStorage::new());
    let engine = SagaEngine::builder(store).config(Setup::config()).build();
    let rec = Recorder::default();
    register_ok(&engine, &rec);
    engine.register_operation_handler("do_b", |_| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(json!("too late"))
    });
    let new = NewSaga::new("t1", "w", steps3()).timeout(Duration::from_secs(1));
    let outcome = engine.start(new).await.unwrap();
    assert_eq!(outcome.status, SagaStatus::Compensated);
    assert_eq!(outcome.saga.error.as_deref(), Some("saga timed out"));
    // Its outcome is unknown (it was stopped midway), so it is compensated too.
    assert_eq!(rec.log(), ["do_a", "undo_b", "undo_a"]);
    assert_eq!(outcome.saga.steps[1].status, SagaStepStatus::Compensated);
    assert_eq!(outcome.saga.steps[2].status, SagaStepStatus::Pending);
}
