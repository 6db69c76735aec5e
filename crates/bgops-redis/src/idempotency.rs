//! [`IdempotencyStore`] on Redis: one hash per record, one script per state change.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bgops_core::clock::from_millis;
use bgops_core::{IdempotencyRecord, OperationOutcome, OperationStatus};
use bgops_storage::{
    BeginOutcome, BeginRequest, IdempotencyStore, StorageResult, record_lease_lost,
    record_not_found, validate_address,
};
use fred::types::Value;
use time::OffsetDateTime;

use crate::codec::{Fields, items, ms, opt_arg, text, to_json};
use crate::error;
use crate::keys::BUCKETS;
use crate::scripts::{
    IDEM_BEGIN, IDEM_COMPLETE, IDEM_DELETE, IDEM_PURGE, IDEM_RELEASE, IDEM_RENEW,
};
use crate::storage::RedisStorage;

fn record(fields: &Fields) -> StorageResult<Arc<IdempotencyRecord>> {
    let status = match fields.req("status")? {
        "pending" => OperationStatus::Pending,
        "in_progress" => OperationStatus::InProgress,
        "completed" => OperationStatus::Completed,
        "failed" => OperationStatus::Failed,
        other => {
            return Err(crate::codec::corrupt(
                &fields.key,
                format!("unknown status {other:?}"),
            ));
        }
    };
    Ok(Arc::new(IdempotencyRecord {
        key: fields.req("key")?.to_owned(),
        tenant_id: fields.req("tenant")?.to_owned(),
        user_id: fields.opt("user").map(str::to_owned),
        operation_type: fields.req("op")?.to_owned(),
        created_at: fields.time("created")?,
        expires_at: fields.time("expires")?,
        status,
        result: fields.opt_json("result")?,
        error: fields.opt("error").map(str::to_owned),
        parameters: fields.opt_json("params")?,
        fingerprint: fields.opt("fp").map(str::to_owned),
        lease_expires_at: if status == OperationStatus::InProgress {
            fields.opt_time("lease")?
        } else {
            None
        },
        completed_at: fields.opt_time("completed")?,
    }))
}

/// The first item of a script reply, as text.
fn code(items: &[Value], rec: &str) -> StorageResult<String> {
    items
        .first()
        .map_or_else(|| Ok(String::new()), |v| text(v, rec))
}

#[async_trait]
impl IdempotencyStore for RedisStorage {
    async fn begin(&self, request: BeginRequest) -> StorageResult<BeginOutcome> {
        request.validate()?;
        let (rec, idx) = self.keys.idempotency(&request.tenant_id, &request.key);
        let params = request.parameters.as_ref().map(to_json).transpose()?;
        let token = uuid::Uuid::new_v4().simple().to_string();
        let reply = self
            .run(
                &IDEM_BEGIN,
                vec![rec.clone(), idx],
                vec![
                    request.tenant_id.clone(),
                    request.key.clone(),
                    opt_arg(request.user_id.as_deref()),
                    request.operation_type.clone(),
                    opt_arg(request.fingerprint.as_deref()),
                    opt_arg(params.as_deref()),
                    ms(request.ttl),
                    ms(request.lease),
                    ms(self.grace),
                    token,
                ],
            )
            .await?;
        let mut parts = items(reply).into_iter();
        let (Some(outcome), Some(token), Some(third)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(error::unexpected(IDEM_BEGIN.name, "short reply"));
        };
        let outcome = text(&outcome, &rec)?;
        if outcome == "created" {
            // The hot path: the script answers only what the caller does not know.
            let millis = |v: Option<Value>| -> StorageResult<OffsetDateTime> {
                v.and_then(|v| text(&v, &rec).ok())
                    .and_then(|t| t.parse::<i64>().ok())
                    .map(from_millis)
                    .ok_or_else(|| error::unexpected(IDEM_BEGIN.name, "missing time"))
            };
            let created_at = millis(Some(third))?;
            let expires_at = millis(parts.next())?;
            let lease_expires_at = Some(millis(parts.next())?);
            let record = IdempotencyRecord {
                key: request.key,
                tenant_id: request.tenant_id,
                user_id: request.user_id,
                operation_type: request.operation_type,
                created_at,
                expires_at,
                status: OperationStatus::InProgress,
                result: None,
                error: None,
                parameters: request.parameters,
                fingerprint: request.fingerprint,
                lease_expires_at,
                completed_at: None,
            };
            return Ok(BeginOutcome::Started {
                token: text(&token, &rec)?,
                record: Arc::new(record),
            });
        }
        let record = record(&Fields::from_value(&rec, third)?)?;
        Ok(match outcome.as_str() {
            "started" => BeginOutcome::Started {
                token: text(&token, &rec)?,
                record,
            },
            "in_progress" => BeginOutcome::InProgress(record),
            "completed" => BeginOutcome::Completed(record),
            "mismatch" => BeginOutcome::Mismatch(record),
            other => return Err(error::unexpected(IDEM_BEGIN.name, other.to_owned())),
        })
    }

