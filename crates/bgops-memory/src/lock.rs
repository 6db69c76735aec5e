//! Fenced locks: one entry per name that outlives releases, so its fencing counter keeps
//! rising for the life of the store.

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

/// A lock's fencing counter and its holder, if any.
#[derive(Debug, Default)]
pub(crate) struct LockSlot {
    fence: u64,
    holder: Option<Holder>,
}

#[derive(Debug)]
struct Holder {
    token: String,
    expires_at: OffsetDateTime,
}

impl LockSlot {
    /// The live holder's state, if `lease` is it.
    fn owned_by(&mut self, lease: &LockLease, now: OffsetDateTime) -> Option<&mut Holder> {
        let fence = self.fence;
        self.holder
            .as_mut()
            .filter(|h| now < h.expires_at && h.token == lease.token && fence == lease.fence)
    }
}

#[async_trait]
impl LockStore for MemoryStorage {
    async fn acquire_lock(&self, name: &str, ttl: Duration) -> StorageResult<Option<LockLease>> {
        validate::name("lock name", name)?;
        validate::duration("ttl", ttl)?;
        let now = self.now();
        let expires_at = after(now, "ttl", ttl)?;
        let mut shard = self.inner.locks.shard(name).lock();
        let slot = shard.entry(name.to_owned()).or_default();
        if slot.holder.as_ref().is_some_and(|h| now < h.expires_at) {
            return Ok(None);
        }
        slot.fence += 1;
        let token = self.inner.tokens.next().to_string();
        slot.holder = Some(Holder {
            token: token.clone(),
            expires_at,
        });
        Ok(Some(LockLease {
            name: name.to_owned(),
            token,
            fence: slot.fence,
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
        let Some(holder) = shard
            .get_mut(&lease.name)
            .and_then(|slot| slot.owned_by(lease, now))
        else {
            return Ok(None);
        };
        holder.expires_at = expires_at;
        Ok(Some(LockLease {
            expires_at,
            ..lease.clone()
        }))
    }

    async fn release_lock(&self, lease: &LockLease) -> StorageResult<bool> {
        let now = self.now();
        let mut shard = self.inner.locks.shard(lease.name.as_str()).lock();
        let Some(slot) = shard.get_mut(&lease.name) else {
            return Ok(false);
        };
        if slot.owned_by(lease, now).is_none() {
            return Ok(false);
        }
        slot.holder = None;
        Ok(true)
    }
}

/// How many locks are held right now.
pub(crate) fn count_held(storage: &MemoryStorage) -> u64 {
    let now = storage.now();
    storage
        .inner
        .locks
        .iter()
        .map(|shard| {
            shard
                .lock()
                .values()
                .filter(|s| s.holder.as_ref().is_some_and(|h| now < h.expires_at))
                .count() as u64
        })
        .sum()
}
