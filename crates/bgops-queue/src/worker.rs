//! [`Worker`]: claims tasks from a queue and runs them with bounded concurrency.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::complete::Completer;
use crate::execute::{Execution, run_attempt};
use crate::handler::TaskHandler;
use crate::queue::{Claim, TaskQueue};
use crate::stats::{Counters, WorkerStats};

/// Claims tasks from one queue and runs them through a [`TaskHandler`].
///
/// - at most `concurrency` tasks at once, each in its own tokio task;
/// - while a handler runs, its lease is renewed every `heartbeat`; if the lease is lost
///   (the task was taken over), the handler is dropped and its result discarded;
/// - a handler's `Err` fails the attempt (retried after the queue's [`Backoff`] while
///   attempts remain); a [permanent](crate::TaskError::permanent) error fails the task;
///   a panic counts as a retryable failure;
/// - it fills every free slot with one claim ([`TaskQueue::claim_batch`]: one store
///   call for up to `concurrency` tasks), and stores completions in batches (one store
///   call for all that finished meanwhile);
/// - when idle it waits for the store's push signal ([`TaskStore::task_wakeup`]: memory
///   and Redis have one), and polls every `poll_interval`, doubling up to
///   `max_poll_interval` (tasks that become claimable by time alone are not signalled);
///
/// [`TaskStore::task_wakeup`]: bgops_storage::TaskStore::task_wakeup
/// - on shutdown it stops claiming, lets in-flight tasks finish for `shutdown_grace`,
///   then cancels and releases the rest (a released attempt does not count).
///
/// [`Backoff`]: crate::Backoff
pub struct Worker {
    queue: TaskQueue,
    handler: Arc<dyn TaskHandler>,
    queue_name: String,
    id: String,
    concurrency: usize,
    heartbeat: Option<Duration>,
    poll_interval: Duration,
    max_poll_interval: Duration,
    shutdown_grace: Duration,
    prefetch: usize,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("queue_name", &self.queue_name)
            .field("worker_id", &self.id)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

/// Tasks a [`Worker`] claims beyond its free slots by default ([`Worker::prefetch`]).
pub const DEFAULT_PREFETCH: usize = 8;

/// A spawned [`Worker`]: shut it down gracefully, or abort it (as a crash would).
/// Dropping the handle starts a graceful shutdown in the background.
#[derive(Debug)]
pub struct WorkerHandle {
    id: String,
    shutdown: watch::Sender<bool>,
    join: tokio::task::JoinHandle<WorkerStats>,
    counters: Arc<Counters>,
}

impl WorkerHandle {
    /// The worker's id.
    pub fn worker_id(&self) -> &str {
        &self.id
    }

    /// What the worker did so far.
    pub fn stats(&self) -> WorkerStats {
        self.counters.snapshot()
    }

    /// Stops claiming, waits for in-flight tasks (releasing those still running after the
    /// grace period) and returns the final counts.
    pub async fn shutdown(self) -> WorkerStats {
        let _ = self.shutdown.send(true);
        match self.join.await {
            Ok(stats) => stats,
            Err(_) => self.counters.snapshot(),
        }
    }

    /// Stops at once without finishing or releasing anything, as a crash would: claimed
    /// tasks stay claimed until their lease runs out.
    pub fn abort(self) {
        self.join.abort();
    }
}

impl Worker {
    /// A worker for queue `default` with a fresh id, concurrency 1, heartbeat every third
    /// of the lease, polling from 100 ms up to 2 s when idle, and 30 s of shutdown grace.
    pub fn new(queue: TaskQueue, handler: impl TaskHandler) -> Self {
        Self {
            id: worker_id("worker", queue.ids().as_ref()),
            queue,
            handler: Arc::new(handler),
            queue_name: "default".to_owned(),
            concurrency: 1,
            heartbeat: None,
            poll_interval: Duration::from_millis(100),
            max_poll_interval: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(30),
            prefetch: DEFAULT_PREFETCH,
        }
    }

