//! The demo service: the seed's FastAPI example (`fastapi_integration.py`) in axum.
//!
//! ```text
//! cargo run -p bgops-examples --example server              # memory store, 127.0.0.1:8000
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p bgops-examples --example server
//! BGOPS_ADDR=0.0.0.0:9000 cargo run -p bgops-examples --example server
//! ```
//!
//! Endpoints: `POST /api/send-email` and `POST /api/register-user` (idempotent with an
//! `Idempotency-Key` header; the second runs a saga with compensation), `POST
//! /api/orders` with `GET /api/order-status/{task_id}` (one key end to end: the request's key is
//! the key of the task it submits and of the saga a worker runs for that task, so a retried
//! request never makes a second task or saga, and each step's call gets a stable key),
//! `GET /api/status/{key}`, `GET /api/debug/storage-stats`, `GET /health`, `POST
//! /api/orders/stream` (the seed's order saga with its progress as server-sent events;
//! see [`stream_order`]), the board at `/bgops` and Prometheus metrics at `GET /metrics`.
//! Storage: Redis, PostgreSQL or NATS when `REDIS_URL`, `DATABASE_URL` or `NATS_URL` is
//! set, memory otherwise; on PostgreSQL (`DATABASE_URL`) also `POST /api/db-orders`
//! (`db_orders.rs`: the order row and its idempotency record commit in one transaction).
//! The middleware runs
//! on the manager's idempotency engine (one store, TTL, lease and metrics) and is
//! configured from the environment (`BGOPS_IN_FLIGHT=202` gives the seed's 202 for
//! duplicates in flight; see `IdempotencyConfig::from_env`). Ctrl-C shuts down gracefully.
//!
//! Slow clients: a claimed key's lease is held while the request body is read and the
//! handler runs, so the app bounds how long a client may take to send its body
//! (`RequestBodyTimeoutLayer`, 10 s: a stalled upload gets 400 before any claim is
//! made) and how long a whole request may take (`TimeoutLayer`, 30 s: the client gets
//! 408, while a claimed handler runs on, detached, and its response is stored for the
//! retry). Header read time is bounded by the server (hyper's `header_read_timeout`, or
//! the reverse proxy in front).

mod db_orders;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bgops::BackgroundOperationsManager;
use bgops::axum::{
    HeaderScope, IdempotencyConfig, IdempotencyContext, IdempotencyLayer, Problem, ProblemKind,
    ScopeExtractor,
};
use bgops::core::{SagaEvent, SagaStep, SagaWorkflow};
use bgops::queue::{NewTask, TaskContext, TaskError, TaskQueue, Worker, WorkerHandle};
use bgops::saga::{Creation, NewSaga, SagaEngine, SagaError, SagaStatus, StepError};
use futures::Stream;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Deserialize;
use serde_json::{Value, json};
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

/// The demo's state: the manager (storage + saga engine) and a pretend user database
/// that the saga writes to and compensates.
#[derive(Clone)]
struct AppState {
    manager: BackgroundOperationsManager,
    accounts: Accounts,
    /// Calls of the order saga's step and compensation handlers (shown by
    /// `GET /api/debug/storage-stats`: a replayed order stream runs none).
    order_calls: Arc<AtomicU64>,
    /// The `orders` queue, on the manager's store; a worker runs its tasks.
    queue: TaskQueue,
    /// Kept alive with the app (dropping it shuts the worker down gracefully).
    _worker: Arc<WorkerHandle>,
}

#[derive(Debug, Deserialize)]
struct Order {
    item: String,
    /// Makes the charge fail, to show the reservation compensated.
    #[serde(default)]
    fail: bool,
}

/// `POST /api/orders`: submits one `checkout` task under the request's (scoped)
/// idempotency key and answers 202 with its id; a retry of the request replays that
/// answer, and even a resubmission under the same key finds the same task.
async fn place_order(
    State(state): State<AppState>,
    ctx: IdempotencyContext,
    Json(order): Json<Order>,
) -> Response {
    let key = ctx.storage_key().to_owned();
    let payload = json!({
        "tenant": ctx.tenant_id(),
        "key": key,
        "item": order.item,
        "fail": order.fail,
    });
    let task = NewTask::new("orders", "checkout", payload).idempotency_key(key.clone());
    match state.queue.submit(task).await {
        Ok(submitted) => {
            let body = json!({
                "task_id": submitted.task.task_id,
                "duplicate": submitted.duplicate,
                "key": key,
            });
            ctx.set_result(body.clone());
            (StatusCode::ACCEPTED, Json(body)).into_response()
        }
        Err(e) => internal(&e.to_string()),
    }
}

/// The `checkout` task: starts (or finds) the saga under the task's key. Run twice — a
/// redelivery after a crash — it finds the same saga and runs nothing again.
async fn checkout(
    manager: BackgroundOperationsManager,
    ctx: TaskContext,
) -> Result<Value, TaskError> {
    let p = ctx.payload();
    let (tenant, key) = (
        p["tenant"].as_str().unwrap_or_default(),
        p["key"].as_str().unwrap_or_default(),
    );
    let steps = vec![
        SagaStep::new("Reserve item", "reserve_item", json!({ "item": p["item"] }))
            .with_compensation("release_item", json!({ "item": p["item"] })),
        SagaStep::new("Charge", "charge_order", json!({ "fail": p["fail"] })),
    ];
    let outcome = manager
        .saga_engine()
        .start(NewSaga::new(tenant, "checkout", steps).idempotency_key(key))
        .await
        .map_err(TaskError::retryable)?;
    Ok(json!({ "saga_id": outcome.saga.saga_id, "status": outcome.status }))
}

