//! Sagas: one KV entry per saga holding the saga, its history and its highest fence, so
//! a save (state + new events + lease) is one compare-and-set; a dedupe entry per
//! (tenant, idempotency key); status indexes in the index stream.

use std::time::Duration;

use async_trait::async_trait;
use bgops_core::{CoreError, SagaEvent, SagaLease, SagaStatus, SagaWorkflow, validate};
use bgops_storage::{CreateSaga, SagaFilter, SagaSaved, SagaStore, StorageError, StorageResult};
use serde::{Deserialize, Serialize};

use crate::keys::{Names, dec, enc};
use crate::kv::{Current, forget, index_drop, index_put, index_subjects, read, remove, write};
use crate::storage::{NatsStorage, after, from_json, nonce, to_json};

const KIND: &str = "saga";

/// What is stored under a saga's key.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SagaDoc {
    saga: SagaWorkflow,
    #[serde(default)]
    history: Vec<SagaEvent>,
    /// The highest fence handed out on this saga (a released lease leaves none stored).
    #[serde(default)]
    max_fence: u64,
    /// Stream sequence of the saga's status index entry.
    #[serde(default)]
    ix: Option<u64>,
}

fn not_found(id: &str) -> StorageError {
    StorageError::NotFound {
        kind: KIND,
        id: id.to_owned(),
    }
}

fn validate_saga(saga: &SagaWorkflow) -> StorageResult<()> {
    validate::name("saga_id", &saga.saga_id)?;
    validate::name("tenant_id", &saga.tenant_id)?;
    validate::name("workflow_type", &saga.workflow_type)?;
    if let Some(key) = &saga.idempotency_key {
        validate::idempotency_key(key)?;
    }
    Ok(())
}

impl NatsStorage {
    async fn read_saga(&self, id: &str) -> StorageResult<(Current, Option<SagaDoc>)> {
        let key = Names::saga(id);
        let current = read(&self.inner.sagas, &key).await?;
        let doc = match &current.value {
            Some(value) => Some(from_json::<SagaDoc>(&key, value)?),
            None => None,
        };
        Ok((current, doc))
    }

    /// Compare-and-set of a saga entry, moving its status index entry as tasks do (new
    /// entry before the write, old one removed after).
    async fn write_saga(
        &self,
        current: &Current,
        old: Option<&SagaDoc>,
        next: &mut SagaDoc,
    ) -> StorageResult<bool> {
        let moved = old.is_none_or(|o| {
            o.saga.status != next.saga.status || o.saga.tenant_id != next.saga.tenant_id
        });
        let mut added = None;
        if moved {
            let subject = self.inner.names.index(&[
                "s",
                next.saga.status.as_str(),
                &enc(&next.saga.tenant_id),
                &enc(&next.saga.saga_id),
                &nonce(),
            ]);
            let seq = index_put(&self.inner.js, subject, bytes::Bytes::new()).await?;
            next.ix = Some(seq);
            added = Some(seq);
        }
        let written = write(
            &self.inner.sagas,
            &Names::saga(&next.saga.saga_id),
            to_json(next)?,
            current.revision,
        )
        .await?
        .is_some();
        let stale = if written {
            old.and_then(|o| o.ix).filter(|_| moved)
        } else {
            added
        };
        if let Some(seq) = stale {
            if let Err(error) = index_drop(&self.inner.index, seq).await {
                tracing::warn!(%error, saga_id = %next.saga.saga_id, "index entry left behind");
            }
        }
        Ok(written)
    }

    /// The saga ids of the index entries under `subject`, each once.
    async fn indexed_sagas(&self, subject: &str) -> StorageResult<Vec<String>> {
        let mut ids: Vec<String> = index_subjects(&self.inner.index, subject)
            .await?
            .into_iter()
            .filter_map(|(s, _)| s.split('.').nth(5).map(dec))
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }
}

