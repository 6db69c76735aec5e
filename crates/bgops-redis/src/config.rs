//! [`RedisStorageBuilder`]: the connection settings of a [`RedisStorage`].

use std::time::Duration;

use bgops_core::id::SharedIds;
use bgops_storage::{StorageError, StorageResult};
use fred::prelude::{Builder, ClientLike, Config, ReconnectPolicy};

use crate::error::{self, BACKEND};
use crate::keys::Keys;
use crate::storage::RedisStorage;

// The constructors live here, not in `storage.rs`, so the two modules depend one way
// (config → storage) instead of in a circle.
impl RedisStorage {
    /// Connects to `url` with the default settings (prefix `bgops`).
    ///
    /// # Errors
    /// See [`RedisStorageBuilder::build`].
    pub async fn new(url: &str) -> StorageResult<Self> {
        RedisStorageBuilder::new(url).build().await
    }

    /// Settings for `url`; finish with [`RedisStorageBuilder::build`].
    pub fn builder(url: impl Into<String>) -> RedisStorageBuilder {
        RedisStorageBuilder::new(url)
    }
}

/// Settings of a [`RedisStorage`]; TLS (`rediss://`) and AUTH (`redis://user:pass@host`)
/// come through the URL, a cluster through `redis-cluster://host:port?node=host:port`.
#[derive(Debug, Clone)]
pub struct RedisStorageBuilder {
    ids: SharedIds,
    url: String,
    prefix: String,
    command_timeout: Duration,
    connect_timeout: Duration,
    pool_size: usize,
    retry_on_timeout: bool,
}

impl RedisStorageBuilder {
    /// Settings for `url` with the defaults: prefix `bgops`, 5 s command and connect
    /// timeouts, 4 connections, no retry.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            ids: bgops_core::id::random(),
            url: url.into(),
            prefix: "bgops".to_owned(),
            command_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            pool_size: 4,
            retry_on_timeout: false,
        }
    }

    /// The first part of every key (default `bgops`), so several applications can share
    /// one server. Non-empty, without `{` or `}` (those would change the hash tag).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one call may take before it fails with `StorageError::Unavailable`
    /// (the seed's `socket_timeout`).
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// How long connecting may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Number of pooled connections (at least 1); commands are pipelined on each.
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// Whether a command whose connection failed is sent again (up to 3 times in all)
    /// after the client reconnects. Off by default: a resent `begin` whose first reply was
    /// lost answers `InProgress` to its own caller, which is safe but surprising.
    pub fn retry_on_timeout(mut self, retry: bool) -> Self {
        self.retry_on_timeout = retry;
        self
    }

    /// Where task ids and lock tokens come from (default: UUIDv7 ids and random tokens);
    /// tests inject [`SequentialIds`](bgops_core::id::SequentialIds) for predictable ones.
    pub fn ids(mut self, ids: SharedIds) -> Self {
        self.ids = ids;
        self
    }

    /// Connects and returns the store.
    ///
    /// # Errors
    /// `StorageError::Backend` for a URL fred cannot use, `StorageError::Unavailable` when
    /// the server cannot be reached within the connect timeout.
    pub async fn build(self) -> StorageResult<RedisStorage> {
        // A brace in the prefix would become the hash tag and put every key in one slot
        // (or split a script's keys over slots).
        if self.prefix.is_empty() || self.prefix.contains(['{', '}']) {
            return Err(error::config(format!(
                "prefix {:?} must be non-empty and contain no braces",
                self.prefix
            )));
        }
        let config = Config::from_url(&self.url).map_err(error::config)?;
        let clustered = config.server.is_clustered();
        let command_timeout = self.command_timeout;
        let connect_timeout = self.connect_timeout;
        let attempts = if self.retry_on_timeout { 3 } else { 1 };
        let pool = Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = connect_timeout;
                c.internal_command_timeout = command_timeout;
                c.max_command_attempts = attempts;
            })
            .with_performance_config(|p| p.default_command_timeout = command_timeout)
            // Reconnect forever in the background, so calls succeed again once the
            // server is back; calls made meanwhile fail after their timeout.
            .set_policy(ReconnectPolicy::new_exponential(0, 50, 2_000, 2))
            .build_pool(self.pool_size)
            .map_err(error::config)?;
        match tokio::time::timeout(connect_timeout, pool.init()).await {
            Ok(Ok(_handle)) => {}
            Ok(Err(e)) => {
                let _ = pool.quit().await;
                return Err(error::from_fred(e, &self.url));
            }
            Err(_) => {
                let _ = pool.quit().await;
                return Err(StorageError::Unavailable {
                    backend: BACKEND,
                    source: format!("could not connect within {connect_timeout:?}").into(),
                });
            }
        }
        Ok(RedisStorage::from_parts(
            pool,
            Keys::new(&self.prefix),
            self.ids,
            clustered,
        ))
    }
}
