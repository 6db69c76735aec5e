//! Where the tests find a NATS server (the one URL policy of
//! `bgops_storage::testing::server::nats`), and stores that clean up after themselves.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bgops_nats::NatsStorage;
use bgops_storage::testing::server::nats::test_url;
use bgops_storage::testing::{Fixture, TimeControl};

/// Long enough for a few calls on a busy 2-core machine, short enough to sleep out.
pub const SHORT_LEASE: Duration = Duration::from_millis(500);

/// The server URL: `BGOPS_TEST_NATS_URL`, or outside CI a throwaway server.
pub fn nats_url() -> String {
    test_url()
}

/// A fresh store with a prefix of its own.
pub async fn storage_at(url: &str) -> NatsStorage {
    NatsStorage::builder(url)
        .prefix(format!("bgopstest-{}", uuid::Uuid::new_v4().simple()))
        .build()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

/// Deletes a store's buckets and streams (by prefix) when dropped.
pub struct Cleanup {
    url: String,
    prefix: String,
}

impl Cleanup {
    pub fn of(url: &str, storage: &NatsStorage) -> Self {
        Self {
            url: url.to_owned(),
            prefix: storage.prefix().to_owned(),
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (url, prefix) = (self.url.clone(), self.prefix.clone());
        // Drop cannot await: tear down on a thread of its own with its own runtime and
        // connection (the store's connection runs on the runtime this drop may block).
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                if let Ok(storage) = NatsStorage::builder(url).prefix(prefix).build().await {
                    let _ = storage.destroy().await;
                }
            });
        })
        .join();
    }
}

/// A store deleted (buckets and streams) when dropped.
pub struct Scoped(pub NatsStorage, #[allow(dead_code)] Cleanup);

impl Scoped {
    pub async fn new() -> Self {
        let url = nats_url();
        let storage = storage_at(&url).await;
        let cleanup = Cleanup::of(&url, &storage);
        Self(storage, cleanup)
    }
}

impl std::ops::Deref for Scoped {
    type Target = NatsStorage;
    fn deref(&self) -> &NatsStorage {
        &self.0
    }
}

/// Leases use the client's clock and redelivery the server's timers: time passes by
/// sleeping. Holds the fixture's cleanup, which runs when the case drops its fixture.
pub struct Sleep(#[allow(dead_code)] Cleanup);

#[async_trait]
impl TimeControl for Sleep {
    async fn advance(&self, by: Duration) {
        tokio::time::sleep(by).await;
    }
}

pub async fn fixture() -> Fixture {
    let url = nats_url();
    let storage = storage_at(&url).await;
    let cleanup = Cleanup::of(&url, &storage);
    Fixture {
        storage: Arc::new(storage),
        time: Arc::new(Sleep(cleanup)),
        short_lease: SHORT_LEASE,
    }
}
