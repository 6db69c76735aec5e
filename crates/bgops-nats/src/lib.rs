//! # bgops-nats
//!
//! The NATS JetStream backend of bgops on [async-nats](https://docs.rs/async-nats):
//! [`NatsStorage`] implements every store trait of `bgops-storage` (idempotency records,
//! fenced locks, sagas, the task queue) and `Storage` (health, stats), and passes the same
//! conformance suite as the memory and Redis backends.
//!
//! - **Compare-and-set on KV revisions**: every state change reads the entry with its
//!   revision, decides, and writes with `Nats-Expected-Last-Subject-Sequence`; a conflict
//!   reads again. A claim is a write against "nothing" (revision 0 or a purge marker).
//! - **Delivery by a work-queue stream**: one durable pull consumer per queue; a claim
//!   holds its message and delays its redelivery to the end of the lease, so a dead
//!   worker's task comes back without any sweeper. Attempts live in the task entry.
//! - **Indexes in a stream**: one subject per entry (`…ix.t.{status}.{queue}.{id}.…`);
//!   listing by status, queue or tenant reads the subjects matching a filter, never every
//!   key; idempotency expiry is indexed by minute, so purging visits only due minutes.
//! - **Time**: leases and expiry use the client's clock (injectable), see
//!   `docs/nats-schema.md`.
//!
//! ```no_run
//! use std::sync::Arc;
//! use bgops_nats::NatsStorage;
//! use bgops_storage::{BeginOutcome, BeginRequest, IdempotencyStore, Storage};
//! # async fn demo() -> Result<(), bgops_storage::StorageError> {
//! let storage = NatsStorage::builder("nats://127.0.0.1:4222")
//!     .prefix("myapp")
//!     .build()
//!     .await?;
//! let request = BeginRequest::new("tenant1", "order-42", "create_order", "token-1");
//! match storage.begin(request).await? {
//!     BeginOutcome::Started(claim) => { /* run it, then complete(.., &claim.token, ..) */ }
//!     other => println!("not run again: {other:?}"),
//! }
//! let storage: Arc<dyn Storage> = Arc::new(storage);
//! println!("{:?}", storage.health().await?.latency);
//! # Ok(()) }
//! ```

mod config;
mod error;
mod idempotency;
mod keys;
mod kv;
mod lock;
mod saga;
mod storage;
mod task;

pub use config::NatsStorageBuilder;
pub use error::NatsError;
pub use storage::NatsStorage;
