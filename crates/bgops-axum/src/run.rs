//! Step 3 of a protected request: run the handler under the claim, detached from the
//! connection, capture its response and store it (or release the claim).

use axum::body::Body;
use bgops_core::OperationOutcome;
use bgops_idempotency::{Claim, Ran, Settle, Stored};
use bgops_storage::BoxError;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Request, Response};
use http_body::Body as HttpBody;
use http_body_util::BodyExt as _;
use serde_json::Value;
use std::sync::Arc;
use tower::Service;

use crate::extract::{IdempotencyContext, OperationResult};
use crate::gate::Gated;
use crate::headers::{Kept, mark_first};
use crate::problem::{Problem, ProblemKind};
use crate::shared::Shared;
use crate::stored;

/// The response of a first execution and whether a retry can replay it.
struct Captured {
    response: Response<Body>,
    replayable: bool,
}

/// Runs the handler under `claim` in its own task: a client that disconnects or times out
/// drops this future, not the handler; the handler finishes, its response is stored and
/// the client's retry replays it (or waits for it while the claim is held).
pub(crate) async fn run_claimed<S, ResBody>(
    shared: Arc<Shared>,
    mut inner: S,
    g: Gated,
    claim: Claim,
) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<Body>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    let (request, ctx) = handler_request(g, true);
    let kept_ctx = ctx.clone(); // an Arc: names the key if the run is aborted
    let call = inner.call(request);
    let work_shared = Arc::clone(&shared);
    let work = async move {
        match call.await {
            Err(e) => Settle::Release(Err(e)),
            Ok(response) => capture(&work_shared, &ctx, response).await.map(Ok),
        }
    };
    let ran = shared.engine.spawn_claimed(claim, work).await;
    let cache_hit = shared.config.cache_hit_header.as_ref();
    match ran {
        Ok(Ran { value, stored }) => {
            let Captured {
                mut response,
                replayable,
            } = value?;
            let kept = match stored {
                Stored::Yes(_) if replayable => Kept::Yes,
                Stored::Pending if replayable => Kept::Pending,
                _ => Kept::No,
            };
            mark_first(response.headers_mut(), cache_hit, kept);
            Ok(response)
        }
        Err(error) => {
            // Only `Aborted` reaches here: the runtime is shutting down.
            let detail = format!("the handler did not finish: {error}");
            Ok(Problem::new(ProblemKind::ResponseFailed, detail)
                .key(kept_ctx.key())
                .into_response())
        }
    }
}

/// Decides the claim's fate from the handler's response: statuses that are not kept
/// release the claim; a streamed or too large response is delivered live and the key
/// marked used; anything else is encoded into the record's payload.
async fn capture<ResBody>(
    shared: &Shared,
    ctx: &IdempotencyContext,
    response: Response<ResBody>,
) -> Settle<Captured>
where
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    let cfg = &shared.config;
    let (mut rparts, rbody) = response.into_parts();
    let status = rparts.status;
    let live = |rparts, rbody| Captured {
        response: Response::from_parts(rparts, Body::new(rbody)),
        replayable: false,
    };
    if !(cfg.store_status)(status) {
        return Settle::Release(live(rparts, rbody));
    }
    let fits = rbody
        .size_hint()
        .exact()
        .is_some_and(|n| n <= cfg.max_response_bytes as u64);
    if !fits {
        // Streamed or too large: delivered live; the key is marked used so that a retry
        // gets a problem response rather than a second side effect.
        let outcome = OperationOutcome::default().with_payload(stored::unstored(status));
        return Settle::Complete(live(rparts, rbody), outcome);
    }
    let body = match rbody.collect().await.map_err(Into::<BoxError>::into) {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            let detail = format!("the handler's response body failed: {e}");
            let response = Problem::new(ProblemKind::ResponseFailed, detail)
                .key(ctx.key())
                .into_response();
            return Settle::Release(Captured {
                response,
                replayable: false,
            });
        }
    };
    let result = rparts
        .extensions
        .remove::<OperationResult>()
        .map(|r| r.0)
        .or_else(|| ctx.take_result())
        .or_else(|| {
            cfg.json_body_as_result
                .then(|| json_body(&rparts.headers, &body))
                .flatten()
        });
    let payload = stored::encode(
        status,
        &rparts.headers,
        &body,
        cfg.cache_hit_header.as_ref(),
    );
    let outcome = OperationOutcome {
        result,
        error: (!status.is_success()).then(|| format!("HTTP {status}")),
        payload: Some(payload),
    };
    Settle::Complete(
        Captured {
            response: Response::from_parts(rparts, Body::from(body)),
            replayable: true,
        },
        outcome,
    )
}

/// Runs the handler without a claim (the store is unavailable and the middleware fails
/// open): nothing is stored; the response says so.
pub(crate) async fn run_unprotected<S, ResBody>(
    shared: &Shared,
    mut inner: S,
    g: Gated,
) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<Body>, Response = Response<ResBody>>,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    let response = inner.call(handler_request(g, false).0).await?;
    let (mut rparts, rbody) = response.into_parts();
    mark_first(
        &mut rparts.headers,
        shared.config.cache_hit_header.as_ref(),
        Kept::No,
    );
    Ok(Response::from_parts(rparts, Body::new(rbody)))
}

/// The request the handler gets: the buffered body, and the idempotency context in its
/// extensions (`protected`: whether a claim guards this run).
fn handler_request(g: Gated, protected: bool) -> (Request<Body>, IdempotencyContext) {
    let Gated {
        key,
        scope,
        storage_key,
        mut parts,
        body,
        ..
    } = g;
    let ctx = IdempotencyContext::new(key, storage_key, scope, protected);
    parts.extensions.insert(ctx.clone());
    (Request::from_parts(parts, Body::from(body)), ctx)
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
