//! Integration tests of bgops-saga (one binary, modules by topic).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // helpers outside #[test] fns

mod chain;
mod composition;
mod crash;
mod crash_redis;
mod dynamic;
mod events;
mod keepalive;
mod parallel;
mod recovery;
mod support;
mod typed;
