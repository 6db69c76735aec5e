//! [`SagaStore`] on Redis: a hash per saga (its JSON document plus the fields scripts
//! compare: version, lease, fence), a history list, and status/tenant indexes, all under
//! the `{saga}` tag so each script stays on one slot.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use bgops_core::clock::to_millis;
use bgops_core::{SagaHistoryEntry, SagaLease, SagaStatus, SagaWorkflow};
use bgops_storage::{CreateSaga, SagaFilter, SagaStore, StorageError, StorageResult};
use fred::interfaces::ListInterface;
use fred::types::Value;

use crate::codec::{Fields, corrupt, items, ms, opt_arg, text, to_json};
use crate::error::{self, from_fred};
use crate::keys::enc;
use crate::scripts::{
    SAGA_ACQUIRE, SAGA_APPEND, SAGA_CREATE, SAGA_DELETE, SAGA_LIST, SAGA_RECOVERABLE, SAGA_SAVE,
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

fn lease_args(lease: Option<&SagaLease>) -> [String; 3] {
    match lease {
        Some(l) => [
            opt_arg(Some(&l.owner)),
            l.fence.to_string(),
            to_millis(l.expires_at).to_string(),
        ],
        None => [String::new(), "0".to_owned(), "0".to_owned()],
    }
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
    async fn create_saga(&self, new: SagaWorkflow) -> StorageResult<CreateSaga> {
        bgops_core::validate::name("saga_id", &new.saga_id)?;
        bgops_core::validate::name("tenant_id", &new.tenant_id)?;
        let (rec, hist, base) = self.saga_keys(&new.saga_id);
        let [owner, fence, lexp] = lease_args(new.lease.as_ref());
        let reply = self
            .run(
                &SAGA_CREATE,
                vec![rec.clone(), hist],
                vec![
                    base,
                    new.saga_id.clone(),
                    to_json(&new)?,
                    new.status.as_str().to_owned(),
                    new.tenant_id.clone(),
                    opt_arg(new.idempotency_key.as_deref()),
                    to_millis(new.created_at).to_string(),
                    new.version.to_string(),
                    owner,
                    fence,
                    lexp,
                ],
            )
            .await?;
        let mut parts = items(reply).into_iter();
        let outcome = parts.next().map(|v| text(&v, &rec)).transpose()?;
        let stored = parse_saga_reply(&rec, parts.next())?;
        match outcome.as_deref() {
            Some("created") => Ok(CreateSaga::Created(stored)),
            Some("existing") => Ok(CreateSaga::Existing(stored)),
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
        history: &[SagaHistoryEntry],
    ) -> StorageResult<u64> {
        let (rec, hist, base) = self.saga_keys(&new.saga_id);
        let [owner, lfence, lexp] = lease_args(new.lease.as_ref());
        let mut args = vec![
            base,
            fence.to_string(),
            new.version.to_string(),
            to_json(new)?,
            new.status.as_str().to_owned(),
            owner,
            lfence,
            lexp,
        ];
        for entry in history {
            args.push(to_json(entry)?);
        }
        let reply = self.run(&SAGA_SAVE, vec![rec.clone(), hist], args).await?;
        let mut parts = items(reply).into_iter();
        let id = new.saga_id.clone();
        match parts.next().map(|v| text(&v, &rec)).transpose()?.as_deref() {
            // The script stored exactly `new` with the next version.
            Some("ok") => Ok(new.version + 1),
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

    async fn append_saga_history(
        &self,
        saga_id: &str,
        entry: &SagaHistoryEntry,
    ) -> StorageResult<()> {
        let (rec, hist, _) = self.saga_keys(saga_id);
        let reply = self
            .run(&SAGA_APPEND, vec![rec.clone(), hist], vec![to_json(entry)?])
            .await?;
        match text(&reply, &rec)?.as_str() {
            "ok" => Ok(()),
            "not_found" => Err(StorageError::NotFound {
                kind: KIND,
                id: saga_id.to_owned(),
            }),
            other => Err(error::unexpected(SAGA_APPEND.name, other)),
        }
    }

    async fn get_saga_history(&self, saga_id: &str) -> StorageResult<Vec<SagaHistoryEntry>> {
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
