//! The board on the memory backend with a little life in it: a saga that advances a step
//! every two seconds (and compensates when its last step fails), tasks and a key.
//!
//! ```sh
//! cargo run -p bgops-board --example board      # then open http://127.0.0.1:8080/bgops
//! ```
//!
//! Write mode is on, so a failed task shows Retry and Delete buttons.

use std::sync::Arc;
use std::time::Duration;

use bgops_board::Board;
use bgops_core::{
    OperationOutcome, SagaEvent, SagaEventKind, SagaStatus, SagaStep, SagaStepStatus, SagaWorkflow,
};
use bgops_memory::MemoryStorage;
use bgops_storage::{BeginOutcome, BeginRequest, NewTask, Storage};
use serde_json::json;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    seed(storage.as_ref()).await?;
    tokio::spawn(run_sagas(Arc::clone(&storage)));

    let app =
        axum::Router::new().nest("/bgops", Board::new(storage).write_mode(true).into_router());
    let addr = std::env::var("BGOPS_BOARD_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "bgops board on http://{}/bgops (Ctrl-C to stop)",
        listener.local_addr()?
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// A key, a failed task and a pending one.
async fn seed(storage: &dyn Storage) -> Result<(), Error> {
    if let BeginOutcome::Started(claim) = storage
        .begin(BeginRequest::new(
            "acme",
            "order-42",
            "create_order",
            "demo-token",
        ))
        .await?
    {
        storage
            .complete(
                "acme",
                "order-42",
                &claim.token,
                OperationOutcome::succeeded(json!({"order_id": 42})),
            )
            .await?;
    }
    let task = storage
        .submit_task(NewTask::new(
            "emails",
            "send_welcome",
            json!({"to": "ada@example.com"}),
        ))
        .await?
        .task;
    if let Some(claimed) = storage
        .claim_task(&task.task_id, "worker-1", Duration::from_secs(30))
        .await?
    {
        let attempt = claimed.lease.map_or(1, |l| l.attempt);
        storage
            .fail_task_permanently(&task.task_id, attempt, "mailbox does not exist")
            .await?;
    }
    storage
        .submit_task(NewTask::new(
            "emails",
            "send_receipt",
            json!({"to": "bob@example.com"}),
        ))
        .await?;
    Ok(())
}

/// Plays order sagas one after another, a step every 2 s; every
/// second order's payment fails and the reservation is compensated.
async fn run_sagas(storage: Arc<dyn Storage>) {
    for n in 0_u32.. {
        if let Err(error) = play_one(storage.as_ref(), n % 2 == 1).await {
            eprintln!("demo saga stopped: {error}");
        }
        tokio::time::sleep(Duration::from_secs(6)).await;
    }
}

async fn play_one(storage: &dyn Storage, fail: bool) -> Result<(), Error> {
    let tick = || tokio::time::sleep(Duration::from_secs(2));
    let now = time::OffsetDateTime::now_utc;
    let steps = vec![
        SagaStep::new(
            "reserve inventory",
            "reserve_inventory",
            json!({"sku": "A1"}),
        )
        .with_compensation("release_inventory", json!({})),
        SagaStep::new("process payment", "charge_card", json!({"amount": 100})),
        SagaStep::new("ship order", "ship", json!({})),
    ];
    let saga = SagaWorkflow::new("acme", "order", steps, now());
    let id: Arc<str> = Arc::from(saga.saga_id.as_str());
    let event = |fence, status, kind| SagaEvent {
        saga_id: Arc::clone(&id),
        at: now(),
        fence,
        status,
        kind,
    };
    storage
        .create_saga(
            &saga,
            None,
            &[event(0, SagaStatus::Pending, SagaEventKind::Created)],
        )
        .await?;
    tick().await;
    let Some(mut saga) = storage
        .acquire_saga_lease(&saga.saga_id, "demo-executor", Duration::from_secs(60))
        .await?
    else {
        return Ok(());
    };
    let fence = saga.lease.as_ref().map_or(0, |l| l.fence);
    // Each write is one fenced save with the events it records.
    let save = async |saga: &mut SagaWorkflow, events: Vec<SagaEvent>| -> Result<(), Error> {
        saga.updated_at = now();
        let saved = storage.save_saga(saga, fence, &events, None).await?;
        saga.version = saved.version;
        Ok(())
    };
    saga.status = SagaStatus::Running;
    save(
        &mut saga,
        vec![event(fence, SagaStatus::Running, SagaEventKind::Resumed)],
    )
    .await?;
    for index in 0..saga.steps.len() {
        tick().await;
        let name = saga.steps[index].name.clone();
        saga.steps[index].status = SagaStepStatus::Running;
        saga.steps[index].attempts = 1;
        save(
            &mut saga,
            vec![event(
                fence,
                SagaStatus::Running,
                SagaEventKind::StepStarted {
                    step_index: index,
                    name: name.clone(),
                    attempt: 1,
                },
            )],
        )
        .await?;
        tick().await;
        if fail && index == 1 {
            saga.steps[index].status = SagaStepStatus::Failed;
            saga.steps[index].error = Some("card declined".into());
            saga.status = SagaStatus::Compensating;
            saga.error = Some("card declined".into());
            save(
                &mut saga,
                vec![
                    event(
                        fence,
                        SagaStatus::Running,
                        SagaEventKind::StepFailed {
                            step_index: index,
                            name,
                            error: "card declined".into(),
                        },
                    ),
                    event(
                        fence,
                        SagaStatus::Compensating,
                        SagaEventKind::Compensating {
                            reason: "process payment failed: card declined".into(),
                        },
                    ),
                ],
            )
            .await?;
            tick().await;
            saga.steps[0].status = SagaStepStatus::Compensated;
            saga.steps[0].compensation_attempts = 1;
            saga.steps[0].compensated_at = Some(now());
            saga.status = SagaStatus::Compensated;
            saga.lease = None;
            let first = saga.steps[0].name.clone();
            save(
                &mut saga,
                vec![
                    event(
                        fence,
                        SagaStatus::Compensating,
                        SagaEventKind::CompensationStarted {
                            step_index: 0,
                            name: first.clone(),
                            attempt: 1,
                        },
                    ),
                    event(
                        fence,
                        SagaStatus::Compensating,
                        SagaEventKind::StepCompensated {
                            step_index: 0,
                            name: first,
                        },
                    ),
                    event(fence, SagaStatus::Compensated, SagaEventKind::Finished),
                ],
            )
            .await?;
            return Ok(());
        }
        saga.steps[index].status = SagaStepStatus::Completed;
        saga.steps[index].result = Some(json!({"ok": true}));
        saga.current_step = index + 1;
        save(
            &mut saga,
            vec![event(
                fence,
                SagaStatus::Running,
                SagaEventKind::StepSucceeded {
                    step_index: index,
                    name,
                    output: json!({"ok": true}),
                },
            )],
        )
        .await?;
    }
    saga.status = SagaStatus::Completed;
    saga.lease = None;
    save(
        &mut saga,
        vec![event(fence, SagaStatus::Completed, SagaEventKind::Finished)],
    )
    .await?;
    Ok(())
}
