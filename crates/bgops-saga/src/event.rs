//! Progress events of an execution, ready to be sent as server-sent events.

use std::pin::Pin;
use std::task::{Context, Poll};

use bgops_core::SagaStatus;
use futures::Stream;
use futures::channel::mpsc;
use serde::Serialize;
use serde_json::Value;

/// One thing that happened while a saga ran. Serializes as JSON with a `type` tag:
///
/// ```
/// use bgops_saga::SagaEvent;
/// let e = SagaEvent::StepStarted { saga_id: "s1".into(), step_index: 0, name: "reserve".into(), attempt: 1 };
/// assert_eq!(e.to_sse(), "event: step_started\ndata: {\"type\":\"step_started\",\"saga_id\":\"s1\",\"step_index\":0,\"name\":\"reserve\",\"attempt\":1}\n\n");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SagaEvent {
    /// An executor took the saga's lease (a first run or a recovery).
    Resumed {
        /// The saga.
        saga_id: String,
        /// Its status when taken.
        status: SagaStatus,
        /// The executor's fencing number.
        fence: u64,
    },
    /// A step's handler is about to run (its intent is stored).
    StepStarted {
        /// The saga.
        saga_id: String,
        /// The step.
        step_index: usize,
        /// Its name.
        name: String,
        /// Attempt number, from 1.
        attempt: u32,
    },
    /// A step succeeded.
    StepSucceeded {
        /// The saga.
        saga_id: String,
        /// The step.
        step_index: usize,
        /// Its name.
        name: String,
        /// Its output.
        output: Value,
    },
    /// A step's attempt failed and it will be retried after `delay_ms`.
    StepRetrying {
        /// The saga.
        saga_id: String,
        /// The step.
        step_index: usize,
        /// Its name.
        name: String,
        /// The attempt that failed.
        attempt: u32,
        /// Why.
        error: String,
        /// Backoff before the next attempt.
        delay_ms: u64,
    },
    /// A step failed for good (terminal error, retries exhausted or saga timeout).
    StepFailed {
        /// The saga.
        saga_id: String,
        /// The step.
        step_index: usize,
        /// Its name.
        name: String,
        /// Why.
        error: String,
    },
    /// The saga turned to compensation.
    Compensating {
        /// The saga.
        saga_id: String,
        /// Why.
        reason: String,
    },
    /// A step's compensation is about to run.
    CompensationStarted {
        /// The saga.
        saga_id: String,
        /// The step.
        step_index: usize,
        /// Its name.
        name: String,
        /// Attempt number, from 1.
        attempt: u32,
    },
    /// A step was compensated.
    StepCompensated {
        /// The saga.
        saga_id: String,
        /// The step.
        step_index: usize,
        /// Its name.
        name: String,
    },
    /// A compensation attempt failed and will be retried.
    CompensationRetrying {
        /// The saga.
        saga_id: String,
        /// The step.
        step_index: usize,
        /// Its name.
        name: String,
        /// The attempt that failed.
        attempt: u32,
        /// Why.
        error: String,
        /// Backoff before the next attempt.
        delay_ms: u64,
    },
    /// A compensation failed after its retries; the others still run.
    CompensationFailed {
        /// The saga.
        saga_id: String,
        /// The step.
        step_index: usize,
        /// Its name.
        name: String,
        /// Why.
        error: String,
    },
    /// The saga reached an end state: `completed`, `compensated` or
    /// `compensation_failed`.
    Finished {
        /// The saga.
        saga_id: String,
        /// Its end state.
        status: SagaStatus,
    },
    /// This executor stopped before the end (lease lost, store failure); another
    /// executor or the recoverer carries on.
    Aborted {
        /// The saga.
        saga_id: String,
        /// Why.
        error: String,
    },
}

impl SagaEvent {
    /// The `type` tag (`step_started`, `finished`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Resumed { .. } => "resumed",
            Self::StepStarted { .. } => "step_started",
            Self::StepSucceeded { .. } => "step_succeeded",
            Self::StepRetrying { .. } => "step_retrying",
            Self::StepFailed { .. } => "step_failed",
            Self::Compensating { .. } => "compensating",
            Self::CompensationStarted { .. } => "compensation_started",
            Self::StepCompensated { .. } => "step_compensated",
            Self::CompensationRetrying { .. } => "compensation_retrying",
            Self::CompensationFailed { .. } => "compensation_failed",
            Self::Finished { .. } => "finished",
            Self::Aborted { .. } => "aborted",
        }
    }

    /// Whether no further event follows.
    pub fn is_last(&self) -> bool {
        matches!(self, Self::Finished { .. } | Self::Aborted { .. })
    }

    /// The event as one server-sent-events message (`event:` and `data:` lines).
    pub fn to_sse(&self) -> String {
        // Serializing a plain enum of strings, numbers and JSON values cannot fail.
        let data = serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"));
        format!("event: {}\ndata: {data}\n\n", self.kind())
    }
}

/// The events of one execution, ending with [`SagaEvent::Finished`] or
/// [`SagaEvent::Aborted`]. The saga runs in its own task: dropping the stream does not
/// stop it.
#[derive(Debug)]
pub struct SagaEventStream {
    pub(crate) rx: mpsc::UnboundedReceiver<SagaEvent>,
}

impl SagaEventStream {
    /// The next event, or `None` after the last one (without importing `StreamExt`).
    pub async fn recv(&mut self) -> Option<SagaEvent> {
        futures::StreamExt::next(self).await
    }
}

impl Stream for SagaEventStream {
    type Item = SagaEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<SagaEvent>> {
        Pin::new(&mut self.rx).poll_next(cx)
    }
}
