//! Engine settings: leases, retry backoff, recovery.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff with jitter between attempts of a step or a compensation.
///
/// The delay before retry `n` (1 for the first retry) is
/// `min(initial * multiplier^(n-1), max)`, then scaled by a random factor in
/// `[1 - jitter, 1]` ("equal jitter" when `jitter = 0.5`), so executors that fail together
/// do not retry in lock-step.
///
/// ```
/// use std::time::Duration;
/// use bgops_saga::RetryPolicy;
/// let p = RetryPolicy::new(Duration::from_millis(100)).with_jitter(0.0);
/// assert_eq!(p.delay(1), Duration::from_millis(100));
/// assert_eq!(p.delay(3), Duration::from_millis(400));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Delay before the first retry.
    pub initial: Duration,
    /// Growth factor per retry.
    pub multiplier: f64,
    /// Upper bound of a delay.
    pub max: Duration,
    /// Fraction of the delay that is random, in `0.0..=1.0`.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::new(Duration::from_millis(200))
    }
}

impl RetryPolicy {
    /// Starts at `initial`, doubles each retry, at most 30 s, 50 % jitter.
    pub fn new(initial: Duration) -> Self {
        Self {
            initial,
            multiplier: 2.0,
            max: Duration::from_secs(30),
            jitter: 0.5,
        }
    }

    /// No delay at all (tests, benchmarks).
    pub fn immediate() -> Self {
        Self {
            initial: Duration::ZERO,
            multiplier: 1.0,
            max: Duration::ZERO,
            jitter: 0.0,
        }
    }

    /// Sets the growth factor.
    pub fn with_multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier.max(1.0);
        self
    }

    /// Sets the largest delay.
    pub fn with_max(mut self, max: Duration) -> Self {
        self.max = max;
        self
    }

    /// Sets the random fraction (clamped to `0.0..=1.0`).
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter.clamp(0.0, 1.0);
        self
    }

    /// The delay before retry number `retry` (1-based).
    pub fn delay(&self, retry: u32) -> Duration {
        if self.initial.is_zero() {
            return Duration::ZERO;
        }
        let exp = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let base = self.initial.as_secs_f64() * self.multiplier.powi(exp);
        let capped = base.min(self.max.as_secs_f64());
        let factor = if self.jitter > 0.0 {
            1.0 - self.jitter * rand::rng().random::<f64>()
        } else {
            1.0
        };
        Duration::try_from_secs_f64(capped * factor).unwrap_or(self.max)
    }
}

/// Settings of a [`SagaEngine`](crate::SagaEngine).
///
/// ```
/// use std::time::Duration;
/// use bgops_saga::{RetryPolicy, SagaConfig};
/// let config = SagaConfig::default()
///     .with_lease(Duration::from_secs(10))
///     .with_retry(RetryPolicy::new(Duration::from_millis(50)));
/// assert_eq!(config.lease, Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SagaConfig {
    /// How long an executor's lease lives without renewal (default 30 s). Every write
    /// extends it; a handler running longer gets it renewed every `lease / 3`.
    pub lease: Duration,
    /// Backoff between attempts of a step.
    pub retry: RetryPolicy,
    /// Backoff between attempts of a compensation.
    pub compensation_retry: RetryPolicy,
    /// Retries of a compensation after its first attempt (default 3).
    pub compensation_max_retries: u32,
    /// Longest a single handler call may run before it counts as a retryable failure
    /// (default: no limit).
    pub step_timeout: Option<Duration>,
    /// How often the background recoverer looks for abandoned sagas (default 5 s).
    pub recovery_interval: Duration,
    /// How many abandoned sagas the recoverer takes per round (default 100).
    pub recovery_batch: usize,
    /// How many sagas the recoverer resumes at once (default 16).
    pub recovery_concurrency: usize,
}

impl Default for SagaConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            compensation_retry: RetryPolicy::new(Duration::from_secs(1)),
            compensation_max_retries: 3,
            step_timeout: None,
            recovery_interval: Duration::from_secs(5),
            recovery_batch: 100,
            recovery_concurrency: 16,
        }
    }
}

impl SagaConfig {
    /// Sets the executor lease.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Sets the step backoff.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the compensation backoff.
    pub fn with_compensation_retry(mut self, retry: RetryPolicy) -> Self {
        self.compensation_retry = retry;
        self
    }

    /// Sets the retries of a compensation.
    pub fn with_compensation_max_retries(mut self, retries: u32) -> Self {
        self.compensation_max_retries = retries;
        self
    }

    /// Sets the per-call handler timeout.
    pub fn with_step_timeout(mut self, timeout: Duration) -> Self {
        self.step_timeout = Some(timeout);
        self
    }

    /// Sets the recoverer's interval.
    pub fn with_recovery_interval(mut self, interval: Duration) -> Self {
        self.recovery_interval = interval;
        self
    }

    /// Sets the recoverer's batch size and concurrency.
    pub fn with_recovery_batch(mut self, batch: usize, concurrency: usize) -> Self {
        self.recovery_batch = batch.max(1);
        self.recovery_concurrency = concurrency.max(1);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters_downwards() {
        let p = RetryPolicy::new(Duration::from_millis(10))
            .with_max(Duration::from_millis(50))
            .with_jitter(0.0);
        let delays: Vec<_> = (1..=5).map(|n| p.delay(n).as_millis()).collect();
        assert_eq!(delays, [10, 20, 40, 50, 50]);
        let j = p.with_jitter(0.5);
        for n in 1..=5 {
            let d = j.delay(n);
            assert!(d <= p.delay(n) && d >= p.delay(n) / 2, "{d:?}");
        }
        assert_eq!(RetryPolicy::immediate().delay(7), Duration::ZERO);
    }
}
