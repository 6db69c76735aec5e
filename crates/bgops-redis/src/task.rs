//! [`TaskStore`] on Redis: a hash per task, its attempts as a list, and per-queue ready
//! and lease indexes, all under the `{task}` tag so each script stays on one slot.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use bgops_core::clock::from_millis;
use bgops_core::{Task, TaskAttempt, TaskLease, TaskStatus};
use bgops_storage::{
    NewTask, StorageError, StorageResult, Submitted, Sweep, TaskCompletion, TaskFilter,
    TaskReceipt, TaskStore,
};
use fred::types::Value;
use serde::Deserialize;
use serde_json::Value as Json;

use crate::codec::{Fields, corrupt, items, ms, text, to_json};
use crate::error;
use crate::keys::TASK_STATUSES;
use crate::scripts::{
    LuaScript, TASK_CLAIM, TASK_CLAIM_NEXT, TASK_COMPLETE_MANY, TASK_DELETE, TASK_FINISH, TASK_GET,
    TASK_LIST, TASK_RETRY, TASK_SUBMIT_MANY, TASK_SWEEP,
};
use crate::storage::RedisStorage;

const KIND: &str = "task";

/// One attempt as the scripts write it (times in ms).
#[derive(Deserialize)]
struct RawAttempt {
    attempt: u32,
    worker_id: String,
    claimed: i64,
    finished: Option<i64>,
    outcome: Option<String>,
    error: Option<String>,
}

fn status(fields: &Fields) -> StorageResult<TaskStatus> {
    Ok(match fields.req("status")? {
        "pending" => TaskStatus::Pending,
        "claimed" => TaskStatus::Claimed,
        "completed" => TaskStatus::Completed,
        "failed" => TaskStatus::Failed,
        other => return Err(corrupt(&fields.key, format!("unknown status {other:?}"))),
    })
}

fn task(key: &str, hash: Value, history: Value) -> StorageResult<Option<Task>> {
    let fields = Fields::from_value(key, hash)?;
    if fields.is_empty() {
        return Ok(None);
    }
    let status = status(&fields)?;
    let attempts = fields.int("attempts")? as u32;
    let lease = match (status, fields.opt("lworker")) {
        (TaskStatus::Claimed, Some(worker)) => Some(TaskLease {
            worker_id: worker.to_owned(),
            attempt: fields.int("claim")? as u32,
            expires_at: fields.time("lexp")?,
        }),
        _ => None,
    };
    let history = items(history)
        .iter()
        .map(|v| {
            let raw: RawAttempt = serde_json::from_str(&text(v, key)?)
                .map_err(|e| corrupt(key, format!("attempt entry is not valid: {e}")))?;
            Ok(TaskAttempt {
                attempt: raw.attempt,
                worker_id: raw.worker_id,
                claimed_at: from_millis(raw.claimed),
                finished_at: raw.finished.map(from_millis),
                outcome: raw.outcome,
                error: raw.error,
            })
        })
        .collect::<StorageResult<Vec<_>>>()?;
    Ok(Some(Task {
        task_id: fields.req("id")?.to_owned(),
        queue: fields.req("queue")?.to_owned(),
        task_type: fields.req("type")?.to_owned(),
        idempotency_key: fields.opt("ikey").map(str::to_owned),
        payload: fields.json("payload")?,
        status,
        attempts,
        max_attempts: fields.int("max")? as u32,
        result: fields.opt_json("result")?,
        error: fields.opt("error").map(str::to_owned),
        lease,
        history,
        created_at: fields.time("created")?,
        updated_at: fields.time("updated")?,
        available_at: fields.time("available")?,
        finished_at: fields.opt_time("finished")?,
    }))
}

/// Parses `{'ok', status, attempts, lexp | '', available, updated}`.
fn receipt(key: &str, mut parts: impl Iterator<Item = Value>) -> StorageResult<TaskReceipt> {
    let mut next = || -> StorageResult<String> {
        parts
            .next()
            .map(|v| text(&v, key))
            .transpose()
            .map(Option::unwrap_or_default)
    };
    let status = match next()?.as_str() {
        "pending" => TaskStatus::Pending,
        "claimed" => TaskStatus::Claimed,
        "completed" => TaskStatus::Completed,
        "failed" => TaskStatus::Failed,
        other => return Err(corrupt(key, format!("unknown status {other:?}"))),
    };
    let number = |raw: String, field: &str| -> StorageResult<i64> {
        raw.parse()
            .map_err(|_| corrupt(key, format!("field `{field}` is not a number: {raw:?}")))
    };
    let attempts = number(next()?, "attempts")?;
    let lexp = next()?;
    let lease_expires_at = if lexp.is_empty() {
        None
    } else {
        Some(from_millis(number(lexp, "lexp")?))
    };
    Ok(TaskReceipt {
        status,
        attempts: u32::try_from(attempts).unwrap_or(0),
        lease_expires_at,
        available_at: from_millis(number(next()?, "available")?),
        updated_at: from_millis(number(next()?, "updated")?),
    })
}

