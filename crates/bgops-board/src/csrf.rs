//! CSRF protection of the write actions: a synchronizer token (random per board, only
//! readable by someone who can read the board's pages, which another site cannot) that
//! each form posts back, plus a same-origin check of `Sec-Fetch-Site` and `Origin`.

use std::sync::Arc;

use axum::http::HeaderMap;
use bgops_core::id::{IdGenerator as _, RandomIds};

use crate::BoardError;

/// The board's CSRF token.
#[derive(Debug, Clone)]
pub(crate) struct Csrf {
    token: Arc<str>,
}

impl Csrf {
    /// A fresh random token (two 128-bit random tokens).
    pub(crate) fn new() -> Self {
        let ids = RandomIds;
        Self {
            token: Arc::from(format!("{}{}", ids.token(), ids.token())),
        }
    }

    /// The token to embed in forms.
    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    /// Accepts a write only with the right token, from the same origin.
    pub(crate) fn check(&self, headers: &HeaderMap, given: &str) -> Result<(), BoardError> {
        if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
            if site != "same-origin" && site != "none" {
                return Err(BoardError::Forbidden("cross-site request"));
            }
        }
        if let Some(origin) = headers.get("origin").and_then(|v| v.to_str().ok()) {
            let host = headers
                .get("host")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let origin_host = origin.split_once("://").map_or("", |(_, h)| h);
            if origin_host != host {
                return Err(BoardError::Forbidden("request from another origin"));
            }
        }
        if !constant_time_eq(given.as_bytes(), self.token.as_bytes()) {
            return Err(BoardError::Forbidden("missing or wrong CSRF token"));
        }
        Ok(())
    }
}

/// Compares without an early exit, so timing does not reveal a matching prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn token_and_origin_are_both_required() {
        let csrf = Csrf::new();
        let token = csrf.token().to_owned();
        assert_eq!(token.len(), 64);
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("ops.example:8080"));
        assert!(csrf.check(&headers, &token).is_ok());
        assert!(csrf.check(&headers, "nope").is_err());
        assert!(csrf.check(&headers, "").is_err());
        headers.insert(
            "origin",
            HeaderValue::from_static("http://ops.example:8080"),
        );
        assert!(csrf.check(&headers, &token).is_ok());
        headers.insert("origin", HeaderValue::from_static("http://evil.example"));
        assert!(csrf.check(&headers, &token).is_err());
        headers.remove("origin");
        headers.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(csrf.check(&headers, &token).is_err());
        assert_ne!(Csrf::new().token(), token, "a token per board");
    }
}
