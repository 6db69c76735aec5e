//! Deterministic idempotency keys, compatible with the seed's Python package.
//!
//! A key is the first 32 hex characters of SHA-256 over
//! `"{tenant_id}:{user_id}:{operation_type}:{parameters_json}"`, where `user_id` `None` is
//! the empty string and `parameters_json` is exactly what Python's
//! `json.dumps(parameters, sort_keys=True)` writes. A Python service and a Rust service
//! therefore agree on the key for the same inputs.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::CoreError;
use crate::validate;

/// Number of hex characters kept from the digest.
pub const DERIVED_KEY_LEN: usize = 32;

/// Derives the deterministic idempotency key of an operation.
///
/// `parameters` may be any serde-serializable value; `None` counts as `{}`.
/// Map keys must serialize as strings (as in JSON).
///
/// # Errors
/// [`CoreError::EmptyField`] when `tenant_id` or `operation_type` is empty,
/// [`CoreError::NotJson`] when `parameters` cannot be represented as JSON.
///
/// # Example
/// ```
/// use serde_json::json;
/// let a = bgops_core::derive_key("t1", Some("u1"), "send_email", Some(&json!({"to": "a@b.c"})))?;
/// let b = bgops_core::derive_key("t1", Some("u1"), "send_email", Some(&json!({"to": "a@b.c"})))?;
/// assert_eq!(a, b);
/// assert_eq!(a.len(), 32);
/// # Ok::<(), bgops_core::CoreError>(())
/// ```
pub fn derive_key<P: Serialize + ?Sized>(
    tenant_id: &str,
    user_id: Option<&str>,
    operation_type: &str,
    parameters: Option<&P>,
) -> Result<String, CoreError> {
    let value = match parameters {
        Some(p) => serde_json::to_value(p).map_err(CoreError::NotJson)?,
        None => Value::Object(serde_json::Map::new()),
    };
    derive_key_from_json(tenant_id, user_id, operation_type, &python_json(&value))
}

/// [`derive_key`] for parameters already written by [`python_json`] (`"{}"` for none), so
/// a caller that needs the canonical text anyway (e.g. for a fingerprint) writes it once.
///
/// # Errors
/// [`CoreError::EmptyField`] when `tenant_id` or `operation_type` is empty.
pub fn derive_key_from_json(
    tenant_id: &str,
    user_id: Option<&str>,
    operation_type: &str,
    parameters_json: &str,
) -> Result<String, CoreError> {
    validate::non_empty("tenant_id", tenant_id)?;
    validate::non_empty("operation_type", operation_type)?;
    let mut hasher = Sha256::new();
    for part in [
        tenant_id,
        ":",
        user_id.unwrap_or(""),
        ":",
        operation_type,
        ":",
        parameters_json,
    ] {
        hasher.update(part.as_bytes());
    }
    let mut hex = hex::encode(hasher.finalize());
    hex.truncate(DERIVED_KEY_LEN);
    Ok(hex)
}

/// Writes `value` as Python's `json.dumps(value, sort_keys=True)` would.
///
/// Separators are `", "` and `": "`, object keys are sorted by code point, non-ASCII is
/// escaped as `\uXXXX` (surrogate pairs above the BMP) and floats use Python's `repr`.
pub fn python_json(value: &Value) -> String {
    let mut out = String::new();
    write_python_json(&mut out, value);
    out
}

fn write_python_json(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python_json(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // Python sorts str keys by code point; Rust's str ordering is byte-wise UTF-8,
            // which gives the same order for valid UTF-8.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_string(out, k);
                out.push_str(": ");
                write_python_json(out, v);
            }
            out.push('}');
        }
    }
}

fn write_number(out: &mut String, n: &serde_json::Number) {
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(f) = n.as_f64() {
        write_python_float(out, f);
    }
}

/// Python's `float.__repr__`: the shortest round-tripping digits, in positional notation
/// when the decimal exponent is in `-4..16`, otherwise as `d.ddde+XX`.
fn write_python_float(out: &mut String, f: f64) {
    if f == 0.0 {
        out.push_str(if f.is_sign_negative() { "-0.0" } else { "0.0" });
        return;
    }
    // `{:e}` gives the shortest round-tripping digits, e.g. `-1.2345e-7`.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if negative {
        out.push('-');
    }
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        if point <= 0 {
            out.push_str("0.");
            for _ in 0..(-point) {
                out.push('0');
            }
            out.push_str(&digits);
        } else {
            let point = point as usize;
            if digits.len() <= point {
                out.push_str(&digits);
                for _ in digits.len()..point {
                    out.push('0');
                }
                out.push_str(".0");
            } else {
                out.push_str(&digits[..point]);
                out.push('.');
                out.push_str(&digits[point..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let sign = if exp < 0 { '-' } else { '+' };
        let _ = write!(out, "e{sign}{:02}", exp.abs());
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_json_matches_json_dumps_sort_keys() {
        let v = json!({"b": [1, 2.5, null, true], "a": {"z": "é", "y": "\u{1F600}"}, "c": 1e16});
        assert_eq!(
            python_json(&v),
            r#"{"a": {"y": "\ud83d\ude00", "z": "\u00e9"}, "b": [1, 2.5, null, true], "c": 1e+16}"#
        );
    }

    #[test]
    fn python_float_repr() {
        let cases = [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e-5, "1.5e-05"),
            (0.0001, "0.0001"),
            (-2.5e-300, "-2.5e-300"),
            (123.456, "123.456"),
            (f64::MAX, "1.7976931348623157e+308"),
        ];
        for (f, want) in cases {
            let mut s = String::new();
            write_python_float(&mut s, f);
            assert_eq!(s, want, "repr of {f}");
        }
    }

    #[test]
    fn empty_tenant_is_an_error() {
        let err = derive_key::<Value>("", None, "op", None).unwrap_err();
        assert!(matches!(err, CoreError::EmptyField { field: "tenant_id" }));
        let err = derive_key::<Value>("t", None, " ", None).unwrap_err();
        assert!(matches!(
            err,
            CoreError::EmptyField {
                field: "operation_type"
            }
        ));
    }

    #[test]
    fn non_string_map_keys_are_an_error_not_a_panic() {
        let mut m = std::collections::BTreeMap::new();
        m.insert(vec![1u8], 1);
        let err = derive_key("t", None, "op", Some(&m)).unwrap_err();
        assert!(matches!(err, CoreError::NotJson(_)));
    }

    #[test]
    fn every_input_changes_the_key() {
        let p = json!({"a": 1});
        let base = derive_key("t", Some("u"), "op", Some(&p)).unwrap();
        assert_ne!(base, derive_key("t2", Some("u"), "op", Some(&p)).unwrap());
        assert_ne!(base, derive_key("t", Some("u2"), "op", Some(&p)).unwrap());
        assert_ne!(base, derive_key("t", None, "op", Some(&p)).unwrap());
        assert_ne!(base, derive_key("t", Some("u"), "op2", Some(&p)).unwrap());
        assert_ne!(
            base,
            derive_key("t", Some("u"), "op", Some(&json!({"a": 2}))).unwrap()
        );
    }
}
