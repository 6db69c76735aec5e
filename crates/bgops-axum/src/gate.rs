//! Step 1 of a request: does the middleware protect it, and with what key, scope and
//! fingerprint? Bad input ends here as a 4xx problem.

use bgops_idempotency::{KeyRequest, bounded_operation_type, scoped_key};
use bgops_storage::BoxError;
use bytes::Bytes;
use http::Request;
use http::header::CONTENT_LENGTH;
use http::request::Parts;
use http_body::Body as HttpBody;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};

use crate::config::IdempotencyConfig;
use crate::key::parse_idempotency_key;
use crate::problem::{Problem, ProblemKind};
use crate::scope::Scope;

/// What the gate decided.
#[expect(
    clippy::large_enum_variant,
    reason = "made once per request and moved once; boxing would cost an allocation"
)]
pub(crate) enum Gate<B> {
    /// Not covered (method, exempt path, optional key absent): passed through untouched.
    Pass(Request<B>),
    /// Protected: the request, buffered, with its key, and what to ask the engine.
    Protect(Gated, KeyRequest),
}

/// A request the middleware protects.
pub(crate) struct Gated {
    /// The key the client sent.
    pub(crate) key: String,
    /// Who it belongs to.
    pub(crate) scope: Scope,
    /// The record's key within the tenant ([`scoped_key`]).
    pub(crate) storage_key: String,
    /// The request head.
    pub(crate) parts: Parts,
    /// The buffered request body.
    pub(crate) body: Bytes,
}

/// Checks method, path, key, scope and body size; buffers the body and fingerprints it.
pub(crate) async fn gate<B>(cfg: &IdempotencyConfig, req: Request<B>) -> Result<Gate<B>, Problem>
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let path = req.uri().path();
    if !cfg.methods.contains(req.method()) || cfg.exempt_paths.matches(path) {
        return Ok(Gate::Pass(req));
    }
    let mut values = req.headers().get_all(&cfg.key_header).iter();
    let key = match (values.next(), values.next()) {
        (None, _) if cfg.key_required(path) => {
            let detail = format!("{} header is required on {path}", cfg.key_header);
            return Err(Problem::new(ProblemKind::KeyMissing, detail));
        }
        (None, _) => return Ok(Gate::Pass(req)),
        (Some(_), Some(_)) => {
            let detail = format!("{} header sent more than once", cfg.key_header);
            return Err(Problem::new(ProblemKind::KeyInvalid, detail));
        }
        (Some(value), None) => parse_idempotency_key(value)
            .map_err(|e| Problem::new(ProblemKind::KeyInvalid, e.to_string()))?,
    };
    let (parts, body) = req.into_parts();
    let scope = cfg.scope.extract(&parts).map_err(|rejection| {
        Problem::new(ProblemKind::ScopeMissing, rejection.detail)
            .key(&key)
            .status(rejection.status)
    })?;
    let body = read_body(cfg, &parts, body)
        .await
        .map_err(|p| p.key(&key))?;
    let fingerprint = cfg.fingerprinter.fingerprint(&parts, &body);
    let storage_key = scoped_key(scope.user_id.as_deref(), &key);
    let mut operation_type = format!("{} {}", parts.method, parts.uri.path());
    if let std::borrow::Cow::Owned(bounded) = bounded_operation_type(&operation_type) {
        operation_type = bounded;
    }
    let mut request =
        KeyRequest::new(&*scope.tenant_id, &*storage_key, operation_type).fingerprint(fingerprint);
    request.user_id.clone_from(&scope.user_id);
    let gated = Gated {
        key,
        scope,
        storage_key,
        parts,
        body,
    };
    Ok(Gate::Protect(gated, request))
}

/// Buffers the body within the limit: 413 over it (declared or counted), 400 when it
/// cannot be read.
async fn read_body<B>(cfg: &IdempotencyConfig, parts: &Parts, body: B) -> Result<Bytes, Problem>
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let too_large = || {
        let detail = format!("the request body is over {} bytes", cfg.max_request_bytes);
        Problem::new(ProblemKind::BodyTooLarge, detail)
    };
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > cfg.max_request_bytes as u64) {
        return Err(too_large());
    }
    match Limited::new(body, cfg.max_request_bytes).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(e) => Err(Problem::new(ProblemKind::BodyUnreadable, e.to_string())),
    }
}
