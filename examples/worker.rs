//! The idempotent task worker of seed 002: claims `orders` tasks, processes them with
//! simulated failures, retries with backoff, and prints each step.
//!
//! Run: `cargo run --example worker -- worker-1`. Without `REDIS_URL` it uses memory and
//! first submits the producer's tasks itself, so it shows something on its own. With
//! `REDIS_URL` it works on what `cargo run --example producer` stored; start a second one
//! (`-- worker-2`) at the same time to watch two workers compete: each task is processed
//! by one of them.
//!
//! It exits once the queue has no pending or claimed task left, or after `--for SECS`
//! seconds (default 30).

use std::error::Error;
use std::time::Duration;

use bgops::core::TaskStatus;
use bgops::queue::{Backoff, TaskContext, TaskError, TaskQueue, Worker};
use serde_json::{Value, json};

#[allow(dead_code)] // Only `run_demos` and the constants are used here.
#[path = "producer.rs"]
mod producer;

use producer::QUEUE;

/// Simulated processing: order 12346 fails its first attempt, 12348 always fails (3
/// attempts, then Failed), 12349 has an invalid amount (a permanent error, no retry).
async fn process(name: String, ctx: TaskContext) -> Result<Value, TaskError> {
    let order = ctx.payload()["order_id"].as_u64().unwrap_or_default();
    let amount = ctx.payload()["amount"].as_f64().unwrap_or_default();
    let max = ctx.task.max_attempts;
    println!(
        "[{name}] Processing: {} ({}) - attempt {}/{max}",
        ctx.task_id(),
        ctx.task.task_type,
        ctx.attempt
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    let failure = match order {
        12346 if ctx.attempt == 1 => {
            Some(TaskError::retryable("processing failed: temporary error"))
        }
        12348 => Some(TaskError::retryable(
            "processing failed: payment gateway timeout",
        )),
        _ if amount <= 0.0 => Some(TaskError::permanent(format!("invalid amount ${amount:.2}"))),
        _ => None,
    };
    match failure {
        Some(e) if e.is_permanent() => {
            println!("[{name}] ✗ Failed permanently: {} - {e}", ctx.task_id());
            Err(e)
        }
        Some(e) if ctx.attempt < max => {
            println!(
                "[{name}] ↻ Retry queued: {} - {e} (attempt {}/{max})",
                ctx.task_id(),
                ctx.attempt
            );
            Err(e)
        }
        Some(e) => {
            println!(
                "[{name}] ✗ Failed: {} - {e} (attempt {}/{max}, no attempts left)",
                ctx.task_id(),
                ctx.attempt
            );
            Err(e)
        }
        None => {
            println!(
                "[{name}] ✓ Completed: {} - Order {order} processed, charged ${amount:.2}",
                ctx.task_id()
            );
            Ok(json!({"order_id": order, "charged": amount, "worker": ctx.worker_id}))
        }
    }
}

/// True when no task of the demo queue is pending or claimed.
async fn drained(queue: &TaskQueue) -> Result<bool, bgops::queue::QueueError> {
    for status in [TaskStatus::Pending, TaskStatus::Claimed] {
        if !queue.list_all(Some(QUEUE), Some(status)).await?.is_empty() {
            return Ok(false);
        }
    }
    Ok(true)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let mut name = "worker-1".to_owned();
    let mut limit = Duration::from_secs(30);
    while let Some(arg) = args.next() {
        if arg == "--for" {
            let secs: u64 = args
                .next()
                .ok_or("--for needs a number of seconds")?
                .parse()?;
            limit = Duration::from_secs(secs);
        } else {
            name = arg;
        }
    }

    let config = bgops::Config::from_env()?;
    let storage = bgops::storage_from_config(&config).await?;
    let backend = storage.backend_name();
    // Short waits so the demo's retries happen within seconds.
    let queue = TaskQueue::new(storage)
        .with_backoff(Backoff::new(
            Duration::from_millis(200),
            Duration::from_secs(2),
        ))
        .with_lease(Duration::from_secs(10));
    if backend == "memory" {
        println!("(in memory: submitting the producer's tasks first)\n");
        producer::run_demos(&queue).await?;
        println!();
    }

    let label = name.clone();
    let worker = Worker::new(queue.clone(), move |ctx: TaskContext| {
        process(label.clone(), ctx)
    })
    .name(&name)
    .queue_name(QUEUE)
    .concurrency(2)
    .poll_interval(Duration::from_millis(50), Duration::from_millis(500))
    .shutdown_grace(Duration::from_secs(5));
    println!("[{name}] Task Worker started ({}, {backend})", worker.id());
    println!("Processing loop active - waiting for tasks...");
    let handle = worker.spawn();

    let deadline = tokio::time::Instant::now() + limit;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if drained(&queue).await? {
            println!("[{name}] Queue drained.");
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            println!("[{name}] Stopping after {}s.", limit.as_secs());
            break;
        }
    }
    let stats = handle.shutdown().await;
    println!(
        "[{name}] Stopped: {} completed, {} retried, {} failed, {} released",
        stats.completed, stats.retried, stats.failed, stats.released
    );

    let completed = queue
        .list_all(Some(QUEUE), Some(TaskStatus::Completed))
        .await?;
    let failed = queue
        .list_all(Some(QUEUE), Some(TaskStatus::Failed))
        .await?;
    println!("\nCompleted tasks: {}", completed.len());
    for task in &completed {
        println!(
            "  {} → {}",
            task.task_id,
            task.result.clone().unwrap_or_default()
        );
    }
    println!("Failed tasks: {}", failed.len());
    for task in &failed {
        let history: Vec<String> = task
            .history
            .iter()
            .map(|a| format!("#{} {}", a.attempt, a.outcome.as_deref().unwrap_or("?")))
            .collect();
        println!(
            "  {} - {} [{}]",
            task.task_id,
            task.error.as_deref().unwrap_or(""),
            history.join(", ")
        );
    }
    Ok(())
}
