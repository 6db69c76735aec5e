//! The command logic (`bgops_cli::run`) over the memory backend: what each command
//! reports and which error it gives, without a process or a server.

use std::time::Duration;

use bgops_cli::{Cli, CliError, ExitCode, Report, run};
use bgops_memory::MemoryStorage;
use bgops_storage::{SagaStore as _, Storage, TaskStore as _};
use clap::Parser as _;

use crate::support::{Seeded, seed};

async fn seeded() -> (MemoryStorage, Seeded) {
    let storage = MemoryStorage::new();
    let seeded = seed(&storage, "t").await;
    (storage, seeded)
}

async fn bgops(storage: &dyn Storage, args: &[&str]) -> Result<Report, CliError> {
    let cli = Cli::try_parse_from(std::iter::once("bgops").chain(args.iter().copied()))
        .expect("arguments parse");
    run(storage, &cli.command).await
}

#[tokio::test]
async fn stats_count_by_status() {
    let (storage, _) = seeded().await;
    let report = bgops(&storage, &["stats"]).await.unwrap();
    assert_eq!(report.json["backend"], "memory");
    assert_eq!(report.json["idempotency_records"], 1);
    assert_eq!(report.json["sagas_by_status"]["compensation_failed"], 1);
    assert_eq!(report.json["tasks_by_status"]["failed"], 1);
    assert!(
        report.text.contains("compensation_failed"),
        "{}",
        report.text
    );
    let report = bgops(&storage, &["health"]).await.unwrap();
    assert_eq!(report.json["healthy"], true);
}

#[tokio::test]
async fn keys_get_shows_the_record_and_delete_removes_it() {
    let (storage, s) = seeded().await;
    let report = bgops(&storage, &["keys", "get", "--tenant", &s.tenant, &s.key])
        .await
        .unwrap();
    assert_eq!(report.json["status"], "completed");
    assert_eq!(report.json["operation_type"], "create_order");
    assert_eq!(report.json["payload_bytes"], 12);
    assert!(report.text.contains("12 bytes"), "{}", report.text);
    // Another tenant does not see it.
    let error = bgops(&storage, &["keys", "get", "--tenant", "other", &s.key])
        .await
        .unwrap_err();
    assert_eq!(error.exit_code(), ExitCode::NotFound);
    bgops(&storage, &["keys", "delete", "--tenant", &s.tenant, &s.key])
        .await
        .unwrap();
    let error = bgops(&storage, &["keys", "delete", "--tenant", &s.tenant, &s.key])
        .await
        .unwrap_err();
    assert_eq!(error.exit_code(), ExitCode::NotFound);
    let error = bgops(&storage, &["keys", "get", "--tenant", " ", "k"])
        .await
        .unwrap_err();
    assert_eq!(error.exit_code(), ExitCode::Usage, "{error}");
}

#[tokio::test]
async fn sagas_list_filters_by_status_type_and_tenant() {
    let (storage, s) = seeded().await;
    let all = bgops(&storage, &["sagas", "list"]).await.unwrap();
    assert_eq!(all.json.as_array().map(Vec::len), Some(1));
    let none = bgops(&storage, &["sagas", "list", "--status", "running"])
        .await
        .unwrap();
    assert_eq!(none.json.as_array().map(Vec::len), Some(0));
    assert_eq!(none.text, "no sagas match\n");
    let typed = bgops(&storage, &["sagas", "list", "--type", "order-t"])
        .await
        .unwrap();
    assert_eq!(typed.json[0]["saga_id"], s.saga_id.as_str());
    let other_type = bgops(&storage, &["sagas", "list", "--type", "refund"])
        .await
        .unwrap();
    assert_eq!(other_type.json.as_array().map(Vec::len), Some(0));
    let other_tenant = bgops(&storage, &["sagas", "list", "--tenant", "globex"])
        .await
        .unwrap();
    assert_eq!(other_tenant.json.as_array().map(Vec::len), Some(0));
    assert!(all.text.contains("1/2"), "progress column: {}", all.text);
}

#[tokio::test]
async fn sagas_show_gives_steps_and_the_timeline_with_compensations_and_errors() {
    let (storage, s) = seeded().await;
    let report = bgops(&storage, &["sagas", "show", &s.saga_id])
        .await
        .unwrap();
    assert_eq!(report.json["saga"]["status"], "compensation_failed");
    assert_eq!(report.json["history"].as_array().map(Vec::len), Some(7));
    assert_eq!(report.json["history"][3]["type"], "step_failed");
    let text = &report.text;
    let timeline = text
        .split("\nTimeline\n")
        .nth(1)
        .expect("a timeline section");
    let events: Vec<&str> = timeline
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(3).unwrap_or(""))
        .collect();
    assert_eq!(
        events,
        [
            "created",
            "step_started",
            "step_succeeded",
            "step_failed",
            "compensating",
            "compensation_failed",
            "finished"
        ]
    );
    assert!(timeline.contains("card declined"), "{timeline}");
    assert!(timeline.contains("inventory service down"), "{timeline}");
    assert!(text.contains("release_inventory (3 attempts)"), "{text}");
    let error = bgops(&storage, &["sagas", "show", "nope"])
        .await
        .unwrap_err();
    assert_eq!(error.exit_code(), ExitCode::NotFound);
}

