#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // helpers outside #[test] fns

//! Integration tests of bgops-queue: the queue API and the worker runtime over a real
//! store, and crash tests with worker processes on Redis.

mod crash_redis;
mod queue_api;
mod redis_queue;
mod support;
mod worker;
