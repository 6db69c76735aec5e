//! # bgops-redis
//!
//! The Redis backend of bgops on [fred](https://docs.rs/fred): [`RedisStorage`]
//! implements every store trait of `bgops-storage` (idempotency records, fenced locks,
//! sagas, the task queue) and passes the same conformance suite as the memory backend.
//!
//! - **One round trip per state change**: each atomic step is one Lua script
//!   (`lua/*.lua`, compiled in), run with EVALSHA and loaded again after NOSCRIPT.
//! - **Server time**: leases and expiry are decided with `redis.call('TIME')`, so client
//!   clocks never matter; records expire through `PEXPIREAT`.
//! - **Cluster-ready**: every key carries a hash tag so each script touches one slot
//!   (layout in `docs/redis-schema.md`).
//! - **Typed failures**: an unreachable server is `StorageError::Unavailable` after the
//!   command timeout, a foreign value under one of our keys is `StorageError::Corrupt`;
//!   the client reconnects by itself.
//!
//! ```no_run
//! use std::sync::Arc;
//! use bgops_redis::RedisStorage;
//! use bgops_storage::{BeginOutcome, BeginRequest, IdempotencyStore, Storage};
//! # async fn demo() -> Result<(), bgops_storage::StorageError> {
//! let storage = RedisStorage::builder("redis://127.0.0.1:6379")
//!     .prefix("myapp_bgops")
//!     .command_timeout(std::time::Duration::from_secs(5))
//!     .build()
//!     .await?;
//! match storage.begin(BeginRequest::new("tenant1", "order-42", "create_order")).await? {
//!     BeginOutcome::Started { token, .. } => { /* run it, then complete(.., &token, ..) */ }
//!     other => println!("not run again: {other:?}"),
//! }
//! let storage: Arc<dyn Storage> = Arc::new(storage);
//! println!("{:?}", storage.health().await?.latency);
//! # Ok(()) }
//! ```

mod codec;
mod config;
mod error;
mod idempotency;
mod keys;
mod lock;
mod saga;
mod scripts;
mod storage;
mod task;

pub use config::RedisStorageBuilder;
pub use error::RedisError;
pub use storage::RedisStorage;
