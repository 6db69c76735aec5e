//! PostgreSQL backend benchmark, against a bare floor written with the same driver (sqlx)
//! in the same run:
//!
//! - round trips per operation, counted by a loopback proxy that reads the frontend
//!   protocol (one round trip = one `Sync` after work; sqlx pipelines Parse/Bind/Execute);
//! - begin+complete lifecycles per second vs `INSERT … ON CONFLICT DO NOTHING` +
//!   `UPDATE … WHERE token = …`;
//! - tasks per second, claim+complete with 1 and 4 workers vs `UPDATE … WHERE id =
//!   (SELECT … FOR UPDATE SKIP LOCKED)` + `UPDATE`, and submits per second vs a bare
//!   `INSERT … ON CONFLICT DO NOTHING`.
//!
//! Reads `BGOPS_TEST_POSTGRES_URL` (`cargo xtask bench postgres` starts a throwaway
//! server); skips with a notice when unset. Medians of 5 rounds, alternating which side
//! runs first.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bgops_core::OperationOutcome;
use bgops_core::id::{IdGenerator, RandomIds};
use bgops_postgres::PostgresStorage;
use bgops_storage::{BeginOutcome, BeginRequest, IdempotencyStore, NewTask, TaskStore};
use serde_json::json;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const POOL: u32 = 8;
const ROUNDS: usize = 5;
const LEASE: Duration = Duration::from_secs(60);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Ok(url) = std::env::var("BGOPS_TEST_POSTGRES_URL") else {
        println!(
            "bgops-postgres bench skipped: set BGOPS_TEST_POSTGRES_URL (or run `cargo xtask bench postgres`)"
        );
        return;
    };
    let schema = format!("bgops_bench_{}", uuid::Uuid::new_v4().simple());
    let storage = PostgresStorage::builder(&url)
        .schema(&schema)
        .max_connections(POOL)
        .notify(std::env::var("BGOPS_BENCH_NOTIFY").map_or(true, |v| v != "0"))
        .migrate(true)
        .build()
        .await
        .expect("connect");
    let pool = storage.pool().clone();
    sqlx::raw_sql(&format!(
        "CREATE TABLE {schema}.floor_idem (tenant_id text, key text, status text NOT NULL,
           token text NOT NULL, created_at timestamptz NOT NULL, expires_at timestamptz NOT NULL,
           lease_expires_at timestamptz, result jsonb, PRIMARY KEY (tenant_id, key));
         CREATE TABLE {schema}.floor_task (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
           queue text NOT NULL, key text, status text NOT NULL, payload jsonb NOT NULL,
           result jsonb, lease_expires_at timestamptz);
         CREATE UNIQUE INDEX ON {schema}.floor_task (queue, key);
         CREATE TABLE {schema}.floor_saga (id text PRIMARY KEY, version bigint NOT NULL,
           doc jsonb NOT NULL);
         CREATE INDEX ON {schema}.floor_task (queue, id) WHERE status = 'pending';"
    ))
    .execute(&pool)
    .await
    .expect("floor tables");

    round_trips(&url, &schema).await;

    println!();
    println!("begin+complete lifecycles per second (median of {ROUNDS} rounds, pool of {POOL})");
    println!(
        "{:>12} {:>10} {:>10} {:>8}",
        "concurrency", "bgops", "floor", "ratio"
    );
    for (concurrency, per_task) in [(1_usize, 600_usize), (16, 60)] {
        let (ours, floor) = compare(
            || lifecycles(&storage, concurrency, per_task),
            || floor_lifecycles(&pool, &schema, concurrency, per_task),
        )
        .await;
        println!(
            "{concurrency:>12} {ours:>10.0} {floor:>10.0} {:>7.2}x",
            ours / floor
        );
    }

    println!();
    println!(
        "sagas per second, store side of a 3-step saga (create leased + 3 fenced saves with \
         their events; median of {ROUNDS} rounds)"
    );
    println!(
        "{:>12} {:>10} {:>10} {:>8}",
        "concurrency", "bgops", "floor", "ratio"
    );
    for (concurrency, per_task) in [(1_usize, 150_usize), (16, 20)] {
        let (ours, floor) = compare(
            || sagas(&storage, concurrency, per_task),
            || floor_sagas(&pool, &schema, concurrency, per_task),
        )
        .await;
        println!(
            "{concurrency:>12} {ours:>10.0} {floor:>10.0} {:>7.2}x",
            ours / floor
        );
    }

    for (concurrency, per_task) in [(1_usize, 150_usize), (16, 20)] {
        let engine = saga_engine(&storage);
        let mut rates = Vec::new();
        for _ in 0..ROUNDS {
            rates.push(engine_sagas(&engine, concurrency, per_task).await);
        }
        println!(
            "{concurrency:>12} {:>10.0}   (SagaEngine::start, 3 no-op steps, the same store)",
            median(rates)
        );
    }

    println!();
    println!("tasks per second (median of {ROUNDS} rounds; claim+complete drains 400 tasks)");
    println!("{:>22} {:>10} {:>10} {:>8}", "", "bgops", "floor", "ratio");
    let (ours, floor) = compare(
        || submits(&storage, 400),
        || floor_submits(&pool, &schema, 400),
    )
    .await;
    println!(
        "{:>22} {ours:>10.0} {floor:>10.0} {:>7.2}x",
        "submit (1 client)",
        ours / floor
    );
    for workers in [1_usize, 4] {
        let (ours, floor) = compare(
            || drain(&storage, workers, 400),
            || floor_drain(&pool, &schema, workers, 400),
        )
        .await;
        println!(
            "{:>22} {ours:>10.0} {floor:>10.0} {:>7.2}x",
            format!("claim+complete ({workers} w)"),
            ours / floor
        );
    }
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&pool)
        .await
        .expect("drop schema");
}

