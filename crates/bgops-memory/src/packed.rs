//! The compact form of an idempotency record: the whole record (its lease token too) in
//! one heap block, so a stored HTTP response costs one allocation and about its own size
//! (plus a 16-byte table slot) instead of a dozen allocations and struct padding.
//!
//! Layout, little endian: flags (`u16`), three times as Unix nanoseconds (`i64`:
//! creation, expiry, and the lease expiry while in flight or the completion time once
//! done), then the variable fields, each a LEB128 length and its bytes, present as the
//! flags say: tenant, key, operation type, user, fingerprint, token, parameters (JSON),
//! result (JSON), error, payload. A fingerprint or token written in lowercase hex (a
//! SHA-256, an engine token) is kept as the bytes it spells, half its length.
//!
//! Records are read back field by field where a call needs one (the address, a time, the
//! token) and decoded whole only when one is handed out.

use std::sync::Arc;

use bgops_core::{IdempotencyRecord, OperationStatus};
use bytes::Bytes;
use serde_json::Value;
use time::OffsetDateTime;

const STATUS: u16 = 0b11;
const HAS_USER: u16 = 1 << 2;
const HAS_FINGERPRINT: u16 = 1 << 3;
const FINGERPRINT_HEX: u16 = 1 << 4;
const TOKEN_HEX: u16 = 1 << 5;
const HAS_PARAMETERS: u16 = 1 << 6;
const HAS_RESULT: u16 = 1 << 7;
const HAS_ERROR: u16 = 1 << 8;
const HAS_PAYLOAD: u16 = 1 << 9;

const CREATED: usize = 2;
const EXPIRES: usize = 10;
const MOMENT: usize = 18;
const FIELDS: usize = 26;

/// A record in its compact form.
#[derive(Debug)]
pub(crate) struct Packed(Box<[u8]>);

/// A text field as given (`Plain`, packed when it is lowercase hex) or as stored (`Hex`:
/// the bytes a hex text spells).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Text<'a> {
    Plain(&'a [u8]),
    Hex(&'a [u8]),
}

impl Text<'_> {
    /// Whether this is the text `other`.
    pub(crate) fn is(self, other: &str) -> bool {
        let other = other.as_bytes();
        match self {
            Self::Plain(text) => text == other,
            Self::Hex(raw) => {
                raw.len() * 2 == other.len()
                    && raw
                        .iter()
                        .zip(other.chunks_exact(2))
                        .all(|(byte, pair)| hex_pair(*byte) == [pair[0], pair[1]])
            }
        }
    }

    /// The text.
    fn to_string(self) -> Option<String> {
        match self {
            Self::Plain(text) => String::from_utf8(text.to_vec()).ok(),
            Self::Hex(raw) => {
                let mut out = String::with_capacity(raw.len() * 2);
                for byte in raw {
                    let [high, low] = hex_pair(*byte);
                    out.push(char::from(high));
                    out.push(char::from(low));
                }
                Some(out)
            }
        }
    }

    /// Its stored length and whether it is stored as hex.
    fn stored(self) -> (usize, bool) {
        match self {
            Self::Plain(text) if is_lower_hex(text) => (text.len() / 2, true),
            Self::Plain(text) => (text.len(), false),
            Self::Hex(raw) => (raw.len(), true),
        }
    }

    fn write(self, out: &mut Vec<u8>) {
        let (len, _) = self.stored();
        write_len(out, len);
        match self {
            Self::Plain(text) if is_lower_hex(text) => {
                out.extend(
                    text.chunks_exact(2)
                        .map(|pair| unhex(pair[0]) << 4 | unhex(pair[1])),
                );
            }
            Self::Plain(bytes) | Self::Hex(bytes) => out.extend_from_slice(bytes),
        }
    }
}

const DIGITS: &[u8; 16] = b"0123456789abcdef";

fn hex_pair(byte: u8) -> [u8; 2] {
    [
        DIGITS[usize::from(byte >> 4)],
        DIGITS[usize::from(byte & 0xf)],
    ]
}

