//! # bgops-postgres
//!
//! The PostgreSQL backend of bgops, on [`sqlx`]: [`PostgresStorage`] implements every
//! storage trait of `bgops-storage` (idempotency records, sagas, fenced locks, the task
//! queue, health and stats), and adds what only a database next to the business data can
//! give: **exactly-once inside the caller's own transaction**.
//!
//! - Every state change is one statement (`INSERT … ON CONFLICT … RETURNING`,
//!   `UPDATE … WHERE token = … RETURNING`), or one transaction; `claim_next_task` uses
//!   `FOR UPDATE SKIP LOCKED`; every time is the database's (`statement_timestamp()`),
//!   never the application's clock.
//! - The schema (`bgops` unless configured) is created by embedded, versioned migrations
//!   ([`PostgresStorage::migrate`]); `docs/postgres-schema.md` describes it.
//! - The transactional API ([`PostgresStorage::complete_in`],
//!   [`PostgresStorage::submit_task_in`], [`PostgresStorage::create_saga_in`],
//!   [`PostgresStorage::save_saga_in`], [`PostgresStorage::complete_task_in`]) writes the
//!   idempotency outcome, a new task, a new saga, a saga step's success or a task's
//!   completion with the caller's own statements, on the caller's `sqlx::Transaction`:
//!   they commit together or not at all.
//! - `LISTEN/NOTIFY`: a submit wakes idle workers ([`PostgresStorage::watch_queue`]), a
//!   completion wakes waiting duplicates ([`PostgresStorage::watch_completion`]).
//!
//! ```no_run
//! use bgops_postgres::PostgresStorage;
//! use bgops_storage::{BeginOutcome, BeginRequest, IdempotencyStore};
//! use bgops_core::OperationOutcome;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let storage = PostgresStorage::builder("postgres://postgres@127.0.0.1/app")
//!     .schema("bgops")
//!     .migrate(true)
//!     .build()
//!     .await?;
//! let request = BeginRequest::new("tenant", "order-42", "create_order", "token-1");
//! if let BeginOutcome::Started(claim) = storage.begin(request).await? {
//!     // The business write and the stored outcome commit together, or not at all.
//!     let mut tx = storage.pool().begin().await?;
//!     sqlx::query("INSERT INTO orders (id) VALUES ($1)").bind(42_i64).execute(&mut *tx).await?;
//!     storage
//!         .complete_in(&mut tx, "tenant", "order-42", &claim.token,
//!             OperationOutcome::succeeded(serde_json::json!({"order": 42})))
//!         .await?;
//!     tx.commit().await?;
//! }
//! # Ok(())
//! # }
//! ```

mod error;
mod idempotency;
mod lock;
mod notify;
mod saga;
mod schema;
mod sql;
mod storage;
mod task;

pub use error::PostgresError;
pub use notify::Wakeup;
pub use schema::SCHEMA_VERSION;
pub use storage::{PostgresBuilder, PostgresStorage};

/// The backend's name in errors, health and stats.
pub const BACKEND: &str = "postgres";
