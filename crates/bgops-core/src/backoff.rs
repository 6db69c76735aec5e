//! The one backoff of the workspace: how long a failed attempt (a task, a saga step, a
//! compensation, a completion the store did not take) waits before the next.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff with jitter: attempt `n` (1-based) waits
/// `min(initial × multiplier^(n-1), max)`, then minus a random share of up to `jitter`
/// of it, so workers that failed together do not retry together.
///
/// ```
/// use std::time::Duration;
/// use bgops_core::Backoff;
/// let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60)).with_jitter(0.0);
/// assert_eq!(b.delay(1), Duration::from_secs(1));
/// assert_eq!(b.delay(3), Duration::from_secs(4));
/// assert_eq!(b.delay(30), Duration::from_secs(60));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The wait after the first failed attempt.
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
    /// Growth per attempt (at least 1).
    pub multiplier: f64,
    /// Share of the wait taken off at random, 0.0 (none) to 1.0 ("full jitter").
    pub jitter: f64,
}

impl Default for Backoff {
    /// 1 s, doubling, at most 5 min, 20 % jitter.
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
            multiplier: 2.0,
            jitter: 0.2,
        }
    }
}

impl Backoff {
    /// Doubling from `initial` up to `max`, with the default 20 % jitter.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            ..Self::default()
        }
    }

    /// No wait at all: a failed task is claimable again at once.
    pub fn none() -> Self {
        Self {
            initial: Duration::ZERO,
            max: Duration::ZERO,
            multiplier: 1.0,
            jitter: 0.0,
        }
    }

    /// The same wait after every attempt.
    pub fn constant(delay: Duration) -> Self {
        Self {
            initial: delay,
            max: delay,
            multiplier: 1.0,
            jitter: 0.0,
        }
    }

    /// Sets the growth per attempt (values below 1 are taken as 1).
    pub fn with_multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier;
        self
    }

    /// Sets the longest wait.
    pub fn with_max(mut self, max: Duration) -> Self {
        self.max = max;
        self
    }

    /// Sets the jitter share (clamped to 0.0..=1.0).
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// The wait before the attempt after failed attempt `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let max = self.max.as_secs_f64();
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let base = self.initial.as_secs_f64() * self.multiplier.max(1.0).powi(exponent);
        // NaN/inf (overflowing powers) collapse to the cap.
        let capped = if base.is_finite() { base.min(max) } else { max };
        let jitter = self.jitter.clamp(0.0, 1.0);
        let wait = if jitter > 0.0 && capped > 0.0 {
            capped * (1.0 - jitter * rand::rng().random::<f64>())
        } else {
            capped
        };
        Duration::try_from_secs_f64(wait.max(0.0)).unwrap_or(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_caps() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1)).with_jitter(0.0);
        let delays: Vec<u128> = (1..=6).map(|a| b.delay(a).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(1));
        assert_eq!(b.delay(0), Duration::from_millis(100));
    }

    #[test]
    fn jitter_stays_within_share() {
        let b = Backoff::new(Duration::from_secs(10), Duration::from_secs(10)).with_jitter(0.5);
        let delays: Vec<Duration> = (0..200).map(|_| b.delay(1)).collect();
        assert!(
            delays
                .iter()
                .all(|d| *d >= Duration::from_secs(5) && *d <= Duration::from_secs(10))
        );
        // 200 draws from a continuous range: not all equal unless jitter is ignored.
        assert!(delays.iter().any(|d| *d != delays[0]));
    }

    #[test]
    fn none_and_constant() {
        assert_eq!(Backoff::none().delay(7), Duration::ZERO);
        assert_eq!(
            Backoff::constant(Duration::from_secs(3)).delay(9),
            Duration::from_secs(3)
        );
    }
}
