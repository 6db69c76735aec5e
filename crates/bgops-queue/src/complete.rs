//! The worker's completer: attempts that finished are completed in batches, one store
//! call (one round trip on Redis) for every completion that queued up meanwhile.

use bgops_storage::{StorageError, TaskReceipt};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::{QueueError, QueueResult};
use crate::queue::{Claim, TaskQueue};

/// At most this many completions per store call.
const MAX_BATCH: usize = 256;

struct Job {
    claim: Claim,
    result: Option<Value>,
    answer: oneshot::Sender<QueueResult<TaskReceipt>>,
}

/// Queues completions for the batching task; cheap to clone.
#[derive(Clone)]
pub(crate) struct Completer {
    tx: mpsc::UnboundedSender<Job>,
}

impl Completer {
    /// Starts the batching task; it ends once every `Completer` is dropped and its queue
    /// is empty.
    pub(crate) fn spawn(queue: TaskQueue) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let join = tokio::spawn(run(queue, rx));
        (Self { tx }, join)
    }

    /// Completes the claim (in the next batch) and answers as
    /// [`TaskQueue::complete`] would.
    pub(crate) async fn complete(&self, claim: Claim, result: Value) -> QueueResult<TaskReceipt> {
        let (answer, rx) = oneshot::channel();
        let job = Job {
            claim,
            result: Some(result),
            answer,
        };
        if let Err(mpsc::error::SendError(job)) = self.tx.send(job) {
            // The batching task is gone (the worker is shutting down): complete directly.
            return Err(gone(&job.claim));
        }
        rx.await.unwrap_or_else(|_| {
            Err(QueueError::Storage(StorageError::Backend {
                backend: "bgops-queue",
                source: "the completer stopped before answering".into(),
            }))
        })
    }
}

fn gone(claim: &Claim) -> QueueError {
    QueueError::Storage(StorageError::Backend {
        backend: "bgops-queue",
        source: format!(
            "the completer stopped; task {} not completed",
            claim.task_id()
        )
        .into(),
    })
}

async fn run(queue: TaskQueue, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut jobs = Vec::new();
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let items = jobs
            .iter_mut()
            .map(|job| (&job.claim, job.result.take().unwrap_or(Value::Null)))
            .collect();
        match queue.complete_many(items).await {
            Ok(answers) => {
                let mut answers = answers.into_iter();
                for job in jobs.drain(..) {
                    let answer = answers.next().unwrap_or_else(|| {
                        Err(QueueError::Storage(StorageError::Corrupt {
                            key: job.claim.task_id().to_owned(),
                            reason: "the store answered fewer completions than were asked".into(),
                        }))
                    });
                    let _ = job.answer.send(answer);
                }
            }
            Err(e) => {
                for job in jobs.drain(..) {
                    let _ = job.answer.send(Err(replicate(&e)));
                }
            }
        }
    }
}

/// A copy of a batch's error for each of its completions (errors are not `Clone`).
fn replicate(e: &QueueError) -> QueueError {
    let source = e.to_string().into();
    QueueError::Storage(if e.is_transient() {
        StorageError::Unavailable {
            backend: "task store",
            source,
        }
    } else {
        StorageError::Backend {
            backend: "task store",
            source,
        }
    })
}
