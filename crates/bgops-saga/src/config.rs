//! Engine settings: leases, retry backoff, recovery.

use std::time::Duration;

use bgops_core::Backoff;

/// Settings of a [`SagaEngine`](crate::SagaEngine).
///
/// ```
/// use std::time::Duration;
/// use bgops_saga::{Backoff, SagaConfig};
/// let config = SagaConfig::default()
///     .with_lease(Duration::from_secs(10))
///     .with_retry(Backoff::new(Duration::from_millis(50), Duration::from_secs(5)));
/// assert_eq!(config.lease, Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SagaConfig {
    /// How long an executor's lease lives without renewal (default 30 s). Every write
    /// extends it; a handler running longer gets it renewed every `lease / 3`.
    pub lease: Duration,
    /// Backoff between attempts of a step (default 200 ms, doubling, at most 30 s, 50 %
    /// jitter).
    pub retry: Backoff,
    /// Backoff between attempts of a compensation (default 1 s, doubling, at most 30 s,
    /// 50 % jitter).
    pub compensation_retry: Backoff,
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
    /// How long a finished saga (`Completed`, `Compensated`, `CompensationFailed`) and its
    /// history are kept after its last write before the background recoverer purges
    /// them (default 7 days; `None` keeps them forever).
    pub retention: Option<Duration>,
}

impl Default for SagaConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(30),
            retry: Backoff::new(Duration::from_millis(200), Duration::from_secs(30))
                .with_jitter(0.5),
            compensation_retry: Backoff::new(Duration::from_secs(1), Duration::from_secs(30))
                .with_jitter(0.5),
            compensation_max_retries: 3,
            step_timeout: None,
            recovery_interval: Duration::from_secs(5),
            recovery_batch: 100,
            recovery_concurrency: 16,
            retention: Some(Duration::from_secs(7 * 24 * 3600)),
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
    pub fn with_retry(mut self, retry: Backoff) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the compensation backoff.
    pub fn with_compensation_retry(mut self, retry: Backoff) -> Self {
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

    /// Sets how long finished sagas are kept (`None`: forever).
    pub fn with_retention(mut self, retention: Option<Duration>) -> Self {
        self.retention = retention;
        self
    }

    /// Sets the recoverer's batch size and concurrency.
    pub fn with_recovery_batch(mut self, batch: usize, concurrency: usize) -> Self {
        self.recovery_batch = batch.max(1);
        self.recovery_concurrency = concurrency.max(1);
        self
    }
}
