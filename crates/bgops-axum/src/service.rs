//! The tower [`Service`] that applies semantics §3 to each request: gate → admit → run.

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use bgops_storage::BoxError;
use bytes::Bytes;
use http::{Request, Response};
use http_body::Body as HttpBody;
use tower::Service;

use crate::admit::{Admission, admit};
use crate::gate::{Gate, gate};
use crate::run::{run_claimed, run_unprotected};
use crate::shared::Shared;

/// The service made by [`IdempotencyLayer`](crate::IdempotencyLayer). Its inner service
/// receives `Request<axum::body::Body>` (the request body is buffered to fingerprint it);
/// it answers `Response<axum::body::Body>`. A claimed request runs the inner service in
/// its own task, so the inner service and its future must be `Send + 'static`.
pub struct IdempotencyService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: Clone> Clone for IdempotencyService<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for IdempotencyService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdempotencyService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> IdempotencyService<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }
}

impl<S, B, ResBody> Service<Request<B>> for IdempotencyService<S>
where
    S: Service<Request<Body>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = crate::future::ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The instance that was polled ready is the one to call; keep a fresh clone.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        crate::future::ResponseFuture::new(Box::pin(handle(shared, inner, req)))
    }
}

/// One request: gate (4xx for bad input, or pass through), admit (claim, replay,
/// duplicate, mismatch, store failure), run (the handler under the claim).
async fn handle<S, B, ResBody>(
    shared: Arc<Shared>,
    mut inner: S,
    req: Request<B>,
) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<Body>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    let (gated, request) = match gate(&shared.config, req).await {
        Ok(Gate::Protect(gated, request)) => (gated, request),
        Ok(Gate::Pass(req)) => {
            return Ok(inner.call(req.map(Body::new)).await?.map(Body::new));
        }
        Err(problem) => return Ok(problem.into_response()),
    };
    match admit(&shared, &gated, request).await {
        Ok(Admission::Run(claim)) => run_claimed(shared, inner, gated, claim).await,
        Ok(Admission::Respond(response)) => Ok(response),
        Ok(Admission::Unprotected) => run_unprotected(&shared, inner, gated).await,
        Err(problem) => Ok(problem.into_response()),
    }
}
