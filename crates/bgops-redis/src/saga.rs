//! [`SagaStore`] on Redis: a hash per saga (its JSON document plus the fields scripts
//! compare: version, lease, fence), a history list, and status/tenant indexes, all under
//! the `{saga}` tag so each script stays on one slot. Every key name comes from
//! `keys.rs`; index members are saga hash keys.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use bgops_core::clock::{from_millis, to_millis};
use bgops_core::{SagaEvent, SagaLease, SagaWorkflow};
use bgops_storage::{
    CreateSaga, SagaFilter, SagaSaved, SagaStore, StorageError, StorageResult, Sweep,
};
use fred::interfaces::{HashesInterface, ListInterface};
use fred::types::Value;
use time::OffsetDateTime;

use crate::codec::{Fields, corrupt, items, ms, text, to_json};
use crate::error::{self, from_fred};
use crate::keys::SAGA_STATUSES;
use crate::scripts::{
    SAGA_ACQUIRE, SAGA_CREATE, SAGA_DELETE, SAGA_LIST, SAGA_PURGE_DUE, SAGA_RECOVERABLE, SAGA_SAVE,
};
use crate::storage::RedisStorage;

const KIND: &str = "saga";

fn saga(fields: &Fields) -> StorageResult<SagaWorkflow> {
    let mut saga: SagaWorkflow = fields.json("doc")?;
    saga.version = u64::try_from(fields.int("version")?)
        .map_err(|_| corrupt(&fields.key, "negative version".to_owned()))?;
    saga.lease = match fields.opt("lowner") {
        Some(owner) => Some(SagaLease {
            owner: owner.to_owned(),
            fence: u64::try_from(fields.int("lfence")?)
                .map_err(|_| corrupt(&fields.key, "negative fence".to_owned()))?,
            expires_at: fields.time("lexp")?,
        }),
        None => None,
    };
    Ok(saga)
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

fn parse_saga_reply(rec: &str, value: Option<Value>) -> StorageResult<SagaWorkflow> {
    saga(&Fields::from_value(rec, value.unwrap_or(Value::Null))?)
}

impl RedisStorage {
    pub(crate) async fn saga_counts(&self) -> StorageResult<BTreeMap<String, u64>> {
        let mut counts = BTreeMap::new();
        for status in SAGA_STATUSES {
            let n = self.zcard(self.keys.saga_index(None, Some(status))).await?;
            if n > 0 {
                counts.insert(status.to_owned(), n);
            }
        }
        Ok(counts)
    }
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
        let (owner, fence, lease_ms) = match (&new.lease, lease) {
            (Some(l), Some(d)) => {
                bgops_core::validate::duration("lease", d)?;
                (l.owner.clone(), l.fence.max(1), ms(d))
            }
            (Some(_), None) => {
                return Err(bgops_core::CoreError::InvalidDuration {
                    field: "lease",
                    got: "none for a leased saga".to_owned(),
                    max_secs: 0,
                }
                .into());
            }
            (None, _) => (String::new(), 0, "0".to_owned()),
        };
        let (rec, hist) = self.keys.saga(&new.saga_id);
        let keymap = new
            .idempotency_key
            .as_deref()
            .map_or_else(|| rec.clone(), |k| self.keys.saga_keymap(&new.tenant_id, k));
        let mut keys = vec![rec.clone(), hist, keymap];
        keys.extend(self.keys.saga_indexes(&new.tenant_id));
        let mut args = vec![
            new.saga_id.clone(),
            to_json(new)?,
            new.status.as_str().to_owned(),
            new.tenant_id.clone(),
            if new.idempotency_key.is_some() {
                "1"
            } else {
                "0"
            }
            .to_owned(),
            new.idempotency_key.clone().unwrap_or_default(),
            to_millis(new.created_at).to_string(),
            new.version.to_string(),
            owner,
            fence.to_string(),
            lease_ms,
        ];
        args.extend(events(history)?);
        let reply = self.run(&SAGA_CREATE, keys, args).await?;
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
        let (rec, _) = self.keys.saga(saga_id);
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
        let (rec, _) = self.keys.saga(saga_id);
        let reply = self
            .run(
                &SAGA_ACQUIRE,
                vec![rec.clone(), self.keys.saga_active()],
                vec![owner.to_owned(), ms(lease)],
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
        let (rec, hist) = self.keys.saga(&new.saga_id);
        let mut keys = vec![rec.clone(), hist];
        keys.extend(self.keys.saga_indexes(&new.tenant_id));
        let (owner, lfence) = new
            .lease
            .as_ref()
            .map_or((String::new(), 0), |l| (l.owner.clone(), l.fence));
        let mut args = vec![
            fence.to_string(),
            new.version.to_string(),
            to_json(new)?,
            new.status.as_str().to_owned(),
            new.tenant_id.clone(),
            owner,
            lfence.to_string(),
            renew.map(ms).unwrap_or_default(),
        ];
        args.extend(events(history)?);
        let reply = self.run(&SAGA_SAVE, keys, args).await?;
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
            Some("tenant_changed") => Err(StorageError::InvalidState {
                kind: KIND,
                id,
                state: parts
                    .next()
                    .map(|v| text(&v, &rec))
                    .transpose()?
                    .map(|t| format!("stored under tenant {t:?}"))
                    .unwrap_or_default(),
                action: "save under another tenant",
            }),
            other => Err(error::unexpected(SAGA_SAVE.name, other)),
        }
    }

    async fn get_saga_history(&self, saga_id: &str) -> StorageResult<Vec<SagaEvent>> {
        let (_, hist) = self.keys.saga(saga_id);
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
        let index = self.keys.saga_index(
            filter.tenant_id.as_deref(),
            filter.status.map(bgops_core::SagaStatus::as_str),
        );
        let limit = if filter.limit == 0 { 100 } else { filter.limit };
        let reply = self
            .run(
                &SAGA_LIST,
                vec![index.clone()],
                vec![filter.offset.to_string(), limit.to_string()],
            )
            .await?;
        items(reply)
            .into_iter()
            .map(|hash| saga(&Fields::from_value(&index, hash)?))
            .collect()
    }

    async fn list_recoverable_sagas(&self, limit: usize) -> StorageResult<Vec<String>> {
        let active = self.keys.saga_active();
        let limit = if limit == 0 { 100 } else { limit };
        let reply = self
            .run(
                &SAGA_RECOVERABLE,
                vec![active.clone()],
                vec![limit.to_string()],
            )
            .await?;
        items(reply)
            .iter()
            .map(|v| {
                let rec = text(v, &active)?;
                self.keys
                    .saga_id_of(&rec)
                    .map(str::to_owned)
                    .ok_or_else(|| corrupt(&active, format!("member {rec:?} is not a saga key")))
            })
            .collect()
    }

    async fn delete_saga(&self, saga_id: &str) -> StorageResult<bool> {
        self.delete_saga_if(saga_id, false).await
    }

    async fn purge_sagas(&self, older_than: Duration, limit: usize) -> StorageResult<Sweep> {
        let finished = self.keys.saga_finished();
        let older_ms = u64::try_from(older_than.as_millis()).unwrap_or(u64::MAX);
        let reply = self
            .run(
                &SAGA_PURGE_DUE,
                vec![finished.clone()],
                vec![older_ms.to_string(), limit.to_string()],
            )
            .await?;
        let due = items(reply);
        let more = due.len() > limit;
        let mut sweep = Sweep {
            done: 0,
            corrupt: Vec::new(),
            more,
        };
        for member in due.iter().take(limit) {
            let rec = text(member, &finished)?;
            let Some(saga_id) = self.keys.saga_id_of(&rec) else {
                sweep.corrupt.push(rec);
                continue;
            };
            match self.delete_saga_if(saga_id, true).await {
                Ok(true) => sweep.done += 1,
                Ok(false) => {}
                Err(StorageError::Corrupt { key, .. }) => sweep.corrupt.push(key),
                Err(e) => return Err(e),
            }
        }
        Ok(sweep)
    }
}

