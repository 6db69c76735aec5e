//! What a worker runs for each task: a [`TaskHandler`] given a [`TaskContext`].

use std::fmt;
use std::future::Future;

use async_trait::async_trait;
use bgops_core::Task;
use serde_json::Value;
use tokio::sync::watch;

/// What a handler sees of the task it runs.
#[derive(Debug, Clone)]
pub struct TaskContext {
    /// The task as claimed.
    pub task: Task,
    /// This attempt's number (1-based). It is the fencing number of the claim: pass it on
    /// to external systems that can reject writes from stale attempts.
    pub attempt: u32,
    /// The worker running it.
    pub worker_id: String,
    cancel: watch::Receiver<bool>,
}

impl TaskContext {
    pub(crate) fn new(
        task: Task,
        attempt: u32,
        worker_id: String,
        cancel: watch::Receiver<bool>,
    ) -> Self {
        Self {
            task,
            attempt,
            worker_id,
            cancel,
        }
    }

    /// The task's payload.
    pub fn payload(&self) -> &Value {
        &self.task.payload
    }

    /// The task's id.
    pub fn task_id(&self) -> &str {
        &self.task.task_id
    }

    /// Whether the worker gave up on this attempt (its lease was lost, or shutdown's grace
    /// period ran out). The handler is dropped at its next await point anyway; this lets a
    /// blocking section stop early.
    pub fn is_cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    /// Resolves when the attempt is cancelled (see [`TaskContext::is_cancelled`]).
    pub async fn cancelled(&self) {
        let mut rx = self.cancel.clone();
        if rx.wait_for(|c| *c).await.is_err() {
            // The worker is gone without cancelling: this attempt will never be cancelled.
            std::future::pending::<()>().await;
        }
    }
}

/// A handler's failure. Retryable by default: the task is tried again after the backoff
/// while attempts remain. A [permanent](TaskError::permanent) error fails it at once.
///
/// Any `std::error::Error` converts into a retryable `TaskError`, so `?` works in handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskError {
    message: String,
    permanent: bool,
}

impl TaskError {
    /// A failure worth another attempt (a timeout, a busy service).
    pub fn retryable(message: impl fmt::Display) -> Self {
        Self {
            message: message.to_string(),
            permanent: false,
        }
    }

    /// A failure no retry will fix (invalid payload, business rule): the task ends
    /// `Failed` without further attempts.
    pub fn permanent(message: impl fmt::Display) -> Self {
        Self {
            message: message.to_string(),
            permanent: true,
        }
    }

    /// Whether this failure stops all retries.
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }

    /// The message recorded on the task.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error> From<E> for TaskError {
    fn from(err: E) -> Self {
        let mut message = err.to_string();
        let mut source = err.source();
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        Self::retryable(message)
    }
}

/// Runs one task attempt. Implemented for every
/// `Fn(TaskContext) -> impl Future<Output = Result<Value, TaskError>>`.
#[async_trait]
pub trait TaskHandler: Send + Sync + 'static {
    /// Does the work; the `Ok` value is stored as the task's result.
    async fn handle(&self, ctx: TaskContext) -> Result<Value, TaskError>;
}

#[async_trait]
impl<F, Fut> TaskHandler for F
where
    F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, TaskError>> + Send + 'static,
{
    async fn handle(&self, ctx: TaskContext) -> Result<Value, TaskError> {
        (self)(ctx).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_convert_with_their_sources() {
        let io = std::io::Error::other("disk full");
        let e = TaskError::from(io);
        assert!(!e.is_permanent());
        assert_eq!(e.message(), "disk full");
        let p = TaskError::permanent("bad payload");
        assert!(p.is_permanent());
        assert_eq!(p.to_string(), "bad payload");
    }
}
