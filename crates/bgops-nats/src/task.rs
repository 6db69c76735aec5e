//! The task queue: task state in KV (every transition a compare-and-set on the entry's
//! revision), delivery through a work-queue stream with one durable pull consumer per
//! queue, and status indexes in the index stream.
//!
//! A work message is a hint, the KV entry the truth: a claimer that gets a message reads
//! the task and claims it only if the task says it is claimable; otherwise it answers the
//! message (`-NAK` with the delay until the task may become claimable, or `+ACK` when the
//! task is finished or gone). A claim keeps its message un-acknowledged and delays its
//! redelivery to the end of the lease, so a dead worker's task comes back by itself.

use std::time::Duration;

use async_nats::jetstream::consumer::{self, PullConsumer};
use async_nats::jetstream::message::PublishMessage;
use async_trait::async_trait;
use bgops_core::{Task, TaskAttempt, TaskLease, TaskStatus, validate};
use bgops_storage::{
    NewTask, StorageError, StorageResult, Submitted, Sweep, TaskFilter, TaskReceipt, TaskStore,
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::error::driver;
use crate::keys::{Names, dec, enc};
use crate::kv::{Current, forget, index_drop, index_put, index_subjects, read, remove, write};
use crate::storage::{NatsStorage, after, from_json, nonce, to_json, until};

const KIND: &str = "task";

/// At most this many work messages are looked at by one `claim_next_task`.
const CLAIM_SCAN: usize = 64;

/// What is stored under a task's key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TaskDoc {
    #[serde(flatten)]
    pub(crate) task: Task,
    /// Claims made so far; the next claim's attempt number (the fence) is one more. Never
    /// goes down, so a stale worker stays fenced out after a release or a retry.
    #[serde(default)]
    claims: u32,
    /// Stream sequence of the task's status index entry.
    #[serde(default)]
    ix: Option<u64>,
    /// Ack subject of the work message whose delivery made the current claim.
    #[serde(default)]
    delivery: Option<String>,
}

fn not_found(id: &str) -> StorageError {
    StorageError::NotFound {
        kind: KIND,
        id: id.to_owned(),
    }
}

fn lease_lost(id: &str) -> StorageError {
    StorageError::LeaseLost {
        kind: KIND,
        id: id.to_owned(),
    }
}

fn receipt(task: &Task) -> TaskReceipt {
    TaskReceipt {
        status: task.status,
        attempts: task.attempts,
        lease_expires_at: task.lease.as_ref().map(|l| l.expires_at),
        available_at: task.available_at,
        updated_at: task.updated_at,
    }
}

/// Closes the open attempt (the last in the history).
fn finish_attempt(task: &mut Task, now: OffsetDateTime, outcome: &str, error: Option<&str>) {
    if let Some(last) = task.history.last_mut() {
        if last.finished_at.is_none() {
            last.finished_at = Some(now);
            last.outcome = Some(outcome.to_owned());
            last.error = error.map(str::to_owned);
        }
    }
}

/// A claim whose lease ran out goes back to Pending, or to Failed at its last attempt.
/// Returns whether it changed anything.
fn expire(doc: &mut TaskDoc, now: OffsetDateTime) -> bool {
    let task = &mut doc.task;
    let expired = task.status == TaskStatus::Claimed
        && task.lease.as_ref().is_none_or(|l| l.expires_at <= now);
    if !expired {
        return false;
    }
    finish_attempt(task, now, "lease_expired", None);
    task.lease = None;
    task.updated_at = now;
    doc.delivery = None;
    if task.attempts >= task.max_attempts {
        task.status = TaskStatus::Failed;
        task.error = Some("lease expired".to_owned());
        task.finished_at = Some(now);
    } else {
        task.status = TaskStatus::Pending;
        task.available_at = now;
    }
    true
}

/// Whether the task can be claimed at `now` (after expiring a dead claim); `Err` holds
/// how long until it may be (`None`: never, it is finished).
fn claimable(doc: &mut TaskDoc, now: OffsetDateTime) -> Result<(), Option<Duration>> {
    expire(doc, now);
    let task = &doc.task;
    match task.status {
        TaskStatus::Pending if task.available_at <= now => Ok(()),
        TaskStatus::Pending => Err(Some(until(now, task.available_at))),
        TaskStatus::Claimed => Err(Some(
            task.lease
                .as_ref()
                .map_or(Duration::ZERO, |l| until(now, l.expires_at)),
        )),
        TaskStatus::Completed | TaskStatus::Failed => Err(None),
    }
}

