//! The binary against a real Redis, on data the test stored under its own key prefix.

use std::time::Duration;

use bgops_cli::{ConnectOptions, connect};

use crate::support::{bgops, seed};

/// `BGOPS_TEST_REDIS_URL`, or `None` (with a notice) outside CI.
fn redis_url() -> Option<String> {
    match std::env::var("BGOPS_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "BGOPS_TEST_REDIS_URL is not set: CI runs these tests through `cargo xtask ci`"
            );
            eprintln!(
                "SKIPPED bgops-cli Redis tests: set BGOPS_TEST_REDIS_URL=redis://127.0.0.1:6379 \
                 (cargo xtask sets it)"
            );
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_against_redis() {
    let Some(url) = redis_url() else { return };
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("bgops-cli-test-{tag}");
    let storage = connect(&ConnectOptions {
        url: url.clone(),
        prefix: Some(prefix.clone()),
        timeout: Duration::from_secs(5),
    })
    .await
    .expect("connect to BGOPS_TEST_REDIS_URL");
    let seeded = seed(storage.as_ref(), &tag).await;
    let env = [
        ("BGOPS_URL", url.as_str()),
        ("BGOPS_PREFIX", prefix.as_str()),
    ];
    let cli = |args: &[&str]| bgops(args, &env);

    // Health and stats.
    let run = cli(&["health"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.starts_with("redis: healthy"), "{}", run.stdout);
    let stats = cli(&["--json", "stats"]).json();
    assert_eq!(stats["backend"], "redis");
    assert_eq!(stats["sagas_by_status"]["compensation_failed"], 1);
    assert_eq!(stats["tasks_by_status"]["failed"], 1);
    assert_eq!(stats["tasks_by_status"]["pending"], 1);

    // Keys.
    let record = cli(&[
        "--json",
        "keys",
        "get",
        "--tenant",
        &seeded.tenant,
        &seeded.key,
    ])
    .json();
    assert_eq!(record["status"], "completed");
    assert_eq!(record["result"]["order"], 7);
    assert_eq!(record["payload_bytes"], 12);
    let run = cli(&["keys", "get", "--tenant", &seeded.tenant, "no-such-key"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("not found"), "{}", run.stderr);
    let run = cli(&["keys", "get", "--tenant", &seeded.tenant, "bad key"]);
    assert_eq!(run.code, 2, "{}", run.stderr);

    // Sagas: list with filters, the timeline, the retry hand-off.
    let listed = cli(&[
        "--json",
        "sagas",
        "list",
        "--status",
        "compensation_failed",
        "--tenant",
        &seeded.tenant,
    ])
    .json();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["saga_id"], seeded.saga_id.as_str());
    let by_type = cli(&["--json", "sagas", "list", "--type", &format!("order-{tag}")]).json();
    assert_eq!(by_type.as_array().map(Vec::len), Some(1), "{by_type}");
    let run = cli(&["sagas", "show", &seeded.saga_id]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for needle in [
        "compensation_failed",
        "card declined",
        "inventory service down",
        "step_failed",
        "1 charge",
        "compensating",
    ] {
        assert!(
            run.stdout.contains(needle),
            "missing {needle:?} in\n{}",
            run.stdout
        );
    }
    // A saga in an end state: watch prints its history and returns.
    let run = cli(&["sagas", "watch", &seeded.saga_id, "--interval", "100ms"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.lines().count(), 7, "{}", run.stdout);
    let run = cli(&["--json", "sagas", "watch", &seeded.saga_id]);
    assert!(
        run.stdout.lines().all(|l| l.starts_with('{')),
        "{}",
        run.stdout
    );
    let run = cli(&["sagas", "retry-compensation", &seeded.saga_id]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let shown = cli(&["--json", "sagas", "show", &seeded.saga_id]).json();
    assert_eq!(shown["saga"]["status"], "compensating");
    assert_eq!(shown["saga"]["steps"][0]["status"], "compensating");
    assert!(shown["saga"]["lease"].is_null(), "the lease is handed back");
    let last = shown["history"].as_array().and_then(|h| h.last()).cloned();
    assert_eq!(
        last.as_ref().map(|e| e["type"].clone()),
        Some("compensating".into())
    );
    let run = cli(&["sagas", "retry-compensation", &seeded.saga_id]);
    assert_eq!(
        run.code, 4,
        "a compensating saga is refused: {}",
        run.stderr
    );
    let run = cli(&["sagas", "show", "no-such-saga"]);
    assert_eq!(run.code, 1);

    // Tasks.
    let failed = cli(&[
        "--json",
        "tasks",
        "list",
        "--queue",
        &seeded.queue,
        "--status",
        "failed",
    ])
    .json();
    assert_eq!(failed.as_array().map(Vec::len), Some(1), "{failed}");
    assert_eq!(failed[0]["task_id"], seeded.failed_task.as_str());
    let run = cli(&["tasks", "show", &seeded.failed_task]);
    assert!(
        run.stdout.contains("mailbox does not exist"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("worker-1"), "{}", run.stdout);
    let run = cli(&["tasks", "retry", &seeded.failed_task]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = cli(&["tasks", "retry", &seeded.pending_task]);
    assert_eq!(run.code, 4, "a pending task is refused: {}", run.stderr);
    let run = cli(&["tasks", "delete", &seeded.pending_task]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = cli(&["tasks", "delete", &seeded.pending_task]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let purged = cli(&["--json", "tasks", "purge", "--older-than", "1h"]).json();
    assert_eq!(purged["purged"], 0, "nothing finished an hour ago");
    let run = cli(&["keys", "delete", "--tenant", &seeded.tenant, &seeded.key]);
    assert_eq!(run.code, 0, "{}", run.stderr);

    // Leave nothing behind on a shared server.
    drop(storage);
    bgops_storage::testing::server::redis::delete_prefix(&url, &prefix)
        .expect("clean up the prefix");
}
