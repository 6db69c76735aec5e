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

/// A subscription to one kind of notification, made before the check it guards (so a
/// notification sent between the check and the wait is not missed): get it with
/// [`PostgresStorage::watch_queue`] or [`PostgresStorage::watch_completion`], check, then
/// [`wait`](Self::wait).
#[derive(Debug)]
pub struct Wakeup {
    /// Fired before the wait (the record was already completed or gone).
    fired: bool,
    receiver: broadcast::Receiver<Arc<Notice>>,
    channel: String,
    payload: String,
}

impl Wakeup {
    /// Waits for the notification, at most `timeout`; `true` when woken (also when the
    /// listener reconnected or fell behind, since the notification may have been missed).
    pub async fn wait(&mut self, timeout: Duration) -> bool {
        if self.fired {
            return true;
        }
        let woken = tokio::time::timeout(timeout, async {
            loop {
                match self.receiver.recv().await {
                    Ok(n) => match &n.channel {
                        None => return true,
                        Some(c) if *c == self.channel && n.payload == self.payload => {
                            return true;
                        }
                        Some(_) => {}
                    },
                    Err(broadcast::error::RecvError::Lagged(_)) => return true,
                    Err(broadcast::error::RecvError::Closed) => return false,
                }
            }
        })
        .await;
        woken.unwrap_or(false)
    }
}

impl PostgresStorage {
    async fn watch(&self, channel: usize, payload: String) -> StorageResult<Wakeup> {
        let receiver = self.inner.notifier.subscribe(&self.inner.pool).await?;
        Ok(Wakeup {
            fired: false,
            receiver,
            channel: self.inner.notifier.channels[channel].clone(),
            payload,
        })
    }

    /// Subscribes to submits on `queue` (a `NOTIFY` at each submit's commit). An idle
    /// worker subscribes, tries `claim_next_task`, and when that finds nothing waits on
    /// the [`Wakeup`] instead of polling. Delayed and requeued tasks notify nobody: keep
    /// the wait's timeout at the poll interval you would have used.
    ///
    /// # Errors
    /// `Unavailable` when the listener connection cannot be opened.
    pub async fn watch_queue(&self, queue: &str) -> StorageResult<Wakeup> {
        self.watch(0, queue.to_owned()).await
    }

    /// Subscribes to the completion of the record (`tenant_id`, `key`) (a `NOTIFY` at the
    /// commit of its `complete`, sent only for records someone subscribed to: this marks
    /// the record, one statement). A duplicate that got `InProgress` subscribes, then
    /// waits on the [`Wakeup`] (which fires at once when the record is already
    /// completed or gone), then begins again for the outcome, instead of polling.
    ///
    /// # Errors
    /// `Unavailable` when the listener connection cannot be opened.
    pub async fn watch_completion(&self, tenant_id: &str, key: &str) -> StorageResult<Wakeup> {
        let mut wakeup = self.watch(1, format!("{tenant_id}/{key}")).await?;
        // Ask the completion to notify (it does only for records someone waits on); a
        // record already completed (or gone) fires at once.
        let flagged = sqlx::query(&self.sql().idem_watch)
            .bind(tenant_id)
            .bind(key)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(map)?;
        wakeup.fired = flagged.is_none();
        Ok(wakeup)
    }

    /// Waits until a task is submitted to `queue`, at most `timeout`; `true` when woken.
    /// Shorthand for [`watch_queue`](Self::watch_queue) then [`Wakeup::wait`]: a submit
    /// just before this call is missed (the timeout bounds that delay).
    ///
    /// # Errors
    /// `Unavailable` when the listener connection cannot be opened.
    pub async fn wait_for_task(&self, queue: &str, timeout: Duration) -> StorageResult<bool> {
        Ok(self.watch_queue(queue).await?.wait(timeout).await)
    }

    /// Waits until the record (`tenant_id`, `key`) is completed, at most `timeout`;
    /// `true` when woken. Shorthand for [`watch_completion`](Self::watch_completion) then
    /// [`Wakeup::wait`].
    ///
    /// # Errors
    /// `Unavailable` when the listener connection cannot be opened.
    pub async fn wait_for_completion(
        &self,
        tenant_id: &str,
        key: &str,
        timeout: Duration,
    ) -> StorageResult<bool> {
        Ok(self
            .watch_completion(tenant_id, key)
            .await?
            .wait(timeout)
            .await)
    }
}