/// `GET /api/order-status/{task_id}`: the task, and the saga it ran with each step's key.
async fn order_status(State(state): State<AppState>, Path(task_id): Path<String>) -> Response {
    let task = match state.queue.get(&task_id).await {
        Ok(Some(task)) => task,
        Ok(None) => {
            return (StatusCode::NOT_FOUND, Json(json!({ "task_id": task_id }))).into_response();
        }
        Err(e) => return internal(&e.to_string()),
    };
    let saga_id = task
        .result
        .as_ref()
        .and_then(|r| r["saga_id"].as_str())
        .map(str::to_owned);
    let saga = match &saga_id {
        Some(id) => match state.manager.get_saga(id).await {
            Ok(saga) => saga,
            Err(e) => return internal(&e.to_string()),
        },
        None => None,
    };
    let saga = saga.map(|s| {
        let steps: Vec<Value> = s
            .steps
            .iter()
            .map(|st| json!({ "name": st.name, "status": st.status, "result": st.result }))
            .collect();
        json!({ "saga_id": s.saga_id, "status": s.status, "idempotency_key": s.idempotency_key, "steps": steps })
    });
    Json(json!({
        "task_id": task.task_id,
        "task_status": task.status,
        "idempotency_key": task.idempotency_key,
        "saga": saga,
    }))
    .into_response()
}

/// Accounts created by the `create_account` saga step (removed by its compensation).
type Accounts = Arc<Mutex<HashMap<String, Value>>>;

#[derive(Debug, Deserialize)]
struct EmailRequest {
    to: String,
    subject: String,
    body: String,
}

#[derive(Debug, Deserialize)]
struct RegisterUser {
    username: String,
    email: String,
    full_name: String,
    #[serde(default = "yes")]
    send_welcome_email: bool,
    /// Makes a step fail to show compensation: `"create_account"` or `"send_welcome_email"`.
    #[serde(default)]
    fail_step: Option<String>,
}

fn yes() -> bool {
    true
}

/// `POST /api/send-email`: "sends" an email; with an `Idempotency-Key`, at most once.
async fn send_email(
    ctx: Option<IdempotencyContext>,
    Json(email): Json<EmailRequest>,
) -> Json<Value> {
    // Stands in for a call to an email provider.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let result = json!({
        "message_id": format!("msg-{}", uuid_like()),
        "status": "sent",
        "to": email.to,
        "subject": email.subject,
        "body_length": email.body.len(),
        "idempotency_key": ctx.as_ref().map(IdempotencyContext::key),
    });
    if let Some(ctx) = &ctx {
        // The seed's `set_operation_result`: shown by GET /api/status/{key}.
        ctx.set_result(result.clone());
    }
    Json(result)
}

/// `POST /api/register-user`: a saga (create account, send welcome email) whose failed
/// step compensates the ones before it. Requires an `Idempotency-Key`, which is also the
/// saga's idempotency key.
async fn register_user(
    State(state): State<AppState>,
    ctx: IdempotencyContext,
    Json(user): Json<RegisterUser>,
) -> Response {
    let fail = user.fail_step.as_deref();
    let mut steps = vec![
        SagaStep::new(
            "Create User Account",
            "create_account",
            json!({
                "username": user.username,
                "email": user.email,
                "full_name": user.full_name,
                "fail": fail == Some("create_account"),
            }),
        )
        .with_compensation("delete_account", json!({ "username": user.username }))
        .with_max_retries(2),
    ];
    if user.send_welcome_email {
        steps.push(
            SagaStep::new(
                "Send Welcome Email",
                "send_email",
                json!({
                    "to": user.email,
                    "template": "welcome",
                    "fail": fail == Some("send_welcome_email"),
                }),
            )
            .with_max_retries(2),
        );
    }
    let manager = &state.manager;
    let saga = match manager
        .create_saga_workflow(
            ctx.tenant_id(),
            "user_registration",
            steps,
            Some(ctx.storage_key()),
        )
        .await
    {
        Ok(saga) => saga,
        Err(e) => return internal(&e.to_string()),
    };
    let outcome = match manager.execute_saga(&saga.saga_id).await {
        Ok(outcome) => outcome,
        Err(e) => return internal(&e.to_string()),
    };
    let saga = outcome.saga;
    let steps: Vec<Value> = saga
        .steps
        .iter()
        .map(
            |s| json!({ "name": s.name, "status": s.status, "result": s.result, "error": s.error }),
        )
        .collect();
    let succeeded = outcome.status == SagaStatus::Completed;
    let body = json!({
        "success": succeeded,
        "saga_id": saga.saga_id,
        "status": outcome.status,
        "username": user.username,
        "steps": steps,
        "error": saga.error,
    });
    ctx.set_result(body.clone());
    // A compensated registration is a final answer for this key: 422 is stored and
    // replayed like a success.
    let status = if succeeded {
        StatusCode::CREATED
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    (status, Json(body)).into_response()
}

fn internal(detail: &str) -> Response {
    let body = json!({ "type": "about:blank", "title": "Internal error", "status": 500, "detail": detail });
    let mut response = (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response();
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/problem+json"),
    );
    response
}

/// `GET /api/status/{key}`: the record of a key, in the caller's scope (`X-Tenant-ID`,
/// `X-User-ID` as for the POST).
async fn status(
    State(state): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut request = axum::http::Request::new(());
    *request.headers_mut() = headers;
    let (parts, ()) = request.into_parts();
    let scope = match HeaderScope::seed().extract(&parts) {
        Ok(scope) => scope,
        Err(rejection) => {
            return Problem::new(ProblemKind::ScopeMissing, rejection.detail)
                .status(rejection.status)
                .into_response();
        }
    };
    // The same scoped storage key the middleware used: a request without a user can never
    // look up a user's record.
    match state
        .manager
        .check_idempotency(&scope.tenant_id, &scope.storage_key(&key))
        .await
    {
        Ok(Some(record)) => {
            // The record as stored (RFC 3339 times), with the handler's result, without
            // the fingerprint (the stored HTTP response is bytes, never serialized).
            let mut body = serde_json::to_value(&*record).unwrap_or_default();
            if let Some(fields) = body.as_object_mut() {
                fields.remove("fingerprint");
                fields.remove("key");
                fields.insert("idempotency_key".to_owned(), Value::String(key));
            }
            Json(body).into_response()
        }
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(json!({ "detail": format!("no operation with idempotency key `{key}`") })),
        )
            .into_response(),
        Err(bgops::Error::Invalid(e)) => {
            Problem::new(ProblemKind::KeyInvalid, e.to_string()).into_response()
        }
        Err(e) => internal(&e.to_string()),
    }
}

