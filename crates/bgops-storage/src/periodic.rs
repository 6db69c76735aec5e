//! The one periodic-loop helper: cleanup passes, the saga recoverer and the queue's
//! retention sweep all run through [`Periodic`], so start, tick and graceful stop are
//! written once.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A loop running `tick` every `every` in a tokio task until [`Periodic::stop`].
///
/// The first tick runs at once. A tick that overruns delays the next one (no burst of
/// missed ticks). The loop stops between ticks: a tick in progress finishes first.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::time::Duration;
/// let ticks = Arc::new(AtomicU32::new(0));
/// let counter = Arc::clone(&ticks);
/// let looping = bgops_storage::Periodic::spawn("demo", Duration::from_millis(5), move || {
///     let counter = Arc::clone(&counter);
///     async move { counter.fetch_add(1, Ordering::Relaxed); }
/// });
/// tokio::time::sleep(Duration::from_millis(30)).await;
/// looping.stop().await;
/// assert!(ticks.load(Ordering::Relaxed) >= 2);
/// # }
/// ```
#[derive(Debug)]
pub struct Periodic {
    name: &'static str,
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl Periodic {
    /// Spawns the loop on the current tokio runtime. `name` appears in logs.
    ///
    /// # Panics
    /// Outside a tokio runtime (as `tokio::spawn` does).
    pub fn spawn<F, Fut>(name: &'static str, every: Duration, mut tick: F) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let every = every.max(Duration::from_millis(1));
        let (stop, mut stopped) = watch::channel(false);
        let handle = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    biased;
                    _ = stopped.changed() => break,
                    _ = ticker.tick() => {}
                }
                tick().await;
            }
            tracing::debug!(loop_name = name, "periodic loop stopped");
        });
        Self { name, stop, handle }
    }

    /// Stops the loop and waits for a tick in progress to finish.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(error) = self.handle.await {
            tracing::warn!(loop_name = self.name, %error, "periodic loop ended abnormally");
        }
    }

    /// Stops the loop without waiting (for `Drop` paths).
    pub fn abort(&self) {
        let _ = self.stop.send(true);
    }
}
