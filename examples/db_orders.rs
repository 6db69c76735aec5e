//! `POST /api/db-orders`: the transactional path of the PostgreSQL backend over HTTP (issue
//! 11). Mounted only when the demo runs on PostgreSQL (`DATABASE_URL`).
//!
//! The handler claims the `Idempotency-Key` through the manager's engine, then inserts the
//! order row **and** stores the idempotency outcome (the response JSON as the record's
//! result, its body bytes as the payload) in one database transaction
//! ([`PostgresStorage::complete_in`]): both commit or neither does. A failure before the
//! commit rolls both back and releases the claim, so the key is claimable again and no
//! order exists. A retry after the commit replays the stored body byte for byte
//! (`Idempotent-Replayed: true`) without touching the orders table.
//!
//! The route is merged outside the HTTP idempotency middleware (`IdempotencyLayer`): the
//! handler drives the claim itself, because the middleware stores its response after the
//! handler returned, in a write of its own, not in the handler's transaction.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bgops::KeyStatus;
use bgops::axum::{HeaderScope, Problem, ProblemKind, ScopeExtractor, parse_idempotency_key};
use bgops::core::OperationOutcome;
use bgops::idempotency::{IdempotencyEngine, KeyRequest};
use bgops::postgres::PostgresStorage;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The operation type under which order keys are claimed.
const OPERATION: &str = "POST /api/db-orders";

/// What `POST /api/db-orders` needs: the engine that claims keys and the PostgreSQL store
/// whose pool runs the business transaction.
#[derive(Clone)]
pub struct Orders {
    engine: IdempotencyEngine,
    storage: Arc<PostgresStorage>,
}

/// The body of `POST /api/db-orders`.
#[derive(Debug, Deserialize, Serialize)]
struct NewOrder {
    item: String,
    quantity: i32,
}

impl Orders {
    /// The endpoint on `storage` (its schema also holds the demo's `demo_orders` table,
    /// created here if missing), claiming keys through `engine`.
    ///
    /// # Errors
    /// The database's, if the table cannot be created.
    pub async fn new(
        engine: IdempotencyEngine,
        storage: Arc<PostgresStorage>,
    ) -> Result<Self, sqlx::Error> {
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {}.demo_orders (\
               id bigserial PRIMARY KEY, \
               tenant_id text NOT NULL, \
               item text NOT NULL, \
               quantity integer NOT NULL, \
               created_at timestamptz NOT NULL DEFAULT statement_timestamp())",
            storage.schema()
        );
        sqlx::query(&ddl).execute(storage.pool()).await?;
        Ok(Self { engine, storage })
    }

    /// The route, to merge into the app.
    pub fn router(self) -> Router {
        Router::new()
            .route("/api/db-orders", post(create_order))
            .with_state(self)
    }
}

/// A problem response (RFC 9457) of the middleware's kinds.
fn problem(kind: ProblemKind, detail: impl Into<String>) -> Response {
    Problem::new(kind, detail.into()).into_response()
}

