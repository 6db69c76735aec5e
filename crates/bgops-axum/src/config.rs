//! Settings of the idempotency middleware, built in code or read from the environment.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, Method, StatusCode};

use crate::error::IdempotencyError;
use crate::fingerprint::{Fingerprinter, Sha256Fingerprint, SharedFingerprinter};
use crate::scope::{HeaderScope, ScopeExtractor, SharedScopeExtractor};

/// Default request body limit: 1 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1 << 20;
/// Default limit of a response kept for replay: 1 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1 << 20;

/// What to answer a duplicate that arrives while the first request is still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InFlightPolicy {
    /// 409 problem+json with `Retry-After` (the IETF draft's answer; the default).
    Conflict409,
    /// 202 with a JSON body saying the operation is in progress (the seed's answer).
    ///
    /// Beware of real retrying clients: most treat any 2xx as the final answer. Stripe's
    /// client libraries, for one, retry 409 whatever its body says (and obey a
    /// `Stripe-Should-Retry` header before the status, ignoring `Retry-After`), but take
    /// a 2xx as the result: with this policy they get the in-progress placeholder *as
    /// the result* and never see the real response. Use it only for clients written to
    /// poll on 202; [`Conflict409`](Self::Conflict409) or [`Wait`](Self::Wait) suit
    /// generic retrying clients.
    Accepted202,
    /// Wait up to this long for the first request to finish and replay its response;
    /// 409 if it is still running then. If the first one's claim is released
    /// (it failed with a 5xx), this request runs the handler itself.
    Wait(Duration),
}

/// What to do when the idempotency store cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailMode {
    /// 503 problem+json with `Retry-After`; the handler does not run (the default).
    Closed,
    /// Run the handler without protection, log, call the `storage_error` metrics hook,
    /// and mark the response `Idempotency-Stored: false` (the seed's graceful degradation).
    Open,
}

/// Whether a request without a key is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPolicy {
    /// Requests without a key pass through unprotected (the default).
    Optional,
    /// Requests without a key get 400 problem+json.
    Required,
}

/// A set of paths: exact paths (`/health`) and prefixes written `/admin/*` (which match
/// `/admin` and everything under `/admin/`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathSet {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl PathSet {
    /// Adds an exact path or a `prefix/*` pattern.
    pub fn add(&mut self, pattern: impl Into<String>) {
        let pattern = pattern.into();
        match pattern.strip_suffix("/*") {
            Some(prefix) => self.prefixes.push(prefix.to_owned()),
            None => self.exact.push(pattern),
        }
    }

    /// Whether `path` is in the set.
    ///
    /// ```
    /// let mut s = bgops_axum::PathSet::default();
    /// s.add("/health");
    /// s.add("/admin/*");
    /// assert!(s.matches("/health") && s.matches("/admin") && s.matches("/admin/x/y"));
    /// assert!(!s.matches("/healthz") && !s.matches("/administrator"));
    /// ```
    pub fn matches(&self, path: &str) -> bool {
        self.exact.iter().any(|p| p == path)
            || self.prefixes.iter().any(|p| {
                path.strip_prefix(p.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
    }

    fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
    }
}

/// Everything the middleware can be told. Start from [`IdempotencyConfig::default`] (or
/// [`IdempotencyConfig::from_env`]) and chain the setters.
///
/// ```
/// use std::time::Duration;
/// use bgops_axum::{IdempotencyConfig, InFlightPolicy, FailMode};
/// let config = IdempotencyConfig::default()
///     .exempt_path("/health")
///     .exempt_path("/admin/*")
///     .in_flight(InFlightPolicy::Wait(Duration::from_secs(5)))
///     .fail_mode(FailMode::Open)
///     .cache_hit_header("X-From-Cache")?;
/// # Ok::<(), bgops_axum::IdempotencyError>(())
/// ```
#[derive(Clone)]
pub struct IdempotencyConfig {
    pub(crate) key_header: HeaderName,
    pub(crate) cache_hit_header: Option<HeaderName>,
    pub(crate) methods: Vec<Method>,
    pub(crate) key_policy: KeyPolicy,
    pub(crate) required_paths: PathSet,
    pub(crate) exempt_paths: PathSet,
    pub(crate) scope: SharedScopeExtractor,
    pub(crate) fingerprinter: SharedFingerprinter,
    pub(crate) max_request_bytes: usize,
    pub(crate) max_response_bytes: usize,
    pub(crate) in_flight: InFlightPolicy,
    pub(crate) fail_mode: FailMode,
    pub(crate) retry_after: Duration,
    pub(crate) store_status: fn(StatusCode) -> bool,
    pub(crate) json_body_as_result: bool,
}

impl std::fmt::Debug for IdempotencyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdempotencyConfig")
            .field("key_header", &self.key_header)
            .field("cache_hit_header", &self.cache_hit_header)
            .field("methods", &self.methods)
            .field("key_policy", &self.key_policy)
            .field("required_paths", &self.required_paths)
            .field("exempt_paths", &self.exempt_paths)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("in_flight", &self.in_flight)
            .field("fail_mode", &self.fail_mode)
            .finish_non_exhaustive()
    }
}

