//! Step 2 of a protected request: claim its key through the engine, or answer without
//! running the handler (replay, in flight, mismatch), mapping engine errors to HTTP.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bgops_core::IdempotencyRecord;
use bgops_idempotency::{Claim, IdempotencyError as EngineError, KeyRequest, KeyStatus};
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};
use serde_json::json;
use tokio::time::Instant;

use crate::config::{FailMode, InFlightPolicy};
use crate::gate::Gated;
use crate::headers::mark_replay;
use crate::problem::{Problem, ProblemKind};
use crate::shared::Shared;
use crate::stored::{self, Stored};

/// What the claim step decided.
pub(crate) enum Admission {
    /// This request holds the claim: run the handler.
    Run(Claim),
    /// Answer without running the handler (a replay, or the seed's 202).
    Respond(Response<Body>),
    /// The store is unavailable and the middleware fails open: run unprotected.
    Unprotected,
}

/// Claims the key, following the in-flight policy for duplicates.
pub(crate) async fn admit(
    shared: &Shared,
    g: &Gated,
    request: KeyRequest,
) -> Result<Admission, Problem> {
    let cfg = &shared.config;
    let deadline = match cfg.in_flight {
        InFlightPolicy::Wait(d) => Some(Instant::now() + d),
        _ => None,
    };
    // The first attempt takes the request; only a duplicate that may wait keeps a copy.
    let again = deadline.is_some().then(|| request.clone());
    let mut first = Some(request);
    let mut poll_every = Duration::from_millis(10);
    loop {
        let Some(request) = first.take().or_else(|| again.clone()) else {
            unreachable!("a retry happens only under the Wait policy, which keeps a copy");
        };
        let status = match shared.engine.begin(request).await {
            Ok(status) => status,
            Err(error) => return engine_failed(shared, g, &error),
        };
        match status {
            KeyStatus::Created(claim) => return Ok(Admission::Run(claim)),
            KeyStatus::Completed(record) => {
                return replay(shared, g, &record).map(Admission::Respond);
            }
            KeyStatus::Mismatch { .. } => {
                let detail = "this key was already used with a different request (method, path, query or body)";
                return Err(Problem::new(ProblemKind::KeyReused, detail).key(&g.key));
            }
            KeyStatus::InProgress { .. } => match (cfg.in_flight, deadline) {
                (InFlightPolicy::Accepted202, _) => {
                    return Ok(Admission::Respond(accepted(shared, &g.key)));
                }
                (InFlightPolicy::Wait(_), Some(deadline)) if Instant::now() < deadline => {
                    tokio::time::sleep_until(deadline.min(Instant::now() + poll_every)).await;
                    poll_every = (poll_every * 2).min(Duration::from_millis(200));
                }
                _ => {
                    let detail = "a request with this key is still being processed; retry later";
                    let p = Problem::new(ProblemKind::InFlight, detail).key(&g.key);
                    return Err(p.retry_after(cfg.retry_after));
                }
            },
        }
    }
}

/// Maps an engine error: only a transient one may fail open or ask for a retry (503);
/// bad input is a 400; a corrupt record a 500 naming it; anything else a 500.
fn engine_failed(shared: &Shared, g: &Gated, error: &EngineError) -> Result<Admission, Problem> {
    let cfg = &shared.config;
    let key = &g.key;
    match error {
        EngineError::Unavailable(_) => match cfg.fail_mode {
            FailMode::Closed => {
                tracing::warn!(%error, %key, "idempotency store unavailable; failing closed (503)");
                let detail = "the idempotency store is unavailable; retry later";
                let p = Problem::new(ProblemKind::StoreUnavailable, detail).key(key);
                Err(p.retry_after(cfg.retry_after))
            }
            FailMode::Open => {
                tracing::warn!(%error, %key, "idempotency store unavailable; failing open, running unprotected");
                Ok(Admission::Unprotected)
            }
        },
        EngineError::Invalid(invalid) => {
            Err(Problem::new(ProblemKind::RequestInvalid, invalid.to_string()).key(key))
        }
        EngineError::Corrupt { record, reason } => {
            tracing::error!(%record, %reason, "a stored idempotency record is corrupt");
            let detail = format!(
                "the stored record `{record}` of this key cannot be read ({reason}); the request was not run"
            );
            Err(Problem::new(ProblemKind::RecordCorrupt, detail).key(key))
        }
        other => {
            tracing::error!(error = %other, %key, "idempotency store failed");
            let detail = format!("the idempotency store failed: {other}");
            Err(Problem::new(ProblemKind::StoreFailed, detail).key(key))
        }
    }
}

/// The stored response, byte for byte, plus the replay markers: one decode of the
/// record's payload.
fn replay(
    shared: &Shared,
    g: &Gated,
    record: &Arc<IdempotencyRecord>,
) -> Result<Response<Body>, Problem> {
    let cache_hit = shared.config.cache_hit_header.as_ref();
    match stored::decode(record.payload.as_ref()) {
        Ok(Stored::Response(response)) => {
            let (mut parts, body) = response.into_parts();
            mark_replay(&mut parts.headers, cache_hit);
            Ok(Response::from_parts(parts, Body::from(body)))
        }
        Ok(Stored::NotStored(status)) => {
            let status = status.map_or_else(String::new, |s| format!(" (status {s})"));
            let detail = format!(
                "this key was already used; its response{status} was streamed or too large to keep, \
                 and the operation is not run again"
            );
            Err(Problem::new(ProblemKind::ResponseNotStored, detail).key(&g.key))
        }
        Err(error) => {
            let name = format!("{}/{}", record.tenant_id, record.key);
            tracing::error!(%error, record = %name, "a stored idempotent response cannot be decoded");
            let detail = format!(
                "the stored response of record `{name}` cannot be read ({error}); the request was not run"
            );
            Err(Problem::new(ProblemKind::RecordCorrupt, detail).key(&g.key))
        }
    }
}

/// The seed's answer to a duplicate in flight (see [`InFlightPolicy::Accepted202`] for
/// what retrying clients make of it).
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
