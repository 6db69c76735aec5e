//! Recovery of sagas whose executor died (in-process: the executor future is aborted).

use std::time::Duration;

use bgops_core::{SagaStatus, SagaStepStatus};
use bgops_saga::{SagaEngine, StepError};
use serde_json::json;

use crate::dynamic::{register_ok, steps3, wait_for_step};
use crate::support::{Recorder, Setup};

/// Registers `op` so that its first call records and then hangs (the "crash" point).
fn hang_first_call(engine: &SagaEngine, rec: &Recorder, op: &'static str, comp: bool) {
    let r = rec.clone();
    let handler = move |_| {
        r.record(op);
        let first = r.count(op) == 1;
        async move {
            if first {
                std::future::pending::<()>().await;
            }
            Ok(json!(null))
        }
    };
    if comp {
        engine.register_compensation_handler(op, handler);
    } else {
        engine.register_operation_handler(op, handler);
    }
}

#[tokio::test]
async fn a_step_left_started_runs_again_and_completed_steps_do_not() {
    let s = Setup::new();
    let rec = Recorder::default();
    let first = s.engine();
    register_ok(&first, &rec);
    hang_first_call(&first, &rec, "do_b", false);
    let saga = first.create("t1", "w", steps3(), None).await.unwrap();
    let e = first.clone();
    let id = saga.saga_id.clone();
    let task = tokio::spawn(async move { e.execute(&id).await });
    wait_for_step(&first, &saga.saga_id, 1).await;
    task.abort();
    let _ = task.await;

    assert!(
        first
            .store()
            .list_recoverable_sagas(10)
            .await
            .unwrap()
            .is_empty(),
        "lease still live"
    );
    s.expire_lease();
    assert_eq!(
        first.store().list_recoverable_sagas(10).await.unwrap(),
        std::slice::from_ref(&saga.saga_id)
    );

    let second = s.engine();
    register_ok(&second, &rec);
    let report = second.recover_abandoned().await.unwrap();
    assert_eq!(
        (report.found, report.finished, report.busy, report.failed),
        (1, 1, 0, 0)
    );
    let saga = second.get(&saga.saga_id).await.unwrap().unwrap();
    assert_eq!(saga.status, SagaStatus::Completed);
    assert_eq!(rec.count("do_a"), 1, "a succeeded step never runs again");
    assert_eq!(rec.count("do_b"), 2, "the step left started runs again");
    assert_eq!(rec.count("do_c"), 1);
    assert_eq!(saga.steps[1].attempts, 2);
    assert_eq!(saga.lease, None);
    assert!(second.recover_abandoned().await.unwrap().found == 0);
}

