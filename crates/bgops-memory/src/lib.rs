//! # bgops-memory
//!
//! In-memory storage backend of bgops (development, tests, single process).
