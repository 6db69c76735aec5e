//! [`NatsStorage`]: the handle, health and stats.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{Context, kv, stream::Stream};
use async_trait::async_trait;
use bgops_core::SharedClock;
use bgops_storage::{HealthReport, Storage, StorageError, StorageResult, StorageStats};
use futures::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use crate::config::NatsStorageBuilder;
use crate::error::{BACKEND, corrupt, driver};
use crate::keys::Names;
use crate::kv::index_subjects;

/// The shared state behind every clone of a [`NatsStorage`].
pub(crate) struct Inner {
    pub(crate) client: async_nats::Client,
    pub(crate) js: Context,
    pub(crate) idem: kv::Store,
    pub(crate) tasks: kv::Store,
    pub(crate) sagas: kv::Store,
    pub(crate) locks: kv::Store,
    pub(crate) index: Stream,
    pub(crate) work: Stream,
    pub(crate) names: Names,
    pub(crate) clock: SharedClock,
    pub(crate) ack_wait: Duration,
    /// One durable pull consumer per queue, made on first use.
    pub(crate) consumers:
        tokio::sync::Mutex<HashMap<String, (PullConsumer, crate::task::FetchLock)>>,
}

/// The NATS JetStream backend: idempotency records, fenced locks, sagas and the task
/// queue in KV buckets, changed only by compare-and-set on the entry revision, with a
/// work-queue stream for task delivery and an index stream for look-ups (layout in
/// `docs/nats-schema.md`). Cheap to clone (one shared connection).
#[derive(Clone)]
pub struct NatsStorage {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for NatsStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsStorage")
            .field("prefix", &self.inner.names.prefix())
            .finish_non_exhaustive()
    }
}

impl NatsStorage {
    /// Settings for a server at `url` (`nats://127.0.0.1:4222`).
    pub fn builder(url: impl Into<String>) -> NatsStorageBuilder {
        NatsStorageBuilder::new(url)
    }

    /// Connects to `url` with the default settings.
    ///
    /// # Errors
    /// As [`NatsStorageBuilder::build`].
    pub async fn connect(url: impl Into<String>) -> StorageResult<Self> {
        Self::builder(url).build().await
    }

    pub(crate) fn from_inner(inner: Inner) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The prefix of every bucket, stream and subject of this store.
    pub fn prefix(&self) -> &str {
        self.inner.names.prefix()
    }

    /// Deletes every bucket and stream of this store (all its data). For tests and
    /// teardown; other handles on the same prefix fail afterwards.
    ///
    /// # Errors
    /// `Unavailable` when the server does not answer.
    pub async fn destroy(&self) -> StorageResult<()> {
        let names = &self.inner.names;
        for kind in ["idem", "tasks", "sagas", "locks"] {
            // A bucket already gone is fine.
            let _ = self.inner.js.delete_key_value(names.bucket(kind)).await;
        }
        for stream in [names.index_stream(), names.work_stream()] {
            let _ = self.inner.js.delete_stream(stream).await;
        }
        self.inner.consumers.lock().await.clear();
        self.inner
            .client
            .flush()
            .await
            .map_err(|e| driver("flush", e))
    }