/// Runs both sides `ROUNDS` times, alternating which goes first; their medians.
async fn compare<A, B, FA, FB>(mut ours: A, mut floor: B) -> (f64, f64)
where
    A: FnMut() -> FA,
    B: FnMut() -> FB,
    FA: Future<Output = f64>,
    FB: Future<Output = f64>,
{
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        if round % 2 == 0 {
            a.push(ours().await);
            b.push(floor().await);
        } else {
            b.push(floor().await);
            a.push(ours().await);
        }
    }
    (median(a), median(b))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

async fn begin_complete(storage: &PostgresStorage, key: &str) {
    let request = BeginRequest::new("bench", key, "op", RandomIds.token()).lease(LEASE);
    let BeginOutcome::Started(claimed) = storage.begin(request).await.expect("begin") else {
        panic!("expected Started")
    };
    storage
        .complete(
            "bench",
            key,
            &claimed.token,
            OperationOutcome::succeeded(json!({"ok": true})),
        )
        .await
        .expect("complete");
}

/// Runs `concurrency` clients doing `per_task` of `op(i)` each; operations per second.
async fn clients<F, Fut>(concurrency: usize, per_task: usize, op: F) -> f64
where
    F: Fn(String) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let run = uuid::Uuid::new_v4().simple().to_string();
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let (op, run) = (op.clone(), run.clone());
            tokio::spawn(async move {
                for i in 0..per_task {
                    op(format!("{run}-{t}-{i}")).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("join");
    }
    (concurrency * per_task) as f64 / started.elapsed().as_secs_f64()
}

async fn lifecycles(storage: &PostgresStorage, concurrency: usize, per_task: usize) -> f64 {
    let storage = storage.clone();
    clients(concurrency, per_task, move |key| {
        let storage = storage.clone();
        async move { begin_complete(&storage, &key).await }
    })
    .await
}

/// The floor: the same two statements a bare implementation needs (claim, then outcome).
async fn floor_lifecycles(pool: &PgPool, schema: &str, concurrency: usize, per_task: usize) -> f64 {
    let claim = Arc::new(format!(
        "INSERT INTO {schema}.floor_idem (tenant_id, key, status, token, created_at, expires_at,
           lease_expires_at)
         VALUES ('bench', $1, 'in_progress', $2, now(), now() + interval '1 day',
           now() + interval '60 seconds')
         ON CONFLICT DO NOTHING RETURNING created_at"
    ));
    let complete = Arc::new(format!(
        "UPDATE {schema}.floor_idem SET status = 'completed', result = $3
         WHERE tenant_id = 'bench' AND key = $1 AND token = $2 RETURNING expires_at"
    ));
    let pool = pool.clone();
    clients(concurrency, per_task, move |key| {
        let (pool, claim, complete) = (pool.clone(), claim.clone(), complete.clone());
        async move {
            let token = RandomIds.token();
            let claimed = sqlx::query(&claim)
                .bind(&key)
                .bind(&token)
                .fetch_optional(&pool)
                .await
                .expect("claim");
            assert!(claimed.is_some(), "fresh key");
            sqlx::query(&complete)
                .bind(&key)
                .bind(&token)
                .bind(json!({"ok": true}))
                .fetch_one(&pool)
                .await
                .expect("complete");
        }
    })
    .await
}

