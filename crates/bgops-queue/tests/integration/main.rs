//! Integration tests of bgops-queue: the queue API and the worker runtime over a real
//! store, and crash tests with worker processes on Redis.

mod fake_store;
mod queue_api;
mod support;
mod worker;
