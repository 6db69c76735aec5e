//! [`IdempotencyStore`] on Redis: one hash per record, one script per state change.
//!
//! The hot path is lean on purpose: `begin` answers a fresh claim with three times,
//! `complete` with two; only a replay (`Completed`) reads the record back, as one
//! `HMGET` of fixed fields (no field names on the wire), payload bytes included.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bgops_core::clock::from_millis;
use bgops_core::{IdempotencyRecord, OperationOutcome, OperationStatus};
use bgops_storage::{
    BeginOutcome, BeginRequest, Claimed, Completed, IdempotencyStore, StorageError, StorageResult,
    Sweep, record_lease_lost, record_not_found, validate_address,
};
use bytes::Bytes;
use fred::interfaces::HashesInterface;
use fred::types::Value;
use time::OffsetDateTime;

use crate::codec::{corrupt, items, ms, text};
use crate::error;
use crate::keys::BUCKETS;
use crate::scripts::{
    IDEM_BEGIN, IDEM_COMPLETE, IDEM_DELETE, IDEM_PURGE, IDEM_RELEASE, IDEM_RENEW,
};
use crate::storage::RedisStorage;

/// The fields a replay or a lookup reads, in this order (`idem_begin.lua` lists the same).
/// Tenant and key are not stored: they are the record's address, known to every reader.
pub(crate) const RECORD_FIELDS: [&str; 12] = [
    "status",
    "expires",
    "created",
    "op",
    "user",
    "fp",
    "params",
    "lease",
    "completed",
    "result",
    "error",
    "payload",
];

/// The bytes of a reply item, without copying (`None` for nil).
fn bytes(value: Value, key: &str) -> StorageResult<Option<Bytes>> {
    match value {
        Value::Null => Ok(None),
        Value::Bytes(b) => Ok(Some(b)),
        Value::String(s) => Ok(Some(s.into_inner())),
        Value::Integer(i) => Ok(Some(Bytes::from(i.to_string()))),
        other => Err(corrupt(key, format!("expected a string, got {other:?}"))),
    }
}

/// Decodes the values of [`RECORD_FIELDS`] of the record at (`tenant_id`, `record_key`)
/// stored under `key`; `None` when it does not exist.
fn record(
    key: &str,
    tenant_id: &str,
    record_key: &str,
    values: Vec<Value>,
) -> StorageResult<Option<Arc<IdempotencyRecord>>> {
    if values.len() != RECORD_FIELDS.len() {
        return Err(corrupt(
            key,
            format!("expected {} fields", RECORD_FIELDS.len()),
        ));
    }
    let mut fields = values.into_iter();
    let mut next =
        || -> StorageResult<Option<Bytes>> { fields.next().map_or(Ok(None), |v| bytes(v, key)) };
    let utf8 = |name: &str, raw: Option<Bytes>| -> StorageResult<Option<String>> {
        raw.map(|b| {
            String::from_utf8(b.to_vec())
                .map_err(|_| corrupt(key, format!("field `{name}` is not UTF-8")))
        })
        .transpose()
    };
    let Some(status) = next()? else {
        return Ok(None);
    };
    let status = match &status[..] {
        b"in_progress" => OperationStatus::InProgress,
        b"completed" => OperationStatus::Completed,
        b"failed" => OperationStatus::Failed,
        b"pending" => OperationStatus::Pending,
        other => {
            return Err(corrupt(
                key,
                format!("unknown status {:?}", String::from_utf8_lossy(other)),
            ));
        }
    };
    let time = |name: &str, raw: Option<Bytes>| -> StorageResult<Option<OffsetDateTime>> {
        raw.map(|b| {
            std::str::from_utf8(&b)
                .ok()
                .and_then(|t| t.parse::<i64>().ok())
                .map(from_millis)
                .ok_or_else(|| corrupt(key, format!("field `{name}` is not a number")))
        })
        .transpose()
    };
    let required = |name: &str, v: Option<String>| {
        v.ok_or_else(|| corrupt(key, format!("field `{name}` is missing")))
    };
    let json = |name: &str, raw: Option<Bytes>| -> StorageResult<Option<serde_json::Value>> {
        raw.map(|b| {
            serde_json::from_slice(&b)
                .map_err(|e| corrupt(key, format!("field `{name}` is not valid JSON: {e}")))
        })
        .transpose()
    };
    let expires_at = time("expires", next()?)?;
    let created_at = time("created", next()?)?;
    let operation_type = required("op", utf8("op", next()?)?)?;
    let user_id = utf8("user", next()?)?;
    let fingerprint = utf8("fp", next()?)?;
    let parameters = json("params", next()?)?;
    let lease = time("lease", next()?)?;
    let completed_at = time("completed", next()?)?;
    let result = json("result", next()?)?;
    let error = utf8("error", next()?)?;
    let payload = next()?;
    Ok(Some(Arc::new(IdempotencyRecord {
        key: record_key.to_owned(),
        tenant_id: tenant_id.to_owned(),
        user_id,
        operation_type,
        created_at: created_at.ok_or_else(|| corrupt(key, "field `created` is missing".into()))?,
        expires_at: expires_at.ok_or_else(|| corrupt(key, "field `expires` is missing".into()))?,
        status,
        result,
        error,
        parameters,
        fingerprint,
        lease_expires_at: if status == OperationStatus::InProgress {
            lease
        } else {
            None
        },
        completed_at,
        payload,
    })))
}

