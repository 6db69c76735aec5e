//! Idempotency records: one slot per (tenant, key) in a sharded hash table, each state
//! change done under its shard's mutex, so `begin` is atomic and callers on other keys do
//! not wait.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bgops_core::{IdempotencyRecord, OperationOutcome, OperationStatus, validate};
use bgops_storage::{
    BeginOutcome, BeginRequest, Claimed, Completed, IdempotencyStore, StorageResult, Sweep,
    record_lease_lost, record_not_found, validate_address,
};
use hashbrown::HashTable;
use time::OffsetDateTime;

use crate::MemoryStorage;
use crate::deadline::after;

/// One shard. A `HashTable` of slots addressed by the hash of (tenant, key): the record
/// itself holds tenant and key, so no second copy of them is kept as a map key, and the
/// address is hashed once per call.
pub(crate) type IdempotencyShard = HashTable<Slot>;

/// A stored record and the token of its claim (kept after completion, so that the
/// completing token may repeat `complete`). The record is behind an `Arc` so callers
/// share it instead of copying it.
#[derive(Debug)]
pub(crate) struct Slot {
    hash: u64,
    record: Arc<IdempotencyRecord>,
    token: Box<str>,
}

impl Slot {
    fn is_at(&self, tenant_id: &str, key: &str) -> bool {
        self.record.key == key && self.record.tenant_id == tenant_id
    }

    fn in_flight(&self) -> bool {
        self.record.status == OperationStatus::InProgress
    }
}

/// `None` on either side matches anything.
fn fingerprints_differ(stored: Option<&str>, given: Option<&str>) -> bool {
    matches!((stored, given), (Some(a), Some(b)) if a != b)
}

/// The record a Started claim creates.
fn fresh_record(
    request: BeginRequest,
    now: OffsetDateTime,
    expires_at: OffsetDateTime,
    lease_expires_at: OffsetDateTime,
) -> (IdempotencyRecord, String) {
    let record = IdempotencyRecord {
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
        payload: None,
    };
    (record, request.token)
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

/// The slot if `token` holds its claim (live or run out, as long as nobody took over).
fn claimed<'t>(
    slot: Option<&'t mut Slot>,
    address: &Address<'_>,
    token: &str,
) -> StorageResult<&'t mut Slot> {
    let slot = slot.ok_or_else(|| record_not_found(address.tenant_id, address.key))?;
    if slot.in_flight() && *slot.token == *token {
        Ok(slot)
    } else {
        Err(record_lease_lost(address.tenant_id, address.key))
    }
}

/// The claim `slot` gives its token.
fn claim_of(slot: &Slot, token: String) -> BeginOutcome {
    let record = &slot.record;
    BeginOutcome::Started(Claimed {
        token,
        created_at: record.created_at,
        expires_at: record.expires_at,
        lease_expires_at: record.lease_expires_at.unwrap_or(record.expires_at),
    })
}

