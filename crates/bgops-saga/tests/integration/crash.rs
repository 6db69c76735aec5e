//! Crash test, in-process variant: many sagas run at once, every executor is aborted at a
//! random point (mid-step, mid-compensation, between writes), then a new engine on the
//! same store recovers them. Handlers count their executions per step key.

use std::collections::HashMap;
use std::time::Duration;

use bgops_core::{SagaStatus, SagaStepStatus, SagaWorkflow};
use bgops_saga::{NewSaga, SagaEngine, StepError};
use rand::Rng;
use serde_json::json;

use crate::dynamic::{steps3, steps3_grouped};
use crate::support::{Recorder, Setup};

const SAGAS: usize = 60;

/// Handlers that count each execution by step key, then pause a random moment (a window
/// for the crash). Sagas whose tenant is `fail` fail terminally at step c.
fn register(engine: &SagaEngine, rec: &Recorder) {
    for n in ["a", "b", "c"] {
        let r = rec.clone();
        engine.register_operation_handler(format!("do_{n}"), move |step| {
            r.record(step.step_key());
            async move {
                pause().await;
                if n == "c" && &*step.tenant_id == "fail" {
                    return Err(StepError::terminal("declined"));
                }
                Ok(json!(null))
            }
        });
        let r = rec.clone();
        engine.register_compensation_handler(format!("undo_{n}"), move |step| {
            r.record(step.step_key());
            async move {
                pause().await;
                Ok(json!(null))
            }
        });
    }
}

async fn pause() {
    let micros = rand::rng().random_range(0..1500);
    tokio::time::sleep(Duration::from_micros(micros)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_executors_are_recovered_without_repeating_succeeded_steps() {
    let s = Setup::new();
    let rec = Recorder::default();
    let first = s.engine();
    register(&first, &rec);
    let mut ids = Vec::new();
    let mut tasks = Vec::new();
    for k in 0..SAGAS {
        let tenant = if k % 3 == 0 { "fail" } else { "ok" };
        // Every other pair of sagas runs steps b and c as a parallel group.
        let steps3 = if k % 4 >= 2 { steps3_grouped } else { steps3 };
        let e = first.clone();
        if k % 2 == 0 {
            let saga = first.create(tenant, "crash", steps3(), None).await.unwrap();
            let id = saga.saga_id.clone();
            tasks.push(tokio::spawn(async move {
                let _ = e.execute(&id).await;
            }));
            ids.push(saga.saga_id);
        } else {
            // Created and run in one go (the saga is stored already leased).
            let id = uuid::Uuid::now_v7().to_string();
            let new = NewSaga::new(tenant, "crash", steps3()).saga_id(id.clone());
            tasks.push(tokio::spawn(async move {
                let _ = e.start(new).await;
            }));
            ids.push(id);
        }
    }
    // Crash: every executor dies at once, wherever it is.
    tokio::time::sleep(Duration::from_millis(3)).await;
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        let _ = t.await;
    }

    let mut before: HashMap<String, SagaWorkflow> = HashMap::new();
    for id in &ids {
        match first.get(id).await.unwrap() {
            Some(saga) => {
                before.insert(id.clone(), saga);
            }
            // Killed before `start` stored it: nothing happened.
            None => assert_eq!(rec.count(&format!("{id}:0")), 0),
        }
    }
    ids.retain(|id| before.contains_key(id));
    let counts_before: HashMap<String, u32> = ids
        .iter()
        .flat_map(|id| keys(id))
        .map(|k| (k.clone(), rec.count(&k)))
        .collect();
    let interrupted = before
        .values()
        .filter(|sg| !sg.status.is_terminal())
        .count();

    s.expire_lease();
    let second = s.engine();
    register(&second, &rec);
    while second.recover_abandoned().await.unwrap().found > 0 {}
    for id in &ids {
        // Sagas whose executor died before taking the lease are still Pending.
        if before[id].status == SagaStatus::Pending {
            second.execute(id).await.unwrap();
        }
    }

    for id in &ids {
        let after = second.get(id).await.unwrap().unwrap();
        let prior = &before[id];
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
                    rec.count(&key),
                    counts_before[&key],
                    "succeeded step {key} ran again"
                );
            }
        }
        for i in 0..3 {
            let comp = rec.count(&format!("{id}:{i}:comp"));
            let completed_forward = fails && i < 2;
            if completed_forward {
                assert!(comp >= 1, "{id}:{i} succeeded but was not compensated");
                if prior.steps[i].status != SagaStepStatus::Compensating {
                    assert_eq!(comp, 1, "{id}:{i} compensated twice without a crash in it");
                }
            } else {
                assert_eq!(comp, 0, "{id}:{i} compensated though it did not succeed");
            }
            assert!(rec.count(&format!("{id}:{i}")) >= 1);
        }
    }
    // The test means something only if the crash hit sagas midway.
    assert!(interrupted > 0, "no saga was interrupted");
}

fn keys(id: &str) -> Vec<String> {
    (0..3)
        .flat_map(|i| [format!("{id}:{i}"), format!("{id}:{i}:comp")])
        .collect()
}
