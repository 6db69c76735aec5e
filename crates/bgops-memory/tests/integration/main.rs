//! The memory backend's integration tests: the whole conformance suite on a manual clock,
//! plus what is specific to this backend.

mod decorators;
mod memory;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bgops_core::ManualClock;
use bgops_memory::MemoryStorage;
use bgops_storage::testing::{Fixture, TimeControl};

/// Time passes by moving the store's manual clock: no test sleeps.
pub(crate) struct ManualTime(pub(crate) ManualClock);

#[async_trait]
impl TimeControl for ManualTime {
    async fn advance(&self, by: Duration) {
        self.0.advance(by);
    }
}

// The suite awaits its fixture expression (the Redis one connects); this one needs no await.
#[allow(clippy::unused_async)]
async fn fixture() -> Fixture {
    let clock = ManualClock::new();
    Fixture {
        storage: Arc::new(MemoryStorage::with_clock(Arc::new(clock.clone()))),
        time: Arc::new(ManualTime(clock)),
        short_lease: Duration::from_secs(5),
    }
}

bgops_storage::conformance_suite!(fixture());
