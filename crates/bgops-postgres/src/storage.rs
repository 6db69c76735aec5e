//! [`PostgresStorage`], its builder, health and stats.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bgops_core::id::{self, SharedIds};
use bgops_storage::{HealthReport, Storage, StorageResult, StorageStats};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Row};

use crate::BACKEND;
use crate::error::{PostgresError, map};
use crate::notify::Notifier;
use crate::schema;
use crate::sql::Sql;

/// The PostgreSQL backend: every storage trait of bgops on one connection pool, in one
/// schema. Cheap to clone (an `Arc`).
#[derive(Debug, Clone)]
pub struct PostgresStorage {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) pool: PgPool,
    pub(crate) sql: Sql,
    pub(crate) ids: SharedIds,
    pub(crate) notify: bool,
    pub(crate) notifier: Notifier,
}

/// Builds a [`PostgresStorage`]: `PostgresStorage::builder(url)…build().await`.
#[derive(Debug)]
pub struct PostgresBuilder {
    url: String,
    pool: Option<PgPool>,
    schema: String,
    max_connections: u32,
    acquire_timeout: Duration,
    migrate: bool,
    notify: bool,
    ids: SharedIds,
}

impl PostgresBuilder {
    /// The schema holding bgops's tables (default `bgops`): a plain lowercase identifier.
    /// Like the Redis prefix, it lets several applications (or tests) share a database.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The pool's size (default 10).
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How long a call waits for a pooled connection before it fails as `Unavailable`
    /// (default 5 s).
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Whether `build` applies the migrations (default `false`: `build` checks that the
    /// schema is up to date and says to migrate if not).
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// Whether submits and completions send `NOTIFY` (default `true`); without it,
    /// [`PostgresStorage::wait_for_task`] and [`PostgresStorage::wait_for_completion`]
    /// only ever time out.
    pub fn notify(mut self, notify: bool) -> Self {
        self.notify = notify;
        self
    }

    /// The id generator for task ids and lock tokens (default random UUIDv7 / v4).
    pub fn ids(mut self, ids: SharedIds) -> Self {
        self.ids = ids;
        self
    }

    /// Connects (or takes the given pool), then migrates or checks the schema.
    ///
    /// # Errors
    /// [`PostgresError::Connect`] when the server does not answer,
    /// [`PostgresError::SchemaMissing`] when the schema is not migrated (and `migrate`
    /// is off), [`PostgresError::InvalidSchema`], [`PostgresError::InvalidUrl`].
    pub async fn build(self) -> Result<PostgresStorage, PostgresError> {
        if !schema::valid_schema_name(&self.schema) {
            return Err(PostgresError::InvalidSchema(self.schema));
        }
        let pool = if let Some(pool) = self.pool {
            pool
        } else {
            let options: PgConnectOptions = self.url.parse().map_err(PostgresError::InvalidUrl)?;
            PgPoolOptions::new()
                .max_connections(self.max_connections)
                .acquire_timeout(self.acquire_timeout)
                // A broken connection is found when it is given back (sqlx pings it
                // then), so a call does not pay a ping round trip before it starts.
                .test_before_acquire(false)
                .connect_with(options)
                .await
                .map_err(|source| PostgresError::Connect {
                    url: redact(&self.url),
                    source,
                })?
        };
        if self.migrate {
            schema::migrate(&pool, &self.schema).await?;
        } else {
            schema::check(&pool, &self.schema).await?;
        }
        let sql = Sql::new(&self.schema);
        let notifier = Notifier::new(&sql);
        Ok(PostgresStorage {
            inner: Arc::new(Inner {
                pool,
                sql,
                ids: self.ids,
                notify: self.notify,
                notifier,
            }),
        })
    }
}

/// The URL without its password, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl PostgresStorage {
    /// A builder connecting to `url` (`postgres://user[:password]@host:port/database`).
    pub fn builder(url: impl Into<String>) -> PostgresBuilder {
        PostgresBuilder {
            url: url.into(),
            pool: None,
            schema: "bgops".to_owned(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            migrate: false,
            notify: true,
            ids: id::random(),
        }
    }

    /// A builder on the application's own pool (so that bgops and the business queries
    /// share connections).
    pub fn with_pool(pool: PgPool) -> PostgresBuilder {
        let mut builder = Self::builder(String::new());
        builder.pool = Some(pool);
        builder
    }

    /// Applies the embedded migrations that the schema lacks (idempotent, safe to run
    /// from several processes at once). Returns the versions applied.
    ///
    /// # Errors
    /// [`PostgresError::Migrate`] naming the migration that failed.
    pub async fn migrate(&self) -> Result<Vec<i32>, PostgresError> {
        schema::migrate(&self.inner.pool, &self.inner.sql.schema).await
    }

    /// The connection pool (to begin the transactions the `*_in` methods take).
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The schema holding bgops's tables.
    pub fn schema(&self) -> &str {
        &self.inner.sql.schema
    }

    pub(crate) fn sql(&self) -> &Sql {
        &self.inner.sql
    }

    pub(crate) async fn conn(&self) -> StorageResult<sqlx::pool::PoolConnection<sqlx::Postgres>> {
        self.inner.pool.acquire().await.map_err(map)
    }
}

/// A duration in microseconds, for `$n * interval '1 microsecond'`.
pub(crate) fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

#[async_trait]
impl Storage for PostgresStorage {
    fn backend_name(&self) -> &'static str {
        BACKEND
    }

