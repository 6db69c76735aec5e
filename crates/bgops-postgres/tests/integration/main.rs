//! Integration tests of bgops-postgres against a real server (`BGOPS_TEST_POSTGRES_URL`,
//! or a throwaway one): focused checks of every store, the transactional API,
//! LISTEN/NOTIFY, and faults (server restarts, rollbacks).

// Test helpers panic on setup failures: that is how a test reports them.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod engine;
mod faults;
mod focused;
mod notify;
mod process_kill;
mod support;
mod transactional;

/// The whole conformance suite, each case in a schema of its own.
mod conformance {
    use super::support::fixture;
    bgops_storage::conformance_suite!(fixture());
}
