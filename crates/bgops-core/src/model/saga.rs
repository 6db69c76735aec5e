use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

/// Where a saga stands.
///
/// `Pending → Running → Completed`, or `Running → Compensating → Compensated |
/// CompensationFailed`. Once compensating, a saga never runs forward again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SagaStatus {
    /// Created, not started.
    Pending,
    /// Steps are running forward.
    Running,
    /// Every step succeeded.
    Completed,
    /// A step failed (or the saga timed out); completed steps are being compensated.
    Compensating,
    /// Every completed step was compensated.
    Compensated,
    /// At least one compensation failed after its retries; `retry_compensation` may
    /// try again.
    CompensationFailed,
}

impl SagaStatus {
    /// Whether no executor will act on the saga without being asked.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Compensated | Self::CompensationFailed
        )
    }

    /// The name used in storage and APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Compensating => "compensating",
            Self::Compensated => "compensated",
            Self::CompensationFailed => "compensation_failed",
        }
    }
}

/// Where one saga step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SagaStepStatus {
    /// Not started.
    Pending,
    /// Its handler was started (the intent is persisted before the effect).
    Running,
    /// Its handler succeeded; `result` holds its output.
    Completed,
    /// Its handler failed after its retries.
    Failed,
    /// Its compensation was started.
    Compensating,
    /// Its compensation succeeded.
    Compensated,
    /// Its compensation failed after its retries.
    CompensationFailed,
}

/// One step of a saga: the seed's `SagaStep` plus its journal fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SagaStep {
    /// Unique id of the step (a new one when absent, so the seed's step dicts deserialize).
    #[serde(default = "new_step_id")]
    pub step_id: String,
    /// Human-readable name.
    pub name: String,
    /// The operation handler's name.
    pub operation: String,
    /// Parameters handed to the operation handler.
    #[serde(default)]
    pub parameters: Value,
    /// The compensation handler's name, if the step can be undone.
    #[serde(default)]
    pub compensation_operation: Option<String>,
    /// Parameters handed to the compensation handler.
    #[serde(default)]
    pub compensation_parameters: Option<Value>,
    /// Retries after the first attempt.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Where the step stands.
    #[serde(default = "default_step_status")]
    pub status: SagaStepStatus,
    /// Attempts of the operation so far.
    #[serde(default)]
    pub attempts: u32,
    /// Attempts of the compensation so far.
    #[serde(default)]
    pub compensation_attempts: u32,
    /// The operation's output.
    #[serde(default)]
    pub result: Option<Value>,
    /// The last error of the operation.
    #[serde(default)]
    pub error: Option<String>,
    /// The last error of the compensation.
    #[serde(default)]
    pub compensation_error: Option<String>,
    /// When the first attempt started.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub started_at: Option<OffsetDateTime>,
    /// When the step completed or failed.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub completed_at: Option<OffsetDateTime>,
    /// When the compensation finished.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub compensated_at: Option<OffsetDateTime>,
    /// Parallel group: adjacent steps with the same group run concurrently (absent in
    /// sagas stored before groups existed, which then run one step at a time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

fn new_step_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn default_max_retries() -> u32 {
    3
}

fn default_step_status() -> SagaStepStatus {
    SagaStepStatus::Pending
}

impl SagaStep {
    /// A pending step with a fresh id, no compensation and the seed's 3 retries.
    pub fn new(name: impl Into<String>, operation: impl Into<String>, parameters: Value) -> Self {
        Self {
            step_id: new_step_id(),
            name: name.into(),
            operation: operation.into(),
            parameters,
            compensation_operation: None,
            compensation_parameters: None,
            max_retries: default_max_retries(),
            status: SagaStepStatus::Pending,
            attempts: 0,
            compensation_attempts: 0,
            result: None,
            error: None,
            compensation_error: None,
            started_at: None,
            completed_at: None,
            compensated_at: None,
            group: None,
        }
    }

    /// Sets the compensation handler and its parameters.
    pub fn with_compensation(mut self, operation: impl Into<String>, parameters: Value) -> Self {
        self.compensation_operation = Some(operation.into());
        self.compensation_parameters = Some(parameters);
        self
    }

    /// Sets the number of retries after the first attempt.
    pub fn with_max_retries(mut self, max_retries: u32) -> Self {
        self.max_retries = max_retries;
        self
    }

    /// Puts the step in parallel group `group`: adjacent steps of one group run
    /// concurrently, and the saga goes on once all of them succeeded.
    ///
    /// ```
    /// use bgops_core::SagaStep;
    /// use serde_json::json;
    /// let email = SagaStep::new("Email", "send_email", json!({})).in_group("notify");
    /// assert_eq!(email.group.as_deref(), Some("notify"));
    /// ```
    pub fn in_group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }
}

/// The lease an executor holds on a saga while it runs it. Every write of the saga is
/// conditional on `fence`; a higher fence means a newer holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaLease {
    /// The executor holding the lease.
    pub owner: String,
    /// Fencing number; rises with every new lease on this saga.
    pub fence: u64,
    /// When the lease runs out unless renewed.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// A saga: the seed's `SagaWorkflow` plus context, journal position and lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SagaWorkflow {
    /// Unique id.
    pub saga_id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Kind of workflow (`user_onboarding`, ...).
    pub workflow_type: String,
    /// The steps, in order.
    pub steps: Vec<SagaStep>,
    /// Where the saga stands.
    pub status: SagaStatus,
    /// Index of the step running or next to run.
    pub current_step: usize,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Saga-level timeout in seconds; past it the saga fails into compensation.
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// Creating again with this key returns this saga.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// User context of typed sagas (seed 004), persisted after each step.
    #[serde(default)]
    pub context: Value,
    /// Why the saga failed, if it did.
    #[serde(default)]
    pub error: Option<String>,
    /// Optimistic-concurrency version; every save increments it.
    #[serde(default)]
    pub version: u64,
    /// The executor lease, while one holds it.
    #[serde(default)]
    pub lease: Option<SagaLease>,
    /// The version of the template the saga was made from (`workflow_type` names the
    /// template), if it was made from one: a saga keeps the version it started with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_version: Option<u32>,
}

impl SagaWorkflow {
    /// A pending saga with a fresh id created at `now`.
    pub fn new(
        tenant_id: impl Into<String>,
        workflow_type: impl Into<String>,
        steps: Vec<SagaStep>,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            saga_id: uuid::Uuid::now_v7().to_string(),
            tenant_id: tenant_id.into(),
            workflow_type: workflow_type.into(),
            steps,
            status: SagaStatus::Pending,
            current_step: 0,
            created_at: now,
            updated_at: now,
            timeout_seconds: None,
            idempotency_key: None,
            context: Value::Null,
            error: None,
            version: 0,
            lease: None,
            template_version: None,
        }
    }

    /// The index range of the unit of execution that starts at step `i`: the parallel
    /// group `i` belongs to (its adjacent members with the same group) or step `i` alone.
    pub fn unit_at(&self, i: usize) -> std::ops::Range<usize> {
        let Some(group) = self.steps.get(i).and_then(|s| s.group.as_deref()) else {
            return i..i + 1;
        };
        let same = |s: &SagaStep| s.group.as_deref() == Some(group);
        let start = self.steps[..i]
            .iter()
            .rposition(|s| !same(s))
            .map_or(0, |p| p + 1);
        let end = self.steps[i..]
            .iter()
            .position(|s| !same(s))
            .map_or(self.steps.len(), |p| i + p);
        start..end
    }
}
