//! Integration tests of bgops-nats against a real `nats-server -js`: focused checks of
//! the schema and of delivery (the conformance suite joins once it speaks contract v2).

// Test helpers panic on setup failures: that is how a test reports them.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod focused;

mod support;
