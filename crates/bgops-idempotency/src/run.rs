//! Claimed work run detached from its caller, and `run_once` on top of it.
//!
//! The one rule for a claim whose caller goes away (the HTTP client disconnects, a
//! `run_once` future is dropped): work that may have begun is never handed back silently.
//! The work runs in its own tokio task, so dropping the caller's future does not cancel
//! it; the task keeps the lease alive, then stores the outcome (retrying while the store
//! is unreachable) or releases the claim when the work itself says it had no effect.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use bgops_core::OperationOutcome;
use bgops_storage::Completed;
use futures::FutureExt as _;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::claim::{Claim, KeyStatus};
use crate::engine::{Completion, IdempotencyEngine};
use crate::error::{IdempotencyError, IdempotencyResult};
use crate::request::KeyRequest;

/// What claimed work decided about its claim.
#[derive(Debug)]
pub enum Settle<T> {
    /// Store this outcome (the effect happened, or its failure is to be remembered); the
    /// caller gets `T`.
    Complete(T, OperationOutcome),
    /// Give the claim back: the work had no effect (or its failure must not be
    /// remembered), so a retry may run it again; the caller gets `T`.
    Release(T),
}

impl<T> Settle<T> {
    /// The same decision over another value.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Settle<U> {
        match self {
            Self::Complete(value, outcome) => Settle::Complete(f(value), outcome),
            Self::Release(value) => Settle::Release(f(value)),
        }
    }
}

/// What became of the claim after the work.
#[derive(Debug)]
pub enum Stored {
    /// The outcome is stored.
    Yes(Completed),
    /// The store is unreachable; the outcome is being retried in the background (lease
    /// kept alive) until stored or moot.
    Pending,
    /// The claim was released, as the work asked.
    Released,
    /// The outcome could not be stored and will not be: the claim was lost (another
    /// caller took over after the lease ran out) or the record is gone.
    No(IdempotencyError),
}

impl Stored {
    /// Whether the outcome is (or is being) kept.
    pub fn is_kept(&self) -> bool {
        matches!(self, Self::Yes(_) | Self::Pending)
    }
}

/// What the work returned, and what became of its claim.
#[derive(Debug)]
pub struct Ran<T> {
    /// The work's value.
    pub value: T,
    /// The claim's fate.
    pub stored: Stored,
}

type PanicPayload = Box<dyn Any + Send + 'static>;

/// The caller's end of claimed work running in its own task: a future of its [`Ran`]
/// value. Dropping it does not stop the work. A panic in the work is resumed in the
/// caller when this future is polled (after the claim was released).
#[must_use = "the work runs anyway; await this to get its value"]
pub struct ClaimedRun<T> {
    rx: oneshot::Receiver<Result<Ran<T>, PanicPayload>>,
}

impl<T> std::fmt::Debug for ClaimedRun<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClaimedRun")
    }
}

impl<T> Future for ClaimedRun<T> {
    type Output = IdempotencyResult<Ran<T>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Ok(ran))) => Poll::Ready(Ok(ran)),
            Poll::Ready(Ok(Err(panic))) => std::panic::resume_unwind(panic),
            // The task was dropped unfinished: the runtime is shutting down.
            Poll::Ready(Err(_)) => Poll::Ready(Err(IdempotencyError::Aborted)),
        }
    }
}

impl IdempotencyEngine {
    /// Runs claimed `work` in its own task, detached from the caller: the claim's lease is
    /// kept alive while it runs, then its [`Settle`] decides: the outcome is stored (see
    /// [`complete`](Self::complete): never forgotten on a transient error) or the claim is
    /// released. A panicking work releases the claim and the panic is resumed in whoever
    /// awaits the [`ClaimedRun`].
    ///
    /// The caller gets the value once the first completion attempt answered; if the store
    /// was unreachable, [`Stored::Pending`] says the retries go on in the background.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn spawn_claimed<T, W>(&self, claim: Claim, work: W) -> ClaimedRun<T>
    where
        T: Send + 'static,
        W: Future<Output = Settle<T>> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let engine = self.clone();
        tokio::spawn(async move {
            let work = AssertUnwindSafe(work).catch_unwind();
            let settled = match engine.keep_claim_alive(&claim, work).await {
                Ok(settled) | Err((settled, _)) => settled,
            };
            let ran = match settled {
                Err(panic) => {
                    // A panic is a failure known to the middleware's policy: not stored.
                    let _ = engine.release(&claim).await;
                    Err(panic)
                }
                Ok(Settle::Release(value)) => {
                    let stored = match engine.release(&claim).await {
                        Ok(()) => Stored::Released,
                        Err(error) => Stored::No(error),
                    };
                    Ok(Ran { value, stored })
                }
                Ok(Settle::Complete(value, outcome)) => {
                    let stored = match engine.complete(&claim, outcome).await {
                        Ok(Completion::Stored(completed)) => Stored::Yes(completed),
                        Ok(Completion::Pending(_)) => Stored::Pending,
                        Err(error) => {
                            tracing::warn!(%error, record = %claim.record_name(), "the outcome of claimed work was not stored");
                            Stored::No(error)
                        }
                    };
                    Ok(Ran { value, stored })
                }
            };
            // The caller may be gone (disconnected, dropped): the work is done anyway.
            let _ = tx.send(ran);
        });
        ClaimedRun { rx }
    }

    /// Runs `operation` at most once for the key of `request`: claims it, runs the
    /// operation detached from this future (dropping it does not cancel the operation),
    /// keeps the lease alive while it runs, stores its value and returns it; a later call
    /// with the same request returns the stored value without running anything.
    ///
    /// The inner `Result` is the operation's own: an `Err` releases the claim (nothing is
    /// remembered; a retry runs it again) and is handed back as is.
    ///
    /// # Errors
    /// [`IdempotencyError::InProgress`] when another caller is running it now,
    /// [`IdempotencyError::Mismatch`] when the key was used for another request,
    /// [`IdempotencyError::StoredFailure`] when a remembered failure is the stored outcome,
    /// and the errors of [`begin`](Self::begin).
    pub async fn run_once<F, Fut, E>(
        &self,
        request: KeyRequest,
        operation: F,
    ) -> IdempotencyResult<Result<Value, E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Value, E>> + Send + 'static,
        E: Send + 'static,
    {
        match self.begin(request).await? {
            KeyStatus::Created(claim) => {
                let work = operation();
                let ran = self
                    .spawn_claimed(claim, async move {
                        match work.await {
                            Ok(value) => {
                                let outcome = OperationOutcome::succeeded(value.clone());
                                Settle::Complete(Ok(value), outcome)
                            }
                            Err(error) => Settle::Release(Err(error)),
                        }
                    })
                    .await?;
                // An effect that happened is returned even if its record was lost: the
                // caller must not run it again.
                Ok(ran.value)
            }
            KeyStatus::Completed(record) => match &record.error {
                Some(error) => Err(IdempotencyError::StoredFailure {
                    key: record.key.clone(),
                    error: error.clone(),
                }),
                None => Ok(Ok(record.result.clone().unwrap_or(Value::Null))),
            },
            KeyStatus::InProgress {
                key,
                lease_expires_at,
            } => Err(IdempotencyError::InProgress {
                key,
                lease_expires_at,
            }),
            KeyStatus::Mismatch { key } => Err(IdempotencyError::Mismatch { key }),
        }
    }
}
