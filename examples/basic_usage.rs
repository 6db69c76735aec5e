//! Idempotency basics, after the seed's `basic_usage.py`: create and check keys, complete
//! with a result and with an error, deterministic keys, custom keys.
//!
//! Run: `cargo run --example basic_usage` (memory; set `REDIS_URL` to use Redis).

use bgops::Completion;
use bgops::prelude::*;
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let manager = BackgroundOperationsManager::from_env().await?;
    manager.start().await;
    println!(
        "bgops basic usage on the {} backend\n",
        manager.storage().backend_name()
    );

    // 1. Create a key for an operation, run it, record the result.
    println!("--- 1. Create, run, complete ---");
    let params = json!({"to": "user@example.com", "subject": "Welcome"});
    let status = manager
        .create_idempotency_key(
            "tenant1",
            Some("user1"),
            "send_email",
            None,
            Some(&params),
            None,
        )
        .await?;
    let claim = match status {
        KeyStatus::Created(claim) => {
            println!(
                "created key {} (claimed until {})",
                claim.key(),
                claim.lease_expires_at()
            );
            claim
        }
        other => {
            // A previous run against a persistent backend may already have completed it.
            println!("key already known: {}", describe(&other));
            return finish(&manager).await;
        }
    };
    let result = json!({"message_id": "123", "status": "sent"});
    let completion = manager
        .complete_idempotent_operation(&claim, Some(result), None)
        .await?;
    println!("completion: {}", describe_completion(&completion));
    if let Some(record) = manager.check_idempotency("tenant1", claim.key()).await? {
        println!(
            "completed: status {:?}, result {}",
            record.status,
            record.result.clone().unwrap_or_default()
        );
    }

    // 2. The same inputs again: the stored outcome comes back, nothing runs twice.
    println!("\n--- 2. Duplicate request ---");
    let again = manager
        .create_idempotency_key(
            "tenant1",
            Some("user1"),
            "send_email",
            None,
            Some(&params),
            None,
        )
        .await?;
    match &again {
        KeyStatus::Completed(r) => println!(
            "duplicate detected, cached result: {}",
            r.result.clone().unwrap_or_default()
        ),
        other => println!("unexpected: {other:?}"),
    }
    let checked = manager.check_idempotency("tenant1", claim.key()).await?;
    println!("check_idempotency -> {:?}", checked.map(|r| r.status));
    println!(
        "tenant2 sees it? {:?}",
        manager
            .check_idempotency("tenant2", claim.key())
            .await?
            .is_some()
    );

    // 3. A failed operation: its error is remembered and replayed.
    println!("\n--- 3. Complete with an error ---");
    let failing = json!({"card": "4242", "amount": 999_999});
    if let KeyStatus::Created(claim) = manager
        .create_idempotency_key(
            "tenant1",
            Some("user1"),
            "charge_card",
            None,
            Some(&failing),
            None,
        )
        .await?
    {
        manager
            .complete_idempotent_operation(&claim, None, Some("card declined".into()))
            .await?;
        if let Some(record) = manager.check_idempotency("tenant1", claim.key()).await? {
            println!(
                "failed: status {:?}, error {:?}",
                record.status, record.error
            );
        }
    }

    // 4. Deterministic keys: same inputs, same key; any change, another key.
    println!("\n--- 4. Deterministic keys ---");
    let k1 = derive_key("tenant1", Some("user1"), "send_email", Some(&params))?;
    let k2 = derive_key("tenant1", Some("user1"), "send_email", Some(&params))?;
    let k3 = derive_key("tenant1", Some("user2"), "send_email", Some(&params))?;
    println!("same inputs: {k1} == {k2}: {}", k1 == k2);
    println!("other user:  {k3} differs: {}", k1 != k3);

    // 5. A client-supplied key (e.g. from an `Idempotency-Key` header).
    println!("\n--- 5. Custom key ---");
    let custom = manager
        .create_idempotency_key(
            "tenant1",
            None,
            "process_order",
            Some("order-12345"),
            Some(&json!({"amount": 99.99})),
            None,
        )
        .await?;
    println!("custom key order-12345: {}", describe(&custom));
    let reused = manager
        .create_idempotency_key(
            "tenant1",
            None,
            "process_order",
            Some("order-12345"),
            Some(&json!({"amount": 5})),
            None,
        )
        .await?;
    println!("same key, other parameters: {}", describe(&reused));

    // 6. Bad input is a typed error, never a panic.
    println!("\n--- 6. Validation ---");
    match manager
        .create_idempotency_key::<serde_json::Value>("", None, "op", None, None, None)
        .await
    {
        Err(err) => println!("empty tenant -> {err}"),
        Ok(status) => println!("empty tenant accepted?! {status:?}"),
    }

    finish(&manager).await
}

fn describe(status: &KeyStatus) -> &'static str {
    match status {
        KeyStatus::Created(_) => "created (run the operation)",
        KeyStatus::InProgress { .. } => "in progress (do not run)",
        KeyStatus::Completed(_) => "completed (replay the stored outcome)",
        KeyStatus::Mismatch { .. } => "mismatch (key reused for another request)",
    }
}

fn describe_completion(completion: &Completion) -> &'static str {
    match completion {
        Completion::Stored(_) => "stored",
        Completion::Pending(_) => "store unreachable; retried in the background",
    }
}

async fn finish(manager: &BackgroundOperationsManager) -> Result<(), Error> {
    let stats = manager.stats().await?;
    println!(
        "\nstorage stats: {} idempotency records",
        stats.idempotency_records
    );
    manager.shutdown().await;
    Ok(())
}
