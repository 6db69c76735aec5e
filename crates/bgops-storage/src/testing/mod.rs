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
//! or a unique Redis prefix).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::Storage;

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
