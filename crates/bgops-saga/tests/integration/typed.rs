//! Typed sagas (seed 004): context persisted after each step, fallback with a breaker.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bgops_core::SagaStatus;
use bgops_saga::{
    CircuitBreaker, CircuitState, Fallback, SagaError, Step, StepContext, StepError, TypedSaga,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::support::{Recorder, Setup};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Order {
    id: String,
    reservation: Option<String>,
    payment: Option<String>,
    log: Vec<String>,
}

struct Reserve(Recorder);

#[async_trait]
impl Step<Order> for Reserve {
    fn name(&self) -> &'static str {
        "reserve"
    }
    async fn act(&self, o: &mut Order, step: &StepContext) -> Result<Value, StepError> {
        self.0.record("reserve");
        o.reservation = Some(format!("res-{}", o.id));
        o.log.push(format!("reserved by {}", step.step_key()));
        Ok(json!({ "reservation": o.reservation }))
    }
    async fn compensate(&self, o: &mut Order, step: &StepContext) -> Result<(), StepError> {
        self.0.record("release");
        assert_eq!(
            step.output.as_ref().unwrap()["reservation"],
            json!(format!("res-{}", o.id))
        );
        o.reservation = None;
        o.log.push("released".into());
        Ok(())
    }
}

struct Pay {
    rec: Recorder,
    fail: bool,
}

#[async_trait]
impl Step<Order> for Pay {
    fn name(&self) -> &'static str {
        "pay"
    }
    async fn act(&self, o: &mut Order, _: &StepContext) -> Result<Value, StepError> {
        self.rec.record("pay");
        // Must see the context stored by the previous step.
        assert!(o.reservation.is_some());
        o.payment = Some("pay-1".into());
        if self.fail {
            return Err(StepError::terminal("card declined"));
        }
        Ok(Value::Null)
    }
    fn max_retries(&self) -> u32 {
        0
    }
}

#[tokio::test]
async fn context_is_persisted_after_each_step() {
    let s = Setup::new();
    let engine = s.engine();
    let rec = Recorder::default();
    let saga = TypedSaga::<Order>::new("order")
        .step(Reserve(rec.clone()))
        .step(Pay {
            rec: rec.clone(),
            fail: false,
        });
    let handle = engine.register_saga(saga).unwrap();
    let order = Order {
        id: "o1".into(),
        ..Order::default()
    };
    let created = handle.create("t1", &order, Some("order-o1")).await.unwrap();
    assert_eq!(handle.context_of(&created).unwrap(), order);
    let outcome = handle.execute(&created.saga_id).await.unwrap();
    assert!(outcome.succeeded());
    assert_eq!(outcome.context.reservation.as_deref(), Some("res-o1"));
    assert_eq!(outcome.context.payment.as_deref(), Some("pay-1"));
    assert_eq!(
        outcome.context.log,
        [format!("reserved by {}:0", created.saga_id)]
    );
    let stored = engine.get(&created.saga_id).await.unwrap().unwrap();
    assert_eq!(handle.context_of(&stored).unwrap(), outcome.context);
    assert_eq!(stored.workflow_type, "order");
    assert_eq!(stored.steps[0].operation, "order::reserve");
}

#[tokio::test]
async fn a_failed_step_drops_its_context_changes_and_compensation_updates_context() {
    let s = Setup::new();
    let engine = s.engine();
    let rec = Recorder::default();
    let saga = TypedSaga::<Order>::new("order")
        .step(Reserve(rec.clone()))
        .step(Pay {
            rec: rec.clone(),
            fail: true,
        });
    let handle = engine.register_saga(saga).unwrap();
    let outcome = handle
        .run(
            "t1",
            &Order {
                id: "o2".into(),
                ..Order::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(outcome.status, SagaStatus::Compensated);
    assert_eq!(rec.log(), ["reserve", "pay", "release"]);
    assert_eq!(
        outcome.context.payment, None,
        "the failed step's change is not stored"
    );
    assert_eq!(outcome.context.reservation, None);
    assert_eq!(
        outcome.context.log.last().map(String::as_str),
        Some("released")
    );
}

#[tokio::test]
async fn invalid_definitions_are_rejected() {
    let s = Setup::new();
    let engine = s.engine();
    let rec = Recorder::default();
    let dup = TypedSaga::<Order>::new("order")
        .step(Reserve(rec.clone()))
        .step(Reserve(rec));
    assert!(matches!(
        engine.register_saga(dup),
        Err(SagaError::Definition { .. })
    ));
    assert!(matches!(
        engine.register_saga(TypedSaga::<Order>::new("empty")),
        Err(SagaError::Definition { .. })
    ));
}

struct Primary(Arc<AtomicU32>);

#[async_trait]
impl Step<Order> for Primary {
    fn name(&self) -> &'static str {
        "reserve"
    }
    async fn act(&self, o: &mut Order, _: &StepContext) -> Result<Value, StepError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        o.log.push("primary touched this".into());
        Err(StepError::retryable("inventory service unavailable"))
    }
}

