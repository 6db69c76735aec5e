//! # bgops-axum
//!
//! HTTP idempotency for any tower stack, with axum extractors: an [`IdempotencyLayer`]
//! over the idempotency engine ([`bgops_idempotency::IdempotencyEngine`]) that makes a
//! request carrying an `Idempotency-Key` run at most once and replays its response, byte
//! for byte, to every retry. This crate is the HTTP mapping only (headers, status codes,
//! response capture); the claim protocol is the engine's.
//!
//! ```
//! use std::sync::Arc;
//! use axum::{Json, Router, body::Body, routing::post};
//! use bgops_axum::{IdempotencyContext, IdempotencyLayer};
//! use bgops_idempotency::IdempotencyEngine;
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
//! // The engine owns store, TTL, lease and metrics (the `bgops` manager hands out its own:
//! // `bgops::add_background_operations_middleware(router, &manager)`).
//! let engine = IdempotencyEngine::builder(Arc::new(bgops_memory::MemoryStorage::new())).build();
//! let app = Router::new()
//!     .route("/api/send-email", post(send_email))
//!     .layer(IdempotencyLayer::new(engine));
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
//! | first request | handler runs (in its own task: a client that goes away does not cancel it); 2xx and 400/404/410/422 are stored; `X-Cache-Hit: false` |
//! | 5xx, 401, 403, 408, 409, 429, handler error or panic | not stored; the claim is released |
//! | client disconnects or times out mid-handler | nothing is released: the handler finishes and its response is stored; the retry waits for it or replays it |
//! | retry after completion | stored status, headers and body + `Idempotent-Replayed: true`, `X-Cache-Hit: true` |
//! | retry while the first runs | 409 + `Retry-After` (or 202 as in the seed, or wait and replay) |
//! | same key, other method/path/query/body | 422 `idempotency-key-reused` |
//! | store unavailable (transient) | 503 + `Retry-After` (fail closed), or run with `Idempotency-Stored: false` (fail open) |
//! | store unavailable when storing the response | the response goes out with `Idempotency-Stored: pending`; the claim is held and the response stored once the store is back |
//! | stored record corrupt | 500 `idempotency-record-corrupt` naming the record; never "fail open" |
//! | a value the store rejects (bad input) | 400 `idempotency-request-invalid` |
//! | response streamed or over 1 MiB | delivered live, not stored; retries get 410 `idempotency-response-not-stored` |
//!
//! Long paths work: the operation type `METHOD path` is bounded to the store's 255 bytes
//! (`bgops_idempotency::bounded_operation_type`). Storage keys are tagged by scope
//! ([`Scope::storage_key`]), so a request without a user can never address a user's key.
//!
//! Problem responses are RFC 9457 `application/problem+json` with the stable `type` URIs
//! of [`ProblemKind::type_uri`]. The record's `result` JSON layout is documented in
//! [`stored`](crate#stored-responses).
//!
//! ## Stored responses
//!
//! The response travels as bytes in the record's payload (`OperationOutcome::payload`):
//! the `bgops-http/1` encoding — `BGH1`, status `u16`, header count `u16`, per header
//! `u16` name length, name, `u32` value length, value (all big-endian), then the body. No
//! base64, no JSON around it: a replay is one read and one decode, and the replayed
//! header values and body are slices of the stored buffer. Set-Cookie, Date,
//! Content-Length, Authorization and hop-by-hop headers are not kept. A response that was
//! not kept is recorded as `BGN1` + status. The record's `result` JSON is the operation
//! result the handler attached ([`IdempotencyContext::set_result`], [`OperationResult`]),
//! or the JSON body when [`IdempotencyConfig::json_body_as_result`] is on.
//!
//! ## Slow clients
//!
//! A claim's lease is held while the request body is read and the handler runs, so bound
//! how long a client may take to send its headers and body — with
//! `tower_http::timeout::RequestBodyTimeoutLayer` and hyper's `header_read_timeout`
//! (see `examples/server.rs` and docs/semantics.md §3).

mod admit;
mod config;
mod error;
mod extract;
mod fingerprint;
mod future;
mod gate;
mod headers;
mod key;
mod layer;
mod problem;
mod run;
mod scope;
mod service;
mod shared;
mod stored;

/// The axum version this crate is built on (so the facade can name `axum::Router`
/// without depending on axum itself).
#[doc(no_inline)]
pub use axum;
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
pub use headers::{IDEMPOTENCY_STORED, IDEMPOTENT_REPLAYED};
pub use key::parse_idempotency_key;
pub use layer::IdempotencyLayer;
pub use problem::{Problem, ProblemKind};
pub use scope::{
    FnScope, HeaderScope, Scope, ScopeExtractor, ScopeRejection, SharedScopeExtractor,
};
pub use service::IdempotencyService;