#[tokio::test]
async fn a_compensating_saga_only_compensates_on_recovery() {
    let s = Setup::new();
    let rec = Recorder::default();
    let first = s.engine();
    register_ok(&first, &rec);
    first.register_operation_handler("do_c", |_| async { Err(StepError::terminal("no stock")) });
    hang_first_call(&first, &rec, "undo_b", true);
    let saga = first.create("t1", "w", steps3(), None).await.unwrap();
    let e = first.clone();
    let id = saga.saga_id.clone();
    let task = tokio::spawn(async move { e.execute(&id).await });
    for _ in 0..2000 {
        if rec.count("undo_b") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    task.abort();
    let _ = task.await;
    let stored = first.get(&saga.saga_id).await.unwrap().unwrap();
    assert_eq!(stored.status, SagaStatus::Compensating);
    assert_eq!(stored.steps[1].status, SagaStepStatus::Compensating);

    s.expire_lease();
    let second = s.engine();
    register_ok(&second, &rec);
    let outcome = second.recover(&saga.saga_id).await.unwrap();
    assert_eq!(outcome.status, SagaStatus::Compensated);
    assert_eq!(
        rec.count("do_a") + rec.count("do_b") + rec.count("do_c"),
        2,
        "never forward again"
    );
    assert_eq!(rec.count("undo_b"), 2);
    assert_eq!(rec.count("undo_a"), 1);
    assert_eq!(rec.count("undo_c"), 0, "the failed step is not compensated");
}

#[tokio::test]
async fn a_step_with_no_attempts_left_and_unknown_outcome_is_compensated() {
    let s = Setup::new();
    let rec = Recorder::default();
    let first = s.engine();
    register_ok(&first, &rec);
    hang_first_call(&first, &rec, "do_b", false);
    let mut steps = steps3();
    steps[1].max_retries = 0;
    let saga = first.create("t1", "w", steps, None).await.unwrap();
    let e = first.clone();
    let id = saga.saga_id.clone();
    let task = tokio::spawn(async move { e.execute(&id).await });
    wait_for_step(&first, &saga.saga_id, 1).await;
    task.abort();
    let _ = task.await;
    s.expire_lease();
    let second = s.engine();
    register_ok(&second, &rec);
    let outcome = second.recover(&saga.saga_id).await.unwrap();
    assert_eq!(outcome.status, SagaStatus::Compensated);
    assert_eq!(rec.count("do_b"), 1, "no attempt left");
    assert_eq!(
        rec.log()[2..],
        ["undo_b", "undo_a"],
        "maybe-done step compensated too"
    );
}

#[tokio::test]
async fn the_background_recoverer_resumes_abandoned_sagas() {
    let s = Setup::new();
    let rec = Recorder::default();
    let first = s.engine();
    register_ok(&first, &rec);
    hang_first_call(&first, &rec, "do_c", false);
    let mut ids = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let saga = first.create("t1", "w", steps3(), None).await.unwrap();
        let e = first.clone();
        let id = saga.saga_id.clone();
        tasks.push(tokio::spawn(async move { e.execute(&id).await }));
        ids.push(saga.saga_id);
    }
    wait_for_step(&first, &ids[0], 2).await;
    for t in tasks {
        t.abort();
        let _ = t.await;
    }
    s.expire_lease();
    let second = s.engine_with(Setup::config().with_recovery_interval(Duration::from_millis(5)));
    register_ok(&second, &rec);
    let recoverer = second.spawn_recoverer();
    for _ in 0..2000 {
        let mut done = 0;
        for id in &ids {
            if second.get(id).await.unwrap().unwrap().status == SagaStatus::Completed {
                done += 1;
            }
        }
        if done == ids.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    recoverer.shutdown().await;
    for id in &ids {
        assert_eq!(
            second.get(id).await.unwrap().unwrap().status,
            SagaStatus::Completed
        );
    }
    assert_eq!(rec.count("do_a"), 3);
}

#[tokio::test]
async fn finished_sagas_are_purged_after_the_retention_and_running_ones_never() {
    let s = Setup::new();
    let rec = Recorder::default();
    let engine = s.engine_with(Setup::config().with_retention(Some(Duration::from_secs(3600))));
    register_ok(&engine, &rec);
    let done = engine.create("t1", "w", steps3(), None).await.unwrap();
    engine.execute(&done.saga_id).await.unwrap();
    let pending = engine.create("t1", "w", steps3(), None).await.unwrap();
    assert_eq!(engine.purge_finished().await.unwrap(), 0, "not yet due");
    s.clock.advance(Duration::from_secs(3601));
    let recent = engine.create("t1", "w", steps3(), None).await.unwrap();
    engine.execute(&recent.saga_id).await.unwrap();
    assert_eq!(engine.purge_finished().await.unwrap(), 1);
    assert!(engine.get(&done.saga_id).await.unwrap().is_none());
    assert!(engine.history(&done.saga_id).await.unwrap().is_empty());
    assert!(engine.get(&pending.saga_id).await.unwrap().is_some());
    assert!(engine.get(&recent.saga_id).await.unwrap().is_some());
    let keep = s.engine_with(Setup::config().with_retention(None));
    s.clock.advance(Duration::from_secs(3601));
    assert_eq!(keep.purge_finished().await.unwrap(), 0, "retention off");
}
