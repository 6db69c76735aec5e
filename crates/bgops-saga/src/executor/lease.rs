//! Handler calls and backoff sleeps under the lease keep-alive, with the step timeout and
//! the saga deadline.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bgops_storage::SagaSaved;
use bgops_storage::keepalive::{Kept, OnLost, keep_alive};
use serde_json::Value;
use tokio::time::Instant;

use super::{CallError, Run};
use crate::error::{SagaError, SagaResult};
use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::group::MemberResult;
use crate::handler::{BoxFuture, ErasedHandler, HandlerOutput, StepContext, StepError};

impl Run<'_> {
    /// Runs one handler call, keeping the lease alive while it runs and enforcing the step
    /// timeout and (forward only) the saga deadline.
    pub(super) async fn call(
        &mut self,
        handler: &dyn ErasedHandler,
        ctx: StepContext,
        context: Value,
        forward: bool,
    ) -> Result<HandlerOutput, CallError> {
        let fut = handler.call(ctx, context);
        let step_timeout = self.inner.config.step_timeout;
        let step_deadline = step_timeout.map(|t| Instant::now() + t);
        let saga_deadline = if forward {
            self.deadline_instant()
        } else {
            None
        };
        let work = async move {
            tokio::select! {
                biased;
                r = fut => r.map_err(CallError::Step),
                () = sleep_until(step_deadline), if step_deadline.is_some() => {
                    let t = step_timeout.unwrap_or_default();
                    Err(CallError::Step(StepError::retryable(format!(
                        "handler timed out after {t:?}"
                    ))))
                }
                () = sleep_until(saga_deadline), if saga_deadline.is_some() => {
                    Err(CallError::Deadline)
                }
            }
        };
        let r = match self.kept_alive(work).await {
            Ok(r) => r,
            Err(e) => Err(CallError::Saga(e)),
        };
        self.now = self.inner.clock.now();
        r
    }

    /// Waits for the next member of a parallel group to finish, keeping the lease alive,
    /// under the saga deadline. `None` when the deadline passed first.
    pub(super) async fn next_member(
        &mut self,
        running: &mut FuturesUnordered<BoxFuture<MemberResult>>,
    ) -> SagaResult<Option<MemberResult>> {
        let saga_deadline = self.deadline_instant();
        let work = async move {
            tokio::select! {
                biased;
                r = running.next() => r,
                () = sleep_until(saga_deadline), if saga_deadline.is_some() => None,
            }
        };
        let r = self.kept_alive(work).await;
        self.now = self.inner.clock.now();
        r
    }

    /// Sleeps out a backoff, keeping the lease alive.
    pub(super) async fn sleep(&mut self, delay: Duration) -> SagaResult<()> {
        if delay.is_zero() {
            return Ok(());
        }
        self.kept_alive(tokio::time::sleep(delay)).await?;
        self.now = self.inner.clock.now();
        Ok(())
    }

    /// Runs `work` under [`keep_alive`]: every third of the lease the saga is saved
    /// unchanged (no events) with a renewed lease. A lost lease drops the work.
    pub(super) async fn kept_alive<T>(&mut self, work: impl Future<Output = T>) -> SagaResult<T> {
        let every = (self.inner.config.lease / 3).max(Duration::from_millis(1));
        let version = AtomicU64::new(self.saga.version);
        let last: Mutex<Option<SagaSaved>> = Mutex::new(None);
        let kept = {
            let (this, version, last) = (&*self, &version, &last);
            keep_alive(
                work,
                every,
                move || async move {
                    // Renewals are rare (a slow handler); the copy costs nothing on the
                    // fast path.
                    let mut saga = this.saga.clone();
                    saga.version = version.load(Ordering::Relaxed);
                    let saved = this
                        .inner
                        .store
                        .save_saga(&saga, this.fence, &[], Some(this.inner.config.lease))
                        .await?;
                    version.store(saved.version, Ordering::Relaxed);
                    *last.lock().unwrap_or_else(PoisonError::into_inner) = Some(saved);
                    Ok(())
                },
                OnLost::Cancel,
            )
            .await
        };
        if let Some(saved) = last.into_inner().unwrap_or_else(PoisonError::into_inner) {
            self.saved(saved);
        }
        match kept {
            Kept::Finished(out) | Kept::FinishedAfterLoss(out, _) => Ok(out),
            Kept::Cancelled(e) => Err(SagaError::from_store(&self.saga_id, e)),
        }
    }

    pub(super) fn timed_out(&self) -> bool {
        self.deadline.is_some_and(|d| self.now >= d)
    }

    pub(super) fn deadline_instant(&self) -> Option<Instant> {
        let d = self.deadline?;
        let left = d - self.inner.clock.now();
        Some(Instant::now() + left.try_into().unwrap_or(Duration::ZERO))
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
