//! [`BackgroundOperationsManager`]: the seed's orchestrator, atomic underneath.

mod cleanup;
mod idempotency;
mod operation;

use std::sync::Arc;

use bgops_core::{Config, MetricsHooks};
use bgops_idempotency::IdempotencyEngine;
use bgops_storage::{IdempotencyStore, Periodic, Storage};
use tokio::sync::Mutex;

pub use bgops_idempotency::{Claim, KeyStatus};
pub use cleanup::CleanupReport;

use crate::Error;

/// The central handle of bgops: idempotency keys (and, with the `saga` feature, saga
/// workflows) over one storage backend, plus the background cleanup loop.
///
/// Cheap to clone; clones share the storage and the cleanup loop.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), bgops::Error> {
/// use bgops::prelude::*;
/// use serde_json::json;
///
/// let manager = BackgroundOperationsManager::in_memory();
/// let status = manager
///     .create_idempotency_key("tenant1", Some("user1"), "send_email", None,
///         Some(&json!({"to": "user@example.com"})), None)
///     .await?;
/// let KeyStatus::Created(claim) = status else { unreachable!("first call creates") };
/// manager.complete_idempotent_operation(&claim, Some(json!({"message_id": "123"})), None).await?;
///
/// let record = manager.check_idempotency("tenant1", claim.key()).await?.expect("stored");
/// assert_eq!(record.status, OperationStatus::Completed);
/// // The same facts as a general background operation, by id:
/// let op = manager.get_operation("tenant1", claim.key()).await?.expect("found");
/// assert_eq!(op.status, OperationStatus::Completed);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct BackgroundOperationsManager {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    storage: Arc<dyn Storage>,
    config: Config,
    metrics: Arc<dyn MetricsHooks>,
    /// The one idempotency engine: the manager's API and the HTTP middleware share it,
    /// so TTL, lease and metrics are wired once.
    engine: IdempotencyEngine,
    cleanup: Mutex<Option<Periodic>>,
    #[cfg(feature = "saga")]
    pub(crate) sagas: bgops_saga::SagaEngine,
    #[cfg(feature = "saga")]
    recoverer: Mutex<Option<bgops_saga::Recoverer>>,
}

impl std::fmt::Debug for BackgroundOperationsManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackgroundOperationsManager")
            .field("backend", &self.inner.storage.backend_name())
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Builds a [`BackgroundOperationsManager`].
#[must_use]
pub struct ManagerBuilder {
    storage: Option<Arc<dyn Storage>>,
    config: Config,
    metrics: Arc<dyn MetricsHooks>,
    #[cfg(feature = "saga")]
    saga_config: bgops_saga::SagaConfig,
}

impl Default for ManagerBuilder {
    fn default() -> Self {
        Self {
            storage: None,
            config: Config::default(),
            metrics: bgops_core::metrics::noop(),
            #[cfg(feature = "saga")]
            saga_config: bgops_saga::SagaConfig::default(),
        }
    }
}

impl ManagerBuilder {
    /// The storage backend (required unless the `memory` feature supplies the default).
    pub fn storage(mut self, storage: Arc<dyn Storage>) -> Self {
        self.storage = Some(storage);
        self
    }

    /// TTLs and cleanup interval.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Metrics hooks (the seed's `register_metrics_hooks`).
    pub fn metrics(mut self, metrics: Arc<dyn MetricsHooks>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The saga engine's settings (feature `saga`): executor lease, step retry and
    /// compensation backoff, compensation retries, step timeout, recovery interval and
    /// batch, retention of finished sagas. The recoverer that [`start`] runs uses them.
    ///
    /// ```
    /// use std::time::Duration;
    /// use bgops::BackgroundOperationsManager;
    /// use bgops::saga::{Backoff, SagaConfig};
    ///
    /// let manager = BackgroundOperationsManager::builder()
    ///     .saga_config(
    ///         SagaConfig::default()
    ///             .with_lease(Duration::from_secs(10))
    ///             .with_retry(Backoff::new(Duration::from_millis(50), Duration::from_secs(5)))
    ///             .with_recovery_interval(Duration::from_secs(2))
    ///             .with_retention(Some(Duration::from_secs(24 * 3600))),
    ///     )
    ///     .build()?;
    /// assert_eq!(manager.saga_engine().config().lease, Duration::from_secs(10));
    /// # Ok::<(), bgops::Error>(())
    /// ```
    ///
    /// [`start`]: BackgroundOperationsManager::start
    #[cfg(feature = "saga")]
    pub fn saga_config(mut self, config: bgops_saga::SagaConfig) -> Self {
        self.saga_config = config;
        self
    }

    /// Builds the manager. Without a storage, uses a new in-memory store (feature
    /// `memory`).
    ///
    /// # Errors
    /// [`Error::Config`] when no storage was given and the `memory` feature is off.
    pub fn build(self) -> Result<BackgroundOperationsManager, Error> {
        let storage = match self.storage {
            Some(storage) => storage,
            None => default_storage()?,
        };
        let store: Arc<dyn IdempotencyStore> = storage.clone();
        let engine = IdempotencyEngine::builder(store)
            .ttl(self.config.default_ttl)
            .lease(self.config.default_lease)
            .metrics(self.metrics.clone())
            .build();
        Ok(BackgroundOperationsManager {
            inner: Arc::new(Inner {
                engine,
                #[cfg(feature = "saga")]
                sagas: bgops_saga::SagaEngine::builder(storage.clone())
                    .config(self.saga_config)
                    .metrics(self.metrics.clone())
                    .build(),
                #[cfg(feature = "saga")]
                recoverer: Mutex::new(None),
                storage,
                config: self.config,
                metrics: self.metrics,
                cleanup: Mutex::new(None),
            }),
        })
    }
}

#[cfg(feature = "memory")]
#[allow(clippy::unnecessary_wraps)] // same signature as the fallible variant without `memory`
fn default_storage() -> Result<Arc<dyn Storage>, Error> {
    Ok(Arc::new(bgops_memory::MemoryStorage::new()))
}

#[cfg(not(feature = "memory"))]
fn default_storage() -> Result<Arc<dyn Storage>, Error> {
    Err(Error::Config(
        "no storage given and the `memory` feature is off".into(),
    ))
}

impl BackgroundOperationsManager {
    /// A builder.
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder::default()
    }

