use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bgops::prelude::*;
use bgops::{CoreError, IdempotencyError, ManualClock};
use serde_json::json;

fn manager_with_clock() -> (BackgroundOperationsManager, ManualClock) {
    let clock = ManualClock::new();
    let storage = Arc::new(MemoryStorage::with_clock(Arc::new(clock.clone())));
    let manager = BackgroundOperationsManager::builder()
        .storage(storage)
        .config(Config::default().with_default_ttl(Duration::from_secs(60)))
        .build()
        .unwrap();
    (manager, clock)
}

#[tokio::test]
async fn derived_key_matches_the_seed_algorithm() {
    let manager = BackgroundOperationsManager::in_memory();
    let params = json!({"to": "user@example.com", "subject": "Welcome"});
    let status = manager
        .create_idempotency_key(
            "tenant1",
            Some("user1"),
            "send_email",
            None,
            Some(&params),
            None,
        )
        .await
        .unwrap();
    let KeyStatus::Created(claim) = status else {
        panic!("expected Created, got {status:?}")
    };
    // Produced by python3 with the seed's algorithm (see bgops-core's vectors).
    assert_eq!(claim.key(), "8d0d5304231d6a0478dae9a604a2314b");
    let record = manager
        .check_idempotency("tenant1", claim.key())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, OperationStatus::InProgress);
}

#[tokio::test]
async fn create_check_complete_replay() {
    let manager = BackgroundOperationsManager::in_memory();
    let params = json!({"n": 1});
    let KeyStatus::Created(claim) = manager
        .create_idempotency_key("t1", None, "op", None, Some(&params), None)
        .await
        .unwrap()
    else {
        panic!("first call must create");
    };
    let second = manager
        .create_idempotency_key("t1", None, "op", None, Some(&params), None)
        .await
        .unwrap();
    assert!(matches!(second, KeyStatus::InProgress { .. }), "{second:?}");

    let completion = manager
        .complete_idempotent_operation(&claim, Some(json!({"done": true})), None)
        .await
        .unwrap();
    assert!(
        matches!(completion, Completion::Stored(_)),
        "{completion:?}"
    );

    let third = manager
        .create_idempotency_key("t1", None, "op", None, Some(&params), None)
        .await
        .unwrap();
    match third {
        KeyStatus::Completed(r) => assert_eq!(r.result, Some(json!({"done": true}))),
        other => panic!("expected Completed, got {other:?}"),
    }
    let checked = manager
        .check_idempotency("t1", claim.key())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(checked.status, OperationStatus::Completed);
}

