//! The saga engine on PostgreSQL: sagas run to the end and compensate, with their
//! journal in `saga_event`.

use std::sync::Arc;

use bgops_core::{SagaStatus, SagaStep};
use bgops_saga::{NewSaga, SagaEngine, StepError};
use bgops_storage::SagaStore;
use serde_json::{Value, json};

use super::support::storage;

fn steps() -> Vec<SagaStep> {
    ["s1", "s2", "s3"]
        .iter()
        .map(|op| {
            SagaStep::new(*op, *op, json!({})).with_compensation(format!("undo_{op}"), json!({}))
        })
        .collect()
}

fn engine(store: Arc<dyn SagaStore>, fail_last: bool) -> SagaEngine {
    let engine = SagaEngine::new(store);
    for op in ["s1", "s2", "s3"] {
        engine.register_operation_handler(op, |_| async { Ok(Value::Null) });
        engine.register_compensation_handler(format!("undo_{op}"), |_| async { Ok(Value::Null) });
    }
    if fail_last {
        engine.register_operation_handler("s3", |_| async { Err(StepError::terminal("no")) });
    }
    engine
}

#[tokio::test]
async fn engine_runs_and_compensates_sagas_on_postgres() {
    let (s, _guard) = storage().await;
    let store: Arc<dyn SagaStore> = Arc::new(s.clone());
    let done = engine(store.clone(), false)
        .start(NewSaga::new("t", "wf", steps()))
        .await
        .expect("start");
    assert_eq!(done.status, SagaStatus::Completed);
    let history = s
        .get_saga_history(&done.saga.saga_id)
        .await
        .expect("history");
    assert!(history.len() >= 4, "journal: {history:?}");
    assert!(history.last().is_some_and(bgops_core::SagaEvent::is_last));

    let undone = engine(store, true)
        .start(NewSaga::new("t", "wf", steps()))
        .await
        .expect("start");
    assert_eq!(undone.status, SagaStatus::Compensated);
    let stored = s
        .get_saga(&undone.saga.saga_id)
        .await
        .expect("get")
        .expect("saga");
    assert_eq!(stored.status, SagaStatus::Compensated);
    assert!(stored.lease.is_none(), "the lease is released at the end");
}