/// The default rule for which responses are kept: 2xx and the deterministic 4xx
/// (400, 404, 410, 422). 5xx, 401, 403, 408, 409, 429 and the rest are not kept, and the
/// claim is released so the client may retry.
pub fn default_store_status(status: StatusCode) -> bool {
    status.is_success() || matches!(status.as_u16(), 400 | 404 | 410 | 422)
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self {
            key_header: HeaderName::from_static("idempotency-key"),
            cache_hit_header: Some(HeaderName::from_static("x-cache-hit")),
            methods: vec![Method::POST, Method::PATCH],
            key_policy: KeyPolicy::Optional,
            required_paths: PathSet::default(),
            exempt_paths: PathSet::default(),
            scope: Arc::new(HeaderScope::seed()),
            fingerprinter: Arc::new(Sha256Fingerprint),
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            in_flight: InFlightPolicy::Conflict409,
            fail_mode: FailMode::Closed,
            retry_after: Duration::from_secs(1),
            store_status: default_store_status,
            json_body_as_result: false,
        }
    }
}

fn header_name(name: &str) -> Result<HeaderName, IdempotencyError> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| IdempotencyError::InvalidHeaderName {
        name: name.to_owned(),
    })
}

impl IdempotencyConfig {
    /// The defaults, overridden by the environment: `BGOPS_IDEMPOTENCY_HEADER`,
    /// `BGOPS_CACHE_HIT_HEADER` (empty: none), `BGOPS_IN_FLIGHT` (`409`, `202` or
    /// `wait:<ms>`), `BGOPS_FAIL_MODE` (`closed` / `open`), `BGOPS_MAX_BODY_BYTES`.
    /// TTL, lease and metrics belong to the engine (`bgops_core::Config::from_env` reads
    /// `BGOPS_DEFAULT_TTL` and `BGOPS_DEFAULT_LEASE` for the manager that builds it).
    pub fn from_env() -> Result<Self, IdempotencyError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env) with another source of variables.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, IdempotencyError> {
        let invalid = |var: &str, value: &str, reason: &str| IdempotencyError::InvalidEnv {
            var: var.to_owned(),
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let mut config = Self::default();
        if let Some(v) = lookup("BGOPS_IDEMPOTENCY_HEADER") {
            config = config.key_header(&v)?;
        }
        if let Some(v) = lookup("BGOPS_CACHE_HIT_HEADER") {
            config = if v.is_empty() {
                config.no_cache_hit_header()
            } else {
                config.cache_hit_header(&v)?
            };
        }
        if let Some(v) = lookup("BGOPS_IN_FLIGHT") {
            let var = "BGOPS_IN_FLIGHT";
            config.in_flight = match v.as_str() {
                "409" => InFlightPolicy::Conflict409,
                "202" => InFlightPolicy::Accepted202,
                other => match other.strip_prefix("wait:").and_then(|ms| ms.parse().ok()) {
                    Some(ms) => InFlightPolicy::Wait(Duration::from_millis(ms)),
                    None => return Err(invalid(var, &v, "expected 409, 202 or wait:<ms>")),
                },
            };
        }
        if let Some(v) = lookup("BGOPS_FAIL_MODE") {
            config.fail_mode = match v.as_str() {
                "closed" => FailMode::Closed,
                "open" => FailMode::Open,
                _ => return Err(invalid("BGOPS_FAIL_MODE", &v, "expected closed or open")),
            };
        }
        if let Some(v) = lookup("BGOPS_MAX_BODY_BYTES") {
            config.max_request_bytes = v
                .parse()
                .map_err(|_| invalid("BGOPS_MAX_BODY_BYTES", &v, "expected a number of bytes"))?;
        }
        Ok(config)
    }

    /// The request header carrying the key (default `Idempotency-Key`).
    pub fn key_header(mut self, name: &str) -> Result<Self, IdempotencyError> {
        self.key_header = header_name(name)?;
        Ok(self)
    }

    /// The response header saying whether the response is a replay (default
    /// `X-Cache-Hit`, as in the seed).
    pub fn cache_hit_header(mut self, name: &str) -> Result<Self, IdempotencyError> {
        self.cache_hit_header = Some(header_name(name)?);
        Ok(self)
    }

    /// No cache-hit header (replays still carry `Idempotent-Replayed: true`).
    pub fn no_cache_hit_header(mut self) -> Self {
        self.cache_hit_header = None;
        self
    }

    /// The methods the middleware applies to (default POST and PATCH); others pass through.
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.methods = methods.into_iter().collect();
        self
    }

    /// Whether requests without a key are rejected everywhere (default: optional).
    pub fn key_policy(mut self, policy: KeyPolicy) -> Self {
        self.key_policy = policy;
        self
    }

    /// Requires a key on this path or `prefix/*` pattern (400 without one).
    pub fn require_key_on(mut self, pattern: impl Into<String>) -> Self {
        self.required_paths.add(pattern);
        self
    }

    /// Exempts a path or `prefix/*` pattern: it passes through untouched.
    pub fn exempt_path(mut self, pattern: impl Into<String>) -> Self {
        self.exempt_paths.add(pattern);
        self
    }

    /// How the scope (tenant, user) of a request is found (default:
    /// [`HeaderScope::seed`]).
    pub fn scope(mut self, extractor: impl ScopeExtractor) -> Self {
        self.scope = Arc::new(extractor);
        self
    }

    /// How requests are fingerprinted (default: [`Sha256Fingerprint`]).
    pub fn fingerprinter(mut self, fingerprinter: impl Fingerprinter) -> Self {
        self.fingerprinter = Arc::new(fingerprinter);
        self
    }

    /// The request body limit (default 1 MiB); larger bodies get 413.
    pub fn max_request_bytes(mut self, bytes: usize) -> Self {
        self.max_request_bytes = bytes;
        self
    }

    /// The largest response kept for replay (default 1 MiB). Larger ones are delivered
    /// live and the key is marked used without a stored response.
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// The answer to duplicates in flight (default [`InFlightPolicy::Conflict409`]).
    pub fn in_flight(mut self, policy: InFlightPolicy) -> Self {
        self.in_flight = policy;
        self
    }

    /// Fail closed (default) or open when the store is unavailable.
    pub fn fail_mode(mut self, mode: FailMode) -> Self {
        self.fail_mode = mode;
        self
    }

    /// The `Retry-After` sent with 409 and 503 (default 1 s).
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = after;
        self
    }

    /// Which response statuses are kept for replay (default [`default_store_status`]).
    pub fn store_status(mut self, rule: fn(StatusCode) -> bool) -> Self {
        self.store_status = rule;
        self
    }

    /// Keeps a JSON response body as the record's operation result when the handler
    /// attached none (default off: it costs a JSON parse per first execution and makes
    /// every record larger). The body is stored for replay either way.
    pub fn json_body_as_result(mut self, on: bool) -> Self {
        self.json_body_as_result = on;
        self
    }

    pub(crate) fn key_required(&self, path: &str) -> bool {
        self.key_policy == KeyPolicy::Required
            || (!self.required_paths.is_empty() && self.required_paths.matches(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn env_overrides() {
        let env: HashMap<&str, &str> = [
            ("BGOPS_IDEMPOTENCY_HEADER", "X-Request-ID"),
            ("BGOPS_CACHE_HIT_HEADER", "X-From-Cache"),
            ("BGOPS_IN_FLIGHT", "wait:250"),
            ("BGOPS_FAIL_MODE", "open"),
        ]
        .into_iter()
        .collect();
        let c = IdempotencyConfig::from_lookup(|k| env.get(k).map(|v| (*v).to_owned())).unwrap();
        assert_eq!(c.key_header, "x-request-id");
        assert_eq!(c.cache_hit_header.unwrap(), "x-from-cache");
        assert_eq!(
            c.in_flight,
            InFlightPolicy::Wait(Duration::from_millis(250))
        );
        assert_eq!(c.fail_mode, FailMode::Open);
        let bad = IdempotencyConfig::from_lookup(|k| (k == "BGOPS_IN_FLIGHT").then(|| "x".into()));
        assert!(matches!(bad, Err(IdempotencyError::InvalidEnv { .. })));
    }

    #[test]
    fn default_storage_rule() {
        for s in [200, 201, 204, 400, 404, 410, 422] {
            assert!(
                default_store_status(StatusCode::from_u16(s).unwrap()),
                "{s}"
            );
        }
        for s in [301, 401, 403, 408, 409, 429, 500, 502, 503] {
            assert!(
                !default_store_status(StatusCode::from_u16(s).unwrap()),
                "{s}"
            );
        }
    }

    #[test]
    fn required_paths() {
        let c = IdempotencyConfig::default().require_key_on("/pay/*");
        assert!(c.key_required("/pay/now") && !c.key_required("/other"));
        assert!(
            IdempotencyConfig::default()
                .key_policy(KeyPolicy::Required)
                .key_required("/x")
        );
    }
}
