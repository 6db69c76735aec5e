//! [`LockStore`] on Redis: a string holding the owner token with a TTL (`SET NX PX`), a
//! fencing counter (`INCR`) and compare-and-delete, each one script.

use std::time::Duration;

use async_trait::async_trait;
use bgops_core::clock::from_millis;
use bgops_storage::{LockLease, LockStore, StorageResult};

use crate::codec::{items, ms, text};
use crate::error;
use crate::scripts::{LOCK_ACQUIRE, LOCK_RELEASE, LOCK_RENEW};
use crate::storage::RedisStorage;

fn millis(value: Option<&fred::types::Value>, script: &'static str) -> StorageResult<i64> {
    value
        .and_then(|v| text(v, script).ok())
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| error::unexpected(script, "missing number"))
}

#[async_trait]
impl LockStore for RedisStorage {
    async fn acquire_lock(&self, name: &str, ttl: Duration) -> StorageResult<Option<LockLease>> {
        bgops_core::validate::name("lock name", name)?;
        bgops_core::validate::duration("ttl", ttl)?;
        let [lock, fence, held] = self.keys.lock(name);
        let token = self.ids.token();
        let reply = self
            .run(
                &LOCK_ACQUIRE,
                vec![lock.clone(), fence, held],
                vec![token.clone(), ms(ttl), name.to_owned()],
            )
            .await?;
        let parts = items(reply);
        match parts
            .first()
            .map(|v| text(v, &lock))
            .transpose()?
            .as_deref()
        {
            Some("ok") => Ok(Some(LockLease {
                name: name.to_owned(),
                token,
                fence: millis(parts.get(1), LOCK_ACQUIRE.name)? as u64,
                expires_at: from_millis(millis(parts.get(2), LOCK_ACQUIRE.name)?),
            })),
            Some("held") => Ok(None),
            other => Err(error::unexpected(LOCK_ACQUIRE.name, other)),
        }
    }

    async fn renew_lock(
        &self,
        lease: &LockLease,
        ttl: Duration,
    ) -> StorageResult<Option<LockLease>> {
        bgops_core::validate::duration("ttl", ttl)?;
        let [lock, _, held] = self.keys.lock(&lease.name);
        let reply = self
            .run(
                &LOCK_RENEW,
                vec![lock.clone(), held],
                vec![lease.token.clone(), ms(ttl), lease.name.clone()],
            )
            .await?;
        let parts = items(reply);
        match parts
            .first()
            .map(|v| text(v, &lock))
            .transpose()?
            .as_deref()
        {
            Some("ok") => Ok(Some(LockLease {
                expires_at: from_millis(millis(parts.get(1), LOCK_RENEW.name)?),
                ..lease.clone()
            })),
            Some("lost") => Ok(None),
            other => Err(error::unexpected(LOCK_RENEW.name, other)),
        }
    }

    async fn release_lock(&self, lease: &LockLease) -> StorageResult<bool> {
        let [lock, _, held] = self.keys.lock(&lease.name);
        let reply = self
            .run(
                &LOCK_RELEASE,
                vec![lock, held],
                vec![lease.token.clone(), lease.name.clone()],
            )
            .await?;
        Ok(reply.as_u64().unwrap_or(0) == 1)
    }
}
