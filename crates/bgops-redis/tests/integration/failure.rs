//! Failure behaviour against real servers: a server that goes away and comes back, a
//! server that is not there, foreign values under our keys, a flushed script cache.

use std::time::{Duration, Instant};

use bgops_core::id::{IdGenerator, RandomIds};
use bgops_core::{SagaStep, SagaWorkflow};
use bgops_redis::RedisStorage;
use bgops_storage::{
    BeginOutcome, BeginRequest, Claimed, IdempotencyStore, LockStore, NewTask, SagaStore,
    StorageError, TaskStore,
};
use fred::prelude::{Builder, ClientLike, Config, HashesInterface, KeysInterface};
use fred::types::{CustomCommand, Value};
use serde_json::json;

use crate::support::{RedisServer, own_server, prefix, raw_command, redis_url};

fn request(key: &str) -> BeginRequest {
    BeginRequest::new("tenant", key, "op", RandomIds.token())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_server_is_unavailable_and_calls_succeed_after_restart() {
    let mut server = own_server();
    let storage = RedisStorage::builder(server.url())
        .prefix(prefix())
        .command_timeout(Duration::from_secs(1))
        .connect_timeout(Duration::from_secs(1))
        .build()
        .await
        .expect("connect");
    assert!(matches!(
        storage.begin(request("k1")).await,
        Ok(BeginOutcome::Started(_))
    ));

    server.stop();
    let started = Instant::now();
    let err = storage
        .begin(request("k2"))
        .await
        .expect_err("the server is down");
    assert!(
        matches!(err, StorageError::Unavailable { .. }),
        "got {err:?}"
    );
    assert!(err.is_transient());
    assert!(
        std::error::Error::source(&err).is_some(),
        "the driver's error is kept as source"
    );
    // Bounded by the command timeout (1 s), far below this generous limit: no hang.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    let err = storage
        .acquire_lock("lock", Duration::from_secs(5))
        .await
        .expect_err("down");
    assert!(
        matches!(err, StorageError::Unavailable { .. }),
        "got {err:?}"
    );

    server.restart().expect("restart");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match storage.begin(request("k3")).await {
            Ok(outcome) => {
                assert!(
                    matches!(outcome, BeginOutcome::Started(_)),
                    "got {outcome:?}"
                );
                break;
            }
            Err(e) if e.is_transient() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no recovery after restart: {e:?}"),
        }
    }
    // The fresh server lost the scripts too: NOSCRIPT reloads them on the way.
    assert!(
        storage
            .acquire_lock("lock", Duration::from_secs(5))
            .await
            .expect("lock")
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_server_at_connect_is_unavailable() {
    let port = bgops_storage::testing::server::redis::free_port(false).expect("port");
    let err = RedisStorage::builder(format!("redis://127.0.0.1:{port}"))
        .connect_timeout(Duration::from_secs(1))
        .build()
        .await
        .expect_err("nobody listens there");
    assert!(
        matches!(err, StorageError::Unavailable { .. }),
        "got {err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_url_is_a_backend_error() {
    let err = RedisStorage::new("redis://127.0.0.1:not-a-port")
        .await
        .expect_err("bad port");
    assert!(matches!(err, StorageError::Backend { .. }), "got {err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_comes_through_the_url() {
    let server = RedisServer::spawn_with(&["--requirepass", "s3cret"]).expect("server");
    let url = format!("redis://:s3cret@127.0.0.1:{}", server.port());
    let storage = RedisStorage::builder(&url)
        .prefix(prefix())
        .build()
        .await
        .expect("connect");
    assert!(matches!(
        storage.begin(request("k")).await,
        Ok(BeginOutcome::Started(_))
    ));

    let wrong = format!("redis://:wrong@127.0.0.1:{}", server.port());
    let err = RedisStorage::builder(wrong)
        .connect_timeout(Duration::from_secs(2))
        .build()
        .await
        .expect_err("wrong password");
    assert!(
        !err.is_transient(),
        "a wrong password is not worth a retry: {err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_with_braces_is_refused() {
    for bad in ["", "app{x}", "app}"] {
        let err = RedisStorage::builder(redis_url()).prefix(bad).build().await;
        assert!(
            matches!(err, Err(StorageError::Backend { .. })),
            "{bad:?}: {err:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushed_script_cache_is_reloaded() {
    let server = own_server();
    let storage = RedisStorage::builder(server.url())
        .prefix(prefix())
        .build()
        .await
        .expect("connect");
    let BeginOutcome::Started(Claimed { token, .. }) =
        storage.begin(request("k")).await.expect("begin")
    else {
        panic!("expected Started")
    };
    raw_command(server.port(), &["SCRIPT", "FLUSH"]).expect("flush");
    storage
        .complete(
            "tenant",
            "k",
            &token,
            bgops_core::OperationOutcome::succeeded(json!(1)),
        )
        .await
        .expect("complete after SCRIPT FLUSH");
    raw_command(server.port(), &["SCRIPT", "FLUSH"]).expect("flush");
    assert!(matches!(
        storage.begin(request("k")).await,
        Ok(BeginOutcome::Completed(_))
    ));
}

/// A plain fred client on the shared test server, to write garbage under our keys.
async fn raw_client() -> fred::clients::Client {
    let client = Builder::from_config(Config::from_url(&redis_url()).expect("url"))
        .build()
        .expect("client");
    client.init().await.expect("connect");
    client
}

/// Every key under `prefix` (KEYS is fine here: a test's own prefix on a test server).
async fn keys_of(client: &fred::clients::Client, pattern: &str) -> Vec<String> {
    let cmd = CustomCommand::new_static("KEYS", None, false);
    let reply: Value = client
        .custom(cmd, vec![pattern.to_owned()])
        .await
        .expect("keys");
    reply
        .into_array()
        .into_iter()
        .filter_map(|v| v.as_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_under_our_keys_is_corrupt() {
    let prefix = prefix();
    let storage = RedisStorage::builder(redis_url())
        .prefix(&prefix)
        .build()
        .await
        .expect("connect");
    let client = raw_client().await;

    // Idempotency record replaced by a string: begin and get report Corrupt.
    storage.begin(request("a")).await.expect("begin");
    let rec = keys_of(&client, &format!("{prefix}:{{idem:*}}:rec:*")).await;
    assert_eq!(rec.len(), 1, "{rec:?}");
    let _: () = client
        .set(rec[0].as_str(), "garbage", None, None, false)
        .await
        .expect("set");
    let err = storage.begin(request("a")).await.expect_err("corrupt");
    assert!(
        matches!(&err, StorageError::Corrupt { key, .. } if key == &rec[0]),
        "got {err:?}"
    );
    let err = storage
        .get_idempotency("tenant", "a")
        .await
        .expect_err("corrupt");
    assert!(matches!(err, StorageError::Corrupt { .. }), "got {err:?}");

    // A hash with a field that is not what we write.
    let _: i64 = client.del(rec[0].as_str()).await.expect("del");
    let _: i64 = client
        .hset(
            rec[0].as_str(),
            vec![("status", "completed"), ("expires", "soon")],
        )
        .await
        .expect("hset");
    let err = storage.begin(request("a")).await.expect_err("corrupt");
    assert!(matches!(err, StorageError::Corrupt { .. }), "got {err:?}");

    // A lock key holding a hash.
    let lock = storage
        .acquire_lock("l", Duration::from_secs(30))
        .await
        .expect("acquire");
    assert!(lock.is_some());
    let lock_key = keys_of(&client, &format!("{prefix}:{{lock:*}}:lock:l")).await;
    let _: i64 = client.del(lock_key[0].as_str()).await.expect("del");
    let _: i64 = client
        .hset(lock_key[0].as_str(), ("x", "y"))
        .await
        .expect("hset");
    let err = storage
        .acquire_lock("l", Duration::from_secs(30))
        .await
        .expect_err("corrupt");
    assert!(matches!(err, StorageError::Corrupt { .. }), "got {err:?}");

    // A saga whose document is not JSON.
    let saga = SagaWorkflow::new(
        "tenant",
        "flow",
        vec![SagaStep::new("s", "op", json!({}))],
        time::OffsetDateTime::now_utc(),
    );
    storage.create_saga(&saga, None, &[]).await.expect("create");
    let saga_key = format!("{prefix}:{{saga}}:s:{}", saga.saga_id);
    let _: i64 = client
        .hset(saga_key.as_str(), ("doc", "{not json"))
        .await
        .expect("hset");
    let err = storage.get_saga(&saga.saga_id).await.expect_err("corrupt");
    assert!(matches!(err, StorageError::Corrupt { .. }), "got {err:?}");

    // A task whose payload is not JSON.
    let task = storage
        .submit_task(NewTask::new("q", "t", json!({"a": 1})))
        .await
        .expect("submit");
    let task_key = format!("{prefix}:{{task}}:t:{}", task.task.task_id);
    let _: i64 = client
        .hset(task_key.as_str(), ("payload", "{"))
        .await
        .expect("hset");
    let err = storage
        .get_task(&task.task.task_id)
        .await
        .expect_err("corrupt");
    assert!(matches!(err, StorageError::Corrupt { .. }), "got {err:?}");

    let mine = keys_of(&client, &format!("{prefix}:*")).await;
    let _: i64 = client.del(mine).await.expect("cleanup");
    let _ = client.quit().await;
}
