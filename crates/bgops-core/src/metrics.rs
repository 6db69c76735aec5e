//! Metrics hooks: a trait with no-op defaults that engines call at each event, so any
//! metrics system (prometheus, OpenTelemetry, statsd) can be attached without bgops
//! depending on it. The seed's `register_metrics_hooks` becomes one `Arc<dyn MetricsHooks>`
//! handed to the manager.

use std::sync::Arc;
use std::time::Duration;

/// Called by bgops at each notable event. Every method has a no-op default; implement the
/// ones you count. Calls happen on the hot path: keep them cheap and non-blocking.
pub trait MetricsHooks: Send + Sync {
    /// A new idempotency record was created (the operation will run).
    fn idempotency_key_created(&self, _operation_type: &str, _tenant_id: &str) {}
    /// A stored outcome was returned instead of running the operation again.
    fn idempotency_replayed(&self, _operation_type: &str, _tenant_id: &str) {}
    /// A duplicate arrived while the first was still running.
    fn idempotency_in_flight(&self, _operation_type: &str, _tenant_id: &str) {}
    /// An operation's outcome was recorded.
    fn idempotency_completed(&self, _operation_type: &str, _tenant_id: &str, _failed: bool) {}
    /// A saga step completed.
    fn saga_step_completed(&self, _workflow_type: &str, _tenant_id: &str, _step: &str) {}
    /// A saga step failed after its retries.
    fn saga_step_failed(&self, _workflow_type: &str, _tenant_id: &str, _step: &str) {}
    /// A saga reached a terminal state (`completed`, `compensated`, `compensation_failed`).
    fn saga_finished(&self, _workflow_type: &str, _tenant_id: &str, _status: &str) {}
    /// A task was submitted (`duplicate` when an existing task was returned).
    fn task_submitted(&self, _queue: &str, _duplicate: bool) {}
    /// A task attempt ended (`completed`, `retrying`, `failed`, `lease_expired`).
    fn task_finished(&self, _queue: &str, _outcome: &str) {}
    /// Expired records were purged.
    fn cleanup_ran(&self, _purged: u64) {}
    /// A storage call failed.
    fn storage_error(&self, _operation: &str) {}

    // Added for operations (bgops-metrics); no-op by default like the rest.

    /// The key was already used with another request (fingerprint mismatch).
    fn idempotency_mismatched(&self, _operation_type: &str, _tenant_id: &str) {}
    /// A saga step's handler call ended (`outcome`: `completed`, `retrying`, `failed`)
    /// after `elapsed`.
    fn saga_step_duration(
        &self,
        _workflow_type: &str,
        _step: &str,
        _outcome: &str,
        _elapsed: Duration,
    ) {
    }
    /// A step's compensation ended: compensated, or failed after its retries.
    fn saga_step_compensated(
        &self,
        _workflow_type: &str,
        _tenant_id: &str,
        _step: &str,
        _failed: bool,
    ) {
    }
    /// A worker claimed a task.
    fn task_claimed(&self, _queue: &str) {}
    /// A worker's claim was fenced out (its lease ran out and another attempt took over).
    fn task_lease_lost(&self, _queue: &str) {}
    /// A storage call ended after `elapsed` (`failed` when it returned an error).
    fn storage_call(&self, _operation: &str, _elapsed: Duration, _failed: bool) {}
}

/// Hooks that do nothing: the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopMetrics;

impl MetricsHooks for NoopMetrics {}

/// A shared hooks handle.
pub type SharedMetrics = Arc<dyn MetricsHooks>;

/// The default hooks handle (no-op).
pub fn noop() -> SharedMetrics {
    Arc::new(NoopMetrics)
}
