//! Sagas: one table with its indexes under one mutex, so that a save, its history entries
//! and its index moves are one atomic step. Saga writes happen once per step transition,
//! far less often than idempotency checks, so one lock costs little here, provided the
//! work done under it stays small: sagas are kept behind `Arc`s, so copies handed out
//! are made outside the lock, and a save overwrites the stored saga in place, reusing
//! its allocations.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bgops_core::{CoreError, SagaEvent, SagaLease, SagaStatus, SagaStep, SagaWorkflow, validate};
use bgops_storage::{
    CreateSaga, SagaFilter, SagaSaved, SagaStore, StorageError, StorageResult, Sweep,
};
use time::OffsetDateTime;

use crate::MemoryStorage;
use crate::deadline::after;
use crate::shard::Map;

const KIND: &str = "saga";
const DEFAULT_PAGE: usize = 100;

/// Index order: creation time (as Unix nanoseconds: comparing `OffsetDateTime`s converts
/// offsets each time), then insertion sequence (ties under a manual clock), then id
/// (shared with the table's key: an index move copies no string).
type Order = (i128, u64, Arc<str>);

/// Every saga, its journal, and the indexes `list_sagas` and recovery read.
#[derive(Debug, Default)]
pub(crate) struct SagaTables {
    sagas: Map<Arc<str>, Entry>,
    next_seq: u64,
    index: SagaIndex,
}

#[derive(Debug)]
struct Entry {
    /// Shared only for the moment a reader takes it out of the lock to copy it.
    saga: Arc<SagaWorkflow>,
    history: Vec<SagaEvent>,
    /// This saga's place in the indexes.
    order: Order,
    /// The highest fence ever handed out: the lease itself may be cleared.
    max_fence: u64,
    /// When the saga was last written while finished (store clock, Unix nanoseconds):
    /// its key in [`SagaIndex::finished`].
    finished: Option<i128>,
}

#[derive(Debug, Default)]
struct SagaIndex {
    all: BTreeSet<Order>,
    by_status: Map<SagaStatus, BTreeSet<Order>>,
    by_tenant: Map<String, TenantIndex>,
    by_key: Map<(String, String), Arc<str>>,
    /// Finished sagas by the time of their last write (retention purges the oldest).
    finished: BTreeSet<(i128, Arc<str>)>,
}

/// One tenant's sagas, all and by status: looked up by the tenant's name alone, so no
/// key has to be built (and allocated) to find them.
#[derive(Debug, Default)]
struct TenantIndex {
    all: BTreeSet<Order>,
    by_status: Map<SagaStatus, BTreeSet<Order>>,
}

fn remove_from(map: &mut Map<SagaStatus, BTreeSet<Order>>, key: SagaStatus, item: &Order) {
    if let Some(set) = map.get_mut(&key) {
        set.remove(item);
        if set.is_empty() {
            map.remove(&key);
        }
    }
}

impl SagaIndex {
    fn add(&mut self, saga: &SagaWorkflow, item: &Order) {
        self.by_status
            .entry(saga.status)
            .or_default()
            .insert(item.clone());
        let tenant = match self.by_tenant.get_mut(saga.tenant_id.as_str()) {
            Some(tenant) => tenant,
            None => self.by_tenant.entry(saga.tenant_id.clone()).or_default(),
        };
        tenant.all.insert(item.clone());
        tenant
            .by_status
            .entry(saga.status)
            .or_default()
            .insert(item.clone());
        self.all.insert(item.clone());
        if let Some(key) = &saga.idempotency_key {
            self.by_key
                .entry((saga.tenant_id.clone(), key.clone()))
                .or_insert_with(|| Arc::clone(&item.2));
        }
    }

    fn remove(&mut self, saga: &SagaWorkflow, item: &Order) {
        self.all.remove(item);
        remove_from(&mut self.by_status, saga.status, item);
        if let Some(tenant) = self.by_tenant.get_mut(saga.tenant_id.as_str()) {
            tenant.all.remove(item);
            remove_from(&mut tenant.by_status, saga.status, item);
            if tenant.all.is_empty() {
                self.by_tenant.remove(saga.tenant_id.as_str());
            }
        }
        if let Some(key) = &saga.idempotency_key {
            let address = (saga.tenant_id.clone(), key.clone());
            if self.by_key.get(&address).map(|id| &**id) == Some(saga.saga_id.as_str()) {
                self.by_key.remove(&address);
            }
        }
    }

