//! Saga workflows, after the seed's `saga_example.py`: a multi-step workflow that
//! succeeds, one whose third step fails so the completed steps are compensated in
//! reverse, a flaky step that succeeds after retries, and (beyond the seed) a versioned
//! template whose notifications run as a parallel group and whose provisioning is a child
//! saga. Every event is printed as it happens (the same stream an SSE endpoint would
//! forward).
//!
//! Run: `cargo run --example saga` (memory; set `REDIS_URL` to use Redis).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bgops::core::SagaStep;
use bgops::prelude::*;
use bgops::saga::{SagaEvent, SagaEventKind, StepError};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let manager = BackgroundOperationsManager::from_env().await?;
    manager.start().await;
    println!(
        "bgops sagas on the {} backend",
        manager.storage().backend_name()
    );

    register_handlers(&manager);

    // 1. Every step succeeds.
    let onboarding = vec![
        SagaStep::new(
            "Create user account",
            "create_user",
            json!({"username": "johndoe"}),
        )
        .with_compensation("delete_user", json!({"username": "johndoe"})),
        SagaStep::new(
            "Send welcome email",
            "send_email",
            json!({"to": "john@example.com", "template": "welcome"}),
        )
        .with_compensation(
            "send_email",
            json!({"to": "john@example.com", "template": "cancelled"}),
        ),
    ];
    run(&manager, "user_onboarding", onboarding).await?;

    // 2. The payment is declined: the inventory reservation and the user are undone, in
    //    reverse order; the failed payment itself is not compensated.
    let checkout = vec![
        SagaStep::new(
            "Create user account",
            "create_user",
            json!({"username": "janedoe"}),
        )
        .with_compensation("delete_user", json!({"username": "janedoe"})),
        SagaStep::new(
            "Reserve inventory",
            "reserve_inventory",
            json!({"sku": "book-42", "qty": 1}),
        )
        .with_compensation("release_inventory", json!({"sku": "book-42", "qty": 1})),
        SagaStep::new("Charge card", "charge_card", json!({"amount_cents": 4200}))
            .with_compensation("refund_card", json!({"amount_cents": 4200})),
    ];
    run(&manager, "order_checkout", checkout).await?;

    // 3. A flaky service fails twice, then answers: retried with exponential backoff.
    let flaky = vec![
        SagaStep::new(
            "Call flaky partner API",
            "flaky_partner_api",
            json!({"order": "o-7"}),
        )
        .with_max_retries(3),
    ];
    run(&manager, "partner_sync", flaky).await?;

    // 4. A template, created by name with parameters: email and SMS in one parallel group
    //    (they run at once), then provisioning as a child saga (its id is this step's key,
    //    so a retried or recovered parent never starts a second one).
    manager.register_saga_template("provisioning", 1, |params| {
        Ok(vec![SagaStep::new(
            "Create workspace",
            "create_workspace",
            json!({"plan": params["plan"]}),
        )])
    })?;
    manager.register_saga_template("user_onboarding", 2, |params| {
        let email = params["email"].as_str().ok_or("email is required")?;
        Ok(vec![
            SagaStep::new(
                "Send email",
                "send_email",
                json!({"to": email, "template": "welcome"}),
            )
            .in_group("notify"),
            SagaStep::new("Send SMS", "send_sms", json!({"to": params["phone"]}))
                .in_group("notify"),
            bgops::saga::child_saga_step("Provision", "provisioning", json!({"plan": "pro"})),
        ])
    })?;
    let saga = manager
        .create_saga_from_template(
            "tenant1",
            "user_onboarding",
            &json!({"email": "ada@example.com", "phone": "+15550100"}),
            Some("onboard-ada"),
        )
        .await?;
    println!(
        "\n=== user_onboarding v{:?} (template) ===",
        saga.template_version
    );
    let mut events = manager.execute_saga_stream(&saga.saga_id);
    while let Some(event) = events.recv().await {
        print_event(&event);
    }
    let child = manager.get_saga(&format!("{}:2", saga.saga_id)).await?;
    if let Some(child) = child {
        println!("-> child saga {} is {:?}", child.saga_id, child.status);
    }

    manager.shutdown().await;
    Ok(())
}

