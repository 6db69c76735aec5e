//! `/sagas` (filtered list) and `/sagas/{id}` (steps and timeline, live).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::Html;
use bgops_core::{SagaEvent, SagaEventKind, SagaStepStatus, SagaWorkflow};
use bgops_storage::SagaFilter;
use maud::{Markup, html};

use super::{SAGA_STATUSES, saga_status};
use crate::view::{Base, badge, layout, opt_time, param, time};
use crate::{AppState, BoardError};

/// Sagas read at most to fill a page when filtering by type (the store's index has no
/// type dimension).
const TYPE_SCAN: usize = 2_000;

pub(crate) async fn list(
    State(state): State<AppState>,
    base: Base,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Html<String>, BoardError> {
    let status = param(query.get("status")).map(saga_status).transpose()?;
    let tenant = param(query.get("tenant"));
    let workflow_type = param(query.get("type"));
    let offset: usize = param(query.get("offset"))
        .map(str::parse)
        .transpose()
        .map_err(|_| BoardError::BadRequest("`offset` must be a number".into()))?
        .unwrap_or(0);
    let limit = state.page_size;
    let filter = SagaFilter {
        status,
        tenant_id: tenant.map(str::to_owned),
        limit,
        offset,
    };
    let (sagas, next_offset) = match workflow_type {
        None => {
            let sagas = state.storage.list_sagas(&filter).await?;
            let next = (sagas.len() == limit).then_some(offset + limit);
            (sagas, next)
        }
        Some(wanted) => {
            let mut found = Vec::new();
            let mut at = offset;
            let mut more = true;
            while found.len() < limit && at - offset < TYPE_SCAN && more {
                let batch = state
                    .storage
                    .list_sagas(&SagaFilter {
                        offset: at,
                        limit: 100,
                        ..filter.clone()
                    })
                    .await?;
                more = batch.len() == 100;
                for saga in batch {
                    at += 1;
                    if saga.workflow_type == wanted {
                        found.push(saga);
                        if found.len() == limit {
                            break;
                        }
                    }
                }
            }
            let next = (found.len() == limit || (more && at - offset >= TYPE_SCAN)).then_some(at);
            (found, next)
        }
    };
    let next_link = next_offset.map(|next| {
        let mut q = format!("/sagas?offset={next}");
        for (k, v) in [
            ("status", status.map(bgops_core::SagaStatus::as_str)),
            ("tenant", tenant),
            ("type", workflow_type),
        ] {
            if let Some(v) = v {
                q.push('&');
                q.push_str(k);
                q.push('=');
                q.push_str(&encode(v));
            }
        }
        base.to(&q)
    });
    let body = html! {
        form.filters method="get" action=(base.to("/sagas")) {
            label { "Status "
                select name="status" {
                    option value="" { "any" }
                    @for s in SAGA_STATUSES {
                        option value=(s.as_str()) selected[status == Some(s)] { (s.as_str()) }
                    }
                }
            }
            label { "Type " input name="type" value=(workflow_type.unwrap_or("")) placeholder="workflow type"; }
            label { "Tenant " input name="tenant" value=(tenant.unwrap_or("")) placeholder="tenant"; }
            button type="submit" { "Filter" }
        }
        @if sagas.is_empty() {
            p.empty { "No sagas match." }
        } @else {
            table.list #sagas {
                thead { tr { th { "Saga" } th { "Type" } th { "Tenant" } th { "Status" } th { "Steps" } th { "Updated" } th { "Error" } } }
                tbody {
                    @for saga in &sagas {
                        tr {
                            td { a.mono href=(base.to(&format!("/sagas/{}", saga.saga_id))) { (saga.saga_id) } }
                            td { (saga.workflow_type) }
                            td { (saga.tenant_id) }
                            td { (badge(saga.status.as_str())) }
                            td.num { (done_steps(saga)) "/" (saga.steps.len()) }
                            td { (time(saga.updated_at)) }
                            td.error { (saga.error.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
        @if let Some(next) = next_link { p { a href=(next) { "Next page →" } } }
    };
    Ok(layout(&base, "Sagas", None, &body))
}

fn done_steps(saga: &SagaWorkflow) -> usize {
    saga.steps
        .iter()
        .filter(|s| {
            !matches!(
                s.status,
                SagaStepStatus::Pending | SagaStepStatus::Running | SagaStepStatus::Failed
            )
        })
        .count()
}

/// Percent-encodes a query value.
pub(crate) fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    out
}

fn attempts(n: u32) -> String {
    if n == 1 {
        "1 attempt".to_owned()
    } else {
        format!("{n} attempts")
    }
}

pub(crate) fn step_status(status: SagaStepStatus) -> &'static str {
    match status {
        SagaStepStatus::Pending => "pending",
        SagaStepStatus::Running => "running",
        SagaStepStatus::Completed => "completed",
        SagaStepStatus::Failed => "failed",
        SagaStepStatus::Compensating => "compensating",
        SagaStepStatus::Compensated => "compensated",
        SagaStepStatus::CompensationFailed => "compensation_failed",
    }
}

pub(crate) async fn show(
    State(state): State<AppState>,
    base: Base,
    Path(id): Path<String>,
) -> Result<Html<String>, BoardError> {
    let saga = state
        .storage
        .get_saga(&id)
        .await?
        .ok_or_else(|| BoardError::NotFound {
            kind: "saga",
            id: id.clone(),
        })?;
    let history = state.storage.get_saga_history(&id).await?;
    let live = base.to(&format!(
        "/live/sagas/{}?from={}",
        encode(&id),
        history.len()
    ));
    let body = html! {
        dl.facts {
            dt { "Id" } dd.mono #saga-id { (saga.saga_id) }
            dt { "Type" } dd { (saga.workflow_type) }
            dt { "Tenant" } dd { (saga.tenant_id) }
            dt { "Status" } dd #saga-status { (badge(saga.status.as_str())) }
            dt { "Created" } dd { (time(saga.created_at)) }
            dt { "Updated" } dd { (time(saga.updated_at)) }
            dt { "Idempotency key" } dd { (saga.idempotency_key.as_deref().unwrap_or("–")) }
            dt { "Lease" } dd {
                @if let Some(l) = &saga.lease { (l.owner) " (fence " (l.fence) ") until " (time(l.expires_at)) } @else { "–" }
            }
            @if let Some(e) = &saga.error { dt { "Error" } dd.error { (e) } }
        }
        h2 { "Steps" }
        table.list #steps {
            thead { tr { th { "#" } th { "Step" } th { "Operation" } th { "Status" } th { "Attempts" } th { "Error" } th { "Compensation" } th { "Compensated" } } }
            tbody {
                @for (i, step) in saga.steps.iter().enumerate() {
                    tr data-step=(i) {
                        td.num { (i) }
                        td { (step.name) }
                        td.mono { (step.operation) }
                        td { (badge(step_status(step.status))) }
                        td.num { (step.attempts) "/" (step.max_retries + 1) }
                        td.error { (step.error.as_deref().unwrap_or("")) }
                        td {
                            @if let Some(op) = &step.compensation_operation {
                                span.mono { (op) } " (" (attempts(step.compensation_attempts)) ")"
                                @if let Some(e) = &step.compensation_error { br; span.error { (e) } }
                            } @else { "–" }
                        }
                        td { (opt_time(step.compensated_at)) }
                    }
                }
            }
        }
        h2 { "Timeline" }
        table.list #timeline {
            thead { tr { th { "At" } th { "Fence" } th { "Event" } th { "Step" } th { "Detail" } th { "Saga status" } } }
            tbody {
                @for event in &history { (event_row(event)) }
            }
        }
    };
    Ok(layout(
        &base,
        &format!("Saga {}", saga.workflow_type),
        Some(&live),
        &body,
    ))
}

/// One timeline row; the script builds the same from a streamed event.
fn event_row(event: &SagaEvent) -> Markup {
    let kind = event.kind.name();
    let class = match &event.kind {
        SagaEventKind::StepFailed { .. }
        | SagaEventKind::CompensationFailed { .. }
        | SagaEventKind::Aborted { .. } => "ev bad",
        SagaEventKind::Compensating { .. }
        | SagaEventKind::CompensationStarted { .. }
        | SagaEventKind::StepCompensated { .. }
        | SagaEventKind::CompensationRetrying { .. } => "ev comp",
        SagaEventKind::StepRetrying { .. } => "ev warn",
        _ => "ev",
    };
    html! {
        tr class=(class) data-type=(kind) {
            td { (time(event.at)) }
            td.num { (event.fence) }
            td { (kind) }
            td { (step_label(&event.kind)) }
            td { (detail(&event.kind)) }
            td { (badge(event.status.as_str())) }
        }
    }
}

fn step_label(kind: &SagaEventKind) -> String {
    let name = match kind {
        SagaEventKind::StepStarted { name, .. }
        | SagaEventKind::StepSucceeded { name, .. }
        | SagaEventKind::StepRetrying { name, .. }
        | SagaEventKind::StepFailed { name, .. }
        | SagaEventKind::CompensationStarted { name, .. }
        | SagaEventKind::StepCompensated { name, .. }
        | SagaEventKind::CompensationRetrying { name, .. }
        | SagaEventKind::CompensationFailed { name, .. } => name.as_str(),
        _ => return String::new(),
    };
    kind.step_index()
        .map_or_else(|| name.to_owned(), |i| format!("{i} {name}"))
}

fn detail(kind: &SagaEventKind) -> String {
    match kind {
        SagaEventKind::StepStarted { attempt, .. }
        | SagaEventKind::CompensationStarted { attempt, .. } => format!("attempt {attempt}"),
        SagaEventKind::StepSucceeded { output, .. } => output.to_string(),
        SagaEventKind::StepRetrying {
            attempt,
            error,
            delay_ms,
            ..
        }
        | SagaEventKind::CompensationRetrying {
            attempt,
            error,
            delay_ms,
            ..
        } => {
            format!("attempt {attempt} failed: {error}; retry in {delay_ms} ms")
        }
        SagaEventKind::StepFailed { error, .. }
        | SagaEventKind::CompensationFailed { error, .. }
        | SagaEventKind::Aborted { error } => error.clone(),
        SagaEventKind::Compensating { reason } => reason.clone(),
        _ => String::new(),
    }
}
