//! Redis backend benchmark: round trips per operation, and begin+complete lifecycle
//! throughput next to a raw fred baseline making the same round trips (`SET NX PX` then
//! `SET`) in the same run. Reads `BGOPS_TEST_REDIS_URL`; skips with a notice when unset.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

#[path = "../tests/integration/monitor.rs"]
mod monitor;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bgops_core::OperationOutcome;
use bgops_core::id::{IdGenerator, RandomIds};
use bgops_redis::RedisStorage;
use bgops_storage::{BeginOutcome, BeginRequest, Claimed, IdempotencyStore, LockStore};
use fred::clients::Pool;
use fred::interfaces::{ClientLike, KeysInterface};
use fred::prelude::{Builder, Config, Expiration, SetOptions};
use serde_json::json;

const POOL: usize = 4;
const ROUNDS: usize = 5;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Ok(url) = std::env::var("BGOPS_TEST_REDIS_URL") else {
        println!(
            "bgops-redis bench skipped: set BGOPS_TEST_REDIS_URL (or run `cargo xtask bench`)"
        );
        return;
    };
    let prefix = format!("bgops-bench-{}", uuid::Uuid::new_v4().simple());
    let storage = Arc::new(
        RedisStorage::builder(&url)
            .prefix(&prefix)
            .pool_size(POOL)
            .build()
            .await
            .expect("connect"),
    );
    let raw = Builder::from_config(Config::from_url(&url).expect("url"))
        .build_pool(POOL)
        .expect("pool");
    raw.init().await.expect("connect raw");

    round_trips(&url, &storage, &raw).await;
    println!();
    println!("begin+complete lifecycles per second (median of {ROUNDS} rounds, pool of {POOL})");
    println!(
        "{:>12} {:>12} {:>12} {:>8}",
        "concurrency", "bgops", "raw fred", "ratio"
    );
    for (concurrency, per_task) in [(1_usize, 1_500_usize), (50, 80)] {
        let mut ours = Vec::new();
        let mut base = Vec::new();
        for round in 0..ROUNDS {
            // Alternate which runs first so drift on a shared machine hits both alike.
            if round % 2 == 0 {
                ours.push(lifecycles(&storage, concurrency, per_task).await);
                base.push(baseline(&raw, &prefix, concurrency, per_task).await);
            } else {
                base.push(baseline(&raw, &prefix, concurrency, per_task).await);
                ours.push(lifecycles(&storage, concurrency, per_task).await);
            }
        }
        let (ours, base) = (median(ours), median(base));
        println!(
            "{concurrency:>12} {ours:>12.0} {base:>12.0} {:>7.2}x",
            ours / base
        );
    }
    let _ = raw.quit().await;
    storage.close().await;
}

/// Top-level commands per operation (MONITOR, on a loopback server without AUTH) and the
/// EVALSHA delta of `INFO commandstats` (which also counts a script's inner calls, so it
/// cannot show round trips by itself).
async fn round_trips(url: &str, storage: &RedisStorage, raw: &Pool) {
    // Warm the script cache first, so a NOSCRIPT reload is not counted.
    let (tenant, warm) = ("bench", format!("warm-{}", uuid::Uuid::new_v4().simple()));
    begin_complete(storage, tenant, &warm).await;
    let lock = storage
        .acquire_lock("bench-warm", Duration::from_secs(5))
        .await
        .expect("lock");
    storage
        .release_lock(&lock.expect("free"))
        .await
        .expect("release");

    let mut monitor = loopback_port(url).and_then(|p| monitor::Monitor::start(p).ok());
    if let Some(m) = monitor.as_mut() {
        m.take().expect("drain");
    }
    let key = format!("rt-{}", uuid::Uuid::new_v4().simple());
    println!("round trips per operation (target 1 each)");
    println!(
        "{:>10} {:>18} {:>22}",
        "operation", "top-level cmds", "commandstats evalsha"
    );
    let mut token = String::new();
    let mut lease = None;
    for op in ["begin", "complete", "acquire", "release"] {
        let before = evalsha_calls(raw).await;
        match op {
            "begin" => {
                let BeginOutcome::Started(claimed) = storage
                    .begin(BeginRequest::new(tenant, &key, "op", RandomIds.token()))
                    .await
                    .expect("begin")
                else {
                    panic!("expected Started")
                };
                token = claimed.token;
            }
            "complete" => {
                let outcome = OperationOutcome::succeeded(json!({"ok": true}));
                storage
                    .complete(tenant, &key, &token, outcome)
                    .await
                    .expect("complete");
            }
            "acquire" => {
                lease = storage
                    .acquire_lock(&key, Duration::from_secs(5))
                    .await
                    .expect("lock");
            }
            _ => {
                storage
                    .release_lock(lease.as_ref().expect("held"))
                    .await
                    .expect("release");
            }
        }
        let evalsha = evalsha_calls(raw).await - before;
        let top = monitor.as_mut().map_or_else(
            || "n/a (not loopback)".to_owned(),
            |m| {
                // The INFO calls around the operation are the bench's own.
                let cmds: Vec<String> = m
                    .take()
                    .expect("monitor")
                    .into_iter()
                    .filter(|c| c != "info")
                    .collect();
                format!("{} {:?}", cmds.len(), cmds)
            },
        );
        println!("{op:>10} {top:>18} {evalsha:>22}");
    }
}

