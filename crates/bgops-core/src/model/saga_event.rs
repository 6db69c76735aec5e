//! The one typed saga event: a journal entry in storage, an item of the execution stream
//! and an SSE payload, so that each fact is recorded once (as in steno's saga log).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use super::SagaStatus;

/// One thing that happened to a saga. Stored in its history (oldest first), yielded by
/// the execution stream and sent as SSE `data:`; serializes as flat JSON with a `type`
/// tag:
///
/// ```
/// use bgops_core::{SagaEvent, SagaEventKind, SagaStatus};
/// let e = SagaEvent {
///     saga_id: "s1".into(),
///     at: time::macros::datetime!(2026-01-01 0:00 UTC),
///     fence: 1,
///     status: SagaStatus::Running,
///     kind: SagaEventKind::StepStarted { step_index: 0, name: "reserve".into(), attempt: 1 },
/// };
/// let json = serde_json::to_value(&e)?;
/// assert_eq!(json["type"], "step_started");
/// assert_eq!(json["step_index"], 0);
/// assert_eq!(serde_json::from_value::<SagaEvent>(json)?, e);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SagaEvent {
    /// The saga (shared, not copied, between the events of one execution).
    pub saga_id: Arc<str>,
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The fencing number of the executor that recorded it (0 outside execution).
    #[serde(default)]
    pub fence: u64,
    /// The saga's status after the event.
    pub status: SagaStatus,
    /// What happened.
    #[serde(flatten)]
    pub kind: SagaEventKind,
}

/// What happened, with its facts. The `type` tag of the JSON form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SagaEventKind {
    /// The saga was stored.
    Created,
    /// An executor took the saga's lease (a first run or a recovery).
    Resumed,
    /// A step's handler is about to run (its intent is stored).
    StepStarted {
        /// The step.
        step_index: usize,
        /// Its name.
        name: String,
        /// Attempt number, from 1.
        attempt: u32,
    },
    /// A step succeeded.
    StepSucceeded {
        /// The step.
        step_index: usize,
        /// Its name.
        name: String,
        /// Its output.
        output: Value,
    },
    /// A step's attempt failed and it will be retried after `delay_ms`.
    StepRetrying {
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
        /// The step.
        step_index: usize,
        /// Its name.
        name: String,
        /// Why.
        error: String,
    },
    /// The saga turned to compensation.
    Compensating {
        /// Why.
        reason: String,
    },
    /// A step's compensation is about to run.
    CompensationStarted {
        /// The step.
        step_index: usize,
        /// Its name.
        name: String,
        /// Attempt number, from 1.
        attempt: u32,
    },
    /// A step was compensated.
    StepCompensated {
        /// The step.
        step_index: usize,
        /// Its name.
        name: String,
    },
    /// A compensation attempt failed and will be retried.
    CompensationRetrying {
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
        /// The step.
        step_index: usize,
        /// Its name.
        name: String,
        /// Why.
        error: String,
    },
    /// The saga reached an end state (`status` says which).
    Finished,
    /// This executor stopped before the end (lease lost, store failure); another
    /// executor or the recoverer carries on. Never stored (the store may be what failed);
    /// only streamed.
    Aborted {
        /// Why.
        error: String,
    },
}

impl SagaEventKind {
    /// The `type` tag (`step_started`, `finished`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Resumed => "resumed",
            Self::StepStarted { .. } => "step_started",
            Self::StepSucceeded { .. } => "step_succeeded",
            Self::StepRetrying { .. } => "step_retrying",
            Self::StepFailed { .. } => "step_failed",
            Self::Compensating { .. } => "compensating",
            Self::CompensationStarted { .. } => "compensation_started",
            Self::StepCompensated { .. } => "step_compensated",
            Self::CompensationRetrying { .. } => "compensation_retrying",
            Self::CompensationFailed { .. } => "compensation_failed",
            Self::Finished => "finished",
            Self::Aborted { .. } => "aborted",
        }
    }

    /// The step concerned, if any.
    pub fn step_index(&self) -> Option<usize> {
        match self {
            Self::StepStarted { step_index, .. }
            | Self::StepSucceeded { step_index, .. }
            | Self::StepRetrying { step_index, .. }
            | Self::StepFailed { step_index, .. }
            | Self::CompensationStarted { step_index, .. }
            | Self::StepCompensated { step_index, .. }
            | Self::CompensationRetrying { step_index, .. }
            | Self::CompensationFailed { step_index, .. } => Some(*step_index),
            _ => None,
        }
    }
}

impl SagaEvent {
    /// Whether no further event of this execution follows.
    pub fn is_last(&self) -> bool {
        matches!(
            self.kind,
            SagaEventKind::Finished | SagaEventKind::Aborted { .. }
        )
    }

    /// The event as one server-sent-events message (`event:` and `data:` lines).
    pub fn to_sse(&self) -> String {
        // A struct of strings, numbers, a timestamp and JSON values always serializes.
        let data = serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"));
        format!("event: {}\ndata: {data}\n\n", self.kind.name())
    }
}
