//! Fenced locks: one entry per held lock, removed on release. Fencing numbers come from
//! one counter for the whole store, so they rise across every acquisition of a name even
//! though nothing about a released lock is kept.

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use bgops_core::validate;
use bgops_storage::{LockLease, LockStore, StorageResult};
use time::OffsetDateTime;

use crate::MemoryStorage;
use crate::deadline::after;
use crate::shard::Map;

/// One shard of locks, by name.
pub(crate) type LockShard = Map<String, LockSlot>;

/// The current (or last, until someone takes over) holder of a lock.
#[derive(Debug)]
pub(crate) struct LockSlot {
    token: String,
    fence: u64,
    expires_at: OffsetDateTime,
}

impl LockSlot {
    fn is_live_at(&self, now: OffsetDateTime) -> bool {
        now < self.expires_at
    }

    /// Whether `lease` is this live holder.
    fn is_held_by(&self, lease: &LockLease, now: OffsetDateTime) -> bool {
        self.is_live_at(now) && self.token == lease.token && self.fence == lease.fence
    }
}

#[async_trait]
impl LockStore for MemoryStorage {
    async fn acquire_lock(&self, name: &str, ttl: Duration) -> StorageResult<Option<LockLease>> {
        validate::name("lock name", name)?;
        validate::duration("ttl", ttl)?;
        let mut shard = self.inner.locks.shard(name).lock();
        // Under the lock: expiries stored for one name never go backwards.
        let now = self.now();
        let expires_at = after(now, "ttl", ttl)?;
        if shard.get(name).is_some_and(|slot| slot.is_live_at(now)) {
            return Ok(None);
        }
        // Taken under the shard's lock, so of two acquisitions of one name the later one
        // always gets the higher number.
        let fence = self.inner.lock_fence.fetch_add(1, Ordering::SeqCst) + 1;
        let token = self.inner.ids.token();
        let slot = LockSlot {
            token: token.clone(),
            fence,
            expires_at,
        };
        shard.insert(name.to_owned(), slot);
        Ok(Some(LockLease {
            name: name.to_owned(),
            token,
            fence,
            expires_at,
        }))
    }

    async fn renew_lock(
        &self,
        lease: &LockLease,
        ttl: Duration,
    ) -> StorageResult<Option<LockLease>> {
        validate::duration("ttl", ttl)?;
        let now = self.now();
        let expires_at = after(now, "ttl", ttl)?;
        let mut shard = self.inner.locks.shard(lease.name.as_str()).lock();
        let Some(slot) = shard
            .get_mut(&lease.name)
            .filter(|slot| slot.is_held_by(lease, now))
        else {
            return Ok(None);
        };
        slot.expires_at = expires_at;
        Ok(Some(LockLease {
            expires_at,
            ..lease.clone()
        }))
    }

    async fn release_lock(&self, lease: &LockLease) -> StorageResult<bool> {
        let now = self.now();
        let mut shard = self.inner.locks.shard(lease.name.as_str()).lock();
        if !shard
            .get(&lease.name)
            .is_some_and(|slot| slot.is_held_by(lease, now))
        {
            return Ok(false);
        }
        shard.remove(&lease.name);
        Ok(true)
    }
}

/// How many locks are held right now.
pub(crate) fn count_held(storage: &MemoryStorage) -> u64 {
    let now = storage.now();
    let held = |shard: &LockShard| shard.values().filter(|slot| slot.is_live_at(now)).count();
    storage
        .inner
        .locks
        .iter()
        .map(|shard| held(&shard.lock()) as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn released_locks_leave_nothing_behind() {
        let store = MemoryStorage::new();
        let mut fences = Vec::new();
        for i in 0..100 {
            let lease = store
                .acquire_lock(&format!("lock-{i}"), Duration::from_secs(60))
                .await;
            let lease = lease.unwrap().unwrap();
            fences.push(lease.fence);
            assert!(store.release_lock(&lease).await.unwrap());
        }
        let kept: usize = store
            .inner
            .locks
            .iter()
            .map(|shard| shard.lock().len())
            .sum();
        assert_eq!(kept, 0, "a released lock keeps no entry");
        assert!(
            fences.windows(2).all(|w| w[0] < w[1]),
            "one rising counter for the store"
        );
    }
}
