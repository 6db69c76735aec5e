//! One key end to end, below HTTP: a request's idempotency key is the key of the task it
//! submits and of the saga that task runs, so a retried request (or a task run twice)
//! never creates a second task or saga, and every step's external call gets a stable key.

use bgops_core::{SagaStatus, SagaStep};
use bgops_queue::{NewTask, TaskContext, TaskError, TaskQueue, Worker};
use bgops_saga::{NewSaga, SagaEngine};
use bgops_storage::SagaStore;
use serde_json::{Value, json};

use crate::support::{Recorder, Setup};

/// What the HTTP handler does with the request's key: submit one task under it.
async fn handle_request(queue: &TaskQueue, tenant: &str, key: &str) -> String {
    let task = NewTask::new(
        "orders",
        "checkout",
        json!({ "tenant": tenant, "key": key }),
    )
    .idempotency_key(format!("{tenant}.{key}"));
    queue.submit(task).await.unwrap().task.task_id
}

/// What the task does: start (or find) the saga under the same key.
async fn run_task(engine: &SagaEngine, ctx: &TaskContext) -> Result<Value, TaskError> {
    let tenant = ctx.payload()["tenant"].as_str().unwrap_or_default();
    let key = ctx.payload()["key"].as_str().unwrap_or_default();
    let steps = vec![
        SagaStep::new("reserve", "reserve", json!({})),
        SagaStep::new("charge", "charge", json!({})),
    ];
    let outcome = engine
        .start(NewSaga::new(tenant, "checkout", steps).idempotency_key(key))
        .await
        .map_err(TaskError::retryable)?;
    Ok(json!({ "saga_id": outcome.saga.saga_id, "status": outcome.status.as_str() }))
}

#[tokio::test]
async fn a_retried_request_creates_one_task_and_one_saga_with_stable_step_keys() {
    let s = Setup::new();
    let engine = s.engine();
    let rec = Recorder::default();
    for op in ["reserve", "charge"] {
        let r = rec.clone();
        engine.register_operation_handler(op, move |step| {
            // The external call's idempotency key: stable for this request.
            r.record(step.step_key());
            async { Ok(json!(null)) }
        });
    }
    let queue = TaskQueue::new(s.store.clone());
    let first = handle_request(&queue, "t1", "req-42").await;
    let retried = handle_request(&queue, "t1", "req-42").await;
    assert_eq!(first, retried, "one task per request key");

    let e = engine.clone();
    let worker = Worker::new(queue.clone(), move |ctx: TaskContext| {
        let e = e.clone();
        async move { run_task(&e, &ctx).await }
    })
    .queue_name("orders")
    .spawn();
    let mut result = None;
    for _ in 0..2000 {
        result = queue.get(&first).await.unwrap().and_then(|t| t.result);
        if result.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    worker.shutdown().await;
    let result = result.expect("the task ran");
    assert_eq!(result["status"], "completed");
    let saga_id = result["saga_id"].as_str().unwrap().to_owned();

    // The task runs again (a redelivery, a retry): the same saga, nothing re-run.
    let again = engine
        .start(
            NewSaga::new(
                "t1",
                "checkout",
                vec![SagaStep::new("reserve", "reserve", json!({}))],
            )
            .idempotency_key("req-42"),
        )
        .await
        .unwrap();
    assert_eq!(again.saga.saga_id, saga_id);
    assert_eq!(again.status, SagaStatus::Completed);
    let sagas = s
        .store
        .list_sagas(&bgops_storage::SagaFilter::default())
        .await
        .unwrap();
    assert_eq!(sagas.len(), 1, "one saga per request key");
    assert_eq!(rec.log(), [format!("{saga_id}:0"), format!("{saga_id}:1")]);
}
