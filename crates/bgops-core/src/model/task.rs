use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

/// Where a task stands: `Pending → Claimed → Completed | Failed` (seed 002).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Waiting to be claimed (possibly not before `available_at`).
    Pending,
    /// Claimed by a worker whose lease is live.
    Claimed,
    /// Done; `result` holds the outcome.
    Completed,
    /// Failed at its last attempt.
    Failed,
}

impl TaskStatus {
    /// The name used in storage and APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Claimed => "claimed",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }
}

/// The lease a worker holds on a claimed task. Only this attempt may complete, fail or
/// renew it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskLease {
    /// The claiming worker.
    pub worker_id: String,
    /// The attempt number (1-based); the fencing number of the claim.
    pub attempt: u32,
    /// When the lease runs out unless renewed.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// One attempt at a task, kept as its history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskAttempt {
    /// Attempt number (1-based).
    pub attempt: u32,
    /// The worker that ran it.
    pub worker_id: String,
    /// When it was claimed.
    #[serde(with = "time::serde::rfc3339")]
    pub claimed_at: OffsetDateTime,
    /// When it ended, if it did.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub finished_at: Option<OffsetDateTime>,
    /// `completed`, `failed`, `lease_expired`, `released`, or `None` while running.
    #[serde(default)]
    pub outcome: Option<String>,
    /// The error of a failed attempt.
    #[serde(default)]
    pub error: Option<String>,
}

/// A task of the idempotent queue (seed 002's `Task`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Unique id.
    pub task_id: String,
    /// The queue it belongs to.
    pub queue: String,
    /// The kind of task (`process_order`, ...).
    #[serde(default)]
    pub task_type: String,
    /// Submitting twice with this key returns the first task.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// The work to do.
    #[serde(default)]
    pub payload: Value,
    /// Where the task stands.
    pub status: TaskStatus,
    /// Attempts started so far.
    #[serde(default)]
    pub attempts: u32,
    /// Attempts allowed in all.
    pub max_attempts: u32,
    /// Result of the completed task.
    #[serde(default)]
    pub result: Option<Value>,
    /// Error of the last failed attempt.
    #[serde(default)]
    pub error: Option<String>,
    /// The current claim, while claimed.
    #[serde(default)]
    pub lease: Option<TaskLease>,
    /// Attempts so far, oldest first.
    #[serde(default)]
    pub history: Vec<TaskAttempt>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Not claimable before this time (backoff after a failure).
    #[serde(with = "time::serde::rfc3339")]
    pub available_at: OffsetDateTime,
    /// When it completed or finally failed.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub finished_at: Option<OffsetDateTime>,
}
