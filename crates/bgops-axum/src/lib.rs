//! # bgops-axum
//!
//! HTTP idempotency middleware of bgops: a tower Layer and axum extractors.
