//! Idempotency records: one entry per (tenant, key) in a sharded map, each state change
//! done under its shard's mutex, so `begin` is atomic and callers on other keys do not wait.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bgops_core::{IdempotencyRecord, OperationOutcome, OperationStatus, validate};
use bgops_storage::{BeginOutcome, BeginRequest, IdempotencyStore, StorageError, StorageResult};
use time::OffsetDateTime;

use crate::deadline::after;
use crate::shard::Map;
use crate::{MemoryStorage, Token};

const KIND: &str = "idempotency";

/// One shard: tenant → key → slot. Nested maps let lookups borrow `&str` without
/// building a combined key.
pub(crate) type IdempotencyShard = Map<String, Map<String, Slot>>;

/// A stored record and, while in flight, the token of its current claim. The record is
/// behind an `Arc` so readers copy it out after the shard's lock is released.
#[derive(Debug)]
pub(crate) struct Slot {
    record: Arc<IdempotencyRecord>,
    token: Option<Token>,
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

/// The answer for a live record, or `None` when the caller may start (the holder's lease
/// ran out and the caller takes over).
fn classify(slot: &Slot, fingerprint: Option<&str>, now: OffsetDateTime) -> Option<Verdict> {
    let record = &slot.record;
    if fingerprints_differ(record.fingerprint.as_deref(), fingerprint) {
        Some(Verdict::Mismatch(Arc::clone(record)))
    } else if record.status.is_terminal() {
        Some(Verdict::Completed(Arc::clone(record)))
    } else if slot.is_abandoned_at(now) {
        None
    } else {
        Some(Verdict::InProgress(Arc::clone(record)))
    }
}

/// The record a Started claim creates (also on takeover: the new holder's request).
fn fresh_record(
    request: BeginRequest,
    now: OffsetDateTime,
    expires_at: OffsetDateTime,
    lease_expires_at: OffsetDateTime,
) -> IdempotencyRecord {
    IdempotencyRecord {
        key: request.key,
        tenant_id: request.tenant_id,
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
    }
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
}

/// The slot if `token` holds its live claim.
fn claimed<'a>(
    slot: Option<&'a mut Slot>,
    tenant_id: &str,
    key: &str,
    token: &str,
) -> StorageResult<&'a mut Slot> {
    let slot = slot.ok_or_else(|| not_found(tenant_id, key))?;
    let holds = slot.record.status == OperationStatus::InProgress
        && slot.token.is_some_and(|held| held.matches(token));
    if holds {
        Ok(slot)
    } else {
        Err(lease_lost(tenant_id, key))
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
                .and_then(|slot| classify(slot, request.fingerprint.as_deref(), now));
            if let Some(verdict) = found {
                verdict
            } else {
                let token = self.inner.tokens.next();
                let key = request.key.clone();
                let record = Arc::new(fresh_record(request, now, expires_at, lease_expires_at));
                let slot = Slot {
                    record: Arc::clone(&record),
                    token: Some(token),
                };
                match shard.get_mut(&record.tenant_id) {
                    Some(keys) => keys.insert(key, slot),
                    // The tenant's first record: only then does its map need the name.
                    None => shard
                        .entry(record.tenant_id.clone())
                        .or_default()
                        .insert(key, slot),
                };
                Verdict::Started(token.to_string(), record)
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
        check_address(tenant_id, key)?;
        let now = self.now();
        let stored = {
            let mut shard = self.inner.idempotency.shard(&(tenant_id, key)).lock();
            let slot = claimed(
                Self::live_slot(&mut shard, tenant_id, key, now),
                tenant_id,
                key,
                token,
            )?;
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
            Arc::clone(&slot.record)
        };
        Ok((*stored).clone())
    }

    async fn release(&self, tenant_id: &str, key: &str, token: &str) -> StorageResult<()> {
        check_address(tenant_id, key)?;
        let now = self.now();
        let mut shard = self.inner.idempotency.shard(&(tenant_id, key)).lock();
        claimed(
            Self::live_slot(&mut shard, tenant_id, key, now),
            tenant_id,
            key,
            token,
        )?;
        if let Some(keys) = shard.get_mut(tenant_id) {
            keys.remove(key);
            if keys.is_empty() {
                shard.remove(tenant_id);
            }
        }
        Ok(())
    }

    async fn renew(
        &self,
        tenant_id: &str,
        key: &str,
        token: &str,
        lease: Duration,
    ) -> StorageResult<OffsetDateTime> {
        check_address(tenant_id, key)?;
        validate::duration("lease", lease)?;
        let now = self.now();
        let until = after(now, "lease", lease)?;
        let mut shard = self.inner.idempotency.shard(&(tenant_id, key)).lock();
        let slot = claimed(
            Self::live_slot(&mut shard, tenant_id, key, now),
            tenant_id,
            key,
            token,
        )?;
        Arc::make_mut(&mut slot.record).lease_expires_at = Some(until);
        Ok(until)
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
        .map(|shard| shard.lock().values().map(Map::len).sum::<usize>() as u64)
        .sum()
}
