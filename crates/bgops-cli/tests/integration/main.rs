//! The built `bgops` binary, run as a user would: arguments, exit codes, output.
//! `library` runs the commands on the memory backend; `usage` needs no server; `redis` needs `BGOPS_TEST_REDIS_URL` (set by `cargo xtask`)
//! and skips with a notice when it is unset outside CI.

// Test helpers panic on setup failures: that is how a test reports them.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod library;
#[cfg(feature = "redis")]
mod redis;
mod support;
mod usage;
