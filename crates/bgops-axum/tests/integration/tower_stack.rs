//! The layer in a plain tower stack, without axum's router.

use std::convert::Infallible;
use std::sync::Arc;

use bgops_axum::IdempotencyLayer;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tower::{ServiceBuilder, ServiceExt};

#[tokio::test]
async fn works_in_a_plain_tower_stack() {
    let runs = crate::support::Counter::default();
    let r = runs.clone();
    let svc =
        ServiceBuilder::new()
            .layer(IdempotencyLayer::new(
                bgops_idempotency::IdempotencyEngine::builder(crate::memory()).build(),
            ))
            .service_fn(move |_req: Request<axum::body::Body>| {
                let n = r.inc();
                async move {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!("run {n}")))))
                }
            });
    let req = || {
        Request::post("/x")
            .header("idempotency-key", "k1")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let a = svc.clone().oneshot(req()).await.unwrap();
    let b = svc.clone().oneshot(req()).await.unwrap();
    assert_eq!(b.headers()["idempotent-replayed"], "true");
    assert_eq!(a.into_body().collect().await.unwrap().to_bytes(), "run 1");
    assert_eq!(b.into_body().collect().await.unwrap().to_bytes(), "run 1");
    assert_eq!(runs.get(), 1);
    let _ = Arc::new(());
}
