//! The consumer: five loops (heartbeat, scheduler, custodian, poller, processor) around
//! your handler.
//!
//! The loops are one pure state machine, [`ConsumerCore`], that knows nothing of I/O,
//! clocks or runtimes; one async driver owns it, makes the backend calls it asks for,
//! runs the handlers on the [runtime](crate::Runtime), sleeps until the core's next
//! timer and feeds every result back. The files:
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | [`Consumer`], the public API |
//! | `builder.rs` | [`ConsumerBuilder`] |
//! | `protocol.rs` | the core's inputs, commands, backend calls and replies |
//! | `machine.rs` | [`ConsumerCore`]: state, entry points, start-up |
//! | `calls.rs` | what each backend call is for, routing replies, fresh consumer IDs |
//! | `heartbeat.rs` | the heartbeat, rejoining under a fresh ID, retired IDs |
//! | `scheduler.rs` | moving due scheduled jobs |
//! | `custodian.rs` | recovering orphaned jobs, trimming the dead set |
//! | `poller.rs` | taking jobs and the blocking wait |
//! | `jobs.rs` | the buffer, handler slots, starting jobs, retry or kill |
//! | `outcomes.rs` | recording outcomes in batches |
//! | `shutdown.rs` | graceful shutdown in stages |
//! | `identity.rs` | the consumer IDs and what each still holds |
//! | `policy.rs` | the decisions as pure functions |
//! | `stats.rs` | [`ConsumerStats`] |
//! | `driver.rs` | the async driver |

mod builder;
mod calls;
mod custodian;
mod driver;
mod heartbeat;
mod identity;
mod jobs;
mod machine;
mod outcomes;
mod policy;
mod poller;
mod protocol;
mod scheduler;
mod shutdown;
mod stats;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;

pub use builder::ConsumerBuilder;
pub use machine::ConsumerCore;
pub use protocol::{BackendCall, CallId, Command, HandlerResult, Input, Reply, RunId};
pub use stats::ConsumerStats;

use crate::backend::{ConsumerId, QueueBackend, QueueName};
use crate::error::{BoxError, ConsumeError};
use crate::job::Job;
use crate::options::ConsumerOptions;
use crate::runtime::{BoxFuture, Runtime};

use futures::channel::oneshot;
use futures::future::Either;
use futures::FutureExt;

use driver::Driver;
use stats::Published;

/// Runs jobs from one queue: five loops (heartbeat, scheduler, custodian, poller,
/// processor) around your handler.
///
/// ```
/// # async fn demo(backend: std::sync::Arc<dyn curlyq_core::QueueBackend>) -> Result<(), Box<dyn std::error::Error>> {
/// use curlyq_core::{Consumer, Job};
///
/// let consumer = Consumer::builder("emails").concurrency(10).build(backend)?;
/// let shutdown = async { /* e.g. a ctrl-c or SIGTERM future */ };
/// consumer
///     .run(
///         |job: Job| async move {
///             println!("sending {}", String::from_utf8_lossy(&job.data));
///             Ok::<(), std::io::Error>(())
///         },
///         shutdown,
///     )
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Consumer {
    shared: Arc<Shared>,
}

struct Shared {
    backend: Arc<dyn QueueBackend>,
    runtime: Arc<dyn Runtime>,
    queue: QueueName,
    opts: ConsumerOptions,
    published: Arc<Published>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("queue", &self.shared.queue)
            .field("options", &self.shared.opts)
            .finish_non_exhaustive()
    }
}

/// The handler, boxed once per run.
type DynHandler = Arc<dyn Fn(Job) -> BoxFuture<Result<(), BoxError>> + Send + Sync>;

impl Consumer {
    /// A builder for a consumer of `queue`, with Go CurlyQ's defaults.
    pub fn builder(queue: impl Into<String>) -> ConsumerBuilder {
        ConsumerBuilder::new(queue.into())
    }

