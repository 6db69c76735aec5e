//! Idempotency records: one KV entry per (tenant, key), changed only by compare-and-set
//! on its revision; an expiry index (one subject per minute of expiry) lets
//! `purge_expired` visit only records that may be due.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bgops_core::{IdempotencyRecord, OperationOutcome, OperationStatus};
use bgops_storage::{
    BeginOutcome, BeginRequest, Claimed, Completed, IdempotencyStore, StorageResult, Sweep,
    record_lease_lost, record_not_found, validate_address,
};
use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::{corrupt, driver};
use crate::keys::Names;
use crate::kv::{Current, index_drop, index_put, index_subjects, read, remove, write};
use crate::storage::{NatsStorage, after};

/// What is stored: the record (its payload travels beside the JSON as raw bytes) and
/// the token of the claim.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RecordDoc {
    #[serde(flatten)]
    record: IdempotencyRecord,
    token: String,
}

/// Encodes a record: 4-byte big-endian JSON length, the JSON, then the payload bytes
/// as they are (no base64).
fn encode(doc: &RecordDoc) -> StorageResult<Bytes> {
    let json = serde_json::to_vec(doc).map_err(bgops_storage::StorageError::Serialization)?;
    let payload = doc.record.payload.as_deref().unwrap_or_default();
    let mut out = BytesMut::with_capacity(5 + json.len() + payload.len());
    out.put_u32(json.len() as u32);
    out.put_slice(&json);
    // A marker byte tells "no payload" from "empty payload".
    out.put_u8(u8::from(doc.record.payload.is_some()));
    out.put_slice(payload);
    Ok(out.freeze())
}

fn decode(key: &str, value: &Bytes) -> StorageResult<RecordDoc> {
    let bad = |why: &str| corrupt(key, why);
    if value.len() < 5 {
        return Err(bad("shorter than its header"));
    }
    let len = u32::from_be_bytes([value[0], value[1], value[2], value[3]]) as usize;
    let json_end = 4 + len;
    if value.len() < json_end + 1 {
        return Err(bad("shorter than its JSON length"));
    }
    let mut doc: RecordDoc =
        serde_json::from_slice(&value[4..json_end]).map_err(|e| corrupt(key, e))?;
    if value[json_end] == 1 {
        doc.record.payload = Some(value.slice(json_end + 1..));
    }
    Ok(doc)
}

/// The minute bucket of an expiry time (a token of the expiry index subject).
fn minute(at: OffsetDateTime) -> String {
    format!("{:012}", at.unix_timestamp().max(0) / 60)
}

impl NatsStorage {
    async fn read_record(&self, key: &str) -> StorageResult<(Current, Option<RecordDoc>)> {
        let current = read(&self.inner.idem, key).await?;
        let doc = match &current.value {
            Some(value) => Some(decode(key, value)?),
            None => None,
        };
        Ok((current, doc))
    }

    /// Adds the expiry index entry of the record under `key` expiring at `expires_at`.
    async fn index_expiry(&self, key: &str, expires_at: OffsetDateTime) -> StorageResult<u64> {
        let subject = self.inner.names.index(&["i", &minute(expires_at)]);
        index_put(
            &self.inner.js,
            subject,
            Bytes::copy_from_slice(key.as_bytes()),
        )
        .await
    }

    /// Removes the purge marker a removed record left (everything on its subject up to
    /// and including `marker`), so removed keys take no space; a record written after the
    /// marker has a higher sequence and stays.
    async fn drop_marker(&self, key: &str) {
        let store = &self.inner.idem;
        let Ok(current) = read(store, key).await else {
            return;
        };
        if current.value.is_some() || current.revision == 0 {
            return;
        }
        let subject = format!("{}{key}", store.prefix);
        if let Err(error) = store
            .stream
            .purge()
            .filter(subject)
            .sequence(current.revision + 1)
            .await
        {
            tracing::debug!(%error, key, "could not drop a purge marker; it stays");
        }
    }
}

fn claimed(doc: &RecordDoc) -> Claimed {
    Claimed {
        token: doc.token.clone(),
        created_at: doc.record.created_at,
        expires_at: doc.record.expires_at,
        lease_expires_at: doc.record.lease_expires_at.unwrap_or(doc.record.expires_at),
    }
}