fn claim(doc: &mut TaskDoc, worker: &str, lease: Duration, now: OffsetDateTime) {
    doc.claims += 1;
    let task = &mut doc.task;
    task.attempts += 1;
    task.status = TaskStatus::Claimed;
    task.lease = Some(TaskLease {
        worker_id: worker.to_owned(),
        attempt: doc.claims,
        expires_at: after(now, lease),
    });
    task.history.push(TaskAttempt {
        attempt: doc.claims,
        worker_id: worker.to_owned(),
        claimed_at: now,
        finished_at: None,
        outcome: None,
        error: None,
    });
    task.updated_at = now;
}

/// Checks that `attempt` is the current claim.
fn check_claim(id: &str, doc: Option<&TaskDoc>, attempt: u32) -> StorageResult<()> {
    let doc = doc.ok_or_else(|| not_found(id))?;
    match &doc.task.lease {
        Some(lease) if doc.task.status == TaskStatus::Claimed && lease.attempt == attempt => Ok(()),
        _ => Err(lease_lost(id)),
    }
}

/// Serializes this process's pulls on one consumer: JetStream parks a no-wait pull that
/// arrives while another waits for the same message, so concurrent pulls from one
/// process would wait on each other.
pub(crate) type FetchLock = std::sync::Arc<tokio::sync::Mutex<()>>;

/// How long a pull may wait for its message before we give up on it (another process's
/// pull took the message it was counting on).
const FETCH_WAIT: Duration = Duration::from_millis(500);

/// Pulls one work message: `None` when none is deliverable now.
async fn fetch_one(
    consumer: &PullConsumer,
    fetching: &FetchLock,
) -> StorageResult<Option<async_nats::jetstream::Message>> {
    let _turn = fetching.lock().await;
    let mut batch = consumer
        .fetch()
        .max_messages(1)
        .messages()
        .await
        .map_err(|e| driver("fetch", e))?;
    match tokio::time::timeout(FETCH_WAIT, batch.next()).await {
        Ok(None) => Ok(None),
        Ok(Some(message)) => message.map(Some).map_err(|e| driver("fetch", e)),
        Err(_) => {
            // The server keeps our pull waiting; whatever it delivers to it later goes
            // straight back to the queue instead of waiting out the ack wait.
            tokio::spawn(async move {
                if let Some(Ok(late)) = batch.next().await {
                    let _ = late
                        .ack_with(async_nats::jetstream::AckKind::Nak(None))
                        .await;
                }
            });
            Ok(None)
        }
    }
}

/// The answer to a submission whose key names `doc`: the task as a duplicate, or a
/// conflict when the key was used with another task type or payload.
fn duplicate_of(
    doc: TaskDoc,
    task_type: &str,
    payload: &Value,
    key: &str,
) -> StorageResult<Submitted> {
    if doc.task.task_type != task_type || doc.task.payload != *payload {
        return Err(StorageError::KeyConflict {
            kind: KIND,
            key: key.to_owned(),
        });
    }
    Ok(Submitted {
        task: doc.task,
        duplicate: true,
    })
}

/// What one step of a transition decided.
enum Step<T> {
    /// Nothing to write; the answer.
    Done(T),
    /// Write this document; the answer once written.
    Write(Box<TaskDoc>, T),
}

/// How to answer a work message.
enum Answer {
    /// `+ACK`: the task is finished or gone; the message leaves the stream.
    Ack,
    /// `-NAK` with a delay: deliver it again then.
    Nak(Duration),
}

impl NatsStorage {
    async fn read_task(&self, id: &str) -> StorageResult<(Current, Option<TaskDoc>)> {
        let key = Names::task(id);
        let current = read(&self.inner.tasks, &key).await?;
        let doc = match &current.value {
            Some(value) => Some(from_json::<TaskDoc>(&key, value)?),
            None => None,
        };
        Ok((current, doc))
    }

    fn task_index_subject(&self, task: &Task) -> String {
        self.inner.names.index(&[
            "t",
            task.status.as_str(),
            &enc(&task.queue),
            &enc(&task.task_id),
            &nonce(),
        ])
    }

