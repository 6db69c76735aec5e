//! The application the tests drive: handlers that count their runs.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bgops_axum::{IdempotencyConfig, IdempotencyContext, IdempotencyLayer, get_idempotency_key};
use bgops_idempotency::IdempotencyEngine;
use bgops_storage::IdempotencyStore;
use serde_json::json;

use crate::support::{Client, Counter, serve};

/// A running test server.
pub struct TestApp {
    pub client: Client,
    pub runs: Counter,
}

#[derive(serde::Deserialize)]
struct SlowQuery {
    ms: u64,
}

/// Serves the test routes behind the layer, on an engine with the default TTL and lease.
pub async fn start(store: Arc<dyn IdempotencyStore>, config: IdempotencyConfig) -> TestApp {
    start_on(IdempotencyEngine::builder(store).build(), config).await
}

/// Serves the test routes behind the layer, on `engine`.
pub async fn start_on(engine: IdempotencyEngine, config: IdempotencyConfig) -> TestApp {
    let (app, runs) = router(engine, config);
    let addr = serve(app).await;
    TestApp {
        client: Client::new(addr),
        runs,
    }
}

/// The test routes behind the layer, and the counter of handler runs.
pub fn router(engine: IdempotencyEngine, config: IdempotencyConfig) -> (Router, Counter) {
    let runs = Counter::default();
    let r = runs.clone();
    let echo = move |ctx: Option<IdempotencyContext>, body: String| {
        let n = r.inc();
        async move {
            let mut headers = HeaderMap::new();
            headers.insert("location", HeaderValue::from_static("/things/1"));
            headers.append("link", HeaderValue::from_static("</a>; rel=\"first\""));
            headers.append("link", HeaderValue::from_static("</b>; rel=\"second\""));
            headers.insert("set-cookie", HeaderValue::from_static("session=abc"));
            headers.insert("x-custom", HeaderValue::from_static("kept"));
            let body = json!({ "run": n, "key": ctx.map(|c| c.key().to_owned()), "echo": body });
            (StatusCode::CREATED, headers, Json(body))
        }
    };
    let r = runs.clone();
    let status = move |Path(code): Path<u16>| {
        let n = r.inc();
        async move { (StatusCode::from_u16(code).unwrap(), format!("run {n}")) }
    };
    let r = runs.clone();
    let panics = move || {
        let n = r.inc();
        async move {
            assert!(n > 1, "first run panics");
            format!("run {n}")
        }
    };
    let r = runs.clone();
    let slow = move |Query(q): Query<SlowQuery>| {
        let n = r.inc();
        async move {
            tokio::time::sleep(Duration::from_millis(q.ms)).await;
            Json(json!({ "run": n }))
        }
    };
    let r = runs.clone();
    let stream = move || {
        let n = r.inc();
        async move {
            let chunks = futures::stream::iter(
                ["chunk-1 ", "chunk-2"].map(|c| Ok::<_, std::io::Error>(bytes::Bytes::from(c))),
            );
            let _ = n;
            Body::from_stream(chunks).into_response()
        }
    };
    let r = runs.clone();
    let big = move || {
        let n = r.inc();
        async move {
            let _ = n;
            vec![b'x'; 2 << 20].into_response()
        }
    };
    let r = runs.clone();
    let with_result = move |req: axum::extract::Request| {
        let n = r.inc();
        async move {
            let key = get_idempotency_key(&req).map(str::to_owned);
            let ctx = req.extensions().get::<IdempotencyContext>().cloned();
            if let Some(ctx) = ctx {
                ctx.set_result(json!({ "attached": true, "run": n }));
            }
            Json(json!({ "key": key, "run": n }))
        }
    };
    let r = runs.clone();
    let long = move || {
        let n = r.inc();
        async move { format!("long {n}") }
    };
    let r = runs.clone();
    let plain = move || {
        let n = r.inc();
        async move { Response::new(Body::from(format!("run {n}"))) }
    };
    let app: Router = Router::new()
        .route(
            "/echo",
            post(echo.clone())
                .get(echo.clone())
                .put(echo.clone())
                .patch(echo),
        )
        .route("/status/{code}", post(status))
        .route("/panic", post(panics))
        .route("/slow", post(slow))
        .route("/stream", post(stream))
        .route("/big", post(big))
        .route("/result", post(with_result))
        .route("/health", post(plain.clone()).get(plain.clone()))
        .route("/admin/{*rest}", post(plain.clone()))
        .route("/required", post(plain))
        .route("/long/{*rest}", post(long))
        .route("/unused", get(|| async { "" }))
        .layer(IdempotencyLayer::with_config(engine, config));
    (app, runs)
}
