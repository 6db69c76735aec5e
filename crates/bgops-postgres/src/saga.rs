//! [`SagaStore`]: the saga as a JSON document beside the columns that are queried
//! (status, tenant, key, version, lease), its journal in `saga_event`; a save is one
//! fenced `UPDATE … WHERE lease_fence = … AND version = …` whose events are inserted by
//! the same statement.

use std::time::Duration;

use async_trait::async_trait;
use bgops_core::{SagaEvent, SagaLease, SagaWorkflow};
use bgops_storage::{CreateSaga, SagaFilter, SagaSaved, SagaStore, StorageError, StorageResult};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{PgConnection, Row};
use time::OffsetDateTime;

use crate::PostgresStorage;
use crate::error::{corrupt, map};
use crate::storage::micros;

const KIND: &str = "saga";

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn saga(row: &PgRow) -> StorageResult<SagaWorkflow> {
    let doc: Value = row.try_get("doc").map_err(map)?;
    let mut saga: SagaWorkflow = serde_json::from_value(doc).map_err(|e| corrupt("saga", e))?;
    saga.version = to_u64(row.try_get("version").map_err(map)?);
    let owner: Option<String> = row.try_get("lease_owner").map_err(map)?;
    saga.lease = match owner {
        Some(owner) => Some(SagaLease {
            owner,
            fence: to_u64(
                row.try_get::<Option<i64>, _>("lease_fence")
                    .map_err(map)?
                    .unwrap_or(0),
            ),
            expires_at: row
                .try_get::<Option<OffsetDateTime>, _>("lease_expires_at")
                .map_err(map)?
                .ok_or_else(|| corrupt(&saga.saga_id, "lease without an expiry"))?,
        }),
        None => None,
    };
    Ok(saga)
}

/// The events as one `jsonb[]` parameter, each serialized once, straight into the
/// statement's buffer.
fn events(history: &[SagaEvent]) -> Vec<Json<&SagaEvent>> {
    history.iter().map(Json).collect()
}

impl PostgresStorage {
    pub(crate) async fn save_saga_on(
        &self,
        conn: &mut PgConnection,
        saga: &SagaWorkflow,
        fence: u64,
        history: &[SagaEvent],
        renew: Option<Duration>,
    ) -> StorageResult<SagaSaved> {
        if let Some(renew) = renew {
            bgops_core::validate::duration("lease", renew)?;
        }
        let row = sqlx::query(&self.sql().saga_save)
            .bind(&saga.saga_id)
            .bind(to_i64(fence))
            .bind(to_i64(saga.version))
            .bind(saga.status.as_str())
            .bind(Json(saga))
            .bind(saga.lease.as_ref().map(|l| l.owner.as_str()))
            .bind(saga.lease.as_ref().map(|l| to_i64(l.fence)))
            .bind(renew.map(micros))
            .bind(events(history))
            .fetch_optional(&mut *conn)
            .await
            .map_err(map)?;
        if let Some(row) = row {
            return Ok(SagaSaved {
                version: to_u64(row.try_get("version").map_err(map)?),
                lease_expires_at: row.try_get("lease_expires_at").map_err(map)?,
            });
        }
        let state = sqlx::query(&self.sql().saga_state)
            .bind(&saga.saga_id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(map)?;
        let Some(state) = state else {
            return Err(StorageError::NotFound {
                kind: KIND,
                id: saga.saga_id.clone(),
            });
        };
        let found = to_u64(state.try_get(0).map_err(map)?);
        let stored_fence = to_u64(state.try_get(1).map_err(map)?);
        if stored_fence == fence {
            Err(StorageError::VersionConflict {
                kind: KIND,
                id: saga.saga_id.clone(),
                expected: saga.version,
                found,
            })
        } else {
            Err(StorageError::LeaseLost {
                kind: KIND,
                id: saga.saga_id.clone(),
            })
        }
    }

    /// [`SagaStore::save_saga`] **inside the caller's transaction**: a step whose effect
    /// is a database write records its success (the saga's new state and its journal
    /// events) in the same transaction as that write, so the step takes effect exactly
    /// once: if the transaction rolls back or the process dies first, neither the write
    /// nor the step's success exists, and the recovered saga runs the step again.
    ///
    /// The fenced compare-and-set holds the saga's row lock until the commit, so a second
    /// executor cannot save over it meanwhile.
    ///
    /// # Errors
    /// As [`SagaStore::save_saga`]: `LeaseLost`, `VersionConflict`, `NotFound` (the
    /// transaction should then roll back).
    pub async fn save_saga_in(
        &self,
        conn: &mut PgConnection,
        saga: &SagaWorkflow,
        fence: u64,
        history: &[SagaEvent],
        renew: Option<Duration>,
    ) -> StorageResult<SagaSaved> {
        self.save_saga_on(conn, saga, fence, history, renew).await
    }

    pub(crate) async fn create_saga_on(
        &self,
        conn: &mut PgConnection,
        saga: &SagaWorkflow,
        lease: Option<Duration>,
        history: &[SagaEvent],
    ) -> StorageResult<CreateSaga> {
        bgops_core::validate::name("saga_id", &saga.saga_id)?;
        bgops_core::validate::name("tenant_id", &saga.tenant_id)?;
        let lease_micros = match (&saga.lease, lease) {
            (Some(_), None) => {
                return Err(bgops_core::CoreError::InvalidDuration {
                    field: "lease",
                    got: "none (the saga is created leased)".to_owned(),
                    max_secs: 0,
                }
                .into());
            }
            (Some(_), Some(lease)) => {
                bgops_core::validate::duration("lease", lease)?;
                Some(micros(lease))
            }
            (None, _) => None,
        };
        // Twice at most: a saga in the way that is deleted in between leaves room.
        for _ in 0..2 {
            let row = sqlx::query(&self.sql().saga_create)
                .bind(&saga.saga_id)
                .bind(&saga.tenant_id)
                .bind(&saga.idempotency_key)
                .bind(saga.status.as_str())
                .bind(to_i64(saga.version))
                .bind(saga.lease.as_ref().map(|l| l.owner.as_str()))
                .bind(saga.lease.as_ref().map(|l| to_i64(l.fence.max(1))))
                .bind(lease_micros)
                .bind(saga.created_at)
                .bind(Json(saga))
                .bind(events(history))
                .fetch_optional(&mut *conn)
                .await
                .map_err(map)?;
            if let Some(row) = row {
                return Ok(CreateSaga::Created(SagaSaved {
                    version: saga.version,
                    lease_expires_at: row.try_get("lease_expires_at").map_err(map)?,
                }));
            }
            let existing = sqlx::query(&self.sql().saga_find)
                .bind(&saga.saga_id)
                .bind(&saga.tenant_id)
                .bind(&saga.idempotency_key)
                .fetch_optional(&mut *conn)
                .await
                .map_err(map)?;
            if let Some(row) = existing {
                return Ok(CreateSaga::Existing(self::saga(&row)?));
            }
        }
        Err(map(sqlx::Error::Protocol(format!(
            "create of saga `{}` raced with deletes twice",
            saga.saga_id
        ))))
    }

    /// [`SagaStore::create_saga`] **inside the caller's transaction**: the saga exists
    /// iff the transaction commits, so a business write and the saga that follows it up
    /// (payment, shipping, ...) start together or not at all. Created `Running` without a
    /// lease, it is picked up by the recoverer (`list_recoverable_sagas`); created
    /// `Pending`, by whoever executes it by id after the commit.
    ///
    /// # Errors
    /// As [`SagaStore::create_saga`].
    pub async fn create_saga_in(
        &self,
        conn: &mut PgConnection,
        saga: &SagaWorkflow,
        lease: Option<Duration>,
        history: &[SagaEvent],
    ) -> StorageResult<CreateSaga> {
        self.create_saga_on(conn, saga, lease, history).await
    }
}

#[async_trait]
impl SagaStore for PostgresStorage {
    async fn create_saga(
        &self,
        saga: &SagaWorkflow,
        lease: Option<Duration>,
        history: &[SagaEvent],
    ) -> StorageResult<CreateSaga> {
        let mut conn = self.conn().await?;
        self.create_saga_on(&mut conn, saga, lease, history).await
    }

