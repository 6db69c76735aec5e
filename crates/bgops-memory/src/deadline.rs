//! Deadline arithmetic that reports out-of-range durations instead of panicking.

use std::time::Duration;

use bgops_core::CoreError;
use bgops_core::validate::MAX_TTL;
use bgops_storage::{StorageError, StorageResult};
use time::OffsetDateTime;

/// `now + by`, or `Invalid` when `by` is beyond [`MAX_TTL`] (callers validate most
/// durations first; this also covers the ones that may be zero, like a retry delay).
pub(crate) fn after(
    now: OffsetDateTime,
    field: &'static str,
    by: Duration,
) -> StorageResult<OffsetDateTime> {
    let invalid = || {
        StorageError::Invalid(CoreError::InvalidDuration {
            field,
            got: format!("{by:?}"),
            max_secs: MAX_TTL.as_secs(),
        })
    };
    if by > MAX_TTL {
        return Err(invalid());
    }
    let by = time::Duration::try_from(by).map_err(|_| invalid())?;
    now.checked_add(by).ok_or_else(invalid)
}

/// `now - by`, clamped to the epoch (for "older than" cut-offs).
pub(crate) fn before(now: OffsetDateTime, by: Duration) -> OffsetDateTime {
    time::Duration::try_from(by)
        .ok()
        .and_then(|by| now.checked_sub(by))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}
