//! Memory footprint of `MemoryStorage`: resident bytes per stored HTTP-like response, and
//! whether a large purge gives memory back.
//!
//! 1. Purge: 200 000 records with a short TTL are stored, expire and are purged in
//!    batches of 10 000; prints RSS at the start, when full, after the purge (the
//!    target: back within 2× of the start) and after storing 200 000 new records. The
//!    store frees every record and shrinks its tables (a test checks the capacities).
//!    glibc returns only the top of its heap and keeps a few freed blocks of each size
//!    cached per thread, which can hold the top up; the purge frees its records lowest
//!    address first, from one buffer sized up front, so that nothing it leaves cached
//!    sits high (without that: ~45 MiB stayed resident). What is not returned is reused,
//!    as the refill shows.
//! 2. Per record: 100 000 completed records, each what the HTTP layer stores for a
//!    response (UUID key, `METHOD path` operation, SHA-256 hex fingerprint, 32-hex token,
//!    a 100-byte encoded response as payload); prints RSS bytes per record (target
//!    ≤ 350), then the time of a replay (`begin` answering `Completed`).
//!
//! RSS is read from `/proc/self/statm` (resident pages × 4096): Linux only, like the
//! rest of the benches. Each measure runs in its own process.

// Bench code: a broken setup must stop the run loudly.
#![allow(clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bgops_core::{ManualClock, OperationOutcome};
use bgops_memory::MemoryStorage;
use bgops_storage::{BeginOutcome, BeginRequest, IdempotencyStore};

const PAGE: u64 = 4096;
const PER_RECORD: u64 = 100_000;
const PURGED: u64 = 200_000;
const PAYLOAD: usize = 100;

/// Resident set size in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .expect("resident pages");
    pages * PAGE
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A UUID-shaped key, a token and a fingerprint for record `i`, as the HTTP layer makes
/// them (a client's `Idempotency-Key`, the engine's token, a SHA-256 in hex).
fn inputs(i: u64) -> (String, String, String) {
    let key = format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        i,
        i & 0xffff,
        i & 0xfff,
        (i >> 12) & 0xfff,
        i * 7919
    );
    let token = format!("{:016x}{:016x}", i * 31, i ^ 0x5a5a_5a5a);
    let fingerprint = format!("{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).repeat(4);
    (key, token, fingerprint)
}

/// An encoded ~100-byte HTTP response.
fn payload(i: u64) -> Vec<u8> {
    let mut body = format!(
        "200\ncontent-type: application/json\n\n{{\"message_id\":\"msg-{i}\",\"status\":\"sent\"}}"
    )
    .into_bytes();
    body.resize(PAYLOAD, b' ');
    body
}

/// Stores `n` completed records from `first` on; each lives for `ttl`.
async fn fill(store: &MemoryStorage, first: u64, n: u64, ttl: Duration) {
    for i in first..first + n {
        let (key, token, fingerprint) = inputs(i);
        let request = BeginRequest::new("default", key.as_str(), "POST /api/send-email", token)
            .fingerprint(fingerprint)
            .ttl(ttl);
        let BeginOutcome::Started(claim) = store.begin(request).await.expect("begin") else {
            panic!("every key is new");
        };
        let outcome = OperationOutcome::default().with_payload(payload(i));
        store
            .complete("default", &key, &claim.token, outcome)
            .await
            .expect("complete");
    }
}

async fn purge_gives_memory_back() {
    let clock = ManualClock::new();
    let store = MemoryStorage::with_clock(Arc::new(clock.clone()));
    let start = rss();
    fill(&store, 0, PURGED, Duration::from_secs(60)).await;
    let full = rss();
    clock.advance(Duration::from_secs(61));
    let (mut removed, mut batches) = (0, 0);
    loop {
        let sweep = store.purge_expired(10_000).await.expect("purge");
        removed += sweep.done;
        batches += 1;
        if !sweep.more {
            break;
        }
    }
    assert_eq!(removed, PURGED);
    let after = rss();
    // The same number of new records again: they reuse the memory the purge freed.
    fill(&store, PURGED, PURGED, Duration::from_secs(60)).await;
    let refilled = rss();
    println!(
        "purge of {PURGED} expired records in {batches} batches: RSS {:.1} MiB at the start, \
         {:.1} MiB full, {:.1} MiB after the purge ({:.2}x the start; target: within 2x), \
         {:.1} MiB after storing {PURGED} new records (the freed memory is reused: \
         {:+.1} MiB over full)",
        mib(start),
        mib(full),
        mib(after),
        after as f64 / start as f64,
        mib(refilled),
        (refilled as f64 - full as f64) / (1024.0 * 1024.0),
    );
}

async fn bytes_per_record() {
    let store = MemoryStorage::new();
    // One record first, so the store's fixed tables are counted in `before`.
    fill(&store, u64::MAX / 2, 1, Duration::from_secs(3600)).await;
    let before = rss();
    fill(&store, 0, PER_RECORD, Duration::from_secs(3600)).await;
    let after = rss();
    println!(
        "{PER_RECORD} stored responses ({PAYLOAD}-byte payload, UUID key, SHA-256 fingerprint): \
         {} bytes of RSS per record (target: at most 350)",
        (after - before) / PER_RECORD
    );
    // What a replay costs: `begin` on a completed record hands out the decoded record.
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        for i in 0..PER_RECORD {
            let (key, token, fingerprint) = inputs(i);
            let request = BeginRequest::new("default", key, "POST /api/send-email", token)
                .fingerprint(fingerprint);
            let outcome = store.begin(request).await.expect("begin");
            assert!(matches!(outcome, BeginOutcome::Completed(_)));
            std::hint::black_box(outcome);
        }
        best = best.min(started.elapsed());
    }
    println!(
        "replay (begin on a completed record, including building the request): {:.0} ns each, \
         best of 5 rounds of {PER_RECORD}",
        best.as_nanos() as f64 / PER_RECORD as f64
    );
    drop(store);
}

/// Each measure runs in a fresh process (this binary, given the measure's name), so that
/// memory freed by one does not flatter the next.
fn main() {
    let which = std::env::args().find(|arg| arg == "purge" || arg == "per-record");
    let Some(which) = which else {
        for measure in ["purge", "per-record"] {
            let status = std::process::Command::new(std::env::current_exe().expect("exe"))
                .arg(measure)
                .status()
                .expect("run a measure");
            assert!(status.success(), "{measure}: {status}");
        }
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        if which == "purge" {
            purge_gives_memory_back().await;
        } else {
            bytes_per_record().await;
        }
    });
}
