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
/// memory otherwise (feature `memory`).
///
/// # Errors
/// [`Error::Config`] when the backend's feature is off; the backend's error when it cannot
/// connect.
#[cfg_attr(not(feature = "redis"), allow(clippy::unused_async))] // only Redis connects
pub async fn storage_from_config(config: &Config) -> Result<Arc<dyn Storage>, Error> {
    match &config.redis_url {
        #[cfg(feature = "redis")]
        Some(url) => {
            let storage = bgops_redis::RedisStorage::new(url).await?;
            Ok(Arc::new(storage))
        }
        #[cfg(not(feature = "redis"))]
        Some(_) => Err(Error::Config(
            "REDIS_URL is set but the `redis` feature is off".into(),
        )),
        #[cfg(feature = "memory")]
        None => Ok(Arc::new(bgops_memory::MemoryStorage::new())),
        #[cfg(not(feature = "memory"))]
        None => Err(Error::Config(
            "no REDIS_URL and the `memory` feature is off".into(),
        )),
    }
}
