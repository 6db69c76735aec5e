//! The conformance suite: the storage contract stated once, as tests every backend runs.
//!
//! A backend's integration tests call [`conformance_suite!`](crate::conformance_suite)
//! with an expression that builds a fresh, isolated [`Fixture`] (async):
//!
//! ```ignore
//! bgops_storage::conformance_suite!(my_backend_fixture());
//! ```
//!
//! Each case is one `#[tokio::test]` in the calling crate (which needs `tokio` as a
//! dev-dependency). Cases never share keys: each fixture is isolated (a new memory store,
//! or a unique Redis prefix), and each case still picks unique tenants, keys and names.
//!
//! The cases are written for backends that use their own clock (Redis server time): they
//! compare timestamps only with one another, never with the test's clock, and make time
//! pass only through [`Fixture::time`] and [`Fixture::expire_short_lease`].
//!
//! | module | states |
//! |---|---|
//! | [`idempotency`] | semantics §2: `begin` / `complete` / `release` / `renew`, expiry, tenants |
//! | [`lock`] | semantics §6: fenced locks |
//! | [`saga`] | semantics §4, store side: insert-if-absent, fenced CAS, history, recovery |
//! | [`task`] | semantics §5, store side: dedupe, fenced claims, leases, retries, cleanup |
//! | [`storage`] | health and stats |
//!
//! [`decorators`] holds the counting and failing store wrappers engine tests use.

// The suite is test code compiled into the library: a failed expectation must panic.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

pub mod decorators;
pub mod idempotency;
pub mod lock;
pub mod saga;
pub mod server;
pub mod storage;
pub mod task;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::Storage;

/// A lease or TTL that outlives any case: used wherever something must stay live.
pub const LONG: Duration = Duration::from_secs(600);

/// A name no other case (or earlier run against the same server) uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A fresh lease token, as the engines make them (32 lowercase hex digits).
pub fn token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Asserts that a time difference equals `expected` within a second (backends may round
/// to milliseconds or compute both ends in separate steps).
pub fn assert_close(got: time::Duration, expected: Duration, what: &str) {
    let expected = time::Duration::try_from(expected).expect("duration in range");
    let off = (got - expected).abs();
    assert!(
        off <= time::Duration::SECOND,
        "{what}: {got} instead of about {expected}"
    );
}

/// Moves a backend's notion of "now" forward.
#[async_trait]
pub trait TimeControl: Send + Sync {
    /// Makes `by` pass: advances a manual clock, or sleeps where the backend uses its own
    /// server time.
    async fn advance(&self, by: Duration);
}

/// One isolated backend instance for one test case.
pub struct Fixture {
    /// The store under test.
    pub storage: Arc<dyn Storage>,
    /// How to make time pass for it.
    pub time: Arc<dyn TimeControl>,
    /// A lease long enough to stay live across a few store calls on this backend, and
    /// short enough to wait out with `time.advance(lease * 2)`.
    pub short_lease: Duration,
}

impl Fixture {
    /// Waits out `short_lease` (twice over, to be safe on a busy machine).
    pub async fn expire_short_lease(&self) {
        self.time.advance(self.short_lease * 2).await;
    }
}

/// Runs every conformance case against the fixture built by `$fixture` (an async
/// expression evaluating to a [`Fixture`]).
#[macro_export]
macro_rules! conformance_suite {
    ($fixture:expr) => {
        $crate::idempotency_suite!($fixture);
        $crate::lock_suite!($fixture);
        $crate::saga_suite!($fixture);
        $crate::task_suite!($fixture);
        $crate::storage_suite!($fixture);
    };
}

/// Defines a module `$module` with one `#[tokio::test]` per listed case, each calling
/// `$crate::testing::$module::$case(fixture)`.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($fixture:expr, $module:ident, [$($case:ident),* $(,)?]) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let fixture: $crate::testing::Fixture = $fixture.await;
                    $crate::testing::$module::$case(fixture).await;
                }
            )*
        }
    };
}
