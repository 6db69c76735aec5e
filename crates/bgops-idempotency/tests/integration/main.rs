//! The engine's promises (docs/semantics.md §2), on the memory backend, with tokio's
//! paused time driving both the engine's timers and the store's clock: a test of a 2.5 s
//! operation takes milliseconds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod completion;
mod detached;
mod errors;
mod redis;
mod run_once;
mod support;
