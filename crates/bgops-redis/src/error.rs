//! How driver and script failures become a typed [`StorageError`].

use bgops_storage::StorageError;
use fred::error::{Error as FredError, ErrorKind};

/// The backend name in errors and reports.
pub(crate) const BACKEND: &str = "redis";

/// Failures of this crate that are not a store call's answer; they travel boxed as the
/// source of a [`StorageError`], so no fred type appears in a public signature.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisError {
    /// The driver (connection, protocol, server) failed.
    #[error("{0}")]
    Driver(#[source] FredError),
    /// A script answered something this version does not understand.
    #[error("script {script}: unexpected reply: {reply}")]
    UnexpectedReply {
        /// The script's name.
        script: &'static str,
        /// The reply, abbreviated.
        reply: String,
    },
    /// The URL or settings could not be used.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// Maps a driver error met while working on `key`.
pub(crate) fn from_fred(error: FredError, key: &str) -> StorageError {
    let details = error.details();
    if let Some(rest) = details.strip_prefix("BGOPS_CORRUPT ") {
        let (key, reason) = corrupt_parts(rest).unwrap_or((key, rest));
        return StorageError::Corrupt {
            key: key.to_owned(),
            reason: reason.to_owned(),
        };
    }
    if details.starts_with("WRONGTYPE") {
        return StorageError::Corrupt {
            key: key.to_owned(),
            reason: details.to_owned(),
        };
    }
    let transient_reply = ["LOADING", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "BUSY"]
        .iter()
        .any(|p| details.starts_with(p))
        // fred's own words while it has no connection to send the command on.
        || ["Failed to route", "Connection closed", "connection closed", "Disconnected"]
            .iter()
            .any(|p| details.contains(p));
    let transient_kind = matches!(
        error.kind(),
        ErrorKind::IO | ErrorKind::Timeout | ErrorKind::Canceled | ErrorKind::Routing
    ) || matches!(error.kind(), ErrorKind::Cluster);
    let source = Box::new(RedisError::Driver(error));
    if transient_reply || transient_kind {
        StorageError::Unavailable {
            backend: BACKEND,
            source,
        }
    } else {
        StorageError::Backend {
            backend: BACKEND,
            source,
        }
    }
}

/// Splits `<len>:<key> <reason>` (the scripts' `corrupt` helper) into key and reason.
fn corrupt_parts(rest: &str) -> Option<(&str, &str)> {
    let (len, tail) = rest.split_once(':')?;
    let len: usize = len.parse().ok()?;
    let key = tail.get(..len)?;
    let reason = tail.get(len..)?.trim_start();
    Some((key, reason))
}

/// A reply that does not have the shape the script promises.
pub(crate) fn unexpected(script: &'static str, reply: impl std::fmt::Debug) -> StorageError {
    let mut reply = format!("{reply:?}");
    reply.truncate(200);
    StorageError::Backend {
        backend: BACKEND,
        source: Box::new(RedisError::UnexpectedReply { script, reply }),
    }
}

/// A configuration problem (bad URL, ...).
pub(crate) fn config(error: impl std::fmt::Display) -> StorageError {
    StorageError::Backend {
        backend: BACKEND,
        source: Box::new(RedisError::Config(error.to_string())),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn corrupt_replies_name_their_key_even_with_spaces() {
        assert_eq!(
            super::corrupt_parts("9:a b:{c}:d not a number"),
            Some(("a b:{c}:d", "not a number"))
        );
        assert_eq!(super::corrupt_parts("oops"), None);
    }
}