    async fn get_saga(&self, saga_id: &str) -> StorageResult<Option<SagaWorkflow>> {
        let row = sqlx::query(&self.sql().saga_get)
            .bind(saga_id)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(map)?;
        row.map(|row| saga(&row)).transpose()
    }

    async fn acquire_saga_lease(
        &self,
        saga_id: &str,
        owner: &str,
        lease: Duration,
    ) -> StorageResult<Option<SagaWorkflow>> {
        bgops_core::validate::duration("lease", lease)?;
        bgops_core::validate::name("owner", owner)?;
        let mut conn = self.conn().await?;
        let row = sqlx::query(&self.sql().saga_acquire)
            .bind(saga_id)
            .bind(owner)
            .bind(micros(lease))
            .fetch_optional(&mut *conn)
            .await
            .map_err(map)?;
        if let Some(row) = row {
            return saga(&row).map(Some);
        }
        let exists = sqlx::query(&self.sql().saga_exists)
            .bind(saga_id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(map)?;
        match exists {
            Some(_) => Ok(None),
            None => Err(StorageError::NotFound {
                kind: KIND,
                id: saga_id.to_owned(),
            }),
        }
    }

    async fn save_saga(
        &self,
        saga: &SagaWorkflow,
        fence: u64,
        history: &[SagaEvent],
        renew: Option<Duration>,
    ) -> StorageResult<SagaSaved> {
        let mut conn = self.conn().await?;
        self.save_saga_on(&mut conn, saga, fence, history, renew)
            .await
    }

    async fn get_saga_history(&self, saga_id: &str) -> StorageResult<Vec<SagaEvent>> {
        let rows = sqlx::query(&self.sql().saga_history)
            .bind(saga_id)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(map)?;
        rows.iter()
            .map(|row| {
                let event: Value = row.try_get(0).map_err(map)?;
                serde_json::from_value(event).map_err(|e| corrupt(saga_id, e))
            })
            .collect()
    }

    async fn list_sagas(&self, filter: &SagaFilter) -> StorageResult<Vec<SagaWorkflow>> {
        let which =
            usize::from(filter.status.is_some()) + 2 * usize::from(filter.tenant_id.is_some());
        let limit = if filter.limit == 0 { 100 } else { filter.limit };
        let rows = sqlx::query(&self.sql().saga_list[which])
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(i64::try_from(filter.offset).unwrap_or(i64::MAX))
            .bind(filter.status.map(bgops_core::SagaStatus::as_str))
            .bind(filter.tenant_id.as_deref())
            .fetch_all(&self.inner.pool)
            .await
            .map_err(map)?;
        rows.iter().map(saga).collect()
    }

    async fn list_recoverable_sagas(&self, limit: usize) -> StorageResult<Vec<String>> {
        sqlx::query_scalar(&self.sql().saga_recoverable)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.inner.pool)
            .await
            .map_err(map)
    }

    async fn delete_saga(&self, saga_id: &str) -> StorageResult<bool> {
        let done = sqlx::query(&self.sql().saga_delete)
            .bind(saga_id)
            .execute(&self.inner.pool)
            .await
            .map_err(map)?;
        Ok(done.rows_affected() > 0)
    }
}
