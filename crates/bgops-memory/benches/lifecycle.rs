//! Idempotency lifecycles (`begin` + `complete`) per second on `MemoryStorage`, against a
//! bare map doing the same map operations (insert, lookup, update) in the same run.
//!
//! Prints the median of several rounds for one task and for two tasks in parallel, and
//! the ratio memory / bare map (the target is at most 2×).

// Bench code: a broken setup must stop the run loudly.
#![allow(clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bgops_core::{IdempotencyRecord, OperationOutcome, OperationStatus};
use bgops_memory::MemoryStorage;
use bgops_storage::{BeginOutcome, BeginRequest, IdempotencyStore};
use dashmap::DashMap;
use parking_lot::Mutex;
use serde_json::json;

const PER_ROUND: usize = 100_000;
const ROUNDS: usize = 7;

fn keys(worker: usize, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("key-{worker}-{i:08}")).collect()
}

async fn lifecycles(store: MemoryStorage, keys: Vec<String>) {
    let result = json!({"ok": true});
    for key in keys {
        let outcome = store
            .begin(BeginRequest::new("tenant", key.clone(), "op"))
            .await;
        let Ok(BeginOutcome::Started { token, .. }) = outcome else {
            panic!("every key is new: {outcome:?}");
        };
        let done = store
            .complete(
                "tenant",
                &key,
                &token,
                OperationOutcome::Succeeded(result.clone()),
            )
            .await;
        black_box(done.is_ok());
    }
}

/// What the trait's signatures cost before any storing: the request a caller builds, the
/// record `begin` returns, the outcome and the record `complete` returns (all owned).
fn api_floor(keys: Vec<String>) {
    let result = json!({"ok": true});
    let now = time::OffsetDateTime::now_utc();
    for key in keys {
        let request = BeginRequest::new("tenant", key, "op");
        let mut record = IdempotencyRecord {
            key: request.key,
            tenant_id: request.tenant_id,
            user_id: request.user_id,
            operation_type: request.operation_type,
            created_at: now,
            expires_at: now,
            status: OperationStatus::InProgress,
            result: None,
            error: None,
            parameters: request.parameters,
            fingerprint: request.fingerprint,
            lease_expires_at: Some(now),
            completed_at: None,
        };
        black_box(record.clone());
        let OperationOutcome::Succeeded(value) = OperationOutcome::Succeeded(result.clone()) else {
            unreachable!()
        };
        record.result = Some(value);
        black_box(record.clone());
    }
}

/// The same work on a bare map: insert the key, look it up, update it (what `begin` and
/// `complete` do to their map).
fn bare_dashmap(map: &DashMap<(String, String), String>, keys: Vec<String>) {
    for key in keys {
        map.insert(("tenant".to_owned(), key.clone()), String::from("token"));
        black_box(map.get(&("tenant".to_owned(), key.clone())).is_some());
        if let Some(mut value) = map.get_mut(&("tenant".to_owned(), key)) {
            value.push('!');
        }
    }
}

fn bare_hashmap(map: &Mutex<HashMap<(String, String), String>>, keys: Vec<String>) {
    for key in keys {
        map.lock()
            .insert(("tenant".to_owned(), key.clone()), String::from("token"));
        black_box(
            map.lock()
                .get(&("tenant".to_owned(), key.clone()))
                .is_some(),
        );
        if let Some(value) = map.lock().get_mut(&("tenant".to_owned(), key)) {
            value.push('!');
        }
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn per_second(d: Duration) -> f64 {
    PER_ROUND as f64 / d.as_secs_f64()
}

/// Times `ROUNDS` rounds of `PER_ROUND` operations split over `tasks` parallel workers,
/// each round on fresh state from `fresh` (dropped after the clock stops).
fn measure<S>(
    tasks: usize,
    fresh: impl Fn() -> S,
    run: impl Fn(&S, Vec<String>) -> Box<dyn FnOnce() + Send>,
) -> Duration {
    let samples = (0..ROUNDS)
        .map(|round| {
            let state = fresh();
            let jobs: Vec<_> = (0..tasks)
                .map(|t| run(&state, keys(round * tasks + t, PER_ROUND / tasks)))
                .collect();
            let started = Instant::now();
            std::thread::scope(|scope| {
                for job in jobs {
                    scope.spawn(job);
                }
            });
            let elapsed = started.elapsed();
            drop(state);
            elapsed
        })
        .collect();
    median(samples)
}

fn main() {
    println!("{PER_ROUND} lifecycles per round, median of {ROUNDS} rounds, fresh store each round");
    for tasks in [1, 2] {
        let memory = measure(tasks, MemoryStorage::new, |store, keys| {
            let store = store.clone();
            Box::new(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("runtime");
                runtime.block_on(lifecycles(store, keys));
            })
        });
        let dashmap = measure(
            tasks,
            || Arc::new(DashMap::new()),
            |dash, keys| {
                let dash = Arc::clone(dash);
                Box::new(move || bare_dashmap(&dash, keys))
            },
        );
        let hashmap = measure(
            tasks,
            || Arc::new(Mutex::new(HashMap::new())),
            |locked, keys| {
                let locked = Arc::clone(locked);
                Box::new(move || bare_hashmap(&locked, keys))
            },
        );
        let floor = measure(tasks, || (), |(), keys| Box::new(move || api_floor(keys)));
        let ns = |d: Duration| d.as_nanos() as f64 / PER_ROUND as f64;
        println!(
            "{tasks} task(s): memory {:>8.0} lifecycles/s ({:.0} ns each) | bare DashMap {:>8.0}/s, ratio {:.2}x | bare Mutex<HashMap> {:>8.0}/s, ratio {:.2}x | of the memory time, the API's owned copies alone take {:.0} ns",
            per_second(memory),
            ns(memory),
            per_second(dashmap),
            memory.as_secs_f64() / dashmap.as_secs_f64(),
            per_second(hashmap),
            memory.as_secs_f64() / hashmap.as_secs_f64(),
            ns(floor),
        );
    }
}
