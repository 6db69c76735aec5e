//! The one lease keep-alive of the workspace: idempotency claims, saga executor leases
//! and task claims are all kept alive by [`keep_alive`], with one set of failure rules.
//!
//! The rules:
//! - the lease is renewed every `every` (a third of the lease is the usual choice) while
//!   the work runs; work that finishes on its first poll costs no timer;
//! - a transient store error (`StorageError::is_transient`) is retried sooner (every
//!   quarter period) and the work goes on: the effect may be happening, and the lease may
//!   still be ours once the store is back;
//! - a definite loss (`LeaseLost`, `NotFound`: someone took over, or the record is gone)
//!   ends renewal; with [`OnLost::Cancel`] the work is dropped at once (a task handler
//!   whose attempt is fenced out), with [`OnLost::Continue`] it runs to its end and the
//!   loss is reported beside its output (an idempotent operation whose effect may already
//!   have happened must finish, never be abandoned half-way);
//! - any other error (corrupt data, a backend fault) is reported like a loss.

use std::future::Future;
use std::time::Duration;

use crate::StorageError;

/// What to do with the work when its lease is definitely lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnLost {
    /// Drop the work at once.
    Cancel,
    /// Let the work run to its end.
    Continue,
}

/// How kept-alive work ended.
#[derive(Debug)]
pub enum Kept<T> {
    /// The work finished and every renewal that was due succeeded (or was retried
    /// through transient errors).
    Finished(T),
    /// The work finished ([`OnLost::Continue`]) but its lease was lost on the way.
    FinishedAfterLoss(T, StorageError),
    /// The lease was lost and the work was dropped ([`OnLost::Cancel`]).
    Cancelled(StorageError),
}

/// Runs `work` while calling `renew` every `every`; see the module docs for the rules.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::time::Duration;
/// use bgops_storage::keepalive::{keep_alive, Kept, OnLost};
/// let renewals = Arc::new(AtomicU32::new(0));
/// let counter = Arc::clone(&renewals);
/// let kept = keep_alive(
///     async { tokio::time::sleep(Duration::from_millis(35)).await; 7 },
///     Duration::from_millis(10),
///     move || { counter.fetch_add(1, Ordering::Relaxed); async { Ok(()) } },
///     OnLost::Cancel,
/// ).await;
/// assert!(matches!(kept, Kept::Finished(7)));
/// assert!(renewals.load(Ordering::Relaxed) >= 2);
/// # }
/// ```
pub async fn keep_alive<W, R, RF>(
    work: W,
    every: Duration,
    mut renew: R,
    on_lost: OnLost,
) -> Kept<W::Output>
where
    W: Future,
    R: FnMut() -> RF,
    RF: Future<Output = Result<(), StorageError>>,
{
    let every = every.max(Duration::from_millis(1));
    let mut work = std::pin::pin!(work);
    // Most work finishes on its first poll: no timer is made for it.
    if let std::task::Poll::Ready(out) = futures_poll(&mut work).await {
        return Kept::Finished(out);
    }
    let mut next = every;
    let mut lost: Option<StorageError> = None;
    loop {
        if let Some(error) = lost.take() {
            return match on_lost {
                OnLost::Cancel => Kept::Cancelled(error),
                OnLost::Continue => Kept::FinishedAfterLoss(work.await, error),
            };
        }
        tokio::select! {
            biased;
            out = &mut work => return Kept::Finished(out),
            () = tokio::time::sleep(next) => {
                match renew().await {
                    Ok(()) => next = every,
                    Err(error) if error.is_transient() => {
                        tracing::warn!(%error, "lease renewal failed; retrying while the work runs");
                        next = (every / 4).max(Duration::from_millis(1));
                    }
                    Err(error) => lost = Some(error),
                }
            }
        }
    }
}

/// Polls a future once without a runtime timer.
async fn futures_poll<F: Future + Unpin>(fut: &mut F) -> std::task::Poll<F::Output> {
    std::future::poll_fn(|cx| std::task::Poll::Ready(std::pin::Pin::new(&mut *fut).poll(cx))).await
}