/// A reply item holding milliseconds.
fn millis(value: Option<&Value>, script: &'static str) -> StorageResult<OffsetDateTime> {
    value
        .and_then(|v| match v {
            Value::Integer(i) => Some(*i),
            other => other.as_str().and_then(|t| t.parse().ok()),
        })
        .map(from_millis)
        .ok_or_else(|| error::unexpected(script, "missing time"))
}

/// The first item of a script reply, as text.
fn code(items: &[Value], rec: &str) -> StorageResult<String> {
    items
        .first()
        .map_or_else(|| Ok(String::new()), |v| text(v, rec))
}

impl RedisStorage {
    /// One bucket's purge batch; a corrupt bucket index is reported, not fatal.
    async fn purge_bucket(&self, b: u32, limit: u64, sweep: &mut Sweep) -> StorageResult<()> {
        let index = self.keys.idempotency_index(b);
        let reply = match self
            .run(&IDEM_PURGE, vec![index.clone()], vec![limit.to_string()])
            .await
        {
            Ok(reply) => reply,
            Err(StorageError::Corrupt { key, .. }) => {
                sweep.corrupt.push(key);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let mut parts = items(reply).into_iter();
        let (Some(removed), Some(more)) = (parts.next(), parts.next()) else {
            return Err(error::unexpected(IDEM_PURGE.name, "short reply"));
        };
        sweep.done += removed
            .as_u64()
            .ok_or_else(|| error::unexpected(IDEM_PURGE.name, "removed"))?;
        sweep.more |= more.as_u64().unwrap_or(0) > 0;
        for key in parts {
            sweep.corrupt.push(text(&key, &index)?);
        }
        Ok(())
    }
}

#[async_trait]
impl IdempotencyStore for RedisStorage {
    async fn begin(&self, request: BeginRequest) -> StorageResult<BeginOutcome> {
        request.validate()?;
        let (rec, idx) = self.keys.idempotency(&request.tenant_id, &request.key);
        let BeginRequest {
            tenant_id,
            key,
            user_id,
            operation_type,
            fingerprint,
            parameters,
            ttl,
            lease,
            token,
        } = request;
        let flags = [
            user_id.is_some(),
            fingerprint.is_some(),
            parameters.is_some(),
        ]
        .map(|given| if given { '1' } else { '0' });
        let mut args: Vec<Value> = Vec::with_capacity(8);
        args.push(token.clone().into());
        args.push(ms(ttl).into());
        args.push(ms(lease).into());
        args.push(operation_type.into());
        args.push(flags.iter().collect::<String>().into());
        if let Some(user) = user_id {
            args.push(user.into());
        }
        if let Some(fp) = fingerprint {
            args.push(fp.into());
        }
        if let Some(params) = &parameters {
            let json = serde_json::to_vec(params).map_err(StorageError::Serialization)?;
            args.push(Bytes::from(json).into());
        }
        let reply = self
            .run_values(&IDEM_BEGIN, vec![rec.clone(), idx], args)
            .await?;
        let parts = items(reply);
        match code(&parts, &rec)?.as_str() {
            "started" => Ok(BeginOutcome::Started(Claimed {
                token,
                created_at: millis(parts.get(1), IDEM_BEGIN.name)?,
                expires_at: millis(parts.get(2), IDEM_BEGIN.name)?,
                lease_expires_at: millis(parts.get(3), IDEM_BEGIN.name)?,
            })),
            "in_progress" => Ok(BeginOutcome::InProgress {
                lease_expires_at: millis(parts.get(1), IDEM_BEGIN.name)?,
            }),
            "completed" => {
                let values = parts.into_iter().nth(1).map(Value::into_array);
                record(&rec, &tenant_id, &key, values.unwrap_or_default())?
                    .map(BeginOutcome::Completed)
                    .ok_or_else(|| error::unexpected(IDEM_BEGIN.name, "empty record"))
            }
            "mismatch" => Ok(BeginOutcome::Mismatch),
            other => Err(error::unexpected(IDEM_BEGIN.name, other.to_owned())),
        }
    }

    async fn complete(
        &self,
        tenant_id: &str,
        key: &str,
        token: &str,
        outcome: OperationOutcome,
    ) -> StorageResult<Completed> {
        validate_address(tenant_id, key)?;
        let (rec, _) = self.keys.idempotency(tenant_id, key);
        let status = outcome.status();
        let mut args: Vec<Value> = Vec::with_capacity(8);
        args.push(token.into());
        args.push(status.as_str().into());
        if let Some(result) = &outcome.result {
            let json = serde_json::to_vec(result).map_err(StorageError::Serialization)?;
            args.extend(["result".into(), Bytes::from(json).into()]);
        }
        if let Some(err) = outcome.error {
            args.extend(["error".into(), err.into()]);
        }
        if let Some(payload) = outcome.payload {
            args.extend(["payload".into(), payload.into()]);
        }
        let reply = self
            .run_values(&IDEM_COMPLETE, vec![rec.clone()], args)
            .await?;
        let parts = items(reply);
        match code(&parts, &rec)?.as_str() {
            "ok" => Ok(Completed {
                completed_at: millis(parts.get(1), IDEM_COMPLETE.name)?,
                expires_at: millis(parts.get(2), IDEM_COMPLETE.name)?,
            }),
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
        let (rec, _) = self.keys.idempotency(tenant_id, key);
        let reply = self
            .run(
                &IDEM_RENEW,
                vec![rec.clone()],
                vec![token.to_owned(), ms(lease)],
            )
            .await?;
        let parts = items(reply);
        match code(&parts, &rec)?.as_str() {
            "ok" => millis(parts.get(1), IDEM_RENEW.name),
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
        let values: Vec<Value> = self
            .pool
            .hmget(rec.as_str(), RECORD_FIELDS.to_vec())
            .await
            .map_err(|e| error::from_fred(e, &rec))?;
        record(&rec, tenant_id, key, values)
    }

    async fn delete_idempotency(&self, tenant_id: &str, key: &str) -> StorageResult<bool> {
        validate_address(tenant_id, key)?;
        let (rec, idx) = self.keys.idempotency(tenant_id, key);
        let reply = self.run(&IDEM_DELETE, vec![rec, idx], vec![]).await?;
        Ok(reply.as_u64().unwrap_or(0) > 0)
    }

    async fn purge_expired(&self, limit: usize) -> StorageResult<Sweep> {
        let mut sweep = Sweep::default();
        let limit = limit as u64;
        for b in 0..BUCKETS {
            let left = limit.saturating_sub(sweep.done);
            if left == 0 {
                // Buckets not visited may hold due records.
                sweep.more = true;
                break;
            }
            self.purge_bucket(b, left, &mut sweep).await?;
        }
        Ok(sweep)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_lua_reads_the_fields_in_the_order_rust_decodes() {
        let lua = include_str!("../lua/idem_begin.lua");
        let listed: Vec<&str> = lua
            .split_once("RECORD_FIELDS = {")
            .and_then(|(_, rest)| rest.split_once('}'))
            .map(|(list, _)| {
                list.split(',')
                    .map(|f| f.trim().trim_matches('\''))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(listed, super::RECORD_FIELDS);
    }
}
