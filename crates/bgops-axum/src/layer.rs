//! The tower [`Layer`] that adds idempotency to a service.

use std::sync::Arc;

use bgops_storage::IdempotencyStore;
use tower::Layer;

use crate::config::IdempotencyConfig;
use crate::service::IdempotencyService;

/// What every service made by one layer shares.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn IdempotencyStore>,
    pub(crate) config: IdempotencyConfig,
}

/// Adds `Idempotency-Key` handling (semantics §3) to any tower service over
/// `http::Request` — an axum `Router`, a hyper service, a tonic-less tower stack.
///
/// ```
/// use std::sync::Arc;
/// use axum::{Router, routing::post};
/// use bgops_axum::{IdempotencyConfig, IdempotencyLayer, InFlightPolicy};
///
/// # fn store() -> Arc<dyn bgops_storage::IdempotencyStore> { unimplemented!() }
/// # fn build() {
/// let layer = IdempotencyLayer::with_config(
///     store(),
///     IdempotencyConfig::default().exempt_path("/health").in_flight(InFlightPolicy::Accepted202),
/// );
/// let app: Router = Router::new().route("/orders", post(|| async { "created" })).layer(layer);
/// # }
/// ```
#[derive(Clone)]
pub struct IdempotencyLayer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for IdempotencyLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdempotencyLayer")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl IdempotencyLayer {
    /// A layer over `store` with the default configuration.
    pub fn new(store: Arc<dyn IdempotencyStore>) -> Self {
        Self::with_config(store, IdempotencyConfig::default())
    }

    /// A layer over `store` with `config`.
    pub fn with_config(store: Arc<dyn IdempotencyStore>, config: IdempotencyConfig) -> Self {
        Self {
            shared: Arc::new(Shared { store, config }),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &IdempotencyConfig {
        &self.shared.config
    }
}

impl<S> Layer<S> for IdempotencyLayer {
    type Service = IdempotencyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        IdempotencyService::new(inner, Arc::clone(&self.shared))
    }
}