fn loopback_port(url: &str) -> Option<u16> {
    let rest = url.strip_prefix("redis://")?;
    let (host, port) = rest.split('/').next()?.rsplit_once(':')?;
    (matches!(host, "127.0.0.1" | "localhost")).then_some(())?;
    port.parse().ok()
}

async fn evalsha_calls(raw: &Pool) -> u64 {
    let info: String = raw
        .next()
        .info(Some(fred::types::InfoKind::CommandStats))
        .await
        .expect("info");
    let stats: BTreeMap<&str, u64> = info
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(":calls=")?;
            Some((name, rest.split(',').next()?.parse().ok()?))
        })
        .collect();
    stats.get("evalsha").copied().unwrap_or(0)
}

async fn begin_complete(storage: &RedisStorage, tenant: &str, key: &str) {
    let request =
        BeginRequest::new(tenant, key, "op", RandomIds.token()).ttl(Duration::from_secs(60));
    let BeginOutcome::Started(Claimed { token, .. }) = storage.begin(request).await.expect("begin")
    else {
        panic!("expected Started")
    };
    let outcome = OperationOutcome::succeeded(json!({"ok": true}));
    storage
        .complete(tenant, key, &token, outcome)
        .await
        .expect("complete");
}

/// Lifecycles per second of `concurrency` tasks doing `per_task` begin+complete each.
async fn lifecycles(storage: &Arc<RedisStorage>, concurrency: usize, per_task: usize) -> f64 {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let storage = Arc::clone(storage);
            let run = run.clone();
            tokio::spawn(async move {
                for i in 0..per_task {
                    begin_complete(&storage, "bench", &format!("{run}-{t}-{i}")).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("join");
    }
    (concurrency * per_task) as f64 / started.elapsed().as_secs_f64()
}

/// The same two round trips with plain commands: `SET NX PX` (claim), `SET` (outcome).
async fn baseline(raw: &Pool, prefix: &str, concurrency: usize, per_task: usize) -> f64 {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let raw = raw.clone();
            let key_base = format!("{prefix}:raw:{run}-{t}");
            tokio::spawn(async move {
                for i in 0..per_task {
                    let key = format!("{key_base}-{i}");
                    let claimed: Option<String> = raw
                        .set(
                            &key,
                            "in_progress",
                            Some(Expiration::PX(30_000)),
                            Some(SetOptions::NX),
                            false,
                        )
                        .await
                        .expect("set nx");
                    assert!(claimed.is_some(), "fresh key");
                    let _: () = raw
                        .set(
                            &key,
                            r#"{"ok":true}"#,
                            Some(Expiration::PX(60_000)),
                            None,
                            false,
                        )
                        .await
                        .expect("set");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("join");
    }
    (concurrency * per_task) as f64 / started.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
