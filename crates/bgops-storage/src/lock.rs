//! Fenced distributed locks.

use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::StorageResult;

/// A held lock. `fence` rises with every acquisition of the same name, so a resource can
/// reject writes from an older holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockLease {
    /// The lock's name.
    pub name: String,
    /// The owner token; only it may renew or release.
    pub token: String,
    /// Fencing number, strictly rising per name.
    pub fence: u64,
    /// When the lock runs out unless renewed.
    pub expires_at: OffsetDateTime,
}

/// Fenced distributed locks.
#[async_trait]
pub trait LockStore: Send + Sync {
    /// Takes the lock for `ttl` if nobody holds it; `None` if it is held.
    async fn acquire_lock(&self, name: &str, ttl: Duration) -> StorageResult<Option<LockLease>>;

    /// Extends the lock to `ttl` from now if `lease` is still the owner; `None` if it is
    /// not (expired and maybe taken by another).
    async fn renew_lock(
        &self,
        lease: &LockLease,
        ttl: Duration,
    ) -> StorageResult<Option<LockLease>>;

    /// Releases the lock if `lease` is still the owner (compare-and-delete); `true` if it
    /// was released.
    async fn release_lock(&self, lease: &LockLease) -> StorageResult<bool>;
}
