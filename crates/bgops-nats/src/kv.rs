//! The compare-and-set primitives every state change goes through, and the index
//! stream's three operations.
//!
//! A KV entry is read with its revision (the stream sequence of its last message; 0 when
//! the key never existed). Every write is an `update` that carries the expected revision
//! (`Nats-Expected-Last-Subject-Sequence`), so it lands only if nobody wrote the key in
//! between; creating is the same write with the revision of "nothing" (0, or the purge
//! marker a removed key left). Callers loop: read, decide, write; on a conflict, read
//! again.

use async_nats::jetstream::kv::{self, Operation, UpdateErrorKind};
use async_nats::jetstream::stream::Stream;
use bgops_storage::StorageResult;
use bytes::Bytes;
use futures::TryStreamExt;

use crate::error::driver;

/// A key's current state.
#[derive(Debug, Clone)]
pub(crate) struct Current {
    /// The revision to expect when writing next (0: the key never existed).
    pub revision: u64,
    /// The value; `None` when the key is absent (never written, or removed).
    pub value: Option<Bytes>,
}

/// Reads `key` with its revision.
pub(crate) async fn read(store: &kv::Store, key: &str) -> StorageResult<Current> {
    match store.entry(key).await {
        Ok(Some(entry)) => Ok(Current {
            revision: entry.revision,
            value: match entry.operation {
                Operation::Put => Some(entry.value),
                Operation::Delete | Operation::Purge => None,
            },
        }),
        Ok(None) => Ok(Current {
            revision: 0,
            value: None,
        }),
        Err(e) => Err(driver("kv read", e)),
    }
}

/// Writes `value` under `key` if its revision is still `expected`; the new revision, or
/// `None` on a conflict (someone wrote it in between).
pub(crate) async fn write(
    store: &kv::Store,
    key: &str,
    value: Bytes,
    expected: u64,
) -> StorageResult<Option<u64>> {
    match store.update(key, value, expected).await {
        Ok(revision) => Ok(Some(revision)),
        Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(None),
        Err(e) => Err(driver("kv update", e)),
    }
}

/// Removes `key` (a purge marker replaces its history) if its revision is still
/// `expected`; `false` on a conflict.
pub(crate) async fn remove(store: &kv::Store, key: &str, expected: u64) -> StorageResult<bool> {
    match store.purge_expect_revision(key, Some(expected)).await {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(false),
        Err(e) => Err(driver("kv purge", e)),
    }
}

/// Adds an index entry (an empty message on `subject`); its stream sequence.
pub(crate) async fn index_put(
    js: &async_nats::jetstream::Context,
    subject: String,
    payload: Bytes,
) -> StorageResult<u64> {
    let ack = js
        .publish(subject, payload)
        .await
        .map_err(|e| driver("index publish", e))?
        .await
        .map_err(|e| driver("index ack", e))?;
    Ok(ack.sequence)
}

/// Removes the index entry at `seq`; an entry already gone is fine.
pub(crate) async fn index_drop(index: &Stream, seq: u64) -> StorageResult<()> {
    match index.delete_message(seq).await {
        Ok(_) => Ok(()),
        Err(e) => {
            let text = format!("{e:?}");
            // 10057: no message found (already deleted or replaced).
            if text.contains("10057") || text.contains("no message found") {
                Ok(())
            } else {
                Err(driver("index delete", e))
            }
        }
    }
}

/// The subjects of the index entries matching `filter`, with their message counts.
pub(crate) async fn index_subjects(
    index: &Stream,
    filter: &str,
) -> StorageResult<Vec<(String, usize)>> {
    let info = index
        .info_with_subjects(filter)
        .await
        .map_err(|e| driver("index list", e))?;
    info.try_collect::<Vec<_>>()
        .await
        .map_err(|e| driver("index list", e))
}

/// What is left once a task's or saga's entry was removed: its index entry (an entry
/// already gone is fine) and its dedupe key, which is removed only while it still names
/// this `id` (a newer entry may have taken the key since).
pub(crate) async fn forget(
    store: &kv::Store,
    index: &Stream,
    ix: Option<u64>,
    dedupe: Option<String>,
    id: &str,
) -> StorageResult<()> {
    if let Some(seq) = ix {
        let _ = index_drop(index, seq).await;
    }
    if let Some(dedupe) = dedupe {
        let current = read(store, &dedupe).await?;
        if current.value.as_deref() == Some(id.as_bytes()) {
            let _ = remove(store, &dedupe, current.revision).await?;
        }
    }
    Ok(())
}
