//! Loopback HTTP load: a bare axum handler against the same handler behind
//! [`IdempotencyLayer`], first execution (a unique key per request) and replay (one fixed
//! key), on the memory store and, when `BGOPS_TEST_REDIS_URL` is set, on Redis.
//!
//! Run with `cargo bench -p bgops-axum` (or `cargo xtask bench http`). Server and load
//! generator share one process and one tokio runtime; the generator keeps
//! `2 × cores` (at least 4) keep-alive HTTP/1 connections busy. Scenarios are interleaved
//! round by round so that drift hits all of them alike; each figure is the median over
//! the rounds, p99 is over every request of every round.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::{Json, Router};
use bgops_axum::{IdempotencyConfig, IdempotencyLayer};
use bgops_idempotency::IdempotencyEngine;
use bgops_storage::Storage;
use bgops_storage::testing::decorators::CountingStorage;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{Value, json};

const ROUNDS: usize = 5;
const ROUND: Duration = Duration::from_secs(1);
const WARMUP: Duration = Duration::from_millis(300);
const BODY: &str = r#"{"to":"user@example.com","subject":"Test","body":"Hello!"}"#;

#[derive(Deserialize)]
struct Email {
    to: String,
    subject: String,
}

/// The handler under test: what `POST /api/send-email` of the demo does.
async fn send_email(Json(email): Json<Email>) -> Json<Value> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    Json(
        json!({ "message_id": format!("msg-{id}"), "to": email.to, "subject": email.subject, "status": "sent" }),
    )
}

#[derive(Clone, Copy, PartialEq)]
enum Keys {
    None,
    Unique,
    Fixed,
}

