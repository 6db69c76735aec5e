//! Parallel groups: members run concurrently, are journaled like steps, and exactly the
//! succeeded ones are compensated; a half-finished group resumes without re-running a
//! succeeded member. On memory and on Redis.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bgops_core::{SagaStatus, SagaStep, SagaStepStatus};
use bgops_saga::{
    NewSaga, Parallel, SagaEngine, SagaError, SagaEventKind, Step, StepContext, StepError,
    TypedSaga,
};
use bgops_storage::SagaStore;
use serde_json::{Value, json};
use tokio::sync::Barrier;

use crate::dynamic::{register_ok, steps3, steps3_grouped};
use crate::support::{Recorder, Setup};

/// `before`, then `p1`, `p2`, `p3` in group `g`, then `after`; all compensable.
fn grouped_steps() -> Vec<SagaStep> {
    let step = |name: &str| {
        SagaStep::new(name, format!("do_{name}"), json!({}))
            .with_compensation(format!("undo_{name}"), json!({}))
            .with_max_retries(1)
    };
    vec![
        step("before"),
        step("p1").in_group("g"),
        step("p2").in_group("g"),
        step("p3").in_group("g"),
        step("after"),
    ]
}

/// Members of the group meet at a barrier of three: they finish only if they run at once.
fn register(engine: &SagaEngine, rec: &Recorder, barrier: Option<&Arc<Barrier>>) {
    for name in ["before", "p1", "p2", "p3", "after"] {
        let r = rec.clone();
        let b = barrier.cloned().filter(|_| name.starts_with('p'));
        engine.register_operation_handler(format!("do_{name}"), move |step| {
            r.record(format!("do_{name}"));
            let b = b.clone();
            async move {
                if let Some(b) = b {
                    b.wait().await;
                }
                Ok(json!({ "key": step.step_key() }))
            }
        });
        let r = rec.clone();
        engine.register_compensation_handler(format!("undo_{name}"), move |_| {
            r.record(format!("undo_{name}"));
            async { Ok(json!(null)) }
        });
    }
}

async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
    // A safety net only (a sequential group would deadlock at the barrier).
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("the group's members did not run concurrently")
}

#[tokio::test]
async fn members_run_concurrently_and_the_saga_goes_on_after_all_succeeded() {
    let s = Setup::new();
    let engine = s.engine();
    let rec = Recorder::default();
    register(&engine, &rec, Some(&Arc::new(Barrier::new(3))));
    let saga = engine
        .create("t1", "w", grouped_steps(), None)
        .await
        .unwrap();
    let writes = s.writes();
    let outcome = within(engine.execute(&saga.saga_id)).await.unwrap();
    assert_eq!(outcome.status, SagaStatus::Completed);
    let log = rec.log();
    assert_eq!(log.first().map(String::as_str), Some("do_before"));
    assert_eq!(log.last().map(String::as_str), Some("do_after"));
    for (i, step) in outcome.saga.steps.iter().enumerate() {
        assert_eq!(step.status, SagaStepStatus::Completed);
        assert_eq!(step.attempts, 1);
        assert_eq!(
            step.result.as_ref().unwrap()["key"],
            format!("{}:{i}", saga.saga_id)
        );
    }
    // Lease, 5 intents in 3 writes plus 2 member completions journaled as they came,
    // end: as many writes as for 5 sequential steps.
    assert_eq!(s.writes() - writes, 5 + 2);
    // Each member's intent is journaled before its effect, and each success once.
    let history = engine.history(&saga.saga_id).await.unwrap();
    for k in 1..=3 {
        let started = history
            .iter()
            .position(|e| matches!(e.kind, SagaEventKind::StepStarted { step_index, .. } if step_index == k))
            .unwrap();
        let succeeded = history
            .iter()
            .position(|e| matches!(e.kind, SagaEventKind::StepSucceeded { step_index, .. } if step_index == k))
            .unwrap();
        assert!(started < succeeded);
    }
}

