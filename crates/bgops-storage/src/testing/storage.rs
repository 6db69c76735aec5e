//! What [`Storage`](crate::Storage) adds to the store traits: `health` answers for a
//! reachable backend, and `stats` counts what the backend holds (from a fresh fixture:
//! exactly what the case put in).

use serde_json::json;

use super::{Fixture, LONG, token, unique};
use crate::{BeginRequest, NewTask};

/// Defines one `#[tokio::test]` per health/stats case, each on a fresh `$fixture`.
#[macro_export]
macro_rules! storage_suite {
    ($fixture:expr) => {
        $crate::__conformance_cases!(
            $fixture,
            storage,
            [health_reports_a_live_backend, stats_count_what_is_stored]
        );
    };
}

/// `health` reports the backend by name as healthy.
pub async fn health_reports_a_live_backend(f: Fixture) {
    let report = f.storage.health().await.expect("health");
    assert!(report.healthy);
    assert_eq!(report.backend, f.storage.backend_name());
}

/// `stats` counts idempotency records, held locks, sagas and tasks by status name.
pub async fn stats_count_what_is_stored(f: Fixture) {
    let before = f.storage.stats().await.expect("stats");
    assert_eq!(before.backend, f.storage.backend_name());
    assert_eq!(
        before.idempotency_records, 0,
        "a fresh fixture holds no records"
    );

    let tenant = unique("tenant");
    for key in ["a", "b"] {
        f.storage
            .begin(BeginRequest::new(&tenant, key, "op", token()).lease(LONG))
            .await
            .expect("begin");
    }
    f.storage
        .acquire_lock(&unique("lock"), LONG)
        .await
        .expect("lock")
        .expect("free");
    let saga =
        bgops_core::SagaWorkflow::new(&tenant, "wf", Vec::new(), time::OffsetDateTime::now_utc());
    f.storage.create_saga(&saga, None, &[]).await.expect("saga");
    let queue = unique("queue");
    for n in 0..3 {
        f.storage
            .submit_task(NewTask::new(&queue, "t", json!(n)))
            .await
            .expect("submit");
    }
    f.storage
        .claim_next_task(&queue, "worker", LONG)
        .await
        .expect("claim")
        .expect("task");

    let stats = f.storage.stats().await.expect("stats");
    assert_eq!(stats.idempotency_records, 2);
    assert_eq!(stats.locks, before.locks + 1);
    assert_eq!(stats.sagas_by_status.get("pending").copied(), Some(1));
    assert_eq!(stats.tasks_by_status.get("pending").copied(), Some(2));
    assert_eq!(stats.tasks_by_status.get("claimed").copied(), Some(1));
}
