//! Where the tests find a NATS server, and stores that clean up after themselves.

use std::time::Duration;

use bgops_nats::NatsStorage;

/// Long enough for a few calls on a busy 2-core machine, short enough to sleep out.
pub const SHORT_LEASE: Duration = Duration::from_millis(500);

/// The server URL (`BGOPS_TEST_NATS_URL`).
pub fn nats_url() -> String {
    std::env::var("BGOPS_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// A fresh store with a prefix of its own.
pub async fn storage_at(url: &str) -> NatsStorage {
    NatsStorage::builder(url)
        .prefix(format!("bgopstest-{}", uuid::Uuid::new_v4().simple()))
        .build()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

/// A store deleted (buckets and streams) when dropped.
pub struct Scoped(pub NatsStorage);

impl Scoped {
    pub async fn new() -> Self {
        Self(storage_at(&nats_url()).await)
    }
}

impl std::ops::Deref for Scoped {
    type Target = NatsStorage;
    fn deref(&self) -> &NatsStorage {
        &self.0
    }
}

impl Drop for Scoped {
    fn drop(&mut self) {
        let prefix = self.0.prefix().to_owned();
        // Drop cannot await: tear down on a thread of its own with its own runtime and
        // connection (the store's connection runs on the runtime this drop blocks).
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let url = nats_url();
                if let Ok(storage) = NatsStorage::builder(url).prefix(prefix).build().await {
                    let _ = storage.destroy().await;
                }
            });
        })
        .join();
    }
}
