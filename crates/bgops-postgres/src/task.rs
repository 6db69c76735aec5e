//! [`TaskStore`]: one row per task, its attempts as a JSON array in the row; claims are
//! `UPDATE … RETURNING` (`claim_next_task` picks with `FOR UPDATE SKIP LOCKED`), every
//! later write is fenced by the claim number (`WHERE claim = $attempt`).

use std::time::Duration;

use async_trait::async_trait;
use bgops_core::{Task, TaskAttempt, TaskLease, TaskStatus};
use bgops_storage::{
    NewTask, StorageError, StorageResult, Submitted, Sweep, TaskFilter, TaskReceipt, TaskStore,
};
use serde::Deserialize;
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use time::OffsetDateTime;

use crate::PostgresStorage;
use crate::error::{corrupt, map};
use crate::storage::micros;

const KIND: &str = "task";

type Query<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// One attempt as stored in the `history` array (times in microseconds since the epoch,
/// by the database's clock).
#[derive(Deserialize)]
struct StoredAttempt {
    attempt: u32,
    worker_id: String,
    claimed_us: i64,
    #[serde(default)]
    finished_us: Option<i64>,
    #[serde(default)]
    outcome: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

fn from_us(us: i64) -> StorageResult<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .map_err(|e| corrupt("task history", e))
}

fn status(s: &str) -> StorageResult<TaskStatus> {
    Ok(match s {
        "pending" => TaskStatus::Pending,
        "claimed" => TaskStatus::Claimed,
        "completed" => TaskStatus::Completed,
        "failed" => TaskStatus::Failed,
        other => return Err(corrupt("task", format!("unknown status {other}"))),
    })
}

fn count(row: &PgRow, column: &str) -> StorageResult<u32> {
    Ok(u32::try_from(row.try_get::<i32, _>(column).map_err(map)?).unwrap_or(0))
}

fn task(row: &PgRow) -> StorageResult<Task> {
    let task_id: String = row.try_get("task_id").map_err(map)?;
    let status = status(row.try_get("status").map_err(map)?)?;
    let history: Value = row.try_get("history").map_err(map)?;
    let history: Vec<StoredAttempt> =
        serde_json::from_value(history).map_err(|e| corrupt(&task_id, e))?;
    let history = history
        .into_iter()
        .map(|a| {
            Ok(TaskAttempt {
                attempt: a.attempt,
                worker_id: a.worker_id,
                claimed_at: from_us(a.claimed_us)?,
                finished_at: a.finished_us.map(from_us).transpose()?,
                outcome: a.outcome,
                error: a.error,
            })
        })
        .collect::<StorageResult<Vec<_>>>()?;
    let lease = match (
        status,
        row.try_get::<Option<String>, _>("lease_worker")
            .map_err(map)?,
        row.try_get::<Option<OffsetDateTime>, _>("lease_expires_at")
            .map_err(map)?,
    ) {
        (TaskStatus::Claimed, Some(worker_id), Some(expires_at)) => Some(TaskLease {
            worker_id,
            attempt: count(row, "claim")?,
            expires_at,
        }),
        _ => None,
    };
    Ok(Task {
        queue: row.try_get("queue").map_err(map)?,
        task_type: row.try_get("task_type").map_err(map)?,
        idempotency_key: row.try_get("idempotency_key").map_err(map)?,
        payload: row.try_get("payload").map_err(map)?,
        status,
        attempts: count(row, "attempts")?,
        max_attempts: count(row, "max_attempts")?,
        result: row.try_get("result").map_err(map)?,
        error: row.try_get("error").map_err(map)?,
        lease,
        history,
        created_at: row.try_get("created_at").map_err(map)?,
        updated_at: row.try_get("updated_at").map_err(map)?,
        available_at: row.try_get("available_at").map_err(map)?,
        finished_at: row.try_get("finished_at").map_err(map)?,
        task_id,
    })
}

fn receipt(row: &PgRow) -> StorageResult<TaskReceipt> {
    Ok(TaskReceipt {
        status: status(row.try_get("status").map_err(map)?)?,
        attempts: count(row, "attempts")?,
        lease_expires_at: row.try_get("lease_expires_at").map_err(map)?,
        available_at: row.try_get("available_at").map_err(map)?,
        updated_at: row.try_get("updated_at").map_err(map)?,
    })
}

fn attempt_arg(attempt: u32) -> i32 {
    i32::try_from(attempt).unwrap_or(i32::MAX)
}

fn not_found(task_id: &str) -> StorageError {
    StorageError::NotFound {
        kind: KIND,
        id: task_id.to_owned(),
    }
}

