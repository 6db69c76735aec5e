//! `/tasks` (by queue and status), `/tasks/{id}` (a task and its attempts), and in write
//! mode `POST /tasks/{id}/retry` and `POST /tasks/{id}/delete`.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{Html, Redirect};
use bgops_core::TaskStatus;
use bgops_storage::TaskFilter;
use maud::html;
use serde::Deserialize;

use super::sagas::encode;
use super::{TASK_STATUSES, task_status};
use crate::view::{Base, badge, layout, opt_time, param, time};
use crate::{AppState, BoardError};

pub(crate) async fn list(
    State(state): State<AppState>,
    base: Base,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Html<String>, BoardError> {
    let status = param(query.get("status")).map(task_status).transpose()?;
    let queue = param(query.get("queue"));
    let offset: usize = param(query.get("offset"))
        .map(str::parse)
        .transpose()
        .map_err(|_| BoardError::BadRequest("`offset` must be a number".into()))?
        .unwrap_or(0);
    let limit = state.page_size;
    let tasks = state
        .storage
        .list_tasks(&TaskFilter {
            queue: queue.map(str::to_owned),
            status,
            limit,
            offset,
        })
        .await?;
    let next = (tasks.len() == limit).then(|| {
        let mut q = format!("/tasks?offset={}", offset + limit);
        if let Some(s) = status {
            q.push_str("&status=");
            q.push_str(s.as_str());
        }
        if let Some(queue) = queue {
            q.push_str("&queue=");
            q.push_str(&encode(queue));
        }
        base.to(&q)
    });
    let body = html! {
        form.filters method="get" action=(base.to("/tasks")) {
            label { "Queue " input name="queue" value=(queue.unwrap_or("")) placeholder="queue"; }
            label { "Status "
                select name="status" {
                    option value="" { "any" }
                    @for s in TASK_STATUSES {
                        option value=(s.as_str()) selected[status == Some(s)] { (s.as_str()) }
                    }
                }
            }
            button type="submit" { "Filter" }
        }
        @if tasks.is_empty() {
            p.empty { "No tasks match." }
        } @else {
            table.list #tasks {
                thead { tr { th { "Task" } th { "Queue" } th { "Type" } th { "Status" } th { "Attempts" } th { "Updated" } th { "Error" } } }
                tbody {
                    @for task in &tasks {
                        tr {
                            td { a.mono href=(base.to(&format!("/tasks/{}", encode(&task.task_id)))) { (task.task_id) } }
                            td { (task.queue) }
                            td { (task.task_type) }
                            td { (badge(task.status.as_str())) }
                            td.num { (task.attempts) "/" (task.max_attempts) }
                            td { (time(task.updated_at)) }
                            td.error { (task.error.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
        @if let Some(next) = next { p { a href=(next) { "Next page →" } } }
    };
    Ok(layout(&base, "Tasks", None, &body))
}

pub(crate) async fn show(
    State(state): State<AppState>,
    base: Base,
    Path(id): Path<String>,
) -> Result<Html<String>, BoardError> {
    let task = state
        .storage
        .get_task(&id)
        .await?
        .ok_or_else(|| BoardError::NotFound {
            kind: "task",
            id: id.clone(),
        })?;
    let action = |what: &str| base.to(&format!("/tasks/{}/{what}", encode(&task.task_id)));
    let body = html! {
        dl.facts {
            dt { "Id" } dd.mono { (task.task_id) }
            dt { "Queue" } dd { a href=(base.to(&format!("/tasks?queue={}", encode(&task.queue)))) { (task.queue) } }
            dt { "Type" } dd { (task.task_type) }
            dt { "Status" } dd #task-status { (badge(task.status.as_str())) }
            dt { "Attempts" } dd { (task.attempts) "/" (task.max_attempts) }
            dt { "Idempotency key" } dd { (task.idempotency_key.as_deref().unwrap_or("–")) }
            dt { "Created" } dd { (time(task.created_at)) }
            dt { "Available" } dd { (time(task.available_at)) }
            dt { "Finished" } dd { (opt_time(task.finished_at)) }
            dt { "Lease" } dd {
                @if let Some(l) = &task.lease { (l.worker_id) " (attempt " (l.attempt) ") until " (time(l.expires_at)) } @else { "–" }
            }
            dt { "Payload" } dd { pre { (serde_json::to_string_pretty(&task.payload).unwrap_or_default()) } }
            @if let Some(r) = &task.result { dt { "Result" } dd { pre { (serde_json::to_string_pretty(r).unwrap_or_default()) } } }
            @if let Some(e) = &task.error { dt { "Error" } dd.error { (e) } }
        }
        @if let Some(csrf) = &state.csrf {
            div.actions {
                @if task.status == TaskStatus::Failed {
                    form method="post" action=(action("retry")) {
                        input type="hidden" name="csrf" value=(csrf.token());
                        button type="submit" #retry { "Retry" }
                    }
                }
                form method="post" action=(action("delete")) {
                    input type="hidden" name="csrf" value=(csrf.token());
                    button.danger type="submit" #delete { "Delete" }
                }
            }
        }
        h2 { "Attempts" }
        @if task.history.is_empty() {
            p.empty { "None yet." }
        } @else {
            table.list #attempts {
                thead { tr { th { "#" } th { "Worker" } th { "Claimed" } th { "Finished" } th { "Outcome" } th { "Error" } } }
                tbody {
                    @for a in &task.history {
                        tr {
                            td.num { (a.attempt) }
                            td { (a.worker_id) }
                            td { (time(a.claimed_at)) }
                            td { (opt_time(a.finished_at)) }
                            td { (a.outcome.as_deref().unwrap_or("running")) }
                            td.error { (a.error.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
    };
    Ok(layout(
        &base,
        &format!("Task {}", task.task_type),
        None,
        &body,
    ))
}

/// The form the write actions post.
#[derive(Debug, Deserialize)]
pub(crate) struct ActionForm {
    #[serde(default)]
    csrf: String,
}

fn check(state: &AppState, headers: &HeaderMap, form: &ActionForm) -> Result<(), BoardError> {
    match &state.csrf {
        Some(csrf) => csrf.check(headers, &form.csrf),
        // The routes exist only in write mode; refuse anyway if that ever changes.
        None => Err(BoardError::Forbidden("the board is read-only")),
    }
}

pub(crate) async fn retry(
    State(state): State<AppState>,
    base: Base,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Result<Redirect, BoardError> {
    check(&state, &headers, &form)?;
    state.storage.retry_task(&id).await?;
    Ok(Redirect::to(&base.to(&format!("/tasks/{}", encode(&id)))))
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    base: Base,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Result<Redirect, BoardError> {
    check(&state, &headers, &form)?;
    if state.storage.delete_task(&id).await? {
        Ok(Redirect::to(&base.to("/tasks")))
    } else {
        Err(BoardError::NotFound { kind: "task", id })
    }
}
