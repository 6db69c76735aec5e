//! The board on Redis (`BGOPS_TEST_REDIS_URL`, skipped with a notice outside CI when
//! unset), on data under a key prefix of its own.

use std::sync::Arc;
use std::time::Duration;

use bgops_core::{SagaEvent, SagaEventKind, SagaStatus};
use bgops_redis::RedisStorage;
use bgops_storage::{SagaStore as _, Storage};

use crate::support::{EventStream, get, seed, serve_on};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_a_live_timeline_on_redis() {
    let url = match std::env::var("BGOPS_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "BGOPS_TEST_REDIS_URL is not set: CI runs these tests through `cargo xtask ci`"
            );
            eprintln!("SKIPPED board Redis test: set BGOPS_TEST_REDIS_URL (cargo xtask sets it)");
            return;
        }
    };
    let prefix = format!("bgops-board-test-{}", uuid::Uuid::new_v4().simple());
    let redis = Arc::new(
        RedisStorage::builder(url.clone())
            .prefix(prefix.clone())
            .build()
            .await
            .unwrap(),
    );
    let s = seed(redis.as_ref()).await;
    let addr = serve_on(Arc::clone(&redis) as Arc<dyn Storage>, |b| b).await;

    let overview = get(addr, "/bgops").await;
    assert!(
        overview.body.contains("Backend <strong>redis</strong>"),
        "{}",
        overview.body
    );
    assert!(
        overview
            .body
            .contains(r#"data-k="sagas.compensation_failed">1<"#),
        "{}",
        overview.body
    );
    let page = get(addr, &format!("/bgops/sagas/{}", s.saga_id)).await;
    assert_eq!(page.body.matches("data-type=").count(), 7, "{}", page.body);
    let tasks = get(addr, "/bgops/tasks?queue=emails&status=failed").await;
    assert!(tasks.body.contains(&s.failed_task), "{}", tasks.body);

    let mut stream =
        EventStream::open(addr, &format!("/bgops/live/sagas/{}?from=7", s.saga_id)).await;
    stream.until("text/event-stream").await;
    let mut saga = redis
        .acquire_saga_lease(&s.saga_id, "executor-1", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    let fence = saga.lease.as_ref().unwrap().fence;
    saga.lease = None;
    let event = SagaEvent {
        saga_id: Arc::from(s.saga_id.as_str()),
        at: time::OffsetDateTime::now_utc(),
        fence,
        status: SagaStatus::CompensationFailed,
        kind: SagaEventKind::Resumed,
    };
    redis
        .save_saga(&saga, fence, std::slice::from_ref(&event), None)
        .await
        .unwrap();
    let seen = stream.until("\"resumed\"").await;
    assert!(seen.contains("id: 8"), "{seen}");

    redis.close().await;
    bgops_storage::testing::server::redis::delete_prefix(&url, &prefix).unwrap();
}