fn is_lower_hex(text: &[u8]) -> bool {
    !text.is_empty()
        && text.len() % 2 == 0
        && text
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

/// The value of a lowercase hex digit (checked by [`is_lower_hex`] first).
fn unhex(digit: u8) -> u8 {
    if digit.is_ascii_digit() {
        digit - b'0'
    } else {
        digit - b'a' + 10
    }
}

/// Every field of a record, borrowed: what [`Packed::new`] writes and
/// [`Packed::fields`] reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields<'a> {
    pub(crate) status: OperationStatus,
    pub(crate) created: i64,
    pub(crate) expires: i64,
    /// The lease expiry while in flight, the completion time once done.
    pub(crate) moment: i64,
    pub(crate) tenant: &'a [u8],
    pub(crate) key: &'a [u8],
    pub(crate) operation: &'a [u8],
    pub(crate) user: Option<&'a [u8]>,
    pub(crate) fingerprint: Option<Text<'a>>,
    pub(crate) token: Text<'a>,
    /// JSON.
    pub(crate) parameters: Option<&'a [u8]>,
    /// JSON.
    pub(crate) result: Option<&'a [u8]>,
    pub(crate) error: Option<&'a [u8]>,
    pub(crate) payload: Option<&'a [u8]>,
}

fn status_bits(status: OperationStatus) -> u16 {
    match status {
        OperationStatus::Completed => 1,
        OperationStatus::Failed => 2,
        _ => 0,
    }
}

fn status_of(bits: u16) -> OperationStatus {
    match bits & STATUS {
        1 => OperationStatus::Completed,
        2 => OperationStatus::Failed,
        _ => OperationStatus::InProgress,
    }
}

fn len_of_len(len: usize) -> usize {
    let mut n = 1;
    let mut rest = len >> 7;
    while rest > 0 {
        n += 1;
        rest >>= 7;
    }
    n
}

fn write_len(out: &mut Vec<u8>, mut len: usize) {
    loop {
        let low = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// A field that does not parse.
#[derive(Debug)]
struct Unreadable;

/// Reads the variable fields in order.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn len(&mut self) -> Option<usize> {
        let mut len = 0usize;
        for shift in (0..64).step_by(7) {
            let byte = *self.buf.get(self.at)?;
            self.at += 1;
            len |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(len);
            }
        }
        None
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = self.len()?;
        let bytes = self.buf.get(self.at..self.at.checked_add(len)?)?;
        self.at += len;
        Some(bytes)
    }

    /// The next field if `present`: `Err` when it does not parse.
    fn optional(&mut self, present: bool) -> Result<Option<&'a [u8]>, Unreadable> {
        if present {
            self.bytes().map(Some).ok_or(Unreadable)
        } else {
            Ok(None)
        }
    }
}

fn time_at(buf: &[u8], at: usize) -> Option<i64> {
    Some(i64::from_le_bytes(buf.get(at..at + 8)?.try_into().ok()?))
}

