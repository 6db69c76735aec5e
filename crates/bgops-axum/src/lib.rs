//! # bgops-axum
//!
//! HTTP idempotency for any tower stack, with axum extractors: an [`IdempotencyLayer`]
//! over an [`IdempotencyStore`] that makes a request
//! carrying an `Idempotency-Key` run at most once and replays its response, byte for
//! byte, to every retry.
//!
//! ```
//! use std::sync::Arc;
//! use axum::{Json, Router, body::Body, routing::post};
//! use bgops_axum::{IdempotencyContext, add_background_operations_middleware};
//! use http::Request;
//! use serde_json::{Value, json};
//! use tower::ServiceExt as _;
//!
//! async fn send_email(ctx: IdempotencyContext, Json(email): Json<Value>) -> Json<Value> {
//!     let result = json!({ "message_id": format!("msg-{}", ctx.key()), "to": email["to"] });
//!     ctx.set_result(result.clone()); // kept in the record, for a status endpoint
//!     Json(result)
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let app = add_background_operations_middleware(
//!     Router::new().route("/api/send-email", post(send_email)),
//!     Arc::new(bgops_memory::MemoryStorage::new()),
//! );
//! let request = || {
//!     Request::post("/api/send-email")
//!         .header("content-type", "application/json")
//!         .header("idempotency-key", "test-123")
//!         .body(Body::from(r#"{"to":"user@example.com"}"#))
//!         .unwrap()
//! };
//! let first = app.clone().oneshot(request()).await.unwrap();
//! assert_eq!(first.headers()["x-cache-hit"], "false");
//! let retry = app.oneshot(request()).await.unwrap();
//! assert_eq!(retry.headers()["x-cache-hit"], "true");
//! assert_eq!(retry.headers()["idempotent-replayed"], "true");
//! // In a server: axum::serve(tokio::net::TcpListener::bind("127.0.0.1:8000").await?, app)
//! # }
//! ```
//!
//! ## What it does (semantics §3)
//!
//! | request | answer |
//! |---|---|
//! | method not covered (default: only POST and PATCH are), exempt path, or no key on an optional route | passed through |
//! | no key where required | 400 `idempotency-key-missing` |
//! | key not 1–255 visible ASCII (bare, or an RFC 8941 quoted string) | 400 `idempotency-key-invalid` |
//! | body over the limit (1 MiB) | 413 `request-body-too-large` |
//! | first request | handler runs; 2xx and 400/404/410/422 are stored; `X-Cache-Hit: false` |
//! | 5xx, 401, 403, 408, 409, 429, handler error or panic | not stored; the claim is released |
//! | retry after completion | stored status, headers and body + `Idempotent-Replayed: true`, `X-Cache-Hit: true` |
//! | retry while the first runs | 409 + `Retry-After` (or 202 as in the seed, or wait and replay) |
//! | same key, other method/path/query/body | 422 `idempotency-key-reused` |
//! | store unavailable | 503 + `Retry-After` (fail closed), or run with `Idempotency-Stored: false` (fail open) |
//! | response streamed or over 1 MiB | delivered live, not stored; retries get 410 `idempotency-response-not-stored` |
//!
//! Problem responses are RFC 9457 `application/problem+json` with the stable `type` URIs
//! of [`ProblemKind::type_uri`]. The record's `result` JSON layout is documented in
//! [`stored`](crate#stored-responses).
//!
//! ## Stored responses
//!
//! A record's `result` is `{"result": <operation result>, "response": "<base64>"}`: the
//! operation result is what the handler attached ([`IdempotencyContext::set_result`],
//! [`OperationResult`]) or else the JSON response body; `response` is the `bgops-http/1`
//! encoding — `BGH1`, status `u16`, header count `u16`, per header `u16` name length,
//! name, `u32` value length, value (all big-endian), then the body. Set-Cookie, Date,
//! Content-Length, Authorization and hop-by-hop headers are not kept. A response that
//! was not kept is recorded as `{"response": null, "stored": false, "status": …}`.

mod claim;
mod config;
mod error;
mod extract;
mod fingerprint;
mod future;
mod key;
mod layer;
mod problem;
mod scope;
mod service;
mod stored;

use std::sync::Arc;

use bgops_storage::IdempotencyStore;

pub use config::{
    DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_RESPONSE_BYTES, FailMode, IdempotencyConfig,
    InFlightPolicy, KeyPolicy, PathSet, default_store_status,
};
pub use error::IdempotencyError;
pub use extract::{
    HasExtensions, IdempotencyContext, OperationResult, get_idempotency_key, is_idempotent_request,
    set_operation_result,
};
pub use fingerprint::{Fingerprinter, Sha256Fingerprint, SharedFingerprinter};
pub use future::ResponseFuture;
pub use key::parse_idempotency_key;
pub use layer::IdempotencyLayer;
pub use problem::{Problem, ProblemKind};
pub use scope::{
    FnScope, HeaderScope, Scope, ScopeExtractor, ScopeRejection, SharedScopeExtractor,
};
pub use service::{IDEMPOTENCY_STORED, IDEMPOTENT_REPLAYED, IdempotencyService};

/// The seed's one-liner: adds the idempotency middleware with the default configuration
/// (POST/PATCH, `Idempotency-Key`, `X-Tenant-ID` scope, 409 in flight, fail closed) to a
/// router. Use [`IdempotencyLayer::with_config`] for anything else.
pub fn add_background_operations_middleware<S>(
    router: axum::Router<S>,
    store: Arc<dyn IdempotencyStore>,
) -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router.layer(IdempotencyLayer::new(store))
}