    fn from_parts(
        backend: Arc<dyn QueueBackend>,
        runtime: Arc<dyn Runtime>,
        queue: QueueName,
        opts: ConsumerOptions,
    ) -> Self {
        Consumer {
            shared: Arc::new(Shared {
                backend,
                runtime,
                queue,
                opts,
                published: Arc::default(),
            }),
        }
    }

    /// The queue's name.
    pub fn queue(&self) -> &QueueName {
        &self.shared.queue
    }

    /// The options in force.
    pub fn options(&self) -> &ConsumerOptions {
        &self.shared.opts
    }

    /// What this consumer did so far.
    pub fn stats(&self) -> ConsumerStats {
        self.shared.published.stats()
    }

    /// Runs jobs with `handler` until `shutdown` completes, then shuts down gracefully:
    /// stops taking jobs, gives back taken-but-unstarted ones, lets running handlers
    /// finish within the grace period (heartbeating until the last one ends), and
    /// returns.
    ///
    /// A handler that returns an error or panics is retried with exponential backoff
    /// until the job's max attempts, then killed into the dead set.
    ///
    /// # Errors
    /// - [`ConsumeError::Startup`] if the first registration fails (Redis unreachable).
    /// - [`ConsumeError::LoopAborted`] if a loop reached its max attempts.
    /// - [`ConsumeError::ShutdownTimeout`] if handlers outlived the grace period (they
    ///   were cancelled and their jobs given back without counting an attempt).
    pub async fn run<H, Fut, E>(
        &self,
        handler: H,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ConsumeError>
    where
        H: Fn(Job) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        let handler: DynHandler = Arc::new(move |job| {
            let fut = handler(job);
            Box::pin(async move { fut.await.map_err(Into::into) })
        });
        let s = &self.shared;
        let core = ConsumerCore::from_checked(
            s.queue.clone(),
            s.opts.clone(),
            rand::random::<u64>(),
            s.runtime.now(),
        );
        let driver = Driver::new(
            core,
            s.backend.clone(),
            s.runtime.clone(),
            s.queue.clone(),
            handler,
        );
        // The driver runs as a task of its own on the runtime (on a worker thread, where
        // the handlers it spawns start without waking another thread); this future
        // only forwards the shutdown signal and waits for the result. Dropping it asks
        // the driver to shut down gracefully.
        let (stop, stopped) = oneshot::channel::<()>();
        let (done_tx, done) = oneshot::channel();
        let published = s.published.clone();
        s.runtime.spawn(Box::pin(async move {
            let result = driver.run(stopped.map(|_| ()), &published).await;
            published.set_current(None);
            let _ = done_tx.send(result);
        }));
        let shutdown = std::pin::pin!(shutdown);
        let result = match futures::future::select(shutdown, done).await {
            Either::Left(((), done)) => {
                let _ = stop.send(());
                done.await
            }
            Either::Right((result, _)) => result,
        };
        result.unwrap_or(Err(ConsumeError::Abandoned))
    }

    /// The consumer ID this consumer is registered under while it runs (`None` when it
    /// is not running). It changes when the consumer rejoins after being reaped, or
    /// continues under a fresh ID after a take whose reply was lost; in-flight jobs are
    /// kept in `<queue>:inflight:<id>`, so tools can tell which process holds a job.
    pub fn consumer_id(&self) -> Option<ConsumerId> {
        self.shared.published.current()
    }

    /// [`run`](Self::run) until the process receives ctrl-c (SIGINT).
    ///
    /// Inside a tokio runtime it listens with tokio (feature `tokio`); elsewhere with
    /// `async-signal` on the async-io reactor (features `async-std`, `smol`). If no
    /// handler can be installed, it runs until the consumer stops by itself.
    #[cfg(any(feature = "tokio", feature = "async-io"))]
    pub async fn run_until_ctrl_c<H, Fut, E>(&self, handler: H) -> Result<(), ConsumeError>
    where
        H: Fn(Job) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        self.run(handler, crate::runtime::ctrl_c()).await
    }
}
