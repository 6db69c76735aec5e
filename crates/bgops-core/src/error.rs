//! The error type of `bgops-core`.

/// Errors raised while validating input, deriving keys or reading configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// A required text field was empty (or only white space).
    #[error("`{field}` must not be empty")]
    EmptyField {
        /// The name of the field.
        field: &'static str,
    },
    /// A key or name was longer than allowed.
    #[error("`{field}` is {len} bytes long; at most {max} are allowed")]
    TooLong {
        /// The name of the field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The largest length allowed.
        max: usize,
    },
    /// A key contained a character outside visible ASCII.
    #[error("`{field}` contains a character that is not visible ASCII (byte {position})")]
    InvalidCharacter {
        /// The name of the field.
        field: &'static str,
        /// Byte offset of the first bad character.
        position: usize,
    },
    /// A duration (TTL, lease, timeout) was zero or out of range.
    #[error("`{field}` must be a positive duration of at most {max_secs} s, got {got}")]
    InvalidDuration {
        /// The name of the field.
        field: &'static str,
        /// The value given, as text.
        got: String,
        /// The largest value accepted, in seconds.
        max_secs: u64,
    },
    /// A number was outside the accepted range.
    #[error("`{field}` is {got}; {expected}")]
    OutOfRange {
        /// The name of the field.
        field: &'static str,
        /// The value given.
        got: u64,
        /// What is accepted.
        expected: &'static str,
    },
    /// Parameters or results could not be turned into JSON.
    #[error("value cannot be represented as JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// An environment variable held a value that could not be used.
    #[error("environment variable {var}={value:?} is invalid: {reason}")]
    InvalidEnv {
        /// The variable's name.
        var: String,
        /// Its value.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
}