/// What the saga engine's `start` writes for 3 steps that succeed: the saga created
/// leased with its first event, then one fenced save per step (each with its events), the
/// last one releasing the lease.
async fn saga_writes(storage: &PostgresStorage, id: String) {
    use bgops_core::{SagaEvent, SagaEventKind, SagaLease, SagaStatus, SagaStep, SagaWorkflow};
    use bgops_storage::{CreateSaga, SagaStore};
    let now = time::OffsetDateTime::now_utc();
    let steps = (0..3)
        .map(|i| SagaStep::new(format!("s{i}"), "op", json!({"i": i})))
        .collect();
    let mut saga = SagaWorkflow::new("bench", "wf", steps, now);
    saga.saga_id = id;
    saga.status = SagaStatus::Running;
    saga.lease = Some(SagaLease {
        owner: "bench".to_owned(),
        fence: 1,
        expires_at: now,
    });
    let event = |kind| SagaEvent {
        saga_id: saga.saga_id.as_str().into(),
        at: now,
        fence: 1,
        status: SagaStatus::Running,
        kind,
    };
    let created = storage
        .create_saga(&saga, Some(LEASE), &[event(SagaEventKind::Created)])
        .await
        .expect("create");
    assert!(matches!(created, CreateSaga::Created(_)));
    for i in 0..3 {
        let name = format!("s{i}");
        let events = [
            event(SagaEventKind::StepStarted {
                step_index: i,
                name: name.clone(),
                attempt: 1,
            }),
            event(SagaEventKind::StepSucceeded {
                step_index: i,
                name,
                output: json!(null),
            }),
        ];
        saga.current_step = i + 1;
        if i == 2 {
            saga.status = SagaStatus::Completed;
            saga.lease = None;
        }
        let saved = storage
            .save_saga(&saga, 1, &events, None)
            .await
            .expect("save");
        saga.version = saved.version;
    }
}

async fn sagas(storage: &PostgresStorage, concurrency: usize, per_task: usize) -> f64 {
    let storage = storage.clone();
    clients(concurrency, per_task, move |id| {
        let storage = storage.clone();
        async move { saga_writes(&storage, id).await }
    })
    .await
}

/// The floor: a bare insert of the same document, then three version-checked updates
/// (no journal, no lease, no listing indexes).
async fn floor_sagas(pool: &PgPool, schema: &str, concurrency: usize, per_task: usize) -> f64 {
    let insert = Arc::new(format!(
        "INSERT INTO {schema}.floor_saga (id, version, doc) VALUES ($1, 0, $2)"
    ));
    let update = Arc::new(format!(
        "UPDATE {schema}.floor_saga SET version = version + 1, doc = $3
         WHERE id = $1 AND version = $2 RETURNING version"
    ));
    let pool = pool.clone();
    clients(concurrency, per_task, move |id| {
        let (pool, insert, update) = (pool.clone(), insert.clone(), update.clone());
        async move {
            let steps = (0..3)
                .map(|i| bgops_core::SagaStep::new(format!("s{i}"), "op", json!({"i": i})))
                .collect();
            let saga = bgops_core::SagaWorkflow::new(
                "bench",
                "wf",
                steps,
                time::OffsetDateTime::now_utc(),
            );
            let doc = sqlx::types::Json(saga);
            sqlx::query(&insert)
                .bind(&id)
                .bind(&doc)
                .execute(&pool)
                .await
                .expect("insert");
            for version in 0..3_i64 {
                sqlx::query(&update)
                    .bind(&id)
                    .bind(version)
                    .bind(&doc)
                    .fetch_one(&pool)
                    .await
                    .expect("update");
            }
        }
    })
    .await
}