    /// Writes `next` over the entry at `current` (compare-and-set), moving its status
    /// index entry when the status changes: the new entry is added before the write and
    /// the old one removed after it, so a task is never missing from its status index
    /// (a left-over entry is checked against the task by every reader). `false` on a
    /// conflict.
    async fn write_task(
        &self,
        current: &Current,
        old: Option<&TaskDoc>,
        next: &mut TaskDoc,
    ) -> StorageResult<bool> {
        let moved = old.is_none_or(|o| o.task.status != next.task.status);
        let mut added = None;
        if moved {
            let seq = index_put(
                &self.inner.js,
                self.task_index_subject(&next.task),
                bytes::Bytes::new(),
            )
            .await?;
            next.ix = Some(seq);
            added = Some(seq);
        }
        let key = Names::task(&next.task.task_id);
        let written = write(&self.inner.tasks, &key, to_json(next)?, current.revision)
            .await?
            .is_some();
        let stale = if written {
            old.and_then(|o| o.ix).filter(|_| moved)
        } else {
            added
        };
        if let Some(seq) = stale {
            // Off the caller's path: a left-over entry is harmless (readers check it
            // against the task), so nobody waits for its removal.
            let index = self.inner.index.clone();
            let task_id = next.task.task_id.clone();
            tokio::spawn(async move {
                if let Err(error) = index_drop(&index, seq).await {
                    tracing::warn!(%error, %task_id, "index entry left behind");
                }
            });
        }
        Ok(written)
    }

    /// The read, decide, compare-and-set loop of one task.
    async fn transition<T>(
        &self,
        id: &str,
        mut decide: impl FnMut(Option<TaskDoc>, bool, OffsetDateTime) -> StorageResult<Step<T>>,
    ) -> StorageResult<(T, Option<TaskDoc>)> {
        loop {
            let (current, doc) = self.read_task(id).await?;
            let now = self.now();
            match decide(doc.clone(), current.revision == 0, now)? {
                Step::Done(answer) => return Ok((answer, None)),
                Step::Write(mut next, answer) => {
                    if self.write_task(&current, doc.as_ref(), &mut next).await? {
                        return Ok((answer, Some(*next)));
                    }
                }
            }
        }
    }

    /// Answers a work message by its ack subject, fire and forget (the server handles a
    /// connection's messages in order, so it has the answer before our next call).
    async fn answer(&self, reply: &str, answer: Answer) {
        let payload = match answer {
            Answer::Ack => bytes::Bytes::from_static(b"+ACK"),
            Answer::Nak(delay) if delay.is_zero() => bytes::Bytes::from_static(b"-NAK"),
            Answer::Nak(delay) => format!("-NAK {{\"delay\":{}}}", delay.as_nanos()).into(),
        };
        let client = &self.inner.client;
        if let Err(error) = client.publish(reply.to_owned(), payload).await {
            tracing::debug!(%error, "could not answer a work message; it comes back by itself");
        }
    }

    /// Publishes a work message for the task (a delivery hint carrying the task as
    /// submitted); `Nats-Msg-Id` makes a repeated publish of the same hint a no-op.
    async fn publish_work(&self, doc: &TaskDoc, msg_id: &str) -> StorageResult<()> {
        let publish = PublishMessage::build()
            .payload(to_json(doc)?)
            .message_id(msg_id);
        self.inner
            .js
            .send_publish(self.inner.names.work_subject(&doc.task.queue), publish)
            .await
            .map_err(|e| driver("work publish", e))?
            .await
            .map_err(|e| driver("work ack", e))?;
        Ok(())
    }

    async fn consumer(&self, queue: &str) -> StorageResult<(PullConsumer, FetchLock)> {
        let mut consumers = self.inner.consumers.lock().await;
        if let Some(found) = consumers.get(queue) {
            return Ok(found.clone());
        }
        let name = Names::consumer(queue);
        let made: PullConsumer = self
            .inner
            .work
            .get_or_create_consumer(
                &name,
                consumer::pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: self.inner.names.work_subject(queue),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: self.inner.ack_wait,
                    // Attempts are counted in the task, not by deliveries: a message is
                    // also delivered to learn that its task is not due yet.
                    max_deliver: -1,
                    max_ack_pending: 1_000_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| driver("create consumer", e))?;
        let made = (made, FetchLock::default());
        consumers.insert(queue.to_owned(), made.clone());
        Ok(made)
    }

