//! What every service made by one layer shares: the engine and the HTTP settings.

use bgops_idempotency::IdempotencyEngine;

use crate::config::IdempotencyConfig;

/// The engine (store, TTL, lease, metrics) and the middleware's configuration.
pub(crate) struct Shared {
    pub(crate) engine: IdempotencyEngine,
    pub(crate) config: IdempotencyConfig,
}