fn saga_engine(storage: &PostgresStorage) -> bgops_saga::SagaEngine {
    let engine = bgops_saga::SagaEngine::new(Arc::new(storage.clone()));
    for op in ["s0", "s1", "s2"] {
        engine.register_operation_handler(op, |_| async { Ok(serde_json::Value::Null) });
    }
    engine
}

async fn engine_sagas(engine: &bgops_saga::SagaEngine, concurrency: usize, per_task: usize) -> f64 {
    let engine = engine.clone();
    clients(concurrency, per_task, move |id| {
        let engine = engine.clone();
        async move {
            let steps = (0..3)
                .map(|i| bgops_core::SagaStep::new(format!("s{i}"), format!("s{i}"), json!({})))
                .collect();
            let outcome = engine
                .start(bgops_saga::NewSaga::new("bench", "wf", steps).saga_id(id))
                .await
                .expect("start");
            assert!(outcome.succeeded());
        }
    })
    .await
}

async fn submits(storage: &PostgresStorage, n: usize) -> f64 {
    let storage = storage.clone();
    let queue = format!("sub-{}", uuid::Uuid::new_v4().simple());
    clients(1, n, move |key| {
        let (storage, queue) = (storage.clone(), queue.clone());
        async move {
            storage
                .submit_task(NewTask::new(&queue, "x", json!({"n": 1})).idempotency_key(key))
                .await
                .expect("submit");
        }
    })
    .await
}

async fn floor_submits(pool: &PgPool, schema: &str, n: usize) -> f64 {
    let insert = Arc::new(format!(
        "INSERT INTO {schema}.floor_task (queue, key, status, payload) VALUES ($1, $2, 'pending', $3)
         ON CONFLICT DO NOTHING RETURNING id"
    ));
    let queue = format!("sub-{}", uuid::Uuid::new_v4().simple());
    let pool = pool.clone();
    clients(1, n, move |key| {
        let (pool, insert, queue) = (pool.clone(), insert.clone(), queue.clone());
        async move {
            sqlx::query(&insert)
                .bind(&queue)
                .bind(&key)
                .bind(json!({"n": 1}))
                .fetch_optional(&pool)
                .await
                .expect("insert");
        }
    })
    .await
}

