//! # bgops-saga
//!
//! Saga engine of bgops: journaled, fenced, recoverable, streaming.
