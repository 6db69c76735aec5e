//! Redis backend benchmark: round trips per operation, and begin+complete lifecycle
//! throughput next to a raw fred baseline making the same round trips (`SET NX PX` then
//! `SET`) in the same run; the Redis CPU and bytes per operation (`-- costs` runs only
//! that table); the cleanup of 200 000 expiring records. Reads `BGOPS_TEST_REDIS_URL`;
//! skips with a notice when unset (the cost and cleanup sections start servers of their
//! own).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

#[path = "support/cost.rs"]
mod cost;
#[path = "../tests/integration/monitor.rs"]
mod monitor;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bgops_core::OperationOutcome;
use bgops_core::id::{IdGenerator, RandomIds};
use bgops_redis::RedisStorage;
use bgops_storage::testing::server::redis::RedisServer;
use bgops_storage::{BeginOutcome, BeginRequest, Claimed, IdempotencyStore, LockStore};
use fred::clients::Pool;
use fred::interfaces::{ClientLike, KeysInterface};
use fred::prelude::{Builder, Config, Expiration, SetOptions};
use serde_json::json;

const POOL: usize = 4;
const ROUNDS: usize = 5;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench -p bgops-redis --bench redis -- costs`: only the Redis cost table (on a
    // server of its own), to alternate with another build's.
    if std::env::args().any(|a| a == "costs") {
        costs().await;
        return;
    }
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
    costs().await;
    println!();
    purge_many().await;
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

/// Redis CPU and bytes per operation on a server of our own (clean counters).
async fn costs() {
    const N: usize = 2_000;
    // Server settings to compare, e.g. BGOPS_BENCH_REDIS_ARGS="--hash-max-listpack-value 256".
    let extra = std::env::var("BGOPS_BENCH_REDIS_ARGS").unwrap_or_default();
    let extra: Vec<&str> = extra.split_whitespace().collect();
    let server = RedisServer::spawn_with(&extra).expect("redis-server");
    let port = server.port();
    let storage = RedisStorage::builder(server.url())
        .pool_size(1)
        .build()
        .await
        .expect("connect");
    let fingerprint = "f".repeat(64);
    let request = |key: String, token: String| {
        BeginRequest::new("tenant-1", key, "POST /orders", token)
            .fingerprint(fingerprint.clone())
            .ttl(Duration::from_secs(600))
    };
    // Warm the script cache so a NOSCRIPT reload is not counted.
    begin_complete(&storage, "tenant-1", "warm").await;

    let tokens: Vec<String> = (0..N).map(|_| RandomIds.token()).collect();
    let mut rows = Vec::new();
    for (label, payload) in [
        ("small JSON result", None),
        ("+ 100-byte response", Some(cost::RESPONSE)),
    ] {
        let run = uuid::Uuid::new_v4().simple().to_string();
        let key = |i: usize| format!("{run}-{i}");
        let begin = cost::per_op(port, N, |i| {
            let (storage, req) = (&storage, request(key(i), tokens[i].clone()));
            async move {
                assert!(matches!(
                    storage.begin(req).await,
                    Ok(BeginOutcome::Started(_))
                ));
            }
        })
        .await;
        let complete = cost::per_op(port, N, |i| {
            let (storage, k, token) = (&storage, key(i), tokens[i].clone());
            async move {
                let mut outcome =
                    OperationOutcome::succeeded(json!({"id": 42, "status": "created"}));
                if let Some(p) = payload {
                    outcome = outcome.with_payload(p);
                }
                storage
                    .complete("tenant-1", &k, &token, outcome)
                    .await
                    .expect("complete");
            }
        })
        .await;
        let replay = cost::per_op(port, N, |i| {
            let (storage, req) = (&storage, request(key(i), RandomIds.token()));
            async move {
                assert!(matches!(
                    storage.begin(req).await,
                    Ok(BeginOutcome::Completed(_))
                ));
            }
        })
        .await;
        rows.push((label, begin, complete, replay));
    }
    println!(
        "Redis cost per operation ({N} calls each, one connection, INFO commandstats/stats{})",
        if extra.is_empty() {
            String::new()
        } else {
            format!(", server {extra:?}")
        }
    );
    cost::head();
    for (label, begin, complete, replay) in rows {
        cost::row(&format!("begin, fresh claim ({label})"), begin);
        cost::row(&format!("complete ({label})"), complete);
        cost::row(
            &format!("first execution = begin+complete ({label})"),
            begin + complete,
        );
        cost::row(
            &format!("replay = begin on a completed key ({label})"),
            replay,
        );
    }
    storage.close().await;
}

/// Issue 10: 200 000 expiring records are all cleaned up; DBSIZE is 0 after.
async fn purge_many() {
    const RECORDS: usize = 200_000;
    const CONCURRENCY: usize = 128;
    let server = RedisServer::spawn().expect("redis-server");
    let storage = Arc::new(
        RedisStorage::builder(server.url())
            .pool_size(4)
            .build()
            .await
            .expect("connect"),
    );
    let ttl = Duration::from_secs(2);
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|t| {
            let storage = Arc::clone(&storage);
            tokio::spawn(async move {
                for i in (t..RECORDS).step_by(CONCURRENCY) {
                    let request = BeginRequest::new("t", format!("k{i}"), "op", "tok").ttl(ttl);
                    storage.begin(request).await.expect("begin");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("join");
    }
    let created = started.elapsed();
    // Every record, the last one too, has passed its TTL.
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    let started = Instant::now();
    let (mut purged, mut batches) = (0, 0);
    loop {
        let sweep = storage.purge_expired(10_000).await.expect("purge");
        purged += sweep.done;
        batches += 1;
        if !sweep.more {
            break;
        }
    }
    let dbsize =
        bgops_storage::testing::server::redis::command(server.port(), &["DBSIZE"]).expect("dbsize");
    println!(
        "purge of {RECORDS} expiring records: created in {created:.1?}, purged {purged} in \
         {:.1?} ({batches} batches of up to 10 000), DBSIZE after: {}",
        started.elapsed(),
        dbsize.trim().trim_start_matches(':')
    );
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
