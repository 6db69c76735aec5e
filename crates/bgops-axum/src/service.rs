//! The tower [`Service`] that applies semantics §3 to each request.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bgops_core::IdempotencyRecord;
use bgops_core::OperationOutcome;
use bgops_storage::{BeginOutcome, BeginRequest, BoxError, StorageError};
use bytes::Bytes;
use futures::FutureExt as _;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body::Body as HttpBody;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use serde_json::{Value, json};
use tokio::time::Instant;
use tower::Service;

use crate::claim::Claim;
use crate::config::{FailMode, InFlightPolicy};
use crate::extract::{IdempotencyContext, OperationResult};
use crate::key::parse_idempotency_key;
use crate::layer::Shared;
use crate::problem::{Problem, ProblemKind};
use crate::scope::Scope;
use crate::stored::{self, Stored};

/// Set to `true` on every replayed response.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// Set to `false` on responses that will not replay (not kept, or the store failed).
pub const IDEMPOTENCY_STORED: HeaderName = HeaderName::from_static("idempotency-stored");

const TRUE: HeaderValue = HeaderValue::from_static("true");
const FALSE: HeaderValue = HeaderValue::from_static("false");

/// The service made by [`IdempotencyLayer`](crate::IdempotencyLayer). Its inner service
/// receives `Request<axum::body::Body>` (the request body is buffered to fingerprint it);
/// it answers `Response<axum::body::Body>`.
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

/// The request as the middleware sees it once it knows it must protect it.
struct Protected {
    key: String,
    scope: Scope,
    storage_key: String,
    operation_type: String,
}

async fn passthrough<S, B, ResBody>(
    mut inner: S,
    req: Request<B>,
) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<Body>, Response = Response<ResBody>>,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    Ok(inner.call(req.map(Body::new)).await?.map(Body::new))
}

#[expect(
    clippy::unnecessary_wraps,
    reason = "shortens every early return of `handle`"
)]
fn problem<E>(p: Problem) -> Result<Response<Body>, E> {
    Ok(p.into_response())
}