#[async_trait]
impl IdempotencyStore for NatsStorage {
    async fn begin(&self, request: BeginRequest) -> StorageResult<BeginOutcome> {
        request.validate()?;
        let key = Names::record(&request.tenant_id, &request.key);
        let mut indexed: Option<OffsetDateTime> = None;
        loop {
            let (current, doc) = self.read_record(&key).await?;
            let now = self.now();
            let next = match doc {
                Some(doc) if now < doc.record.expires_at => {
                    let record = &doc.record;
                    if let (Some(want), Some(have)) = (&request.fingerprint, &record.fingerprint) {
                        if want != have {
                            return Ok(BeginOutcome::Mismatch);
                        }
                    }
                    if record.status.is_terminal() {
                        return Ok(BeginOutcome::Completed(Arc::new(doc.record)));
                    }
                    if doc.token == request.token {
                        return Ok(BeginOutcome::Started(claimed(&doc)));
                    }
                    let lease_expires_at = record.lease_expires_at.unwrap_or(record.expires_at);
                    if lease_expires_at > now {
                        return Ok(BeginOutcome::InProgress { lease_expires_at });
                    }
                    // The holder's lease ran out: take over with the new token (the old
                    // one is fenced out); the record keeps its creation and expiry.
                    let mut doc = doc;
                    doc.token.clone_from(&request.token);
                    doc.record.lease_expires_at = Some(after(now, request.lease));
                    doc
                }
                _ => {
                    let expires_at = after(now, request.ttl);
                    // The index entry goes first: a record never exists without one (an
                    // entry without its record is dropped by the next purge).
                    if indexed.is_none_or(|at| minute(at) != minute(expires_at)) {
                        self.index_expiry(&key, expires_at).await?;
                        indexed = Some(expires_at);
                    }
                    RecordDoc {
                        record: IdempotencyRecord {
                            key: request.key.clone(),
                            tenant_id: request.tenant_id.clone(),
                            user_id: request.user_id.clone(),
                            operation_type: request.operation_type.clone(),
                            created_at: now,
                            expires_at,
                            status: OperationStatus::InProgress,
                            result: None,
                            error: None,
                            parameters: request.parameters.clone(),
                            fingerprint: request.fingerprint.clone(),
                            lease_expires_at: Some(after(now, request.lease)),
                            completed_at: None,
                            payload: None,
                        },
                        token: request.token.clone(),
                    }
                }
            };
            if write(&self.inner.idem, &key, encode(&next)?, current.revision)
                .await?
                .is_some()
            {
                return Ok(BeginOutcome::Started(claimed(&next)));
            }
        }
    }

    async fn complete(
        &self,
        tenant_id: &str,
        key: &str,
        token: &str,
        outcome: OperationOutcome,
    ) -> StorageResult<Completed> {
        validate_address(tenant_id, key)?;
        let address = Names::record(tenant_id, key);
        loop {
            let (current, doc) = self.read_record(&address).await?;
            let now = self.now();
            let Some(mut doc) = doc.filter(|d| now < d.record.expires_at) else {
                return Err(record_not_found(tenant_id, key));
            };
            if doc.token != token {
                return Err(record_lease_lost(tenant_id, key));
            }
            if doc.record.status.is_terminal() {
                // A repeated complete by the completing token: the first receipt.
                return Ok(Completed {
                    completed_at: doc.record.completed_at.unwrap_or(now),
                    expires_at: doc.record.expires_at,
                });
            }
            doc.record.status = outcome.status();
            doc.record.result.clone_from(&outcome.result);
            doc.record.error.clone_from(&outcome.error);
            doc.record.payload.clone_from(&outcome.payload);
            doc.record.completed_at = Some(now);
            doc.record.lease_expires_at = None;
            if write(&self.inner.idem, &address, encode(&doc)?, current.revision)
                .await?
                .is_some()
            {
                return Ok(Completed {
                    completed_at: now,
                    expires_at: doc.record.expires_at,
                });
            }
        }
    }

