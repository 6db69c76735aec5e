//! Idempotency records: one slot per (tenant, key) in a sharded hash table, each state
//! change done under its shard's mutex, so `begin` is atomic and callers on other keys do
//! not wait.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bgops_core::{IdempotencyRecord, OperationOutcome, OperationStatus, validate};
use bgops_storage::{
    BeginOutcome, BeginRequest, IdempotencyStore, StorageResult, record_lease_lost,
    record_not_found, validate_address,
};
use hashbrown::HashTable;
use time::OffsetDateTime;

use crate::MemoryStorage;
use crate::deadline::after;
use crate::token::Token;

/// One shard. A `HashTable` of slots addressed by the hash of (tenant, key): the record
/// itself holds tenant and key, so no second copy of them is kept as a map key, and the
/// address is hashed once per call.
pub(crate) type IdempotencyShard = HashTable<Slot>;

/// A stored record and, while in flight, the token of its current claim. The record is
/// behind an `Arc` so callers share it instead of copying it.
#[derive(Debug)]
pub(crate) struct Slot {
    hash: u64,
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

    fn is_at(&self, tenant_id: &str, key: &str) -> bool {
        self.record.key == key && self.record.tenant_id == tenant_id
    }
}

/// `None` on either side matches anything.
fn fingerprints_differ(stored: Option<&str>, given: Option<&str>) -> bool {
    matches!((stored, given), (Some(a), Some(b)) if a != b)
}

/// The answer for a live record, or `None` when the caller may start (the holder's lease
/// ran out and the caller takes over).
fn classify(slot: &Slot, fingerprint: Option<&str>, now: OffsetDateTime) -> Option<BeginOutcome> {
    let record = &slot.record;
    if fingerprints_differ(record.fingerprint.as_deref(), fingerprint) {
        Some(BeginOutcome::Mismatch(Arc::clone(record)))
    } else if record.status.is_terminal() {
        Some(BeginOutcome::Completed(Arc::clone(record)))
    } else if slot.is_abandoned_at(now) {
        None
    } else {
        Some(BeginOutcome::InProgress(Arc::clone(record)))
    }
}

/// The record a Started claim creates.
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

/// Where a record lives: its shard's table and its hash there.
struct Address<'a> {
    tenant_id: &'a str,
    key: &'a str,
    hash: u64,
}

impl MemoryStorage {
    fn address<'a>(&self, tenant_id: &'a str, key: &'a str) -> Address<'a> {
        Address {
            tenant_id,
            key,
            hash: self.inner.idempotency.hash(&(tenant_id, key)),
        }
    }

    fn shard_of(&self, address: &Address<'_>) -> parking_lot::MutexGuard<'_, IdempotencyShard> {
        self.inner.idempotency.shard_of(address.hash).lock()
    }
}

/// The live slot at `address`; records past their TTL count as absent.
fn live_slot<'t>(
    table: &'t mut IdempotencyShard,
    address: &Address<'_>,
    now: OffsetDateTime,
) -> Option<&'t mut Slot> {
    table
        .find_mut(address.hash, |slot| {
            slot.is_at(address.tenant_id, address.key)
        })
        .filter(|slot| !slot.record.is_expired_at(now))
}

/// Removes the slot at `address`; returns it.
fn remove_slot(table: &mut IdempotencyShard, address: &Address<'_>) -> Option<Slot> {
    table
        .find_entry(address.hash, |slot| {
            slot.is_at(address.tenant_id, address.key)
        })
        .ok()
        .map(|entry| entry.remove().0)
}

/// The slot if `token` holds its live claim.
fn claimed<'t>(
    slot: Option<&'t mut Slot>,
    address: &Address<'_>,
    token: &str,
) -> StorageResult<&'t mut Slot> {
    let slot = slot.ok_or_else(|| record_not_found(address.tenant_id, address.key))?;
    let holds = slot.record.status == OperationStatus::InProgress
        && slot.token.is_some_and(|held| held.matches(token));
    if holds {
        Ok(slot)
    } else {
        Err(record_lease_lost(address.tenant_id, address.key))
    }
}