fn register_handlers(manager: &BackgroundOperationsManager) {
    manager.register_operation_handler("create_user", |step| async move {
        Ok(json!({"user_id": "456", "username": step.parameters["username"], "status": "created"}))
    });
    manager.register_compensation_handler("delete_user", |step| async move {
        Ok(json!({"deleted": step.parameters["username"]}))
    });
    manager.register_operation_handler("send_email", |step| async move {
        // The stable step key makes a retried send safe at the mail provider.
        Ok(json!({"message_id": step.step_key(), "template": step.parameters["template"]}))
    });
    manager.register_operation_handler("send_sms", |step| async move {
        Ok(json!({"sms_id": step.step_key()}))
    });
    manager.register_operation_handler("create_workspace", |step| async move {
        Ok(json!({"workspace": "ws-1", "plan": step.parameters["plan"]}))
    });
    manager.register_operation_handler("reserve_inventory", |_| async move {
        Ok(json!({"reservation_id": "res-1"}))
    });
    manager.register_compensation_handler("release_inventory", |step| async move {
        Ok(json!({"released": step.output.map(|o| o["reservation_id"].clone())}))
    });
    manager.register_operation_handler("charge_card", |_| async move {
        Err(StepError::terminal("card declined"))
    });
    manager.register_compensation_handler("refund_card", |_| async move { Ok(json!(null)) });

    let calls: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    manager.register_operation_handler("flaky_partner_api", move |step| {
        let n = {
            let mut calls = calls
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let n = calls.entry(step.step_key()).or_default();
            *n += 1;
            *n
        };
        async move {
            if n < 3 {
                Err(StepError::retryable(format!(
                    "partner API timed out (call {n})"
                )))
            } else {
                Ok(json!({"synced": true, "attempt": step.attempt}))
            }
        }
    });
}

async fn run(
    manager: &BackgroundOperationsManager,
    workflow_type: &str,
    steps: Vec<SagaStep>,
) -> Result<(), Error> {
    println!("\n=== {workflow_type} ===");
    let saga = manager
        .create_saga_workflow("tenant1", workflow_type, steps, None)
        .await?;
    let mut events = manager.saga_engine().execute_stream(&saga.saga_id);
    while let Some(event) = events.recv().await {
        print_event(&event);
    }
    let stored = manager.get_saga(&saga.saga_id).await?;
    if let Some(saga) = stored {
        println!(
            "-> status {:?}; history has {} entries",
            saga.status,
            manager.get_saga_history(&saga.saga_id).await?.len()
        );
    }
    Ok(())
}

fn print_event(event: &SagaEvent) {
    match &event.kind {
        SagaEventKind::Created => println!("  created"),
        SagaEventKind::Resumed => println!("  lease taken (fence {})", event.fence),
        SagaEventKind::StepStarted { name, attempt, .. } => {
            println!("  start      {name} (attempt {attempt})");
        }
        SagaEventKind::StepSucceeded { name, output, .. } => {
            println!("  ok         {name}: {output}");
        }
        SagaEventKind::StepRetrying {
            name,
            error,
            delay_ms,
            ..
        } => {
            println!("  retry      {name}: {error}; next attempt in {delay_ms} ms");
        }
        SagaEventKind::StepFailed { name, error, .. } => println!("  FAILED     {name}: {error}"),
        SagaEventKind::Compensating { reason } => println!("  compensating: {reason}"),
        SagaEventKind::CompensationStarted { name, .. } => println!("  undo       {name}"),
        SagaEventKind::StepCompensated { name, .. } => println!("  undone     {name}"),
        SagaEventKind::CompensationFailed { name, error, .. } => {
            println!("  UNDO FAILED {name}: {error}");
        }
        SagaEventKind::Finished => println!("  finished: {}", event.status.as_str()),
        other => println!("  {}", other.name()),
    }
}