impl PostgresStorage {
    pub(crate) async fn submit_task_on(
        &self,
        conn: &mut PgConnection,
        new: &NewTask,
    ) -> StorageResult<Submitted> {
        new.validate()?;
        let sql = if self.inner.notify {
            &self.sql().task_submit_notify
        } else {
            &self.sql().task_submit
        };
        // A key whose task is deleted between our insert and our read: try again.
        for _ in 0..3 {
            let row = sqlx::query(sql)
                .bind(self.inner.ids.sortable_id())
                .bind(&new.queue)
                .bind(&new.task_type)
                .bind(&new.idempotency_key)
                .bind(&new.payload)
                .bind(i32::try_from(new.max_attempts).unwrap_or(i32::MAX))
                .bind(micros(new.delay.unwrap_or_default()))
                .fetch_optional(&mut *conn)
                .await
                .map_err(map)?;
            if let Some(row) = row {
                return Ok(Submitted {
                    task: task(&row)?,
                    duplicate: false,
                });
            }
            let key = new.idempotency_key.as_deref().unwrap_or_default();
            let existing = sqlx::query(&self.sql().task_by_key)
                .bind(&new.queue)
                .bind(key)
                .fetch_optional(&mut *conn)
                .await
                .map_err(map)?;
            if let Some(row) = existing {
                let existing = task(&row)?;
                if existing.payload != new.payload || existing.task_type != new.task_type {
                    return Err(StorageError::KeyConflict {
                        kind: KIND,
                        key: key.to_owned(),
                    });
                }
                return Ok(Submitted {
                    task: existing,
                    duplicate: true,
                });
            }
        }
        Err(map(sqlx::Error::Protocol(format!(
            "submit with key `{}` raced with deletes 3 times",
            new.idempotency_key.as_deref().unwrap_or_default()
        ))))
    }

    /// [`TaskStore::submit_task`] **inside the caller's transaction**: the task exists if
    /// and only if the transaction commits (a transactional outbox without the relay).
    /// Workers are notified at the commit.
    ///
    /// # Errors
    /// As [`TaskStore::submit_task`]: `KeyConflict`, `Invalid`.
    pub async fn submit_task_in(
        &self,
        conn: &mut PgConnection,
        task: &NewTask,
    ) -> StorageResult<Submitted> {
        self.submit_task_on(conn, task).await
    }

    /// [`TaskStore::complete_task`] **inside the caller's transaction**: a task whose
    /// effect is a database write records its completion with that write, so the effect
    /// happens exactly once. If the transaction rolls back (or the worker dies first),
    /// the claim is as it was: the worker may complete it again, or the lease runs out
    /// and another worker takes the task over (the fence keeps this attempt out then).
    /// The task's row stays locked until the commit.
    ///
    /// # Errors
    /// As [`TaskStore::complete_task`]: `LeaseLost` (roll back), `NotFound`.
    pub async fn complete_task_in(
        &self,
        conn: &mut PgConnection,
        task_id: &str,
        attempt: u32,
        result: Value,
    ) -> StorageResult<TaskReceipt> {
        let sql = &self.sql().task_complete;
        self.finish_on(conn, sql, task_id, attempt, |q| q.bind(result))
            .await
    }

    /// Runs a claim-fenced write on a pooled connection.
    async fn finish<'q>(
        &self,
        sql: &'q str,
        task_id: &'q str,
        attempt: u32,
        bind: impl FnOnce(Query<'q>) -> Query<'q> + Send,
    ) -> StorageResult<TaskReceipt> {
        let mut conn = self.conn().await?;
        self.finish_on(&mut conn, sql, task_id, attempt, bind).await
    }

    /// Runs a claim-fenced write; when it changes nothing, says why.
    async fn finish_on<'q>(
        &self,
        conn: &mut PgConnection,
        sql: &'q str,
        task_id: &'q str,
        attempt: u32,
        bind: impl FnOnce(Query<'q>) -> Query<'q> + Send,
    ) -> StorageResult<TaskReceipt> {
        let query = bind(sqlx::query(sql).bind(task_id).bind(attempt_arg(attempt)));
        let row = query.fetch_optional(&mut *conn).await.map_err(map)?;
        if let Some(row) = row {
            return receipt(&row);
        }
        let exists = sqlx::query(&self.sql().task_exists)
            .bind(task_id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(map)?;
        match exists {
            None => Err(not_found(task_id)),
            Some(_) => Err(StorageError::LeaseLost {
                kind: KIND,
                id: task_id.to_owned(),
            }),
        }
    }
}

#[async_trait]
impl TaskStore for PostgresStorage {
    async fn submit_task(&self, task: NewTask) -> StorageResult<Submitted> {
        let mut conn = self.conn().await?;
        self.submit_task_on(&mut conn, &task).await
    }

