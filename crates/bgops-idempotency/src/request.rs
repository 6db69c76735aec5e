//! What a caller asks the engine for, and the one home of the key recipes: fingerprints,
//! bounded operation types and scoped storage keys.

use std::borrow::Cow;
use std::time::Duration;

use bgops_core::validate::MAX_NAME_LEN;
use bgops_core::{CoreError, key};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// One request to claim a key: its address (tenant + key), what the operation is, and how
/// to recognise "the same request" again (the fingerprint).
///
/// ```
/// use bgops_idempotency::KeyRequest;
/// use serde_json::json;
/// // The seed's deterministic key: derived from tenant, user, operation and parameters.
/// let request = KeyRequest::for_operation(
///     "tenant1", Some("user1"), "send_email", None,
///     Some(&json!({"to": "user@example.com", "subject": "Welcome"})),
/// )?;
/// assert_eq!(request.key, "8d0d5304231d6a0478dae9a604a2314b");
/// assert!(request.fingerprint.is_some());
/// # Ok::<(), bgops_idempotency::IdempotencyError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRequest {
    /// Tenant scope; part of the storage address.
    pub tenant_id: String,
    /// The key (a storage key: see [`scoped_key`] for keys that belong to a user).
    pub key: String,
    /// The user, if any (kept in the record).
    pub user_id: Option<String>,
    /// Kind of operation (at most 255 bytes: see [`bounded_operation_type`]).
    pub operation_type: String,
    /// What makes two requests "the same"; another fingerprint under the key is a
    /// mismatch. `None` matches any.
    pub fingerprint: Option<String>,
    /// Parameters kept in the record.
    pub parameters: Option<Value>,
    /// Retention; the engine's TTL when `None`.
    pub ttl: Option<Duration>,
    /// In-flight lease; the engine's lease when `None` (never longer than the TTL).
    pub lease: Option<Duration>,
}

impl KeyRequest {
    /// A request for `key` under `tenant_id`, without fingerprint or parameters.
    pub fn new(
        tenant_id: impl Into<String>,
        key: impl Into<String>,
        operation_type: impl Into<String>,
    ) -> Self {
        Self {
            tenant_id: tenant_id.into(),
            key: key.into(),
            user_id: None,
            operation_type: operation_type.into(),
            fingerprint: None,
            parameters: None,
            ttl: None,
            lease: None,
        }
    }

    /// The seed's request: `key` given by the client, or (when `None`) derived from
    /// tenant, user, operation type and parameters (semantics §1, compatible with the
    /// seed's Python package). The fingerprint is [`fingerprint`] of operation type and
    /// canonical parameters, so the same key with other parameters is a mismatch.
    ///
    /// # Errors
    /// [`IdempotencyError::Invalid`](crate::IdempotencyError::Invalid) when the
    /// parameters are not JSON or tenant / operation type are empty.
    pub fn for_operation<P: Serialize + ?Sized>(
        tenant_id: &str,
        user_id: Option<&str>,
        operation_type: &str,
        key: Option<&str>,
        parameters: Option<&P>,
    ) -> Result<Self, crate::IdempotencyError> {
        let parameters = parameters
            .map(serde_json::to_value)
            .transpose()
            .map_err(CoreError::NotJson)?;
        // The canonical text serves both the derived key and the fingerprint: written once.
        let canonical = parameters.as_ref().map(key::python_json);
        let key = match key {
            Some(k) => k.to_owned(),
            None => key::derive_key_from_json(
                tenant_id,
                user_id,
                operation_type,
                canonical.as_deref().unwrap_or("{}"),
            )?,
        };
        Ok(Self {
            tenant_id: tenant_id.to_owned(),
            key,
            user_id: user_id.map(str::to_owned),
            operation_type: operation_type.to_owned(),
            fingerprint: Some(fingerprint(operation_type, canonical.as_deref())),
            parameters,
            ttl: None,
            lease: None,
        })
    }

    /// Sets the user.
    pub fn user_id(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }

    /// Sets the fingerprint.
    pub fn fingerprint(mut self, fingerprint: impl Into<String>) -> Self {
        self.fingerprint = Some(fingerprint.into());
        self
    }

    /// Sets the parameters kept in the record.
    pub fn parameters(mut self, parameters: Value) -> Self {
        self.parameters = Some(parameters);
        self
    }

    /// Sets the retention TTL.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Sets the in-flight lease.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = Some(lease);
        self
    }
}

