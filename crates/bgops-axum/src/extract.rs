//! What a handler can see and attach: the key and scope of the request, and a result to
//! keep in the record (the seed's `get_idempotency_key` / `set_operation_result`).

use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponseParts, ResponseParts};
use http::Extensions;
use http::request::Parts;
use serde_json::Value;

use crate::problem::{Problem, ProblemKind};
use crate::scope::Scope;

/// The idempotency context of a request, put in its extensions by the middleware when the
/// request carries a key. Extract it in a handler (`ctx: IdempotencyContext`, or
/// `Option<IdempotencyContext>` where the key is optional).
///
/// ```
/// use axum::Json;
/// use bgops_axum::IdempotencyContext;
/// use serde_json::{Value, json};
///
/// async fn send_email(ctx: IdempotencyContext, Json(body): Json<Value>) -> Json<Value> {
///     let result = json!({ "message_id": format!("msg-{}", ctx.key()), "to": body["to"] });
///     ctx.set_result(result.clone()); // kept in the record, shown by a status endpoint
///     Json(result)
/// }
/// ```
#[derive(Debug, Clone)]
pub struct IdempotencyContext {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    key: String,
    storage_key: String,
    scope: Scope,
    protected: bool,
    result: Mutex<Option<Value>>,
}

impl IdempotencyContext {
    pub(crate) fn new(key: String, storage_key: String, scope: Scope, protected: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                key,
                storage_key,
                scope,
                protected,
                result: Mutex::new(None),
            }),
        }
    }

    /// The key the client sent.
    pub fn key(&self) -> &str {
        &self.inner.key
    }

    /// The key under which the record is stored within the tenant
    /// (see [`Scope::storage_key`]).
    pub fn storage_key(&self) -> &str {
        &self.inner.storage_key
    }

    /// The scope (tenant, user) of the key.
    pub fn scope(&self) -> &Scope {
        &self.inner.scope
    }

    /// The tenant of the key.
    pub fn tenant_id(&self) -> &str {
        &self.inner.scope.tenant_id
    }

    /// `false` when the store was unavailable and the middleware fails open: this run is
    /// not protected against duplicates and nothing will be stored.
    pub fn is_protected(&self) -> bool {
        self.inner.protected
    }

    /// Attaches a JSON result to the record (the seed's `set_operation_result`). Without
    /// one the record has no result unless the layer was configured with
    /// [`json_body_as_result(true)`](crate::IdempotencyConfig::json_body_as_result), which
    /// keeps a JSON response body as the result (off by default).
    pub fn set_result(&self, result: Value) {
        *self
            .inner
            .result
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(result);
    }

    pub(crate) fn take_result(&self) -> Option<Value> {
        self.inner
            .result
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyContext {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Self>().cloned().ok_or_else(|| {
            Problem::new(
                ProblemKind::KeyMissing,
                "this endpoint requires an Idempotency-Key header",
            )
        })
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for IdempotencyContext {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Self>().cloned())
    }
}

/// A JSON result to keep in the record, returned as part of a response:
/// `(OperationResult(json!({...})), Json(body))`. Takes precedence over
/// [`IdempotencyContext::set_result`].
#[derive(Debug, Clone, PartialEq)]
pub struct OperationResult(pub Value);

impl IntoResponseParts for OperationResult {
    type Error = Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        res.extensions_mut().insert(self);
        Ok(res)
    }
}

/// Anything carrying request extensions: `Request<B>`, `request::Parts`, `Extensions`.
pub trait HasExtensions {
    /// The extensions.
    fn extensions(&self) -> &Extensions;
}

impl<B> HasExtensions for http::Request<B> {
    fn extensions(&self) -> &Extensions {
        self.extensions()
    }
}

impl HasExtensions for Parts {
    fn extensions(&self) -> &Extensions {
        &self.extensions
    }
}

impl HasExtensions for Extensions {
    fn extensions(&self) -> &Extensions {
        self
    }
}

/// The idempotency key of a request the middleware handled (the seed's
/// `get_idempotency_key(request)`).
pub fn get_idempotency_key(request: &impl HasExtensions) -> Option<&str> {
    request
        .extensions()
        .get::<IdempotencyContext>()
        .map(IdempotencyContext::key)
}

/// Whether the middleware treats this request as idempotent (it carries a valid key on a
/// covered method and path).
pub fn is_idempotent_request(request: &impl HasExtensions) -> bool {
    request.extensions().get::<IdempotencyContext>().is_some()
}

/// Attaches a JSON result to the request's record (the seed's `set_operation_result`);
/// `false` when the request is not idempotent.
pub fn set_operation_result(request: &impl HasExtensions, result: Value) -> bool {
    match request.extensions().get::<IdempotencyContext>() {
        Some(ctx) => {
            ctx.set_result(result);
            true
        }
        None => false,
    }
}