/// Submits `n` tasks (not timed), then `workers` drain them with claim_next + complete;
/// tasks per second of the drain.
async fn drain(storage: &PostgresStorage, workers: usize, n: usize) -> f64 {
    let queue = format!("q-{}", uuid::Uuid::new_v4().simple());
    for i in 0..n {
        storage
            .submit_task(NewTask::new(&queue, "x", json!({"n": i})))
            .await
            .expect("submit");
    }
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (storage, queue, done) = (storage.clone(), queue.clone(), done.clone());
            tokio::spawn(async move {
                let worker = format!("w{w}");
                while let Some(task) = storage
                    .claim_next_task(&queue, &worker, LEASE)
                    .await
                    .expect("claim")
                {
                    let attempt = task.lease.as_ref().expect("lease").attempt;
                    storage
                        .complete_task(&task.task_id, attempt, json!({"ok": true}))
                        .await
                        .expect("complete");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("join");
    }
    assert_eq!(done.load(Ordering::Relaxed), n as u64, "every task once");
    n as f64 / started.elapsed().as_secs_f64()
}

async fn floor_drain(pool: &PgPool, schema: &str, workers: usize, n: usize) -> f64 {
    let queue = format!("q-{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!(
        "INSERT INTO {schema}.floor_task (queue, status, payload)
         SELECT $1, 'pending', jsonb_build_object('n', i) FROM generate_series(1, $2) i"
    ))
    .bind(&queue)
    .bind(i64::try_from(n).expect("n"))
    .execute(pool)
    .await
    .expect("fill");
    let claim = Arc::new(format!(
        "UPDATE {schema}.floor_task SET status = 'claimed',
           lease_expires_at = now() + interval '60 seconds'
         WHERE id = (SELECT id FROM {schema}.floor_task WHERE queue = $1 AND status = 'pending'
           ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
         RETURNING id, payload"
    ));
    let complete = Arc::new(format!(
        "UPDATE {schema}.floor_task SET status = 'completed', result = $2, lease_expires_at = NULL
         WHERE id = $1 AND status = 'claimed' RETURNING status"
    ));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (pool, queue, claim, complete, done) = (
                pool.clone(),
                queue.clone(),
                claim.clone(),
                complete.clone(),
                done.clone(),
            );
            tokio::spawn(async move {
                while let Some(row) = sqlx::query(&claim)
                    .bind(&queue)
                    .fetch_optional(&pool)
                    .await
                    .expect("claim")
                {
                    let id: i64 = sqlx::Row::get(&row, 0);
                    sqlx::query(&complete)
                        .bind(id)
                        .bind(json!({"ok": true}))
                        .fetch_one(&pool)
                        .await
                        .expect("complete");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("join");
    }
    assert_eq!(done.load(Ordering::Relaxed), n as u64, "every task once");
    n as f64 / started.elapsed().as_secs_f64()
}

// ---- round trips, counted by a protocol-reading proxy ----

/// Counts, on the client→server stream, `Sync` messages that follow work (`Execute`) and
/// bare `Sync`s (sqlx's ping when a connection goes back to the pool, off the caller's
/// path), plus simple `Query` messages.
#[derive(Default)]
struct Counts {
    work: AtomicU64,
    pings: AtomicU64,
}

async fn proxy(target: String, counts: Arc<Counts>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (target, counts) = (target.clone(), counts.clone());
            tokio::spawn(async move {
                let server = TcpStream::connect(&target).await.expect("server");
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                });
                let mut parser = Frontend::default();
                let mut buf = vec![0_u8; 64 * 1024];
                loop {
                    let n = match cr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    parser.feed(&buf[..n], &counts);
                    if sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// A frontend-protocol reader: the startup message has no type byte; every later
/// message is a type byte and a big-endian length that counts itself.
#[derive(Default)]
struct Frontend {
    started: bool,
    pending: Vec<u8>,
    executed: bool,
}

impl Frontend {
    fn feed(&mut self, bytes: &[u8], counts: &Counts) {
        self.pending.extend_from_slice(bytes);
        loop {
            if !self.started {
                if self.pending.len() < 4 {
                    return;
                }
                let len = u32::from_be_bytes(self.pending[..4].try_into().unwrap()) as usize;
                if self.pending.len() < len {
                    return;
                }
                // An SSLRequest (code 80877103) is answered 'N' and followed by the
                // real startup message.
                let code = u32::from_be_bytes(self.pending[4..8].try_into().unwrap());
                self.pending.drain(..len);
                self.started = code != 80_877_103;
                continue;
            }
            if self.pending.len() < 5 {
                return;
            }
            let kind = self.pending[0];
            let len = u32::from_be_bytes(self.pending[1..5].try_into().unwrap()) as usize;
            if self.pending.len() < 1 + len {
                return;
            }
            self.pending.drain(..=len);
            match kind {
                b'E' => self.executed = true,
                b'Q' => {
                    counts.work.fetch_add(1, Ordering::Relaxed);
                }
                b'S' if self.executed => {
                    self.executed = false;
                    counts.work.fetch_add(1, Ordering::Relaxed);
                }
                b'S' => {
                    counts.pings.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
    }
}

async fn round_trips(url: &str, schema: &str) {
    let target = url
        .rsplit('@')
        .next()
        .and_then(|rest| rest.split('/').next())
        .expect("host:port in the URL")
        .to_owned();
    let counts = Arc::new(Counts::default());
    let port = proxy(target.clone(), counts.clone()).await;
    let proxied = url.replacen(&target, &format!("127.0.0.1:{port}"), 1);
    // sslmode=disable: the proxy reads plain protocol.
    let proxied = if proxied.contains('?') {
        format!("{proxied}&sslmode=disable")
    } else {
        format!("{proxied}?sslmode=disable")
    };
    let s = PostgresStorage::builder(&proxied)
        .schema(schema)
        .max_connections(1)
        .build()
        .await
        .expect("through the proxy");
    // Warm up: statements prepared once per connection are not counted.
    let warm = format!("warm-{}", uuid::Uuid::new_v4().simple());
    begin_complete(&s, &warm).await;
    let queue = format!("rt-{}", uuid::Uuid::new_v4().simple());
    s.submit_task(NewTask::new(&queue, "x", json!(0)))
        .await
        .expect("submit");
    let t = s
        .claim_next_task(&queue, "w", LEASE)
        .await
        .expect("claim")
        .expect("one");
    s.complete_task(&t.task_id, t.lease.expect("lease").attempt, json!(1))
        .await
        .expect("complete");
    let warm_tx = format!("warm-tx-{}", uuid::Uuid::new_v4().simple());
    complete_in_tx(&s, &warm_tx).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    println!(
        "round trips per operation (targets: begin 1, complete 1 or 0 extra in the caller's transaction, claim + complete 2)"
    );
    println!(
        "{:>34} {:>12} {:>16}",
        "operation", "round trips", "+ release pings"
    );
    let measure = |name: &'static str| {
        let counts = counts.clone();
        let before = (
            counts.work.load(Ordering::Relaxed),
            counts.pings.load(Ordering::Relaxed),
        );
        move || async move {
            // Let the pool's release ping land.
            tokio::time::sleep(Duration::from_millis(200)).await;
            println!(
                "{name:>34} {:>12} {:>16}",
                counts.work.load(Ordering::Relaxed) - before.0,
                counts.pings.load(Ordering::Relaxed) - before.1
            );
        }
    };
    let key = format!("rt-{}", uuid::Uuid::new_v4().simple());
    let done = measure("begin");
    let BeginOutcome::Started(claimed) = s
        .begin(BeginRequest::new("bench", &key, "op", RandomIds.token()).lease(LEASE))
        .await
        .expect("begin")
    else {
        panic!("Started")
    };
    done().await;
    let done = measure("complete");
    s.complete(
        "bench",
        &key,
        &claimed.token,
        OperationOutcome::succeeded(json!(1)),
    )
    .await
    .expect("complete");
    done().await;
    let done = measure("begin (replay)");
    let got = s
        .begin(BeginRequest::new("bench", &key, "op", RandomIds.token()))
        .await
        .expect("begin");
    assert!(matches!(got, BeginOutcome::Completed(_)));
    done().await;
    let key = format!("rt-tx-{}", uuid::Uuid::new_v4().simple());
    let BeginOutcome::Started(claimed) = s
        .begin(BeginRequest::new("bench", &key, "op", RandomIds.token()).lease(LEASE))
        .await
        .expect("begin")
    else {
        panic!("Started")
    };
    let mut tx = s.pool().begin().await.expect("tx");
    let done = measure("complete_in (caller's tx)");
    s.complete_in(
        &mut tx,
        "bench",
        &key,
        &claimed.token,
        OperationOutcome::succeeded(json!(1)),
    )
    .await
    .expect("complete in");
    done().await;
    tx.commit().await.expect("commit");
    let done = measure("submit_task");
    s.submit_task(NewTask::new(&queue, "x", json!(1)))
        .await
        .expect("submit");
    done().await;
    let done = measure("claim_next_task");
    let t = s
        .claim_next_task(&queue, "w", LEASE)
        .await
        .expect("claim")
        .expect("one");
    done().await;
    let done = measure("complete_task");
    s.complete_task(&t.task_id, t.lease.expect("lease").attempt, json!(1))
        .await
        .expect("complete");
    done().await;
}

async fn complete_in_tx(s: &PostgresStorage, key: &str) {
    let BeginOutcome::Started(claimed) = s
        .begin(BeginRequest::new("bench", key, "op", RandomIds.token()).lease(LEASE))
        .await
        .expect("begin")
    else {
        panic!("Started")
    };
    let mut tx = s.pool().begin().await.expect("tx");
    s.complete_in(
        &mut tx,
        "bench",
        key,
        &claimed.token,
        OperationOutcome::succeeded(json!(1)),
    )
    .await
    .expect("complete in");
    tx.commit().await.expect("commit");
}
