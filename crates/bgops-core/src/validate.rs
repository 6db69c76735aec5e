//! Input validation shared by every layer, so each rejects bad input the same way.

use std::time::Duration;

use crate::error::CoreError;

/// Longest idempotency key accepted (bytes), as in the IETF draft's guidance.
pub const MAX_KEY_LEN: usize = 255;

/// Longest tenant id, operation type or other name accepted (bytes).
pub const MAX_NAME_LEN: usize = 255;

/// Longest TTL accepted: ten years, far above any sensible retention, far below overflow.
pub const MAX_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Rejects empty or white-space-only text.
pub fn non_empty(field: &'static str, value: &str) -> Result<(), CoreError> {
    if value.trim().is_empty() {
        return Err(CoreError::EmptyField { field });
    }
    Ok(())
}

/// Validates a tenant id, operation type, queue or lock name: non-empty, at most
/// [`MAX_NAME_LEN`] bytes.
pub fn name(field: &'static str, value: &str) -> Result<(), CoreError> {
    non_empty(field, value)?;
    if value.len() > MAX_NAME_LEN {
        return Err(CoreError::TooLong {
            field,
            len: value.len(),
            max: MAX_NAME_LEN,
        });
    }
    Ok(())
}

/// Validates an idempotency key: 1 to [`MAX_KEY_LEN`] bytes of visible ASCII (`!`..=`~`).
pub fn idempotency_key(value: &str) -> Result<(), CoreError> {
    const FIELD: &str = "idempotency_key";
    if value.is_empty() {
        return Err(CoreError::EmptyField { field: FIELD });
    }
    if value.len() > MAX_KEY_LEN {
        return Err(CoreError::TooLong {
            field: FIELD,
            len: value.len(),
            max: MAX_KEY_LEN,
        });
    }
    if let Some(position) = value.bytes().position(|b| !(b'!'..=b'~').contains(&b)) {
        return Err(CoreError::InvalidCharacter {
            field: FIELD,
            position,
        });
    }
    Ok(())
}

/// Validates a lease token: 1 to 64 bytes of visible ASCII (the id generator makes 32
/// hex digits; tests may use readable ones).
pub fn token(value: &str) -> Result<(), CoreError> {
    const FIELD: &str = "token";
    if value.is_empty() {
        return Err(CoreError::EmptyField { field: FIELD });
    }
    if value.len() > 64 {
        return Err(CoreError::TooLong {
            field: FIELD,
            len: value.len(),
            max: 64,
        });
    }
    if let Some(position) = value.bytes().position(|b| !(b'!'..=b'~').contains(&b)) {
        return Err(CoreError::InvalidCharacter {
            field: FIELD,
            position,
        });
    }
    Ok(())
}

/// Validates a TTL, lease or timeout: greater than zero and at most [`MAX_TTL`].
pub fn duration(field: &'static str, value: Duration) -> Result<(), CoreError> {
    if value.is_zero() || value > MAX_TTL {
        return Err(CoreError::InvalidDuration {
            field,
            got: format!("{value:?}"),
            max_secs: MAX_TTL.as_secs(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(idempotency_key("abc-123_X.y~").is_ok());
        assert!(matches!(
            idempotency_key(""),
            Err(CoreError::EmptyField { .. })
        ));
        assert!(matches!(
            idempotency_key(&"k".repeat(256)),
            Err(CoreError::TooLong {
                len: 256,
                max: 255,
                ..
            })
        ));
        assert!(idempotency_key(&"k".repeat(255)).is_ok());
        assert!(matches!(
            idempotency_key("a b"),
            Err(CoreError::InvalidCharacter { position: 1, .. })
        ));
        assert!(matches!(
            idempotency_key("é"),
            Err(CoreError::InvalidCharacter { position: 0, .. })
        ));
    }

    #[test]
    fn durations() {
        assert!(duration("ttl", Duration::ZERO).is_err());
        assert!(duration("ttl", Duration::from_millis(1)).is_ok());
        assert!(duration("ttl", MAX_TTL + Duration::from_secs(1)).is_err());
    }

    #[test]
    fn names() {
        assert!(name("tenant_id", "  ").is_err());
        assert!(name("tenant_id", &"t".repeat(256)).is_err());
        assert!(name("tenant_id", "acme").is_ok());
    }
}