#[async_trait]
impl IdempotencyStore for MemoryStorage {
    async fn begin(&self, request: BeginRequest) -> StorageResult<BeginOutcome> {
        request.validate()?;
        let hash = self
            .inner
            .idempotency
            .hash(&(request.tenant_id.as_str(), request.key.as_str()));
        let mut shard = self.inner.idempotency.shard_of(hash).lock();
        // Read under the lock, so that times stored in one slot never go backwards.
        let now = self.now();
        let expires_at = after(now, "ttl", request.ttl)?;
        let lease_expires_at = after(now, "lease", request.lease)?.min(expires_at);
        let found = shard.find_mut(hash, |slot| slot.is_at(&request.tenant_id, &request.key));
        let outcome = match found {
            Some(slot) if !slot.record.is_expired_at(now) => {
                let record = &slot.record;
                if fingerprints_differ(
                    record.fingerprint.as_deref(),
                    request.fingerprint.as_deref(),
                ) {
                    BeginOutcome::Mismatch
                } else if record.status.is_terminal() {
                    BeginOutcome::Completed(Arc::clone(record))
                } else if *slot.token == *request.token {
                    // The holder repeats its `begin` (its answer was lost): same claim,
                    // lease counted from now.
                    let until = lease_expires_at.min(record.expires_at);
                    Arc::make_mut(&mut slot.record).lease_expires_at = Some(until);
                    claim_of(slot, request.token)
                } else if record.lease_expires_at.is_some_and(|until| now < until) {
                    BeginOutcome::InProgress {
                        lease_expires_at: record.lease_expires_at.unwrap_or(now),
                    }
                } else {
                    // The holder's lease ran out: the caller takes the claim over, which
                    // fences the old token out. The record stays bound to its first
                    // request (and its TTL to its creation); only token and lease change.
                    let until = lease_expires_at.min(record.expires_at);
                    slot.token = request.token.as_str().into();
                    Arc::make_mut(&mut slot.record).lease_expires_at = Some(until);
                    claim_of(slot, request.token)
                }
            }
            found => {
                // None, or a record past its TTL, which is gone: the new one replaces it.
                let (record, token) = fresh_record(request, now, expires_at, lease_expires_at);
                let slot = Slot {
                    hash,
                    record: Arc::new(record),
                    token: token.as_str().into(),
                };
                let outcome = claim_of(&slot, token);
                match found {
                    Some(old) => *old = slot,
                    None => {
                        shard.insert_unique(hash, slot, |slot| slot.hash);
                    }
                }
                outcome
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
    ) -> StorageResult<Completed> {
        validate_address(tenant_id, key)?;
        let address = self.address(tenant_id, key);
        let mut shard = self.shard_of(&address);
        let now = self.now();
        let slot =
            live_slot(&mut shard, &address, now).ok_or_else(|| record_not_found(tenant_id, key))?;
        if *slot.token != *token {
            return Err(record_lease_lost(tenant_id, key));
        }
        if let (false, Some(completed_at)) = (slot.in_flight(), slot.record.completed_at) {
            // A repeated completion by the completing token: the first receipt.
            return Ok(Completed {
                completed_at,
                expires_at: slot.record.expires_at,
            });
        }
        let record = Arc::make_mut(&mut slot.record);
        record.status = outcome.status();
        record.result = outcome.result;
        record.error = outcome.error;
        record.payload = outcome.payload;
        record.completed_at = Some(now);
        record.lease_expires_at = None;
        Ok(Completed {
            completed_at: now,
            expires_at: record.expires_at,
        })
    }

    async fn release(&self, tenant_id: &str, key: &str, token: &str) -> StorageResult<()> {
        validate_address(tenant_id, key)?;
        let address = self.address(tenant_id, key);
        let mut shard = self.shard_of(&address);
        let now = self.now();
        claimed(live_slot(&mut shard, &address, now), &address, token)?;
        let removed = remove_slot(&mut shard, &address);
        drop(shard);
        drop(removed);
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
        let address = self.address(tenant_id, key);
        let mut shard = self.shard_of(&address);
        let now = self.now();
        let until = after(now, "lease", lease)?;
        let slot = claimed(live_slot(&mut shard, &address, now), &address, token)?;
        // Never past the record's TTL: the record is gone then anyway.
        let until = until.min(slot.record.expires_at);
        Arc::make_mut(&mut slot.record).lease_expires_at = Some(until);
        Ok(until)
    }

    async fn get_idempotency(
        &self,
        tenant_id: &str,
        key: &str,
    ) -> StorageResult<Option<Arc<IdempotencyRecord>>> {
        validate_address(tenant_id, key)?;
        let address = self.address(tenant_id, key);
        let mut shard = self.shard_of(&address);
        let now = self.now();
        Ok(live_slot(&mut shard, &address, now).map(|slot| Arc::clone(&slot.record)))
    }

    async fn delete_idempotency(&self, tenant_id: &str, key: &str) -> StorageResult<bool> {
        validate_address(tenant_id, key)?;
        let address = self.address(tenant_id, key);
        let mut shard = self.shard_of(&address);
        let now = self.now();
        let removed = remove_slot(&mut shard, &address);
        drop(shard);
        Ok(removed.is_some_and(|slot| !slot.record.is_expired_at(now)))
    }

    async fn purge_expired(&self, limit: usize) -> StorageResult<Sweep> {
        let now = self.now();
        let mut done = 0usize;
        let mut more = false;
        for shard in self.inner.idempotency.iter() {
            let mut table = shard.lock();
            table.retain(|slot| {
                let dead = slot.record.is_expired_at(now);
                if dead && done >= limit {
                    more = true;
                    return true;
                }
                done += usize::from(dead);
                !dead
            });
            shrink(&mut table);
            if more {
                break;
            }
        }
        Ok(Sweep {
            done: done as u64,
            corrupt: Vec::new(),
            more,
        })
    }
}

/// Gives memory back after a large purge: a table a quarter full or less is shrunk to
/// twice its length (not to fit, so that a table refilling soon does not regrow at once).
fn shrink(table: &mut IdempotencyShard) {
    if table.capacity() > 64 && table.len() <= table.capacity() / 4 {
        table.shrink_to(table.len() * 2, |slot| slot.hash);
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