#[tokio::test]
async fn start_stores_every_member_intent_with_the_creating_write() {
    let s = Setup::new();
    let engine = s.engine();
    let rec = Recorder::default();
    register(&engine, &rec, Some(&Arc::new(Barrier::new(3))));
    let steps: Vec<SagaStep> = grouped_steps().into_iter().skip(1).collect();
    let outcome = within(engine.start(NewSaga::new("t1", "w", steps)))
        .await
        .unwrap();
    assert_eq!(outcome.status, SagaStatus::Completed);
    let history = engine.history(&outcome.saga.saga_id).await.unwrap();
    let first_write: Vec<&str> = history.iter().take(5).map(|e| e.kind.name()).collect();
    assert_eq!(
        first_write,
        [
            "created",
            "resumed",
            "step_started",
            "step_started",
            "step_started"
        ]
    );
}

#[tokio::test]
async fn a_failing_member_compensates_exactly_the_succeeded_members_and_earlier_steps() {
    let s = Setup::new();
    let engine = s.engine();
    let rec = Recorder::default();
    register(&engine, &rec, None);
    let r = rec.clone();
    engine.register_operation_handler("do_p2", move |_| {
        r.record("do_p2");
        async { Err(StepError::terminal("declined")) }
    });
    let saga = engine
        .create("t1", "w", grouped_steps(), None)
        .await
        .unwrap();
    let outcome = engine.execute(&saga.saga_id).await.unwrap();
    assert_eq!(outcome.status, SagaStatus::Compensated);
    let st: Vec<SagaStepStatus> = outcome.saga.steps.iter().map(|s| s.status).collect();
    assert_eq!(
        st,
        [
            SagaStepStatus::Compensated,
            SagaStepStatus::Compensated,
            SagaStepStatus::Failed,
            SagaStepStatus::Compensated,
            SagaStepStatus::Pending,
        ]
    );
    assert_eq!(rec.count("do_after"), 0);
    assert_eq!(
        rec.count("undo_p2"),
        0,
        "the failed member is not compensated"
    );
    // Reverse step order, one at a time.
    let undos: Vec<String> = rec
        .log()
        .into_iter()
        .filter(|l| l.starts_with("undo_"))
        .collect();
    assert_eq!(undos, ["undo_p3", "undo_p1", "undo_before"]);
}

#[tokio::test]
async fn a_member_retrying_when_another_fails_for_good_is_not_compensated() {
    let s = Setup::new();
    let engine = s.engine();
    let rec = Recorder::default();
    register(&engine, &rec, None);
    let r = rec.clone();
    engine.register_operation_handler("do_p1", move |_| {
        r.record("do_p1");
        async { Err(StepError::retryable("flaky")) }
    });
    let r = rec.clone();
    engine.register_operation_handler("do_p3", move |_| {
        r.record("do_p3");
        async { Err(StepError::terminal("declined")) }
    });
    let saga = engine
        .create("t1", "w", grouped_steps(), None)
        .await
        .unwrap();
    let outcome = engine.execute(&saga.saga_id).await.unwrap();
    assert_eq!(outcome.status, SagaStatus::Compensated);
    let steps = &outcome.saga.steps;
    assert_eq!(steps[1].status, SagaStepStatus::Failed);
    assert_eq!(steps[2].status, SagaStepStatus::Compensated);
    assert_eq!(steps[3].status, SagaStepStatus::Failed);
    assert_eq!(rec.count("do_p1"), 1, "no retry once another member failed");
    assert_eq!(rec.count("undo_p1"), 0);
    assert_eq!(rec.count("undo_p3"), 0);
    assert_eq!(rec.count("undo_p2"), 1);
}

