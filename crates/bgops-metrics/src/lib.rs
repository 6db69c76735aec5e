//! # bgops-metrics
//!
//! [`MetricsRecorder`] implements bgops' [`MetricsHooks`] on the
//! [`metrics`](https://docs.rs/metrics) facade: every hook becomes a counter or a
//! histogram, recorded into whatever exporter the service installed
//! (`metrics-exporter-prometheus` for `/metrics`, an OpenTelemetry or statsd exporter).
//! bgops itself depends on no exporter.
//!
//! ```
//! use std::sync::Arc;
//! use bgops_core::{MetricsHooks, SharedMetrics};
//! use bgops_metrics::MetricsRecorder;
//!
//! // Hand this to the manager, the idempotency engine, the saga engine and the queue.
//! let hooks: SharedMetrics = Arc::new(MetricsRecorder::new());
//! hooks.idempotency_replayed("create_order", "acme");
//! ```
//!
//! ## Series
//!
//! Names follow Prometheus conventions (`_total` counters, `_seconds` histograms). The
//! `tenant` label is off by default (one series per tenant can be many series); turn it
//! on with [`MetricsRecorder::with_tenant_label`].
//!
//! | series | kind | labels | hook |
//! |---|---|---|---|
//! | `bgops_idempotency_keys_created_total` | counter | operation_type | a key was claimed, the operation runs |
//! | `bgops_idempotency_replayed_total` | counter | operation_type | a stored outcome was replayed |
//! | `bgops_idempotency_in_flight_total` | counter | operation_type | a duplicate arrived while the first ran |
//! | `bgops_idempotency_mismatched_total` | counter | operation_type | the key was used with another request |
//! | `bgops_idempotency_completed_total` | counter | operation_type, outcome (`completed`/`failed`) | an outcome was stored |
//! | `bgops_saga_steps_total` | counter | workflow_type, step, outcome (`completed`/`failed`) | a step ended |
//! | `bgops_saga_step_duration_seconds` | histogram | workflow_type, step, outcome | one handler call |
//! | `bgops_saga_compensations_total` | counter | workflow_type, step, outcome (`compensated`/`failed`) | a compensation ended |
//! | `bgops_sagas_finished_total` | counter | workflow_type, status | a saga reached an end state |
//! | `bgops_tasks_submitted_total` | counter | queue, duplicate | a task was submitted |
//! | `bgops_tasks_claimed_total` | counter | queue | a worker claimed a task |
//! | `bgops_tasks_finished_total` | counter | queue, outcome | an attempt ended |
//! | `bgops_tasks_lease_lost_total` | counter | queue | a worker's claim was fenced out |
//! | `bgops_storage_errors_total` | counter | operation | a store call failed |
//! | `bgops_storage_call_duration_seconds` | histogram | operation, result (`ok`/`error`) | one store call |
//! | `bgops_cleanup_runs_total` | counter | | a cleanup pass ran |
//! | `bgops_cleanup_purged_total` | counter | | records a cleanup removed |
//!
//! With a tenant label, the idempotency and saga series also carry `tenant`.

use std::time::Duration;

use bgops_core::MetricsHooks;
use metrics::{Label, counter, histogram};

/// Every series name, for dashboards and tests.
pub mod names {
    /// Keys claimed (the operation runs).
    pub const KEYS_CREATED: &str = "bgops_idempotency_keys_created_total";
    /// Stored outcomes replayed.
    pub const REPLAYED: &str = "bgops_idempotency_replayed_total";
    /// Duplicates that arrived while the first ran.
    pub const IN_FLIGHT: &str = "bgops_idempotency_in_flight_total";
    /// Keys reused with another request.
    pub const MISMATCHED: &str = "bgops_idempotency_mismatched_total";
    /// Outcomes stored.
    pub const COMPLETED: &str = "bgops_idempotency_completed_total";
    /// Saga steps ended.
    pub const SAGA_STEPS: &str = "bgops_saga_steps_total";
    /// Saga step handler call durations.
    pub const SAGA_STEP_DURATION: &str = "bgops_saga_step_duration_seconds";
    /// Compensations ended.
    pub const SAGA_COMPENSATIONS: &str = "bgops_saga_compensations_total";
    /// Sagas that reached an end state.
    pub const SAGAS_FINISHED: &str = "bgops_sagas_finished_total";
    /// Tasks submitted.
    pub const TASKS_SUBMITTED: &str = "bgops_tasks_submitted_total";
    /// Tasks claimed.
    pub const TASKS_CLAIMED: &str = "bgops_tasks_claimed_total";
    /// Task attempts ended.
    pub const TASKS_FINISHED: &str = "bgops_tasks_finished_total";
    /// Task claims fenced out.
    pub const TASKS_LEASE_LOST: &str = "bgops_tasks_lease_lost_total";
    /// Store calls that failed.
    pub const STORAGE_ERRORS: &str = "bgops_storage_errors_total";
    /// Store call durations.
    pub const STORAGE_CALL_DURATION: &str = "bgops_storage_call_duration_seconds";
    /// Cleanup passes.
    pub const CLEANUP_RUNS: &str = "bgops_cleanup_runs_total";
    /// Records removed by cleanup.
    pub const CLEANUP_PURGED: &str = "bgops_cleanup_purged_total";
}

/// bgops' metrics hooks recorded through the `metrics` facade into the installed
/// recorder (or a local one). Cheap to clone; stateless apart from its options.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricsRecorder {
    tenant_label: bool,
}