    /// Claims up to `n` tasks more than it has free slots, kept in a local buffer and
    /// started as slots free up (default [`DEFAULT_PREFETCH`]; 0 claims only what it can
    /// start at once). Fewer store calls per task; a prefetched task holds its lease
    /// without heartbeats, so one that waited more than half the lease is given back
    /// instead of started, and shutdown gives back whatever is still buffered.
    pub fn prefetch(mut self, n: usize) -> Self {
        self.prefetch = n;
        self
    }

    /// Sets the queue to claim from.
    pub fn queue_name(mut self, name: impl Into<String>) -> Self {
        self.queue_name = name.into();
        self
    }

    /// Names the worker: its id becomes a fresh id starting with `name`
    /// (`{name}:{host}:{pid}:{token}`, the token from the queue's id generator).
    pub fn name(mut self, name: &str) -> Self {
        self.id = worker_id(name, self.queue.ids().as_ref());
        self
    }

    /// Sets the worker id as given (it should be unique per process start).
    pub fn worker_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Runs at most `n` tasks at once (at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Renews leases this often (default: a third of the queue's lease).
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = Some(every);
        self
    }

    /// Waits `first` after an empty poll, doubling up to `max` while the queue stays empty.
    pub fn poll_interval(mut self, first: Duration, max: Duration) -> Self {
        self.poll_interval = first;
        self.max_poll_interval = max.max(first);
        self
    }

    /// How long in-flight tasks may run on after shutdown before they are released.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// This worker's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Runs in a tokio task until [`WorkerHandle::shutdown`].
    pub fn spawn(self) -> WorkerHandle {
        let (tx, mut rx) = watch::channel(false);
        let counters = Arc::new(Counters::default());
        let worker_id = self.id.clone();
        let inner = counters.clone();
        let join = tokio::spawn(async move {
            self.run_counting(
                async move {
                    let _ = rx.wait_for(|s| *s).await;
                },
                inner,
            )
            .await
        });
        WorkerHandle {
            id: worker_id,
            shutdown: tx,
            join,
            counters,
        }
    }

    /// Runs until `shutdown` resolves, then shuts down gracefully; returns what it did.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> WorkerStats {
        self.run_counting(shutdown, Arc::new(Counters::default()))
            .await
    }

    async fn run_counting(
        self,
        shutdown: impl Future<Output = ()> + Send,
        counters: Arc<Counters>,
    ) -> WorkerStats {
        let span =
            tracing::info_span!("bgops.worker", worker_id = %self.id, queue = %self.queue_name);
        self.main_loop(shutdown, counters).instrument(span).await
    }