/// `GET /api/debug/storage-stats`.
async fn storage_stats(State(state): State<AppState>) -> Response {
    match state.manager.stats().await {
        Ok(stats) => Json(json!({
            "backend": stats.backend,
            "idempotency_records": stats.idempotency_records,
            "sagas_by_status": stats.sagas_by_status,
            "tasks_by_status": stats.tasks_by_status,
            "locks": stats.locks,
            "accounts": state.accounts.lock().unwrap_or_else(PoisonError::into_inner).len(),
            "order_calls": state.order_calls.load(Ordering::Relaxed),
        }))
        .into_response(),
        Err(e) => internal(&e.to_string()),
    }
}

/// `GET /health`.
async fn health(State(state): State<AppState>) -> Response {
    match state.manager.health().await {
        Ok(report) if report.healthy => Json(json!({
            "status": "healthy",
            "backend": report.backend,
            "latency_ms": report.latency.as_secs_f64() * 1000.0,
        }))
        .into_response(),
        Ok(report) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unhealthy", "backend": report.backend })),
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unhealthy", "error": e.to_string() })),
        )
            .into_response(),
    }
}

/// A short unique-enough id for the demo's fake message ids.
fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{nanos:08x}{n:04}")
}

/// Registers the saga handlers: create and delete an account, send an email. A step whose
/// parameters say `"fail": true` fails for good, to show compensation.
fn register_saga_handlers(manager: &BackgroundOperationsManager, accounts: &Accounts) {
    let db = Arc::clone(accounts);
    manager.register_operation_handler("create_account", move |step| {
        let db = Arc::clone(&db);
        async move {
            if step.parameters["fail"] == true {
                return Err(StepError::terminal(
                    "account service rejected the user (fail_step)",
                ));
            }
            let username = step.parameters["username"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            // The step key makes the effect idempotent: a re-run after a crash finds the account.
            let account =
                json!({ "user_id": format!("user-{username}"), "step_key": step.step_key() });
            db.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(username, account.clone());
            Ok(account)
        }
    });
    let db = Arc::clone(accounts);
    manager.register_compensation_handler("delete_account", move |step| {
        let db = Arc::clone(&db);
        async move {
            let username = step.parameters["username"].as_str().unwrap_or_default();
            let removed = db
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(username)
                .is_some();
            Ok(json!({ "deleted": removed }))
        }
    });
    // The order saga: each step's external call is keyed by its step key, which the
    // request's key fixes (one saga per key).
    manager.register_operation_handler("reserve_item", |step| async move {
        Ok(json!({ "reservation": step.step_key(), "item": step.parameters["item"] }))
    });
    manager.register_compensation_handler("release_item", |step| async move {
        Ok(json!({ "released": step.output.map(|o| o["reservation"].clone()) }))
    });
    manager.register_operation_handler("charge_order", |step| async move {
        if step.parameters["fail"] == true {
            return Err(StepError::terminal("card declined (fail)"));
        }
        Ok(json!({ "charge": step.step_key() }))
    });
    manager.register_operation_handler("send_email", |step| async move {
        if step.parameters["fail"] == true {
            return Err(StepError::terminal("email provider rejected the message (fail_step)"));
        }
        Ok(json!({ "message_id": format!("msg-{}", uuid_like()), "to": step.parameters["to"], "status": "sent" }))
    });
}

/// `POST /api/orders/stream` body: the seed's `OrderContext`.
#[derive(Debug, Deserialize)]
struct OrderRequest {
    order_id: String,
    items: Vec<String>,
    total_amount: f64,
    /// Makes a step fail to show compensation: `"reserve_inventory"`, `"process_payment"`
    /// or `"ship_order"`.
    #[serde(default)]
    fail_step: Option<String>,
}

/// The order saga (seed 004): reserve inventory, process payment, ship; the first two
/// are compensated (release, refund) when a later step fails.
fn order_steps(order: &OrderRequest) -> Vec<SagaStep> {
    let fail = |step: &str| order.fail_step.as_deref() == Some(step);
    vec![
        SagaStep::new(
            "Reserve Inventory",
            "reserve_inventory",
            json!({ "order_id": order.order_id, "items": order.items, "fail": fail("reserve_inventory") }),
        )
        .with_compensation("release_inventory", json!({ "order_id": order.order_id })),
        SagaStep::new(
            "Process Payment",
            "process_payment",
            json!({ "order_id": order.order_id, "amount": order.total_amount, "fail": fail("process_payment") }),
        )
        .with_compensation(
            "refund_payment",
            json!({ "order_id": order.order_id, "amount": order.total_amount }),
        ),
        SagaStep::new(
            "Ship Order",
            "ship_order",
            json!({ "order_id": order.order_id, "items": order.items, "fail": fail("ship_order") }),
        ),
    ]
}

/// `POST /api/orders/stream`: runs the order saga and streams its progress as
/// server-sent events: `start`, the saga's own events (`step_started`,
/// `step_succeeded`, `step_failed`, `compensating`, `step_compensated`, ..., `finished`;
/// [`SagaEvent::to_sse`]), then `complete`.
///
/// Exactly once without the middleware (the route is exempt from it, because the
/// middleware delivers a streamed response live and does not store it, so its retries
/// would get 410): the `Idempotency-Key`, in the caller's scope, is the saga's own
/// idempotency key. A retry finds the saga and streams its stored history (`start` with
/// `"replayed": true`, the journal, `complete`) without running a step again; a retry
/// while it still runs gets 409, the same key with another order 422. Without a key every
/// request is a new order.
async fn stream_order(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(order): Json<OrderRequest>,
) -> Response {
    let key = match headers.get("idempotency-key").map(|v| v.to_str()) {
        None => None,
        Some(Ok(key)) => Some(key.to_owned()),
        Some(Err(_)) => {
            return Problem::new(ProblemKind::KeyInvalid, "Idempotency-Key is not ASCII")
                .into_response();
        }
    };
    let mut request = axum::http::Request::new(());
    *request.headers_mut() = headers;
    let (parts, ()) = request.into_parts();
    let scope = match HeaderScope::seed().extract(&parts) {
        Ok(scope) => scope,
        Err(rejection) => {
            return Problem::new(ProblemKind::ScopeMissing, rejection.detail)
                .status(rejection.status)
                .into_response();
        }
    };
    let steps = order_steps(&order);
    let asked: Vec<Value> = steps.iter().map(|s| s.parameters.clone()).collect();
    let mut new = NewSaga::new(scope.tenant_id.clone(), "order", steps);
    if let Some(key) = &key {
        new = new.idempotency_key(scope.storage_key(key));
    }
    let engine = state.manager.saga_engine();
    match engine.create_saga(new).await {
        Ok(Creation::Created(saga)) => live_saga(engine, saga.saga_id),
        Ok(Creation::Existing(saga)) => {
            if !saga.steps.iter().map(|s| &s.parameters).eq(asked.iter()) {
                return Problem::new(
                    ProblemKind::KeyReused,
                    "this Idempotency-Key was used for another order",
                )
                .into_response();
            }
            match saga.status {
                status if status.is_terminal() => replay_saga(&state.manager, &saga).await,
                // Stored by an attempt that never started it: run it now.
                SagaStatus::Pending => live_saga(engine, saga.saga_id),
                _ => Problem::new(ProblemKind::InFlight, "this order's saga is still running")
                    .into_response(),
            }
        }
        Err(SagaError::Invalid(e)) => {
            Problem::new(ProblemKind::KeyInvalid, e.to_string()).into_response()
        }
        Err(e) => internal(&e.to_string()),
    }
}

/// One SSE message of the demo's own (`start`, `complete`).
fn sse_frame(data: &Value) -> String {
    let kind = data["type"].as_str().unwrap_or("message");
    format!("event: {kind}\ndata: {data}\n\n")
}

fn sse_start(saga_id: &str, replayed: bool) -> String {
    sse_frame(&json!({ "type": "start", "saga_id": saga_id, "replayed": replayed }))
}

fn sse_complete(saga_id: &str, status: Option<SagaStatus>, replayed: bool) -> String {
    sse_frame(&json!({
        "type": "complete",
        "saga_id": saga_id,
        "status": status,
        "succeeded": status == Some(SagaStatus::Completed),
        "replayed": replayed,
    }))
}

/// Executes the saga, streaming its events as they happen. The saga runs in a task of
/// its own: a client that hangs up does not stop it.
fn live_saga(engine: &SagaEngine, saga_id: String) -> Response {
    let mut events = engine.execute_stream(&saga_id);
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let _ = tx.unbounded_send(sse_start(&saga_id, false));
    tokio::spawn(async move {
        let mut status = None;
        while let Some(event) = events.recv().await {
            status = Some(event.status);
            if tx.unbounded_send(event.to_sse()).is_err() {
                return;
            }
        }
        let _ = tx.unbounded_send(sse_complete(&saga_id, status, false));
    });
    sse_response(rx, false)
}

/// Streams an ended saga's stored history.
async fn replay_saga(manager: &BackgroundOperationsManager, saga: &SagaWorkflow) -> Response {
    match manager.get_saga_history(&saga.saga_id).await {
        Ok(history) => {
            let mut frames = vec![sse_start(&saga.saga_id, true)];
            frames.extend(history.iter().map(SagaEvent::to_sse));
            frames.push(sse_complete(&saga.saga_id, Some(saga.status), true));
            sse_response(futures::stream::iter(frames), true)
        }
        Err(e) => internal(&e.to_string()),
    }
}

fn sse_response(frames: impl Stream<Item = String> + Send + 'static, replayed: bool) -> Response {
    use futures::StreamExt as _;
    let body = axum::body::Body::from_stream(frames.map(Ok::<_, Infallible>));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-cache"),
    );
    headers.insert(
        "x-cache-hit",
        axum::http::HeaderValue::from_static(if replayed { "true" } else { "false" }),
    );
    response
}