    /// Claims the task a work message names, for `worker`. `Ok(Some)` with the claimed
    /// task, `Ok(None)` with the answer to give the message.
    async fn claim_delivered(
        &self,
        submitted: TaskDoc,
        worker: &str,
        lease: Duration,
        reply: &str,
    ) -> StorageResult<Result<Task, Answer>> {
        let id = submitted.task.task_id.clone();
        let (answer, written) = self
            .transition(&id, |doc, never_written, now| {
                let (mut next, fresh) = match doc {
                    Some(doc) => (doc, false),
                    // Written from the message only if the key never held anything: a
                    // deleted task (a purge marker) is not brought back.
                    None if never_written => (submitted.clone(), true),
                    None => return Ok(Step::Done(Some(Answer::Ack))),
                };
                match claimable(&mut next, now) {
                    Ok(()) => {
                        claim(&mut next, worker, lease, now);
                        next.delivery = Some(reply.to_owned());
                        Ok(Step::Write(Box::new(next), None))
                    }
                    Err(Some(wait)) => {
                        if fresh {
                            // The submitter published the message but has not written
                            // the task yet (or died before): write it from the message.
                            Ok(Step::Write(Box::new(next), Some(Answer::Nak(wait))))
                        } else {
                            Ok(Step::Done(Some(Answer::Nak(wait))))
                        }
                    }
                    Err(None) => Ok(Step::Done(Some(Answer::Ack))),
                }
            })
            .await?;
        match (answer, written) {
            (Some(answer), _) => Ok(Err(answer)),
            (None, Some(doc)) => Ok(Ok(doc.task)),
            (None, None) => Ok(Err(Answer::Ack)),
        }
    }

    /// Ends a claim and answers its message: `+ACK` when finished, `-NAK` (after
    /// `delay`) when pending again.
    async fn finish_claim(
        &self,
        id: &str,
        attempt: u32,
        mut apply: impl FnMut(&mut TaskDoc, OffsetDateTime),
    ) -> StorageResult<TaskReceipt> {
        let (receipt, written) = self
            .transition(id, |doc, _, now| {
                check_claim(id, doc.as_ref(), attempt)?;
                let mut next = doc.ok_or_else(|| not_found(id))?;
                apply(&mut next, now);
                Ok(Step::Write(Box::new(next.clone()), receipt(&next.task)))
            })
            .await?;
        if let Some(doc) = written {
            if doc.task.status == TaskStatus::Claimed {
                return Ok(receipt);
            }
            if doc.task.status == TaskStatus::Pending {
                // Pending again: a fresh message makes it deliverable at once (a
                // negative acknowledgement is redelivered only after a short lag, and a
                // claim made by id may have left its message delayed). If this publish
                // fails, the old message still comes back at the end of the lease.
                let msg_id = format!("{id}/{}/again", doc.claims);
                if let Err(error) = self.publish_work(&doc, &msg_id).await {
                    tracing::warn!(%error, task_id = id, "task pending again; its old message will bring it back");
                    return Ok(receipt);
                }
            }
            // The message of the claim that just ended has done its job.
            if let Some(reply) = &doc.delivery {
                self.answer(reply, Answer::Ack).await;
            }
        }
        Ok(receipt)
    }
}

#[async_trait]
impl TaskStore for NatsStorage {
    async fn submit_task(&self, new: NewTask) -> StorageResult<Submitted> {
        new.validate()?;
        let mut task_id = uuid::Uuid::now_v7().to_string();
        // Whether this call made the key's entry (then it is the one fresh submission;
        // every other submission with the key answers `duplicate`).
        let mut first = true;
        if let Some(key) = &new.idempotency_key {
            let dedupe = Names::task_key(&new.queue, key);
            loop {
                let current = read(&self.inner.tasks, &dedupe).await?;
                if let Some(value) = &current.value {
                    task_id = String::from_utf8_lossy(value).into_owned();
                    first = false;
                    break;
                }
                let id = bytes::Bytes::from(task_id.clone().into_bytes());
                if write(&self.inner.tasks, &dedupe, id, current.revision)
                    .await?
                    .is_some()
                {
                    break;
                }
            }
            if !first {
                if let (_, Some(doc)) = self.read_task(&task_id).await? {
                    return duplicate_of(doc, &new.task_type, &new.payload, key);
                }
                // The key's first submission has not written its task yet (or died
                // before): finish it here under the same id; the message id and the
                // create-only write make the two submissions one.
            }
        }
        let now = self.now();
        let mut doc = TaskDoc {
            task: Task {
                task_id: task_id.clone(),
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
                available_at: new.delay.map_or(now, |d| after(now, d)),
                finished_at: None,
            },
            claims: 0,
            ix: None,
            delivery: None,
        };
        // The message first: once it is stored the task will be delivered, even if we
        // die before writing the entry (the claimer writes it from the message).
        self.publish_work(&doc, &task_id).await?;
        // A new id has no entry: write against revision 0 without reading first.
        let nothing = Current {
            revision: 0,
            value: None,
        };
        let written = self.write_task(&nothing, None, &mut doc).await?;
        if !written {
            // Another submission with the key, or a claimer, wrote it first.
            if let (_, Some(found)) = self.read_task(&task_id).await? {
                if let Some(key) = &doc.task.idempotency_key {
                    return duplicate_of(found, &doc.task.task_type, &doc.task.payload, key);
                }
                doc = found;
            }
        }
        Ok(Submitted {
            task: doc.task,
            duplicate: !first,
        })
    }

