//! `bgops sagas list|show|retry-compensation`.

use std::sync::Arc;
use std::time::Duration;

use bgops_core::{SagaEvent, SagaEventKind, SagaStatus, SagaStepStatus, SagaWorkflow};
use bgops_storage::{SagaFilter, Storage};
use serde_json::json;
use time::OffsetDateTime;

use super::{Report, to_json};
use crate::output::{Table, clean, opt, time};
use crate::{CliError, SagasCommand};

/// The lease owner `retry-compensation` writes as (seen in the saga's history fences).
pub const RETRY_OPERATOR: &str = "bgops-cli";

/// How long `retry-compensation` holds the saga's lease for its one write.
const RETRY_LEASE: Duration = Duration::from_secs(30);

/// Page size when filtering by type.
const PAGE: usize = 100;

pub(super) async fn run(storage: &dyn Storage, command: &SagasCommand) -> Result<Report, CliError> {
    match command {
        SagasCommand::List {
            status,
            workflow_type,
            tenant,
            limit,
            offset,
            scan,
        } => {
            let filter = SagaFilter {
                status: *status,
                tenant_id: tenant.clone(),
                limit: *limit,
                offset: *offset,
            };
            list(storage, filter, workflow_type.as_deref(), *scan).await
        }
        SagasCommand::Show { id } => show(storage, id).await,
        SagasCommand::Watch {
            id,
            interval,
            forever,
        } => {
            let mut out = Vec::new();
            watch(storage, id, *interval, *forever, false, &mut out).await?;
            let text = String::from_utf8_lossy(&out).into_owned();
            let lines: Vec<&str> = text.lines().collect();
            Ok(Report::new(json!(lines), text))
        }
        SagasCommand::RetryCompensation { id } => retry_compensation(storage, id).await,
    }
}

fn not_found(id: &str) -> CliError {
    CliError::NotFound {
        kind: "saga",
        id: id.to_owned(),
    }
}

async fn list(
    storage: &dyn Storage,
    filter: SagaFilter,
    workflow_type: Option<&str>,
    scan: usize,
) -> Result<Report, CliError> {
    if filter.limit == 0 {
        return Err(CliError::Usage("--limit must be at least 1".into()));
    }
    let sagas = match workflow_type {
        None => storage.list_sagas(&filter).await?,
        // The store's index has no type dimension: read pages and keep the matches, up to
        // `scan` sagas read.
        Some(wanted) => {
            let mut found = Vec::new();
            let mut offset = filter.offset;
            let mut read = 0;
            while found.len() < filter.limit && read < scan {
                let page = SagaFilter {
                    limit: PAGE.min(scan - read),
                    offset,
                    ..filter.clone()
                };
                let batch = storage.list_sagas(&page).await?;
                let got = batch.len();
                read += got;
                offset += got;
                found.extend(batch.into_iter().filter(|s| s.workflow_type == wanted));
                if got < page.limit {
                    break;
                }
            }
            found.truncate(filter.limit);
            found
        }
    };
    let mut table = Table::new(&["ID", "TYPE", "TENANT", "STATUS", "STEP", "UPDATED", "ERROR"]);
    for saga in &sagas {
        table.row([
            saga.saga_id.as_str(),
            &saga.workflow_type,
            &saga.tenant_id,
            saga.status.as_str(),
            &format!("{}/{}", progress(saga), saga.steps.len()),
            &time(saga.updated_at),
            &opt(saga.error.as_deref()),
        ]);
    }
    let text = if table.is_empty() {
        "no sagas match\n".to_owned()
    } else {
        table.render()
    };
    Ok(Report::new(to_json(&sagas)?, text))
}

/// Steps that completed (or were compensated after completing).
fn progress(saga: &SagaWorkflow) -> usize {
    saga.steps
        .iter()
        .filter(|s| {
            matches!(
                s.status,
                SagaStepStatus::Completed
                    | SagaStepStatus::Compensating
                    | SagaStepStatus::Compensated
                    | SagaStepStatus::CompensationFailed
            )
        })
        .count()
}