/// Parses a sweep reply `{done, more, corrupt ids...}`.
fn sweep(key: &str, reply: Value, script: &'static str) -> StorageResult<Sweep> {
    let mut parts = items(reply).into_iter();
    let (Some(done), Some(more)) = (parts.next(), parts.next()) else {
        return Err(error::unexpected(script, "short reply"));
    };
    Ok(Sweep {
        done: done
            .as_u64()
            .ok_or_else(|| error::unexpected(script, "done"))?,
        more: more.as_u64().unwrap_or(0) > 0,
        corrupt: parts.map(|v| text(&v, key)).collect::<StorageResult<_>>()?,
    })
}

/// Checks a task before it is sent.
fn check_new(new: &NewTask) -> StorageResult<()> {
    new.validate()?;
    Ok(())
}

/// One task's answer of `task_submit_many.lua`.
fn submitted(task_id: String, rec: &str, new: NewTask, reply: Value) -> StorageResult<Submitted> {
    let mut parts = items(reply).into_iter();
    let code = parts.next().map(|v| text(&v, rec)).transpose()?;
    let number = |v: Option<Value>, field: &str| -> StorageResult<i64> {
        let raw = v.map(|v| text(&v, rec)).transpose()?.unwrap_or_default();
        raw.parse()
            .map_err(|_| corrupt(rec, format!("`{field}` is not a number: {raw:?}")))
    };
    match code.as_deref() {
        Some("created") => {
            let now = from_millis(number(parts.next(), "created")?);
            let available_at = from_millis(number(parts.next(), "available")?);
            Ok(Submitted {
                task: Task {
                    task_id,
                    queue: new.queue,
                    task_type: new.task_type,
                    idempotency_key: new.idempotency_key,
                    payload: new.payload,
                    status: TaskStatus::Pending,
                    attempts: 0,
                    max_attempts: new.max_attempts,
                    result: None,
                    error: None,
                    lease: None,
                    history: Vec::new(),
                    created_at: now,
                    updated_at: now,
                    available_at,
                    finished_at: None,
                },
                duplicate: false,
            })
        }
        Some("duplicate") => match (parts.next(), parts.next()) {
            (Some(hash), Some(history)) => match task(rec, hash, history)? {
                Some(task) => Ok(Submitted {
                    task,
                    duplicate: true,
                }),
                None => Err(error::unexpected(TASK_SUBMIT_MANY.name, "duplicate gone")),
            },
            _ => Err(error::unexpected(TASK_SUBMIT_MANY.name, "short duplicate")),
        },
        Some("conflict") => Err(StorageError::KeyConflict {
            kind: KIND,
            key: new.idempotency_key.unwrap_or_default(),
        }),
        Some("corrupt") => Err(corrupt_reply(
            parts
                .next()
                .and_then(|v| text(&v, rec).ok())
                .unwrap_or_default(),
            rec,
        )),
        other => Err(error::unexpected(
            TASK_SUBMIT_MANY.name,
            other.map(str::to_owned),
        )),
    }
}

/// A `BGOPS_CORRUPT <len>:<key> <reason>` message carried as text in a nested reply.
fn corrupt_reply(message: String, fallback_key: &str) -> StorageError {
    let parsed = message.strip_prefix("BGOPS_CORRUPT ").and_then(|rest| {
        let (len, rest) = rest.split_once(':')?;
        let len: usize = len.parse().ok()?;
        let key = rest.get(..len)?;
        let reason = rest.get(len..)?.trim_start();
        Some((key.to_owned(), reason.to_owned()))
    });
    match parsed {
        Some((key, reason)) => corrupt(&key, reason),
        None => corrupt(fallback_key, message),
    }
}

impl RedisStorage {
    /// The global task keys followed by `more`.
    fn task_keys(&self, more: impl IntoIterator<Item = String>) -> Vec<String> {
        let mut keys = self.keys.task_globals();
        keys.extend(more);
        keys
    }

    pub(crate) async fn task_counts(&self) -> StorageResult<BTreeMap<String, u64>> {
        let mut counts = BTreeMap::new();
        for status in TASK_STATUSES {
            let n = self.zcard(self.keys.task_index(None, Some(status))).await?;
            if n > 0 {
                counts.insert(status.to_owned(), n);
            }
        }
        Ok(counts)
    }