async fn handle<S, B, ResBody>(
    shared: Arc<Shared>,
    inner: S,
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
    let cfg = &shared.config;
    let path = req.uri().path();
    if !cfg.methods.contains(req.method()) || cfg.exempt_paths.matches(path) {
        return passthrough(inner, req).await;
    }
    let mut values = req.headers().get_all(&cfg.key_header).iter();
    let key = match (values.next(), values.next()) {
        (None, _) if cfg.key_required(path) => {
            let detail = format!("{} header is required on {path}", cfg.key_header);
            return problem(Problem::new(ProblemKind::KeyMissing, detail));
        }
        (None, _) => return passthrough(inner, req).await,
        (Some(_), Some(_)) => {
            let detail = format!("{} header sent more than once", cfg.key_header);
            return problem(Problem::new(ProblemKind::KeyInvalid, detail));
        }
        (Some(value), None) => match parse_idempotency_key(value) {
            Ok(key) => key,
            Err(e) => return problem(Problem::new(ProblemKind::KeyInvalid, e.to_string())),
        },
    };
    let (parts, body) = req.into_parts();
    let scope = match cfg.scope.extract(&parts) {
        Ok(scope) => scope,
        Err(rejection) => {
            let p = Problem::new(ProblemKind::ScopeMissing, rejection.detail).key(&key);
            return problem(p.status(rejection.status));
        }
    };
    let too_large = || {
        let detail = format!("the request body is over {} bytes", cfg.max_request_bytes);
        problem(Problem::new(ProblemKind::BodyTooLarge, detail).key(&key))
    };
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > cfg.max_request_bytes as u64) {
        return too_large();
    }
    let bytes = match Limited::new(body, cfg.max_request_bytes).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return too_large(),
        Err(e) => {
            let p = Problem::new(ProblemKind::BodyUnreadable, e.to_string()).key(&key);
            return problem(p);
        }
    };
    let fingerprint = cfg.fingerprinter.fingerprint(&parts, &bytes);
    let storage_key = scope.storage_key(&key);
    let operation_type = format!("{} {}", parts.method, parts.uri.path());
    let begin = BeginRequest {
        tenant_id: scope.tenant_id.clone(),
        key: storage_key.clone(),
        user_id: scope.user_id.clone(),
        operation_type: operation_type.clone(),
        fingerprint: Some(fingerprint),
        parameters: None,
        ttl: cfg.ttl,
        lease: cfg.lease,
    };
    let p = Protected {
        key,
        scope,
        storage_key,
        operation_type,
    };
    let deadline = match cfg.in_flight {
        InFlightPolicy::Wait(d) => Some(Instant::now() + d),
        _ => None,
    };
    let mut poll_every = Duration::from_millis(10);
    let mut counted_in_flight = false;
    // The first attempt takes the request; only a duplicate that may wait keeps a copy.
    let retry_with = matches!(cfg.in_flight, InFlightPolicy::Wait(_)).then(|| begin.clone());
    let mut first = Some(begin);
    loop {
        let Some(request) = first.take().or_else(|| retry_with.clone()) else {
            let p = Problem::new(ProblemKind::InFlight, "still in progress").key(&p.key);
            return problem(p.retry_after(cfg.retry_after));
        };
        match shared.store.begin(request).await {
            Err(error) => return store_failed(&shared, inner, p, parts, bytes, &error).await,
            Ok(BeginOutcome::Started { token, record }) => {
                // Not kept: with no other holder, `complete` updates the stored record in
                // place instead of copying it (`..` would keep it alive to the match's end).
                drop(record);
                cfg.metrics
                    .idempotency_key_created(&p.operation_type, &p.scope.tenant_id);
                return run_claimed(shared, inner, p, parts, bytes, token).await;
            }
            Ok(BeginOutcome::Completed(record)) => {
                cfg.metrics
                    .idempotency_replayed(&p.operation_type, &p.scope.tenant_id);
                return Ok(replay(&shared, &p.key, &record));
            }
            Ok(BeginOutcome::Mismatch(_)) => {
                let detail = "this key was already used with a different request (method, path, query or body)";
                return problem(Problem::new(ProblemKind::KeyReused, detail).key(&p.key));
            }
            Ok(BeginOutcome::InProgress(_)) => {
                if !counted_in_flight {
                    cfg.metrics
                        .idempotency_in_flight(&p.operation_type, &p.scope.tenant_id);
                    counted_in_flight = true;
                }
                match (cfg.in_flight, deadline) {
                    (InFlightPolicy::Accepted202, _) => return Ok(accepted(&shared, &p.key)),
                    (InFlightPolicy::Wait(_), Some(deadline)) if Instant::now() < deadline => {
                        tokio::time::sleep_until(deadline.min(Instant::now() + poll_every)).await;
                        poll_every = (poll_every * 2).min(Duration::from_millis(200));
                    }
                    _ => {
                        let detail =
                            "a request with this key is still being processed; retry later";
                        let p = Problem::new(ProblemKind::InFlight, detail).key(&p.key);
                        return problem(p.retry_after(cfg.retry_after));
                    }
                }
            }
        }
    }
}

