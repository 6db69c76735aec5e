//! [`RedisStorage`] itself, health and stats.

use std::collections::BTreeMap;
use std::time::Instant;

use async_trait::async_trait;
use bgops_core::id::SharedIds;
use bgops_storage::{HealthReport, Storage, StorageResult, StorageStats};
use fred::clients::Pool;
use fred::interfaces::{ClientLike, HashesInterface, SortedSetsInterface};
use fred::types::Value;

use crate::codec::Fields;
use crate::error::{self, BACKEND};
use crate::keys::{BUCKETS, Keys};
use crate::scripts::{COUNT_LIVE, LuaScript};

/// The Redis storage backend: every store trait of `bgops-storage`, each state change one
/// Lua script (one round trip), on a pool of fred connections.
#[derive(Clone)]
pub struct RedisStorage {
    pub(crate) pool: Pool,
    pub(crate) keys: Keys,
    /// Task ids and lock tokens.
    pub(crate) ids: SharedIds,
    clustered: bool,
}

impl std::fmt::Debug for RedisStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStorage")
            .field("prefix", &self.keys.prefix())
            .field("clustered", &self.clustered)
            .field("pool_size", &self.pool.size())
            .finish_non_exhaustive()
    }
}

impl RedisStorage {
    pub(crate) fn from_parts(pool: Pool, keys: Keys, ids: SharedIds, clustered: bool) -> Self {
        Self {
            pool,
            keys,
            ids,
            clustered,
        }
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        self.keys.prefix()
    }

    /// Closes every connection.
    pub async fn close(&self) {
        let _ = self.pool.quit().await;
    }

    /// Runs `script` with text arguments, mapping failures to a typed error about its
    /// first key.
    pub(crate) async fn run(
        &self,
        script: &LuaScript,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> StorageResult<Value> {
        self.run_values(script, keys, args.into_iter().map(Value::from).collect())
            .await
    }

    /// Runs `script` with arguments that may be raw bytes.
    pub(crate) async fn run_values(
        &self,
        script: &LuaScript,
        keys: Vec<String>,
        args: Vec<Value>,
    ) -> StorageResult<Value> {
        let context = keys.first().cloned().unwrap_or_default();
        script
            .run(&self.pool, keys, args)
            .await
            .map_err(|e| error::from_fred(e, &context))
    }

    /// Runs `script` with text arguments; failures name `key` (when the first key is
    /// not the one a reader cares about).
    pub(crate) async fn run_about(
        &self,
        script: &LuaScript,
        key: &str,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> StorageResult<Value> {
        script
            .run(
                &self.pool,
                keys,
                args.into_iter().map(Value::from).collect(),
            )
            .await
            .map_err(|e| error::from_fred(e, key))
    }

    async fn count_live(&self, index: String) -> StorageResult<u64> {
        let reply = self.run(&COUNT_LIVE, vec![index], vec![]).await?;
        reply
            .as_u64()
            .ok_or_else(|| error::unexpected(COUNT_LIVE.name, reply))
    }

    pub(crate) async fn zcard(&self, key: String) -> StorageResult<u64> {
        self.pool
            .zcard::<u64, _>(key.as_str())
            .await
            .map_err(|e| error::from_fred(e, &key))
    }

    /// The fields of the hash at `key` (one `HGETALL`); `None` when it does not exist.
    pub(crate) async fn read_hash(&self, key: &str) -> StorageResult<Option<Fields>> {
        let hash: Value = self
            .pool
            .hgetall(key)
            .await
            .map_err(|e| error::from_fred(e, key))?;
        let fields = Fields::from_value(key, hash)?;
        Ok((!fields.is_empty()).then_some(fields))
    }
}

#[async_trait]
impl Storage for RedisStorage {
    fn backend_name(&self) -> &'static str {
        BACKEND
    }

    async fn health(&self) -> StorageResult<HealthReport> {
        let started = Instant::now();
        let pong: String = self
            .pool
            .next()
            .ping(None)
            .await
            .map_err(|e| error::from_fred(e, "PING"))?;
        let latency = started.elapsed();
        let mut details = BTreeMap::new();
        details.insert("reply".to_owned(), pong);
        details.insert(
            "mode".to_owned(),
            if self.clustered {
                "cluster"
            } else {
                "standalone"
            }
            .to_owned(),
        );
        details.insert("prefix".to_owned(), self.keys.prefix().to_owned());
        details.insert("pool_size".to_owned(), self.pool.size().to_string());
        if let Some(version) = self.pool.next().server_version() {
            details.insert("server_version".to_owned(), version.to_string());
        }
        Ok(HealthReport {
            backend: BACKEND,
            healthy: true,
            latency,
            details,
        })
    }

    async fn stats(&self) -> StorageResult<StorageStats> {
        let mut stats = StorageStats {
            backend: BACKEND,
            ..StorageStats::default()
        };
        for b in 0..BUCKETS {
            stats.idempotency_records += self.zcard(self.keys.idempotency_index(b)).await?;
            stats.locks += self.count_live(self.keys.lock_index(b)).await?;
        }
        stats.sagas_by_status = self.saga_counts().await?;
        stats.tasks_by_status = self.task_counts().await?;
        Ok(stats)
    }
}
