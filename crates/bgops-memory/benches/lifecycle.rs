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

const PER_ROUND: usize = 50_000;
const ROUNDS: usize = 21;

fn keys(worker: usize, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("key-{worker}-{i:08}")).collect()
}

async fn lifecycles(store: MemoryStorage, keys: Vec<String>) {
    let result = json!({"ok": true});
    for key in keys {
        let outcome = store
            .begin(BeginRequest::new("tenant", key.clone(), "op", token(&key)))
            .await;
        let Ok(BeginOutcome::Started(claim)) = outcome else {
            panic!("every key is new: {outcome:?}");
        };
        let done = store
            .complete(
                "tenant",
                &key,
                &claim.token,
                OperationOutcome::succeeded(result.clone()),
            )
            .await;
        black_box(done.is_ok());
    }
}

/// A caller-made token (the engines use their id generator; a cheap one here).
fn token(key: &str) -> String {
    format!("t{key}")
}

/// What the trait's signatures cost before any storing: the request a caller builds (with
/// its token), the record a store keeps, and the outcome.
fn api_floor(keys: Vec<String>) {
    let result = json!({"ok": true});
    let now = time::OffsetDateTime::now_utc();
    for key in keys {
        let token = token(&key);
        let request = BeginRequest::new("tenant", key, "op", token);
        let mut record = Arc::new(IdempotencyRecord {
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
            payload: None,
        });
        drop(black_box(request.token));
        let outcome = OperationOutcome::succeeded(result.clone());
        Arc::make_mut(&mut record).result = outcome.result;
        black_box(Arc::clone(&record));
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

/// Times one round of `PER_ROUND` operations split over `tasks` parallel workers, on
/// fresh state from `fresh` (dropped after the clock stops).
fn time_round<S>(
    round: usize,
    tasks: usize,
    fresh: impl Fn() -> S,
    run: impl Fn(&S, Vec<String>) -> Box<dyn FnOnce() + Send>,
) -> Duration {
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
}

fn main() {
    println!(
        "{PER_ROUND} lifecycles per round, {ROUNDS} rounds, each round runs every contender \
         on fresh state back to back; medians, and the median of the per-round ratios"
    );
    for tasks in [1, 2] {
        let (mut memory, mut dashmap, mut hashmap, mut floor) = (vec![], vec![], vec![], vec![]);
        for round in 0..ROUNDS {
            memory.push(time_round(
                round,
                tasks,
                MemoryStorage::new,
                |store, keys| {
                    let store = store.clone();
                    Box::new(move || {
                        let runtime = tokio::runtime::Builder::new_current_thread()
                            .build()
                            .expect("runtime");
                        runtime.block_on(lifecycles(store, keys));
                    })
                },
            ));
            dashmap.push(time_round(
                round,
                tasks,
                || Arc::new(DashMap::new()),
                |dash, keys| {
                    let dash = Arc::clone(dash);
                    Box::new(move || bare_dashmap(&dash, keys))
                },
            ));
            hashmap.push(time_round(
                round,
                tasks,
                || Arc::new(Mutex::new(HashMap::new())),
                |locked, keys| {
                    let locked = Arc::clone(locked);
                    Box::new(move || bare_hashmap(&locked, keys))
                },
            ));
            floor.push(time_round(
                round,
                tasks,
                || (),
                |(), keys| Box::new(move || api_floor(keys)),
            ));
        }
        let ratio = |other: &[Duration]| {
            let ratios: Vec<f64> = memory
                .iter()
                .zip(other)
                .map(|(m, o)| m.as_secs_f64() / o.as_secs_f64())
                .collect();
            median_f64(ratios)
        };
        let (ratio_dash, ratio_hash) = (ratio(&dashmap), ratio(&hashmap));
        let ns = |d: Duration| d.as_nanos() as f64 / PER_ROUND as f64;
        println!(
            "{tasks} task(s): memory {:>8.0} lifecycles/s ({:.0} ns each; the API's own allocations alone {:.0} ns) | bare DashMap {:>8.0}/s, ratio {ratio_dash:.2}x | bare Mutex<HashMap> {:>8.0}/s, ratio {ratio_hash:.2}x",
            per_second(median(memory.clone())),
            ns(median(memory)),
            ns(median(floor)),
            per_second(median(dashmap)),
            per_second(median(hashmap)),
        );
    }
}

fn median_f64(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}