    /// Runs a script answering `{code, HGETALL, history}`; returns the code and the task.
    /// `key` names the task in errors.
    async fn task_script(
        &self,
        script: &LuaScript,
        key: &str,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> StorageResult<(String, Option<Task>)> {
        let reply = self.run_about(script, key, keys, args).await?;
        let mut parts = items(reply).into_iter();
        let code = parts
            .next()
            .map(|v| text(&v, key))
            .transpose()?
            .unwrap_or_default();
        let found = match (parts.next(), parts.next()) {
            (Some(hash), Some(history)) => task(key, hash, history)?,
            _ => None,
        };
        Ok((code, found))
    }

    async fn finish(
        &self,
        task_id: &str,
        action: &'static str,
        attempt: u32,
        value: String,
        retry_after: Duration,
    ) -> StorageResult<TaskReceipt> {
        let (rec, _) = self.keys.task(task_id);
        let reply = self
            .run_about(
                &TASK_FINISH,
                &rec,
                self.task_keys([rec.clone()]),
                vec![
                    action.to_owned(),
                    attempt.to_string(),
                    value,
                    ms(retry_after),
                ],
            )
            .await?;
        let id = task_id.to_owned();
        let mut parts = items(reply).into_iter();
        let code = parts.next().map(|v| text(&v, &rec)).transpose()?;
        match code.as_deref() {
            Some("ok") => receipt(&rec, parts),
            Some("not_found") => Err(StorageError::NotFound { kind: KIND, id }),
            Some("lease_lost") => Err(StorageError::LeaseLost { kind: KIND, id }),
            other => Err(error::unexpected(
                TASK_FINISH.name,
                other.map(str::to_owned),
            )),
        }
    }

    async fn get_task_with(&self, key: String, mode: &str) -> StorageResult<Option<Task>> {
        let reply = self
            .run(&TASK_GET, vec![key.clone()], vec![mode.to_owned()])
            .await?;
        let mut parts = items(reply).into_iter();
        match (parts.next(), parts.next()) {
            (Some(hash), Some(history)) => task(&key, hash, history),
            _ => Ok(None),
        }
    }

    async fn sweep_tasks(
        &self,
        action: &str,
        limit: usize,
        older: Duration,
    ) -> StorageResult<Sweep> {
        let keys = self.task_keys([]);
        let index = keys.first().cloned().unwrap_or_default();
        let reply = self
            .run(
                &TASK_SWEEP,
                keys,
                vec![action.to_owned(), limit.to_string(), ms(older)],
            )
            .await?;
        sweep(&index, reply, TASK_SWEEP.name)
    }
}

#[async_trait]
impl TaskStore for RedisStorage {
    async fn submit_task(&self, new: NewTask) -> StorageResult<Submitted> {
        // One script for one task or many: a created task is answered without reading it
        // back.
        self.submit_tasks(vec![new])
            .await?
            .pop()
            .unwrap_or_else(|| Err(error::unexpected(TASK_SUBMIT_MANY.name, "no answer")))
    }

    async fn claim_task(
        &self,
        task_id: &str,
        worker_id: &str,
        lease: Duration,
    ) -> StorageResult<Option<Task>> {
        bgops_core::validate::duration("lease", lease)?;
        bgops_core::validate::name("worker_id", worker_id)?;
        let (rec, _) = self.keys.task(task_id);
        let (code, found) = self
            .task_script(
                &TASK_CLAIM,
                &rec,
                self.task_keys([rec.clone()]),
                vec![worker_id.to_owned(), ms(lease)],
            )
            .await?;
        Ok(if code == "ok" { found } else { None })
    }

    async fn claim_next_task(
        &self,
        queue: &str,
        worker_id: &str,
        lease: Duration,
    ) -> StorageResult<Option<Task>> {
        Ok(self
            .claim_next_tasks(queue, worker_id, lease, 1)
            .await?
            .pop())
    }

