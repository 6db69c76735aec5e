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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_adds_or_rejects() {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        assert_eq!(
            after(now, "ttl", Duration::from_secs(5)).unwrap(),
            now + time::Duration::seconds(5)
        );
        assert_eq!(after(now, "delay", Duration::ZERO).unwrap(), now);
        let too_long = after(now, "ttl", MAX_TTL + Duration::from_secs(1));
        assert!(matches!(
            too_long,
            Err(StorageError::Invalid(CoreError::InvalidDuration {
                field: "ttl",
                ..
            }))
        ));
    }

    #[test]
    fn before_clamps_at_the_epoch() {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(10);
        assert_eq!(
            before(now, Duration::from_secs(4)),
            now - time::Duration::seconds(4)
        );
        assert_eq!(
            before(now, Duration::from_secs(u64::MAX)),
            OffsetDateTime::UNIX_EPOCH
        );
    }
}
