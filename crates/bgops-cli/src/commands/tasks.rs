//! `bgops tasks list|show|retry|delete|purge`.

use std::time::Duration;

use bgops_core::Task;
use bgops_storage::{Storage, TaskFilter};
use serde_json::json;

use super::{Report, to_json};
use crate::output::{Table, clean, opt, opt_time, time};
use crate::{CliError, TasksCommand};

/// Tasks deleted per store call by `purge`.
const PURGE_BATCH: usize = 500;

pub(super) async fn run(storage: &dyn Storage, command: &TasksCommand) -> Result<Report, CliError> {
    match command {
        TasksCommand::List {
            queue,
            status,
            limit,
            offset,
        } => {
            if *limit == 0 {
                return Err(CliError::Usage("--limit must be at least 1".into()));
            }
            let filter = TaskFilter {
                queue: queue.clone(),
                status: *status,
                limit: *limit,
                offset: *offset,
            };
            list(storage, &filter).await
        }
        TasksCommand::Show { id } => show(storage, id).await,
        TasksCommand::Retry { id } => {
            // Read first so a missing task says "not found" on every backend.
            get(storage, id).await?;
            let receipt = storage.retry_task(id).await?;
            Ok(Report::new(
                json!({
                    "task_id": id,
                    "status": receipt.status.as_str(),
                    "attempts": receipt.attempts,
                    "available_at": time(receipt.available_at),
                }),
                format!("task {} is {} again\n", clean(id), receipt.status.as_str()),
            ))
        }
        TasksCommand::Delete { id } => {
            if storage.delete_task(id).await? {
                Ok(Report::new(
                    json!({"task_id": id, "deleted": true}),
                    format!("deleted task {}\n", clean(id)),
                ))
            } else {
                Err(not_found(id))
            }
        }
        TasksCommand::Purge { older_than, limit } => purge(storage, *older_than, *limit).await,
    }
}

fn not_found(id: &str) -> CliError {
    CliError::NotFound {
        kind: "task",
        id: id.to_owned(),
    }
}

async fn get(storage: &dyn Storage, id: &str) -> Result<Task, CliError> {
    storage.get_task(id).await?.ok_or_else(|| not_found(id))
}

async fn list(storage: &dyn Storage, filter: &TaskFilter) -> Result<Report, CliError> {
    let tasks = storage.list_tasks(filter).await?;
    let mut table = Table::new(&[
        "ID", "QUEUE", "TYPE", "STATUS", "ATTEMPTS", "UPDATED", "ERROR",
    ]);
    for task in &tasks {
        table.row([
            task.task_id.as_str(),
            &task.queue,
            &task.task_type,
            task.status.as_str(),
            &format!("{}/{}", task.attempts, task.max_attempts),
            &time(task.updated_at),
            &opt(task.error.as_deref()),
        ]);
    }
    let text = if table.is_empty() {
        "no tasks match\n".to_owned()
    } else {
        table.render()
    };
    Ok(Report::new(to_json(&tasks)?, text))
}

async fn show(storage: &dyn Storage, id: &str) -> Result<Report, CliError> {
    let task = get(storage, id).await?;
    let mut head = Table::new(&["TASK", ""]);
    head.row(["id", &task.task_id]);
    head.row(["queue", &task.queue]);
    head.row(["type", &task.task_type]);
    head.row(["status", task.status.as_str()]);
    head.row([
        "attempts",
        &format!("{}/{}", task.attempts, task.max_attempts),
    ]);
    head.row(["idempotency key", &opt(task.idempotency_key.as_deref())]);
    head.row(["created", &time(task.created_at)]);
    head.row(["updated", &time(task.updated_at)]);
    head.row(["available", &time(task.available_at)]);
    head.row(["finished", &opt_time(task.finished_at)]);
    head.row([
        "lease",
        &task.lease.as_ref().map_or_else(
            || "-".to_owned(),
            |l| {
                format!(
                    "{} (attempt {}) until {}",
                    l.worker_id,
                    l.attempt,
                    time(l.expires_at)
                )
            },
        ),
    ]);
    head.row(["payload", &clean(&task.payload.to_string())]);
    head.row([
        "result",
        &task
            .result
            .as_ref()
            .map_or_else(|| "-".to_owned(), |r| clean(&r.to_string())),
    ]);
    head.row(["error", &opt(task.error.as_deref())]);
    let mut text = head.render();
    text.push_str("\nAttempts\n");
    if task.history.is_empty() {
        text.push_str("(none yet)\n");
    } else {
        let mut attempts = Table::new(&["#", "WORKER", "CLAIMED", "FINISHED", "OUTCOME", "ERROR"]);
        for a in &task.history {
            attempts.row([
                a.attempt.to_string(),
                a.worker_id.clone(),
                time(a.claimed_at),
                opt_time(a.finished_at),
                opt(a.outcome.as_deref()),
                opt(a.error.as_deref()),
            ]);
        }
        text.push_str(&attempts.render());
    }
    Ok(Report::new(to_json(&task)?, text))
}

async fn purge(
    storage: &dyn Storage,
    older_than: Duration,
    limit: u64,
) -> Result<Report, CliError> {
    let mut purged = 0_u64;
    let mut corrupt = Vec::new();
    let mut more = true;
    while more && purged < limit {
        let batch = PURGE_BATCH.min(usize::try_from(limit - purged).unwrap_or(PURGE_BATCH));
        let sweep = storage.purge_tasks(older_than, batch).await?;
        purged += sweep.done;
        more = sweep.more;
        corrupt.extend(sweep.corrupt);
        if sweep.done == 0 {
            // Only unreadable entries are left in this batch: stop rather than spin.
            break;
        }
    }
    let mut text = format!(
        "purged {purged} finished task(s) older than {}\n",
        humantime::format_duration(older_than)
    );
    if more {
        text.push_str("more remain: run again (or raise --limit)\n");
    }
    for key in &corrupt {
        text.push_str("unreadable, left in place: ");
        text.push_str(&clean(key));
        text.push('\n');
    }
    Ok(Report::new(
        json!({"purged": purged, "more": more, "corrupt": corrupt}),
        text,
    ))
}