    async fn claim_next_tasks(
        &self,
        queue: &str,
        worker_id: &str,
        lease: Duration,
        max: usize,
    ) -> StorageResult<Vec<Task>> {
        bgops_core::validate::duration("lease", lease)?;
        bgops_core::validate::name("queue", queue)?;
        bgops_core::validate::name("worker_id", worker_id)?;
        if max == 0 {
            return Ok(Vec::new());
        }
        let queue_keys = self.keys.task_queue(queue);
        let ready = queue_keys.get(1).cloned().unwrap_or_default();
        let reply = self
            .run_about(
                &TASK_CLAIM_NEXT,
                &ready,
                self.task_keys(queue_keys),
                vec![worker_id.to_owned(), ms(lease), max.to_string()],
            )
            .await?;
        let mut parts = items(reply).into_iter();
        let code = parts
            .next()
            .map(|v| text(&v, &ready))
            .transpose()?
            .unwrap_or_default();
        let mut claimed = Vec::new();
        if code == "ok" {
            while let (Some(hash), Some(history)) = (parts.next(), parts.next()) {
                if let Some(task) = task(&ready, hash, history)? {
                    claimed.push(task);
                }
            }
        }
        Ok(claimed)
    }

    async fn submit_tasks(
        &self,
        tasks: Vec<NewTask>,
    ) -> StorageResult<Vec<StorageResult<Submitted>>> {
        // Checked first: a task rejected here gets its error in its place.
        let mut answers: Vec<Option<StorageResult<Submitted>>> = Vec::with_capacity(tasks.len());
        let mut sent: Vec<(String, String, NewTask)> = Vec::new();
        let mut keys = self.task_keys([]);
        let mut args = Vec::new();
        for new in tasks {
            if let Err(e) = check_new(&new) {
                answers.push(Some(Err(e)));
                continue;
            }
            let payload = match to_json(&new.payload) {
                Ok(p) => p,
                Err(e) => {
                    answers.push(Some(Err(e)));
                    continue;
                }
            };
            let task_id = self.ids.sortable_id();
            let (rec, hist) = self.keys.task(&task_id);
            let keymap = new
                .idempotency_key
                .as_deref()
                .map_or_else(|| rec.clone(), |k| self.keys.task_keymap(&new.queue, k));
            keys.extend([rec.clone(), hist, keymap]);
            keys.extend(self.keys.task_queue(&new.queue));
            args.extend([
                task_id.clone(),
                new.queue.clone(),
                new.task_type.clone(),
                if new.idempotency_key.is_some() {
                    "1"
                } else {
                    "0"
                }
                .to_owned(),
                new.idempotency_key.clone().unwrap_or_default(),
                payload,
                new.max_attempts.to_string(),
                ms(new.delay.unwrap_or_default()),
            ]);
            answers.push(None);
            sent.push((task_id, rec, new));
        }
        let mut replies = if sent.is_empty() {
            Vec::new()
        } else {
            let about = sent
                .first()
                .map(|(_, rec, _)| rec.clone())
                .unwrap_or_default();
            items(
                self.run_about(&TASK_SUBMIT_MANY, &about, keys, args)
                    .await?,
            )
        }
        .into_iter();
        let mut sent = sent.into_iter();
        Ok(answers
            .into_iter()
            .map(|answer| {
                if let Some(rejected) = answer {
                    return rejected;
                }
                let (Some((task_id, rec, new)), Some(reply)) = (sent.next(), replies.next()) else {
                    return Err(error::unexpected(TASK_SUBMIT_MANY.name, "short reply"));
                };
                submitted(task_id, &rec, new, reply)
            })
            .collect())
    }

    async fn complete_tasks(
        &self,
        done: Vec<TaskCompletion>,
    ) -> StorageResult<Vec<StorageResult<TaskReceipt>>> {
        if done.is_empty() {
            return Ok(Vec::new());
        }
        let recs: Vec<String> = done.iter().map(|c| self.keys.task(&c.task_id).0).collect();
        let mut args = Vec::with_capacity(done.len() * 2);
        for c in &done {
            args.push(c.attempt.to_string());
            args.push(to_json(&c.result)?);
        }
        let about = recs.first().cloned().unwrap_or_default();
        let reply = self
            .run_about(
                &TASK_COMPLETE_MANY,
                &about,
                self.task_keys(recs.clone()),
                args,
            )
            .await?;
        let answers = items(reply);
        if answers.len() != done.len() {
            return Err(error::unexpected(
                TASK_COMPLETE_MANY.name,
                format!("{} answers for {} completions", answers.len(), done.len()),
            ));
        }
        Ok(answers
            .into_iter()
            .zip(done.iter().zip(&recs))
            .map(|(answer, (c, rec))| {
                let id = c.task_id.clone();
                let mut parts = items(answer).into_iter();
                let code = parts.next().map(|v| text(&v, rec)).transpose()?;
                match code.as_deref() {
                    Some("ok") => receipt(rec, parts),
                    Some("not_found") => Err(StorageError::NotFound { kind: KIND, id }),
                    Some("lease_lost") => Err(StorageError::LeaseLost { kind: KIND, id }),
                    Some("corrupt") => Err(corrupt_reply(
                        parts
                            .next()
                            .and_then(|v| text(&v, rec).ok())
                            .unwrap_or_default(),
                        rec,
                    )),
                    other => Err(error::unexpected(
                        TASK_COMPLETE_MANY.name,
                        other.map(str::to_owned),
                    )),
                }
            })
            .collect())
    }