    /// A status change: only the sets by status move (creation time, tenant and key stay).
    fn move_status(&mut self, tenant: &str, from: SagaStatus, to: SagaStatus, item: &Order) {
        remove_from(&mut self.by_status, from, item);
        self.by_status.entry(to).or_default().insert(item.clone());
        if let Some(tenant) = self.by_tenant.get_mut(tenant) {
            remove_from(&mut tenant.by_status, from, item);
            tenant.by_status.entry(to).or_default().insert(item.clone());
        }
    }

    /// The narrowest index that holds every saga matching `filter`.
    fn select(&self, filter: &SagaFilter) -> Option<&BTreeSet<Order>> {
        match (&filter.tenant_id, filter.status) {
            (Some(tenant), Some(status)) => self.by_tenant.get(tenant)?.by_status.get(&status),
            (Some(tenant), None) => self.by_tenant.get(tenant).map(|t| &t.all),
            (None, Some(status)) => self.by_status.get(&status),
            (None, None) => Some(&self.all),
        }
    }
}

impl SagaTables {
    /// Sagas by status name.
    pub(crate) fn counts(&self) -> BTreeMap<String, u64> {
        self.index
            .by_status
            .iter()
            .map(|(status, set)| (status.as_str().to_owned(), set.len() as u64))
            .collect()
    }

    fn entry(&mut self, saga_id: &str) -> StorageResult<&mut Entry> {
        self.sagas
            .get_mut(saga_id)
            .ok_or_else(|| not_found(saga_id))
    }
}

