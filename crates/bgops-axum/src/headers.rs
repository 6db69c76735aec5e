//! The response headers the middleware sets, and where it sets them.

use http::{HeaderMap, HeaderName, HeaderValue};

/// Set to `true` on every replayed response.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// Set on first executions whose response will not replay: `false` (not kept: a
/// status that is not stored, a streamed or too large response, a lost claim, or a
/// store failure when failing open), or `pending` (the store was unreachable; the
/// response is being stored in the background, and a retry waits for it meanwhile).
pub const IDEMPOTENCY_STORED: HeaderName = HeaderName::from_static("idempotency-stored");

pub(crate) const TRUE: HeaderValue = HeaderValue::from_static("true");
pub(crate) const FALSE: HeaderValue = HeaderValue::from_static("false");
pub(crate) const PENDING: HeaderValue = HeaderValue::from_static("pending");

/// What a first execution's response says about its storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kept {
    /// Stored: a retry replays it.
    Yes,
    /// Being stored in the background.
    Pending,
    /// Not kept.
    No,
}

/// Marks a first execution (`X-Cache-Hit: false`, and `Idempotency-Stored` unless kept).
pub(crate) fn mark_first(headers: &mut HeaderMap, cache_hit: Option<&HeaderName>, kept: Kept) {
    if let Some(h) = cache_hit {
        headers.insert(h.clone(), FALSE);
    }
    match kept {
        Kept::Yes => {}
        Kept::Pending => {
            headers.insert(IDEMPOTENCY_STORED, PENDING);
        }
        Kept::No => {
            headers.insert(IDEMPOTENCY_STORED, FALSE);
        }
    }
}

/// Marks a replay (`Idempotent-Replayed: true`, `X-Cache-Hit: true`).
pub(crate) fn mark_replay(headers: &mut HeaderMap, cache_hit: Option<&HeaderName>) {
    headers.insert(IDEMPOTENT_REPLAYED, TRUE);
    if let Some(h) = cache_hit {
        headers.insert(h.clone(), TRUE);
    }
}