/// What identifies "the same request" for a key given as operation type and canonical
/// parameters (the text of [`bgops_core::key::python_json`]): hex SHA-256 of the
/// operation type, a zero byte and the parameters.
pub fn fingerprint(operation_type: &str, canonical_parameters: Option<&str>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(operation_type.as_bytes());
    hasher.update([0]);
    if let Some(p) = canonical_parameters {
        hasher.update(p.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Hex digits of the hash that ends a shortened operation type.
const BOUND_HASH_HEX: usize = 32;

/// An operation type that fits the store's 255-byte limit: itself when it fits, else
/// its head, `#` and 32 hex digits of its SHA-256 (so two long types that share a head
/// still differ). The HTTP middleware's `METHOD path` goes through this, so a long path
/// works instead of being refused by the store.
///
/// ```
/// use bgops_idempotency::bounded_operation_type;
/// assert_eq!(bounded_operation_type("POST /orders"), "POST /orders");
/// let long = format!("POST /{}", "a".repeat(400));
/// let bounded = bounded_operation_type(&long);
/// assert!(bounded.len() <= 255 && bounded.starts_with("POST /aaa"));
/// assert_ne!(bounded, bounded_operation_type(&format!("{long}b")));
/// ```
pub fn bounded_operation_type(text: &str) -> Cow<'_, str> {
    if text.len() <= MAX_NAME_LEN {
        return Cow::Borrowed(text);
    }
    let mut head = MAX_NAME_LEN - BOUND_HASH_HEX - 1;
    while !text.is_char_boundary(head) {
        head -= 1;
    }
    let digest = hex::encode(Sha256::digest(text.as_bytes()));
    Cow::Owned(format!("{}#{}", &text[..head], &digest[..BOUND_HASH_HEX]))
}

/// The storage key of a client's `key` in a scope with or without a user, disjoint by
/// construction: every storage key starts with a tag that says which space it is in, so
/// no client key sent without a user can address a user's record.
///
/// | scope | storage key |
/// |---|---|
/// | no user, key ≤ 253 bytes | `k.` + key |
/// | no user, longer key | `h.` + hex SHA-256 of the key |
/// | user | `u.` + hex SHA-256 of (user length, user, key) |
///
/// Every form is at most 255 visible ASCII bytes (a valid key).
///
/// ```
/// use bgops_idempotency::scoped_key;
/// assert_eq!(scoped_key(None, "abc"), "k.abc");
/// let alice = scoped_key(Some("alice"), "abc");
/// assert!(alice.starts_with("u."));
/// // The attacker's attempt: send the user's storage key as a bare key.
/// assert_ne!(scoped_key(None, &alice), alice);
/// ```
pub fn scoped_key(user_id: Option<&str>, key: &str) -> String {
    match user_id {
        None if key.len() <= MAX_NAME_LEN - 2 => {
            let mut out = String::with_capacity(key.len() + 2);
            out.push_str("k.");
            out.push_str(key);
            out
        }
        None => format!("h.{}", hex::encode(Sha256::digest(key.as_bytes()))),
        Some(user) => {
            let mut h = Sha256::new();
            h.update((user.len() as u64).to_be_bytes());
            h.update(user.as_bytes());
            h.update(key.as_bytes());
            format!("u.{}", hex::encode(h.finalize()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoped_keys_never_collide_across_spaces() {
        let long = "k".repeat(255);
        let forms = [
            scoped_key(None, "x"),
            scoped_key(None, &long),
            scoped_key(Some("a"), "x"),
            scoped_key(Some("a"), &long),
        ];
        for f in &forms {
            assert!(f.len() <= 255 && bgops_core::validate::idempotency_key(f).is_ok());
            // Sending a storage key as a bare key lands in the `k.`/`h.` space.
            let resent = scoped_key(None, f);
            assert!(!forms.contains(&resent), "{f} is addressable unscoped");
        }
        assert_ne!(scoped_key(Some("ab"), "c"), scoped_key(Some("a"), "bc"));
    }

    #[test]
    fn bounded_types_fit_and_differ() {
        let t = format!("POST /{}", "é".repeat(200));
        let b = bounded_operation_type(&t);
        assert!(b.len() <= 255);
        assert!(bgops_core::validate::name("operation_type", &b).is_ok());
        assert_eq!(bounded_operation_type("x"), "x");
    }

    #[test]
    fn fingerprint_matches_the_facade_recipe() {
        // The recipe the facade used before the engine: keep stored records comparable.
        let mut h = Sha256::new();
        h.update(b"op");
        h.update([0]);
        h.update(b"{\"a\": 1}");
        assert_eq!(
            fingerprint("op", Some("{\"a\": 1}")),
            hex::encode(h.finalize())
        );
    }
}