async fn show(storage: &dyn Storage, id: &str) -> Result<Report, CliError> {
    let saga = storage.get_saga(id).await?.ok_or_else(|| not_found(id))?;
    let history = storage.get_saga_history(id).await?;
    let json = json!({ "saga": to_json(&saga)?, "history": to_json(&history)? });

    let mut text = String::new();
    let mut head = Table::new(&["SAGA", ""]);
    head.row(["id", &saga.saga_id]);
    head.row(["type", &saga.workflow_type]);
    head.row(["tenant", &saga.tenant_id]);
    head.row(["status", saga.status.as_str()]);
    head.row(["version", &saga.version.to_string()]);
    head.row(["created", &time(saga.created_at)]);
    head.row(["updated", &time(saga.updated_at)]);
    head.row(["idempotency key", &opt(saga.idempotency_key.as_deref())]);
    head.row([
        "lease",
        &saga.lease.as_ref().map_or_else(
            || "-".to_owned(),
            |l| {
                format!(
                    "{} (fence {}) until {}",
                    l.owner,
                    l.fence,
                    time(l.expires_at)
                )
            },
        ),
    ]);
    head.row(["error", &opt(saga.error.as_deref())]);
    text.push_str(&head.render());

    let mut steps = Table::new(&[
        "#",
        "STEP",
        "OPERATION",
        "STATUS",
        "ATTEMPTS",
        "ERROR",
        "COMPENSATION",
        "COMP. ERROR",
    ]);
    for (i, step) in saga.steps.iter().enumerate() {
        steps.row([
            i.to_string(),
            step.name.clone(),
            step.operation.clone(),
            step_status(step.status).to_owned(),
            format!("{}/{}", step.attempts, step.max_retries + 1),
            opt(step.error.as_deref()),
            step.compensation_operation.as_deref().map_or_else(
                || "-".to_owned(),
                |op| format!("{op} ({} attempts)", step.compensation_attempts),
            ),
            opt(step.compensation_error.as_deref()),
        ]);
    }
    text.push_str("\nSteps\n");
    text.push_str(&steps.render());

    text.push_str("\nTimeline\n");
    if history.is_empty() {
        text.push_str("(no events recorded)\n");
    } else {
        let mut timeline = Table::new(&["AT", "FENCE", "STATUS", "EVENT", "STEP", "DETAIL"]);
        for event in &history {
            let step = event.kind.step_index().map_or_else(
                || "-".to_owned(),
                |i| {
                    let name = step_name(&event.kind).unwrap_or("");
                    format!("{i} {name}")
                },
            );
            timeline.row([
                time(event.at),
                event.fence.to_string(),
                event.status.as_str().to_owned(),
                event.kind.name().to_owned(),
                step,
                detail(&event.kind),
            ]);
        }
        text.push_str(&timeline.render());
    }
    Ok(Report::new(json, text))
}

/// Prints the saga's events to `out` as they are recorded, polling every `every`, until
/// its status is an end state (after printing the events that led there), or forever.
/// With `json`, each event is one line of `SagaEvent` JSON (NDJSON).
///
/// # Errors
/// `NotFound` when the saga does not exist (or is deleted while watched), store errors,
/// and a failed write to `out` (a closed pipe) as `Usage`.
pub async fn watch(
    storage: &dyn Storage,
    id: &str,
    every: Duration,
    forever: bool,
    json: bool,
    out: &mut (dyn std::io::Write + Send),
) -> Result<(), CliError> {
    let every = every.max(Duration::from_millis(50));
    let mut seen = 0;
    loop {
        let saga = storage.get_saga(id).await?.ok_or_else(|| not_found(id))?;
        let history = storage.get_saga_history(id).await?;
        for event in history.iter().skip(seen) {
            let line = if json {
                serde_json::to_string(event)
                    .map_err(|e| CliError::Store(bgops_storage::StorageError::Serialization(e)))?
            } else {
                watch_line(event)
            };
            writeln!(out, "{line}").map_err(|e| CliError::Usage(format!("cannot write: {e}")))?;
        }
        seen = seen.max(history.len());
        out.flush()
            .map_err(|e| CliError::Usage(format!("cannot write: {e}")))?;
        if saga.status.is_terminal() && !forever {
            return Ok(());
        }
        tokio::time::sleep(every).await;
    }
}

/// One event as a line: time, status, event, step, detail.
fn watch_line(event: &SagaEvent) -> String {
    let step = event.kind.step_index().map_or_else(String::new, |i| {
        format!("{i} {}", step_name(&event.kind).unwrap_or(""))
    });
    let line = format!(
        "{}  {:<19}  {:<21}  {:<20}  {}",
        time(event.at),
        event.status.as_str(),
        event.kind.name(),
        clean(&step),
        detail(&event.kind)
    );
    line.trim_end().to_owned()
}

