//! Focused checks of the Redis schema and round trips.

use std::time::Duration;

use bgops_core::id::{IdGenerator, RandomIds};
use bgops_redis::RedisStorage;
use bgops_storage::{BeginOutcome, BeginRequest, Claimed, IdempotencyStore, LockStore, Storage};
use serde_json::json;

use crate::monitor::Monitor;
use crate::support::{own_server, raw_command};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_state_change_is_one_round_trip() {
    let server = own_server();
    let storage = RedisStorage::builder(server.url())
        .pool_size(1)
        .build()
        .await
        .expect("connect");
    // Warm the script cache so NOSCRIPT reloads do not count.
    let warm = storage
        .begin(BeginRequest::new("t", "warm", "op", RandomIds.token()))
        .await
        .expect("begin");
    let BeginOutcome::Started(Claimed { token, .. }) = warm else {
        panic!("expected Started")
    };
    storage
        .complete(
            "t",
            "warm",
            &token,
            bgops_core::OperationOutcome::succeeded(json!(0)),
        )
        .await
        .expect("complete");
    let lease = storage
        .acquire_lock("warm", Duration::from_secs(5))
        .await
        .expect("lock");
    storage
        .release_lock(&lease.expect("free"))
        .await
        .expect("release");

    let mut monitor = Monitor::start(server.port()).expect("monitor");
    monitor.take().expect("drain");
    let one = vec!["evalsha".to_owned()];

    let begun = storage
        .begin(BeginRequest::new("t", "k", "op", RandomIds.token()))
        .await
        .expect("begin");
    assert_eq!(monitor.take().expect("monitor"), one, "begin");
    let BeginOutcome::Started(Claimed { token, .. }) = begun else {
        panic!("expected Started")
    };
    storage
        .complete(
            "t",
            "k",
            &token,
            bgops_core::OperationOutcome::succeeded(json!(1)),
        )
        .await
        .expect("complete");
    assert_eq!(monitor.take().expect("monitor"), one, "complete");
    let lease = storage
        .acquire_lock("l", Duration::from_secs(5))
        .await
        .expect("lock");
    assert_eq!(monitor.take().expect("monitor"), one, "acquire");
    assert!(
        storage
            .release_lock(&lease.expect("free"))
            .await
            .expect("release")
    );
    assert_eq!(monitor.take().expect("monitor"), one, "release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_carries_a_hash_tag_and_records_expire() {
    let server = own_server();
    let storage = RedisStorage::builder(server.url())
        .prefix("tagged")
        .build()
        .await
        .expect("c");
    let BeginOutcome::Started(Claimed { token, .. }) = storage
        .begin(BeginRequest::new("t", "k", "op", RandomIds.token()).ttl(Duration::from_secs(100)))
        .await
        .expect("begin")
    else {
        panic!("expected Started")
    };
    storage
        .acquire_lock("l", Duration::from_secs(5))
        .await
        .expect("lock");
    let keys = raw_command(server.port(), &["KEYS", "*"]).expect("keys");
    let names: Vec<&str> = keys.lines().filter(|l| l.starts_with("tagged:")).collect();
    assert!(names.len() >= 4, "{keys}");
    for name in &names {
        assert!(
            name.starts_with("tagged:{") && name.contains("}:"),
            "untagged key {name}"
        );
    }
    let rec = names
        .iter()
        .find(|n| n.contains(":rec:"))
        .expect("record key");
    // In flight, the record lives until its TTL (late-completion contract), not its lease.
    let ttl: i64 = raw_command(server.port(), &["PTTL", rec]).expect("pttl")[1..]
        .trim()
        .parse()
        .expect("number");
    assert!(ttl > 31_000 && ttl <= 100_000, "in-flight pttl {ttl}");
    storage
        .complete(
            "t",
            "k",
            &token,
            bgops_core::OperationOutcome::succeeded(json!(1)),
        )
        .await
        .expect("complete");
    let ttl: i64 = raw_command(server.port(), &["PTTL", rec]).expect("pttl")[1..]
        .trim()
        .parse()
        .expect("number");
    assert!(ttl > 31_000 && ttl <= 100_000, "completed pttl {ttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_stats_come_from_ping_and_indexes() {
    let server = own_server();
    let storage = RedisStorage::builder(server.url())
        .prefix("stats")
        .build()
        .await
        .expect("c");
    let health = storage.health().await.expect("health");
    assert!(health.healthy);
    assert_eq!(health.backend, "redis");
    assert_eq!(
        health.details.get("mode").map(String::as_str),
        Some("standalone")
    );
    for i in 0..3 {
        storage
            .begin(BeginRequest::new(
                "t",
                format!("k{i}"),
                "op",
                RandomIds.token(),
            ))
            .await
            .expect("begin");
    }
    storage
        .acquire_lock("a", Duration::from_secs(30))
        .await
        .expect("lock");
    storage
        .acquire_lock("b", Duration::from_millis(50))
        .await
        .expect("lock");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stats = storage.stats().await.expect("stats");
    assert_eq!(stats.idempotency_records, 3);
    assert_eq!(stats.locks, 1, "the expired lock is not counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_ids_and_lock_tokens_come_from_the_injected_generator() {
    use bgops_storage::{NewTask, TaskStore};
    let storage = RedisStorage::builder(crate::support::redis_url())
        .prefix(crate::support::prefix())
        .ids(std::sync::Arc::new(bgops_core::id::SequentialIds::new(
            "task",
        )))
        .build()
        .await
        .expect("connect");
    let submitted = storage
        .submit_task(NewTask::new("q", "t", json!({})))
        .await
        .expect("submit");
    assert_eq!(submitted.task.task_id, "task-000001");
    let lease = storage
        .acquire_lock("l", Duration::from_secs(5))
        .await
        .expect("lock")
        .expect("free");
    assert_eq!(lease.token, "ttask-000002");
    crate::support::delete_prefix(&crate::support::redis_url(), storage.prefix()).expect("cleanup");
}
