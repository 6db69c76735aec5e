//! Templates (named, versioned definitions created by name) and child sagas (a step that
//! runs another saga, compensated with its parent, found again after a crash).

use std::sync::Arc;
use std::time::Duration;

use bgops_core::{SagaStatus, SagaStep, SagaStepStatus};
use bgops_saga::{NewSaga, SagaEngine, SagaError, SagaEventKind, StepError, child_saga_step};
use bgops_storage::SagaStore;
use serde_json::json;

use crate::dynamic::register_ok;
use crate::support::{Recorder, Setup};

/// `user_onboarding` v1: create the user; v2: create the user, then welcome them.
fn register_templates(engine: &SagaEngine, versions: &[u32]) {
    for &v in versions {
        engine
            .register_saga_template("user_onboarding", v, move |params| {
                let email = params["email"].as_str().ok_or("email is required")?;
                let mut steps = vec![
                    SagaStep::new("create user", "do_a", json!({ "n": email }))
                        .with_compensation("undo_a", json!({ "n": email })),
                ];
                if v >= 2 {
                    steps.push(SagaStep::new("welcome", "do_b", json!({ "n": email })));
                }
                Ok(steps)
            })
            .unwrap();
    }
}

#[tokio::test]
async fn a_template_is_created_by_name_and_a_saga_keeps_the_version_it_started_with() {
    let s = Setup::new();
    let engine = s.engine();
    let rec = Recorder::default();
    register_ok(&engine, &rec);
    register_templates(&engine, &[1]);
    let params = json!({ "email": "ada@example.com" });
    let v1 = engine
        .create_from_template("t1", "user_onboarding", &params, Some("signup-ada"))
        .await
        .unwrap();
    assert_eq!(
        (v1.workflow_type.as_str(), v1.template_version),
        ("user_onboarding", Some(1))
    );
    assert_eq!(v1.steps.len(), 1);
    assert_eq!(v1.steps[0].parameters["n"], "ada@example.com");

    // v2 arrives while v1's saga is in flight.
    register_templates(&engine, &[2]);
    assert_eq!(engine.saga_template_versions("user_onboarding"), [1, 2]);
    let outcome = engine.execute(&v1.saga_id).await.unwrap();
    assert!(outcome.succeeded());
    assert_eq!(outcome.saga.template_version, Some(1));
    assert_eq!(
        (rec.count("do_a"), rec.count("do_b")),
        (1, 0),
        "v1's steps only"
    );

    let v2 = engine
        .start(
            engine
                .new_saga_from_template("t1", "user_onboarding", &params)
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(v2.saga.template_version, Some(2));
    assert_eq!(rec.count("do_b"), 1);
    let pinned = engine
        .new_saga_from_template_version("t1", "user_onboarding", 1, &params)
        .unwrap();
    assert_eq!(pinned.steps.len(), 1);
    // The same idempotency key returns the first saga.
    let again = engine
        .create_from_template("t1", "user_onboarding", &params, Some("signup-ada"))
        .await
        .unwrap();
    assert_eq!(again.saga_id, v1.saga_id);
}

#[tokio::test]
async fn template_errors_are_reported() {
    let s = Setup::new();
    let engine = s.engine();
    register_templates(&engine, &[1]);
    let dup = engine.register_saga_template("user_onboarding", 1, |_| Ok(vec![]));
    assert!(matches!(dup, Err(SagaError::Definition { .. })));
    let missing = engine.new_saga_from_template("t1", "nope", &json!({}));
    assert!(matches!(
        missing,
        Err(SagaError::UnknownOperation {
            kind: "template",
            ..
        })
    ));
    let refused = engine.new_saga_from_template("t1", "user_onboarding", &json!({}));
    assert!(
        matches!(&refused, Err(SagaError::Definition { reason, .. }) if reason.contains("email is required"))
    );
}

/// Template `kid`: steps x then y (operations `do_x`, `do_y`), both compensable.
fn register_kid(engine: &SagaEngine, rec: &Recorder, hang_x_first: bool) {
    for n in ["x", "y"] {
        let r = rec.clone();
        engine.register_operation_handler(format!("do_{n}"), move |step| {
            r.record(format!("do_{n}"));
            let hang = hang_x_first && n == "x" && r.count("do_x") == 1;
            async move {
                if hang {
                    std::future::pending::<()>().await;
                }
                Ok(json!({ "key": step.step_key() }))
            }
        });
        let r = rec.clone();
        engine.register_compensation_handler(format!("undo_{n}"), move |_| {
            r.record(format!("undo_{n}"));
            async { Ok(json!(null)) }
        });
    }
    engine
        .register_saga_template("kid", 1, |_| {
            Ok(["x", "y"]
                .iter()
                .map(|n| {
                    SagaStep::new(*n, format!("do_{n}"), json!({}))
                        .with_compensation(format!("undo_{n}"), json!({}))
                })
                .collect())
        })
        .unwrap();
}

fn parent_steps() -> Vec<SagaStep> {
    vec![
        SagaStep::new("a", "do_a", json!({ "n": "a" })).with_compensation("undo_a", json!({})),
        child_saga_step("kid", "kid", json!({})),
        SagaStep::new("c", "do_c", json!({ "n": "c" })),
    ]
}

#[tokio::test]
async fn a_child_saga_runs_inside_its_parent_step_under_a_derived_id() {
    let s = Setup::new();
    let engine = s.engine();
    let rec = Recorder::default();
    register_ok(&engine, &rec);
    register_kid(&engine, &rec, false);
    let parent = engine
        .start(NewSaga::new("t1", "order", parent_steps()))
        .await
        .unwrap();
    assert_eq!(parent.status, SagaStatus::Completed);
    let child_id = format!("{}:1", parent.saga.saga_id);
    assert_eq!(
        parent.saga.steps[1].result.as_ref().unwrap()["child_saga_id"],
        child_id
    );
    let child = engine.get(&child_id).await.unwrap().unwrap();
    assert_eq!(child.status, SagaStatus::Completed);
    assert_eq!(
        (child.tenant_id.as_str(), child.workflow_type.as_str()),
        ("t1", "kid")
    );
    assert_eq!(
        (rec.count("do_x"), rec.count("do_y"), rec.count("do_c")),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn the_parents_compensation_compensates_a_completed_child() {
    let s = Setup::new();
    let engine = s.engine();
    let rec = Recorder::default();
    register_ok(&engine, &rec);
    register_kid(&engine, &rec, false);
    let r = rec.clone();
    engine.register_operation_handler("do_c", move |_| {
        r.record("do_c");
        async { Err(StepError::terminal("declined")) }
    });
    let parent = engine
        .start(NewSaga::new("t1", "order", parent_steps()))
        .await
        .unwrap();
    assert_eq!(parent.status, SagaStatus::Compensated);
    let child = engine
        .get(&format!("{}:1", parent.saga.saga_id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(child.status, SagaStatus::Compensated);
    assert!(
        child
            .steps
            .iter()
            .all(|s| s.status == SagaStepStatus::Compensated)
    );
    let undos: Vec<String> = rec
        .log()
        .into_iter()
        .filter(|l| l.starts_with("undo"))
        .collect();
    assert_eq!(undos, ["undo_y", "undo_x", "undo_a"]);
    let history = engine.history(&child.saga_id).await.unwrap();
    assert!(
        history
            .iter()
            .any(|e| matches!(e.kind, SagaEventKind::Compensating { .. }))
    );
}

#[tokio::test]
async fn a_failing_child_fails_its_parent_step_without_compensating_it_twice() {
    let s = Setup::new();
    let engine = s.engine();
    let rec = Recorder::default();
    register_ok(&engine, &rec);
    register_kid(&engine, &rec, false);
    let r = rec.clone();
    engine.register_operation_handler("do_y", move |_| {
        r.record("do_y");
        async { Err(StepError::terminal("no capacity")) }
    });
    let parent = engine
        .start(NewSaga::new("t1", "order", parent_steps()))
        .await
        .unwrap();
    assert_eq!(parent.status, SagaStatus::Compensated);
    assert_eq!(parent.saga.steps[1].status, SagaStepStatus::Failed);
    assert_eq!((rec.count("undo_x"), rec.count("undo_a")), (1, 1));
    assert_eq!(rec.count("do_c"), 0);
}

#[tokio::test]
async fn a_child_survives_its_parents_crash_and_is_found_again_on_recovery() {
    let s = Setup::new();
    let rec = Recorder::default();
    let first = s.engine();
    register_ok(&first, &rec);
    register_kid(&first, &rec, true);
    let parent_id = uuid::Uuid::now_v7().to_string();
    let child_id = format!("{parent_id}:1");
    let e = first.clone();
    let new = NewSaga::new("t1", "order", parent_steps()).saga_id(parent_id.clone());
    let task = tokio::spawn(async move { e.start(new).await });
    // The crash lands while the child's step x runs.
    for _ in 0..2000 {
        let child = first.get(&child_id).await.unwrap();
        if child.is_some_and(|c| c.steps[0].status == SagaStepStatus::Running) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    task.abort();
    let _ = task.await;
    assert_eq!(
        first.get(&child_id).await.unwrap().unwrap().status,
        SagaStatus::Running
    );

    s.expire_lease();
    let second = s.engine();
    register_ok(&second, &rec);
    register_kid(&second, &rec, false);
    let mut recoverable = second.store().list_recoverable_sagas(10).await.unwrap();
    recoverable.sort();
    let mut both = vec![parent_id.clone(), child_id.clone()];
    both.sort();
    assert_eq!(
        recoverable, both,
        "parent and child are recoverable on their own"
    );
    second.recover_abandoned().await.unwrap();
    let parent = second.get(&parent_id).await.unwrap().unwrap();
    let child = second.get(&child_id).await.unwrap().unwrap();
    assert_eq!(
        (parent.status, child.status),
        (SagaStatus::Completed, SagaStatus::Completed)
    );
    let created = second
        .history(&child_id)
        .await
        .unwrap()
        .iter()
        .filter(|e| matches!(e.kind, SagaEventKind::Created))
        .count();
    assert_eq!(created, 1, "the child was created once");
    assert_eq!(
        rec.count("do_a"),
        1,
        "the parent's succeeded step did not run again"
    );
    assert_eq!(
        rec.count("do_x"),
        2,
        "the child's step left started ran again"
    );
    assert_eq!((rec.count("do_y"), rec.count("do_c")), (1, 1));
    let tenants = second
        .store()
        .list_sagas(&bgops_storage::SagaFilter::default())
        .await
        .unwrap();
    assert_eq!(tenants.len(), 2, "no second child");
}

/// Templates, a child compensated with its parent, and retention, on Redis.
#[tokio::test]
async fn templates_children_and_retention_on_redis() {
    let url = bgops_storage::testing::server::redis::url();
    let prefix = format!("bgops-test-{}", uuid::Uuid::new_v4().simple());
    let store = bgops_redis::RedisStorage::builder(&url)
        .prefix(&prefix)
        .build()
        .await
        .unwrap();
    let engine = SagaEngine::builder(Arc::new(store) as Arc<dyn SagaStore>)
        .config(Setup::config().with_retention(Some(Duration::from_secs(1))))
        .build();
    let rec = Recorder::default();
    register_ok(&engine, &rec);
    register_kid(&engine, &rec, false);
    register_templates(&engine, &[1]);
    let r = rec.clone();
    engine.register_operation_handler("do_c", move |_| {
        r.record("do_c");
        async { Err(StepError::terminal("declined")) }
    });
    let parent = engine
        .start(NewSaga::new("t1", "order", parent_steps()))
        .await
        .unwrap();
    let child = engine
        .get(&format!("{}:1", parent.saga.saga_id))
        .await
        .unwrap()
        .unwrap();
    let onboarding = engine
        .start(
            engine
                .new_saga_from_template("t1", "user_onboarding", &json!({ "email": "a@b.c" }))
                .unwrap(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let purged = engine.purge_finished().await.unwrap();
    let gone = engine.get(&parent.saga.saga_id).await.unwrap();
    bgops_storage::testing::server::redis::delete_prefix(&url, &prefix).unwrap();
    assert_eq!(parent.status, SagaStatus::Compensated);
    assert_eq!(child.status, SagaStatus::Compensated);
    assert_eq!(onboarding.saga.template_version, Some(1));
    assert_eq!(purged, 3, "parent, child and onboarding saga");
    assert!(gone.is_none());
}

#[tokio::test]
async fn a_child_step_naming_an_unknown_template_is_refused_at_creation() {
    let s = Setup::new();
    let engine = s.engine();
    let err = engine
        .create(
            "t1",
            "order",
            vec![child_saga_step("kid", "nope", json!({}))],
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SagaError::UnknownOperation {
                kind: "template",
                ..
            }
        ),
        "{err}"
    );
}
