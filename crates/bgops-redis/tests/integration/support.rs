//! Where the tests find a Redis server: the one launcher and URL policy of
//! `bgops_storage::testing::server::redis` (`BGOPS_TEST_REDIS_URL` if set, else a
//! throwaway server), plus fixtures.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bgops_redis::RedisStorage;
use bgops_storage::testing::server::redis as launcher;
use bgops_storage::testing::{Fixture, TimeControl};

pub use launcher::{RedisServer, command as raw_command, delete_prefix};

/// Redis decides expiry by its own clock, so time passes by sleeping.
pub struct Sleep;

#[async_trait]
impl TimeControl for Sleep {
    async fn advance(&self, by: Duration) {
        tokio::time::sleep(by).await;
    }
}

/// Long enough for a few calls on a busy 2-core machine, short enough to sleep out.
pub const SHORT_LEASE: Duration = Duration::from_millis(400);

/// The single-node URL (see the launcher's URL policy).
pub fn redis_url() -> String {
    launcher::url()
}

/// The cluster URL (see the launcher's URL policy).
pub fn cluster_url() -> String {
    launcher::cluster_url()
}

/// A unique key prefix for one test.
pub fn prefix() -> String {
    format!("bgops-test-{}", uuid::Uuid::new_v4().simple())
}

/// A fresh store with a prefix of its own, so tests never touch each other's keys.
pub async fn storage_at(url: &str) -> RedisStorage {
    RedisStorage::builder(url)
        .prefix(prefix())
        .pool_size(2)
        .build()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

/// A throwaway server this test owns (stop, restart, pause).
pub fn own_server() -> RedisServer {
    RedisServer::spawn().unwrap_or_else(|e| panic!("cannot start redis-server: {e}"))
}

pub async fn fixture() -> Fixture {
    let storage = storage_at(&redis_url()).await;
    Fixture {
        storage: Arc::new(storage),
        time: Arc::new(Sleep),
        short_lease: SHORT_LEASE,
    }
}

pub async fn cluster_fixture() -> Fixture {
    let storage = storage_at(&cluster_url()).await;
    Fixture {
        storage: Arc::new(storage),
        time: Arc::new(Sleep),
        short_lease: SHORT_LEASE,
    }
}