impl MetricsRecorder {
    /// A recorder without the `tenant` label.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a `tenant` label to the idempotency and saga series. One series per tenant:
    /// turn it on only when tenants are few.
    pub fn with_tenant_label(mut self, on: bool) -> Self {
        self.tenant_label = on;
        self
    }

    fn labels(self, mut labels: Vec<Label>, tenant_id: &str) -> Vec<Label> {
        if self.tenant_label {
            labels.push(Label::new("tenant", tenant_id.to_owned()));
        }
        labels
    }

    fn idempotency(self, name: &'static str, operation_type: &str, tenant_id: &str) {
        let labels = self.labels(
            vec![Label::new("operation_type", operation_type.to_owned())],
            tenant_id,
        );
        counter!(name, labels).increment(1);
    }
}

fn label(key: &'static str, value: &str) -> Label {
    Label::new(key, value.to_owned())
}

impl MetricsHooks for MetricsRecorder {
    fn idempotency_key_created(&self, operation_type: &str, tenant_id: &str) {
        self.idempotency(names::KEYS_CREATED, operation_type, tenant_id);
    }

    fn idempotency_replayed(&self, operation_type: &str, tenant_id: &str) {
        self.idempotency(names::REPLAYED, operation_type, tenant_id);
    }

    fn idempotency_in_flight(&self, operation_type: &str, tenant_id: &str) {
        self.idempotency(names::IN_FLIGHT, operation_type, tenant_id);
    }

    fn idempotency_mismatched(&self, operation_type: &str, tenant_id: &str) {
        self.idempotency(names::MISMATCHED, operation_type, tenant_id);
    }

    fn idempotency_completed(&self, operation_type: &str, tenant_id: &str, failed: bool) {
        let outcome = if failed { "failed" } else { "completed" };
        let labels = self.labels(
            vec![
                label("operation_type", operation_type),
                label("outcome", outcome),
            ],
            tenant_id,
        );
        counter!(names::COMPLETED, labels).increment(1);
    }

    fn saga_step_completed(&self, workflow_type: &str, tenant_id: &str, step: &str) {
        let labels = self.labels(
            vec![
                label("workflow_type", workflow_type),
                label("step", step),
                label("outcome", "completed"),
            ],
            tenant_id,
        );
        counter!(names::SAGA_STEPS, labels).increment(1);
    }

    fn saga_step_failed(&self, workflow_type: &str, tenant_id: &str, step: &str) {
        let labels = self.labels(
            vec![
                label("workflow_type", workflow_type),
                label("step", step),
                label("outcome", "failed"),
            ],
            tenant_id,
        );
        counter!(names::SAGA_STEPS, labels).increment(1);
    }

    fn saga_step_duration(
        &self,
        workflow_type: &str,
        step: &str,
        outcome: &str,
        elapsed: Duration,
    ) {
        let labels = vec![
            label("workflow_type", workflow_type),
            label("step", step),
            label("outcome", outcome),
        ];
        histogram!(names::SAGA_STEP_DURATION, labels).record(elapsed.as_secs_f64());
    }

    fn saga_step_compensated(
        &self,
        workflow_type: &str,
        tenant_id: &str,
        step: &str,
        failed: bool,
    ) {
        let outcome = if failed { "failed" } else { "compensated" };
        let labels = self.labels(
            vec![
                label("workflow_type", workflow_type),
                label("step", step),
                label("outcome", outcome),
            ],
            tenant_id,
        );
        counter!(names::SAGA_COMPENSATIONS, labels).increment(1);
    }

    fn saga_finished(&self, workflow_type: &str, tenant_id: &str, status: &str) {
        let labels = self.labels(
            vec![
                label("workflow_type", workflow_type),
                label("status", status),
            ],
            tenant_id,
        );
        counter!(names::SAGAS_FINISHED, labels).increment(1);
    }

    fn task_submitted(&self, queue: &str, duplicate: bool) {
        let duplicate = if duplicate { "true" } else { "false" };
        counter!(
            names::TASKS_SUBMITTED,
            vec![label("queue", queue), label("duplicate", duplicate)]
        )
        .increment(1);
    }

    fn task_claimed(&self, queue: &str) {
        counter!(names::TASKS_CLAIMED, vec![label("queue", queue)]).increment(1);
    }

    fn task_finished(&self, queue: &str, outcome: &str) {
        counter!(
            names::TASKS_FINISHED,
            vec![label("queue", queue), label("outcome", outcome)]
        )
        .increment(1);
    }

    fn task_lease_lost(&self, queue: &str) {
        counter!(names::TASKS_LEASE_LOST, vec![label("queue", queue)]).increment(1);
    }

    fn cleanup_ran(&self, purged: u64) {
        counter!(names::CLEANUP_RUNS).increment(1);
        counter!(names::CLEANUP_PURGED).increment(purged);
    }

    fn storage_error(&self, operation: &str) {
        counter!(names::STORAGE_ERRORS, vec![label("operation", operation)]).increment(1);
    }

    fn storage_call(&self, operation: &str, elapsed: Duration, failed: bool) {
        let result = if failed { "error" } else { "ok" };
        histogram!(
            names::STORAGE_CALL_DURATION,
            vec![label("operation", operation), label("result", result)]
        )
        .record(elapsed.as_secs_f64());
    }
}