#[tokio::test]
async fn retry_compensation_hands_the_saga_to_the_recoverer_once() {
    let (storage, s) = seeded().await;
    let report = bgops(&storage, &["sagas", "retry-compensation", &s.saga_id])
        .await
        .unwrap();
    assert_eq!(report.json["steps_to_retry"][0]["name"], "reserve");
    let saga = storage.get_saga(&s.saga_id).await.unwrap().unwrap();
    assert_eq!(saga.status, bgops_core::SagaStatus::Compensating);
    assert_eq!(
        saga.steps[0].status,
        bgops_core::SagaStepStatus::Compensating
    );
    assert_eq!(saga.steps[0].compensation_attempts, 0);
    assert!(saga.lease.is_none());
    // The saga recoverer finds it.
    let recoverable = storage.list_recoverable_sagas(10).await.unwrap();
    assert_eq!(recoverable, std::slice::from_ref(&s.saga_id));
    let history = storage.get_saga_history(&s.saga_id).await.unwrap();
    assert_eq!(history.last().map(|e| e.kind.name()), Some("compensating"));
    // Once compensating, a second request is refused.
    let error = bgops(&storage, &["sagas", "retry-compensation", &s.saga_id])
        .await
        .unwrap_err();
    assert_eq!(error.exit_code(), ExitCode::Refused, "{error}");
}

#[tokio::test]
async fn retry_compensation_is_refused_while_an_executor_holds_the_lease() {
    let (storage, s) = seeded().await;
    storage
        .acquire_saga_lease(&s.saga_id, "executor-1", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let error = bgops(&storage, &["sagas", "retry-compensation", &s.saga_id])
        .await
        .unwrap_err();
    assert_eq!(error.exit_code(), ExitCode::Refused);
    assert!(error.to_string().contains("busy"), "{error}");
    let saga = storage.get_saga(&s.saga_id).await.unwrap().unwrap();
    assert_eq!(saga.status, bgops_core::SagaStatus::CompensationFailed);
}

#[tokio::test]
async fn tasks_list_show_retry_delete() {
    let (storage, s) = seeded().await;
    let failed = bgops(
        &storage,
        &["tasks", "list", "--queue", &s.queue, "--status", "failed"],
    )
    .await
    .unwrap();
    assert_eq!(failed.json.as_array().map(Vec::len), Some(1));
    assert!(
        failed.text.contains("mailbox does not exist"),
        "{}",
        failed.text
    );
    let all = bgops(&storage, &["tasks", "list", "--queue", &s.queue])
        .await
        .unwrap();
    assert_eq!(all.json.as_array().map(Vec::len), Some(2));
    let shown = bgops(&storage, &["tasks", "show", &s.failed_task])
        .await
        .unwrap();
    assert_eq!(shown.json["history"][0]["worker_id"], "worker-1");
    assert!(shown.text.contains("Attempts"), "{}", shown.text);

    let retried = bgops(&storage, &["tasks", "retry", &s.failed_task])
        .await
        .unwrap();
    assert_eq!(retried.json["status"], "pending");
    let error = bgops(&storage, &["tasks", "retry", &s.pending_task])
        .await
        .unwrap_err();
    assert_eq!(error.exit_code(), ExitCode::Refused, "{error}");
    let error = bgops(&storage, &["tasks", "retry", "nope"])
        .await
        .unwrap_err();
    assert_eq!(error.exit_code(), ExitCode::NotFound, "{error}");

    bgops(&storage, &["tasks", "delete", &s.pending_task])
        .await
        .unwrap();
    assert!(storage.get_task(&s.pending_task).await.unwrap().is_none());
    let error = bgops(&storage, &["tasks", "delete", &s.pending_task])
        .await
        .unwrap_err();
    assert_eq!(error.exit_code(), ExitCode::NotFound);
}

#[tokio::test]
async fn tasks_purge_removes_only_tasks_finished_long_enough_ago() {
    let clock = std::sync::Arc::new(bgops_core::ManualClock::new());
    let storage = MemoryStorage::with_clock(clock.clone());
    let s = seed(&storage, "p").await;
    let kept = bgops(&storage, &["tasks", "purge", "--older-than", "1h"])
        .await
        .unwrap();
    assert_eq!(kept.json["purged"], 0);
    assert!(
        kept.text
            .starts_with("purged 0 finished task(s) older than 1h"),
        "{}",
        kept.text
    );
    clock.advance(Duration::from_secs(2 * 3600));
    let purged = bgops(&storage, &["tasks", "purge", "--older-than", "1h"])
        .await
        .unwrap();
    assert_eq!(
        purged.json["purged"], 1,
        "the failed task; the pending one stays"
    );
    assert!(storage.get_task(&s.failed_task).await.unwrap().is_none());
    assert!(storage.get_task(&s.pending_task).await.unwrap().is_some());
}

#[tokio::test]
async fn watch_follows_a_saga_until_it_ends_printing_each_event_once() {
    use std::sync::Arc;

    use bgops_core::{SagaEvent, SagaEventKind, SagaStatus, SagaStep, SagaWorkflow};

    let storage = Arc::new(MemoryStorage::new());
    let now = time::OffsetDateTime::now_utc();
    let mut saga = SagaWorkflow::new(
        "acme",
        "order",
        vec![SagaStep::new("reserve", "reserve", serde_json::json!({}))],
        now,
    );
    saga.status = SagaStatus::Running;
    let id: Arc<str> = Arc::from(saga.saga_id.as_str());
    let event = |status, kind| SagaEvent {
        saga_id: Arc::clone(&id),
        at: now,
        fence: 1,
        status,
        kind,
    };
    storage
        .create_saga(
            &saga,
            None,
            &[event(SagaStatus::Running, SagaEventKind::Created)],
        )
        .await
        .unwrap();
    let watchers: Vec<_> = [false, true]
        .into_iter()
        .map(|json| {
            let storage = Arc::clone(&storage);
            let id = saga.saga_id.clone();
            tokio::spawn(async move {
                let mut out = Vec::new();
                bgops_cli::watch_saga(
                    storage.as_ref(),
                    &id,
                    Duration::from_millis(50),
                    false,
                    json,
                    &mut out,
                )
                .await
                .map(|()| String::from_utf8(out).unwrap())
            })
        })
        .collect();
    // The executor runs it to the end.
    let mut leased = storage
        .acquire_saga_lease(&saga.saga_id, "executor-1", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    let fence = leased.lease.as_ref().unwrap().fence;
    leased.status = SagaStatus::Completed;
    leased.lease = None;
    let history = [
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
                output: serde_json::json!({"held": 1}),
            },
        ),
        event(SagaStatus::Completed, SagaEventKind::Finished),
    ];
    storage
        .save_saga(&leased, fence, &history, None)
        .await
        .unwrap();

    let mut outputs = Vec::new();
    for watcher in watchers {
        outputs.push(watcher.await.unwrap().unwrap());
    }
    let text = &outputs[0];
    let kinds: Vec<&str> = text
        .lines()
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["created", "step_started", "step_succeeded", "finished"],
        "{text}"
    );
    assert!(text.contains("0 reserve"), "{text}");
    let events: Vec<SagaEvent> = outputs[1]
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 4);
    assert_eq!(events[3].kind, SagaEventKind::Finished);
    // A missing saga is "not found", not an endless wait.
    let mut out = Vec::new();
    let error = bgops_cli::watch_saga(
        storage.as_ref(),
        "nope",
        Duration::from_millis(50),
        false,
        false,
        &mut out,
    )
    .await
    .unwrap_err();
    assert_eq!(error.exit_code(), ExitCode::NotFound);
}

