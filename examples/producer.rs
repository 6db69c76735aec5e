//! The idempotent task producer of seed 002: submit a task with an idempotency key,
//! submit it again (deduplicated), submit several unique tasks, then look them up.
//!
//! Run: `cargo run --example producer` (in memory: the tasks live as long as the
//! process). With `REDIS_URL=redis://127.0.0.1:6379` the tasks stay in Redis for
//! `cargo run --example worker -- worker-1` (and `-- worker-2` to watch two compete).

use std::error::Error;

use bgops::core::TaskStatus;
use bgops::queue::{NewTask, QueueError, TaskQueue};
use serde_json::json;

/// The queue the demo uses.
pub const QUEUE: &str = "orders";

/// The demo's orders: (order number, amount).
pub const ORDERS: [(u32, f64); 6] = [
    (12345, 99.99),
    (12346, 49.99),
    (12347, 199.99),
    (12348, 29.99),
    (12349, 0.0),
    (12350, 15.5),
];

/// An order task, keyed by its order number.
pub fn order_task(order: u32, amount: f64) -> NewTask {
    NewTask::new(
        QUEUE,
        "process_order",
        json!({"order_id": order, "amount": amount, "customer": "alice"}),
    )
    .idempotency_key(format!("order-{order}"))
    .max_attempts(3)
}

/// Runs the producer's demos against `queue`.
pub async fn run_demos(queue: &TaskQueue) -> Result<(), QueueError> {
    println!("=== Idempotent Task Producer ===\n");

    println!("--- Demo 1: Basic Task Submission ---");
    let (first_order, first_amount) = ORDERS[0];
    let first = queue.submit(order_task(first_order, first_amount)).await?;
    if first.duplicate {
        println!(
            "✓ Task already known from an earlier run: {} (key: order-{first_order})",
            first.task.task_id
        );
    } else {
        println!(
            "✓ Submitted task: {} (key: order-{first_order})",
            first.task.task_id
        );
    }

    println!("\n--- Demo 2: Idempotent Deduplication ---");
    println!("Attempting to submit same order again (should dedupe)...");
    let again = queue.submit(order_task(first_order, first_amount)).await?;
    if again.duplicate && again.task.task_id == first.task.task_id {
        println!(
            "✓ Deduplicated! Returned existing task: {}",
            again.task.task_id
        );
    } else {
        println!(
            "✗ Expected a duplicate, got a new task {}",
            again.task.task_id
        );
    }

    println!("\n--- Demo 3: Submitting Multiple Unique Tasks ---");
    for (order, amount) in &ORDERS[1..] {
        let submitted = queue.submit(order_task(*order, *amount)).await?;
        let note = if submitted.duplicate {
            " [already submitted]"
        } else {
            ""
        };
        println!(
            "✓ Submitted: {} (order-{order}, ${amount:.2}){note}",
            submitted.task.task_id
        );
    }

    println!("\n--- Demo 4: Same Key, Different Payload ---");
    match queue.submit(order_task(first_order, 1.0)).await {
        Err(QueueError::KeyConflict { key }) => {
            println!("✓ Rejected: key {key} was already used for another payload");
        }
        Ok(s) => println!("✗ Unexpectedly accepted: {}", s.task.task_id),
        Err(e) => return Err(e),
    }

    println!("\n--- Demo 5: Looking Up Tasks ---");
    if let Some(task) = queue.get(&first.task.task_id).await? {
        println!("By id:  {} is {}", task.task_id, task.status.as_str());
    }
    if let Some(task) = queue.get_by_idempotency_key(QUEUE, "order-12347").await? {
        println!(
            "By key: order-12347 → {} ({})",
            task.task_id,
            task.status.as_str()
        );
    }
    let pending = queue
        .list_all(Some(QUEUE), Some(TaskStatus::Pending))
        .await?;
    println!("Pending tasks on `{QUEUE}`: {}", pending.len());
    Ok(())
}

#[allow(dead_code)] // `worker` includes this file for `run_demos` and does not call `main`.
#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let config = bgops::Config::from_env()?;
    let storage = bgops::storage_from_config(&config).await?;
    let backend = storage.backend_name();
    let queue = TaskQueue::new(storage);
    run_demos(&queue).await?;
    if backend == "memory" {
        println!("\n(in memory: set REDIS_URL to keep the tasks for `cargo run --example worker`)");
    } else {
        println!(
            "\nTasks stored in {backend}: run `cargo run --example worker -- worker-1` to process them."
        );
    }
    Ok(())
}
