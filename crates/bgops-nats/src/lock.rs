//! Fenced locks: one KV entry per name that is never removed, so the fence keeps rising
//! across acquisitions (a released or expired lock keeps its last fence).

use std::time::Duration;

use async_trait::async_trait;
use bgops_core::id::{IdGenerator, RandomIds};
use bgops_core::validate;
use bgops_storage::{LockLease, LockStore, StorageResult};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::keys::Names;
use crate::kv::{Current, read, write};
use crate::storage::{NatsStorage, after, from_json, to_json};

/// A lock's entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LockDoc {
    /// The holder's token; `None` once released.
    pub(crate) token: Option<String>,
    /// The last fence handed out for this name.
    pub(crate) fence: u64,
    /// When the holder's lease runs out.
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) expires_at: OffsetDateTime,
}

impl LockDoc {
    /// Whether someone holds it at `now`.
    pub(crate) fn held_at(&self, now: OffsetDateTime) -> bool {
        self.token.is_some() && self.expires_at > now
    }

    fn held_by(&self, lease: &LockLease, now: OffsetDateTime) -> bool {
        self.held_at(now)
            && self.token.as_deref() == Some(lease.token.as_str())
            && self.fence == lease.fence
    }
}

/// Reads the lock entry under `key` (a KV key, not a name).
pub(crate) async fn read_lock(
    storage: &NatsStorage,
    key: &str,
) -> StorageResult<(Current, Option<LockDoc>)> {
    let current = read(&storage.inner.locks, key).await?;
    let doc = match &current.value {
        Some(value) => Some(from_json::<LockDoc>(key, value)?),
        None => None,
    };
    Ok((current, doc))
}

#[async_trait]
impl LockStore for NatsStorage {
    async fn acquire_lock(&self, name: &str, ttl: Duration) -> StorageResult<Option<LockLease>> {
        validate::name("lock", name)?;
        validate::duration("ttl", ttl)?;
        let key = Names::lock(name);
        let token = RandomIds.token();
        loop {
            let (current, doc) = read_lock(self, &key).await?;
            let now = self.now();
            let fence = match &doc {
                Some(doc) if doc.held_at(now) => return Ok(None),
                Some(doc) => doc.fence + 1,
                None => 1,
            };
            let next = LockDoc {
                token: Some(token.clone()),
                fence,
                expires_at: after(now, ttl),
            };
            if write(&self.inner.locks, &key, to_json(&next)?, current.revision)
                .await?
                .is_some()
            {
                return Ok(Some(LockLease {
                    name: name.to_owned(),
                    token,
                    fence,
                    expires_at: next.expires_at,
                }));
            }
        }
    }

    async fn renew_lock(
        &self,
        lease: &LockLease,
        ttl: Duration,
    ) -> StorageResult<Option<LockLease>> {
        validate::duration("ttl", ttl)?;
        let key = Names::lock(&lease.name);
        loop {
            let (current, doc) = read_lock(self, &key).await?;
            let now = self.now();
            let Some(mut doc) = doc.filter(|d| d.held_by(lease, now)) else {
                return Ok(None);
            };
            doc.expires_at = after(now, ttl);
            if write(&self.inner.locks, &key, to_json(&doc)?, current.revision)
                .await?
                .is_some()
            {
                return Ok(Some(LockLease {
                    expires_at: doc.expires_at,
                    ..lease.clone()
                }));
            }
        }
    }

    async fn release_lock(&self, lease: &LockLease) -> StorageResult<bool> {
        let key = Names::lock(&lease.name);
        loop {
            let (current, doc) = read_lock(self, &key).await?;
            let now = self.now();
            let Some(mut doc) = doc.filter(|d| d.held_by(lease, now)) else {
                return Ok(false);
            };
            doc.token = None;
            doc.expires_at = now;
            if write(&self.inner.locks, &key, to_json(&doc)?, current.revision)
                .await?
                .is_some()
            {
                return Ok(true);
            }
        }
    }
}
