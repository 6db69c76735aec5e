//! Where the tests find PostgreSQL, and a fresh schema per test, dropped after it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use bgops_postgres::PostgresStorage;
use bgops_storage::testing::server::postgres as launcher;
use bgops_storage::testing::{Fixture, TimeControl};

pub use launcher::PostgresServer;

/// Long enough for a few calls on a busy 2-core machine, short enough to sleep out.
pub const SHORT_LEASE: Duration = Duration::from_millis(400);

/// The server's URL: `BGOPS_TEST_POSTGRES_URL`, or (outside CI) a throwaway server.
pub fn url() -> String {
    launcher::url()
}

/// Drops its schema when dropped (from a thread of its own: `Drop` cannot await).
pub struct SchemaGuard {
    url: String,
    schema: String,
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                use sqlx::Connection as _;
                if let Ok(mut conn) = sqlx::PgConnection::connect(&url).await {
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                        .execute(&mut conn)
                        .await;
                }
            });
        });
        let _ = dropped.join();
    }
}

/// A migrated store in a schema of its own on `url`, and the guard that drops it.
pub async fn storage_at(url: &str) -> (PostgresStorage, SchemaGuard) {
    let schema = format!("bgops_test_{}", uuid::Uuid::new_v4().simple());
    let storage = PostgresStorage::builder(url)
        .schema(&schema)
        .max_connections(4)
        .migrate(true)
        .build()
        .await
        .unwrap_or_else(|e| panic!("cannot set up {schema} at {url}: {e}; {}", launcher::HOW));
    (
        storage,
        SchemaGuard {
            url: url.to_owned(),
            schema,
        },
    )
}

/// A migrated store in a schema of its own.
pub async fn storage() -> (PostgresStorage, SchemaGuard) {
    storage_at(&url()).await
}

/// PostgreSQL decides expiry by its own clock, so time passes by sleeping. Holds the
/// fixture's schema guard, so the schema goes when the fixture does.
pub struct Sleep(#[allow(dead_code)] SchemaGuard);

#[async_trait]
impl TimeControl for Sleep {
    async fn advance(&self, by: Duration) {
        tokio::time::sleep(by).await;
    }
}

/// A fresh schema for one conformance case.
pub async fn fixture() -> Fixture {
    let (storage, guard) = storage().await;
    Fixture {
        storage: Arc::new(storage),
        time: Arc::new(Sleep(guard)),
        short_lease: SHORT_LEASE,
    }
}