#[async_trait]
impl SagaStore for NatsStorage {
    async fn create_saga(
        &self,
        saga: &SagaWorkflow,
        lease: Option<Duration>,
        history: &[SagaEvent],
    ) -> StorageResult<CreateSaga> {
        validate_saga(saga)?;
        if saga.lease.is_some() && lease.is_none() {
            return Err(StorageError::Invalid(CoreError::InvalidDuration {
                field: "lease",
                got: "none (the saga is created leased)".to_owned(),
                max_secs: validate::MAX_TTL.as_secs(),
            }));
        }
        if let Some(lease) = lease {
            validate::duration("lease", lease)?;
        }
        if let Some(key) = &saga.idempotency_key {
            let dedupe = Names::saga_key(&saga.tenant_id, key);
            loop {
                let current = read(&self.inner.sagas, &dedupe).await?;
                if let Some(value) = &current.value {
                    let existing = String::from_utf8_lossy(value).into_owned();
                    if existing == saga.saga_id {
                        break;
                    }
                    if let (_, Some(doc)) = self.read_saga(&existing).await? {
                        return Ok(CreateSaga::Existing(doc.saga));
                    }
                    // The key names a saga that was never written (its creator died) or
                    // was deleted: it is ours now.
                }
                let id = bytes::Bytes::from(saga.saga_id.clone().into_bytes());
                if write(&self.inner.sagas, &dedupe, id, current.revision)
                    .await?
                    .is_some()
                {
                    break;
                }
            }
        }
        loop {
            let (current, found) = self.read_saga(&saga.saga_id).await?;
            if let Some(doc) = found {
                return Ok(CreateSaga::Existing(doc.saga));
            }
            let now = self.now();
            let mut stored = saga.clone();
            let mut max_fence = 0;
            if let (Some(given), Some(lease)) = (&saga.lease, lease) {
                let fence = given.fence.max(1);
                max_fence = fence;
                stored.lease = Some(SagaLease {
                    owner: given.owner.clone(),
                    fence,
                    expires_at: after(now, lease),
                });
            }
            let saved = SagaSaved {
                version: stored.version,
                lease_expires_at: stored.lease.as_ref().map(|l| l.expires_at),
            };
            let mut doc = SagaDoc {
                saga: stored,
                history: history.to_vec(),
                max_fence,
                ix: None,
            };
            if self.write_saga(&current, None, &mut doc).await? {
                return Ok(CreateSaga::Created(saved));
            }
        }
    }

    async fn get_saga(&self, saga_id: &str) -> StorageResult<Option<SagaWorkflow>> {
        Ok(self.read_saga(saga_id).await?.1.map(|d| d.saga))
    }

    async fn acquire_saga_lease(
        &self,
        saga_id: &str,
        owner: &str,
        lease: Duration,
    ) -> StorageResult<Option<SagaWorkflow>> {
        validate::name("owner", owner)?;
        validate::duration("lease", lease)?;
        loop {
            let (current, doc) = self.read_saga(saga_id).await?;
            let mut doc = doc.ok_or_else(|| not_found(saga_id))?;
            let old = doc.clone();
            let now = self.now();
            if let Some(held) = &doc.saga.lease {
                if held.owner != owner && held.expires_at > now {
                    return Ok(None);
                }
            }
            let fence = doc
                .max_fence
                .max(doc.saga.lease.as_ref().map_or(0, |l| l.fence))
                + 1;
            doc.max_fence = fence;
            doc.saga.lease = Some(SagaLease {
                owner: owner.to_owned(),
                fence,
                expires_at: after(now, lease),
            });
            doc.saga.version += 1;
            if self.write_saga(&current, Some(&old), &mut doc).await? {
                return Ok(Some(doc.saga));
            }
        }
    }