/// Runs the handler under a claim, keeps the lease alive, and stores (or releases).
async fn run_claimed<S, ResBody>(
    shared: Arc<Shared>,
    mut inner: S,
    p: Protected,
    mut parts: http::request::Parts,
    bytes: Bytes,
    token: String,
) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<Body>, Response = Response<ResBody>>,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    let cfg = &shared.config;
    let mut claim = Claim::new(
        Arc::clone(&shared),
        p.scope.tenant_id.clone(),
        p.storage_key.clone(),
        token,
    );
    let ctx = IdempotencyContext::new(p.key.clone(), p.storage_key.clone(), p.scope.clone(), true);
    parts.extensions.insert(ctx.clone());
    let call =
        AssertUnwindSafe(inner.call(Request::from_parts(parts, Body::from(bytes)))).catch_unwind();
    let outcome = renewing(&shared, &claim, call).await;
    let response = match outcome {
        Err(panic) => {
            claim.release().await;
            std::panic::resume_unwind(panic);
        }
        Ok(Err(e)) => {
            claim.release().await;
            return Err(e);
        }
        Ok(Ok(response)) => response,
    };
    let (mut rparts, rbody) = response.into_parts();
    let status = rparts.status;
    if !(cfg.store_status)(status) {
        claim.release().await;
        mark(cfg, &mut rparts.headers, false, false);
        return Ok(Response::from_parts(rparts, Body::new(rbody)));
    }
    let fits = rbody
        .size_hint()
        .exact()
        .is_some_and(|n| n <= cfg.max_response_bytes as u64);
    if !fits {
        // Streamed or too large: deliver it live, and mark the key used so that a retry
        // gets a problem response rather than a second side effect.
        complete(
            &shared,
            &p,
            &mut claim,
            OperationOutcome::Succeeded(stored::unstored(status)),
        )
        .await;
        mark(cfg, &mut rparts.headers, false, false);
        return Ok(Response::from_parts(rparts, Body::new(rbody)));
    }
    let collected = rbody.collect().await.map_err(Into::<BoxError>::into);
    let body = match collected {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            let detail = format!("the handler's response body failed: {e}");
            claim.release().await;
            return problem(Problem::new(ProblemKind::ResponseFailed, detail).key(&p.key));
        }
    };
    let result = rparts
        .extensions
        .remove::<OperationResult>()
        .map(|r| r.0)
        .or_else(|| ctx.take_result())
        .or_else(|| {
            if cfg.json_body_as_result {
                json_body(&rparts.headers, &body)
            } else {
                None
            }
        })
        .unwrap_or(Value::Null);
    let encoded = stored::encode(
        status,
        &rparts.headers,
        &body,
        result,
        cfg.cache_hit_header.as_ref(),
    );
    let outcome = if status.is_success() {
        OperationOutcome::Succeeded(encoded)
    } else {
        OperationOutcome::Failed {
            error: format!("HTTP {status}"),
            result: Some(encoded),
        }
    };
    let stored = complete(&shared, &p, &mut claim, outcome).await;
    mark(cfg, &mut rparts.headers, false, stored);
    Ok(Response::from_parts(rparts, Body::from(body)))
}

/// Polls the handler, renewing the lease every third of it while the handler runs.
async fn renewing<F: Future>(shared: &Shared, claim: &Claim, call: F) -> F::Output {
    let period = shared.config.lease / 3;
    let mut call = std::pin::pin!(call);
    // Most handlers finish on their first poll: no timer is made for them.
    if let Poll::Ready(out) = futures::poll!(&mut call) {
        return out;
    }
    loop {
        tokio::select! {
            biased;
            out = &mut call => return out,
            () = tokio::time::sleep(period) => {
                let renewed = shared.store.renew(&claim.tenant, &claim.key, &claim.token, shared.config.lease).await;
                if let Err(error) = renewed {
                    shared.config.metrics.storage_error("idempotency_renew");
                    tracing::warn!(%error, key = %claim.key, "renewing an idempotency lease failed");
                }
            }
        }
    }
}

/// Records the outcome; `false` when the store did not take it.
async fn complete(
    shared: &Shared,
    p: &Protected,
    claim: &mut Claim,
    outcome: OperationOutcome,
) -> bool {
    let failed = matches!(outcome, OperationOutcome::Failed { .. });
    let done = shared
        .store
        .complete(&p.scope.tenant_id, &p.storage_key, &claim.token, outcome)
        .await;
    claim.disarm();
    match done {
        Ok(_) => {
            shared.config.metrics.idempotency_completed(
                &p.operation_type,
                &p.scope.tenant_id,
                failed,
            );
            true
        }
        Err(error) => {
            shared.config.metrics.storage_error("idempotency_complete");
            tracing::warn!(%error, key = %p.key, "storing an idempotent response failed; a retry may run the handler again");
            false
        }
    }
}

