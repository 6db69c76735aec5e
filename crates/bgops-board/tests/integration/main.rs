//! The board served over real TCP (nested at `/bgops`, as a service mounts it) on the
//! memory backend (and once on Redis): pages, filters, escaping, the live streams,
//! read-only and write modes, a real browser.

// Test helpers panic on setup failures: that is how a test reports them.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod browser;
mod live;
mod pages;
mod redis;
mod support;
mod write;
