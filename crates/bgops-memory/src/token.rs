//! Lock tokens.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Lease and lock tokens: unique per store (a random prefix and a counter), cheaper than
/// asking the OS for randomness on every claim. They need to be unique, not secret: only
/// code with access to the store can present one.
pub(crate) struct Tokens {
    prefix: u64,
    counter: AtomicU64,
}

impl Tokens {
    pub(crate) fn new() -> Self {
        Self {
            prefix: uuid::Uuid::new_v4().as_u64_pair().0,
            counter: AtomicU64::new(0),
        }
    }

    pub(crate) fn next(&self) -> Token {
        Token {
            prefix: self.prefix,
            n: self.counter.fetch_add(1, Ordering::Relaxed),
        }
    }
}

/// A token kept as two numbers, so a claim stores it without allocating; callers see it
/// as 32 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token {
    prefix: u64,
    n: u64,
}

impl Token {
    /// The 32 lowercase hex digits callers see, written without the formatting machinery
    /// (this runs on every claim and every check of one).
    fn hex(self) -> [u8; 32] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            let (word, at) = if i < 16 {
                (self.prefix, i)
            } else {
                (self.n, i - 16)
            };
            *byte = DIGITS[((word >> ((15 - at) * 4)) & 0xf) as usize];
        }
        out
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hex digits are ASCII, so this is always valid UTF-8.
        f.write_str(std::str::from_utf8(&self.hex()).map_err(|_| fmt::Error)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_read_as_32_hex_digits_and_differ() {
        let token = Token {
            prefix: 0x0123_4567_89ab_cdef,
            n: 42,
        };
        let text = token.to_string();
        assert_eq!(text, "0123456789abcdef000000000000002a");
        let tokens = Tokens::new();
        let (a, b) = (tokens.next(), tokens.next());
        assert_ne!(a.to_string(), b.to_string());
    }
}