#[async_trait]
impl IdempotencyStore for MemoryStorage {
    async fn begin(&self, request: BeginRequest) -> StorageResult<BeginOutcome> {
        request.validate()?;
        let now = self.now();
        let expires_at = after(now, "ttl", request.ttl)?;
        let lease_expires_at = after(now, "lease", request.lease)?;
        let hash = self
            .inner
            .idempotency
            .hash(&(request.tenant_id.as_str(), request.key.as_str()));
        // Built before locking so the lock covers only the lookup and the insert.
        let record = Arc::new(fresh_record(request, now, expires_at, lease_expires_at));
        let address = Address {
            tenant_id: &record.tenant_id,
            key: &record.key,
            hash,
        };
        let outcome = {
            let mut shard = self.shard_of(&address);
            let found = shard.find_mut(hash, |slot| slot.is_at(address.tenant_id, address.key));
            let token = self.inner.tokens.next();
            match found {
                Some(slot) if !slot.record.is_expired_at(now) => {
                    classify(slot, record.fingerprint.as_deref(), now).unwrap_or_else(|| {
                        // The holder's lease ran out: the caller takes the claim over. The
                        // record stays bound to its first request (and its TTL to its
                        // creation); only token and lease change.
                        slot.token = Some(token);
                        Arc::make_mut(&mut slot.record).lease_expires_at = Some(lease_expires_at);
                        BeginOutcome::Started {
                            token: token.to_string(),
                            record: Arc::clone(&slot.record),
                        }
                    })
                }
                // A record past its TTL is gone: the new one replaces it.
                Some(slot) => {
                    *slot = Slot {
                        hash,
                        record: Arc::clone(&record),
                        token: Some(token),
                    };
                    BeginOutcome::Started {
                        token: token.to_string(),
                        record: Arc::clone(&record),
                    }
                }
                None => {
                    let slot = Slot {
                        hash,
                        record: Arc::clone(&record),
                        token: Some(token),
                    };
                    shard.insert_unique(hash, slot, |slot| slot.hash);
                    BeginOutcome::Started {
                        token: token.to_string(),
                        record: Arc::clone(&record),
                    }
                }
            }
        };
        Ok(outcome)
    }

    async fn complete(
        &self,
        tenant_id: &str,
        key: &str,
        token: &str,
        outcome: OperationOutcome,
    ) -> StorageResult<Arc<IdempotencyRecord>> {
        validate_address(tenant_id, key)?;
        let now = self.now();
        let address = self.address(tenant_id, key);
        let stored = {
            let mut shard = self.shard_of(&address);
            let slot = claimed(live_slot(&mut shard, &address, now), &address, token)?;
            slot.token = None;
            // Mutates in place when the table holds the only reference; when a caller still
            // holds the in-flight record, the completed one is built once here and shared.
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
        Ok(stored)
    }

    async fn release(&self, tenant_id: &str, key: &str, token: &str) -> StorageResult<()> {
        validate_address(tenant_id, key)?;
        let now = self.now();
        let address = self.address(tenant_id, key);
        let mut shard = self.shard_of(&address);
        claimed(live_slot(&mut shard, &address, now), &address, token)?;
        remove_slot(&mut shard, &address);
        Ok(())
    }

    async fn renew(
        &self,
        tenant_id: &str,
        key: &str,
        token: &str,
        lease: Duration,
    ) -> StorageResult<OffsetDateTime> {
        validate_address(tenant_id, key)?;
        validate::duration("lease", lease)?;
        let now = self.now();
        let until = after(now, "lease", lease)?;
        let address = self.address(tenant_id, key);
        let mut shard = self.shard_of(&address);
        let slot = claimed(live_slot(&mut shard, &address, now), &address, token)?;
        Arc::make_mut(&mut slot.record).lease_expires_at = Some(until);
        Ok(until)
    }

    async fn get_idempotency(
        &self,
        tenant_id: &str,
        key: &str,
    ) -> StorageResult<Option<Arc<IdempotencyRecord>>> {
        validate_address(tenant_id, key)?;
        let now = self.now();
        let address = self.address(tenant_id, key);
        let mut shard = self.shard_of(&address);
        Ok(live_slot(&mut shard, &address, now).map(|slot| Arc::clone(&slot.record)))
    }

    async fn delete_idempotency(&self, tenant_id: &str, key: &str) -> StorageResult<bool> {
        validate_address(tenant_id, key)?;
        let now = self.now();
        let address = self.address(tenant_id, key);
        let removed = remove_slot(&mut self.shard_of(&address), &address);
        Ok(removed.is_some_and(|slot| !slot.record.is_expired_at(now)))
    }

    async fn purge_expired(&self, limit: usize) -> StorageResult<u64> {
        let now = self.now();
        let mut removed = 0usize;
        for shard in self.inner.idempotency.iter() {
            if removed >= limit {
                break;
            }
            shard.lock().retain(|slot| {
                let dead = removed < limit
                    && (slot.record.is_expired_at(now) || slot.is_abandoned_at(now));
                removed += usize::from(dead);
                !dead
            });
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
        .map(|shard| shard.lock().len() as u64)
        .sum()
}