    /// A manager over `storage` with the default configuration (the seed's
    /// `BackgroundOperationsManager(storage=storage)`).
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        Self::from_parts(storage, Config::default())
    }

    fn from_parts(storage: Arc<dyn Storage>, config: Config) -> Self {
        match Self::builder().storage(storage).config(config).build() {
            Ok(manager) => manager,
            // `build` only fails when no storage is given.
            Err(_) => unreachable!("storage was given"),
        }
    }

    /// A manager over a new in-memory store.
    #[cfg(feature = "memory")]
    pub fn in_memory() -> Self {
        Self::new(Arc::new(bgops_memory::MemoryStorage::new()))
    }

    /// A manager configured from the environment ([`Config::from_env`]): Redis when
    /// `REDIS_URL` is set (feature `redis`), otherwise memory.
    ///
    /// # Errors
    /// Bad environment values, an unreachable Redis, or `REDIS_URL` set without the
    /// `redis` feature.
    pub async fn from_env() -> Result<Self, Error> {
        let config = Config::from_env()?;
        let storage = crate::storage_from_config(&config).await?;
        Ok(Self::from_parts(storage, config))
    }

    /// The storage backend.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.inner.storage
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The idempotency engine (store, TTL, lease and metrics of this manager): what the
    /// HTTP middleware runs on
    /// ([`add_background_operations_middleware`](crate::add_background_operations_middleware)),
    /// and what `run_once` and the key API below use.
    pub fn idempotency_engine(&self) -> &IdempotencyEngine {
        &self.inner.engine
    }

    /// Starts the background work: the cleanup loop (every `cleanup_interval`: purge
    /// expired idempotency records, return expired task leases) and, with the `saga`
    /// feature, the saga recoverer (resumes sagas whose executor died). Calling it twice
    /// is harmless.
    pub async fn start(&self) {
        let mut slot = self.inner.cleanup.lock().await;
        if slot.is_none() {
            *slot = Some(cleanup::spawn(
                self.inner.storage.clone(),
                self.inner.config.cleanup_interval,
                self.inner.metrics.clone(),
            ));
        }
        #[cfg(feature = "saga")]
        {
            let mut recoverer = self.inner.recoverer.lock().await;
            if recoverer.is_none() {
                *recoverer = Some(self.inner.sagas.spawn_recoverer());
            }
        }
    }

    /// Stops the background work and waits for it to finish its current pass.
    pub async fn shutdown(&self) {
        let task = self.inner.cleanup.lock().await.take();
        if let Some(task) = task {
            task.stop().await;
        }
        #[cfg(feature = "saga")]
        {
            let recoverer = self.inner.recoverer.lock().await.take();
            if let Some(recoverer) = recoverer {
                recoverer.shutdown().await;
            }
        }
    }

    /// Runs one cleanup pass now: purges expired idempotency records and returns expired
    /// task leases to their queues, batch after batch until nothing is due; corrupt
    /// entries are skipped and reported, never stopping the pass.
    ///
    /// # Errors
    /// The storage's error (the pass stops at the failing batch; what was done before is
    /// kept).
    pub async fn cleanup_now(&self) -> Result<CleanupReport, Error> {
        Ok(cleanup::pass(self.inner.storage.as_ref(), self.inner.metrics.as_ref()).await?)
    }

    /// Storage health (the seed's health check).
    ///
    /// # Errors
    /// The storage's error.
    pub async fn health(&self) -> Result<bgops_storage::HealthReport, Error> {
        Ok(self.inner.storage.health().await?)
    }

    /// Storage statistics.
    ///
    /// # Errors
    /// The storage's error.
    pub async fn stats(&self) -> Result<bgops_storage::StorageStats, Error> {
        Ok(self.inner.storage.stats().await?)
    }
}
