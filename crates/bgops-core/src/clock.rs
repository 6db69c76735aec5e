//! Time comes through a [`Clock`], so expiry is tested by moving a clock, not by sleeping.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use time::OffsetDateTime;

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time, UTC.
    fn now(&self) -> OffsetDateTime;

    /// Milliseconds since the Unix epoch: the unit stores use for expiry.
    fn now_millis(&self) -> i64 {
        (self.now().unix_timestamp_nanos() / 1_000_000) as i64
    }
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that only moves when told to; for deterministic tests of expiry and leases.
///
/// ```
/// use std::time::Duration;
/// use bgops_core::{Clock, ManualClock};
/// let clock = ManualClock::new();
/// let t0 = clock.now_millis();
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(clock.now_millis() - t0, 2000);
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    nanos: Arc<AtomicI64>,
}

impl ManualClock {
    /// A manual clock set to the current system time (rounded to whole milliseconds).
    pub fn new() -> Self {
        let now = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000 * 1_000_000;
        Self {
            nanos: Arc::new(AtomicI64::new(now as i64)),
        }
    }

    /// A manual clock set to `at`.
    pub fn at(at: OffsetDateTime) -> Self {
        Self {
            nanos: Arc::new(AtomicI64::new(at.unix_timestamp_nanos() as i64)),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.nanos.fetch_add(by.as_nanos() as i64, Ordering::SeqCst);
    }

    /// Sets the clock to `at`.
    pub fn set(&self, at: OffsetDateTime) {
        self.nanos
            .store(at.unix_timestamp_nanos() as i64, Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        let nanos = self.nanos.load(Ordering::SeqCst);
        // The stored value always came from a valid OffsetDateTime plus a test's advance,
        // so it is in range; fall back to the epoch rather than panic if a test overflows it.
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

/// Converts milliseconds since the epoch into a timestamp (clamped to the epoch on error).
pub fn from_millis(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Converts a timestamp into milliseconds since the epoch.
pub fn to_millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}
