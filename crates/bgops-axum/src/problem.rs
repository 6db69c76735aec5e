//! RFC 9457 problem+json responses with stable `type` URIs.

use std::time::Duration;

use axum::body::Body;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};
use serde::Serialize;

/// The problems the middleware answers with. Each has a stable `type` URI
/// (`urn:bgops:problem:<name>`) that clients can match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProblemKind {
    /// 400: the route requires an `Idempotency-Key` and none was sent.
    KeyMissing,
    /// 400: the key is not 1–255 visible ASCII characters (or was sent twice).
    KeyInvalid,
    /// 400 (or the extractor's status): no scope (tenant) could be found.
    ScopeMissing,
    /// 400: the request body could not be read.
    BodyUnreadable,
    /// 413: the request body is over the limit.
    BodyTooLarge,
    /// 409: a request with this key is still being processed.
    InFlight,
    /// 422: the key was used with a different request.
    KeyReused,
    /// 410: the key was used, but its response was streamed or too large and was not
    /// kept; the operation is not run again.
    ResponseNotStored,
    /// 503: the idempotency store is unavailable (fail closed).
    StoreUnavailable,
    /// 500: the handler's response body failed while being read (or the handler was
    /// cancelled by a server shutdown).
    ResponseFailed,
    /// 400: the request cannot be given an idempotency record (a field the store
    /// rejects, e.g. a scope value that is too long).
    RequestInvalid,
    /// 500: the stored record of this key cannot be read; the detail names it. Never
    /// "fail open": running the handler again would repeat its effect.
    RecordCorrupt,
    /// 500: the idempotency store failed in a way a retry will not fix.
    StoreFailed,
}

impl ProblemKind {
    /// The stable `type` URI.
    pub fn type_uri(self) -> &'static str {
        match self {
            Self::KeyMissing => "urn:bgops:problem:idempotency-key-missing",
            Self::KeyInvalid => "urn:bgops:problem:idempotency-key-invalid",
            Self::ScopeMissing => "urn:bgops:problem:idempotency-scope-missing",
            Self::BodyUnreadable => "urn:bgops:problem:request-body-unreadable",
            Self::BodyTooLarge => "urn:bgops:problem:request-body-too-large",
            Self::InFlight => "urn:bgops:problem:idempotency-request-in-flight",
            Self::KeyReused => "urn:bgops:problem:idempotency-key-reused",
            Self::ResponseNotStored => "urn:bgops:problem:idempotency-response-not-stored",
            Self::StoreUnavailable => "urn:bgops:problem:idempotency-store-unavailable",
            Self::ResponseFailed => "urn:bgops:problem:response-body-failed",
            Self::RequestInvalid => "urn:bgops:problem:idempotency-request-invalid",
            Self::RecordCorrupt => "urn:bgops:problem:idempotency-record-corrupt",
            Self::StoreFailed => "urn:bgops:problem:idempotency-store-failed",
        }
    }

    /// The status it is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            Self::KeyMissing
            | Self::KeyInvalid
            | Self::ScopeMissing
            | Self::BodyUnreadable
            | Self::RequestInvalid => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::InFlight => StatusCode::CONFLICT,
            Self::KeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::ResponseNotStored => StatusCode::GONE,
            Self::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::ResponseFailed | Self::RecordCorrupt | Self::StoreFailed => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::KeyMissing => "Idempotency-Key header is required",
            Self::KeyInvalid => "Idempotency-Key header is invalid",
            Self::ScopeMissing => "No scope for the idempotency key",
            Self::BodyUnreadable => "Request body could not be read",
            Self::BodyTooLarge => "Request body too large",
            Self::InFlight => "A request with this idempotency key is in progress",
            Self::KeyReused => "Idempotency key reused with a different request",
            Self::ResponseNotStored => "The response for this idempotency key was not kept",
            Self::StoreUnavailable => "Idempotency store unavailable",
            Self::ResponseFailed => "Response body failed",
            Self::RequestInvalid => "Request cannot be given an idempotency record",
            Self::RecordCorrupt => "Stored idempotency record is corrupt",
            Self::StoreFailed => "Idempotency store failed",
        }
    }
}

/// One problem+json document (RFC 9457).
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// Stable URI of the problem type.
    #[serde(rename = "type")]
    pub type_uri: &'static str,
    /// Short summary, the same for every occurrence of the type.
    pub title: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// What happened this time.
    pub detail: String,
    /// The idempotency key concerned, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[serde(skip)]
    kind: ProblemKind,
    #[serde(skip)]
    retry_after: Option<Duration>,
}

impl Problem {
    /// A problem of `kind` with a detail message.
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self {
            type_uri: kind.type_uri(),
            title: kind.title(),
            status: kind.status().as_u16(),
            detail: detail.into(),
            idempotency_key: None,
            kind,
            retry_after: None,
        }
    }

    /// Names the key concerned.
    pub fn key(mut self, key: &str) -> Self {
        self.idempotency_key = Some(key.to_owned());
        self
    }

    /// Overrides the status (for scope rejections with their own status).
    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status.as_u16();
        self
    }

    /// Adds a `Retry-After` header (whole seconds, at least 1).
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// Its kind.
    pub fn kind(&self) -> ProblemKind {
        self.kind
    }

    /// The response: `application/problem+json`, with `Retry-After` when set.
    pub fn into_response(self) -> Response<Body> {
        // Serializing a struct of strings and integers cannot fail.
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = Response::new(Body::from(body));
        *response.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(after) = self.retry_after {
            let secs = after.as_secs_f64().ceil().max(1.0) as u64;
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl axum::response::IntoResponse for Problem {
    fn into_response(self) -> axum::response::Response {
        Problem::into_response(self)
    }
}