#[tokio::test]
async fn failure_is_remembered_and_replayed() {
    let manager = BackgroundOperationsManager::in_memory();
    let KeyStatus::Created(claim) = manager
        .create_idempotency_key(
            "t1",
            None,
            "charge",
            Some("order-1"),
            Some(&json!({"amount": 5})),
            None,
        )
        .await
        .unwrap()
    else {
        panic!("first call must create");
    };
    manager
        .complete_idempotent_operation(&claim, None, Some("card declined".into()))
        .await
        .unwrap();
    let record = manager
        .check_idempotency("t1", "order-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, OperationStatus::Failed);
    assert_eq!(record.error.as_deref(), Some("card declined"));
    let again = manager
        .create_idempotency_key(
            "t1",
            None,
            "charge",
            Some("order-1"),
            Some(&json!({"amount": 5})),
            None,
        )
        .await
        .unwrap();
    assert!(
        matches!(&again, KeyStatus::Completed(r) if r.status == OperationStatus::Failed),
        "{again:?}"
    );
}

#[tokio::test]
async fn custom_key_with_other_parameters_is_a_mismatch() {
    let manager = BackgroundOperationsManager::in_memory();
    let first = manager
        .create_idempotency_key(
            "t1",
            None,
            "order",
            Some("k-1"),
            Some(&json!({"a": 1})),
            None,
        )
        .await
        .unwrap();
    assert!(matches!(first, KeyStatus::Created(_)));
    let other = manager
        .create_idempotency_key(
            "t1",
            None,
            "order",
            Some("k-1"),
            Some(&json!({"a": 2})),
            None,
        )
        .await
        .unwrap();
    assert!(matches!(other, KeyStatus::Mismatch { .. }), "{other:?}");
}

#[tokio::test]
async fn tenants_are_isolated() {
    let manager = BackgroundOperationsManager::in_memory();
    let a = manager
        .create_idempotency_key(
            "tenant-a",
            None,
            "op",
            Some("same-key"),
            Some(&json!({})),
            None,
        )
        .await
        .unwrap();
    let b = manager
        .create_idempotency_key(
            "tenant-b",
            None,
            "op",
            Some("same-key"),
            Some(&json!({})),
            None,
        )
        .await
        .unwrap();
    assert!(matches!(a, KeyStatus::Created(_)));
    assert!(
        matches!(b, KeyStatus::Created(_)),
        "tenant b must not see tenant a's key: {b:?}"
    );
    let KeyStatus::Created(claim_a) = a else {
        unreachable!()
    };
    manager
        .complete_idempotent_operation(&claim_a, Some(json!("a")), None)
        .await
        .unwrap();
    let seen_by_b = manager
        .check_idempotency("tenant-b", "same-key")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen_by_b.status, OperationStatus::InProgress);
    assert_eq!(seen_by_b.tenant_id, "tenant-b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_run_once() {
    let manager = BackgroundOperationsManager::in_memory();
    let runs = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for _ in 0..100 {
        let manager = manager.clone();
        let runs = runs.clone();
        handles.push(tokio::spawn(async move {
            manager
                .run_once(
                    "t1",
                    Some("u1"),
                    "charge_card",
                    &json!({"order": 7}),
                    move || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok::<_, std::io::Error>(json!({"charged": 7}))
                    },
                )
                .await
        }));
    }
    let mut ok = 0;
    let mut in_progress = 0;
    for h in handles {
        match h.await.unwrap() {
            Ok(v) => {
                assert_eq!(v, json!({"charged": 7}));
                ok += 1;
            }
            Err(Error::InProgress { .. }) => in_progress += 1,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the operation must run exactly once"
    );
    assert!(ok >= 1);
    assert_eq!(ok + in_progress, 100);
    // After it finished, everyone gets the stored result.
    let v = manager
        .run_once(
            "t1",
            Some("u1"),
            "charge_card",
            &json!({"order": 7}),
            || async { Err::<serde_json::Value, _>("must not run") },
        )
        .await
        .unwrap();
    assert_eq!(v, json!({"charged": 7}));
}

#[tokio::test]
async fn run_once_error_releases_the_claim() {
    let manager = BackgroundOperationsManager::in_memory();
    let err = manager
        .run_once("t1", None, "flaky", &json!({"x": 1}), || async {
            Err::<serde_json::Value, _>("boom")
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Operation(ref m) if m == "boom"),
        "{err:?}"
    );
    let v = manager
        .run_once("t1", None, "flaky", &json!({"x": 1}), || async {
            Ok::<_, std::io::Error>(json!(2))
        })
        .await
        .unwrap();
    assert_eq!(v, json!(2));
}

#[tokio::test]
async fn stale_claim_cannot_complete_after_takeover() {
    let (manager, clock) = manager_with_clock();
    let KeyStatus::Created(old) = manager
        .create_idempotency_key("t1", None, "op", Some("k"), Some(&json!({})), None)
        .await
        .unwrap()
    else {
        panic!("first call must create");
    };
    clock.advance(manager.config().default_lease + Duration::from_secs(1));
    let KeyStatus::Created(new) = manager
        .create_idempotency_key("t1", None, "op", Some("k"), Some(&json!({})), None)
        .await
        .unwrap()
    else {
        panic!("an expired lease must be taken over");
    };
    let err = manager
        .complete_idempotent_operation(&old, Some(json!(1)), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Idempotency(IdempotencyError::LeaseLost { .. })),
        "{err:?}"
    );
    manager
        .complete_idempotent_operation(&new, Some(json!(2)), None)
        .await
        .unwrap();
}

#[tokio::test]
async fn bad_input_is_a_typed_error() {
    let manager = BackgroundOperationsManager::in_memory();
    let p = Some(&json!({}));
    let cases: Vec<(&str, &str, Option<&str>, Option<Duration>)> = vec![
        ("", "op", None, None),
        ("t", "", None, None),
        ("t", "op", Some(""), None),
        ("t", "op", Some("has space"), None),
        ("t", "op", None, Some(Duration::ZERO)),
    ];
    let long_key = "k".repeat(256);
    for (tenant, op, key, ttl) in
        cases
            .into_iter()
            .chain([("t", "op", Some(long_key.as_str()), None)])
    {
        let err = manager
            .create_idempotency_key(tenant, None, op, key, p, ttl)
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Invalid(_)),
            "({tenant:?}, {op:?}, {key:?}, {ttl:?}) -> {err:?}"
        );
    }
    let mut not_json = std::collections::HashMap::new();
    not_json.insert((1, 2), "tuple keys are not JSON");
    let err = manager
        .create_idempotency_key("t", None, "op", None, Some(&not_json), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Invalid(CoreError::NotJson(_))),
        "{err:?}"
    );
}

