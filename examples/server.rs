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
//! `GET /api/status/{key}`, `GET /api/debug/storage-stats`, `GET /health`; on PostgreSQL (`DATABASE_URL`) also
//! `POST /api/db-orders` (`db_orders.rs`: the order row and its idempotency record commit
//! in one transaction). The middleware runs
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
use std::net::SocketAddr;
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
use bgops::core::SagaStep;
use bgops::queue::{NewTask, TaskContext, TaskError, TaskQueue, Worker, WorkerHandle};
use bgops::saga::{NewSaga, SagaStatus, StepError};
use serde::Deserialize;
use serde_json::{Value, json};
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

/// The demo's state: the manager (storage + saga engine) and a pretend user database
/// that the saga writes to and compensates.
#[derive(Clone)]
struct AppState {
    manager: BackgroundOperationsManager,
    accounts: Accounts,
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

/// The application: routes, the idempotency middleware on the manager's engine, and the
/// timeouts that keep a slow client from holding a claim (see the module docs).
fn app(manager: BackgroundOperationsManager, config: IdempotencyConfig) -> Router {
    let accounts = Accounts::default();
    register_saga_handlers(&manager, &accounts);
    let engine = manager.idempotency_engine().clone();
    let config = config
        .exempt_path("/health")
        .exempt_path("/api/status/*")
        .exempt_path("/api/debug/*")
        .exempt_path("/api/order-status/*")
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
            queue,
            _worker: Arc::new(worker),
        })
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
    // Redis when REDIS_URL is set, PostgreSQL when DATABASE_URL is, memory otherwise.
    let config = bgops::Config::from_env()?;
    let (manager, orders) = match &config.database_url {
        // On PostgreSQL the demo also mounts `POST /api/db-orders` (db_orders.rs): the order
        // row and its idempotency record commit in one transaction.
        Some(url) => {
            let storage = Arc::new(
                bgops::postgres::PostgresStorage::builder(url.as_str())
                    .migrate(true)
                    .build()
                    .await?,
            );
            let manager = BackgroundOperationsManager::builder()
                .storage(storage.clone())
                .config(config)
                .build()?;
            let orders =
                db_orders::Orders::new(manager.idempotency_engine().clone(), storage).await?;
            (manager, Some(orders))
        }
        None => (BackgroundOperationsManager::from_env().await?, None),
    };
    manager.start().await;
    let backend = manager.storage().backend_name();
    let mut app = app(manager.clone(), IdempotencyConfig::from_env()?);
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
        let app = app(manager.clone(), IdempotencyConfig::default());
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
