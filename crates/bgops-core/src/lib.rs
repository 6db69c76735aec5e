//! # bgops-core
//!
//! The contract layer of [bgops](https://example.invalid/bgops): the models every backend
//! persists, deterministic idempotency-key derivation compatible with the seed's Python
//! package, input validation, the injectable [`Clock`], [`Config`] and metrics hooks.
//! It has no async runtime, driver or web dependency.
//!
//! ```
//! use serde_json::json;
//! let key = bgops_core::derive_key("tenant1", Some("user1"), "send_email",
//!     Some(&json!({"to": "user@example.com", "subject": "Welcome"})))?;
//! // The same key the seed's Python `BackgroundOperationsManager` derives.
//! assert_eq!(key, "8d0d5304231d6a0478dae9a604a2314b");
//! # Ok::<(), bgops_core::CoreError>(())
//! ```

pub mod backoff;
pub mod clock;
pub mod config;
pub mod error;
pub mod id;
pub mod key;
pub mod metrics;
pub mod model;
pub mod validate;

pub use backoff::Backoff;
pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use config::Config;
pub use error::CoreError;
pub use id::{IdGenerator, SharedIds};
pub use key::derive_key;
pub use metrics::{MetricsHooks, NoopMetrics, SharedMetrics};
pub use model::*;