    async fn complete(
        &self,
        tenant_id: &str,
        key: &str,
        token: &str,
        outcome: OperationOutcome,
    ) -> StorageResult<Arc<IdempotencyRecord>> {
        validate_address(tenant_id, key)?;
        let (rec, idx) = self.keys.idempotency(tenant_id, key);
        let status = outcome.status();
        let (result, err) = match &outcome {
            OperationOutcome::Succeeded(value) => (Some(to_json(value)?), None),
            OperationOutcome::Failed { error, result } => (
                result.as_ref().map(to_json).transpose()?,
                Some(error.as_str()),
            ),
        };
        let reply = self
            .run(
                &IDEM_COMPLETE,
                vec![rec.clone(), idx],
                vec![
                    token.to_owned(),
                    status.as_str().to_owned(),
                    opt_arg(result.as_deref()),
                    opt_arg(err),
                ],
            )
            .await?;
        let parts = items(reply);
        match code(&parts, &rec)?.as_str() {
            "ok" => {
                let hash = parts.into_iter().nth(1).unwrap_or(Value::Null);
                record(&Fields::from_value(&rec, hash)?)
            }
            "not_found" => Err(record_not_found(tenant_id, key)),
            "lease_lost" => Err(record_lease_lost(tenant_id, key)),
            other => Err(error::unexpected(IDEM_COMPLETE.name, other)),
        }
    }

    async fn release(&self, tenant_id: &str, key: &str, token: &str) -> StorageResult<()> {
        validate_address(tenant_id, key)?;
        let (rec, idx) = self.keys.idempotency(tenant_id, key);
        let reply = self
            .run(
                &IDEM_RELEASE,
                vec![rec.clone(), idx],
                vec![token.to_owned()],
            )
            .await?;
        match text(&reply, &rec)?.as_str() {
            "ok" => Ok(()),
            "not_found" => Err(record_not_found(tenant_id, key)),
            "lease_lost" => Err(record_lease_lost(tenant_id, key)),
            other => Err(error::unexpected(IDEM_RELEASE.name, other)),
        }
    }

    async fn renew(
        &self,
        tenant_id: &str,
        key: &str,
        token: &str,
        lease: Duration,
    ) -> StorageResult<OffsetDateTime> {
        validate_address(tenant_id, key)?;
        bgops_core::validate::duration("lease", lease)?;
        let (rec, idx) = self.keys.idempotency(tenant_id, key);
        let reply = self
            .run(
                &IDEM_RENEW,
                vec![rec.clone(), idx],
                vec![token.to_owned(), ms(lease), ms(self.grace)],
            )
            .await?;
        let parts = items(reply);
        match code(&parts, &rec)?.as_str() {
            "ok" => {
                let at = parts
                    .get(1)
                    .map(|v| text(v, &rec))
                    .transpose()?
                    .unwrap_or_default();
                let at: i64 = at
                    .parse()
                    .map_err(|_| error::unexpected(IDEM_RENEW.name, at.clone()))?;
                Ok(from_millis(at))
            }
            "not_found" => Err(record_not_found(tenant_id, key)),
            "lease_lost" => Err(record_lease_lost(tenant_id, key)),
            other => Err(error::unexpected(IDEM_RENEW.name, other)),
        }
    }

    async fn get_idempotency(
        &self,
        tenant_id: &str,
        key: &str,
    ) -> StorageResult<Option<Arc<IdempotencyRecord>>> {
        validate_address(tenant_id, key)?;
        let (rec, _) = self.keys.idempotency(tenant_id, key);
        self.read_hash(&rec)
            .await?
            .map(|fields| record(&fields))
            .transpose()
    }

    async fn delete_idempotency(&self, tenant_id: &str, key: &str) -> StorageResult<bool> {
        validate_address(tenant_id, key)?;
        let (rec, idx) = self.keys.idempotency(tenant_id, key);
        let reply = self.run(&IDEM_DELETE, vec![rec, idx], vec![]).await?;
        Ok(reply.as_u64().unwrap_or(0) > 0)
    }

    async fn purge_expired(&self, limit: usize) -> StorageResult<u64> {
        let mut removed = 0_u64;
        for b in 0..BUCKETS {
            let left = (limit as u64).saturating_sub(removed);
            if left == 0 {
                break;
            }
            let reply = self
                .run(
                    &IDEM_PURGE,
                    vec![self.keys.idempotency_index(b)],
                    vec![left.to_string()],
                )
                .await?;
            removed += reply
                .as_u64()
                .ok_or_else(|| error::unexpected(IDEM_PURGE.name, reply))?;
        }
        Ok(removed)
    }
}