fn internal(detail: &str) -> Response {
    let body = json!({ "type": "about:blank", "title": "Internal error", "status": 500, "detail": detail });
    let mut response = (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response();
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

/// The order's response: the JSON body bytes exactly as stored with the order (the
/// record's payload), so a replay is byte for byte the first answer.
fn created(body: Bytes, replayed: bool) -> Response {
    let flag = if replayed { "true" } else { "false" };
    (
        StatusCode::CREATED,
        [
            (CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (
                HeaderName::from_static("idempotent-replayed"),
                HeaderValue::from_static(flag),
            ),
        ],
        body,
    )
        .into_response()
}

/// `POST /api/db-orders` (`Idempotency-Key` required; tenant from `X-Tenant-ID`): inserts an
/// order and stores its response in the same transaction. `X-Demo-Fail: after-insert`
/// makes the handler fail after the insert, before the commit (to show the rollback).
async fn create_order(
    State(orders): State<Orders>,
    headers: HeaderMap,
    Json(order): Json<NewOrder>,
) -> Response {
    let (parts, ()) = {
        let mut request = axum::http::Request::new(());
        *request.headers_mut() = headers.clone();
        request.into_parts()
    };
    let scope = match HeaderScope::seed().extract(&parts) {
        Ok(scope) => scope,
        Err(rejection) => return (rejection.status, rejection.detail).into_response(),
    };
    let Some(raw_key) = headers.get("idempotency-key") else {
        return problem(
            ProblemKind::KeyMissing,
            "POST /api/db-orders requires an Idempotency-Key",
        );
    };
    let key = match parse_idempotency_key(raw_key) {
        Ok(key) => key,
        Err(e) => return problem(ProblemKind::KeyInvalid, e.to_string()),
    };
    let request = match KeyRequest::for_operation(
        &scope.tenant_id,
        scope.user_id.as_deref(),
        OPERATION,
        Some(&scope.storage_key(&key)),
        Some(&order),
    ) {
        Ok(request) => request,
        Err(e) => return problem(ProblemKind::RequestInvalid, e.to_string()),
    };
    let claim = match orders.engine.begin(request).await {
        Ok(KeyStatus::Created(claim)) => claim,
        Ok(KeyStatus::Completed(record)) => {
            // The payload holds the body bytes sent the first time.
            let body = match &record.payload {
                Some(bytes) => bytes.clone(),
                None => match serde_json::to_vec(&record.result) {
                    Ok(json) => Bytes::from(json),
                    Err(e) => return internal(&format!("stored result: {e}")),
                },
            };
            return created(body, true);
        }
        Ok(KeyStatus::InProgress { .. }) => {
            return problem(ProblemKind::InFlight, "this order is being created");
        }
        Ok(KeyStatus::Mismatch { .. }) => {
            return problem(ProblemKind::KeyReused, "the key was used for another order");
        }
        Err(e) => return internal(&format!("cannot claim the key: {e}")),
    };
    let fail = headers
        .get("x-demo-fail")
        .is_some_and(|v| v == "after-insert");
    match insert_and_complete(&orders.storage, &claim, &scope.tenant_id, &order, fail).await {
        Ok(body) => created(body, false),
        Err(detail) => {
            // Rolled back (the transaction was dropped): no order, no outcome. The key
            // is released so that a retry runs at once rather than after the lease.
            if let Err(e) = orders.engine.release(&claim).await {
                tracing::warn!(key = claim.key(), error = %e, "release after rollback failed");
            }
            internal(&detail)
        }
    }
}

/// The transaction: the order row and the idempotency outcome, committed together.
async fn insert_and_complete(
    storage: &PostgresStorage,
    claim: &bgops::Claim,
    tenant_id: &str,
    order: &NewOrder,
    fail: bool,
) -> Result<Bytes, String> {
    let mut tx = storage
        .pool()
        .begin()
        .await
        .map_err(|e| format!("begin: {e}"))?;
    let insert = format!(
        "INSERT INTO {}.demo_orders (tenant_id, item, quantity) VALUES ($1, $2, $3) \
         RETURNING id",
        storage.schema()
    );
    let id: i64 = sqlx::query_scalar(&insert)
        .bind(tenant_id)
        .bind(&order.item)
        .bind(order.quantity)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| format!("insert: {e}"))?;
    if fail {
        return Err(format!(
            "demo failure after inserting order {id}: rolled back"
        ));
    }
    let body = json!({
        "order_id": id,
        "item": order.item,
        "quantity": order.quantity,
        "status": "created",
    });
    let bytes = Bytes::from(serde_json::to_vec(&body).map_err(|e| format!("encode: {e}"))?);
    storage
        .complete_in(
            &mut tx,
            claim.tenant_id(),
            claim.key(),
            claim.token(),
            // The result (for status lookups) and the exact body bytes (for replays).
            OperationOutcome::succeeded(body).with_payload(bytes.clone()),
        )
        .await
        .map_err(|e| format!("store outcome: {e}"))?;
    tx.commit().await.map_err(|e| format!("commit: {e}"))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    //! Over real TCP against PostgreSQL (`BGOPS_TEST_POSTGRES_URL`, or a throwaway server).

    use super::*;
    use bgops::BackgroundOperationsManager;
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use serde_json::Value;

    struct Reply {
        status: u16,
        headers: HeaderMap,
        body: Bytes,
    }

    async fn start() -> (String, Arc<PostgresStorage>, String) {
        let url = bgops_storage::testing::server::postgres::url();
        let schema = format!("bgops_orders_{}", uuid::Uuid::new_v4().simple());
        let storage = Arc::new(
            PostgresStorage::builder(url.as_str())
                .schema(&schema)
                .max_connections(4)
                .migrate(true)
                .build()
                .await
                .unwrap(),
        );
        let manager = BackgroundOperationsManager::new(storage.clone());
        let orders = Orders::new(manager.idempotency_engine().clone(), storage.clone())
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = orders.router();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (base, storage, schema)
    }

    async fn post(base: &str, key: &str, body: &str, fail: bool) -> Reply {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let mut req = axum::http::Request::post(format!("{base}/api/db-orders"))
            .header("content-type", "application/json")
            .header("x-tenant-id", "acme")
            .header("idempotency-key", key);
        if fail {
            req = req.header("x-demo-fail", "after-insert");
        }
        let res = client
            .request(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap())
            .await
            .unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn order_count(storage: &PostgresStorage) -> i64 {
        sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {}.demo_orders",
            storage.schema()
        ))
        .fetch_one(storage.pool())
        .await
        .unwrap()
    }

    async fn drop_schema(storage: &PostgresStorage, schema: &str) {
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .execute(storage.pool())
            .await
            .unwrap();
    }

    const ORDER: &str = r#"{"item":"widget","quantity":3}"#;

    #[tokio::test]
    async fn commit_stores_order_and_response_together_and_replays() {
        let (base, storage, schema) = start().await;
        let first = post(&base, "order-1", ORDER, false).await;
        assert_eq!(first.status, 201, "{:?}", first.body);
        assert_eq!(first.headers["idempotent-replayed"], "false");
        let again = post(&base, "order-1", ORDER, false).await;
        assert_eq!(again.status, 201);
        assert_eq!(again.headers["idempotent-replayed"], "true");
        assert_eq!(again.body, first.body, "replayed byte for byte");
        assert_eq!(order_count(&storage).await, 1, "the order ran once");
        // The record committed with the order holds the response.
        let record = bgops::storage::IdempotencyStore::get_idempotency(
            storage.as_ref(),
            "acme",
            &bgops::axum::Scope::tenant("acme").storage_key("order-1"),
        )
        .await
        .unwrap()
        .unwrap();
        let stored: Value = serde_json::from_slice(&first.body).unwrap();
        assert_eq!(record.result.as_ref(), Some(&stored));
        assert_eq!(record.payload.as_ref(), Some(&first.body));
        // Same key, other order: refused, nothing inserted.
        let reused = post(&base, "order-1", r#"{"item":"gadget","quantity":1}"#, false).await;
        assert_eq!(reused.status, 422);
        assert_eq!(order_count(&storage).await, 1);
        drop_schema(&storage, &schema).await;
    }

    #[tokio::test]
    async fn rollback_leaves_no_order_and_the_key_claimable() {
        let (base, storage, schema) = start().await;
        let failed = post(&base, "order-2", ORDER, true).await;
        assert_eq!(failed.status, 500);
        assert_eq!(order_count(&storage).await, 0, "the insert rolled back");
        // The key is claimable at once: the retry runs and commits.
        let retry = post(&base, "order-2", ORDER, false).await;
        assert_eq!(retry.status, 201, "{:?}", retry.body);
        assert_eq!(retry.headers["idempotent-replayed"], "false");
        assert_eq!(order_count(&storage).await, 1);
        let replay = post(&base, "order-2", ORDER, false).await;
        assert_eq!(replay.body, retry.body);
        assert_eq!(order_count(&storage).await, 1);
        drop_schema(&storage, &schema).await;
    }
}
