//! [`IdempotencyStore`] on one table: `begin` is one `INSERT … ON CONFLICT … DO UPDATE
//! … WHERE` (with a fallback read of the live record in the same statement), `complete`
//! one `UPDATE … WHERE token = … RETURNING`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bgops_core::{IdempotencyRecord, OperationOutcome, OperationStatus};
use bgops_storage::{
    BeginOutcome, BeginRequest, Claimed, Completed, IdempotencyStore, StorageResult, Sweep,
    record_lease_lost, record_not_found, validate_address,
};
use bytes::Bytes;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use time::OffsetDateTime;

use crate::PostgresStorage;
use crate::error::{corrupt, map};
use crate::storage::micros;

/// A `begin` that raced with a concurrent change of the same record answers `retry`
/// (its statement's snapshot predates the change); it is repeated this often.
const BEGIN_ATTEMPTS: usize = 5;

fn record(row: &PgRow) -> StorageResult<IdempotencyRecord> {
    let status: String = row.try_get("status").map_err(map)?;
    let status = match status.as_str() {
        "in_progress" => OperationStatus::InProgress,
        "completed" => OperationStatus::Completed,
        "failed" => OperationStatus::Failed,
        other => return Err(corrupt("idempotency", format!("unknown status {other}"))),
    };
    Ok(IdempotencyRecord {
        key: row.try_get("key").map_err(map)?,
        tenant_id: row.try_get("tenant_id").map_err(map)?,
        user_id: row.try_get("user_id").map_err(map)?,
        operation_type: row.try_get("operation_type").map_err(map)?,
        created_at: row.try_get("created_at").map_err(map)?,
        expires_at: row.try_get("expires_at").map_err(map)?,
        status,
        result: row.try_get("result").map_err(map)?,
        error: row.try_get("error").map_err(map)?,
        parameters: row.try_get("parameters").map_err(map)?,
        fingerprint: row.try_get("fingerprint").map_err(map)?,
        lease_expires_at: row.try_get("lease_expires_at").map_err(map)?,
        completed_at: row.try_get("completed_at").map_err(map)?,
        payload: row
            .try_get::<Option<Vec<u8>>, _>("payload")
            .map_err(map)?
            .map(Bytes::from),
    })
}

impl PostgresStorage {
    pub(crate) async fn begin_on(
        &self,
        conn: &mut PgConnection,
        request: &BeginRequest,
    ) -> StorageResult<BeginOutcome> {
        request.validate()?;
        for _ in 0..BEGIN_ATTEMPTS {
            let row = sqlx::query(&self.sql().begin)
                .bind(&request.tenant_id)
                .bind(&request.key)
                .bind(&request.user_id)
                .bind(&request.operation_type)
                .bind(&request.fingerprint)
                .bind(&request.parameters)
                .bind(&request.token)
                .bind(micros(request.ttl))
                .bind(micros(request.lease))
                .fetch_optional(&mut *conn)
                .await
                .map_err(map)?;
            // No row: the record was created by a transaction that committed after this
            // statement's snapshot was taken; the next attempt sees it.
            let Some(row) = row else { continue };
            let outcome: String = row.try_get("outcome").map_err(map)?;
            match outcome.as_str() {
                "started" => {
                    return Ok(BeginOutcome::Started(Claimed {
                        token: request.token.clone(),
                        created_at: row.try_get("created_at").map_err(map)?,
                        expires_at: row.try_get("expires_at").map_err(map)?,
                        lease_expires_at: row
                            .try_get::<Option<OffsetDateTime>, _>("lease_expires_at")
                            .map_err(map)?
                            .ok_or_else(|| corrupt(&request.key, "claim without a lease"))?,
                    }));
                }
                "in_progress" => {
                    return Ok(BeginOutcome::InProgress {
                        lease_expires_at: row
                            .try_get::<Option<OffsetDateTime>, _>("lease_expires_at")
                            .map_err(map)?
                            .ok_or_else(|| corrupt(&request.key, "claim without a lease"))?,
                    });
                }
                "completed" => return Ok(BeginOutcome::Completed(Arc::new(record(&row)?))),
                "mismatch" => return Ok(BeginOutcome::Mismatch),
                _ => {}
            }
        }
        Err(crate::error::map(sqlx::Error::Protocol(format!(
            "begin on `{}` raced with concurrent changes {BEGIN_ATTEMPTS} times",
            request.key
        ))))
    }

    pub(crate) async fn complete_on(
        &self,
        conn: &mut PgConnection,
        tenant_id: &str,
        key: &str,
        token: &str,
        outcome: OperationOutcome,
    ) -> StorageResult<Completed> {
        validate_address(tenant_id, key)?;
        let status = outcome.status().as_str();
        let sql = if self.inner.notify {
            &self.sql().complete_notify
        } else {
            &self.sql().complete
        };
        let row = sqlx::query(sql)
            .bind(tenant_id)
            .bind(key)
            .bind(token)
            .bind(status)
            .bind(outcome.result)
            .bind(outcome.error)
            .bind(outcome.payload.as_deref())
            .fetch_optional(&mut *conn)
            .await
            .map_err(map)?;
        if let Some(row) = row {
            return Ok(Completed {
                completed_at: row.try_get("completed_at").map_err(map)?,
                expires_at: row.try_get("expires_at").map_err(map)?,
            });
        }
        // Not completed now: repeated by the completing token (answer the first receipt),
        // or gone, or someone else's.
        let row = sqlx::query(&self.sql().idem_state)
            .bind(tenant_id)
            .bind(key)
            .fetch_optional(&mut *conn)
            .await
            .map_err(map)?;
        let Some(row) = row else {
            return Err(record_not_found(tenant_id, key));
        };
        if !row.try_get::<bool, _>("live").map_err(map)? {
            return Err(record_not_found(tenant_id, key));
        }
        let (status, holder): (String, String) = (
            row.try_get("status").map_err(map)?,
            row.try_get("token").map_err(map)?,
        );
        let completed_at: Option<OffsetDateTime> = row.try_get("completed_at").map_err(map)?;
        match completed_at {
            Some(completed_at) if status != "in_progress" && holder == token => Ok(Completed {
                completed_at,
                expires_at: row.try_get("expires_at").map_err(map)?,
            }),
            _ => Err(record_lease_lost(tenant_id, key)),
        }
    }