    async fn release(&self, tenant_id: &str, key: &str, token: &str) -> StorageResult<()> {
        validate_address(tenant_id, key)?;
        let address = Names::record(tenant_id, key);
        loop {
            let (current, doc) = self.read_record(&address).await?;
            let now = self.now();
            let Some(doc) = doc.filter(|d| now < d.record.expires_at) else {
                return Err(record_not_found(tenant_id, key));
            };
            if doc.token != token || doc.record.status.is_terminal() {
                return Err(record_lease_lost(tenant_id, key));
            }
            if remove(&self.inner.idem, &address, current.revision).await? {
                self.drop_marker(&address).await;
                return Ok(());
            }
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
        let address = Names::record(tenant_id, key);
        loop {
            let (current, doc) = self.read_record(&address).await?;
            let now = self.now();
            let Some(mut doc) = doc.filter(|d| now < d.record.expires_at) else {
                return Err(record_not_found(tenant_id, key));
            };
            if doc.token != token || doc.record.status.is_terminal() {
                return Err(record_lease_lost(tenant_id, key));
            }
            let until = after(now, lease).min(doc.record.expires_at);
            doc.record.lease_expires_at = Some(until);
            if write(&self.inner.idem, &address, encode(&doc)?, current.revision)
                .await?
                .is_some()
            {
                return Ok(until);
            }
        }
    }

    async fn get_idempotency(
        &self,
        tenant_id: &str,
        key: &str,
    ) -> StorageResult<Option<Arc<IdempotencyRecord>>> {
        validate_address(tenant_id, key)?;
        let (_, doc) = self.read_record(&Names::record(tenant_id, key)).await?;
        let now = self.now();
        Ok(doc
            .filter(|d| now < d.record.expires_at)
            .map(|d| Arc::new(d.record)))
    }

    async fn delete_idempotency(&self, tenant_id: &str, key: &str) -> StorageResult<bool> {
        validate_address(tenant_id, key)?;
        let address = Names::record(tenant_id, key);
        loop {
            let current = read(&self.inner.idem, &address).await?;
            if current.value.is_none() {
                return Ok(false);
            }
            if remove(&self.inner.idem, &address, current.revision).await? {
                self.drop_marker(&address).await;
                return Ok(true);
            }
        }
    }

    async fn purge_expired(&self, limit: usize) -> StorageResult<Sweep> {
        let mut sweep = Sweep::default();
        if limit == 0 {
            return Ok(sweep);
        }
        let now = self.now();
        let due_minute = minute(now);
        let filter = self.inner.names.index(&["i", ">"]);
        let mut buckets: Vec<String> = index_subjects(&self.inner.index, &filter)
            .await?
            .into_iter()
            .map(|(subject, _)| subject)
            .filter(|subject| {
                subject
                    .rsplit('.')
                    .next()
                    .is_some_and(|m| m <= due_minute.as_str())
            })
            .collect();
        buckets.sort();
        for subject in buckets {
            let bucket_minute = subject.rsplit('.').next().unwrap_or_default().to_owned();
            let mut from = 0_u64;
            loop {
                let message = match self
                    .inner
                    .index
                    .direct_get_next_for_subject(subject.as_str(), Some(from))
                    .await
                {
                    Ok(message) => message,
                    Err(e)
                        if e.kind()
                            == async_nats::jetstream::stream::DirectGetErrorKind::NotFound =>
                    {
                        break;
                    }
                    Err(e) => return Err(driver("index read", e)),
                };
                from = message.sequence + 1;
                let Ok(address) = std::str::from_utf8(&message.payload) else {
                    index_drop(&self.inner.index, message.sequence).await?;
                    continue;
                };
                let (current, doc) = match self.read_record(address).await {
                    Ok(found) => found,
                    Err(bgops_storage::StorageError::Corrupt { key, .. }) => {
                        sweep.corrupt.push(key);
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let Some(doc) = doc else {
                    index_drop(&self.inner.index, message.sequence).await?;
                    continue;
                };
                if doc.record.expires_at > now {
                    // Not due yet; an entry of another minute is stale (the key was
                    // written again since) and goes.
                    if minute(doc.record.expires_at) != bucket_minute {
                        index_drop(&self.inner.index, message.sequence).await?;
                    }
                    continue;
                }
                if sweep.done as usize >= limit {
                    sweep.more = true;
                    return Ok(sweep);
                }
                if remove(&self.inner.idem, address, current.revision).await? {
                    self.drop_marker(address).await;
                    sweep.done += 1;
                    index_drop(&self.inner.index, message.sequence).await?;
                }
            }
        }
        Ok(sweep)
    }
}
