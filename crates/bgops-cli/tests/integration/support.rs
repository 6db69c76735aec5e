//! Running the binary.

use std::process::{Command, Output};

/// What one run of `bgops` gave.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The stdout as JSON (for `--json` runs).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

/// Runs `bgops` with `args` and `env` (and no inherited `BGOPS_*`).
pub fn bgops(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bgops"));
    command
        .args(args)
        .env_remove("BGOPS_URL")
        .env_remove("BGOPS_PREFIX");
    for (k, v) in env {
        command.env(k, v);
    }
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().expect("bgops runs");
    Run {
        code: status
            .code()
            .expect("bgops exited (not killed by a signal)"),
        stdout: String::from_utf8(stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(stderr).expect("utf-8 stderr"),
    }
}

/// What [`seed`] stored.
pub struct Seeded {
    pub tenant: String,
    pub key: String,
    pub saga_id: String,
    pub failed_task: String,
    pub pending_task: String,
    pub queue: String,
}

/// Stores, through the storage contract, one completed idempotency record, one saga whose
/// compensation failed (with its history) and two tasks (one failed, one pending), under
/// names unique to `tag`.
pub async fn seed(storage: &dyn bgops_storage::Storage, tag: &str) -> Seeded {
    use std::sync::Arc;
    use std::time::Duration;

    use bgops_core::{
        OperationOutcome, SagaEvent, SagaEventKind, SagaStatus, SagaStep, SagaStepStatus,
        SagaWorkflow,
    };
    use bgops_storage::{BeginOutcome, BeginRequest, CreateSaga, NewTask};
    use serde_json::json;

    let tenant = format!("acme-{tag}");
    let key = format!("order-{tag}");
    let BeginOutcome::Started(claim) = storage
        .begin(BeginRequest::new(&tenant, &key, "create_order", "tok-1"))
        .await
        .expect("begin")
    else {
        panic!("a fresh key starts");
    };
    storage
        .complete(
            &tenant,
            &key,
            &claim.token,
            OperationOutcome::succeeded(json!({"order": 7})).with_payload(&b"HTTP/1.1 201"[..]),
        )
        .await
        .expect("complete");

    let now = time::OffsetDateTime::now_utc();
    let mut reserve = SagaStep::new("reserve", "reserve_inventory", json!({"sku": "A1"}))
        .with_compensation("release_inventory", json!({}));
    reserve.status = SagaStepStatus::CompensationFailed;
    reserve.attempts = 1;
    reserve.compensation_attempts = 3;
    reserve.compensation_error = Some("inventory service down".into());
    let mut charge = SagaStep::new("charge", "charge_card", json!({"amount": 100}));
    charge.status = SagaStepStatus::Failed;
    charge.attempts = 2;
    charge.error = Some("card declined".into());
    let mut saga = SagaWorkflow::new(&tenant, format!("order-{tag}"), vec![reserve, charge], now);
    saga.status = SagaStatus::CompensationFailed;
    saga.error = Some("card declined".into());
    let id: Arc<str> = Arc::from(saga.saga_id.as_str());
    let event = |status, kind| SagaEvent {
        saga_id: Arc::clone(&id),
        at: now,
        fence: 1,
        status,
        kind,
    };
    let history = vec![
        event(SagaStatus::Pending, SagaEventKind::Created),
        event(
            SagaStatus::Running,
            SagaEventKind::StepStarted {
                step_index: 0,
                name: "reserve".into(),
                attempt: 1,
            },
        ),
        event(
            SagaStatus::Running,
            SagaEventKind::StepSucceeded {
                step_index: 0,
                name: "reserve".into(),
                output: json!({"held": 1}),
            },
        ),
        event(
            SagaStatus::Running,
            SagaEventKind::StepFailed {
                step_index: 1,
                name: "charge".into(),
                error: "card declined".into(),
            },
        ),
        event(
            SagaStatus::Compensating,
            SagaEventKind::Compensating {
                reason: "step charge failed".into(),
            },
        ),
        event(
            SagaStatus::Compensating,
            SagaEventKind::CompensationFailed {
                step_index: 0,
                name: "reserve".into(),
                error: "inventory service down".into(),
            },
        ),
        event(SagaStatus::CompensationFailed, SagaEventKind::Finished),
    ];
    let created = storage
        .create_saga(&saga, None, &history)
        .await
        .expect("create saga");
    assert!(matches!(created, CreateSaga::Created(_)));

    let queue = format!("emails-{tag}");
    let failed = storage
        .submit_task(NewTask::new(
            &queue,
            "send_email",
            json!({"to": "a@example.com"}),
        ))
        .await
        .expect("submit")
        .task;
    let claimed = storage
        .claim_task(&failed.task_id, "worker-1", Duration::from_secs(60))
        .await
        .expect("claim")
        .expect("claimable");
    let attempt = claimed.lease.expect("a claim has a lease").attempt;
    storage
        .fail_task_permanently(&failed.task_id, attempt, "mailbox does not exist")
        .await
        .expect("fail");
    let pending = storage
        .submit_task(NewTask::new(
            &queue,
            "send_email",
            json!({"to": "b@example.com"}),
        ))
        .await
        .expect("submit")
        .task;
    Seeded {
        tenant,
        key,
        saga_id: saga.saga_id,
        failed_task: failed.task_id,
        pending_task: pending.task_id,
        queue,
    }
}