fn not_found(saga_id: &str) -> StorageError {
    StorageError::NotFound {
        kind: KIND,
        id: saga_id.to_owned(),
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

fn lease_is_live(lease: &SagaLease, now: OffsetDateTime) -> bool {
    now < lease.expires_at
}

/// Overwrites `dst` with `src`, reusing `dst`'s allocations: a save mostly repeats the
/// stored strings and steps, so this allocates almost nothing where a clone would make
/// a dozen allocations (one of them the steps' buffer, large enough to make the system
/// allocator consolidate its free lists). Destructured in full so that a new field
/// cannot be forgotten.
fn assign(dst: &mut SagaWorkflow, src: &SagaWorkflow) {
    let SagaWorkflow {
        saga_id,
        tenant_id,
        workflow_type,
        steps,
        status,
        current_step,
        created_at,
        updated_at,
        timeout_seconds,
        idempotency_key,
        context,
        error,
        version,
        lease,
        template_version,
    } = src;
    dst.saga_id.clone_from(saga_id);
    dst.tenant_id.clone_from(tenant_id);
    dst.workflow_type.clone_from(workflow_type);
    dst.steps.truncate(steps.len());
    let kept = dst.steps.len();
    for (d, s) in dst.steps.iter_mut().zip(steps) {
        assign_step(d, s);
    }
    dst.steps.extend_from_slice(&steps[kept..]);
    dst.status = *status;
    dst.current_step = *current_step;
    dst.created_at = *created_at;
    dst.updated_at = *updated_at;
    dst.timeout_seconds = *timeout_seconds;
    dst.idempotency_key.clone_from(idempotency_key);
    if dst.context != *context {
        dst.context.clone_from(context);
    }
    dst.error.clone_from(error);
    dst.version = *version;
    dst.template_version = *template_version;
    match (&mut dst.lease, lease) {
        (Some(d), Some(s)) => {
            let SagaLease {
                owner,
                fence,
                expires_at,
            } = s;
            d.owner.clone_from(owner);
            d.fence = *fence;
            d.expires_at = *expires_at;
        }
        (d, s) => d.clone_from(s),
    }
}

/// [`assign`] for one step.
fn assign_step(dst: &mut SagaStep, src: &SagaStep) {
    let SagaStep {
        step_id,
        name,
        operation,
        parameters,
        compensation_operation,
        compensation_parameters,
        max_retries,
        status,
        attempts,
        compensation_attempts,
        result,
        error,
        compensation_error,
        started_at,
        completed_at,
        compensated_at,
        group,
    } = src;
    dst.step_id.clone_from(step_id);
    dst.name.clone_from(name);
    dst.operation.clone_from(operation);
    // Values are compared first: they rarely change, and a clone of an object allocates.
    if dst.parameters != *parameters {
        dst.parameters.clone_from(parameters);
    }
    dst.compensation_operation
        .clone_from(compensation_operation);
    if dst.compensation_parameters != *compensation_parameters {
        dst.compensation_parameters
            .clone_from(compensation_parameters);
    }
    dst.max_retries = *max_retries;
    dst.status = *status;
    dst.attempts = *attempts;
    dst.compensation_attempts = *compensation_attempts;
    if dst.result != *result {
        dst.result.clone_from(result);
    }
    dst.error.clone_from(error);
    dst.compensation_error.clone_from(compensation_error);
    dst.started_at = *started_at;
    dst.completed_at = *completed_at;
    dst.compensated_at = *compensated_at;
    dst.group.clone_from(group);
}

/// A copy of a saga taken out of the lock (cheap while it is held: one `Arc` clone).
fn copy(saga: Arc<SagaWorkflow>) -> SagaWorkflow {
    Arc::unwrap_or_clone(saga)
}

#[async_trait]
impl SagaStore for MemoryStorage {
    async fn create_saga(
        &self,
        saga: &SagaWorkflow,
        lease: Option<Duration>,
        history: &[SagaEvent],
    ) -> StorageResult<CreateSaga> {
        validate_saga(saga)?;
        if let Some(held) = &saga.lease {
            validate::name("owner", &held.owner)?;
            let lease = lease.ok_or(CoreError::InvalidDuration {
                field: "lease",
                got: "none (the saga is created leased)".to_owned(),
                max_secs: validate::MAX_TTL.as_secs(),
            })?;
            validate::duration("lease", lease)?;
        }
        // Copied before locking: the common answer is `Created`.
        let mut stored = saga.clone();
        let history = history.to_vec();
        let (existing, receipt) = {
            let mut tables = self.inner.sagas.lock();
            let existing = tables.sagas.get(saga.saga_id.as_str()).or_else(|| {
                let key = saga.idempotency_key.as_ref()?;
                let address = (saga.tenant_id.clone(), key.clone());
                tables
                    .index
                    .by_key
                    .get(&address)
                    .and_then(|id| tables.sagas.get(id))
            });
            if let Some(entry) = existing {
                (Some(Arc::clone(&entry.saga)), None)
            } else {
                // The lease's expiry comes from this store's clock, read under the lock.
                let now = self.now();
                let mut max_fence = 0;
                if let (Some(held), Some(lease)) = (&mut stored.lease, lease) {
                    held.fence = held.fence.max(1);
                    held.expires_at = after(now, "lease", lease)?;
                    max_fence = held.fence;
                }
                let receipt = SagaSaved {
                    version: stored.version,
                    lease_expires_at: stored.lease.as_ref().map(|held| held.expires_at),
                };
                let seq = tables.next_seq;
                tables.next_seq += 1;
                let id: Arc<str> = Arc::from(saga.saga_id.as_str());
                let order = (saga.created_at.unix_timestamp_nanos(), seq, Arc::clone(&id));
                tables.index.add(&stored, &order);
                let finished = stored.status.is_terminal().then(|| {
                    let at = now.unix_timestamp_nanos();
                    tables.index.finished.insert((at, Arc::clone(&id)));
                    at
                });
                let entry = Entry {
                    saga: Arc::new(stored),
                    history,
                    order,
                    max_fence,
                    finished,
                };
                tables.sagas.insert(id, entry);
                (None, Some(receipt))
            }
        };
        match (existing, receipt) {
            (Some(existing), _) => Ok(CreateSaga::Existing(copy(existing))),
            (None, Some(receipt)) => Ok(CreateSaga::Created(receipt)),
            // One of the two is always set above.
            (None, None) => Err(not_found(&saga.saga_id)),
        }
    }

    async fn get_saga(&self, saga_id: &str) -> StorageResult<Option<SagaWorkflow>> {
        let found = self
            .inner
            .sagas
            .lock()
            .sagas
            .get(saga_id)
            .map(|entry| Arc::clone(&entry.saga));
        Ok(found.map(copy))
    }

    async fn acquire_saga_lease(
        &self,
        saga_id: &str,
        owner: &str,
        lease: Duration,
    ) -> StorageResult<Option<SagaWorkflow>> {
        validate::name("owner", owner)?;
        validate::duration("lease", lease)?;
        let now = self.now();
        let expires_at = after(now, "lease", lease)?;
        let owner = owner.to_owned();
        let taken = {
            let mut tables = self.inner.sagas.lock();
            let entry = tables.entry(saga_id)?;
            if entry
                .saga
                .lease
                .as_ref()
                .is_some_and(|held| held.owner != owner && lease_is_live(held, now))
            {
                return Ok(None);
            }
            entry.max_fence += 1;
            // Copies only if a reader holds the previous version at this very moment.
            let saga = Arc::make_mut(&mut entry.saga);
            saga.lease = Some(SagaLease {
                owner,
                fence: entry.max_fence,
                expires_at,
            });
            saga.version += 1;
            saga.updated_at = now;
            Arc::clone(&entry.saga)
        };
        Ok(Some(copy(taken)))
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
            validate::duration("lease", renew)?;
        }
        // Copied before locking, so that two threads saving sagas contend only for the
        // bookkeeping (a refused save drops the copy).
        let mut history = history.to_vec();
        let mut tables = self.inner.sagas.lock();
        // Lease times come from this store's clock, read under the lock.
        let now = self.now();
        let SagaTables { sagas, index, .. } = &mut *tables;
        let entry = sagas
            .get_mut(saga.saga_id.as_str())
            .ok_or_else(|| not_found(&saga.saga_id))?;
        // A cleared lease leaves fence 0, so a released executor is fenced out too.
        let stored_fence = entry.saga.lease.as_ref().map_or(0, |lease| lease.fence);
        if fence != stored_fence {
            return Err(StorageError::LeaseLost {
                kind: KIND,
                id: saga.saga_id.clone(),
            });
        }
        if saga.version != entry.saga.version {
            return Err(StorageError::VersionConflict {
                kind: KIND,
                id: saga.saga_id.clone(),
                expected: saga.version,
                found: entry.saga.version,
            });
        }
        let lease_expires_at = match (&saga.lease, renew) {
            (None, _) => None,
            (Some(_), Some(renew)) => Some(after(now, "lease", renew)?),
            (Some(_), None) => Some(
                entry
                    .saga
                    .lease
                    .as_ref()
                    .map(|held| held.expires_at)
                    .ok_or(CoreError::InvalidDuration {
                        field: "renew",
                        got: "none (no lease is stored to keep)".to_owned(),
                        max_secs: validate::MAX_TTL.as_secs(),
                    })?,
            ),
        };
        if let Some(lease) = &saga.lease {
            entry.max_fence = entry.max_fence.max(lease.fence);
        }
        // The indexes key on creation time, id, tenant, status and idempotency key;
        // only the status (and, through a caller's mistake, the tenant or key) can move
        // them, and most saves (one per step transition) move nothing.
        if saga.tenant_id != entry.saga.tenant_id
            || saga.idempotency_key != entry.saga.idempotency_key
            || saga.created_at != entry.saga.created_at
        {
            index.remove(&entry.saga, &entry.order);
            entry.order.0 = saga.created_at.unix_timestamp_nanos();
            index.add(saga, &entry.order);
        } else if saga.status != entry.saga.status {
            let (from, to) = (entry.saga.status, saga.status);
            index.move_status(&saga.tenant_id, from, to, &entry.order);
        }
        if let Some(at) = entry.finished.take() {
            index.finished.remove(&(at, Arc::clone(&entry.order.2)));
        }
        if saga.status.is_terminal() {
            let at = now.unix_timestamp_nanos();
            index.finished.insert((at, Arc::clone(&entry.order.2)));
            entry.finished = Some(at);
        }
        entry.history.append(&mut history);
        // Copies only if a reader holds the stored version at this very moment.
        let stored = Arc::make_mut(&mut entry.saga);
        assign(stored, saga);
        stored.version += 1;
        if let (Some(held), Some(at)) = (&mut stored.lease, lease_expires_at) {
            held.expires_at = at;
        }
        Ok(SagaSaved {
            version: stored.version,
            lease_expires_at,
        })
    }

    async fn get_saga_history(&self, saga_id: &str) -> StorageResult<Vec<SagaEvent>> {
        Ok(self
            .inner
            .sagas
            .lock()
            .sagas
            .get(saga_id)
            .map(|entry| entry.history.clone())
            .unwrap_or_default())
    }

    async fn list_sagas(&self, filter: &SagaFilter) -> StorageResult<Vec<SagaWorkflow>> {
        let limit = if filter.limit == 0 {
            DEFAULT_PAGE
        } else {
            filter.limit
        };
        let found: Vec<Arc<SagaWorkflow>> = {
            let tables = self.inner.sagas.lock();
            let Some(set) = tables.index.select(filter) else {
                return Ok(Vec::new());
            };
            set.iter()
                .rev()
                .skip(filter.offset)
                .take(limit)
                .filter_map(|(_, _, id)| tables.sagas.get(id).map(|entry| Arc::clone(&entry.saga)))
                .collect()
        };
        Ok(found.into_iter().map(copy).collect())
    }

    async fn list_recoverable_sagas(&self, limit: usize) -> StorageResult<Vec<String>> {
        let now = self.now();
        let tables = self.inner.sagas.lock();
        let active = [SagaStatus::Running, SagaStatus::Compensating];
        Ok(active
            .iter()
            .filter_map(|status| tables.index.by_status.get(status))
            .flat_map(BTreeSet::iter)
            .filter_map(|(_, _, id)| tables.sagas.get(id))
            .filter(|entry| {
                !entry
                    .saga
                    .lease
                    .as_ref()
                    .is_some_and(|lease| lease_is_live(lease, now))
            })
            .take(limit)
            .map(|entry| entry.saga.saga_id.clone())
            .collect())
    }

    async fn delete_saga(&self, saga_id: &str) -> StorageResult<bool> {
        let removed = {
            let mut tables = self.inner.sagas.lock();
            let Some(entry) = tables.sagas.remove(saga_id) else {
                return Ok(false);
            };
            tables.index.remove(&entry.saga, &entry.order);
            if let Some(at) = entry.finished {
                tables
                    .index
                    .finished
                    .remove(&(at, Arc::clone(&entry.order.2)));
            }
            entry
        };
        // Saga and journal are freed outside the lock.
        drop(removed);
        Ok(true)
    }

    async fn purge_sagas(&self, older_than: Duration, limit: usize) -> StorageResult<Sweep> {
        let (removed, more) = {
            let mut tables = self.inner.sagas.lock();
            let cutoff = (self.now() - older_than).unix_timestamp_nanos();
            let SagaTables { sagas, index, .. } = &mut *tables;
            let due: Vec<(i128, Arc<str>)> = index
                .finished
                .iter()
                .take_while(|(at, _)| *at < cutoff)
                .take(limit)
                .cloned()
                .collect();
            let mut removed = Vec::with_capacity(due.len());
            for item in &due {
                index.finished.remove(item);
                if let Some(entry) = sagas.remove(&item.1) {
                    index.remove(&entry.saga, &entry.order);
                    removed.push(entry);
                }
            }
            let more = index.finished.first().is_some_and(|(at, _)| *at < cutoff);
            (removed, more)
        };
        let done = removed.len() as u64;
        // Sagas and journals are freed outside the lock.
        drop(removed);
        Ok(Sweep {
            done,
            corrupt: Vec::new(),
            more,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn saga(steps: usize, seed: u32) -> SagaWorkflow {
        let steps = (0..steps)
            .map(|i| {
                let mut step = SagaStep::new(format!("s{i}-{seed}"), "op", json!({ "i": i }));
                step.attempts = seed;
                step.result = (seed % 2 == 0).then(|| json!([seed]));
                step.error = (seed % 3 == 0).then(|| format!("e{seed}"));
                step
            })
            .collect();
        let mut saga = SagaWorkflow::new("t", "w", steps, OffsetDateTime::UNIX_EPOCH);
        saga.context = json!({ "seed": seed });
        saga.version = u64::from(seed);
        saga.lease = (seed % 2 == 1).then(|| SagaLease {
            owner: format!("o{seed}"),
            fence: u64::from(seed),
            expires_at: OffsetDateTime::UNIX_EPOCH,
        });
        saga
    }

    /// Overwriting in place gives exactly a clone, whatever the shapes involved (more or
    /// fewer steps, a lease appearing or going).
    #[test]
    fn assign_equals_clone() {
        for (a, b) in [(3, 3), (3, 1), (1, 4), (0, 2), (2, 0)] {
            for (x, y) in [(1, 2), (2, 3), (3, 3), (4, 1)] {
                let mut dst = saga(a, x);
                let src = saga(b, y);
                assign(&mut dst, &src);
                assert_eq!(dst, src);
            }
        }
    }
}
