//! Parsing of the `Idempotency-Key` header: a bare token or an RFC 8941 sf-string.

use bgops_core::validate;
use http::HeaderValue;

use crate::error::IdempotencyError;

/// Parses one header value into the key it carries.
///
/// Accepted: an RFC 8941 quoted string (`"abc"`, with `\"` and `\\` escapes), or the bare
/// text that Stripe-style clients send. Either way the key itself must be 1–255 visible
/// ASCII characters (`!`..=`~`), so a quoted key may not contain spaces.
///
/// ```
/// use http::HeaderValue;
/// use bgops_axum::parse_idempotency_key;
/// assert_eq!(parse_idempotency_key(&HeaderValue::from_static("test-123")).unwrap(), "test-123");
/// assert_eq!(parse_idempotency_key(&HeaderValue::from_static("\"a\\\"b\"")).unwrap(), "a\"b");
/// assert!(parse_idempotency_key(&HeaderValue::from_static("a b")).is_err());
/// ```
pub fn parse_idempotency_key(value: &HeaderValue) -> Result<String, IdempotencyError> {
    let bytes = value.as_bytes();
    let key = if bytes.first() == Some(&b'"') {
        unquote(bytes)?
    } else {
        std::str::from_utf8(bytes)
            .map_err(|_| IdempotencyError::InvalidKey {
                reason: "not ASCII",
            })?
            .to_owned()
    };
    validate::idempotency_key(&key).map_err(|e| IdempotencyError::InvalidKey {
        reason: match e {
            bgops_core::CoreError::EmptyField { .. } => "empty",
            bgops_core::CoreError::TooLong { .. } => "longer than 255 characters",
            _ => "not visible ASCII (allowed: ! to ~)",
        },
    })?;
    Ok(key)
}

/// RFC 8941 §4.2.5: a DQUOTE, printable ASCII with `\` escaping only `"` and `\`, a DQUOTE.
fn unquote(bytes: &[u8]) -> Result<String, IdempotencyError> {
    let bad = |reason| IdempotencyError::InvalidKey { reason };
    let mut out = String::with_capacity(bytes.len());
    let mut chars = bytes[1..].iter();
    while let Some(&b) = chars.next() {
        match b {
            b'\\' => match chars.next() {
                Some(&c @ (b'"' | b'\\')) => out.push(char::from(c)),
                _ => return Err(bad("bad escape in quoted string")),
            },
            b'"' => {
                return if chars.next().is_none() {
                    Ok(out)
                } else {
                    Err(bad("text after the closing quote"))
                };
            }
            0x20..=0x7e => out.push(char::from(b)),
            _ => return Err(bad("not printable ASCII")),
        }
    }
    Err(bad("unterminated quoted string"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &[u8]) -> Result<String, IdempotencyError> {
        parse_idempotency_key(&HeaderValue::from_bytes(s).unwrap())
    }

    #[test]
    fn bare_and_quoted() {
        assert_eq!(parse(b"abc-123").unwrap(), "abc-123");
        assert_eq!(parse(b"\"abc-123\"").unwrap(), "abc-123");
        assert_eq!(parse(b"\"a\\\\b\"").unwrap(), "a\\b");
        assert_eq!(parse(&[b'k'; 255]).unwrap().len(), 255);
    }

    #[test]
    fn rejects() {
        for bad in [
            &b""[..],
            b"\"\"",
            b"a b",
            b"\"a b\"",
            b"\"abc",
            b"\"abc\"x",
            b"\"a\\nb\"",
            &[b'k'; 256],
            b"caf\xc3\xa9",
        ] {
            assert!(
                parse(bad).is_err(),
                "{:?} accepted",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
