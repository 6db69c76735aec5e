//! How a response is kept in an idempotency record's byte payload
//! (`OperationOutcome::payload`), and rebuilt byte for byte: one read, one decode, no
//! base64 and no JSON around it.
//!
//! `bgops-http/1` (big-endian): the 4 bytes `BGH1`, status `u16`, header count `u16`, then
//! per header a `u16` name length, the lower-case name, a `u32` value length and the value
//! bytes (repeated headers appear once per value, in the order sent), then the body bytes
//! to the end. Header values and the body of a decoded response are slices of the stored
//! buffer (no copy).
//!
//! A response delivered live without being kept (streamed or too large) is recorded as
//! the 6 bytes `BGN1` + status `u16`, so a retry learns the key was used.

use bytes::{BufMut as _, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};

use crate::error::IdempotencyError;
use crate::headers::{IDEMPOTENCY_STORED, IDEMPOTENT_REPLAYED};

const RESPONSE: &[u8; 4] = b"BGH1";
const NOT_KEPT: &[u8; 4] = b"BGN1";

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
fn keep(name: &HeaderName, connection: &[&str], cache_hit: Option<&HeaderName>) -> bool {
    !NOT_STORED.contains(name)
        && *name != IDEMPOTENT_REPLAYED
        && *name != IDEMPOTENCY_STORED
        && Some(name) != cache_hit
        && !connection
            .iter()
            .any(|c| c.eq_ignore_ascii_case(name.as_str()))
}

/// Encodes status, the storable headers and the body as `bgops-http/1`.
pub(crate) fn encode(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    cache_hit: Option<&HeaderName>,
) -> Bytes {
    // Names listed in `Connection` are hop-by-hop too.
    let connection: Vec<&str> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(str::trim))
        .collect();
    let kept = || {
        headers
            .iter()
            .filter(|(n, _)| keep(n, &connection, cache_hit))
            .take(usize::from(u16::MAX))
    };
    let (count, size) = kept().fold((0u16, 8 + body.len()), |(c, s), (n, v)| {
        (c + 1, s + 6 + n.as_str().len() + v.len())
    });
    let mut buf = BytesMut::with_capacity(size);
    buf.put_slice(RESPONSE);
    buf.put_u16(status.as_u16());
    buf.put_u16(count);
    for (name, value) in kept() {
        buf.put_u16(name.as_str().len() as u16);
        buf.put_slice(name.as_str().as_bytes());
        buf.put_u32(value.len() as u32);
        buf.put_slice(value.as_bytes());
    }
    buf.put_slice(body);
    buf.freeze()
}

/// The payload of a response that was delivered live and not kept.
pub(crate) fn unstored(status: StatusCode) -> Bytes {
    let mut buf = BytesMut::with_capacity(6);
    buf.put_slice(NOT_KEPT);
    buf.put_u16(status.as_u16());
    buf.freeze()
}

/// What a record's payload says about the HTTP response.
#[derive(Debug)]
pub(crate) enum Stored {
    /// A full response to replay.
    Response(Response<Bytes>),
    /// The key was used but its response was not kept; the original status if known.
    NotStored(Option<u16>),
}

/// Decodes a record's payload (`None`: the record holds no response, e.g. it was
/// completed through the manager's API).
pub(crate) fn decode(payload: Option<&Bytes>) -> Result<Stored, IdempotencyError> {
    let corrupt = |reason| IdempotencyError::CorruptResponse { reason };
    let Some(raw) = payload else {
        return Ok(Stored::NotStored(None));
    };
    let mut r = Reader { buf: raw, pos: 0 };
    let magic = r.take(4)?;
    if magic == NOT_KEPT {
        return Ok(Stored::NotStored(Some(r.u16()?)));
    }
    if magic != RESPONSE {
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
    let mut response = Response::new(raw.slice(r.pos..));
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
        let payload = encode(StatusCode::CREATED, &h, b"{}", Some(&skip));
        let Stored::Response(r) = decode(Some(&payload)).unwrap() else {
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
        for bad in [
            &b"BGH1"[..],
            b"xxxx\x00\xc8\x00\x00",
            b"BGH1\x00\xc8\x00\x01\x00\x09",
        ] {
            assert!(decode(Some(&Bytes::from_static(bad))).is_err(), "{bad:?}");
        }
    }
}
