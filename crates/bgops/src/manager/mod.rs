//! [`BackgroundOperationsManager`]: the seed's orchestrator, atomic underneath.

mod cleanup;
mod idempotency;

use std::sync::Arc;

use bgops_core::{Config, MetricsHooks};
use bgops_storage::Storage;
use tokio::sync::Mutex;

pub use idempotency::{Claim, KeyStatus};

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
    cleanup: Mutex<Option<cleanup::CleanupTask>>,
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
}

impl Default for ManagerBuilder {
    fn default() -> Self {
        Self {
            storage: None,
            config: Config::default(),
            metrics: bgops_core::metrics::noop(),
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
        Ok(BackgroundOperationsManager {
            inner: Arc::new(Inner {
                #[cfg(feature = "saga")]
                sagas: bgops_saga::SagaEngine::builder(storage.clone())
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

    /// Starts the background work: the cleanup loop (every `cleanup_interval`: purge
    /// expired idempotency records, return expired task leases) and, with the `saga`
    /// feature, the saga recoverer (resumes sagas whose executor died). Calling it twice
    /// is harmless.
    pub async fn start(&self) {
        let mut slot = self.inner.cleanup.lock().await;
        if slot.is_none() {
            *slot = Some(cleanup::CleanupTask::spawn(
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

    /// Runs one cleanup pass now; returns how many records were removed or requeued.
    ///
    /// # Errors
    /// The storage's error.
    pub async fn cleanup_now(&self) -> Result<u64, Error> {
        Ok(cleanup::run_once(self.inner.storage.as_ref(), self.inner.metrics.as_ref()).await?)
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
