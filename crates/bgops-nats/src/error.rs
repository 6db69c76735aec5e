//! How driver failures become a typed [`StorageError`].

use bgops_storage::StorageError;

/// The backend name in errors and reports.
pub(crate) const BACKEND: &str = "nats";

/// Failures of this crate that are not a store call's answer; they travel boxed as the
/// source of a [`StorageError`], so no async-nats type appears in a public signature.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsError {
    /// The client, the server or JetStream failed while doing `what`.
    #[error("{what}: {detail}")]
    Driver {
        /// What the call was doing (`kv update`, `fetch`, ...).
        what: &'static str,
        /// The driver's error, rendered.
        detail: String,
    },
    /// The URL or settings could not be used.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// Words async-nats uses for failures that a retry after a reconnect may cure: no
/// connection, no answer in time, JetStream not (yet) answering after a restart.
const TRANSIENT: [&str; 9] = [
    "TimedOut",
    "timed out",
    "NoResponders",
    "no responders",
    "BrokenPipe",
    "Disconnected",
    "disconnected",
    "ConnectionClosed",
    "connection",
];

/// Maps a driver error met while doing `what`: transient ones become
/// [`StorageError::Unavailable`], the rest [`StorageError::Backend`].
pub(crate) fn driver(what: &'static str, error: impl std::fmt::Debug) -> StorageError {
    let detail = format!("{error:?}");
    let transient = TRANSIENT.iter().any(|word| detail.contains(word));
    let source = Box::new(NatsError::Driver { what, detail });
    if transient {
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

/// A configuration problem (bad URL, bad prefix, ...).
pub(crate) fn config(detail: impl std::fmt::Display) -> StorageError {
    StorageError::Backend {
        backend: BACKEND,
        source: Box::new(NatsError::Config(detail.to_string())),
    }
}

/// A value under one of our keys that does not decode.
pub(crate) fn corrupt(key: &str, reason: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt {
        key: key.to_owned(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_transient_and_the_rest_is_not() {
        assert!(driver("kv get", "TimedOut").is_transient());
        assert!(driver("request", "NoResponders").is_transient());
        assert!(!driver("kv update", "InvalidKey").is_transient());
    }
}
