//! The hooks recorded into a Prometheus recorder, asserted on its exported text: the
//! series a `/metrics` scrape shows.

// Test helpers panic on setup failures: that is how a test reports them.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use bgops_core::MetricsHooks;
use bgops_metrics::MetricsRecorder;
use metrics_exporter_prometheus::PrometheusBuilder;

/// Runs `f` with a fresh Prometheus recorder installed for this thread and returns the
/// exposition text.
fn scrape(f: impl FnOnce()) -> String {
    let recorder = PrometheusBuilder::new()
        .set_buckets(&[0.001, 0.01, 0.1, 1.0])
        .expect("buckets")
        .build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, f);
    handle.render()
}

fn has(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

#[track_caller]
fn assert_series(text: &str, line: &str) {
    assert!(has(text, line), "missing `{line}` in\n{text}");
}

#[test]
fn idempotency_hooks_become_counters_by_operation_type() {
    let hooks = MetricsRecorder::new();
    let text = scrape(|| {
        hooks.idempotency_key_created("create_order", "acme");
        hooks.idempotency_key_created("create_order", "globex");
        hooks.idempotency_replayed("create_order", "acme");
        hooks.idempotency_in_flight("create_order", "acme");
        hooks.idempotency_mismatched("refund", "acme");
        hooks.idempotency_completed("create_order", "acme", false);
        hooks.idempotency_completed("create_order", "acme", true);
    });
    assert_series(
        &text,
        r#"bgops_idempotency_keys_created_total{operation_type="create_order"} 2"#,
    );
    assert_series(
        &text,
        r#"bgops_idempotency_replayed_total{operation_type="create_order"} 1"#,
    );
    assert_series(
        &text,
        r#"bgops_idempotency_in_flight_total{operation_type="create_order"} 1"#,
    );
    assert_series(
        &text,
        r#"bgops_idempotency_mismatched_total{operation_type="refund"} 1"#,
    );
    assert_series(
        &text,
        r#"bgops_idempotency_completed_total{operation_type="create_order",outcome="completed"} 1"#,
    );
    assert_series(
        &text,
        r#"bgops_idempotency_completed_total{operation_type="create_order",outcome="failed"} 1"#,
    );
    assert!(
        !text.contains("tenant="),
        "no tenant label by default:\n{text}"
    );
}

#[test]
fn the_tenant_label_is_opt_in() {
    let hooks = MetricsRecorder::new().with_tenant_label(true);
    let text = scrape(|| {
        hooks.idempotency_replayed("create_order", "acme");
        hooks.saga_finished("order", "acme", "compensated");
    });
    assert_series(
        &text,
        r#"bgops_idempotency_replayed_total{operation_type="create_order",tenant="acme"} 1"#,
    );
    assert_series(
        &text,
        r#"bgops_sagas_finished_total{workflow_type="order",status="compensated",tenant="acme"} 1"#,
    );
}

#[test]
fn saga_hooks_count_steps_compensations_and_time_handler_calls() {
    let hooks = MetricsRecorder::new();
    let text = scrape(|| {
        hooks.saga_step_completed("order", "acme", "reserve");
        hooks.saga_step_failed("order", "acme", "charge");
        hooks.saga_step_duration("order", "reserve", "completed", Duration::from_millis(5));
        hooks.saga_step_duration("order", "reserve", "completed", Duration::from_millis(50));
        hooks.saga_step_compensated("order", "acme", "reserve", false);
        hooks.saga_step_compensated("order", "acme", "ship", true);
        hooks.saga_finished("order", "acme", "compensation_failed");
    });
    assert_series(
        &text,
        r#"bgops_saga_steps_total{workflow_type="order",step="reserve",outcome="completed"} 1"#,
    );
    assert_series(
        &text,
        r#"bgops_saga_steps_total{workflow_type="order",step="charge",outcome="failed"} 1"#,
    );
    assert_series(
        &text,
        r#"bgops_saga_compensations_total{workflow_type="order",step="reserve",outcome="compensated"} 1"#,
    );
    assert_series(
        &text,
        r#"bgops_saga_compensations_total{workflow_type="order",step="ship",outcome="failed"} 1"#,
    );
    assert_series(
        &text,
        r#"bgops_sagas_finished_total{workflow_type="order",status="compensation_failed"} 1"#,
    );
    let labels = r#"workflow_type="order",step="reserve",outcome="completed""#;
    assert_series(
        &text,
        &format!(r#"bgops_saga_step_duration_seconds_bucket{{{labels},le="0.01"}} 1"#),
    );
    assert_series(
        &text,
        &format!(r#"bgops_saga_step_duration_seconds_bucket{{{labels},le="0.1"}} 2"#),
    );
    assert_series(
        &text,
        &format!("bgops_saga_step_duration_seconds_count{{{labels}}} 2"),
    );
}

#[test]
fn task_storage_and_cleanup_hooks() {
    let hooks = MetricsRecorder::new();
    let text = scrape(|| {
        hooks.task_submitted("emails", false);
        hooks.task_submitted("emails", true);
        hooks.task_claimed("emails");
        hooks.task_claimed("emails");
        hooks.task_finished("emails", "completed");
        hooks.task_finished("emails", "retrying");
        hooks.task_lease_lost("emails");
        hooks.storage_error("idempotency_begin");
        hooks.storage_call("idempotency_begin", Duration::from_micros(300), false);
        hooks.storage_call("idempotency_begin", Duration::from_secs(2), true);
        hooks.cleanup_ran(40);
        hooks.cleanup_ran(2);
    });
    assert_series(
        &text,
        r#"bgops_tasks_submitted_total{queue="emails",duplicate="false"} 1"#,
    );
    assert_series(
        &text,
        r#"bgops_tasks_submitted_total{queue="emails",duplicate="true"} 1"#,
    );
    assert_series(&text, r#"bgops_tasks_claimed_total{queue="emails"} 2"#);
    assert_series(
        &text,
        r#"bgops_tasks_finished_total{queue="emails",outcome="completed"} 1"#,
    );
    assert_series(
        &text,
        r#"bgops_tasks_finished_total{queue="emails",outcome="retrying"} 1"#,
    );
    assert_series(&text, r#"bgops_tasks_lease_lost_total{queue="emails"} 1"#);
    assert_series(
        &text,
        r#"bgops_storage_errors_total{operation="idempotency_begin"} 1"#,
    );
    assert_series(
        &text,
        r#"bgops_storage_call_duration_seconds_bucket{operation="idempotency_begin",result="ok",le="0.001"} 1"#,
    );
    assert_series(
        &text,
        r#"bgops_storage_call_duration_seconds_count{operation="idempotency_begin",result="error"} 1"#,
    );
    assert_series(&text, "bgops_cleanup_runs_total 2");
    assert_series(&text, "bgops_cleanup_purged_total 42");
}

#[test]
fn label_values_are_escaped_in_the_exposition() {
    let hooks = MetricsRecorder::new();
    let text = scrape(|| hooks.task_claimed("a\"b\\c\nd"));
    assert_series(&text, r#"bgops_tasks_claimed_total{queue="a\"b\\c\nd"} 1"#);
}
