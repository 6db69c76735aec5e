//! Integration tests of bgops-nats against a real `nats-server -js`: the whole
//! conformance suite, focused checks of the schema and delivery, and fault tests (a worker
//! killed while holding tasks, the server restarted under load).

// Test helpers panic on setup failures: that is how a test reports them.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod faults;
mod focused;
mod queue_engine;
mod support;

/// The conformance suite (every trait: idempotency, locks, sagas, tasks, storage).
mod conformance {
    use super::support::fixture;
    bgops_storage::conformance_suite!(fixture());
}