#[tokio::test]
async fn store_failures_map_to_their_exit_codes() {
    use std::sync::Arc;

    use bgops_storage::testing::decorators::{FailingStorage, Fault, Method};

    let store = FailingStorage::failing(Arc::new(MemoryStorage::new()));
    store.hook().fail(Method::Stats, Fault::Unavailable);
    let error = bgops(&store, &["stats"]).await.unwrap_err();
    assert_eq!(error.exit_code(), ExitCode::Unreachable, "{error}");
    store.hook().fail(Method::ListTasks, Fault::Corrupt);
    let error = bgops(&store, &["tasks", "list"]).await.unwrap_err();
    assert_eq!(error.exit_code(), ExitCode::Store, "{error}");
    store.hook().heal();
    assert!(bgops(&store, &["stats"]).await.is_ok());
}

#[tokio::test]
async fn deleting_an_in_flight_key_needs_force() {
    use bgops_storage::{BeginOutcome, BeginRequest, IdempotencyStore as _};

    let storage = MemoryStorage::new();
    let started = storage
        .begin(BeginRequest::new("acme", "k1", "charge", "tok-1"))
        .await
        .unwrap();
    assert!(matches!(started, BeginOutcome::Started(_)));
    let error = bgops(&storage, &["keys", "delete", "--tenant", "acme", "k1"])
        .await
        .unwrap_err();
    assert_eq!(error.exit_code(), ExitCode::Refused);
    assert!(error.to_string().contains("--force"), "{error}");
    assert!(
        storage
            .get_idempotency("acme", "k1")
            .await
            .unwrap()
            .is_some()
    );
    bgops(
        &storage,
        &["keys", "delete", "--tenant", "acme", "k1", "--force"],
    )
    .await
    .unwrap();
    assert!(
        storage
            .get_idempotency("acme", "k1")
            .await
            .unwrap()
            .is_none()
    );
}
