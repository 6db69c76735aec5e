//! `bgops keys get|delete`.

use bgops_core::OperationStatus;
use bgops_storage::{Storage, validate_address};
use serde_json::json;

use super::{Report, to_json};
use crate::output::{Table, clean, opt, opt_time, time};
use crate::{CliError, KeysCommand};

pub(super) async fn run(storage: &dyn Storage, command: &KeysCommand) -> Result<Report, CliError> {
    match command {
        KeysCommand::Get { tenant, key } => get(storage, tenant, key).await,
        KeysCommand::Delete { tenant, key, force } => {
            validate_address(tenant, key).map_err(|e| CliError::Usage(e.to_string()))?;
            if !force {
                refuse_in_flight(storage, tenant, key).await?;
            }
            if storage.delete_idempotency(tenant, key).await? {
                Ok(Report::new(
                    json!({"deleted": true, "tenant_id": tenant, "key": key}),
                    format!(
                        "deleted idempotency record {}/{}\n",
                        clean(tenant),
                        clean(key)
                    ),
                ))
            } else {
                Err(not_found(tenant, key))
            }
        }
    }
}

/// Deleting a claim whose lease is live would let a retry run the operation while it
/// still runs: refused unless forced.
async fn refuse_in_flight(storage: &dyn Storage, tenant: &str, key: &str) -> Result<(), CliError> {
    let Some(record) = storage.get_idempotency(tenant, key).await? else {
        return Err(not_found(tenant, key));
    };
    let now = time::OffsetDateTime::now_utc();
    match record.lease_expires_at {
        Some(until) if record.status == OperationStatus::InProgress && until > now => {
            Err(CliError::Refused(format!(
                "idempotency record {tenant}/{key} is in flight (lease until {}); deleting it \
                 lets a retry run the operation again while it runs: pass --force to do it anyway",
                time(until)
            )))
        }
        _ => Ok(()),
    }
}

fn not_found(tenant: &str, key: &str) -> CliError {
    CliError::NotFound {
        kind: "idempotency record",
        id: format!("{tenant}/{key}"),
    }
}

async fn get(storage: &dyn Storage, tenant: &str, key: &str) -> Result<Report, CliError> {
    validate_address(tenant, key).map_err(|e| CliError::Usage(e.to_string()))?;
    let record = storage
        .get_idempotency(tenant, key)
        .await?
        .ok_or_else(|| not_found(tenant, key))?;
    let mut value = to_json(&*record)?;
    let payload_len = record.payload.as_ref().map(|p| p[..].len());
    if let Some(map) = value.as_object_mut() {
        map.insert("payload_bytes".into(), json!(payload_len));
    }
    let mut table = Table::new(&["FIELD", "VALUE"]);
    table.row(["tenant", &record.tenant_id]);
    table.row(["key", &record.key]);
    table.row(["operation", &record.operation_type]);
    table.row(["user", &opt(record.user_id.as_deref())]);
    table.row(["status", record.status.as_str()]);
    table.row(["created", &time(record.created_at)]);
    table.row(["expires", &time(record.expires_at)]);
    table.row(["lease expires", &opt_time(record.lease_expires_at)]);
    table.row(["completed", &opt_time(record.completed_at)]);
    table.row(["fingerprint", &opt(record.fingerprint.as_deref())]);
    table.row([
        "result",
        &record
            .result
            .as_ref()
            .map_or_else(|| "-".to_owned(), ToString::to_string),
    ]);
    table.row(["error", &opt(record.error.as_deref())]);
    table.row([
        "payload",
        &payload_len.map_or_else(|| "-".to_owned(), |n| format!("{n} bytes")),
    ]);
    Ok(Report::new(value, table.render()))
}
