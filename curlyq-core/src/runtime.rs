//! The small runtime abstraction the loops run on: a clock, timers and task spawning.
//!
//! Adaptors: [`TokioRuntime`] (feature `tokio`) and [`AsyncIoRuntime`] (features
//! `async-std` and `smol`: both runtimes drive their I/O and timers with the `async-io`
//! reactor, so one adaptor serves both). The features are additive; with several on,
//! a consumer built inside a tokio runtime uses tokio and any other uses async-io (as
//! sqlx does). The testkit provides a manual clock that moves only when a test advances
//! it.

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

/// The async-io adaptor, for async-std and smol programs: timers of the `async-io`
/// reactor, tasks on the `async-global-executor` thread pool (the executor async-std
/// itself spawns on; one thread per core) and the system clock.
///
/// Works from any thread, inside or outside an executor: the pool and the reactor start
/// on first use.
#[cfg(feature = "async-io")]
#[derive(Debug, Clone, Copy, Default)]
pub struct AsyncIoRuntime;

#[cfg(feature = "async-io")]
impl Runtime for AsyncIoRuntime {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        Box::pin(async move {
            // `Timer::after` cannot represent every duration (it would overflow an
            // `Instant`); such a sleep never ends, which is what it asks for.
            match std::time::Instant::now().checked_add(duration) {
                Some(deadline) => {
                    async_io::Timer::at(deadline).await;
                }
                None => std::future::pending::<()>().await,
            }
        })
    }

    fn spawn(&self, task: BoxFuture<()>) {
        async_global_executor::spawn(task).detach();
    }
}

/// Whether the calling thread is inside a tokio runtime.
#[cfg(all(feature = "tokio", feature = "async-io"))]
fn in_tokio() -> bool {
    tokio::runtime::Handle::try_current().is_ok()
}

/// The runtime enabled by features, if any: tokio when it is enabled and the caller is
/// inside a tokio runtime, else async-io when enabled, else tokio.
pub(crate) fn default_runtime() -> Option<std::sync::Arc<dyn Runtime>> {
    #[cfg(all(feature = "tokio", feature = "async-io"))]
    {
        if in_tokio() {
            Some(std::sync::Arc::new(TokioRuntime))
        } else {
            Some(std::sync::Arc::new(AsyncIoRuntime))
        }
    }
    #[cfg(all(feature = "tokio", not(feature = "async-io")))]
    {
        Some(std::sync::Arc::new(TokioRuntime))
    }
    #[cfg(all(not(feature = "tokio"), feature = "async-io"))]
    {
        Some(std::sync::Arc::new(AsyncIoRuntime))
    }
    #[cfg(not(any(feature = "tokio", feature = "async-io")))]
    {
        None
    }
}

/// Completes when the process receives SIGINT (ctrl-c) or SIGTERM (what Docker,
/// Kubernetes and systemd send to stop a process); never completes if no handler can be
/// installed. Pass it as the `shutdown` of any `Consumer::run_*` method. (Elsewhere than
/// Unix: ctrl-c only.)
///
/// Inside a tokio runtime it listens with tokio's signal handling (feature `tokio`), else
/// with `async-signal` on the async-io reactor (features `async-std`, `smol`). The
/// handlers are installed when the future is first polled.
///
/// ```no_run
/// # async fn demo(consumer: curlyq_core::Consumer) -> Result<(), curlyq_core::ConsumeError> {
/// use curlyq_core::{BoxError, Job};
///
/// consumer
///     .run(|_job: Job| async { Ok::<(), BoxError>(()) }, curlyq_core::runtime::shutdown_signal())
///     .await
/// # }
/// ```
#[cfg(any(feature = "tokio", feature = "async-io"))]
pub async fn shutdown_signal() {
    #[cfg(all(feature = "tokio", feature = "async-io"))]
    {
        if in_tokio() {
            tokio_signal().await
        } else {
            async_io_signal().await
        }
    }
    #[cfg(all(feature = "tokio", not(feature = "async-io")))]
    {
        tokio_signal().await
    }
    #[cfg(all(not(feature = "tokio"), feature = "async-io"))]
    {
        async_io_signal().await
    }
}

#[cfg(feature = "tokio")]
async fn tokio_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = async {
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    if term.recv().await.is_none() {
                        std::future::pending::<()>().await;
                    }
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        let (ctrl_c, term) = (std::pin::pin!(ctrl_c), std::pin::pin!(term));
        futures::future::select(ctrl_c, term).await;
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}

/// SIGINT and SIGTERM through `async-signal` (signal-hook's registry, woken by the
/// async-io reactor).
#[cfg(feature = "async-io")]
async fn async_io_signal() {
    use async_signal::{Signal, Signals};
    use futures::StreamExt;
    #[cfg(unix)]
    let signals = Signals::new([Signal::Int, Signal::Term]);
    #[cfg(not(unix))]
    let signals = Signals::new([Signal::Int]);
    match signals {
        Ok(mut signals) => {
            if signals.next().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        Err(_) => std::future::pending::<()>().await,
    }
}