#[tokio::test]
async fn a_retryable_member_is_retried_without_re_running_the_others() {
    let s = Setup::new();
    let engine = s.engine();
    let rec = Recorder::default();
    register(&engine, &rec, None);
    let r = rec.clone();
    engine.register_operation_handler("do_p2", move |step| {
        r.record("do_p2");
        async move {
            if step.attempt == 1 {
                Err(StepError::retryable("flaky"))
            } else {
                Ok(json!(null))
            }
        }
    });
    let saga = engine
        .create("t1", "w", grouped_steps(), None)
        .await
        .unwrap();
    let outcome = engine.execute(&saga.saga_id).await.unwrap();
    assert_eq!(outcome.status, SagaStatus::Completed);
    assert_eq!(
        (rec.count("do_p1"), rec.count("do_p2"), rec.count("do_p3")),
        (1, 2, 1)
    );
    assert_eq!(outcome.saga.steps[2].attempts, 2);
}

#[tokio::test]
async fn a_later_failing_step_compensates_every_member() {
    let s = Setup::new();
    let engine = s.engine();
    let rec = Recorder::default();
    register(&engine, &rec, None);
    let r = rec.clone();
    engine.register_operation_handler("do_after", move |_| {
        r.record("do_after");
        async { Err(StepError::terminal("declined")) }
    });
    let saga = engine
        .create("t1", "w", grouped_steps(), None)
        .await
        .unwrap();
    let outcome = engine.execute(&saga.saga_id).await.unwrap();
    assert_eq!(outcome.status, SagaStatus::Compensated);
    for name in ["before", "p1", "p2", "p3"] {
        assert_eq!(rec.count(&format!("undo_{name}")), 1, "{name}");
    }
}

#[tokio::test]
async fn a_half_finished_group_resumes_without_re_running_a_succeeded_member() {
    let s = Setup::new();
    let rec = Recorder::default();
    let first = s.engine();
    register(&first, &rec, None);
    // p2 hangs on its first call (the crash point); p1 and p3 succeed meanwhile.
    let r = rec.clone();
    first.register_operation_handler("do_p2", move |_| {
        r.record("do_p2");
        let hang = r.count("do_p2") == 1;
        async move {
            if hang {
                std::future::pending::<()>().await;
            }
            Ok(json!(null))
        }
    });
    let saga = first
        .create("t1", "w", grouped_steps(), None)
        .await
        .unwrap();
    let e = first.clone();
    let id = saga.saga_id.clone();
    let task = tokio::spawn(async move { e.execute(&id).await });
    // Wait until p1 and p3 are journaled as completed.
    for _ in 0..2000 {
        let stored = first.get(&saga.saga_id).await.unwrap().unwrap();
        let done = [1, 3]
            .iter()
            .all(|&k| stored.steps[k].status == SagaStepStatus::Completed);
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    task.abort();
    let _ = task.await;
    let before = first.get(&saga.saga_id).await.unwrap().unwrap();
    assert_eq!(before.steps[2].status, SagaStepStatus::Running);
    assert_eq!(before.steps[1].status, SagaStepStatus::Completed);
    assert_eq!(before.steps[3].status, SagaStepStatus::Completed);

    s.expire_lease();
    let second = s.engine();
    register(&second, &rec, None);
    let r = rec.clone();
    second.register_operation_handler("do_p2", move |_| {
        r.record("do_p2");
        async { Ok(json!(null)) }
    });
    let report = second.recover_abandoned().await.unwrap();
    assert_eq!(report.finished, 1);
    let after = second.get(&saga.saga_id).await.unwrap().unwrap();
    assert_eq!(after.status, SagaStatus::Completed);
    assert_eq!((rec.count("do_p1"), rec.count("do_p3")), (1, 1));
    assert_eq!(rec.count("do_p2"), 2, "the member left started runs again");
    assert_eq!(rec.count("do_after"), 1);
}

#[tokio::test]
async fn a_group_split_by_other_steps_is_refused() {
    let s = Setup::new();
    let engine = s.engine();
    let rec = Recorder::default();
    register_ok(&engine, &rec);
    let mut steps = steps3();
    steps[0] = steps[0].clone().in_group("x");
    steps[2] = steps[2].clone().in_group("x");
    let err = engine.create("t1", "w", steps, None).await.unwrap_err();
    assert!(matches!(err, SagaError::Definition { .. }), "{err}");
}

#[tokio::test]
async fn a_saga_stored_without_groups_still_reads_and_runs() {
    let s = Setup::new();
    let engine = s.engine();
    let rec = Recorder::default();
    register_ok(&engine, &rec);
    let saga = engine.create("t1", "w", steps3(), None).await.unwrap();
    let json = serde_json::to_value(&saga).unwrap();
    assert!(json["steps"][0].get("group").is_none(), "absent, not null");
    let back: bgops_core::SagaWorkflow = serde_json::from_value(json).unwrap();
    assert_eq!(back.steps[0].group, None);
    assert!(engine.execute(&saga.saga_id).await.unwrap().succeeded());
}

#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
struct Signup {
    email_sent: bool,
    sms_sent: bool,
}

struct Email;
#[async_trait]
impl Step<Signup> for Email {
    fn name(&self) -> &'static str {
        "email"
    }
    async fn act(&self, c: &mut Signup, _: &StepContext) -> Result<Value, StepError> {
        c.email_sent = true;
        Ok(Value::Null)
    }
}

