//! [`SagaStore`] on Redis: a hash per saga (its JSON document plus the fields scripts
//! compare: version, lease, fence), a history list, and status/tenant indexes, all under
//! the `{saga}` tag so each script stays on one slot.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use bgops_core::clock::{from_millis, to_millis};
use bgops_core::{SagaEvent, SagaLease, SagaStatus, SagaWorkflow};
use bgops_storage::{CreateSaga, SagaFilter, SagaSaved, SagaStore, StorageError, StorageResult};
use fred::interfaces::ListInterface;
use fred::types::Value;
use time::OffsetDateTime;

use crate::codec::{Fields, corrupt, items, ms, opt_arg, text, to_json};
use crate::error::{self, from_fred};
use crate::keys::enc;
use crate::scripts::{
    SAGA_ACQUIRE, SAGA_CREATE, SAGA_DELETE, SAGA_LIST, SAGA_RECOVERABLE, SAGA_SAVE,
};
use crate::storage::RedisStorage;

const KIND: &str = "saga";
const STATUSES: [SagaStatus; 6] = [
    SagaStatus::Pending,
    SagaStatus::Running,
    SagaStatus::Completed,
    SagaStatus::Compensating,
    SagaStatus::Compensated,
    SagaStatus::CompensationFailed,
];

fn saga(fields: &Fields) -> StorageResult<SagaWorkflow> {
    let mut saga: SagaWorkflow = fields.json("doc")?;
    saga.version = fields.int("version")? as u64;
    saga.lease = match fields.opt("lowner") {
        Some(owner) => Some(SagaLease {
            owner: owner.to_owned(),
            fence: fields.int("lfence")? as u64,
            expires_at: fields.time("lexp")?,
        }),
        None => None,
    };
    Ok(saga)
}

/// The lease owner (optional argument) and fence of a saga write.
fn lease_args(lease: Option<&SagaLease>) -> [String; 2] {
    match lease {
        Some(l) => [opt_arg(Some(&l.owner)), l.fence.to_string()],
        None => [String::new(), "0".to_owned()],
    }
}

/// A lease expiry answered by a saga script: milliseconds, or `''` for none.
fn lease_expiry(
    value: Option<Value>,
    script: &'static str,
) -> StorageResult<Option<OffsetDateTime>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Integer(i)) => Ok(Some(from_millis(i))),
        Some(v) => {
            let raw = v.as_str().map(|s| s.to_string()).unwrap_or_default();
            if raw.is_empty() {
                return Ok(None);
            }
            raw.parse()
                .map(|ms| Some(from_millis(ms)))
                .map_err(|_| error::unexpected(script, raw))
        }
    }
}

fn events(history: &[SagaEvent]) -> StorageResult<Vec<String>> {
    history.iter().map(to_json).collect()
}

impl RedisStorage {
    fn saga_keys(&self, saga_id: &str) -> (String, String, String) {
        let base = self.keys.saga_base();
        (
            format!("{base}s:{saga_id}"),
            format!("{base}h:{saga_id}"),
            base,
        )
    }

    pub(crate) async fn saga_counts(&self) -> StorageResult<BTreeMap<String, u64>> {
        let base = self.keys.saga_base();
        let mut counts = BTreeMap::new();
        for status in STATUSES {
            let n = self
                .zcard(format!("{base}idx:st:{}", status.as_str()))
                .await?;
            if n > 0 {
                counts.insert(status.as_str().to_owned(), n);
            }
        }
        Ok(counts)
    }
}

fn parse_saga_reply(rec: &str, value: Option<Value>) -> StorageResult<SagaWorkflow> {
    saga(&Fields::from_value(rec, value.unwrap_or(Value::Null))?)
}

#[async_trait]
impl SagaStore for RedisStorage {
    async fn create_saga(
        &self,
        new: &SagaWorkflow,
        lease: Option<Duration>,
        history: &[SagaEvent],
    ) -> StorageResult<CreateSaga> {
        bgops_core::validate::name("saga_id", &new.saga_id)?;
        bgops_core::validate::name("tenant_id", &new.tenant_id)?;
        let lease_ms = match (&new.lease, lease) {
            (Some(_), Some(d)) => {
                bgops_core::validate::duration("lease", d)?;
                ms(d)
            }
            (Some(_), None) => {
                return Err(bgops_core::CoreError::InvalidDuration {
                    field: "lease",
                    got: "none for a leased saga".to_owned(),
                    max_secs: 0,
                }
                .into());
            }
            (None, _) => "0".to_owned(),
        };
        let (rec, hist, base) = self.saga_keys(&new.saga_id);
        let [owner, fence] = lease_args(new.lease.as_ref());
        let fence = if new.lease.is_some() {
            fence.parse::<u64>().unwrap_or(0).max(1).to_string()
        } else {
            "0".to_owned()
        };
        let mut args = vec![
            base,
            new.saga_id.clone(),
            to_json(new)?,
            new.status.as_str().to_owned(),
            new.tenant_id.clone(),
            opt_arg(new.idempotency_key.as_deref()),
            to_millis(new.created_at).to_string(),
            new.version.to_string(),
            owner,
            fence,
            lease_ms,
        ];
        args.extend(events(history)?);
        let reply = self
            .run(&SAGA_CREATE, vec![rec.clone(), hist], args)
            .await?;
        let mut parts = items(reply).into_iter();
        let outcome = parts.next().map(|v| text(&v, &rec)).transpose()?;
        match outcome.as_deref() {
            Some("created") => Ok(CreateSaga::Created(SagaSaved {
                version: new.version,
                lease_expires_at: lease_expiry(parts.next(), SAGA_CREATE.name)?,
            })),
            Some("existing") => Ok(CreateSaga::Existing(parse_saga_reply(&rec, parts.next())?)),
            other => Err(error::unexpected(SAGA_CREATE.name, other)),
        }
    }