struct Scenario {
    name: &'static str,
    addr: SocketAddr,
    keys: Keys,
    /// The counting twin: its address and its store.
    store: Option<(SocketAddr, Arc<CountingStorage>)>,
    rates: Vec<f64>,
    latencies: Vec<u32>,
    requests: u64,
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn route() -> Router {
    Router::new().route("/api/send-email", post(send_email))
}

async fn layered(store: Arc<dyn Storage>, name: &'static str, keys: Keys) -> Scenario {
    // Short retention: records made by the benchmark expire on their own.
    let app = |store: Arc<dyn Storage>| {
        let engine = IdempotencyEngine::builder(store)
            .ttl(Duration::from_secs(120))
            .build();
        route().layer(IdempotencyLayer::with_config(
            engine,
            IdempotencyConfig::default(),
        ))
    };
    // The timed server uses the store as it is; a twin behind a counting wrapper (which
    // costs an allocation and a shared atomic per call) measures store calls per request.
    let addr = serve(app(Arc::clone(&store))).await;
    let counting = Arc::new(CountingStorage::counting(store));
    let counted = serve(app(counting.clone())).await;
    Scenario {
        name,
        addr,
        keys,
        store: Some((counted, counting)),
        rates: vec![],
        latencies: vec![],
        requests: 0,
    }
}

/// Drives `connections` keep-alive connections for `length`; returns (requests, latencies in µs).
async fn load(
    addr: SocketAddr,
    keys: Keys,
    connections: usize,
    length: Duration,
) -> (u64, Vec<u32>) {
    static UNIQUE: AtomicU64 = AtomicU64::new(0);
    let run = uuid::Uuid::new_v4().simple().to_string();
    let deadline = Instant::now() + length;
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let run = run.clone();
            tokio::spawn(async move {
                let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                stream.set_nodelay(true).unwrap();
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .unwrap();
                tokio::spawn(conn);
                let mut latencies = Vec::with_capacity(1 << 16);
                while Instant::now() < deadline {
                    let mut req = Request::post("/api/send-email")
                        .header("host", "bench")
                        .header("content-type", "application/json");
                    match keys {
                        Keys::None => {}
                        Keys::Fixed => req = req.header("idempotency-key", "bench-fixed-key"),
                        Keys::Unique => {
                            let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
                            req = req.header("idempotency-key", format!("{run}-{n}"));
                        }
                    }
                    let req = req
                        .body(Full::new(Bytes::from_static(BODY.as_bytes())))
                        .unwrap();
                    let start = Instant::now();
                    sender.ready().await.unwrap();
                    let res = sender.send_request(req).await.unwrap();
                    assert!(res.status().is_success(), "{}", res.status());
                    res.into_body().collect().await.unwrap();
                    latencies.push(start.elapsed().as_micros() as u32);
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    (all.len() as u64, all)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

fn p99_ms(v: &mut [u32]) -> f64 {
    v.sort_unstable();
    f64::from(v[(v.len() * 99 / 100).min(v.len() - 1)]) / 1000.0
}

async fn redis_store() -> Option<Arc<dyn Storage>> {
    let url = std::env::var("BGOPS_TEST_REDIS_URL").ok()?;
    let prefix = format!("bgops-bench-{}", uuid::Uuid::new_v4().simple());
    match bgops_redis::RedisStorage::builder(url)
        .prefix(prefix)
        .build()
        .await
    {
        Ok(s) => Some(Arc::new(s)),
        Err(e) => {
            eprintln!("Redis scenarios skipped: {e}");
            None
        }
    }
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let connections = std::env::var("BGOPS_BENCH_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or((16 * cores).max(32));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let memory: Arc<dyn Storage> = Arc::new(bgops_memory::MemoryStorage::new());
        let bare = serve(route()).await;
        let mut scenarios = vec![
            Scenario { name: "bare handler", addr: bare, keys: Keys::None, store: None, rates: vec![], latencies: vec![], requests: 0 },
            layered(Arc::clone(&memory), "memory, first execution", Keys::Unique).await,
            layered(memory, "memory, replay", Keys::Fixed).await,
        ];
        match redis_store().await {
            Some(redis) => {
                scenarios.push(layered(Arc::clone(&redis), "redis, first execution", Keys::Unique).await);
                scenarios.push(layered(redis, "redis, replay", Keys::Fixed).await);
            }
            None => println!("BGOPS_TEST_REDIS_URL not set: Redis scenarios skipped (`cargo xtask redis` starts a server)"),
        }
        // `BGOPS_BENCH_ONLY=replay` (a substring of scenario names) narrows the run, for profiling.
        if let Ok(only) = std::env::var("BGOPS_BENCH_ONLY") {
            scenarios.retain(|s| s.name == "bare handler" || s.name.contains(only.as_str()));
        }
        for s in &scenarios {
            // One connection first: the fixed key is stored before duplicates arrive.
            load(s.addr, s.keys, 1, Duration::from_millis(50)).await;
            load(s.addr, s.keys, connections, WARMUP).await;
        }
        let mut calls_per_request = Vec::new();
        for s in &scenarios {
            calls_per_request.push(match &s.store {
                None => String::from("-"),
                Some((addr, counting)) => {
                    load(*addr, s.keys, 1, Duration::from_millis(50)).await;
                    counting.hook().reset();
                    let (n, _) = load(*addr, s.keys, connections, WARMUP).await;
                    format!("{:.3}", counting.hook().total() as f64 / n as f64)
                }
            });
        }
        for _ in 0..ROUNDS {
            for s in &mut scenarios {
                let started = Instant::now();
                let (n, lat) = load(s.addr, s.keys, connections, ROUND).await;
                s.rates.push(n as f64 / started.elapsed().as_secs_f64());
                s.latencies.extend(lat);
                s.requests += n;
            }
        }
        let bare_rate = median(&scenarios[0].rates);
        println!("\nbgops-axum HTTP benchmark: {connections} keep-alive connections, {cores} cores, {ROUNDS} rounds of {ROUND:?}, POST /api/send-email");
        println!("{:<26} {:>12} {:>9} {:>8} {:>14}  target", "scenario", "req/s (med)", "p99 ms", "× bare", "store calls/req");
        for (s, calls) in scenarios.iter_mut().zip(&calls_per_request) {
            let rate = median(&s.rates);
            let ratio = rate / bare_rate;
            let target = match s.name {
                "memory, first execution" => format!("≥ 0.80 {}", if ratio >= 0.80 { "met" } else { "MISSED" }),
                "memory, replay" | "redis, replay" => format!("≥ 1.00 {}", if ratio >= 1.0 { "met" } else { "MISSED" }),
                "redis, first execution" => format!("≥ 0.50 {}", if ratio >= 0.5 { "met" } else { "MISSED" }),
                _ => String::new(),
            };
            println!("{:<26} {:>12.0} {:>9.2} {:>8.2} {:>14}  {target}", s.name, rate, p99_ms(&mut s.latencies), ratio, calls);
        }
    });
}
