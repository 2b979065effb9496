//! The small runtime abstraction the loops run on: a clock, timers and task spawning.
//!
//! Adaptors: [`TokioRuntime`] (feature `tokio`). The testkit provides a manual clock
//! that moves only when a test advances it.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What the consumer needs from an async runtime.
///
/// Object safe, so that the consumer holds an `Arc<dyn Runtime>` and its type does not
/// depend on the runtime chosen.
pub trait Runtime: Send + Sync + 'static {
    /// The current wall-clock time (job scores are Unix seconds derived from it).
    fn now(&self) -> SystemTime;

    /// A future that completes after `duration` of this runtime's clock.
    fn sleep(&self, duration: Duration) -> BoxFuture<()>;

    /// Runs `task` in the background, on the runtime's worker threads where it has them.
    fn spawn(&self, task: BoxFuture<()>);
}

/// Unix seconds (with fractions) of a time; times before the epoch are negative.
pub fn unix_seconds(time: SystemTime) -> f64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// The tokio adaptor: `tokio::spawn`, `tokio::time::sleep` and the system clock.
///
/// Must be used from within a tokio runtime (spawning panics otherwise, as tokio does).
#[cfg(feature = "tokio")]
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioRuntime;

#[cfg(feature = "tokio")]
impl Runtime for TokioRuntime {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        Box::pin(tokio::time::sleep(duration))
    }

    fn spawn(&self, task: BoxFuture<()>) {
        drop(tokio::spawn(task));
    }
}

/// The runtime enabled by features, if any (tokio first).
pub(crate) fn default_runtime() -> Option<std::sync::Arc<dyn Runtime>> {
    #[cfg(feature = "tokio")]
    {
        Some(std::sync::Arc::new(TokioRuntime))
    }
    #[cfg(not(feature = "tokio"))]
    {
        None
    }
}
