//! Fault tests (issue 10): the store failing mid-handler, corrupt data, bad input, the
//! body limit without a network race, Redis paused longer than the lease.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bgops_axum::{FailMode, FnScope, IdempotencyConfig, ProblemKind, Scope};
use bgops_idempotency::IdempotencyEngine;
use bgops_storage::IdempotencyStore;
use bgops_storage::testing::decorators::{Fault, Method};
use bgops_storage::testing::server::redis::RedisServer;
use http::Request;
use tower::ServiceExt as _;

use crate::app::{router, start, start_on};
use crate::support::Reply;
use crate::support::{failing, key};

/// Issue 10 item 1 (HTTP): the store goes down while the handler runs and comes back.
/// The response goes out marked `Idempotency-Stored: pending`, the claim is held, the
/// response is stored once the store is back, and the retry replays it: one run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_down_mid_handler_then_back_the_response_is_stored() {
    let store = failing();
    let app = start(store.clone(), IdempotencyConfig::default()).await;
    let k = key();
    let c = app.client.clone();
    let k2 = k.clone();
    let first = tokio::spawn(async move { c.post("/slow?ms=300", Some(&k2), "").await });
    crate::support::eventually("the handler started", || async { app.runs.get() == 1 }).await;
    store.hook().fail_everything(Fault::Unavailable);
    let first = first.await.unwrap();
    assert_eq!(first.status, 200);
    assert_eq!(first.header("idempotency-stored"), Some("pending"));
    // While the store is down a retry is refused (fail closed), never run.
    let during = app.client.post("/slow?ms=300", Some(&k), "").await;
    assert_eq!(during.status, 503);
    tokio::time::sleep(Duration::from_millis(300)).await;
    store.hook().heal();
    replays_the_one_run(&app, &k, &first).await;
}

/// Issue 10 item 3: a corrupt record is a 500 naming it, even when failing open.
#[tokio::test]
async fn corrupt_record_is_500_and_never_fails_open() {
    let store = failing();
    store.hook().fail(Method::Begin, Fault::Corrupt);
    let config = IdempotencyConfig::default().fail_mode(FailMode::Open);
    let app = start(store, config).await;
    for _ in 0..2 {
        let r = app.client.post("/echo", Some(&key()), "{}").await;
        assert_eq!(r.status, 500);
        assert_eq!(r.problem_type(), ProblemKind::RecordCorrupt.type_uri());
        assert!(
            r.json()["detail"]
                .as_str()
                .unwrap()
                .contains("failing:begin")
        );
    }
    assert_eq!(app.runs.get(), 0);
}

/// Any other non-transient store failure is a 500, not a 503 and not "open".
#[tokio::test]
async fn backend_failure_is_500_and_never_fails_open() {
    let store = failing();
    store.hook().fail(Method::Begin, Fault::Backend);
    let app = start(
        store,
        IdempotencyConfig::default().fail_mode(FailMode::Open),
    )
    .await;
    let r = app.client.post("/echo", Some(&key()), "{}").await;
    assert_eq!(r.status, 500);
    assert_eq!(r.problem_type(), ProblemKind::StoreFailed.type_uri());
    assert_eq!(app.runs.get(), 0);
}

/// Issue 10 item 3: input the store rejects is a 400, not "store unavailable".
#[tokio::test]
async fn input_the_store_rejects_is_400() {
    let long_tenant = FnScope::new(|_: &http::request::Parts| Ok(Scope::tenant("t".repeat(300))));
    let config = IdempotencyConfig::default()
        .scope(long_tenant)
        .fail_mode(FailMode::Open);
    let app = start(crate::memory(), config).await;
    let r = app.client.post("/echo", Some(&key()), "{}").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.problem_type(), ProblemKind::RequestInvalid.type_uri());
    assert_eq!(app.runs.get(), 0);
}

/// The 1 MiB default limit, through the service itself: over TCP the server answers 413
/// and closes while the client is still writing (a race in the client, BrokenPipe), so
/// the limit is checked here without a socket. `body_over_limit_is_413` covers TCP with
/// a body small enough to be written before the answer.
#[tokio::test]
async fn default_body_limit_is_one_mib() {
    let (app, runs) = router(
        IdempotencyEngine::builder(crate::memory()).build(),
        IdempotencyConfig::default(),
    );
    let over = vec![b'x'; (1 << 20) + 1];
    for declared in [true, false] {
        let mut req = Request::post("/echo").header("idempotency-key", key());
        if declared {
            req = req.header("content-length", over.len());
        }
        let r = app
            .clone()
            .oneshot(req.body(Body::from(over.clone())).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status(), 413, "declared length: {declared}");
    }
    let at_limit = Request::post("/echo")
        .header("idempotency-key", key())
        .body(Body::from(vec![b'x'; 1 << 20]))
        .unwrap();
    assert_eq!(app.oneshot(at_limit).await.unwrap().status(), 201);
    assert_eq!(runs.get(), 1);
}

