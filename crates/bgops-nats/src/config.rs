//! [`NatsStorageBuilder`]: the connection settings of a [`NatsStorage`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use bgops_core::{SharedClock, SystemClock};
use bgops_storage::{StorageError, StorageResult};

use crate::error::{self, BACKEND, driver};
use crate::keys::{Names, valid_prefix};
use crate::storage::{Inner, NatsStorage};

/// Settings of a [`NatsStorage`]. Credentials and TLS come through the URL
/// (`nats://user:pass@host:4222`, `tls://host:4222`).
#[derive(Debug, Clone)]
pub struct NatsStorageBuilder {
    url: String,
    prefix: String,
    request_timeout: Duration,
    connect_timeout: Duration,
    ack_wait: Duration,
    replicas: usize,
    memory: bool,
    clock: SharedClock,
}

impl NatsStorageBuilder {
    /// Settings for `url` with the defaults: prefix `bgops`, 5 s request and connect
    /// timeouts, 30 s ack wait, one replica, file storage, the system clock.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "bgops".to_owned(),
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            ack_wait: Duration::from_secs(30),
            replicas: 1,
            memory: false,
            clock: Arc::new(SystemClock),
        }
    }

    /// The first part of every bucket, stream and subject name (default `bgops`), so
    /// several applications can share one server: `[A-Za-z0-9_-]`, at most 64 bytes.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one request (a KV read or write, a publish acknowledgement) may take
    /// before it fails with `StorageError::Unavailable`.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long connecting may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a delivered work message may stay unanswered before JetStream delivers
    /// it again (a claimer that died between fetching and claiming). Claims answer their
    /// message at once, so this only bounds that window.
    pub fn ack_wait(mut self, ack_wait: Duration) -> Self {
        self.ack_wait = ack_wait;
        self
    }

    /// Replicas of every bucket and stream (a clustered JetStream; at most 5).
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas.clamp(1, 5);
        self
    }

    /// Keeps every bucket and stream in memory instead of files (tests, caches).
    pub fn memory_storage(mut self, memory: bool) -> Self {
        self.memory = memory;
        self
    }

    /// The clock leases and expiry are computed with (see `docs/nats-schema.md`, "Time").
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Connects, creates the buckets and streams that do not exist yet, and returns the
    /// store.
    ///
    /// # Errors
    /// `StorageError::Backend` for a bad prefix or URL, `StorageError::Unavailable` when
    /// the server cannot be reached within the connect timeout or JetStream does not
    /// answer.
    pub async fn build(self) -> StorageResult<NatsStorage> {
        if !valid_prefix(&self.prefix) {
            return Err(error::config(format!(
                "prefix {:?} must be 1-64 characters of [A-Za-z0-9_-]",
                self.prefix
            )));
        }
        let options = async_nats::ConnectOptions::new()
            .name("bgops")
            .connection_timeout(self.connect_timeout)
            .request_timeout(Some(self.request_timeout))
            // Reconnect forever in the background; calls made while disconnected fail
            // after their timeout and succeed again once the server is back.
            .max_reconnects(0);
        let client =
            match tokio::time::timeout(self.connect_timeout, options.connect(self.url.as_str()))
                .await
            {
                Ok(Ok(client)) => client,
                Ok(Err(e)) => return Err(driver("connect", e)),
                Err(_) => {
                    return Err(StorageError::Unavailable {
                        backend: BACKEND,
                        source: format!("could not connect within {:?}", self.connect_timeout)
                            .into(),
                    });
                }
            };
        let mut js = jetstream::new(client.clone());
        js.set_timeout(self.request_timeout);
        let names = Names::new(&self.prefix);
        let storage_type = if self.memory {
            stream::StorageType::Memory
        } else {
            stream::StorageType::File
        };
        // The bucket streams are made here rather than with `create_key_value`, which
        // first reads the account info, a reply that async-nats cannot parse from a
        // 2.9 server; the configuration is the one a KV bucket gets.
        let mut stores = Vec::with_capacity(4);
        for kind in ["idem", "tasks", "sagas", "locks"] {
            let bucket = names.bucket(kind);
            let config = stream::Config {
                name: format!("KV_{bucket}"),
                description: Some(format!("bgops {kind} ({})", self.prefix)),
                subjects: vec![format!("$KV.{bucket}.>")],
                max_messages_per_subject: 1,
                discard: stream::DiscardPolicy::New,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                duplicate_window: Duration::from_secs(120),
                storage: storage_type,
                num_replicas: self.replicas,
                ..Default::default()
            };
            create_stream(&js, &config, "create bucket").await?;
            let store = js
                .get_key_value(bucket)
                .await
                .map_err(|e| driver("open bucket", e))?;
            stores.push(store);
        }
        let index_config = stream::Config {
            name: names.index_stream(),
            subjects: vec![names.index_subjects()],
            storage: storage_type,
            num_replicas: self.replicas,
            allow_direct: true,
            ..Default::default()
        };
        let index = create_stream(&js, &index_config, "create index stream").await?;
        let work_config = stream::Config {
            name: names.work_stream(),
            subjects: vec![names.work_subjects()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: storage_type,
            num_replicas: self.replicas,
            ..Default::default()
        };
        let work = create_stream(&js, &work_config, "create work stream").await?;
        let mut stores = stores.into_iter();
        let (Some(idem), Some(tasks), Some(sagas), Some(locks)) =
            (stores.next(), stores.next(), stores.next(), stores.next())
        else {
            // The loop above pushed exactly four stores.
            return Err(error::config("bucket setup"));
        };
        Ok(NatsStorage::from_inner(Inner {
            client,
            js,
            idem,
            tasks,
            sagas,
            locks,
            index,
            work,
            names,
            clock: self.clock,
            ack_wait: self.ack_wait,
            consumers: tokio::sync::Mutex::new(HashMap::new()),
        }))
    }
}

/// Creates (or opens) a stream, retrying a few times when the server answers with an
/// internal error (JetStream code 500, e.g. "error creating store for stream" while the
/// server is busy creating or deleting other streams): setting up a store must not fail
/// on a passing server hiccup.
async fn create_stream(
    js: &jetstream::Context,
    config: &stream::Config,
    what: &'static str,
) -> StorageResult<stream::Stream> {
    const ATTEMPTS: u32 = 5;
    let mut delay = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        match js.get_or_create_stream(config.clone()).await {
            Ok(stream) => return Ok(stream),
            Err(e) if attempt < ATTEMPTS && format!("{e:?}").contains("code: 500") => {
                tracing::warn!(stream = %config.name, attempt, error = ?e, "JetStream could not create a stream; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            Err(e) => return Err(driver(what, e)),
        }
    }
}