    async fn claim_task(
        &self,
        task_id: &str,
        worker_id: &str,
        lease: Duration,
    ) -> StorageResult<Option<Task>> {
        validate::duration("lease", lease)?;
        validate::name("worker_id", worker_id)?;
        let ((), written) = self
            .transition(task_id, |doc, _, now| {
                let Some(mut next) = doc else {
                    return Ok(Step::Done(()));
                };
                let expired = expire(&mut next, now);
                if claimable(&mut next, now).is_ok() {
                    claim(&mut next, worker_id, lease, now);
                    // This claim came without a message: the message (still in the
                    // stream) is answered when it is next delivered.
                    next.delivery = None;
                    Ok(Step::Write(Box::new(next), ()))
                } else if expired {
                    // Expired at its last attempt: store that it failed.
                    Ok(Step::Write(Box::new(next), ()))
                } else {
                    Ok(Step::Done(()))
                }
            })
            .await?;
        Ok(written
            .filter(|d| d.task.status == TaskStatus::Claimed)
            .map(|d| d.task))
    }

    async fn claim_next_task(
        &self,
        queue: &str,
        worker_id: &str,
        lease: Duration,
    ) -> StorageResult<Option<Task>> {
        validate::duration("lease", lease)?;
        validate::name("queue", queue)?;
        validate::name("worker_id", worker_id)?;
        let (consumer, fetching) = self.consumer(queue).await?;
        for _ in 0..CLAIM_SCAN {
            let Some(message) = fetch_one(&consumer, &fetching).await? else {
                return Ok(None);
            };
            let Some(reply) = message.reply.as_ref().map(ToString::to_string) else {
                continue;
            };
            let submitted: TaskDoc = match serde_json::from_slice(&message.payload) {
                Ok(doc) => doc,
                Err(error) => {
                    tracing::warn!(%error, subject = %message.subject, "unreadable work message dropped");
                    self.answer(&reply, Answer::Ack).await;
                    continue;
                }
            };
            match self
                .claim_delivered(submitted, worker_id, lease, &reply)
                .await?
            {
                Ok(task) => {
                    // Deliver it again when the lease ends: a dead worker's task comes
                    // back by itself.
                    let wait = task
                        .lease
                        .as_ref()
                        .map_or(lease, |l| until(self.now(), l.expires_at));
                    self.answer(&reply, Answer::Nak(wait)).await;
                    return Ok(Some(task));
                }
                Err(answer) => self.answer(&reply, answer).await,
            }
        }
        Ok(None)
    }

