//! The seed's saga API on the manager (feature `saga`).

use std::sync::{Arc, Mutex};

use bgops::core::{SagaStatus, SagaStep};
use bgops::prelude::*;
use bgops::saga::StepError;
use serde_json::json;

fn seed_steps(fail_email: bool) -> Vec<SagaStep> {
    // The seed's step dicts, as a client would send them.
    serde_json::from_value(json!([
        {
            "name": "Create User Account",
            "operation": "create_user",
            "parameters": {"username": "testuser", "email": "test@example.com"},
            "compensation_operation": "delete_user",
            "compensation_parameters": {"username": "testuser"},
            "max_retries": 0
        },
        {
            "name": "Send Welcome Email",
            "operation": "send_email",
            "parameters": {"to": "test@example.com", "template": "welcome", "fail": fail_email},
            "max_retries": 1
        }
    ]))
    .unwrap()
}

fn manager_with_handlers(log: Arc<Mutex<Vec<String>>>) -> BackgroundOperationsManager {
    let manager = BackgroundOperationsManager::in_memory();
    let l = log.clone();
    manager.register_operation_handler("create_user", move |step| {
        let l = l.clone();
        async move {
            l.lock()
                .unwrap()
                .push(format!("create_user {}", step.step_key()));
            Ok(json!({"user_id": "456"}))
        }
    });
    let l = log.clone();
    manager.register_operation_handler("send_email", move |step| {
        let l = l.clone();
        async move {
            l.lock().unwrap().push("send_email".into());
            if step.parameters["fail"] == json!(true) {
                Err(StepError::retryable("smtp down"))
            } else {
                Ok(json!({"message_id": "123"}))
            }
        }
    });
    let l = log;
    manager.register_compensation_handler("delete_user", move |_step| {
        let l = l.clone();
        async move {
            l.lock().unwrap().push("delete_user".into());
            Ok(json!(null))
        }
    });
    manager
}

#[tokio::test]
async fn seed_workflow_succeeds() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let manager = manager_with_handlers(log.clone());
    let saga = manager
        .create_saga_workflow("tenant1", "user_onboarding", seed_steps(false), None)
        .await
        .unwrap();
    assert!(manager.execute_saga_workflow(&saga.saga_id).await.unwrap());
    let stored = manager.get_saga(&saga.saga_id).await.unwrap().unwrap();
    assert_eq!(stored.status, SagaStatus::Completed);
    assert_eq!(stored.steps[0].result, Some(json!({"user_id": "456"})));
    let log = log.lock().unwrap().clone();
    assert_eq!(
        log,
        vec![
            format!("create_user {}:0", saga.saga_id),
            "send_email".to_owned()
        ]
    );
    assert!(
        !manager
            .get_saga_history(&saga.saga_id)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn failing_step_compensates_completed_steps() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let manager = manager_with_handlers(log.clone());
    let saga = manager
        .create_saga_workflow("tenant1", "user_onboarding", seed_steps(true), None)
        .await
        .unwrap();
    assert!(!manager.execute_saga_workflow(&saga.saga_id).await.unwrap());
    let stored = manager.get_saga(&saga.saga_id).await.unwrap().unwrap();
    assert_eq!(stored.status, SagaStatus::Compensated);
    let log = log.lock().unwrap().clone();
    // One try plus one retry of the email, then the user is deleted; the email step
    // itself is not compensated.
    assert_eq!(log[1..], ["send_email", "send_email", "delete_user"]);
}

#[tokio::test]
async fn same_idempotency_key_returns_the_same_saga() {
    let manager = manager_with_handlers(Arc::new(Mutex::new(Vec::new())));
    let a = manager
        .create_saga_workflow("tenant1", "onboarding", seed_steps(false), Some("signup-1"))
        .await
        .unwrap();
    let b = manager
        .create_saga_workflow("tenant1", "onboarding", seed_steps(false), Some("signup-1"))
        .await
        .unwrap();
    assert_eq!(a.saga_id, b.saga_id);
    let c = manager
        .create_saga_workflow("tenant2", "onboarding", seed_steps(false), Some("signup-1"))
        .await
        .unwrap();
    assert_ne!(a.saga_id, c.saga_id, "keys are scoped by tenant");
}

/// The manager configures the whole saga engine: lease, backoffs, recovery, retention;
/// a saga timeout at creation; the event stream.
#[tokio::test]
async fn the_manager_configures_the_saga_engine_timeout_and_stream() {
    use std::time::Duration;

    use bgops::saga::{Backoff, NewSaga, SagaConfig, SagaEventKind};

    let config = SagaConfig::default()
        .with_lease(Duration::from_secs(7))
        .with_retry(Backoff::new(
            Duration::from_millis(1),
            Duration::from_millis(2),
        ))
        .with_compensation_retry(Backoff::new(
            Duration::from_millis(3),
            Duration::from_millis(4),
        ))
        .with_recovery_interval(Duration::from_secs(9))
        .with_retention(Some(Duration::from_secs(3600)));
    let manager = BackgroundOperationsManager::builder()
        .saga_config(config.clone())
        .build()
        .unwrap();
    assert_eq!(manager.saga_engine().config(), &config);

    manager.register_operation_handler("create_user", |_| async { Ok(json!(null)) });
    let steps = vec![SagaStep::new("Create", "create_user", json!({}))];
    let saga = manager
        .create_saga(
            NewSaga::new("t1", "onboarding", steps)
                .timeout(Duration::from_secs(30))
                .idempotency_key("signup-1"),
        )
        .await
        .unwrap()
        .into_saga();
    assert_eq!(saga.timeout_seconds, Some(30));
    let mut events = manager.execute_saga_stream(&saga.saga_id);
    let mut kinds = Vec::new();
    while let Some(event) = events.recv().await {
        kinds.push(event.kind.name());
        if matches!(event.kind, SagaEventKind::Finished) {
            assert_eq!(event.status, SagaStatus::Completed);
        }
    }
    assert_eq!(
        kinds,
        ["resumed", "step_started", "step_succeeded", "finished"]
    );
}