/// Registers the order saga's handlers; each call is counted in `calls`. A step whose
/// parameters say `"fail": true` fails for good, to show compensation.
fn register_order_handlers(manager: &BackgroundOperationsManager, calls: &Arc<AtomicU64>) {
    for operation in ["reserve_inventory", "process_payment", "ship_order"] {
        let calls = Arc::clone(calls);
        manager.register_operation_handler(operation, move |step| {
            calls.fetch_add(1, Ordering::Relaxed);
            async move {
                if step.parameters["fail"] == true {
                    return Err(StepError::terminal(format!(
                        "{operation} failed (fail_step)"
                    )));
                }
                let order_id = step.parameters["order_id"].as_str().unwrap_or_default();
                Ok(json!({ "id": format!("{operation}-{order_id}"), "step_key": step.step_key() }))
            }
        });
    }
    for operation in ["release_inventory", "refund_payment"] {
        let calls = Arc::clone(calls);
        manager.register_compensation_handler(operation, move |step| {
            calls.fetch_add(1, Ordering::Relaxed);
            async move { Ok(json!({ "order_id": step.parameters["order_id"], "undone": operation })) }
        });
    }
}

/// The application: routes, the idempotency middleware on the manager's engine, and the
/// timeouts that keep a slow client from holding a claim (see the module docs).
fn app(
    manager: BackgroundOperationsManager,
    config: IdempotencyConfig,
    prometheus: PrometheusHandle,
) -> Router {
    // The read-only board (sagas, tasks, idempotency records, live over SSE) at /bgops.
    let board = bgops_board::router(manager.storage().clone());
    let accounts = Accounts::default();
    register_saga_handlers(&manager, &accounts);
    let order_calls = Arc::new(AtomicU64::new(0));
    register_order_handlers(&manager, &order_calls);
    let engine = manager.idempotency_engine().clone();
    let config = config
        .exempt_path("/health")
        .exempt_path("/api/status/*")
        .exempt_path("/api/debug/*")
        .exempt_path("/api/order-status/*")
        // Exactly once through the saga's idempotency key (see `stream_order`).
        .exempt_path("/api/orders/stream")
        .require_key_on("/api/register-user")
        .require_key_on("/api/orders");
    let queue = TaskQueue::new(manager.storage().clone());
    let m = manager.clone();
    let worker = Worker::new(queue.clone(), move |ctx: TaskContext| {
        checkout(m.clone(), ctx)
    })
    .queue_name("orders")
    .spawn();
    Router::new()
        .route("/api/send-email", post(send_email))
        .route("/api/register-user", post(register_user))
        .route("/api/orders", post(place_order))
        .route("/api/orders/stream", post(stream_order))
        .route("/api/order-status/{task_id}", get(order_status))
        .route("/api/status/{key}", get(status))
        .route("/api/debug/storage-stats", get(storage_stats))
        .route("/health", get(health))
        .layer(IdempotencyLayer::with_config(engine, config))
        // Outside the idempotency layer: a stalled body fails before a claim is made, and
        // a request that takes too long answers 408 while its claimed handler runs on.
        .layer(RequestBodyTimeoutLayer::new(Duration::from_secs(10)))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .with_state(AppState {
            manager,
            accounts,
            order_calls,
            queue,
            _worker: Arc::new(worker),
        })
        .nest("/bgops", board)
        .route(
            "/metrics",
            get(move || std::future::ready(prometheus.render())),
        )
}