    async fn complete_task(
        &self,
        task_id: &str,
        attempt: u32,
        result: Value,
    ) -> StorageResult<TaskReceipt> {
        self.finish_claim(task_id, attempt, |doc, now| {
            let task = &mut doc.task;
            finish_attempt(task, now, "completed", None);
            task.status = TaskStatus::Completed;
            task.result = Some(result.clone());
            task.error = None;
            task.lease = None;
            task.finished_at = Some(now);
            task.updated_at = now;
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
        self.finish_claim(task_id, attempt, |doc, now| {
            let task = &mut doc.task;
            finish_attempt(task, now, "failed", Some(error));
            task.error = Some(error.to_owned());
            task.lease = None;
            task.updated_at = now;
            if task.attempts >= task.max_attempts {
                task.status = TaskStatus::Failed;
                task.finished_at = Some(now);
            } else {
                task.status = TaskStatus::Pending;
                task.available_at = after(now, retry_after);
            }
        })
        .await
    }

    async fn renew_task_lease(
        &self,
        task_id: &str,
        attempt: u32,
        lease: Duration,
    ) -> StorageResult<TaskReceipt> {
        validate::duration("lease", lease)?;
        self.finish_claim(task_id, attempt, |doc, now| {
            if let Some(l) = doc.task.lease.as_mut() {
                l.expires_at = after(now, lease);
            }
            doc.task.updated_at = now;
        })
        .await
    }

    async fn release_task(&self, task_id: &str, attempt: u32) -> StorageResult<TaskReceipt> {
        self.finish_claim(task_id, attempt, |doc, now| {
            let task = &mut doc.task;
            finish_attempt(task, now, "released", None);
            task.status = TaskStatus::Pending;
            task.attempts = task.attempts.saturating_sub(1);
            task.lease = None;
            task.available_at = now;
            task.updated_at = now;
        })
        .await
    }

    async fn retry_task(&self, task_id: &str) -> StorageResult<TaskReceipt> {
        let (_, doc) = self.read_task(task_id).await?;
        let doc = doc.ok_or_else(|| not_found(task_id))?;
        if doc.task.status == TaskStatus::Failed {
            // Its message left the stream when it failed: a new one first (a hint; if
            // the retry below loses a race, the claimer drops it).
            self.publish_work(&doc, &format!("{task_id}/retry/{}", doc.claims))
                .await?;
        }
        let (receipt, _) = self
            .transition(task_id, |doc, _, now| {
                let mut next = doc.ok_or_else(|| not_found(task_id))?;
                if next.task.status != TaskStatus::Failed {
                    return Err(StorageError::InvalidState {
                        kind: KIND,
                        id: task_id.to_owned(),
                        state: next.task.status.as_str().to_owned(),
                        action: "retry",
                    });
                }
                let task = &mut next.task;
                task.status = TaskStatus::Pending;
                task.attempts = 0;
                task.available_at = now;
                task.finished_at = None;
                task.updated_at = now;
                next.delivery = None;
                let r = receipt(&next.task);
                Ok(Step::Write(Box::new(next), r))
            })
            .await?;
        Ok(receipt)
    }

    async fn get_task(&self, task_id: &str) -> StorageResult<Option<Task>> {
        Ok(self.read_task(task_id).await?.1.map(|d| d.task))
    }

    async fn get_task_by_key(&self, queue: &str, key: &str) -> StorageResult<Option<Task>> {
        let current = read(&self.inner.tasks, &Names::task_key(queue, key)).await?;
        let Some(value) = current.value else {
            return Ok(None);
        };
        let id = String::from_utf8_lossy(&value).into_owned();
        Ok(self
            .get_task(&id)
            .await?
            .filter(|t| t.queue == queue && t.idempotency_key.as_deref() == Some(key)))
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> StorageResult<Vec<Task>> {
        let status = filter.status.map_or("*", TaskStatus::as_str);
        let subject = match &filter.queue {
            Some(queue) => self.inner.names.index(&["t", status, &enc(queue), ">"]),
            None => self.inner.names.index(&["t", status, ">"]),
        };
        let ids = self.indexed_ids(&subject).await?;
        let limit = if filter.limit == 0 { 100 } else { filter.limit };
        let mut skipped = 0;
        let mut out = Vec::new();
        for id in ids {
            let Some(task) = self.get_task(&id).await? else {
                continue;
            };
            let matches = filter.status.is_none_or(|s| s == task.status)
                && filter.queue.as_ref().is_none_or(|q| *q == task.queue);
            if !matches {
                continue;
            }
            if skipped < filter.offset {
                skipped += 1;
                continue;
            }
            out.push(task);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    async fn delete_task(&self, task_id: &str) -> StorageResult<bool> {
        loop {
            let (current, doc) = self.read_task(task_id).await?;
            let Some(doc) = doc else {
                return Ok(false);
            };
            if !remove(&self.inner.tasks, &Names::task(task_id), current.revision).await? {
                continue;
            }
            let dedupe = (doc.task.idempotency_key.as_ref())
                .map(|key| Names::task_key(&doc.task.queue, key));
            forget(
                &self.inner.tasks,
                &self.inner.index,
                doc.ix,
                dedupe,
                task_id,
            )
            .await?;
            if let Some(reply) = &doc.delivery {
                self.answer(reply, Answer::Ack).await;
            }
            return Ok(true);
        }
    }

    async fn requeue_expired_tasks(&self, limit: usize) -> StorageResult<Sweep> {
        let mut sweep = Sweep::default();
        let subject = self.inner.names.index(&["t", "claimed", ">"]);
        for id in self.indexed_ids(&subject).await? {
            let full = sweep.done as usize >= limit;
            let found = self
                .transition(&id, |doc, _, now| {
                    let Some(mut next) = doc else {
                        return Ok(Step::Done(false));
                    };
                    if !expire(&mut next, now) {
                        Ok(Step::Done(false))
                    } else if full {
                        // One more is due: say so, leave it to the next batch.
                        Ok(Step::Done(true))
                    } else {
                        Ok(Step::Write(Box::new(next), true))
                    }
                })
                .await;
            match found {
                Ok((true, _)) if full => {
                    sweep.more = true;
                    break;
                }
                Ok((true, _)) => sweep.done += 1,
                Ok((false, _)) => {}
                Err(StorageError::Corrupt { key, .. }) => sweep.corrupt.push(key),
                Err(e) => return Err(e),
            }
        }
        Ok(sweep)
    }

    async fn purge_tasks(&self, older_than: Duration, limit: usize) -> StorageResult<Sweep> {
        let mut sweep = Sweep::default();
        let cutoff =
            self.now() - time::Duration::try_from(older_than).unwrap_or(time::Duration::ZERO);
        let mut ids = Vec::new();
        for status in ["completed", "failed"] {
            let subject = self.inner.names.index(&["t", status, ">"]);
            ids.extend(self.indexed_ids(&subject).await?);
        }
        ids.sort();
        ids.dedup();
        for id in ids {
            // Ids are UUIDv7: one made after the cutoff cannot have finished before it.
            if created_after(&id, cutoff) {
                continue;
            }
            let doc = match self.read_task(&id).await {
                Ok((_, doc)) => doc,
                Err(StorageError::Corrupt { key, .. }) => {
                    sweep.corrupt.push(key);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let Some(doc) = doc else { continue };
            let due = matches!(doc.task.status, TaskStatus::Completed | TaskStatus::Failed)
                && doc.task.finished_at.is_some_and(|at| at <= cutoff);
            if !due {
                continue;
            }
            if sweep.done as usize >= limit {
                sweep.more = true;
                break;
            }
            if self.delete_task(&id).await? {
                sweep.done += 1;
            }
        }
        Ok(sweep)
    }

    async fn fail_task_permanently(
        &self,
        task_id: &str,
        attempt: u32,
        error: &str,
    ) -> StorageResult<TaskReceipt> {
        self.finish_claim(task_id, attempt, |doc, now| {
            let task = &mut doc.task;
            finish_attempt(task, now, "failed", Some(error));
            task.status = TaskStatus::Failed;
            task.error = Some(error.to_owned());
            task.lease = None;
            task.finished_at = Some(now);
            task.updated_at = now;
        })
        .await
    }
}

impl NatsStorage {
    /// The task ids of the index entries under `subject`, oldest first, each once.
    async fn indexed_ids(&self, subject: &str) -> StorageResult<Vec<String>> {
        let mut ids: Vec<String> = index_subjects(&self.inner.index, subject)
            .await?
            .into_iter()
            .filter_map(|(s, _)| {
                // {prefix}.ix.t.{status}.{queue}.{id}.{nonce}
                s.split('.').nth(5).map(dec)
            })
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }
}

/// Whether the UUIDv7 `id` was made after `cutoff` (`false` for other ids).
fn created_after(id: &str, cutoff: OffsetDateTime) -> bool {
    let Ok(uuid) = uuid::Uuid::parse_str(id) else {
        return false;
    };
    let Some(ts) = uuid.get_timestamp() else {
        return false;
    };
    let (secs, nanos) = ts.to_unix();
    let made = OffsetDateTime::from_unix_timestamp(secs as i64)
        .map(|t| t + time::Duration::nanoseconds(i64::from(nanos)));
    made.is_ok_and(|t| t > cutoff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_decode_back() {
        for s in ["order-1", "a.b c", "x=y", "018f-ab"] {
            assert_eq!(dec(&enc(s)), s);
        }
    }
}