fn step_status(status: SagaStepStatus) -> &'static str {
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

fn step_name(kind: &SagaEventKind) -> Option<&str> {
    match kind {
        SagaEventKind::StepStarted { name, .. }
        | SagaEventKind::StepSucceeded { name, .. }
        | SagaEventKind::StepRetrying { name, .. }
        | SagaEventKind::StepFailed { name, .. }
        | SagaEventKind::CompensationStarted { name, .. }
        | SagaEventKind::StepCompensated { name, .. }
        | SagaEventKind::CompensationRetrying { name, .. }
        | SagaEventKind::CompensationFailed { name, .. } => Some(name),
        _ => None,
    }
}

/// The facts of an event beyond its type and step, in a few words.
fn detail(kind: &SagaEventKind) -> String {
    match kind {
        SagaEventKind::StepStarted { attempt, .. }
        | SagaEventKind::CompensationStarted { attempt, .. } => format!("attempt {attempt}"),
        SagaEventKind::StepSucceeded { output, .. } => clean(&output.to_string()),
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
        } => clean(&format!(
            "attempt {attempt} failed: {error}; retry in {delay_ms} ms"
        )),
        SagaEventKind::StepFailed { error, .. }
        | SagaEventKind::CompensationFailed { error, .. }
        | SagaEventKind::Aborted { error } => clean(error),
        SagaEventKind::Compensating { reason } => clean(reason),
        _ => String::new(),
    }
}

/// Marks a `compensation_failed` saga's failed compensations to run again and puts it
/// back to `compensating` with no lease, in one fenced write: the saga recoverer of a
/// service that has the workflow's handlers picks it up (the CLI has no handlers to run).
/// The same state change as the saga engine's `retry_compensation` before it compensates.
async fn retry_compensation(storage: &dyn Storage, id: &str) -> Result<Report, CliError> {
    let current = storage.get_saga(id).await?.ok_or_else(|| not_found(id))?;
    if current.status != SagaStatus::CompensationFailed {
        return Err(refuse(id, current.status));
    }
    let Some(mut saga) = storage
        .acquire_saga_lease(id, RETRY_OPERATOR, RETRY_LEASE)
        .await?
    else {
        return Err(CliError::Refused(format!(
            "saga `{id}` is busy: an executor holds its lease; try again later"
        )));
    };
    let fence = saga.lease.as_ref().map_or(0, |l| l.fence);
    if saga.status != SagaStatus::CompensationFailed {
        // Changed between the read and the lease: give the lease back untouched.
        let status = saga.status;
        saga.lease = None;
        storage.save_saga(&saga, fence, &[], None).await?;
        return Err(refuse(id, status));
    }
    let mut retried = Vec::new();
    for (i, step) in saga.steps.iter_mut().enumerate() {
        if step.status == SagaStepStatus::CompensationFailed {
            step.status = SagaStepStatus::Compensating;
            step.compensation_attempts = 0;
            retried.push(json!({"step_index": i, "name": step.name}));
        }
    }
    let now = OffsetDateTime::now_utc();
    saga.status = SagaStatus::Compensating;
    saga.updated_at = now;
    saga.lease = None;
    let event = SagaEvent {
        saga_id: Arc::from(id),
        at: now,
        fence,
        status: SagaStatus::Compensating,
        kind: SagaEventKind::Compensating {
            reason: format!("compensation retry requested by {RETRY_OPERATOR}"),
        },
    };
    let saved = storage.save_saga(&saga, fence, &[event], None).await?;
    let text = format!(
        "saga {} is compensating again ({} step(s) to retry, version {}); a service running \
         the saga recoverer with the `{}` handlers will compensate it\n",
        clean(id),
        retried.len(),
        saved.version,
        clean(&saga.workflow_type),
    );
    Ok(Report::new(
        json!({
            "saga_id": id,
            "status": SagaStatus::Compensating.as_str(),
            "version": saved.version,
            "steps_to_retry": retried,
        }),
        text,
    ))
}

fn refuse(id: &str, status: SagaStatus) -> CliError {
    CliError::Refused(format!(
        "saga `{id}` is {}; only a compensation_failed saga can retry its compensation",
        status.as_str()
    ))
}
