//! The error type of bgops-axum.

/// What can go wrong while configuring or running the idempotency middleware.
///
/// Request-level problems (bad key, body too large, ...) never surface as this type:
/// the middleware answers them itself with an RFC 9457 problem response
/// ([`Problem`](crate::Problem)). This enum is for configuration and for helpers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdempotencyError {
    /// The `Idempotency-Key` header value is not a valid key.
    #[error("invalid idempotency key: {reason}")]
    InvalidKey {
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A header name given in the configuration is not a valid HTTP header name.
    #[error("invalid header name `{name}`")]
    InvalidHeaderName {
        /// The rejected name.
        name: String,
    },
    /// An environment variable read by `from_env` holds an unusable value.
    #[error("environment variable {var}={value:?}: {reason}")]
    InvalidEnv {
        /// The variable.
        var: String,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A stored response could not be decoded (written by something else, or corrupted).
    #[error("stored response cannot be decoded: {reason}")]
    CorruptResponse {
        /// What was wrong.
        reason: &'static str,
    },
    /// The idempotency engine failed.
    #[error(transparent)]
    Engine(#[from] bgops_idempotency::IdempotencyError),
}
