//! Idempotency records: one entry per (tenant, key) in a sharded map, each state change
//! done under its shard's mutex, so `begin` is atomic and callers on other keys do not wait.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bgops_core::{IdempotencyRecord, OperationOutcome, OperationStatus, validate};
use bgops_storage::{BeginOutcome, BeginRequest, IdempotencyStore, StorageError, StorageResult};
use time::OffsetDateTime;

use crate::MemoryStorage;
use crate::deadline::after;

const KIND: &str = "idempotency";

/// One shard: tenant → key → slot. Nested maps let lookups borrow `&str` without
/// building a combined key.
pub(crate) type IdempotencyShard = HashMap<String, HashMap<String, Slot>>;

/// A stored record and, while in flight, the token of its current claim. The record is
/// behind an `Arc` so readers copy it out after the shard's lock is released.
#[derive(Debug)]
pub(crate) struct Slot {
    record: Arc<IdempotencyRecord>,
    token: Option<Box<str>>,
}

impl Slot {
    fn is_abandoned_at(&self, now: OffsetDateTime) -> bool {
        self.record.status == OperationStatus::InProgress
            && self
                .record
                .lease_expires_at
                .is_none_or(|until| now >= until)
    }
}

/// What `begin` found, decided under the lock and turned into records after it.
enum Verdict {
    Started(String, Arc<IdempotencyRecord>),
    InProgress(Arc<IdempotencyRecord>),
    Completed(Arc<IdempotencyRecord>),
    Mismatch(Arc<IdempotencyRecord>),
}

/// `None` on either side matches anything.
fn fingerprints_differ(stored: Option<&str>, given: Option<&str>) -> bool {
    matches!((stored, given), (Some(a), Some(b)) if a != b)
}

fn check_address(tenant_id: &str, key: &str) -> StorageResult<()> {
    validate::name("tenant_id", tenant_id)?;
    validate::idempotency_key(key)?;
    Ok(())
}

fn not_found(tenant_id: &str, key: &str) -> StorageError {
    StorageError::NotFound {
        kind: KIND,
        id: format!("{tenant_id}/{key}"),
    }
}

fn lease_lost(tenant_id: &str, key: &str) -> StorageError {
    StorageError::LeaseLost {
        kind: KIND,
        id: format!("{tenant_id}/{key}"),
    }
}

impl MemoryStorage {
    /// The live slot at (tenant, key) in `shard`; records past their TTL count as absent.
    fn live_slot<'a>(
        shard: &'a mut IdempotencyShard,
        tenant_id: &str,
        key: &str,
        now: OffsetDateTime,
    ) -> Option<&'a mut Slot> {
        shard
            .get_mut(tenant_id)
            .and_then(|keys| keys.get_mut(key))
            .filter(|slot| !slot.record.is_expired_at(now))
    }

    /// Checks that `token` holds the live claim at (tenant, key) and runs `act` on it.
    fn with_claim<R>(
        &self,
        tenant_id: &str,
        key: &str,
        token: &str,
        act: impl FnOnce(&mut IdempotencyShard, OffsetDateTime) -> R,
    ) -> StorageResult<R> {
        check_address(tenant_id, key)?;
        let now = self.now();
        let mut shard = self.inner.idempotency.shard(&(tenant_id, key)).lock();
        let slot = Self::live_slot(&mut shard, tenant_id, key, now)
            .ok_or_else(|| not_found(tenant_id, key))?;
        if slot.record.status != OperationStatus::InProgress || slot.token.as_deref() != Some(token)
        {
            return Err(lease_lost(tenant_id, key));
        }
        Ok(act(&mut shard, now))
    }
}

#[async_trait]
impl IdempotencyStore for MemoryStorage {
    async fn begin(&self, request: BeginRequest) -> StorageResult<BeginOutcome> {
        request.validate()?;
        let now = self.now();
        let expires_at = after(now, "ttl", request.ttl)?;
        let lease_expires_at = after(now, "lease", request.lease)?;
        let verdict = {
            let mut shard = self
                .inner
                .idempotency
                .shard(&(request.tenant_id.as_str(), request.key.as_str()))
                .lock();
            let found = Self::live_slot(&mut shard, &request.tenant_id, &request.key, now)
                .and_then(|slot| {
                    let record = &slot.record;
                    if fingerprints_differ(
                        record.fingerprint.as_deref(),
                        request.fingerprint.as_deref(),
                    ) {
                        Some(Verdict::Mismatch(Arc::clone(record)))
                    } else if record.status.is_terminal() {
                        Some(Verdict::Completed(Arc::clone(record)))
                    } else if slot.is_abandoned_at(now) {
                        // The holder's lease ran out: this caller takes over below.
                        None
                    } else {
                        Some(Verdict::InProgress(Arc::clone(record)))
                    }
                });
            if let Some(verdict) = found {
                verdict
            } else {
                {
                    let token = self.inner.tokens.next();
                    let record = Arc::new(IdempotencyRecord {
                        key: request.key.clone(),
                        tenant_id: request.tenant_id.clone(),
                        user_id: request.user_id,
                        operation_type: request.operation_type,
                        created_at: now,
                        expires_at,
                        status: OperationStatus::InProgress,
                        result: None,
                        error: None,
                        parameters: request.parameters,
                        fingerprint: request.fingerprint,
                        lease_expires_at: Some(lease_expires_at),
                        completed_at: None,
                    });
                    let slot = Slot {
                        record: Arc::clone(&record),
                        token: Some(token.as_str().into()),
                    };
                    shard
                        .entry(request.tenant_id)
                        .or_default()
                        .insert(request.key, slot);
                    Verdict::Started(token, record)
                }
            }
        };
        // Records are copied out only now, with the shard unlocked.
        Ok(match verdict {
            Verdict::Started(token, record) => BeginOutcome::Started {
                token,
                record: (*record).clone(),
            },
            Verdict::InProgress(record) => BeginOutcome::InProgress((*record).clone()),
            Verdict::Completed(record) => BeginOutcome::Completed((*record).clone()),
            Verdict::Mismatch(record) => BeginOutcome::Mismatch((*record).clone()),
        })
    }

