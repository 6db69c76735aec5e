//! # bgops-idempotency
//!
//! The idempotency engine of bgops: the one place where the claim protocol of an
//! [`IdempotencyStore`](bgops_storage::IdempotencyStore) is driven. The HTTP middleware
//! (`bgops-axum`) and the manager (`bgops`) are adapters over it.
//!
//! | piece | what it does |
//! |---|---|
//! | [`IdempotencyEngine::begin`] | claims a key: [`KeyStatus::Created`] for exactly one caller, else in progress / completed / mismatch; metrics counted here |
//! | [`Claim`] | the right to run once: plain data (serde), completable from another process |
//! | [`IdempotencyEngine::complete`] | records the outcome; on a transient store error keeps the lease alive and retries with backoff until stored or moot |
//! | [`IdempotencyEngine::spawn_claimed`] | runs claimed work detached from its caller, lease kept alive, then stores or releases |
//! | [`IdempotencyEngine::hold`] | the claim guard for hand-driven claims: keeps the lease alive while a future runs |
//! | [`IdempotencyEngine::run_once`] | all of the above for one closure |
//! | [`KeyRequest::for_operation`], [`fingerprint`], [`scoped_key`], [`bounded_operation_type`] | the key recipes |
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), bgops_idempotency::IdempotencyError> {
//! use std::sync::Arc;
//! use bgops_idempotency::{IdempotencyEngine, KeyRequest};
//! use serde_json::json;
//!
//! let engine = IdempotencyEngine::builder(Arc::new(bgops_memory::MemoryStorage::new())).build();
//! let params = json!({"to": "user@example.com"});
//! let request = KeyRequest::for_operation("tenant1", None, "send_email", None, Some(&params))?;
//! let first = engine.run_once(request.clone(), || async {
//!     Ok::<_, std::io::Error>(json!({"message_id": 1}))
//! }).await?;
//! let again = engine.run_once(request, || async {
//!     Ok::<_, std::io::Error>(json!({"message_id": 2})) // not run: the key is used
//! }).await?;
//! assert_eq!(first.ok(), again.ok()); // the stored value, twice
//! # Ok(()) }
//! ```
//!
//! ## The rules (docs/semantics.md §2)
//!
//! - **Leases are renewed while work runs** (every third of the lease, through
//!   `bgops_storage::keepalive`, continuing through transient store errors). A lost
//!   lease does not stop the work: an effect that may be happening is finished.
//! - **An effect that happened is never forgotten**: a completion the store did not take
//!   is retried with backoff while the lease is kept alive, until stored or until the
//!   record's TTL makes it moot. A duplicate sees the key *in progress* meanwhile.
//! - **A caller that goes away hands nothing back silently**: claimed work runs in its
//!   own task and is finished and stored; a claim is never released on drop. It is
//!   released only when the work says it had no effect ([`Settle::Release`]) or panicked.
//! - **A `begin` whose answer was lost is harmless**: the token is the caller's, and the
//!   claim it may have made is released in the background once the store answers.
//! - **Errors are classified** ([`IdempotencyError`]): only transient errors may be
//!   retried or "fail open"; bad input is the caller's; corrupt data names the record.

mod claim;
mod engine;
mod error;
mod request;
mod run;

pub use claim::{Claim, KeyStatus};
pub use engine::{
    Completion, EngineBuilder, IdempotencyEngine, PendingCompletion, default_completion_backoff,
};
pub use error::{IdempotencyError, IdempotencyResult};
pub use request::{KeyRequest, bounded_operation_type, fingerprint, scoped_key};
pub use run::{ClaimedRun, Ran, Settle, Stored};
