//! How a response is kept in an idempotency record, and rebuilt byte for byte.
//!
//! The record's `result` JSON holds:
//!
//! ```json
//! { "result": <the handler's operation result, or the JSON response body, or null>,
//!   "response": "<base64 of the bgops-http/1 encoding below>" }
//! ```
//!
//! `bgops-http/1` (big-endian): the 4 bytes `BGH1`, status `u16`, header count `u16`, then
//! per header a `u16` name length, the lower-case name, a `u32` value length and the value
//! bytes (repeated headers appear once per value, in the order sent), then the body bytes
//! to the end. A compact binary form keeps replay to one base64 decode, with no JSON walk
//! over headers.
//!
//! A response delivered live without being kept (streamed or too large) is recorded as
//! `{ "result": null, "response": null, "stored": false, "status": <u16> }`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use serde_json::{Value, json};

use crate::error::IdempotencyError;
use crate::service::{IDEMPOTENCY_STORED, IDEMPOTENT_REPLAYED};

const MAGIC: &[u8; 4] = b"BGH1";

/// Response headers never kept for replay: hop-by-hop headers (RFC 9110 §7.6.1), and
/// headers that are per-delivery or secret.
const NOT_STORED: [HeaderName; 12] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::SET_COOKIE,
    header::DATE,
    header::CONTENT_LENGTH,
    header::AUTHORIZATION,
];

/// Whether a response header is kept for replay; the middleware's own markers never are.
fn keep(name: &HeaderName, connection: &[String], cache_hit: Option<&HeaderName>) -> bool {
    !NOT_STORED.contains(name)
        && *name != IDEMPOTENT_REPLAYED
        && *name != IDEMPOTENCY_STORED
        && Some(name) != cache_hit
        && !connection
            .iter()
            .any(|c| c.eq_ignore_ascii_case(name.as_str()))
}

/// Encodes status, the storable headers and body into the record's `result` JSON.
pub(crate) fn encode(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    result: Value,
    cache_hit: Option<&HeaderName>,
) -> Value {
    // Names listed in `Connection` are hop-by-hop too.
    let connection: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_owned()))
        .collect();
    let kept: Vec<(&HeaderName, &HeaderValue)> = headers
        .iter()
        .filter(|(n, _)| keep(n, &connection, cache_hit))
        .collect();
    let mut buf = Vec::with_capacity(
        8 + body.len()
            + kept
                .iter()
                .map(|(n, v)| 6 + n.as_str().len() + v.len())
                .sum::<usize>(),
    );
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&status.as_u16().to_be_bytes());
    buf.extend_from_slice(&(kept.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
    for (name, value) in kept.iter().take(usize::from(u16::MAX)) {
        buf.extend_from_slice(&(name.as_str().len() as u16).to_be_bytes());
        buf.extend_from_slice(name.as_str().as_bytes());
        buf.extend_from_slice(&(value.len() as u32).to_be_bytes());
        buf.extend_from_slice(value.as_bytes());
    }
    buf.extend_from_slice(body);
    let mut record = serde_json::Map::with_capacity(2);
    record.insert("result".to_owned(), result);
    record.insert("response".to_owned(), Value::String(STANDARD.encode(buf)));
    Value::Object(record)
}

/// The record of a response that was delivered live and not kept.
pub(crate) fn unstored(status: StatusCode) -> Value {
    json!({ "result": null, "response": null, "stored": false, "status": status.as_u16() })
}

/// What a record's `result` says about the HTTP response.
#[derive(Debug)]
pub(crate) enum Stored {
    /// A full response to replay.
    Response(Response<Bytes>),
    /// The key was used but its response was not kept; carries the original status if known.
    NotStored(Option<u16>),
}

/// Decodes a record's `result` JSON.
pub(crate) fn decode(result: Option<&Value>) -> Result<Stored, IdempotencyError> {
    let corrupt = |reason| IdempotencyError::CorruptResponse { reason };
    let Some(obj) = result.and_then(Value::as_object) else {
        return Ok(Stored::NotStored(None));
    };
    let Some(encoded) = obj.get("response").and_then(Value::as_str) else {
        let status = obj.get("status").and_then(Value::as_u64).map(|s| s as u16);
        return Ok(Stored::NotStored(status));
    };
    // One buffer: header values and the body are zero-copy slices of it.
    let raw = Bytes::from(
        STANDARD
            .decode(encoded)
            .map_err(|_| corrupt("not base64"))?,
    );
    let mut r = Reader { buf: &raw, pos: 0 };
    if r.take(4)? != MAGIC {
        return Err(corrupt("unknown format"));
    }
    let status = StatusCode::from_u16(r.u16()?).map_err(|_| corrupt("bad status"))?;
    let count = r.u16()?;
    let mut headers = HeaderMap::with_capacity(usize::from(count));
    for _ in 0..count {
        let len = usize::from(r.u16()?);
        let name = HeaderName::from_bytes(r.take(len)?).map_err(|_| corrupt("bad header name"))?;
        let len = r.u32()? as usize;
        let start = r.pos;
        r.take(len)?;
        let value = HeaderValue::from_maybe_shared(raw.slice(start..start + len))
            .map_err(|_| corrupt("bad header value"))?;
        headers.append(name, value);
    }
    let body = raw.slice(r.pos..);
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(Stored::Response(response))
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], IdempotencyError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or(IdempotencyError::CorruptResponse {
            reason: "truncated",
        })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u16(&mut self) -> Result<u16, IdempotencyError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, IdempotencyError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_order_and_drops_denied() {
        let mut h = HeaderMap::new();
        h.append("link", HeaderValue::from_static("<a>; rel=x"));
        h.append("content-type", HeaderValue::from_static("application/json"));
        h.append("link", HeaderValue::from_static("<b>; rel=y"));
        h.append("set-cookie", HeaderValue::from_static("s=1"));
        h.append("date", HeaderValue::from_static("today"));
        h.append("content-length", HeaderValue::from_static("2"));
        h.append("connection", HeaderValue::from_static("x-hop"));
        h.append("x-hop", HeaderValue::from_static("1"));
        h.append("x-cache-hit", HeaderValue::from_static("false"));
        h.append("x-opaque", HeaderValue::from_bytes(b"\xff\xfe").unwrap());
        let skip = HeaderName::from_static("x-cache-hit");
        let v = encode(StatusCode::CREATED, &h, b"{}", json!({"a": 1}), Some(&skip));
        assert_eq!(v["result"], json!({"a": 1}));
        let Stored::Response(r) = decode(Some(&v)).unwrap() else {
            panic!()
        };
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(r.body().as_ref(), b"{}");
        let names: Vec<_> = r
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("link", &b"<a>; rel=x"[..]),
                ("link", b"<b>; rel=y"),
                ("content-type", b"application/json"),
                ("x-opaque", b"\xff\xfe"),
            ]
        );
    }

    #[test]
    fn unstored_and_corrupt() {
        assert!(matches!(
            decode(Some(&unstored(StatusCode::OK))).unwrap(),
            Stored::NotStored(Some(200))
        ));
        assert!(matches!(decode(None).unwrap(), Stored::NotStored(None)));
        assert!(decode(Some(&json!({"response": "QkdIMQ=="}))).is_err());
        assert!(decode(Some(&json!({"response": "!!"}))).is_err());
    }
}
