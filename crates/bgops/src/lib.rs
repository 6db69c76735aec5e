#![doc = include_str!("../../../README.md")]
//!
//! ## Crate map
//!
//! | module | crate | feature |
//! |---|---|---|
//! | [`core`] | `bgops-core`: models, key derivation, clock, config, metrics hooks | always |
//! | [`storage`] | `bgops-storage`: the storage traits | always |
//! | [`idempotency`] | `bgops-idempotency`: the idempotency engine | always |
//! | `memory` | `bgops-memory`: in-memory backend | `memory` (default) |
//! | `redis` | `bgops-redis`: Redis backend on fred | `redis` |
//! | `postgres` | `bgops-postgres`: PostgreSQL backend on sqlx, transactional API | `postgres` |
//! | `nats` | `bgops-nats`: NATS JetStream backend on async-nats | `nats` |
//! | `saga` | `bgops-saga`: saga engine | `saga` |
//! | `queue` | `bgops-queue`: idempotent task queue | `queue` |
//! | `axum` | `bgops-axum`: HTTP idempotency middleware | `axum` |

mod error;
mod manager;
#[cfg(feature = "saga")]
mod saga_api;

use std::sync::Arc;

pub use bgops_core as core;
pub use bgops_idempotency as idempotency;
pub use bgops_storage as storage;

#[cfg(feature = "axum")]
pub use bgops_axum as axum;
#[cfg(feature = "memory")]
pub use bgops_memory as memory;
#[cfg(feature = "nats")]
pub use bgops_nats as nats;
#[cfg(feature = "postgres")]
pub use bgops_postgres as postgres;
#[cfg(feature = "queue")]
pub use bgops_queue as queue;
#[cfg(feature = "redis")]
pub use bgops_redis as redis;
#[cfg(feature = "saga")]
pub use bgops_saga as saga;

pub use bgops_core::{
    BackgroundOperation, Clock, Config, CoreError, IdempotencyKey, IdempotencyRecord, ManualClock,
    MetricsHooks, OperationKind, OperationStatus, SystemClock, derive_key,
};
pub use bgops_idempotency::{Completion, IdempotencyEngine, IdempotencyError};
pub use bgops_storage::{Storage, StorageError};
pub use error::Error;
pub use manager::{BackgroundOperationsManager, Claim, CleanupReport, KeyStatus, ManagerBuilder};

#[cfg(feature = "memory")]
pub use bgops_memory::MemoryStorage;

/// The names most programs need: `use bgops::prelude::*;`.
pub mod prelude {
    pub use crate::{
        BackgroundOperation, BackgroundOperationsManager, Claim, Completion, Config, Error,
        IdempotencyRecord, KeyStatus, OperationStatus, Storage, StorageError, derive_key,
    };
    #[cfg(feature = "memory")]
    pub use bgops_memory::MemoryStorage;
}

/// The seed's one-liner: adds the idempotency middleware (POST/PATCH, `Idempotency-Key`,
/// `X-Tenant-ID` scope, 409 in flight, fail closed) to a router, on the manager's engine:
/// the manager's store, TTL, lease and metrics hooks, wired once. Use
/// [`IdempotencyLayer::with_config`](bgops_axum::IdempotencyLayer::with_config) with
/// [`BackgroundOperationsManager::idempotency_engine`] for any other setting.
#[cfg(feature = "axum")]
pub fn add_background_operations_middleware<S>(
    router: bgops_axum::axum::Router<S>,
    manager: &BackgroundOperationsManager,
) -> bgops_axum::axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router.layer(bgops_axum::IdempotencyLayer::new(
        manager.idempotency_engine().clone(),
    ))
}

/// The storage that `config` asks for: Redis when `redis_url` is set (feature `redis`),
/// PostgreSQL when `database_url` is set (feature `postgres`; migrations are applied),
/// NATS JetStream when `nats_url` is set (feature `nats`), memory otherwise (feature
/// `memory`).
///
/// # Errors
/// [`Error::Config`] when more than one URL is set or the backend's feature is off; the
/// backend's error when it cannot connect.
#[allow(clippy::unused_async)] // with no network backend compiled in, nothing is awaited
pub async fn storage_from_config(config: &Config) -> Result<Arc<dyn Storage>, Error> {
    let urls = [
        config.redis_url.is_some(),
        config.database_url.is_some(),
        config.nats_url.is_some(),
    ];
    if urls.iter().filter(|set| **set).count() > 1 {
        return Err(Error::Config(
            "set one backend URL only (REDIS_URL, DATABASE_URL or NATS_URL)".into(),
        ));
    }
    if let Some(url) = &config.redis_url {
        #[cfg(feature = "redis")]
        return Ok(Arc::new(bgops_redis::RedisStorage::new(url).await?));
        #[cfg(not(feature = "redis"))]
        return Err(Error::Config(format!(
            "REDIS_URL={url} is set but the `redis` feature is off"
        )));
    }
    if let Some(url) = &config.database_url {
        #[cfg(feature = "postgres")]
        {
            let storage = bgops_postgres::PostgresStorage::builder(url.as_str())
                .migrate(true)
                .build()
                .await
                .map_err(StorageError::from)?;
            return Ok(Arc::new(storage));
        }
        #[cfg(not(feature = "postgres"))]
        return Err(Error::Config(format!(
            "DATABASE_URL is set ({} bytes) but the `postgres` feature is off",
            url.len()
        )));
    }
    if let Some(url) = &config.nats_url {
        #[cfg(feature = "nats")]
        return Ok(Arc::new(
            bgops_nats::NatsStorage::connect(url.as_str()).await?,
        ));
        #[cfg(not(feature = "nats"))]
        return Err(Error::Config(format!(
            "NATS_URL={url} is set but the `nats` feature is off"
        )));
    }
    #[cfg(feature = "memory")]
    return Ok(Arc::new(bgops_memory::MemoryStorage::new()));
    #[cfg(not(feature = "memory"))]
    Err(Error::Config(
        "no backend URL is set and the `memory` feature is off".into(),
    ))
}