    /// Why a token-fenced write changed nothing: `NotFound` or `LeaseLost`.
    async fn idem_refusal(
        &self,
        conn: &mut PgConnection,
        tenant_id: &str,
        key: &str,
    ) -> StorageResult<bgops_storage::StorageError> {
        let row = sqlx::query(&self.sql().idem_state)
            .bind(tenant_id)
            .bind(key)
            .fetch_optional(&mut *conn)
            .await
            .map_err(map)?;
        Ok(match row {
            Some(row) if row.try_get::<bool, _>("live").map_err(map)? => {
                record_lease_lost(tenant_id, key)
            }
            _ => record_not_found(tenant_id, key),
        })
    }

    /// Records the outcome of the claim `token` holds **inside the caller's transaction**
    /// (or on any connection): the business writes made in `conn`'s transaction and the
    /// stored outcome commit together, or not at all.
    ///
    /// Until the transaction commits, the record stays in flight (a duplicate `begin`
    /// waits on the row lock, then sees the outcome); if it rolls back, or the process
    /// dies before the commit, nothing of it remains: the key is in flight under its old
    /// lease, and once that runs out the next `begin` takes it over and runs the
    /// operation (which had no effect). The lease must outlive the transaction: renew it
    /// (or choose it long enough) for long ones. Until the commit, do not `begin` or
    /// `complete` the same key through the pool (another connection): it would wait for
    /// the row lock this transaction holds.
    ///
    /// # Errors
    /// As [`IdempotencyStore::complete`]: `NotFound`, `LeaseLost` (the transaction should
    /// then roll back its business writes).
    pub async fn complete_in(
        &self,
        conn: &mut PgConnection,
        tenant_id: &str,
        key: &str,
        token: &str,
        outcome: OperationOutcome,
    ) -> StorageResult<Completed> {
        self.complete_on(conn, tenant_id, key, token, outcome).await
    }
}

#[async_trait]
impl IdempotencyStore for PostgresStorage {
    async fn begin(&self, request: BeginRequest) -> StorageResult<BeginOutcome> {
        let mut conn = self.conn().await?;
        self.begin_on(&mut conn, &request).await
    }

    async fn complete(
        &self,
        tenant_id: &str,
        key: &str,
        token: &str,
        outcome: OperationOutcome,
    ) -> StorageResult<Completed> {
        let mut conn = self.conn().await?;
        self.complete_on(&mut conn, tenant_id, key, token, outcome)
            .await
    }

    async fn release(&self, tenant_id: &str, key: &str, token: &str) -> StorageResult<()> {
        validate_address(tenant_id, key)?;
        let mut conn = self.conn().await?;
        let done = sqlx::query(&self.sql().release)
            .bind(tenant_id)
            .bind(key)
            .bind(token)
            .execute(&mut *conn)
            .await
            .map_err(map)?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(self.idem_refusal(&mut conn, tenant_id, key).await?)
        }
    }

    async fn renew(
        &self,
        tenant_id: &str,
        key: &str,
        token: &str,
        lease: Duration,
    ) -> StorageResult<OffsetDateTime> {
        validate_address(tenant_id, key)?;
        bgops_core::validate::duration("lease", lease)?;
        let mut conn = self.conn().await?;
        let row = sqlx::query(&self.sql().renew)
            .bind(tenant_id)
            .bind(key)
            .bind(token)
            .bind(micros(lease))
            .fetch_optional(&mut *conn)
            .await
            .map_err(map)?;
        match row {
            Some(row) => row.try_get("lease_expires_at").map_err(map),
            None => Err(self.idem_refusal(&mut conn, tenant_id, key).await?),
        }
    }

    async fn get_idempotency(
        &self,
        tenant_id: &str,
        key: &str,
    ) -> StorageResult<Option<Arc<IdempotencyRecord>>> {
        validate_address(tenant_id, key)?;
        let row = sqlx::query(&self.sql().idem_get)
            .bind(tenant_id)
            .bind(key)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(map)?;
        row.map(|row| record(&row).map(Arc::new)).transpose()
    }

    async fn delete_idempotency(&self, tenant_id: &str, key: &str) -> StorageResult<bool> {
        validate_address(tenant_id, key)?;
        let done = sqlx::query(&self.sql().idem_delete)
            .bind(tenant_id)
            .bind(key)
            .execute(&self.inner.pool)
            .await
            .map_err(map)?;
        Ok(done.rows_affected() > 0)
    }

    async fn purge_expired(&self, limit: usize) -> StorageResult<Sweep> {
        crate::storage::sweep(self, &self.sql().idem_purge, limit, None).await
    }
}