    async fn claim_task(
        &self,
        task_id: &str,
        worker_id: &str,
        lease: Duration,
    ) -> StorageResult<Option<Task>> {
        bgops_core::validate::duration("lease", lease)?;
        bgops_core::validate::name("worker_id", worker_id)?;
        let row = sqlx::query(&self.sql().task_claim)
            .bind(task_id)
            .bind(worker_id)
            .bind(micros(lease))
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(map)?;
        row.map(|row| task(&row)).transpose()
    }

    async fn claim_next_task(
        &self,
        queue: &str,
        worker_id: &str,
        lease: Duration,
    ) -> StorageResult<Option<Task>> {
        bgops_core::validate::duration("lease", lease)?;
        bgops_core::validate::name("queue", queue)?;
        bgops_core::validate::name("worker_id", worker_id)?;
        let row = sqlx::query(&self.sql().task_claim_next)
            .bind(queue)
            .bind(worker_id)
            .bind(micros(lease))
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(map)?;
        row.map(|row| task(&row)).transpose()
    }

    async fn complete_task(
        &self,
        task_id: &str,
        attempt: u32,
        result: Value,
    ) -> StorageResult<TaskReceipt> {
        self.finish(&self.sql().task_complete, task_id, attempt, |q| {
            q.bind(result)
        })
        .await
    }

    async fn fail_task(
        &self,
        task_id: &str,
        attempt: u32,
        error: &str,
        retry_after: Duration,
    ) -> StorageResult<TaskReceipt> {
        let error = error.to_owned();
        self.finish(&self.sql().task_fail, task_id, attempt, move |q| {
            q.bind(error).bind(micros(retry_after))
        })
        .await
    }

    async fn renew_task_lease(
        &self,
        task_id: &str,
        attempt: u32,
        lease: Duration,
    ) -> StorageResult<TaskReceipt> {
        bgops_core::validate::duration("lease", lease)?;
        self.finish(&self.sql().task_renew, task_id, attempt, |q| {
            q.bind(micros(lease))
        })
        .await
    }

    async fn release_task(&self, task_id: &str, attempt: u32) -> StorageResult<TaskReceipt> {
        self.finish(&self.sql().task_release, task_id, attempt, |q| q)
            .await
    }

    async fn retry_task(&self, task_id: &str) -> StorageResult<TaskReceipt> {
        let mut conn = self.conn().await?;
        let row = sqlx::query(&self.sql().task_retry)
            .bind(task_id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(map)?;
        if let Some(row) = row {
            return receipt(&row);
        }
        let exists = sqlx::query(&self.sql().task_exists)
            .bind(task_id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(map)?;
        match exists {
            None => Err(not_found(task_id)),
            Some(row) => Err(StorageError::InvalidState {
                kind: KIND,
                id: task_id.to_owned(),
                state: row.try_get("status").map_err(map)?,
                action: "retry",
            }),
        }
    }

    async fn get_task(&self, task_id: &str) -> StorageResult<Option<Task>> {
        let row = sqlx::query(&self.sql().task_get)
            .bind(task_id)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(map)?;
        row.map(|row| task(&row)).transpose()
    }

    async fn get_task_by_key(&self, queue: &str, key: &str) -> StorageResult<Option<Task>> {
        let row = sqlx::query(&self.sql().task_by_key)
            .bind(queue)
            .bind(key)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(map)?;
        row.map(|row| task(&row)).transpose()
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> StorageResult<Vec<Task>> {
        let which = usize::from(filter.queue.is_some()) + 2 * usize::from(filter.status.is_some());
        let limit = if filter.limit == 0 { 100 } else { filter.limit };
        let rows = sqlx::query(&self.sql().task_list[which])
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(i64::try_from(filter.offset).unwrap_or(i64::MAX))
            .bind(filter.queue.as_deref())
            .bind(filter.status.map(TaskStatus::as_str))
            .fetch_all(&self.inner.pool)
            .await
            .map_err(map)?;
        rows.iter().map(task).collect()
    }

    async fn delete_task(&self, task_id: &str) -> StorageResult<bool> {
        let done = sqlx::query(&self.sql().task_delete)
            .bind(task_id)
            .execute(&self.inner.pool)
            .await
            .map_err(map)?;
        Ok(done.rows_affected() > 0)
    }

    async fn requeue_expired_tasks(&self, limit: usize) -> StorageResult<Sweep> {
        crate::storage::sweep(self, &self.sql().task_requeue, limit, None).await
    }

    async fn purge_tasks(&self, older_than: Duration, limit: usize) -> StorageResult<Sweep> {
        crate::storage::sweep(self, &self.sql().task_purge, limit, Some(older_than)).await
    }

    async fn fail_task_permanently(
        &self,
        task_id: &str,
        attempt: u32,
        error: &str,
    ) -> StorageResult<TaskReceipt> {
        let error = error.to_owned();
        self.finish(
            &self.sql().task_fail_permanently,
            task_id,
            attempt,
            move |q| q.bind(error),
        )
        .await
    }
}
