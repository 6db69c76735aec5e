//! `LISTEN/NOTIFY`: a submit notifies `<schema>_task_submitted` (payload: the queue), a
//! completion `<schema>_idempotency_done` (payload: `tenant/key`). One listener
//! connection per [`PostgresStorage`], started at the first wait, fans them out to every
//! waiter.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bgops_storage::StorageResult;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{OnceCell, broadcast};
use tokio::task::JoinHandle;

use crate::PostgresStorage;
use crate::error::map;
use crate::sql::Sql;

/// One notification; `channel: None` wakes every waiter (the listener reconnected, so
/// notifications may have been missed).
#[derive(Debug, Clone)]
struct Notice {
    channel: Option<String>,
    payload: String,
}

#[derive(Debug)]
pub(crate) struct Notifier {
    channels: [String; 2],
    sender: broadcast::Sender<Arc<Notice>>,
    started: OnceCell<()>,
    listener: Mutex<Option<JoinHandle<()>>>,
}

impl Notifier {
    pub(crate) fn new(sql: &Sql) -> Self {
        Self {
            channels: [sql.task_channel.clone(), sql.idem_channel.clone()],
            sender: broadcast::channel(1024).0,
            started: OnceCell::new(),
            listener: Mutex::new(None),
        }
    }

    /// A receiver of every notification from now on (the listener is listening when
    /// this returns).
    async fn subscribe(&self, pool: &PgPool) -> StorageResult<broadcast::Receiver<Arc<Notice>>> {
        let receiver = self.sender.subscribe();
        self.started
            .get_or_try_init(|| async {
                let mut listener = PgListener::connect_with(pool).await.map_err(map)?;
                listener
                    .listen_all(self.channels.iter().map(String::as_str))
                    .await
                    .map_err(map)?;
                let sender = self.sender.clone();
                let handle = tokio::spawn(listen(listener, sender));
                if let Ok(mut slot) = self.listener.lock() {
                    *slot = Some(handle);
                }
                Ok::<_, bgops_storage::StorageError>(())
            })
            .await?;
        Ok(receiver)
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        if let Ok(mut slot) = self.listener.lock() {
            if let Some(handle) = slot.take() {
                handle.abort();
            }
        }
    }
}

async fn listen(mut listener: PgListener, sender: broadcast::Sender<Arc<Notice>>) {
    let wake_all = || {
        Arc::new(Notice {
            channel: None,
            payload: String::new(),
        })
    };
    loop {
        match listener.try_recv().await {
            Ok(Some(n)) => {
                let _ = sender.send(Arc::new(Notice {
                    channel: Some(n.channel().to_owned()),
                    payload: n.payload().to_owned(),
                }));
            }
            // The connection was lost; the next call reconnects and listens again.
            Ok(None) => {
                let _ = sender.send(wake_all());
            }
            Err(e) => {
                tracing::warn!(error = %e, "bgops-postgres: LISTEN connection failed; retrying");
                let _ = sender.send(wake_all());
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

impl PostgresStorage {
    async fn wait_for(
        &self,
        channel: usize,
        payload: &str,
        timeout: Duration,
    ) -> StorageResult<bool> {
        let mut receiver = self.inner.notifier.subscribe(&self.inner.pool).await?;
        let channel = &self.inner.notifier.channels[channel];
        let woken = tokio::time::timeout(timeout, async {
            loop {
                match receiver.recv().await {
                    Ok(n) => match &n.channel {
                        None => return true,
                        Some(c) if c == channel && n.payload == payload => return true,
                        Some(_) => {}
                    },
                    // Missed some: one of them may have been ours.
                    Err(broadcast::error::RecvError::Lagged(_)) => return true,
                    Err(broadcast::error::RecvError::Closed) => return false,
                }
            }
        })
        .await;
        Ok(woken.unwrap_or(false))
    }

    /// Waits until a task is submitted to `queue` (a `NOTIFY` at its commit), at most
    /// `timeout`; `true` when woken. An idle worker calls this after `claim_next_task`
    /// found nothing, instead of polling; the timeout bounds the delay of a submit that
    /// happened between the empty claim and this call (and of delayed or requeued tasks,
    /// which notify nobody), so keep it at the poll interval you would have used.
    ///
    /// # Errors
    /// `Unavailable` when the listener connection cannot be opened.
    pub async fn wait_for_task(&self, queue: &str, timeout: Duration) -> StorageResult<bool> {
        self.wait_for(0, queue, timeout).await
    }

    /// Waits until the record (`tenant_id`, `key`) is completed (a `NOTIFY` at the
    /// commit of its `complete`), at most `timeout`; `true` when woken. A duplicate that
    /// got `InProgress` calls this, then `begin` again for the outcome, instead of
    /// polling; the timeout bounds a completion that happened before this call.
    ///
    /// # Errors
    /// `Unavailable` when the listener connection cannot be opened.
    pub async fn wait_for_completion(
        &self,
        tenant_id: &str,
        key: &str,
        timeout: Duration,
    ) -> StorageResult<bool> {
        self.wait_for(1, &format!("{tenant_id}/{key}"), timeout)
            .await
    }
}