impl RedisStorage {
    /// Deletes a saga with its history, key mapping and index entries; with
    /// `only_finished`, only if it is finished (retention never takes a saga that was
    /// reopened meanwhile, e.g. a completed child being compensated by its parent).
    async fn delete_saga_if(&self, saga_id: &str, only_finished: bool) -> StorageResult<bool> {
        let (rec, hist) = self.keys.saga(saga_id);
        // The index keys depend on the stored status and tenant: read them, then delete
        // in one script that checks they did not change meanwhile.
        for _ in 0..8 {
            let cur: Vec<Option<String>> = self
                .pool
                .hmget(rec.as_str(), vec!["status", "tenant", "ikey"])
                .await
                .map_err(|e| from_fred(e, &rec))?;
            let mut cur = cur.into_iter();
            let (status, tenant, ikey) = (
                cur.next().flatten(),
                cur.next().flatten(),
                cur.next().flatten(),
            );
            if only_finished
                && !matches!(
                    status.as_deref(),
                    Some("completed" | "compensated" | "compensation_failed")
                )
            {
                return Ok(false);
            }
            let tenant = tenant.unwrap_or_default();
            let keymap = match &ikey {
                Some(k) => self.keys.saga_keymap(&tenant, k),
                None => rec.clone(),
            };
            let mut keys = vec![rec.clone(), hist.clone(), keymap];
            keys.extend(self.keys.saga_indexes(&tenant));
            let reply = self
                .run(&SAGA_DELETE, keys, vec![status.unwrap_or_default(), tenant])
                .await?;
            match reply {
                Value::Integer(n) => return Ok(n > 0),
                other if other.as_str().as_deref() == Some("retry") => {}
                other => return Err(error::unexpected(SAGA_DELETE.name, other)),
            }
        }
        Err(error::unexpected(SAGA_DELETE.name, "kept changing"))
    }
}
