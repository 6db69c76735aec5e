//! # bgops-saga
//!
//! The saga engine of bgops: journaled, fenced, recoverable, streaming.
//!
//! A saga is a list of steps, each with an optional compensation. The engine runs the
//! steps in order under the saga's **lease**; every write is a compare-and-set on the
//! lease's fencing number, so an executor whose lease was taken over stops with
//! [`SagaError::LeaseLost`] and never overwrites the new holder's work. A step's intent
//! (`Running`, attempt n) is stored **before** its handler runs, its output after. A step
//! that fails after its retries ([`Backoff`]: exponential with jitter; terminal errors are not
//! retried) turns the saga to `Compensating`: the steps that succeeded are compensated in
//! reverse, each with its own retries, and a failing compensation is recorded without
//! stopping the others. The end state is `Completed`, `Compensated` or
//! `CompensationFailed` (which [`SagaEngine::retry_compensation`] can repair).
//!
//! A saga whose executor died is resumed by [`SagaEngine::recover`] or by the background
//! [`Recoverer`]: steps that succeeded are not run again, a step left started runs again,
//! a compensating saga only compensates. Each handler call gets a stable
//! [`StepContext::step_key`] (`{saga_id}:{index}`, `…:comp`) plus its attempt and fence, to
//! make its external effects idempotent.
//!
//! A step whose outcome is unknown and that may not run again (the saga's deadline passed
//! while it ran, or it was left started with no attempt left) is treated as maybe done: it
//! is compensated with the others, so compensations must be no-ops when there is nothing
//! to undo.
//!
//! **Store writes.** Each transition is one fenced `save_saga`, and "step i succeeded" goes
//! in the same write as "step i+1 started": `execute` of a saga of n steps costs n + 2
//! writes (lease, n intents, end). [`SagaEngine::start`] creates the saga already leased
//! with its first intent: n + 1 writes in all, creation included (`create` then `execute`:
//! n + 3).
//!
//! **One event.** Every fact of an execution is one [`SagaEvent`] (from `bgops-core`): the
//! executor builds it once, streams it to whoever watches
//! ([`SagaEngine::execute_stream`], SSE via [`SagaEvent::to_sse`]) and journals the same
//! value with the next write ([`SagaEngine::history`]).
//!
//! **Leases** are renewed while a handler runs by the workspace's one keep-alive
//! ([`bgops_storage::keepalive`]); a lease lost to another executor drops the handler
//! call (the new holder reruns the step under the same step key). Lease expiries are
//! set by the store's clock only.
//!
//! Two ways to define a saga, one engine underneath:
//! - **dynamic** (the seed's `create_saga_workflow`): [`SagaStep`]s
//!   naming operations whose handlers are registered by name and take and return JSON;
//! - **typed** (seed 004): a [`TypedSaga`] of [`Step`]s with `act` / `compensate` over your
//!   own serde context type, stored after each step; [`Fallback`] steps with a
//!   [`CircuitBreaker`].
//!
//! ```
//! use std::sync::Arc;
//! use bgops_core::{SagaStatus, SagaStep};
//! use bgops_memory::MemoryStorage;
//! use bgops_saga::{SagaEngine, StepError};
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), bgops_saga::SagaError> {
//! let engine = SagaEngine::new(Arc::new(MemoryStorage::new()));
//! engine.register_operation_handler("create_user", |step| async move {
//!     Ok(json!({ "user_id": "456", "key": step.step_key() }))
//! });
//! engine.register_operation_handler("charge", |_step| async move {
//!     Err(StepError::terminal("card declined"))
//! });
//! engine.register_compensation_handler("delete_user", |_step| async move { Ok(json!(null)) });
//!
//! let steps = vec![
//!     SagaStep::new("Create user", "create_user", json!({ "name": "ada" }))
//!         .with_compensation("delete_user", json!({})),
//!     SagaStep::new("Charge", "charge", json!({ "amount": 10 })),
//! ];
//! let saga = engine.create("tenant1", "onboarding", steps, Some("signup-ada")).await?;
//! let outcome = engine.execute(&saga.saga_id).await?;
//! assert!(!outcome.succeeded());
//! assert_eq!(outcome.status, SagaStatus::Compensated);
//!
//! // Or create and run in one go, watching its events (an SSE endpoint forwards these).
//! let steps = vec![SagaStep::new("Create user", "create_user", json!({ "name": "bob" }))];
//! let (_id, mut events) = engine.start_stream(bgops_saga::NewSaga::new("tenant1", "onboarding", steps))?;
//! while let Some(event) = events.recv().await {
//!     print!("{}", event.to_sse());
//! }
//! # Ok(())
//! # }
//! ```

mod child;
mod config;
mod engine;
mod error;
mod event;
mod executor;
mod fallback;
mod handler;
mod recovery;
mod state;
mod template;
mod typed;

pub use child::{CHILD_SAGA_COMPENSATION, CHILD_SAGA_OPERATION, child_saga_step};
pub use config::SagaConfig;
pub use engine::{Creation, NewSaga, SagaEngine, SagaEngineBuilder};
pub use error::{SagaError, SagaResult};
pub use event::SagaEventStream;
pub use fallback::{CircuitBreaker, CircuitState, Fallback};
pub use handler::{BoxFuture, StepContext, StepError, StepErrorKind};
pub use recovery::{Recoverer, RecoveryReport};
pub use state::SagaOutcome;
pub use typed::{Parallel, SagaContext, Step, TypedOutcome, TypedSaga, TypedSagaHandle};

pub use bgops_core::id::{IdGenerator, SharedIds};
pub use bgops_core::{
    Backoff, SagaEvent, SagaEventKind, SagaStatus, SagaStep, SagaStepStatus, SagaWorkflow,
};
