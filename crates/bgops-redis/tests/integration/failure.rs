//! Failure behaviour against real servers: a server that goes away and comes back, a
//! server that is not there, a flushed script cache (garbage under our keys: `faults`).

use std::time::{Duration, Instant};

use bgops_core::id::{IdGenerator, RandomIds};
use bgops_redis::RedisStorage;
use bgops_storage::{
    BeginOutcome, BeginRequest, Claimed, IdempotencyStore, LockStore, StorageError,
};
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
