//! Every bucket, stream, subject and key name, built in one place.
//!
//! Names taken from users (tenants, idempotency keys, queues, lock names) may hold any
//! visible ASCII, but KV keys and subject tokens allow only `[-_=A-Za-z0-9]` (plus `/`
//! and `.`, which we do not use inside a token): [`enc`] keeps those characters and
//! writes every other byte as `=XX`, so encoding is injective and never adds a dot.

use std::fmt::Write as _;

/// Encodes `s` as one KV key / subject token (see the module docs).
pub(crate) fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "={b:02X}");
        }
    }
    if out.is_empty() {
        out.push('=');
    }
    out
}

/// Reverses [`enc`].
pub(crate) fn dec(token: &str) -> String {
    if token == "=" {
        return String::new();
    }
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            if let Some(b) = token
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `prefix` can name buckets, streams and a subject token.
pub(crate) fn valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.len() <= 64
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The names of one store (one prefix).
#[derive(Debug, Clone)]
pub(crate) struct Names {
    prefix: String,
}

impl Names {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A KV bucket: `idem`, `tasks`, `sagas`, `locks`.
    pub(crate) fn bucket(&self, kind: &str) -> String {
        format!("{}_{kind}", self.prefix)
    }

    /// The index stream.
    pub(crate) fn index_stream(&self) -> String {
        format!("{}_index", self.prefix)
    }

    /// The work-queue stream.
    pub(crate) fn work_stream(&self) -> String {
        format!("{}_work", self.prefix)
    }

    /// Every subject of the index stream.
    pub(crate) fn index_subjects(&self) -> String {
        format!("{}.ix.>", self.prefix)
    }

    /// Every subject of the work stream.
    pub(crate) fn work_subjects(&self) -> String {
        format!("{}.work.>", self.prefix)
    }

    /// The work subject of a queue.
    pub(crate) fn work_subject(&self, queue: &str) -> String {
        format!("{}.work.{}", self.prefix, enc(queue))
    }

    /// The durable consumer of a queue.
    pub(crate) fn consumer(queue: &str) -> String {
        format!("q-{}", enc(queue))
    }

    /// An index entry subject: `{prefix}.ix.{parts...}`.
    pub(crate) fn index(&self, parts: &[&str]) -> String {
        let mut s = format!("{}.ix", self.prefix);
        for p in parts {
            s.push('.');
            s.push_str(p);
        }
        s
    }

    /// An idempotency record's key.
    pub(crate) fn record(tenant: &str, key: &str) -> String {
        format!("{}.{}", enc(tenant), enc(key))
    }

    /// A task's key.
    pub(crate) fn task(id: &str) -> String {
        format!("t.{}", enc(id))
    }

    /// A task's dedupe key (queue + idempotency key → task id).
    pub(crate) fn task_key(queue: &str, key: &str) -> String {
        format!("k.{}.{}", enc(queue), enc(key))
    }

    /// A saga's key.
    pub(crate) fn saga(id: &str) -> String {
        format!("s.{}", enc(id))
    }

    /// A saga's dedupe key (tenant + idempotency key → saga id).
    pub(crate) fn saga_key(tenant: &str, key: &str) -> String {
        format!("k.{}.{}", enc(tenant), enc(key))
    }

    /// A lock's key.
    pub(crate) fn lock(name: &str) -> String {
        format!("l.{}", enc(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_keeps_safe_characters_and_escapes_the_rest() {
        assert_eq!(enc("order-42_x"), "order-42_x");
        assert_eq!(enc("a.b c"), "a=2Eb=20c");
        assert_eq!(enc("a=b"), "a=3Db");
        assert_eq!(enc(""), "=");
        assert_ne!(enc("a.b"), enc("a=2Eb"));
    }

    #[test]
    fn prefixes_are_single_tokens() {
        assert!(valid_prefix("bgops_test-1"));
        assert!(!valid_prefix("a.b"));
        assert!(!valid_prefix(""));
        assert!(!valid_prefix("a*"));
    }
}