/// Redis paused (SIGSTOP) mid-handler for longer than the lease, then resumed: the
/// response is stored once Redis answers again and the retry replays it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_paused_longer_than_the_lease_mid_handler() {
    let server = RedisServer::spawn().expect("a throwaway redis-server");
    let (app, k, first) = slow_request_on(&server, Duration::from_millis(600)).await;
    server.pause().expect("SIGSTOP");
    let first = first.await.unwrap();
    assert_eq!(first.status, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.resume().expect("SIGCONT");
    // The client retries after the `Retry-After` it is told (1 s): by then the engine has
    // stored the response (it retries every quarter lease). A duplicate landing in the
    // first moments after an outage longer than the lease could take the claim over
    // (docs/semantics.md §2, "outages longer than the lease").
    tokio::time::sleep(Duration::from_secs(1)).await;
    replays_the_one_run(&app, &k, &first).await;
}

/// A well-behaved retrying client: on 409 or 503 it waits the `Retry-After` it was told
/// (the window in which the engine stores a pending response once the store is back),
/// at most 20 tries.
async fn retry_as_told(app: &crate::app::TestApp, path: &str, k: &str) -> Reply {
    for _ in 0..20 {
        let r = app.client.post(path, Some(k), "").await;
        if r.status != 409 && r.status != 503 {
            return r;
        }
        let after: u64 = r.header("retry-after").unwrap().parse().unwrap();
        tokio::time::sleep(Duration::from_secs(after)).await;
    }
    panic!("{path} never answered");
}

/// Issue 10 item 1 on a real server: Redis killed while the handler runs and restarted
/// (empty: no persistence) a second later. The response is stored once Redis is back (the
/// lost in-flight record is re-created under the claim's token) and the retry replays it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_mid_handler() {
    let mut server = RedisServer::spawn().expect("a throwaway redis-server");
    let (app, k, first) = slow_request_on(&server, Duration::from_secs(2)).await;
    server.stop();
    let first = first.await.unwrap();
    assert_eq!(first.status, 200);
    assert_eq!(first.header("idempotency-stored"), Some("pending"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.restart().expect("restart");
    tokio::time::sleep(Duration::from_secs(1)).await;
    replays_the_one_run(&app, &k, &first).await;
}

/// An app on a Redis store of `server` (short timeouts: a dead server answers fast) with
/// `lease`, and a `/slow?ms=300` request with a fresh key whose handler has started.
async fn slow_request_on(
    server: &RedisServer,
    lease: Duration,
) -> (crate::app::TestApp, String, tokio::task::JoinHandle<Reply>) {
    let store: Arc<dyn IdempotencyStore> = Arc::new(
        bgops_redis::RedisStorage::builder(server.url())
            .prefix(format!("bgops-test-{}", uuid::Uuid::new_v4().simple()))
            .command_timeout(Duration::from_millis(300))
            .connect_timeout(Duration::from_millis(300))
            .build()
            .await
            .expect("connect"),
    );
    let engine = IdempotencyEngine::builder(store)
        .lease(lease)
        .completion_backoff(bgops_core::Backoff::constant(Duration::from_millis(100)))
        .build();
    let app = start_on(engine, IdempotencyConfig::default()).await;
    let k = key();
    let c = app.client.clone();
    let k2 = k.clone();
    let first = tokio::spawn(async move { c.post("/slow?ms=300", Some(&k2), "").await });
    crate::support::eventually("the handler started", || async { app.runs.get() == 1 }).await;
    (app, k, first)
}

/// The retry (as a client told to retry later) replays the first response; the handler
/// ran once.
async fn replays_the_one_run(app: &crate::app::TestApp, k: &str, first: &Reply) {
    let replay = retry_as_told(app, "/slow?ms=300", k).await;
    assert_eq!(replay.status, 200, "{:?}", replay.body);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.body, first.body);
    assert_eq!(app.runs.get(), 1);
}
