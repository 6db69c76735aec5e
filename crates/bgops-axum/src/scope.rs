//! Who a key belongs to: the scope (tenant, user) under which it is stored.

use std::fmt;
use std::sync::Arc;

use http::request::Parts;
use http::{HeaderName, StatusCode};

/// The owner of an idempotency key. Storage addresses are built from the scope and the
/// key, so one tenant (or user) can never replay another's response.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    /// The tenant; the first part of the storage address.
    pub tenant_id: String,
    /// The user within the tenant, if the key is per user.
    pub user_id: Option<String>,
}

impl Scope {
    /// A scope for a tenant, without a user.
    pub fn tenant(tenant_id: impl Into<String>) -> Self {
        Self {
            tenant_id: tenant_id.into(),
            user_id: None,
        }
    }

    /// Adds a user.
    pub fn with_user(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }

    /// The key under which a client key is stored within this scope's tenant
    /// ([`bgops_idempotency::scoped_key`]): tagged by scope space, so a request without a
    /// user can never address a user's record, whatever key it sends.
    pub fn storage_key(&self, key: &str) -> String {
        bgops_idempotency::scoped_key(self.user_id.as_deref(), key)
    }
}

/// Why no scope could be found for a request; the middleware answers with a problem
/// response of this status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeRejection {
    /// The response status (400 or 401 usually).
    pub status: StatusCode,
    /// Human-readable detail.
    pub detail: String,
}

impl ScopeRejection {
    /// A 400 rejection.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            detail: detail.into(),
        }
    }
}

/// Finds the scope of a request. Implemented by [`HeaderScope`], by [`FnScope`] (any
/// closure) and by your own types (from a session, a JWT claim, a client certificate...).
pub trait ScopeExtractor: Send + Sync + 'static {
    /// The scope of this request, or why there is none.
    fn extract(&self, parts: &Parts) -> Result<Scope, ScopeRejection>;
}

/// A shared scope extractor.
pub type SharedScopeExtractor = Arc<dyn ScopeExtractor>;

/// Reads the tenant (and optionally the user) from request headers, like the seed's
/// middleware reads `X-Tenant-ID`.
///
/// ```
/// use bgops_axum::{HeaderScope, ScopeExtractor};
/// let scope = HeaderScope::seed();
/// let (parts, ()) = http::Request::builder().header("x-tenant-id", "acme").body(()).unwrap().into_parts();
/// assert_eq!(scope.extract(&parts).unwrap().tenant_id, "acme");
/// let (parts, ()) = http::Request::builder().body(()).unwrap().into_parts();
/// assert_eq!(scope.extract(&parts).unwrap().tenant_id, "default");
/// ```
#[derive(Debug, Clone)]
pub struct HeaderScope {
    tenant_header: HeaderName,
    user_header: Option<HeaderName>,
    default_tenant: Option<String>,
}

impl HeaderScope {
    /// Tenant from `tenant_header`; a request without it is rejected with 400.
    pub fn new(tenant_header: HeaderName) -> Self {
        Self {
            tenant_header,
            user_header: None,
            default_tenant: None,
        }
    }

    /// The seed's behaviour: tenant from `X-Tenant-ID` (tenant `default` when absent),
    /// user from `X-User-ID` when present.
    pub fn seed() -> Self {
        Self::new(HeaderName::from_static("x-tenant-id"))
            .user_header(HeaderName::from_static("x-user-id"))
            .default_tenant("default")
    }

    /// Also reads the user from this header (optional in requests).
    pub fn user_header(mut self, name: HeaderName) -> Self {
        self.user_header = Some(name);
        self
    }

    /// The tenant used when the header is absent (instead of rejecting the request).
    pub fn default_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.default_tenant = Some(tenant.into());
        self
    }
}

impl ScopeExtractor for HeaderScope {
    fn extract(&self, parts: &Parts) -> Result<Scope, ScopeRejection> {
        let read = |name: &HeaderName| -> Result<Option<String>, ScopeRejection> {
            match parts.headers.get(name) {
                None => Ok(None),
                Some(v) => match v.to_str() {
                    Ok(s) if !s.trim().is_empty() && s.len() <= 255 => Ok(Some(s.to_owned())),
                    _ => Err(ScopeRejection::bad_request(format!(
                        "header {name} must be 1-255 visible ASCII characters"
                    ))),
                },
            }
        };
        let tenant = match (read(&self.tenant_header)?, &self.default_tenant) {
            (Some(t), _) => t,
            (None, Some(d)) => d.clone(),
            (None, None) => {
                return Err(ScopeRejection::bad_request(format!(
                    "header {} is required with an idempotency key",
                    self.tenant_header
                )));
            }
        };
        let user = match &self.user_header {
            Some(h) => read(h)?,
            None => None,
        };
        Ok(Scope {
            tenant_id: tenant,
            user_id: user,
        })
    }
}

/// A closure as a scope extractor.
///
/// ```
/// use bgops_axum::{FnScope, Scope, ScopeExtractor};
/// let scope = FnScope::new(|parts: &http::request::Parts| {
///     Ok(Scope::tenant(parts.uri.host().unwrap_or("local")))
/// });
/// let (parts, ()) = http::Request::builder().uri("http://a.example/x").body(()).unwrap().into_parts();
/// assert_eq!(scope.extract(&parts).unwrap().tenant_id, "a.example");
/// ```
pub struct FnScope<F>(F);

impl<F> FnScope<F>
where
    F: Fn(&Parts) -> Result<Scope, ScopeRejection> + Send + Sync + 'static,
{
    /// Wraps the closure.
    pub fn new(f: F) -> Self {
        Self(f)
    }
}

impl<F> fmt::Debug for FnScope<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnScope(..)")
    }
}

impl<F> ScopeExtractor for FnScope<F>
where
    F: Fn(&Parts) -> Result<Scope, ScopeRejection> + Send + Sync + 'static,
{
    fn extract(&self, parts: &Parts) -> Result<Scope, ScopeRejection> {
        (self.0)(parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_keys_differ_by_user() {
        let a = Scope::tenant("t").with_user("alice").storage_key("k");
        let b = Scope::tenant("t").with_user("bob").storage_key("k");
        assert_ne!(a, b);
        assert_eq!(Scope::tenant("t").storage_key("k"), "k.k");
        // The collision attempt: a bare key equal to a user's storage key.
        assert_ne!(Scope::tenant("t").storage_key(&a), a);
        assert!(
            Scope::tenant("t")
                .with_user("u")
                .storage_key(&"k".repeat(255))
                .len()
                <= 255
        );
    }

    #[test]
    fn header_scope_requires_tenant_without_default() {
        let s = HeaderScope::new(HeaderName::from_static("x-tenant-id"));
        let (parts, ()) = http::Request::builder().body(()).unwrap().into_parts();
        assert_eq!(
            s.extract(&parts).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }
}