struct Sms;
#[async_trait]
impl Step<Signup> for Sms {
    fn name(&self) -> &'static str {
        "sms"
    }
    async fn act(&self, c: &mut Signup, _: &StepContext) -> Result<Value, StepError> {
        c.sms_sent = true;
        Ok(Value::Null)
    }
}

#[tokio::test]
async fn typed_parallel_members_all_keep_their_context_changes() {
    let s = Setup::new();
    let engine = s.engine();
    let handle = engine
        .register_saga(
            TypedSaga::<Signup>::new("signup").parallel(Parallel::new().step(Email).step(Sms)),
        )
        .unwrap();
    let outcome = handle.run("t1", &Signup::default()).await.unwrap();
    assert!(outcome.succeeded());
    assert!(outcome.context.email_sent && outcome.context.sms_sent);
    assert!(outcome.saga.steps.iter().all(|s| s.group.is_some()));
    let stored = engine.get(&outcome.saga.saga_id).await.unwrap().unwrap();
    assert!(handle.context_of(&stored).unwrap().sms_sent);
}

#[tokio::test]
async fn groups_on_redis() {
    let url = bgops_storage::testing::server::redis::url();
    let prefix = format!("bgops-test-{}", uuid::Uuid::new_v4().simple());
    let store = bgops_redis::RedisStorage::builder(&url)
        .prefix(&prefix)
        .build()
        .await
        .unwrap();
    let engine = SagaEngine::builder(Arc::new(store) as Arc<dyn SagaStore>)
        .config(Setup::config())
        .build();
    let rec = Recorder::default();
    register(&engine, &rec, Some(&Arc::new(Barrier::new(3))));
    let ok = within(engine.start(NewSaga::new("t1", "w", grouped_steps())))
        .await
        .unwrap();
    assert_eq!(ok.status, SagaStatus::Completed);
    let stored = engine.get(&ok.saga.saga_id).await.unwrap().unwrap();
    assert_eq!(stored.steps[2].group.as_deref(), Some("g"));

    register_ok(&engine, &rec);
    let r = rec.clone();
    engine.register_operation_handler("do_c", move |_| {
        r.record("do_c");
        async { Err(StepError::terminal("declined")) }
    });
    let failed = engine
        .start(NewSaga::new("t1", "w", steps3_grouped()))
        .await
        .unwrap();
    let st: Vec<SagaStepStatus> = failed.saga.steps.iter().map(|s| s.status).collect();
    bgops_storage::testing::server::redis::delete_prefix(&url, &prefix).unwrap();
    assert_eq!(failed.status, SagaStatus::Compensated);
    assert_eq!(
        st,
        [
            SagaStepStatus::Compensated,
            SagaStepStatus::Compensated,
            SagaStepStatus::Failed
        ]
    );
    assert_eq!(
        (
            rec.count("undo_a"),
            rec.count("undo_b"),
            rec.count("undo_c")
        ),
        (1, 1, 0)
    );
}