#[tokio::test]
async fn cleanup_purges_expired_records() {
    let (manager, clock) = manager_with_clock();
    for i in 0..10 {
        let status = manager
            .create_idempotency_key(
                "t1",
                None,
                "op",
                Some(&format!("k{i}")),
                Some(&json!({})),
                None,
            )
            .await
            .unwrap();
        let KeyStatus::Created(claim) = status else {
            panic!("must create")
        };
        manager
            .complete_idempotent_operation(&claim, Some(json!(i)), None)
            .await
            .unwrap();
    }
    assert_eq!(manager.stats().await.unwrap().idempotency_records, 10);
    clock.advance(Duration::from_secs(61));
    let report = manager.cleanup_now().await.unwrap();
    assert_eq!(report.purged, 10);
    assert!(report.corrupt.is_empty());
    assert_eq!(manager.stats().await.unwrap().idempotency_records, 0);
    assert!(
        manager
            .check_idempotency("t1", "k0")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn start_and_shutdown_run_the_cleanup_loop() {
    let clock = ManualClock::new();
    let storage = Arc::new(MemoryStorage::with_clock(Arc::new(clock.clone())));
    let manager = BackgroundOperationsManager::builder()
        .storage(storage)
        .config(
            Config::default()
                .with_default_ttl(Duration::from_secs(60))
                .with_cleanup_interval(Duration::from_millis(10)),
        )
        .build()
        .unwrap();
    let KeyStatus::Created(claim) = manager
        .create_idempotency_key("t1", None, "op", Some("k"), Some(&json!({})), None)
        .await
        .unwrap()
    else {
        panic!("must create")
    };
    manager
        .complete_idempotent_operation(&claim, None, None)
        .await
        .unwrap();
    manager.start().await;
    manager.start().await; // a second start is harmless
    clock.advance(Duration::from_secs(61));
    let mut purged = false;
    for _ in 0..200 {
        if manager.stats().await.unwrap().idempotency_records == 0 {
            purged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    manager.shutdown().await;
    assert!(purged, "the cleanup loop must purge the expired record");
}

/// Wall time that follows tokio's clock, so a paused runtime moves the store's leases.
#[derive(Debug)]
struct TokioClock {
    base: time::OffsetDateTime,
    start: tokio::time::Instant,
}

impl bgops::Clock for TokioClock {
    fn now(&self) -> time::OffsetDateTime {
        self.base + self.start.elapsed()
    }
}

/// Issue 9 defect 1, through the manager: lease 1 s, a 2.5 s operation, a second
/// `run_once` with the same inputs at 1.5 s. Before the engine, the lease was never
/// renewed: the second caller took over and ran the operation again, and the first got
/// `LeaseLost` although its effect had happened.
#[tokio::test(start_paused = true)]
async fn run_once_keeps_its_lease_while_the_operation_runs() {
    let clock = TokioClock {
        base: time::OffsetDateTime::now_utc(),
        start: tokio::time::Instant::now(),
    };
    let manager = BackgroundOperationsManager::builder()
        .storage(Arc::new(MemoryStorage::with_clock(Arc::new(clock))))
        .config(Config::default().with_default_lease(Duration::from_secs(1)))
        .build()
        .unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let op = |runs: Arc<AtomicUsize>| async move {
        runs.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        Ok::<_, std::io::Error>(json!({"charged": true}))
    };
    let first = {
        let (manager, runs) = (manager.clone(), runs.clone());
        tokio::spawn(async move {
            manager
                .run_once("t1", None, "charge", &json!({"n": 1}), || op(runs))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = manager
        .run_once("t1", None, "charge", &json!({"n": 1}), || op(runs.clone()))
        .await;
    assert!(
        matches!(second, Err(Error::InProgress { .. })),
        "{second:?}"
    );
    assert_eq!(first.await.unwrap().unwrap(), json!({"charged": true}));
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the operation ran once");
}

#[tokio::test]
async fn get_operation_views_a_claimed_key() {
    let manager = BackgroundOperationsManager::in_memory();
    let KeyStatus::Created(claim) = manager
        .create_idempotency_key("t1", None, "op", Some("view-1"), Some(&json!({})), None)
        .await
        .unwrap()
    else {
        panic!("must create")
    };
    let op = manager
        .get_operation("t1", "view-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(op.kind, bgops::OperationKind::IdempotencyKey);
    assert_eq!(op.status, OperationStatus::InProgress);
    manager
        .complete_idempotent_operation(&claim, Some(json!(1)), None)
        .await
        .unwrap();
    let op = manager
        .get_operation("t1", "view-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(op.status, OperationStatus::Completed);
    assert_eq!(op.result, Some(json!(1)));
    assert!(
        manager
            .get_operation("t2", "view-1")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        manager
            .get_operation("t1", "nothing")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn get_operation_views_a_task() {
    use bgops::storage::NewTask;
    let manager = BackgroundOperationsManager::in_memory();
    let submitted = manager
        .storage()
        .submit_task(NewTask::new("emails", "send", json!({"to": "a@b.c"})).idempotency_key("t-1"))
        .await
        .unwrap();
    let id = submitted.task.task_id;
    let op = manager.get_operation("t1", &id).await.unwrap().unwrap();
    assert_eq!(op.kind, bgops::OperationKind::Task);
    assert_eq!(
        op.status,
        OperationStatus::Pending,
        "a waiting task is Pending"
    );
    assert_eq!(op.tenant_id, "emails");
    assert_eq!(op.idempotency_key.as_deref(), Some("t-1"));
}