    async fn complete(
        &self,
        tenant_id: &str,
        key: &str,
        token: &str,
        outcome: OperationOutcome,
    ) -> StorageResult<IdempotencyRecord> {
        let stored = self.with_claim(tenant_id, key, token, |shard, now| {
            let slot = Self::live_slot(shard, tenant_id, key, now)?;
            slot.token = None;
            // Usually the map holds the only reference, so this mutates in place.
            let record = Arc::make_mut(&mut slot.record);
            record.status = outcome.status();
            match outcome {
                OperationOutcome::Succeeded(result) => {
                    record.result = Some(result);
                    record.error = None;
                }
                OperationOutcome::Failed { error, result } => {
                    record.result = result;
                    record.error = Some(error);
                }
            }
            record.completed_at = Some(now);
            record.lease_expires_at = None;
            Some(Arc::clone(&slot.record))
        })?;
        stored
            .map(|record| (*record).clone())
            .ok_or_else(|| not_found(tenant_id, key))
    }

    async fn release(&self, tenant_id: &str, key: &str, token: &str) -> StorageResult<()> {
        self.with_claim(tenant_id, key, token, |shard, _| {
            if let Some(keys) = shard.get_mut(tenant_id) {
                keys.remove(key);
                if keys.is_empty() {
                    shard.remove(tenant_id);
                }
            }
        })
    }

    async fn renew(
        &self,
        tenant_id: &str,
        key: &str,
        token: &str,
        lease: Duration,
    ) -> StorageResult<OffsetDateTime> {
        validate::duration("lease", lease)?;
        self.with_claim(tenant_id, key, token, |shard, now| {
            let until = after(now, "lease", lease)?;
            if let Some(slot) = Self::live_slot(shard, tenant_id, key, now) {
                Arc::make_mut(&mut slot.record).lease_expires_at = Some(until);
            }
            Ok::<_, StorageError>(until)
        })?
    }

    async fn get_idempotency(
        &self,
        tenant_id: &str,
        key: &str,
    ) -> StorageResult<Option<IdempotencyRecord>> {
        check_address(tenant_id, key)?;
        let now = self.now();
        let record = {
            let mut shard = self.inner.idempotency.shard(&(tenant_id, key)).lock();
            Self::live_slot(&mut shard, tenant_id, key, now).map(|slot| Arc::clone(&slot.record))
        };
        Ok(record.map(|record| (*record).clone()))
    }

    async fn delete_idempotency(&self, tenant_id: &str, key: &str) -> StorageResult<bool> {
        check_address(tenant_id, key)?;
        let now = self.now();
        let mut shard = self.inner.idempotency.shard(&(tenant_id, key)).lock();
        let Some(keys) = shard.get_mut(tenant_id) else {
            return Ok(false);
        };
        let removed = keys.remove(key);
        if keys.is_empty() {
            shard.remove(tenant_id);
        }
        Ok(removed.is_some_and(|slot| !slot.record.is_expired_at(now)))
    }

    async fn purge_expired(&self, limit: usize) -> StorageResult<u64> {
        let now = self.now();
        let mut removed = 0usize;
        for shard in self.inner.idempotency.iter() {
            if removed >= limit {
                break;
            }
            let mut shard = shard.lock();
            for keys in shard.values_mut() {
                keys.retain(|_, slot| {
                    let dead = removed < limit
                        && (slot.record.is_expired_at(now) || slot.is_abandoned_at(now));
                    removed += usize::from(dead);
                    !dead
                });
            }
            shard.retain(|_, keys| !keys.is_empty());
        }
        Ok(removed as u64)
    }
}

/// How many records the shards hold (live or not yet purged).
pub(crate) fn count(storage: &MemoryStorage) -> u64 {
    storage
        .inner
        .idempotency
        .iter()
        .map(|shard| shard.lock().values().map(HashMap::len).sum::<usize>() as u64)
        .sum()
}