    async fn complete_task(
        &self,
        task_id: &str,
        attempt: u32,
        result: Json,
    ) -> StorageResult<TaskReceipt> {
        self.finish(
            task_id,
            "complete",
            attempt,
            to_json(&result)?,
            Duration::ZERO,
        )
        .await
    }

    async fn fail_task(
        &self,
        task_id: &str,
        attempt: u32,
        error: &str,
        retry_after: Duration,
    ) -> StorageResult<TaskReceipt> {
        self.finish(task_id, "fail", attempt, error.to_owned(), retry_after)
            .await
    }

    async fn fail_task_permanently(
        &self,
        task_id: &str,
        attempt: u32,
        error: &str,
    ) -> StorageResult<TaskReceipt> {
        self.finish(
            task_id,
            "fail_permanently",
            attempt,
            error.to_owned(),
            Duration::ZERO,
        )
        .await
    }

    async fn renew_task_lease(
        &self,
        task_id: &str,
        attempt: u32,
        lease: Duration,
    ) -> StorageResult<TaskReceipt> {
        bgops_core::validate::duration("lease", lease)?;
        self.finish(task_id, "renew", attempt, ms(lease), Duration::ZERO)
            .await
    }

    async fn release_task(&self, task_id: &str, attempt: u32) -> StorageResult<TaskReceipt> {
        self.finish(task_id, "release", attempt, String::new(), Duration::ZERO)
            .await
    }

    async fn retry_task(&self, task_id: &str) -> StorageResult<TaskReceipt> {
        let (key, _) = self.keys.task(task_id);
        let reply = self
            .run_about(&TASK_RETRY, &key, self.task_keys([key.clone()]), vec![])
            .await?;
        let mut parts = items(reply).into_iter();
        let code = parts
            .next()
            .map(|v| text(&v, &key))
            .transpose()?
            .unwrap_or_default();
        let id = task_id.to_owned();
        match code.as_str() {
            "ok" => receipt(&key, parts),
            "not_found" => Err(StorageError::NotFound { kind: KIND, id }),
            "invalid" => Err(StorageError::InvalidState {
                kind: KIND,
                id,
                state: parts
                    .next()
                    .map(|v| text(&v, &key))
                    .transpose()?
                    .unwrap_or_default(),
                action: "retry",
            }),
            other => Err(error::unexpected(TASK_RETRY.name, other.to_owned())),
        }
    }

    async fn get_task(&self, task_id: &str) -> StorageResult<Option<Task>> {
        let (rec, _) = self.keys.task(task_id);
        self.get_task_with(rec, "id").await
    }

    async fn get_task_by_key(&self, queue: &str, key: &str) -> StorageResult<Option<Task>> {
        let keymap = self.keys.task_keymap(queue, key);
        self.get_task_with(keymap, "key").await
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> StorageResult<Vec<Task>> {
        let index = self.keys.task_index(
            filter.queue.as_deref(),
            filter.status.map(TaskStatus::as_str),
        );
        let limit = if filter.limit == 0 { 100 } else { filter.limit };
        let reply = self
            .run(
                &TASK_LIST,
                vec![index.clone()],
                vec![filter.offset.to_string(), limit.to_string()],
            )
            .await?;
        let mut parts = items(reply).into_iter();
        let mut tasks = Vec::new();
        while let (Some(hash), Some(history)) = (parts.next(), parts.next()) {
            if let Some(t) = task(&index, hash, history)? {
                tasks.push(t);
            }
        }
        Ok(tasks)
    }

    async fn delete_task(&self, task_id: &str) -> StorageResult<bool> {
        let (rec, _) = self.keys.task(task_id);
        let reply = self
            .run_about(&TASK_DELETE, &rec, self.task_keys([rec.clone()]), vec![])
            .await?;
        Ok(reply.as_u64().unwrap_or(0) > 0)
    }

    async fn requeue_expired_tasks(&self, limit: usize) -> StorageResult<Sweep> {
        self.sweep_tasks("requeue", limit, Duration::ZERO).await
    }

    async fn purge_tasks(&self, older_than: Duration, limit: usize) -> StorageResult<Sweep> {
        self.sweep_tasks("purge", limit, older_than).await
    }
}
