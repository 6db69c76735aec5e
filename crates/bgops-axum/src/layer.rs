//! The tower [`Layer`] that adds idempotency to a service.

use std::sync::Arc;

use bgops_idempotency::IdempotencyEngine;
use tower::Layer;

use crate::config::IdempotencyConfig;
use crate::service::IdempotencyService;
use crate::shared::Shared;

/// Adds `Idempotency-Key` handling (semantics §3) to any tower service over
/// `http::Request` — an axum `Router`, a hyper service, a tonic-less tower stack.
///
/// The layer maps HTTP onto an [`IdempotencyEngine`], which owns the store, the TTL, the
/// lease and the metrics hooks (the manager of the `bgops` crate hands out its engine, so
/// they are wired once).
///
/// ```
/// use std::sync::Arc;
/// use axum::{Router, routing::post};
/// use bgops_axum::{IdempotencyConfig, IdempotencyLayer, InFlightPolicy};
/// use bgops_idempotency::IdempotencyEngine;
///
/// let engine = IdempotencyEngine::builder(Arc::new(bgops_memory::MemoryStorage::new())).build();
/// let layer = IdempotencyLayer::with_config(
///     engine,
///     IdempotencyConfig::default().exempt_path("/health").in_flight(InFlightPolicy::Wait(std::time::Duration::from_secs(5))),
/// );
/// let app: Router = Router::new().route("/orders", post(|| async { "created" })).layer(layer);
/// ```
#[derive(Clone)]
pub struct IdempotencyLayer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for IdempotencyLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdempotencyLayer")
            .field("engine", &self.shared.engine)
            .field("config", &self.shared.config)
            .finish()
    }
}

impl IdempotencyLayer {
    /// A layer over `engine` with the default configuration.
    pub fn new(engine: IdempotencyEngine) -> Self {
        Self::with_config(engine, IdempotencyConfig::default())
    }

    /// A layer over `engine` with `config`.
    pub fn with_config(engine: IdempotencyEngine, config: IdempotencyConfig) -> Self {
        Self {
            shared: Arc::new(Shared { engine, config }),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &IdempotencyConfig {
        &self.shared.config
    }

    /// The engine in use.
    pub fn engine(&self) -> &IdempotencyEngine {
        &self.shared.engine
    }
}

impl<S> Layer<S> for IdempotencyLayer {
    type Service = IdempotencyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        IdempotencyService::new(inner, Arc::clone(&self.shared))
    }
}
