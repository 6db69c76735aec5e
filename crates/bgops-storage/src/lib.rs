//! # bgops-storage
//!
//! The storage contract of bgops: object-safe async traits whose state-changing methods
//! are each **one atomic step** in the backend (a Lua script on Redis, one locked map
//! entry in memory). Engines take `Arc<dyn …Store>`; backends implement all of them and
//! become an `Arc<dyn Storage>`.
//!
//! | trait | what it stores |
//! |---|---|
//! | [`IdempotencyStore`] | idempotency records: `begin` / `complete` / `release` under a lease token |
//! | [`SagaStore`] | saga state (fenced compare-and-set), history, recovery index |
//! | [`LockStore`] | fenced distributed locks |
//! | [`TaskStore`] | the idempotent task queue |
//!
//! ## Feature flags
//!
//! | feature | what it adds |
//! |---|---|
//! | `testing` | the conformance suite (`conformance_suite!`, module `testing`) that every backend's tests run |

mod error;
mod idempotency;
pub mod keepalive;
mod lock;
mod periodic;
mod saga;
mod task;

#[cfg(feature = "testing")]
pub mod testing;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

pub use error::{BoxError, StorageError, StorageResult};
pub use idempotency::{
    BeginOutcome, BeginRequest, Claimed, Completed, DEFAULT_LEASE, DEFAULT_TTL, IdempotencyStore,
    Sweep, record_lease_lost, record_not_found, validate_address,
};
pub use lock::{LockLease, LockStore};
pub use periodic::Periodic;
pub use saga::{CreateSaga, SagaFilter, SagaSaved, SagaStore};
pub use task::{
    NewTask, Submitted, TaskCompletion, TaskFilter, TaskReceipt, TaskSignals, TaskStore, TaskWakeup,
};

/// The result of a health check.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthReport {
    /// Backend name (`memory`, `redis`).
    pub backend: &'static str,
    /// Whether the backend answered.
    pub healthy: bool,
    /// Round-trip time of the check.
    pub latency: Duration,
    /// Backend-specific detail (server version, mode, ...).
    pub details: BTreeMap<String, String>,
}

/// Counts of what a backend holds, read from its indexes (never a full scan).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageStats {
    /// Backend name.
    pub backend: &'static str,
    /// Idempotency records (live or not yet purged).
    pub idempotency_records: u64,
    /// Sagas, by status name.
    pub sagas_by_status: BTreeMap<String, u64>,
    /// Tasks, by status name.
    pub tasks_by_status: BTreeMap<String, u64>,
    /// Locks currently held.
    pub locks: u64,
}

/// Everything a backend offers: every store trait plus health and stats. Object-safe:
/// use it as `Arc<dyn Storage>`, and upcast to `Arc<dyn IdempotencyStore>` (etc.) to hand
/// an engine only what it needs.
#[async_trait]
pub trait Storage: IdempotencyStore + SagaStore + LockStore + TaskStore + Send + Sync {
    /// The backend's name.
    fn backend_name(&self) -> &'static str;

    /// Checks that the backend answers.
    async fn health(&self) -> StorageResult<HealthReport>;

    /// Counts of what the backend holds.
    async fn stats(&self) -> StorageResult<StorageStats>;
}
