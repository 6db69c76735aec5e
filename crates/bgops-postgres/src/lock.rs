//! [`LockStore`]: one row per lock name, kept after release so that its fence keeps
//! rising; acquire is one `INSERT … ON CONFLICT … DO UPDATE … WHERE free`.

use std::time::Duration;

use async_trait::async_trait;
use bgops_storage::{LockLease, LockStore, StorageResult};
use sqlx::Row;

use crate::PostgresStorage;
use crate::error::map;
use crate::storage::micros;

fn fence(lease: &LockLease) -> i64 {
    i64::try_from(lease.fence).unwrap_or(i64::MAX)
}

#[async_trait]
impl LockStore for PostgresStorage {
    async fn acquire_lock(&self, name: &str, ttl: Duration) -> StorageResult<Option<LockLease>> {
        bgops_core::validate::name("lock name", name)?;
        bgops_core::validate::duration("ttl", ttl)?;
        let token = self.inner.ids.token();
        let row = sqlx::query(&self.sql().lock_acquire)
            .bind(name)
            .bind(&token)
            .bind(micros(ttl))
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(map)?;
        row.map(|row| {
            Ok(LockLease {
                name: name.to_owned(),
                token,
                fence: u64::try_from(row.try_get::<i64, _>("fence").map_err(map)?).unwrap_or(0),
                expires_at: row.try_get("expires_at").map_err(map)?,
            })
        })
        .transpose()
    }

    async fn renew_lock(
        &self,
        lease: &LockLease,
        ttl: Duration,
    ) -> StorageResult<Option<LockLease>> {
        bgops_core::validate::duration("ttl", ttl)?;
        let row = sqlx::query(&self.sql().lock_renew)
            .bind(&lease.name)
            .bind(&lease.token)
            .bind(fence(lease))
            .bind(micros(ttl))
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(map)?;
        row.map(|row| {
            Ok(LockLease {
                expires_at: row.try_get("expires_at").map_err(map)?,
                ..lease.clone()
            })
        })
        .transpose()
    }

    async fn release_lock(&self, lease: &LockLease) -> StorageResult<bool> {
        let done = sqlx::query(&self.sql().lock_release)
            .bind(&lease.name)
            .bind(&lease.token)
            .bind(fence(lease))
            .execute(&self.inner.pool)
            .await
            .map_err(map)?;
        Ok(done.rows_affected() == 1)
    }
}