    async fn health(&self) -> StorageResult<HealthReport> {
        let started = Instant::now();
        let row = sqlx::query("SELECT current_setting('server_version'), current_database()")
            .fetch_one(&self.inner.pool)
            .await;
        let latency = started.elapsed();
        let mut details = BTreeMap::new();
        details.insert("schema".to_owned(), self.schema().to_owned());
        let healthy = match row {
            Ok(row) => {
                let version: String = row.try_get(0).map_err(map)?;
                let database: String = row.try_get(1).map_err(map)?;
                details.insert("server_version".to_owned(), version);
                details.insert("database".to_owned(), database);
                true
            }
            Err(e) => {
                details.insert("error".to_owned(), e.to_string());
                false
            }
        };
        details.insert("pool_size".to_owned(), self.inner.pool.size().to_string());
        Ok(HealthReport {
            backend: BACKEND,
            healthy,
            latency,
            details,
        })
    }

    async fn stats(&self) -> StorageResult<StorageStats> {
        let rows = sqlx::query(&self.sql().stats)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(map)?;
        let mut stats = StorageStats {
            backend: BACKEND,
            ..StorageStats::default()
        };
        for row in rows {
            let kind: String = row.try_get(0).map_err(map)?;
            let status: String = row.try_get(1).map_err(map)?;
            let count = u64::try_from(row.try_get::<i64, _>(2).map_err(map)?).unwrap_or(0);
            match kind.as_str() {
                "idempotency" => stats.idempotency_records = count,
                "saga" => {
                    stats.sagas_by_status.insert(status, count);
                }
                "task" => {
                    stats.tasks_by_status.insert(status, count);
                }
                _ => stats.locks = count,
            }
        }
        Ok(stats)
    }
}

/// Runs a bounded cleanup statement (`$1` the limit, `$2` an optional age in
/// microseconds) answering (done, due); `more` when more were due than done.
pub(crate) async fn sweep(
    storage: &PostgresStorage,
    sql: &str,
    limit: usize,
    age: Option<Duration>,
) -> StorageResult<bgops_storage::Sweep> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX - 1);
    let mut query = sqlx::query(sql).bind(limit);
    if let Some(age) = age {
        query = query.bind(micros(age));
    }
    let row = query.fetch_one(&storage.inner.pool).await.map_err(map)?;
    let done: i64 = row.try_get(0).map_err(map)?;
    let due: i64 = row.try_get(1).map_err(map)?;
    Ok(bgops_storage::Sweep {
        done: u64::try_from(done).unwrap_or(0),
        corrupt: Vec::new(),
        more: due > done,
    })
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redact("postgres://app:secret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(redact("postgres://db/x"), "postgres://db/x");
    }
}
