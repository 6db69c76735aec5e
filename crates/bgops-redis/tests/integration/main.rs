//! Integration tests of bgops-redis against real servers: the whole conformance suite on
//! one node and on a 3-node cluster, failure behaviour with a server we stop and start,
//! and focused checks of the schema.

// Test helpers panic on setup failures: that is how a test reports them.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod failure;
mod faults;
mod focused;
mod monitor;
mod support;

/// The conformance suite on a single node (`BGOPS_TEST_REDIS_URL`).
mod single {
    use super::support::fixture;
    bgops_storage::conformance_suite!(fixture());
}

/// The same suite on a Redis Cluster (`BGOPS_TEST_REDIS_CLUSTER_URL`).
mod cluster {
    use super::support::cluster_fixture;
    bgops_storage::conformance_suite!(cluster_fixture());
}
