//! Request fingerprints: a later request with the same key and another fingerprint is a
//! mismatch (422), not a replay.

use std::sync::Arc;

use http::request::Parts;
use sha2::{Digest, Sha256};

/// Computes the fingerprint of a request from its head and its (buffered) body.
///
/// Replace the default to ignore volatile fields (a JSON subset, a timestamp) or to key
/// the hash with a deployment secret.
pub trait Fingerprinter: Send + Sync + 'static {
    /// The fingerprint; compared for equality only.
    fn fingerprint(&self, parts: &Parts, body: &[u8]) -> String;
}

/// A shared fingerprinter.
pub type SharedFingerprinter = Arc<dyn Fingerprinter>;

/// SHA-256 over method, path, query and body bytes, each length-prefixed so that no two
/// different requests can produce the same input. Hex-encoded.
///
/// ```
/// use bgops_axum::{Fingerprinter, Sha256Fingerprint};
/// let (a, ()) = http::Request::post("/x?a=1").body(()).unwrap().into_parts();
/// let (b, ()) = http::Request::post("/x?a=2").body(()).unwrap().into_parts();
/// assert_ne!(Sha256Fingerprint.fingerprint(&a, b"{}"), Sha256Fingerprint.fingerprint(&b, b"{}"));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Sha256Fingerprint;

impl Fingerprinter for Sha256Fingerprint {
    fn fingerprint(&self, parts: &Parts, body: &[u8]) -> String {
        let mut h = Sha256::new();
        for field in [
            parts.method.as_str().as_bytes(),
            parts.uri.path().as_bytes(),
            parts.uri.query().unwrap_or("").as_bytes(),
            body,
        ] {
            h.update((field.len() as u64).to_be_bytes());
            h.update(field);
        }
        hex::encode(h.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(method: &str, uri: &str, body: &[u8]) -> String {
        let (p, ()) = http::Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .unwrap()
            .into_parts();
        Sha256Fingerprint.fingerprint(&p, body)
    }

    #[test]
    fn every_part_counts() {
        let base = fp("POST", "/a?q=1", b"x");
        assert_eq!(base, fp("POST", "/a?q=1", b"x"));
        assert_ne!(base, fp("PATCH", "/a?q=1", b"x"));
        assert_ne!(base, fp("POST", "/b?q=1", b"x"));
        assert_ne!(base, fp("POST", "/a?q=2", b"x"));
        assert_ne!(base, fp("POST", "/a?q=1", b"y"));
        // Length prefixes: moving bytes between fields changes the hash.
        assert_ne!(fp("POST", "/a?", b"q"), fp("POST", "/a?q", b""));
    }
}