impl Packed {
    /// Writes `fields` into one block of exactly their size.
    pub(crate) fn new(fields: &Fields<'_>) -> Self {
        let fingerprint = fields.fingerprint.map(Text::stored);
        let (token_len, token_hex) = fields.token.stored();
        let sized = |bytes: Option<&[u8]>| bytes.map_or(0, |b| len_of_len(b.len()) + b.len());
        let size = FIELDS
            + sized(Some(fields.tenant))
            + sized(Some(fields.key))
            + sized(Some(fields.operation))
            + sized(fields.user)
            + fingerprint.map_or(0, |(len, _)| len_of_len(len) + len)
            + len_of_len(token_len)
            + token_len
            + sized(fields.parameters)
            + sized(fields.result)
            + sized(fields.error)
            + sized(fields.payload);
        let mut flags = status_bits(fields.status);
        let mut set = |present: bool, flag: u16| {
            if present {
                flags |= flag;
            }
        };
        set(fields.user.is_some(), HAS_USER);
        set(fingerprint.is_some(), HAS_FINGERPRINT);
        set(fingerprint.is_some_and(|(_, hex)| hex), FINGERPRINT_HEX);
        set(token_hex, TOKEN_HEX);
        set(fields.parameters.is_some(), HAS_PARAMETERS);
        set(fields.result.is_some(), HAS_RESULT);
        set(fields.error.is_some(), HAS_ERROR);
        set(fields.payload.is_some(), HAS_PAYLOAD);

        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&fields.created.to_le_bytes());
        out.extend_from_slice(&fields.expires.to_le_bytes());
        out.extend_from_slice(&fields.moment.to_le_bytes());
        write_bytes(&mut out, fields.tenant);
        write_bytes(&mut out, fields.key);
        write_bytes(&mut out, fields.operation);
        if let Some(user) = fields.user {
            write_bytes(&mut out, user);
        }
        if let Some(fingerprint) = fields.fingerprint {
            fingerprint.write(&mut out);
        }
        fields.token.write(&mut out);
        for bytes in [
            fields.parameters,
            fields.result,
            fields.error,
            fields.payload,
        ]
        .into_iter()
        .flatten()
        {
            write_bytes(&mut out, bytes);
        }
        debug_assert_eq!(out.len(), size);
        Self(out.into_boxed_slice())
    }

    fn flags(&self) -> u16 {
        self.0
            .get(..2)
            .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]))
    }

    /// Every field, or `None` if the block does not parse (never, for blocks written by
    /// [`Packed::new`]).
    pub(crate) fn fields(&self) -> Option<Fields<'_>> {
        let flags = self.flags();
        let buf = &self.0;
        let mut read = Reader { buf, at: FIELDS };
        let tenant = read.bytes()?;
        let key = read.bytes()?;
        let operation = read.bytes()?;
        let user = read.optional(flags & HAS_USER != 0).ok()?;
        let fingerprint = read
            .optional(flags & HAS_FINGERPRINT != 0)
            .ok()?
            .map(|bytes| text(bytes, flags & FINGERPRINT_HEX != 0));
        let token = text(read.bytes()?, flags & TOKEN_HEX != 0);
        Some(Fields {
            status: status_of(flags),
            created: time_at(buf, CREATED)?,
            expires: time_at(buf, EXPIRES)?,
            moment: time_at(buf, MOMENT)?,
            tenant,
            key,
            operation,
            user,
            fingerprint,
            token,
            parameters: read.optional(flags & HAS_PARAMETERS != 0).ok()?,
            result: read.optional(flags & HAS_RESULT != 0).ok()?,
            error: read.optional(flags & HAS_ERROR != 0).ok()?,
            payload: read.optional(flags & HAS_PAYLOAD != 0).ok()?,
        })
    }

    /// Tenant and key, read without decoding the rest.
    pub(crate) fn address(&self) -> Option<(&[u8], &[u8])> {
        let mut read = Reader {
            buf: &self.0,
            at: FIELDS,
        };
        Some((read.bytes()?, read.bytes()?))
    }

    /// Whether this is the record of (tenant, key).
    pub(crate) fn is_at(&self, tenant: &str, key: &str) -> bool {
        self.address() == Some((tenant.as_bytes(), key.as_bytes()))
    }

    /// The expiry (Unix nanoseconds).
    pub(crate) fn expires(&self) -> i64 {
        time_at(&self.0, EXPIRES).unwrap_or(i64::MIN)
    }

    /// Where the block is in memory (to free blocks in address order).
    pub(crate) fn at(&self) -> usize {
        self.0.as_ptr().addr()
    }

    /// Sets the lease expiry (or completion time) in place.
    pub(crate) fn set_moment(&mut self, moment: i64) {
        if let Some(slot) = self.0.get_mut(MOMENT..MOMENT + 8) {
            slot.copy_from_slice(&moment.to_le_bytes());
        }
    }
}

fn text(bytes: &[u8], hex: bool) -> Text<'_> {
    if hex {
        Text::Hex(bytes)
    } else {
        Text::Plain(bytes)
    }
}

/// Unix nanoseconds of `at`, or `None` outside the years 1678 to 2261.
pub(crate) fn nanos(at: OffsetDateTime) -> Option<i64> {
    i64::try_from(at.unix_timestamp_nanos()).ok()
}