    async fn get_saga(&self, saga_id: &str) -> StorageResult<Option<SagaWorkflow>> {
        let (rec, _, _) = self.saga_keys(saga_id);
        self.read_hash(&rec)
            .await?
            .map(|fields| saga(&fields))
            .transpose()
    }

    async fn acquire_saga_lease(
        &self,
        saga_id: &str,
        owner: &str,
        lease: Duration,
    ) -> StorageResult<Option<SagaWorkflow>> {
        bgops_core::validate::duration("lease", lease)?;
        bgops_core::validate::name("owner", owner)?;
        let (rec, _, base) = self.saga_keys(saga_id);
        let reply = self
            .run(
                &SAGA_ACQUIRE,
                vec![rec.clone()],
                vec![base, owner.to_owned(), ms(lease)],
            )
            .await?;
        let mut parts = items(reply).into_iter();
        match parts.next().map(|v| text(&v, &rec)).transpose()?.as_deref() {
            Some("ok") => parse_saga_reply(&rec, parts.next()).map(Some),
            Some("held") => Ok(None),
            Some("not_found") => Err(StorageError::NotFound {
                kind: KIND,
                id: saga_id.to_owned(),
            }),
            other => Err(error::unexpected(SAGA_ACQUIRE.name, other)),
        }
    }

    async fn save_saga(
        &self,
        new: &SagaWorkflow,
        fence: u64,
        history: &[SagaEvent],
        renew: Option<Duration>,
    ) -> StorageResult<SagaSaved> {
        if let Some(d) = renew {
            bgops_core::validate::duration("renew", d)?;
        }
        let (rec, hist, base) = self.saga_keys(&new.saga_id);
        let [owner, lfence] = lease_args(new.lease.as_ref());
        let mut args = vec![
            base,
            fence.to_string(),
            new.version.to_string(),
            to_json(new)?,
            new.status.as_str().to_owned(),
            owner,
            lfence,
            renew.map(ms).unwrap_or_default(),
        ];
        args.extend(events(history)?);
        let reply = self.run(&SAGA_SAVE, vec![rec.clone(), hist], args).await?;
        let mut parts = items(reply).into_iter();
        let id = new.saga_id.clone();
        match parts.next().map(|v| text(&v, &rec)).transpose()?.as_deref() {
            // The script stored exactly `new` with the next version.
            Some("ok") => Ok(SagaSaved {
                version: new.version + 1,
                lease_expires_at: lease_expiry(parts.next(), SAGA_SAVE.name)?,
            }),
            Some("not_found") => Err(StorageError::NotFound { kind: KIND, id }),
            Some("lease_lost") => Err(StorageError::LeaseLost { kind: KIND, id }),
            Some("version_conflict") => {
                let found = parts
                    .next()
                    .and_then(|v| text(&v, &rec).ok())
                    .and_then(|t| t.parse().ok())
                    .unwrap_or_default();
                Err(StorageError::VersionConflict {
                    kind: KIND,
                    id,
                    expected: new.version,
                    found,
                })
            }
            other => Err(error::unexpected(SAGA_SAVE.name, other)),
        }
    }

    async fn get_saga_history(&self, saga_id: &str) -> StorageResult<Vec<SagaEvent>> {
        let (_, hist, _) = self.saga_keys(saga_id);
        let entries: Vec<String> = self
            .pool
            .lrange(hist.as_str(), 0, -1)
            .await
            .map_err(|e| from_fred(e, &hist))?;
        entries
            .iter()
            .map(|e| {
                serde_json::from_str(e)
                    .map_err(|err| corrupt(&hist, format!("history entry is not valid: {err}")))
            })
            .collect()
    }

    async fn list_sagas(&self, filter: &SagaFilter) -> StorageResult<Vec<SagaWorkflow>> {
        let base = self.keys.saga_base();
        let index = match (&filter.tenant_id, filter.status) {
            (None, None) => format!("{base}idx:all"),
            (None, Some(s)) => format!("{base}idx:st:{}", s.as_str()),
            (Some(t), None) => format!("{base}idx:t:{}", enc(t)),
            (Some(t), Some(s)) => format!("{base}idx:ts:{}:{}", enc(t), s.as_str()),
        };
        let limit = if filter.limit == 0 { 100 } else { filter.limit };
        let reply = self
            .run(
                &SAGA_LIST,
                vec![index.clone()],
                vec![base.clone(), filter.offset.to_string(), limit.to_string()],
            )
            .await?;
        items(reply)
            .into_iter()
            .map(|hash| saga(&Fields::from_value(&format!("{base}s:?"), hash)?))
            .collect()
    }

    async fn list_recoverable_sagas(&self, limit: usize) -> StorageResult<Vec<String>> {
        let active = format!("{}active", self.keys.saga_base());
        let limit = if limit == 0 { 100 } else { limit };
        let reply = self
            .run(
                &SAGA_RECOVERABLE,
                vec![active.clone()],
                vec![limit.to_string()],
            )
            .await?;
        items(reply).iter().map(|v| text(v, &active)).collect()
    }

    async fn delete_saga(&self, saga_id: &str) -> StorageResult<bool> {
        let (rec, hist, base) = self.saga_keys(saga_id);
        let reply = self.run(&SAGA_DELETE, vec![rec, hist], vec![base]).await?;
        Ok(reply.as_u64().unwrap_or(0) > 0)
    }
}