fn print_curl_commands(addr: SocketAddr, backend: &str) {
    let base = format!("http://{addr}");
    println!(
        r#"bgops demo service on {base} (storage: {backend}); Ctrl-C to stop.

# First request - executes operation (X-Cache-Hit: false)
curl -i -X POST '{base}/api/send-email' \
  -H 'Content-Type: application/json' \
  -H 'Idempotency-Key: test-123' \
  -d '{{"to":"user@example.com","subject":"Test","body":"Hello!"}}'

# Second request - returns the stored result (X-Cache-Hit: true, Idempotent-Replayed: true)
curl -i -X POST '{base}/api/send-email' \
  -H 'Content-Type: application/json' \
  -H 'Idempotency-Key: test-123' \
  -d '{{"to":"user@example.com","subject":"Test","body":"Hello!"}}'

# Same key, different request - 422
curl -i -X POST '{base}/api/send-email' \
  -H 'Content-Type: application/json' \
  -H 'Idempotency-Key: test-123' \
  -d '{{"to":"other@example.com","subject":"Test","body":"Hello!"}}'

# Saga success
curl -X POST '{base}/api/register-user' \
  -H 'Content-Type: application/json' \
  -H 'Idempotency-Key: user-success-123' \
  -d '{{"username":"johndoe","email":"john@example.com","full_name":"John Doe","send_welcome_email":true}}'

# Saga failure with compensation (the account is deleted again)
curl -X POST '{base}/api/register-user' \
  -H 'Content-Type: application/json' \
  -H 'Idempotency-Key: user-fail-123' \
  -d '{{"username":"janedoe","email":"jane@example.com","full_name":"Jane Doe","send_welcome_email":true,"fail_step":"send_welcome_email"}}'

# One key end to end: the request's key -> a task -> the saga that task runs (202 + task id;
# a retry replays it; GET /api/order-status/<task_id> shows the task and its saga)
curl -i -X POST '{base}/api/orders' \
  -H 'Content-Type: application/json' \
  -H 'Idempotency-Key: order-1' \
  -d '{{"item":"book-42"}}'

# Order saga, its progress streamed as server-sent events (run it twice: the retry
# streams the stored history; add "fail_step":"process_payment" to see compensation)
curl -N -X POST '{base}/api/orders/stream' \
  -H 'Content-Type: application/json' \
  -H 'Idempotency-Key: order-123' \
  -d '{{"order_id":"123","items":["item_1"],"total_amount":100.0}}'

# The board (open in a browser) and Prometheus metrics
#   {base}/bgops
curl '{base}/metrics'

# Check status by idempotency key
curl '{base}/api/status/test-123'

# Check storage statistics
curl '{base}/api/debug/storage-stats'

# Health
curl '{base}/health'
"#
    );
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let addr: SocketAddr = std::env::var("BGOPS_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:8000".to_owned())
        .parse()
        .map_err(|e| format!("BGOPS_ADDR: {e}"))?;
    // The Prometheus recorder behind GET /metrics; the manager reports to it.
    let prometheus = PrometheusBuilder::new().install_recorder()?;
    // Redis, PostgreSQL or NATS when REDIS_URL, DATABASE_URL or NATS_URL is set, memory
    // otherwise.
    let config = bgops::Config::from_env()?;
    let metrics = Arc::new(bgops_metrics::MetricsRecorder::new());
    // On PostgreSQL the demo also mounts `POST /api/db-orders` (db_orders.rs): the order
    // row and its idempotency record commit in one transaction.
    let (manager, orders) = if let Some(url) = &config.database_url {
        {
            let storage = Arc::new(
                bgops::postgres::PostgresStorage::builder(url.as_str())
                    .migrate(true)
                    .build()
                    .await?,
            );
            let manager = BackgroundOperationsManager::builder()
                .storage(storage.clone())
                .config(config)
                .metrics(metrics)
                .build()?;
            let orders =
                db_orders::Orders::new(manager.idempotency_engine().clone(), storage).await?;
            (manager, Some(orders))
        }
    } else {
        let manager = BackgroundOperationsManager::builder()
            .storage(bgops::storage_from_config(&config).await?)
            .config(config)
            .metrics(metrics)
            .build()?;
        (manager, None)
    };
    manager.start().await;
    let backend = manager.storage().backend_name();
    let mut app = app(manager.clone(), IdempotencyConfig::from_env()?, prometheus);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    print_curl_commands(listener.local_addr()?, backend);
    if let Some(orders) = orders {
        // Outside the HTTP middleware: the handler claims the key and stores the
        // response in its own transaction.
        app = app.merge(orders.router());
        println!(
            "# PostgreSQL only - the order and its idempotency record commit together\n\
             curl -i -X POST 'http://{}/api/db-orders' -H 'Content-Type: application/json' \\\n  \
             -H 'Idempotency-Key: order-1' -d '{{\"item\":\"widget\",\"quantity\":3}}'\n",
            listener.local_addr()?
        );
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
            println!("shutting down");
        })
        .await?;
    manager.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The seed's curl scenarios, over real TCP.

    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    struct Reply {
        status: u16,
        headers: HeaderMap,
        json: Value,
    }

    async fn start() -> (String, BackgroundOperationsManager) {
        let manager = BackgroundOperationsManager::in_memory();
        let app = app(
            manager.clone(),
            IdempotencyConfig::default(),
            PrometheusBuilder::new().build_recorder().handle(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (base, manager)
    }

    async fn call(method: &str, url: &str, key: Option<&str>, body: &str) -> Reply {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let mut req = axum::http::Request::builder()
            .method(method)
            .uri(url)
            .header("content-type", "application/json");
        if let Some(key) = key {
            req = req.header("idempotency-key", key);
        }
        let res = client
            .request(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap())
            .await
            .unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    const EMAIL: &str = r#"{"to":"user@example.com","subject":"Test","body":"Hello!"}"#;

    #[tokio::test]
    async fn test_idempotency_scenario() {
        let (base, _) = start().await;
        let url = format!("{base}/api/send-email");
        let first = call("POST", &url, Some("test-123"), EMAIL).await;
        assert_eq!(first.status, 200);
        assert_eq!(first.headers["x-cache-hit"], "false");
        let second = call("POST", &url, Some("test-123"), EMAIL).await;
        assert_eq!(second.status, 200);
        assert_eq!(second.headers["x-cache-hit"], "true");
        assert_eq!(second.json, first.json);
        let other = call(
            "POST",
            &url,
            Some("test-123"),
            &EMAIL.replace("user@", "other@"),
        )
        .await;
        assert_eq!(other.status, 422);
        // Monitor operation status.
        let status = call("GET", &format!("{base}/api/status/test-123"), None, "").await;
        assert_eq!(status.status, 200);
        assert_eq!(status.json["status"], "completed");
        assert_eq!(
            status.json["result"]["message_id"],
            first.json["message_id"]
        );
        assert_eq!(
            call("GET", &format!("{base}/api/status/nope"), None, "")
                .await
                .status,
            404
        );
    }

    /// Issue 10 item 4 through the demo: a request without a user sends the storage key
    /// of a user's record, to the POST and to the status lookup; it sees neither.
    #[tokio::test]
    async fn test_scoped_keys_cannot_be_reached_unscoped() {
        let (base, manager) = start().await;
        let url = format!("{base}/api/send-email");
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let req = axum::http::Request::post(&url)
            .header("content-type", "application/json")
            .header("idempotency-key", "k-alice")
            .header("x-user-id", "alice")
            .body(Full::new(Bytes::from(EMAIL)))
            .unwrap();
        assert_eq!(client.request(req).await.unwrap().status(), 200);
        let alices = bgops::axum::Scope::tenant("default")
            .with_user("alice")
            .storage_key("k-alice");
        let status = call("GET", &format!("{base}/api/status/{alices}"), None, "").await;
        assert_eq!(status.status, 404, "{}", status.json);
        let attack = call("POST", &url, Some(&alices), EMAIL).await;
        assert_eq!(attack.headers["x-cache-hit"], "false");
        assert!(
            manager
                .check_idempotency("default", &alices)
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn test_saga_success_and_compensation() {
        let (base, manager) = start().await;
        let url = format!("{base}/api/register-user");
        let body = r#"{"username":"johndoe","email":"john@example.com","full_name":"John Doe","send_welcome_email":true}"#;
        let ok = call("POST", &url, Some("user-success-123"), body).await;
        assert_eq!(ok.status, 201, "{}", ok.json);
        assert_eq!(ok.json["success"], true);
        assert_eq!(ok.json["steps"].as_array().unwrap().len(), 2);
        let again = call("POST", &url, Some("user-success-123"), body).await;
        assert_eq!(again.json, ok.json);
        assert_eq!(again.headers["x-cache-hit"], "true");

        let failing = r#"{"username":"janedoe","email":"jane@example.com","full_name":"Jane Doe","fail_step":"send_welcome_email"}"#;
        let failed = call("POST", &url, Some("user-fail-123"), failing).await;
        assert_eq!(failed.status, 422, "{}", failed.json);
        assert_eq!(failed.json["status"], "compensated");
        let stats = call("GET", &format!("{base}/api/debug/storage-stats"), None, "").await;
        assert_eq!(stats.status, 200);
        assert_eq!(
            stats.json["accounts"], 1,
            "jane's account was compensated: {}",
            stats.json
        );
        assert_eq!(stats.json["backend"], manager.storage().backend_name());

        let missing_key = call("POST", &url, None, body).await;
        assert_eq!(missing_key.status, 400);
        let health = call("GET", &format!("{base}/health"), None, "").await;
        assert_eq!(
            (health.status, health.json["status"].clone()),
            (200, json!("healthy"))
        );
    }

    /// Reads an SSE response to its end: the status, the content type and the JSON of
    /// every `data:` line.
    async fn stream(url: &str, key: Option<&str>, body: &str) -> (u16, String, Vec<Value>) {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let mut req = axum::http::Request::post(url).header("content-type", "application/json");
        if let Some(key) = key {
            req = req.header("idempotency-key", key);
        }
        let res = client
            .request(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap())
            .await
            .unwrap();
        let status = res.status().as_u16();
        let content_type = res
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let events = text
            .lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .map(|data| serde_json::from_str(data).unwrap())
            .collect();
        (status, content_type, events)
    }

    /// The `type`s of the events, with the step name where there is one.
    fn timeline(events: &[Value]) -> Vec<String> {
        events
            .iter()
            .filter(|e| !matches!(e["type"].as_str(), Some("created" | "resumed")))
            .map(|e| match e["name"].as_str() {
                Some(name) => format!("{} {name}", e["type"].as_str().unwrap()),
                None => e["type"].as_str().unwrap().to_owned(),
            })
            .collect()
    }

    async fn order_calls(base: &str) -> u64 {
        let stats = call("GET", &format!("{base}/api/debug/storage-stats"), None, "").await;
        stats.json["order_calls"].as_u64().unwrap()
    }

    const ORDER: &str = r#"{"order_id": "123", "items": ["item_1"], "total_amount": 100.0}"#;

    #[tokio::test]
    async fn test_order_stream_and_replay() {
        let (base, _) = start().await;
        let url = format!("{base}/api/orders/stream");
        let (status, content_type, events) = stream(&url, Some("order-123"), ORDER).await;
        assert_eq!(status, 200, "{events:?}");
        assert_eq!(content_type, "text/event-stream");
        let expected = [
            "start",
            "step_started Reserve Inventory",
            "step_succeeded Reserve Inventory",
            "step_started Process Payment",
            "step_succeeded Process Payment",
            "step_started Ship Order",
            "step_succeeded Ship Order",
            "finished",
            "complete",
        ];
        assert_eq!(timeline(&events), expected);
        let last = events.last().unwrap();
        assert_eq!(
            (&last["status"], &last["replayed"]),
            (&json!("completed"), &json!(false))
        );
        assert_eq!(order_calls(&base).await, 3);

        // The retry streams the stored history; no step runs again.
        let (status, _, replayed) = stream(&url, Some("order-123"), ORDER).await;
        assert_eq!(status, 200, "{replayed:?}");
        assert_eq!(timeline(&replayed), expected);
        assert_eq!(replayed[0]["replayed"], true);
        assert_eq!(replayed[0]["saga_id"], events[0]["saga_id"]);
        assert_eq!(replayed.last().unwrap()["status"], "completed");
        assert_eq!(order_calls(&base).await, 3);

        // The same key for another order.
        let other = call(
            "POST",
            &url,
            Some("order-123"),
            &ORDER.replace("123", "124"),
        )
        .await;
        assert_eq!(other.status, 422, "{}", other.json);
        // Without a key, every request is a new order.
        stream(&url, None, ORDER).await;
        stream(&url, None, ORDER).await;
        assert_eq!(order_calls(&base).await, 9);
    }

    #[tokio::test]
    async fn test_order_stream_shows_compensation() {
        let (base, _) = start().await;
        let url = format!("{base}/api/orders/stream");
        let failing = ORDER.replace('}', r#", "fail_step": "process_payment"}"#);
        let (status, _, events) = stream(&url, Some("order-fail"), &failing).await;
        assert_eq!(status, 200);
        let expected = [
            "start",
            "step_started Reserve Inventory",
            "step_succeeded Reserve Inventory",
            "step_started Process Payment",
            "step_failed Process Payment",
            "compensating",
            "compensation_started Reserve Inventory",
            "step_compensated Reserve Inventory",
            "finished",
            "complete",
        ];
        assert_eq!(timeline(&events), expected);
        assert_eq!(events.last().unwrap()["status"], "compensated");
        // reserve, payment, release.
        assert_eq!(order_calls(&base).await, 3);
        let (_, _, replayed) = stream(&url, Some("order-fail"), &failing).await;
        assert_eq!(timeline(&replayed), expected);
        assert_eq!(replayed.last().unwrap()["status"], "compensated");
        assert_eq!(order_calls(&base).await, 3);
    }
    /// The board and the Prometheus endpoint are mounted; the board shows the order saga.
    #[tokio::test]
    async fn test_board_and_metrics_are_mounted() {
        let (base, _) = start().await;
        let (_, _, events) = stream(&format!("{base}/api/orders/stream"), None, ORDER).await;
        let saga_id = events[0]["saga_id"].as_str().unwrap();
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        for (path, needle) in [
            ("/bgops".to_owned(), ""),
            (format!("/bgops/sagas/{saga_id}"), "Reserve Inventory"),
            ("/metrics".to_owned(), ""),
        ] {
            let res = client
                .get(format!("{base}{path}").parse().unwrap())
                .await
                .unwrap();
            assert_eq!(res.status(), 200, "{path}");
            let bytes = res.into_body().collect().await.unwrap().to_bytes();
            assert!(String::from_utf8_lossy(&bytes).contains(needle), "{path}");
        }
    }

    /// One key end to end: request → task → saga; a retried request makes neither a
    /// second task nor a second saga.
    #[tokio::test]
    async fn test_one_key_from_request_to_task_to_saga() {
        let (base, manager) = start().await;
        let url = format!("{base}/api/orders");
        let body = r#"{"item":"book-42"}"#;
        let first = call("POST", &url, Some("order-1"), body).await;
        assert_eq!(first.status, 202, "{}", first.json);
        let again = call("POST", &url, Some("order-1"), body).await;
        assert_eq!(again.json["task_id"], first.json["task_id"]);
        assert_eq!(again.headers["x-cache-hit"], "true");
        let task_id = first.json["task_id"].as_str().unwrap().to_owned();
        let mut status = Value::Null;
        for _ in 0..500 {
            status = call(
                "GET",
                &format!("{base}/api/order-status/{task_id}"),
                None,
                "",
            )
            .await
            .json;
            if status["saga"]["status"] == "completed" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(status["saga"]["status"], "completed", "{status}");
        let key = first.json["key"].as_str().unwrap();
        assert_eq!(
            status["idempotency_key"], key,
            "the task carries the request's key"
        );
        assert_eq!(status["saga"]["idempotency_key"], key, "so does the saga");
        let saga_id = status["saga"]["saga_id"].as_str().unwrap();
        assert_eq!(
            status["saga"]["steps"][1]["result"]["charge"],
            format!("{saga_id}:1"),
            "a stable key for the step's external call"
        );
        let sagas = manager
            .saga_engine()
            .store()
            .list_sagas(&bgops::storage::SagaFilter::default())
            .await
            .unwrap();
        assert_eq!(
            sagas
                .iter()
                .filter(|s| s.workflow_type == "checkout")
                .count(),
            1
        );
        let missing_key = call("POST", &url, None, body).await;
        assert_eq!(missing_key.status, 400);
    }
}
