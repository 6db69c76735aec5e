//! # bgops-redis
//!
//! The Redis backend of bgops on [fred](https://docs.rs/fred): [`RedisStorage`]
//! implements every store trait of `bgops-storage` (idempotency records, fenced locks,
//! sagas, the task queue) and passes the same conformance suite as the memory backend.
//!
//! - **One round trip per state change**: each atomic step is one Lua script
//!   (`lua/*.lua`, compiled in), run with EVALSHA and loaded again after NOSCRIPT.
//! - **Server time**: leases and expiry are decided with `redis.call('TIME')`, so client
//!   clocks never matter; records expire through `PEXPIREAT` at their TTL (in flight too:
//!   only a takeover, never a vanished record, lets a retry run an operation again).
//! - **Lean hot path**: `begin` answers a fresh claim with three times and `complete` with
//!   two; a replay reads the record with one `HMGET` of fixed fields, the payload as raw
//!   bytes (no base64, no JSON wrapping).
//! - **No partial writes**: every script checks everything it reads before its first write
//!   (Lua does not roll back), so garbage under a key is `StorageError::Corrupt` with
//!   nothing changed; cleanups skip and name a corrupt entry and go on.
//! - **Key names in Rust only**: `keys.rs` builds every key; scripts get them in `KEYS`
//!   (or read names Rust wrote, e.g. index members are record keys), never concatenate one.
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
//! let token = "7f3c0a9e5b2d4c1f8e6a0b9c8d7e6f5a"; // made by the caller (an IdGenerator)
//! match storage.begin(BeginRequest::new("tenant1", "order-42", "create_order", token)).await? {
//!     BeginOutcome::Started(claimed) => { /* run it, then complete(.., &claimed.token, ..) */ }
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