    /// Messages this store's connection has sent so far (requests, publishes and
    /// acknowledgements): a delta divided by the operations in between gives the
    /// messages per operation (each request is one round trip; acknowledgements are sent
    /// without waiting).
    pub fn messages_sent(&self) -> u64 {
        self.inner
            .client
            .statistics()
            .out_messages
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Times this store's connection was (re)established: 1 until a reconnect.
    pub fn connects(&self) -> u64 {
        self.inner
            .client
            .statistics()
            .connects
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The store's "now" (see `docs/nats-schema.md`, "Time").
    pub(crate) fn now(&self) -> OffsetDateTime {
        self.inner.clock.now()
    }

    /// Counts the distinct ids of index entries `{prefix}.ix.{kind}.{status}.…`, by status.
    async fn count_by_status(&self, kind: &str) -> StorageResult<BTreeMap<String, u64>> {
        let filter = self.inner.names.index(&[kind, ">"]);
        let mut ids: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (subject, _) in index_subjects(&self.inner.index, &filter).await? {
            // {prefix}.ix.{kind}.{status}.{scope}.{id}.{nonce}
            let parts: Vec<&str> = subject.split('.').collect();
            if let (Some(status), Some(id)) = (parts.get(3), parts.get(5)) {
                ids.entry((*status).to_owned())
                    .or_default()
                    .insert((*id).to_owned());
            }
        }
        Ok(ids
            .into_iter()
            .map(|(status, ids)| (status, ids.len() as u64))
            .collect())
    }
}

/// Encodes a stored document.
pub(crate) fn to_json<T: Serialize>(value: &T) -> StorageResult<bytes::Bytes> {
    serde_json::to_vec(value)
        .map(bytes::Bytes::from)
        .map_err(StorageError::Serialization)
}

/// Decodes a stored document found under `key`.
pub(crate) fn from_json<T: DeserializeOwned>(key: &str, value: &[u8]) -> StorageResult<T> {
    serde_json::from_slice(value).map_err(|e| corrupt(key, e))
}

/// `now + d`, saturating at the far future.
pub(crate) fn after(now: OffsetDateTime, d: Duration) -> OffsetDateTime {
    time::Duration::try_from(d)
        .ok()
        .and_then(|d| now.checked_add(d))
        .unwrap_or(now)
}

/// How long from `now` until `at` (zero when past).
pub(crate) fn until(now: OffsetDateTime, at: OffsetDateTime) -> Duration {
    Duration::try_from(at - now).unwrap_or(Duration::ZERO)
}

/// A fresh token for index entry subjects (so two entries never share a subject).
pub(crate) fn nonce() -> String {
    let mut buf = uuid::Uuid::encode_buffer();
    uuid::Uuid::new_v4()
        .simple()
        .encode_lower(&mut buf)
        .to_owned()
}

#[async_trait]
impl Storage for NatsStorage {
    fn backend_name(&self) -> &'static str {
        BACKEND
    }

    async fn health(&self) -> StorageResult<HealthReport> {
        let started = Instant::now();
        let answer = self.inner.index.get_info().await;
        let latency = started.elapsed();
        let info = self.inner.client.server_info();
        let mut details = BTreeMap::new();
        details.insert("server_version".to_owned(), info.version.clone());
        details.insert("server_name".to_owned(), info.server_name.clone());
        details.insert("prefix".to_owned(), self.prefix().to_owned());
        details.insert(
            "connection".to_owned(),
            format!("{:?}", self.inner.client.connection_state()),
        );
        match answer {
            Ok(index) => {
                details.insert("index_entries".to_owned(), index.state.messages.to_string());
                Ok(HealthReport {
                    backend: BACKEND,
                    healthy: true,
                    latency,
                    details,
                })
            }
            Err(e) => {
                details.insert("error".to_owned(), e.to_string());
                Ok(HealthReport {
                    backend: BACKEND,
                    healthy: false,
                    latency,
                    details,
                })
            }
        }
    }

    async fn stats(&self) -> StorageResult<StorageStats> {
        let idem_filter = self.inner.names.index(&["i", ">"]);
        let idempotency_records = index_subjects(&self.inner.index, &idem_filter)
            .await?
            .iter()
            .map(|(_, n)| *n as u64)
            .sum();
        let now = self.now();
        let mut locks = 0;
        let mut keys = self
            .inner
            .locks
            .keys()
            .await
            .map_err(|e| driver("lock keys", e))?;
        let mut names = Vec::new();
        while let Some(key) = keys.next().await {
            names.push(key.map_err(|e| driver("lock keys", e))?);
        }
        for key in names {
            if let Some(lock) = crate::lock::read_lock(self, &key).await?.1 {
                if lock.held_at(now) {
                    locks += 1;
                }
            }
        }
        Ok(StorageStats {
            backend: BACKEND,
            idempotency_records,
            sagas_by_status: self.count_by_status("s").await?,
            tasks_by_status: self.count_by_status("t").await?,
            locks,
        })
    }
}
