//! `/`: counts by status, store health and latency, the latest sagas.

use axum::extract::State;
use axum::response::Html;
use bgops_storage::{SagaFilter, Storage};
use maud::html;
use serde::Serialize;

use super::{SAGA_STATUSES, TASK_STATUSES};
use crate::AppState;
use crate::view::{Base, badge, layout, time};

/// What the overview shows; also the payload of its live stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Snapshot {
    pub(crate) backend: &'static str,
    pub(crate) healthy: bool,
    pub(crate) latency_ms: Option<f64>,
    pub(crate) error: Option<String>,
    pub(crate) idempotency_records: Option<u64>,
    pub(crate) locks: Option<u64>,
    /// `sagas.<status>` and `tasks.<status>` → count, every status present.
    pub(crate) counts: Vec<(String, u64)>,
    pub(crate) recent: Vec<RecentSaga>,
}

/// One of the latest sagas.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct RecentSaga {
    pub(crate) saga_id: String,
    pub(crate) workflow_type: String,
    pub(crate) tenant_id: String,
    pub(crate) status: &'static str,
    pub(crate) updated_at: String,
}

/// Reads health, stats and the latest sagas; a failing store is reported in the snapshot,
/// not as an error (the overview is where an operator looks when the store is down).
pub(crate) async fn snapshot(storage: &dyn Storage) -> Snapshot {
    let backend = storage.backend_name();
    let latest = SagaFilter {
        limit: 10,
        ..SagaFilter::default()
    };
    let (health, stats, recent) = futures::join!(
        storage.health(),
        storage.stats(),
        storage.list_sagas(&latest)
    );
    let mut error = None;
    let (healthy, latency_ms) = match health {
        Ok(h) => (h.healthy, Some(h.latency.as_secs_f64() * 1000.0)),
        Err(e) => {
            error = Some(e.to_string());
            (false, None)
        }
    };
    let mut counts = Vec::new();
    let (records, locks) = match stats {
        Ok(stats) => {
            for status in SAGA_STATUSES {
                let n = stats
                    .sagas_by_status
                    .get(status.as_str())
                    .copied()
                    .unwrap_or(0);
                counts.push((format!("sagas.{}", status.as_str()), n));
            }
            for status in TASK_STATUSES {
                let n = stats
                    .tasks_by_status
                    .get(status.as_str())
                    .copied()
                    .unwrap_or(0);
                counts.push((format!("tasks.{}", status.as_str()), n));
            }
            (Some(stats.idempotency_records), Some(stats.locks))
        }
        Err(e) => {
            error.get_or_insert_with(|| e.to_string());
            (None, None)
        }
    };
    let recent = recent
        .unwrap_or_default()
        .into_iter()
        .map(|s| RecentSaga {
            status: s.status.as_str(),
            updated_at: time(s.updated_at),
            saga_id: s.saga_id,
            workflow_type: s.workflow_type,
            tenant_id: s.tenant_id,
        })
        .collect();
    Snapshot {
        backend,
        healthy,
        latency_ms,
        error,
        idempotency_records: records,
        locks,
        counts,
        recent,
    }
}

fn count(snapshot: &Snapshot, key: &str) -> String {
    snapshot
        .counts
        .iter()
        .find(|(k, _)| k == key)
        .map_or_else(|| "–".to_owned(), |(_, n)| n.to_string())
}

pub(crate) async fn page(State(state): State<AppState>, base: Base) -> Html<String> {
    let snap = snapshot(state.storage.as_ref()).await;
    let body = html! {
        section.cards {
            div.card {
                h2 { "Store" }
                p { "Backend " strong { (snap.backend) } }
                p {
                    "Health "
                    strong #health data-k="health" {
                        @if snap.healthy { "healthy" } @else { "unreachable" }
                    }
                }
                p { "Latency " strong #latency data-k="latency_ms" {
                    @if let Some(ms) = snap.latency_ms { (format!("{ms:.2} ms")) } @else { "–" }
                } }
                p.error #store-error data-k="error" { (snap.error.as_deref().unwrap_or("")) }
            }
            div.card {
                h2 { "Idempotency" }
                p { "Records " strong data-k="idempotency_records" {
                    (snap.idempotency_records.map_or_else(|| "–".to_owned(), |n| n.to_string()))
                } }
                p { "Locks held " strong data-k="locks" {
                    (snap.locks.map_or_else(|| "–".to_owned(), |n| n.to_string()))
                } }
                p { a href=(base.to("/keys")) { "Look up a key" } }
            }
            div.card {
                h2 { "Sagas" }
                table.counts { tbody {
                    @for status in SAGA_STATUSES {
                        tr {
                            td { a href=(base.to(&format!("/sagas?status={}", status.as_str()))) { (badge(status.as_str())) } }
                            td.num data-k=(format!("sagas.{}", status.as_str())) { (count(&snap, &format!("sagas.{}", status.as_str()))) }
                        }
                    }
                } }
            }
            div.card {
                h2 { "Tasks" }
                table.counts { tbody {
                    @for status in TASK_STATUSES {
                        tr {
                            td { a href=(base.to(&format!("/tasks?status={}", status.as_str()))) { (badge(status.as_str())) } }
                            td.num data-k=(format!("tasks.{}", status.as_str())) { (count(&snap, &format!("tasks.{}", status.as_str()))) }
                        }
                    }
                } }
            }
        }
        h2 { "Latest sagas" }
        table.list {
            thead { tr { th { "Saga" } th { "Type" } th { "Tenant" } th { "Status" } th { "Updated" } } }
            tbody #recent {
                @for s in &snap.recent {
                    tr {
                        td { a.mono href=(base.to(&format!("/sagas/{}", s.saga_id))) { (s.saga_id) } }
                        td { (s.workflow_type) }
                        td { (s.tenant_id) }
                        td { (badge(s.status)) }
                        td { (s.updated_at) }
                    }
                }
            }
        }
    };
    layout(&base, "Overview", Some(&base.to("/live/overview")), &body)
}
