#![doc = include_str!("../../../README.md")]
//!
//! ## Crate map
//!
//! | module | crate | feature |
//! |---|---|---|
//! | [`core`] | `bgops-core`: models, key derivation, clock, config, metrics hooks | always |
//! | [`storage`] | `bgops-storage`: the storage traits | always |
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
    Clock, Config, CoreError, IdempotencyKey, IdempotencyRecord, ManualClock, MetricsHooks,
    OperationStatus, SystemClock, derive_key,
};
pub use bgops_storage::{Storage, StorageError};
pub use error::Error;
pub use manager::{BackgroundOperationsManager, Claim, KeyStatus, ManagerBuilder};

#[cfg(feature = "memory")]
pub use bgops_memory::MemoryStorage;

/// The names most programs need: `use bgops::prelude::*;`.
pub mod prelude {
    pub use crate::{
        BackgroundOperationsManager, Claim, Config, Error, IdempotencyRecord, KeyStatus,
        OperationStatus, Storage, StorageError, derive_key,
    };
    #[cfg(feature = "memory")]
    pub use bgops_memory::MemoryStorage;
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
