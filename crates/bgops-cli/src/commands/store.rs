//! `bgops stats` and `bgops health`.

use bgops_storage::Storage;
use serde_json::json;

use super::Report;
use crate::CliError;
use crate::output::Table;

pub(super) async fn stats(storage: &dyn Storage) -> Result<Report, CliError> {
    let stats = storage.stats().await?;
    let json = json!({
        "backend": stats.backend,
        "idempotency_records": stats.idempotency_records,
        "sagas_by_status": stats.sagas_by_status,
        "tasks_by_status": stats.tasks_by_status,
        "locks": stats.locks,
    });
    let mut table = Table::new(&["WHAT", "STATUS", "COUNT"]);
    table.row([
        "idempotency records",
        "-",
        &stats.idempotency_records.to_string(),
    ]);
    for (status, count) in &stats.sagas_by_status {
        table.row(["sagas", status, &count.to_string()]);
    }
    for (status, count) in &stats.tasks_by_status {
        table.row(["tasks", status, &count.to_string()]);
    }
    table.row(["locks held", "-", &stats.locks.to_string()]);
    Ok(Report::new(
        json,
        format!("backend: {}\n{}", stats.backend, table.render()),
    ))
}

pub(super) async fn health(storage: &dyn Storage) -> Result<Report, CliError> {
    let report = storage.health().await?;
    let latency_ms = report.latency.as_secs_f64() * 1000.0;
    let json = json!({
        "backend": report.backend,
        "healthy": report.healthy,
        "latency_ms": latency_ms,
        "details": report.details,
    });
    if !report.healthy {
        return Err(CliError::Unhealthy {
            backend: report.backend,
        });
    }
    let mut text = format!("{}: healthy ({latency_ms:.2} ms)\n", report.backend);
    if !report.details.is_empty() {
        let mut table = Table::new(&["DETAIL", "VALUE"]);
        for (k, v) in &report.details {
            table.row([k, v]);
        }
        text.push_str(&table.render());
    }
    Ok(Report::new(json, text))
}