    async fn save_saga(
        &self,
        saga: &SagaWorkflow,
        fence: u64,
        history: &[SagaEvent],
        renew: Option<Duration>,
    ) -> StorageResult<SagaSaved> {
        validate_saga(saga)?;
        if let Some(renew) = renew {
            validate::duration("renew", renew)?;
        }
        loop {
            let (current, doc) = self.read_saga(&saga.saga_id).await?;
            let old = doc.ok_or_else(|| not_found(&saga.saga_id))?;
            // A released lease leaves fence 0, so a released executor is fenced out too.
            let stored_fence = old.saga.lease.as_ref().map_or(0, |l| l.fence);
            if fence != stored_fence {
                return Err(StorageError::LeaseLost {
                    kind: KIND,
                    id: saga.saga_id.clone(),
                });
            }
            if saga.version != old.saga.version {
                return Err(StorageError::VersionConflict {
                    kind: KIND,
                    id: saga.saga_id.clone(),
                    expected: saga.version,
                    found: old.saga.version,
                });
            }
            let now = self.now();
            let mut next = SagaDoc {
                saga: saga.clone(),
                history: old.history.clone(),
                max_fence: old.max_fence,
                ix: old.ix,
            };
            next.saga.version = saga.version + 1;
            if let Some(lease) = next.saga.lease.as_mut() {
                lease.expires_at = match (renew, &old.saga.lease) {
                    (Some(d), _) => after(now, d),
                    (None, Some(stored)) => stored.expires_at,
                    (None, None) => lease.expires_at,
                };
                next.max_fence = next.max_fence.max(lease.fence);
            }
            next.history.extend_from_slice(history);
            let saved = SagaSaved {
                version: next.saga.version,
                lease_expires_at: next.saga.lease.as_ref().map(|l| l.expires_at),
            };
            if self.write_saga(&current, Some(&old), &mut next).await? {
                return Ok(saved);
            }
        }
    }

    async fn get_saga_history(&self, saga_id: &str) -> StorageResult<Vec<SagaEvent>> {
        Ok(self
            .read_saga(saga_id)
            .await?
            .1
            .map(|d| d.history)
            .unwrap_or_default())
    }

    async fn list_sagas(&self, filter: &SagaFilter) -> StorageResult<Vec<SagaWorkflow>> {
        let status = filter.status.map_or("*", SagaStatus::as_str);
        let subject = match &filter.tenant_id {
            Some(tenant) => self.inner.names.index(&["s", status, &enc(tenant), ">"]),
            None => self.inner.names.index(&["s", status, ">"]),
        };
        let mut sagas = Vec::new();
        for id in self.indexed_sagas(&subject).await? {
            if let Some(saga) = self.get_saga(&id).await? {
                let matches = filter.status.is_none_or(|s| s == saga.status)
                    && filter
                        .tenant_id
                        .as_ref()
                        .is_none_or(|t| *t == saga.tenant_id);
                if matches {
                    sagas.push(saga);
                }
            }
        }
        sagas.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| b.saga_id.cmp(&a.saga_id))
        });
        let limit = if filter.limit == 0 { 100 } else { filter.limit };
        Ok(sagas.into_iter().skip(filter.offset).take(limit).collect())
    }

    async fn list_recoverable_sagas(&self, limit: usize) -> StorageResult<Vec<String>> {
        let now = self.now();
        let mut out = Vec::new();
        for status in [SagaStatus::Running, SagaStatus::Compensating] {
            let subject = self.inner.names.index(&["s", status.as_str(), ">"]);
            for id in self.indexed_sagas(&subject).await? {
                if out.len() >= limit {
                    return Ok(out);
                }
                let Some(saga) = self.get_saga(&id).await? else {
                    continue;
                };
                let free = saga.lease.as_ref().is_none_or(|l| l.expires_at <= now);
                if saga.status == status && free {
                    out.push(id);
                }
            }
        }
        Ok(out)
    }

    async fn delete_saga(&self, saga_id: &str) -> StorageResult<bool> {
        loop {
            let (current, doc) = self.read_saga(saga_id).await?;
            let Some(doc) = doc else {
                return Ok(false);
            };
            if !remove(&self.inner.sagas, &Names::saga(saga_id), current.revision).await? {
                continue;
            }
            let dedupe = (doc.saga.idempotency_key.as_ref())
                .map(|key| Names::saga_key(&doc.saga.tenant_id, key));
            forget(
                &self.inner.sagas,
                &self.inner.index,
                doc.ix,
                dedupe,
                saga_id,
            )
            .await?;
            return Ok(true);
        }
    }
}
