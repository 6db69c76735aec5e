//! # bgops-queue
//!
//! Idempotent task queue of bgops: leases, fencing, workers.