/// The time at `nanos` (UTC).
pub(crate) fn time(nanos: i64) -> OffsetDateTime {
    // Every i64 of nanoseconds is within `OffsetDateTime`'s range.
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn utf8(bytes: &[u8]) -> Option<String> {
    String::from_utf8(bytes.to_vec()).ok()
}

fn json(bytes: &[u8]) -> Option<Value> {
    serde_json::from_slice(bytes).ok()
}

/// An optional field decoded: `Err` when it is present and does not decode.
fn decoded<T, U>(
    field: Option<T>,
    decode: impl FnOnce(T) -> Option<U>,
) -> Result<Option<U>, Unreadable> {
    match field {
        None => Ok(None),
        Some(field) => decode(field).map(Some).ok_or(Unreadable),
    }
}

impl Fields<'_> {
    /// The record handed out to callers.
    pub(crate) fn to_record(self) -> Option<Arc<IdempotencyRecord>> {
        let in_flight = self.status == OperationStatus::InProgress;
        Some(Arc::new(IdempotencyRecord {
            key: utf8(self.key)?,
            tenant_id: utf8(self.tenant)?,
            user_id: decoded(self.user, utf8).ok()?,
            operation_type: utf8(self.operation)?,
            created_at: time(self.created),
            expires_at: time(self.expires),
            status: self.status,
            result: decoded(self.result, json).ok()?,
            error: decoded(self.error, utf8).ok()?,
            parameters: decoded(self.parameters, json).ok()?,
            fingerprint: decoded(self.fingerprint, Text::to_string).ok()?,
            lease_expires_at: in_flight.then(|| time(self.moment)),
            completed_at: (!in_flight).then(|| time(self.moment)),
            payload: self.payload.map(Bytes::copy_from_slice),
        }))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields<'a>(fingerprint: &'a str, token: &'a str) -> Fields<'a> {
        Fields {
            status: OperationStatus::InProgress,
            created: 1_700_000_000_123_456_789,
            expires: 1_700_086_400_123_456_789,
            moment: 1_700_000_030_000_000_000,
            tenant: b"tenant",
            key: b"k",
            operation: b"POST /orders",
            user: None,
            fingerprint: Some(Text::Plain(fingerprint.as_bytes())),
            token: Text::Plain(token.as_bytes()),
            parameters: None,
            result: None,
            error: None,
            payload: None,
        }
    }

    #[test]
    fn hex_texts_are_kept_as_bytes_and_read_back_exactly() {
        let sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let token = "0123456789abcdef0123456789abcdef";
        let packed = Packed::new(&fields(sha, token));
        assert_eq!(packed.0.len(), FIELDS + 7 + 2 + 13 + 33 + 17);
        let read = packed.fields().unwrap();
        assert!(matches!(read.fingerprint, Some(Text::Hex(b)) if b.len() == 32));
        assert!(read.token.is(token) && !read.token.is("0123") && !read.token.is(sha));
        let record = read.to_record().unwrap();
        assert_eq!(record.fingerprint.as_deref(), Some(sha));
        assert_eq!(record.operation_type, "POST /orders");
        assert_eq!(
            record.created_at.unix_timestamp_nanos(),
            1_700_000_000_123_456_789
        );
        assert_eq!(
            record
                .lease_expires_at
                .map(OffsetDateTime::unix_timestamp_nanos),
            Some(1_700_000_030_000_000_000)
        );
    }

    #[test]
    fn other_texts_are_kept_as_given() {
        for text in ["", "ABCDEF", "abc", "xyz-1", "é✓", "0a0"] {
            let packed = Packed::new(&fields(text, text));
            let read = packed.fields().unwrap();
            assert!(read.token.is(text), "{text}");
            let record = read.to_record().unwrap();
            assert_eq!(record.fingerprint.as_deref(), Some(text));
        }
    }

    #[test]
    fn every_field_round_trips() {
        let result = serde_json::to_vec(&json!({"ok": [1, 2.5, null]})).unwrap();
        let params = serde_json::to_vec(&json!({"to": "a@b"})).unwrap();
        let payload: Vec<u8> = (0..=255).cycle().take(70_000).collect();
        let mut all = fields("ff", "t-1");
        all.status = OperationStatus::Failed;
        all.user = Some(b"user-1");
        all.parameters = Some(&params);
        all.result = Some(&result);
        all.error = Some("déclinée".as_bytes());
        all.payload = Some(&payload);
        let mut packed = Packed::new(&all);
        packed.set_moment(42);
        assert!(packed.is_at("tenant", "k") && !packed.is_at("tenant", "k2"));
        let record = packed.fields().unwrap().to_record().unwrap();
        assert_eq!(record.status, OperationStatus::Failed);
        assert_eq!(record.user_id.as_deref(), Some("user-1"));
        assert_eq!(record.parameters, Some(json!({"to": "a@b"})));
        assert_eq!(record.result, Some(json!({"ok": [1, 2.5, null]})));
        assert_eq!(record.error.as_deref(), Some("déclinée"));
        assert_eq!(record.payload.as_deref(), Some(&payload[..]));
        assert_eq!(record.completed_at, Some(time(42)));
        assert_eq!(record.lease_expires_at, None);
        let empty = Fields {
            payload: Some(b""),
            ..fields("a", "b")
        };
        let record = Packed::new(&empty).fields().unwrap().to_record().unwrap();
        assert_eq!(record.payload.as_deref(), Some(&b""[..]));
    }

    #[test]
    fn a_truncated_block_does_not_parse() {
        let packed = Packed::new(&fields("ab", "cd"));
        for len in 0..packed.0.len() {
            let cut = Packed(packed.0[..len].into());
            assert!(cut.fields().is_none(), "cut at {len}");
        }
    }
}
