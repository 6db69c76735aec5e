#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

//! Integration tests of the facade: the seed's manager API over real backends.

mod manager;
#[cfg(feature = "saga")]
mod saga;