struct Backup(Recorder);

#[async_trait]
impl Step<Order> for Backup {
    fn name(&self) -> &'static str {
        "reserve_backup"
    }
    async fn act(&self, o: &mut Order, _: &StepContext) -> Result<Value, StepError> {
        self.0.record("backup");
        o.reservation = Some(format!("fallback_reservation_{}", o.id));
        Ok(json!({ "source": "fallback" }))
    }
    async fn compensate(&self, o: &mut Order, step: &StepContext) -> Result<(), StepError> {
        self.0.record("backup_release");
        assert_eq!(step.output, Some(json!({ "source": "fallback" })));
        o.reservation = None;
        Ok(())
    }
}

struct Decline;

#[async_trait]
impl Step<Order> for Decline {
    fn name(&self) -> &'static str {
        "pay"
    }
    async fn act(&self, _: &mut Order, _: &StepContext) -> Result<Value, StepError> {
        Err(StepError::terminal("declined"))
    }
}

#[tokio::test]
async fn fallback_runs_when_primary_fails_and_the_breaker_skips_primary_while_open() {
    let s = Setup::new();
    let engine = s.engine();
    let rec = Recorder::default();
    let primary_calls = Arc::new(AtomicU32::new(0));
    let breaker = Arc::new(
        CircuitBreaker::new(2, Duration::from_secs(60)).with_clock(Arc::new(s.clock.clone())),
    );
    let saga = TypedSaga::<Order>::new("order").step(
        Fallback::new(Primary(primary_calls.clone()), Backup(rec.clone()))
            .with_circuit_breaker(breaker.clone()),
    );
    let handle = engine.register_saga(saga).unwrap();
    for i in 0..3 {
        let out = handle
            .run(
                "t1",
                &Order {
                    id: format!("o{i}"),
                    ..Order::default()
                },
            )
            .await
            .unwrap();
        assert!(out.succeeded());
        assert_eq!(
            out.context.reservation,
            Some(format!("fallback_reservation_o{i}"))
        );
        assert!(
            out.context.log.is_empty(),
            "the fallback starts from the context before primary"
        );
        assert_eq!(
            out.saga.steps[0].result.as_ref().unwrap()["branch"],
            json!("fallback")
        );
    }
    assert_eq!(
        primary_calls.load(Ordering::SeqCst),
        2,
        "open after fail_max = 2"
    );
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(rec.count("backup"), 3);

    // After the reset timeout one trial call reaches primary again; it fails, so it reopens.
    s.clock.advance(Duration::from_secs(61));
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    handle
        .run(
            "t1",
            &Order {
                id: "o9".into(),
                ..Order::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(primary_calls.load(Ordering::SeqCst), 3);
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test]
async fn compensating_a_fallback_step_undoes_the_branch_that_ran() {
    let s = Setup::new();
    let engine = s.engine();
    let rec = Recorder::default();
    let saga = TypedSaga::<Order>::new("order")
        .step(Fallback::new(
            Primary(Arc::new(AtomicU32::new(0))),
            Backup(rec.clone()),
        ))
        .step(Decline);
    let handle = engine.register_saga(saga).unwrap();
    let out = handle
        .run(
            "t1",
            &Order {
                id: "o1".into(),
                ..Order::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(out.status, SagaStatus::Compensated);
    assert_eq!(rec.log(), ["backup", "backup_release"]);
    assert_eq!(out.context.reservation, None);
}