    async fn main_loop(
        self,
        shutdown: impl Future<Output = ()> + Send,
        counters: Arc<Counters>,
    ) -> WorkerStats {
        tokio::pin!(shutdown);
        let heartbeat = self
            .heartbeat
            .unwrap_or(self.queue.lease() / 3)
            .max(Duration::from_millis(10));
        let (release_tx, release_rx) = watch::channel(false);
        let permits = Arc::new(Semaphore::new(self.concurrency));
        let mut running = JoinSet::new();
        let mut idle_wait = self.poll_interval;
        let mut wakeup = self.queue.store().task_wakeup(&self.queue_name);
        let (completer, completer_join) = Completer::spawn(self.queue.clone());
        let mut buffer: VecDeque<(Claim, Instant)> = VecDeque::new();
        let execution = || Execution {
            queue: self.queue.clone(),
            handler: self.handler.clone(),
            counters: counters.clone(),
            heartbeat,
            completer: completer.clone(),
            release: release_rx.clone(),
        };
        tracing::info!(
            concurrency = self.concurrency,
            push_wakeups = wakeup.is_some(),
            "worker started"
        );
        loop {
            while running.try_join_next().is_some() {}
            let first = tokio::select! {
                biased;
                () = &mut shutdown => break,
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            // Every free slot is filled by one claim: one store call for up to
            // `concurrency` tasks, plus `prefetch` kept for the next free slots.
            let mut slots = vec![first];
            while let Ok(p) = permits.clone().try_acquire_owned() {
                slots.push(p);
            }
            while !slots.is_empty() {
                let Some((claim, at)) = buffer.pop_front() else {
                    break;
                };
                if at.elapsed() > self.queue.lease() / 2 {
                    // Waited too long without a heartbeat: give it back, do not run it.
                    let queue = self.queue.clone();
                    running.spawn(async move {
                        let _ = queue.release(&claim).await;
                    });
                    continue;
                }
                if let Some(permit) = slots.pop() {
                    running.spawn(run_attempt(execution(), claim, permit));
                }
            }
            if slots.is_empty() {
                continue;
            }
            if let Some(w) = &mut wakeup {
                w.mark_seen();
            }
            // The claim itself is not raced against shutdown: dropping it half-way could
            // leave a task claimed by nobody until its lease runs out.
            match self
                .queue
                .claim_batch(&self.queue_name, &self.id, slots.len() + self.prefetch)
                .await
            {
                Ok(claims) if !claims.is_empty() => {
                    idle_wait = self.poll_interval;
                    for claim in claims {
                        Counters::bump(&counters.claimed);
                        match slots.pop() {
                            Some(permit) => {
                                running.spawn(run_attempt(execution(), claim, permit));
                            }
                            None => buffer.push_back((claim, Instant::now())),
                        }
                    }
                }
                Ok(_) => {
                    drop(slots);
                    // Idle: wait for a push signal from the store, or poll (tasks that
                    // become claimable by time alone are not signalled).
                    let signal = async {
                        match &mut wakeup {
                            Some(w) => w.changed().await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break,
                        () = signal => {}
                        () = tokio::time::sleep(idle_wait) => {
                            idle_wait = (idle_wait * 2).min(self.max_poll_interval);
                        }
                    }
                }
                Err(e) => {
                    drop(slots);
                    Counters::bump(&counters.storage_errors);
                    tracing::warn!(error = %e, "claiming failed; backing off");
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(self.max_poll_interval) => {}
                    }
                }
            }
        }
        // Prefetched tasks that never started go back at once (not counted as attempts).
        for (claim, _) in buffer.drain(..) {
            if let Err(e) = self.queue.release(&claim).await {
                tracing::warn!(error = %e, task_id = %claim.task_id(), "could not give back a prefetched task");
            }
        }
        tracing::info!(in_flight = running.len(), "worker stopping");
        let drained = tokio::time::timeout(self.shutdown_grace, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                in_flight = running.len(),
                "grace period over; releasing in-flight tasks"
            );
            let _ = release_tx.send(true);
            while running.join_next().await.is_some() {}
        }
        drop(completer);
        let _ = completer_join.await;
        let stats = counters.snapshot();
        tracing::info!(?stats, "worker stopped");
        stats
    }
}

/// A worker id unique to this process start: `{name}:{host}:{pid}:{token}`.
///
/// A restarted process must never reuse its predecessor's id, or it could be taken for
/// the holder of claims that died with the old process. Leases are per task and fenced by
/// attempt number, so the id is for people and logs; the token (from the queue's one id
/// generator) keeps it from repeating.
fn worker_id(name: &str, ids: &dyn bgops_core::IdGenerator) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    let token = ids.token();
    let short = token.get(..12).unwrap_or(&token);
    format!("{name}:{host}:{}:{short}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_ids_are_named_and_fresh() {
        let ids = bgops_core::id::RandomIds;
        let a = worker_id("worker-1", &ids);
        let b = worker_id("worker-1", &ids);
        assert!(a.starts_with("worker-1:"));
        assert_ne!(a, b);
        let seq = bgops_core::id::SequentialIds::new("w");
        assert!(worker_id("x", &seq).ends_with(":tw-000001"));
    }
}