/// The store failed in `begin`: 503, or run unprotected when failing open.
async fn store_failed<S, ResBody>(
    shared: &Shared,
    mut inner: S,
    p: Protected,
    mut parts: http::request::Parts,
    bytes: Bytes,
    error: &StorageError,
) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<Body>, Response = Response<ResBody>>,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    let cfg = &shared.config;
    cfg.metrics.storage_error("idempotency_begin");
    match cfg.fail_mode {
        FailMode::Closed => {
            tracing::warn!(%error, key = %p.key, "idempotency store unavailable; failing closed (503)");
            let detail = "the idempotency store is unavailable; retry later";
            let pr = Problem::new(ProblemKind::StoreUnavailable, detail).key(&p.key);
            problem(pr.retry_after(cfg.retry_after))
        }
        FailMode::Open => {
            tracing::warn!(%error, key = %p.key, "idempotency store unavailable; failing open, running unprotected");
            parts.extensions.insert(IdempotencyContext::new(
                p.key,
                p.storage_key,
                p.scope,
                false,
            ));
            let response = inner
                .call(Request::from_parts(parts, Body::from(bytes)))
                .await?;
            let (mut rparts, rbody) = response.into_parts();
            mark(cfg, &mut rparts.headers, false, false);
            Ok(Response::from_parts(rparts, Body::new(rbody)))
        }
    }
}

/// The stored response, byte for byte, plus the replay markers.
fn replay(shared: &Shared, key: &str, record: &IdempotencyRecord) -> Response<Body> {
    match stored::decode(record.result.as_ref()) {
        Ok(Stored::Response(response)) => {
            let (mut parts, body) = response.into_parts();
            parts.headers.insert(IDEMPOTENT_REPLAYED, TRUE);
            if let Some(h) = &shared.config.cache_hit_header {
                parts.headers.insert(h.clone(), TRUE);
            }
            Response::from_parts(parts, Body::from(body))
        }
        Ok(Stored::NotStored(status)) => {
            let status = status.map_or_else(String::new, |s| format!(" (status {s})"));
            let detail = format!(
                "this key was already used; its response{status} was streamed or too large to keep, \
                 and the operation is not run again"
            );
            Problem::new(ProblemKind::ResponseNotStored, detail)
                .key(key)
                .into_response()
        }
        Err(error) => {
            tracing::warn!(%error, %key, "a stored idempotent response cannot be decoded");
            let detail = format!(
                "this key was already used, but its stored response cannot be read: {error}"
            );
            Problem::new(ProblemKind::ResponseNotStored, detail)
                .key(key)
                .into_response()
        }
    }
}

/// The seed's answer to a duplicate in flight.
fn accepted(shared: &Shared, key: &str) -> Response<Body> {
    let body = json!({
        "status": "in_progress",
        "message": "Operation in progress",
        "idempotency_key": key,
    });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = StatusCode::ACCEPTED;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let secs = shared.config.retry_after.as_secs().max(1);
    headers.insert(RETRY_AFTER, HeaderValue::from(secs));
    response
}

fn mark(cfg: &crate::IdempotencyConfig, headers: &mut http::HeaderMap, hit: bool, stored: bool) {
    if let Some(h) = &cfg.cache_hit_header {
        headers.insert(h.clone(), if hit { TRUE } else { FALSE });
    }
    if !stored {
        headers.insert(IDEMPOTENCY_STORED, FALSE);
    }
}

/// A JSON response body, kept as the record's result when the handler set none.
fn json_body(headers: &http::HeaderMap, body: &[u8]) -> Option<Value> {
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json") || ct.contains("+json"));
    if json && body.len() <= 64 * 1024 {
        serde_json::from_slice(body).ok()
    } else {
        None
    }
}
