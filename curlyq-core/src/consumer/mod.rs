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
use crate::codec::{Codec, Json};
use crate::context::JobContext;
use crate::error::{BoxError, ConsumeError};
use crate::failure::Permanent;
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
type DynHandler = Arc<dyn Fn(Job, JobContext) -> BoxFuture<Result<(), BoxError>> + Send + Sync>;

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
    /// until the job's max attempts, then killed into the dead set; a
    /// [`Permanent`] error kills it at once and a
    /// [`RetryAfter`](crate::RetryAfter) error chooses the delay. To see the job's
    /// context (attempt, queue, cancellation), use
    /// [`run_with_context`](Self::run_with_context); for payloads decoded with serde,
    /// [`run_typed`](Self::run_typed).
    ///
    /// # Errors
    /// - [`ConsumeError::Startup`] if the first registration fails (Redis unreachable).
    /// - [`ConsumeError::LoopAborted`] if a loop reached its max attempts.
    /// - [`ConsumeError::ShutdownTimeout`] if handlers outlived the grace period (they
    ///   were signalled, then dropped after the cancel grace, and their jobs given back
    ///   without counting an attempt).
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
        self.run_with_context(move |job, _ctx| handler(job), shutdown)
            .await
    }

    /// [`run`](Self::run) with a handler that is also given the run's [`JobContext`]:
    /// the job's ID and attempt, the queue, the consumer ID, its timeout, and the signal
    /// that fires when the timeout or the shutdown grace period runs out.
    ///
    /// ```
    /// # async fn demo(consumer: curlyq_core::Consumer) -> Result<(), curlyq_core::ConsumeError> {
    /// use curlyq_core::{BoxError, Job, JobContext};
    ///
    /// consumer
    ///     .run_with_context(
    ///         |job: Job, ctx: JobContext| async move {
    ///             println!("{} attempt {}: {} bytes", ctx.job_id(), ctx.attempt(), job.data.len());
    ///             Ok::<(), BoxError>(())
    ///         },
    ///         std::future::pending(),
    ///     )
    ///     .await
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`run`](Self::run).
    pub async fn run_with_context<H, Fut, E>(
        &self,
        handler: H,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ConsumeError>
    where
        H: Fn(Job, JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        let handler: DynHandler = Arc::new(move |job, ctx| {
            let fut = handler(job, ctx);
            Box::pin(async move { fut.await.map_err(Into::into) })
        });
        self.run_dyn(handler, shutdown).await
    }

    /// [`run_with_context`](Self::run_with_context) with each payload decoded as JSON
    /// into a `T` (see [`run_typed_with`](Self::run_typed_with) for another codec).
    ///
    /// A payload that does not decode is killed at once (never retried, never handed to
    /// the handler), with a dead reason naming the type and serde's message; the other
    /// jobs run. An enum with `#[serde(tag = "type")]` routes several job kinds through
    /// one queue and one handler.
    ///
    /// ```
    /// # async fn demo(consumer: curlyq_core::Consumer) -> Result<(), curlyq_core::ConsumeError> {
    /// use curlyq_core::{BoxError, JobContext};
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Email { to: String, subject: String }
    ///
    /// consumer
    ///     .run_typed(
    ///         |email: Email, ctx: JobContext| async move {
    ///             println!("job {}: mail {} about {}", ctx.job_id(), email.to, email.subject);
    ///             Ok::<(), BoxError>(())
    ///         },
    ///         std::future::pending(),
    ///     )
    ///     .await
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`run`](Self::run).
    pub async fn run_typed<T, H, Fut, E>(
        &self,
        handler: H,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ConsumeError>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
        H: Fn(T, JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        self.run_typed_with(Json, handler, shutdown).await
    }

    /// [`run_typed`](Self::run_typed) with payloads decoded by `codec` (such as
    /// `MessagePack`, feature `msgpack`).
    ///
    /// # Errors
    /// As [`run`](Self::run).
    pub async fn run_typed_with<C, T, H, Fut, E>(
        &self,
        codec: C,
        handler: H,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ConsumeError>
    where
        C: Codec,
        T: serde::de::DeserializeOwned + Send + 'static,
        H: Fn(T, JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        let handler: DynHandler =
            Arc::new(move |job: Job, ctx| match codec.decode::<T>(&job.data) {
                Ok(value) => {
                    let fut = handler(value, ctx);
                    Box::pin(async move { fut.await.map_err(Into::into) })
                }
                Err(e) => Box::pin(std::future::ready(Err(Permanent::new(e).into()))),
            });
        self.run_dyn(handler, shutdown).await
    }

    async fn run_dyn(
        &self,
        handler: DynHandler,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ConsumeError> {
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

    /// [`run`](Self::run) until the process receives SIGINT (ctrl-c) or SIGTERM (what
    /// container runtimes and systemd send to stop a process), then shuts down
    /// gracefully. For the other `run_*` methods, pass
    /// [`shutdown_signal()`](crate::runtime::shutdown_signal) as their `shutdown`.
    ///
    /// Inside a tokio runtime it listens with tokio (feature `tokio`); elsewhere with
    /// `async-signal` on the async-io reactor (features `async-std`, `smol`). If no
    /// handler can be installed, it runs until the consumer stops by itself.
    ///
    /// # Errors
    /// As [`run`](Self::run).
    #[cfg(any(feature = "tokio", feature = "async-io"))]
    pub async fn run_until_signal<H, Fut, E>(&self, handler: H) -> Result<(), ConsumeError>
    where
        H: Fn(Job) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        self.run(handler, crate::runtime::shutdown_signal()).await
    }

    /// The old name of [`run_until_signal`](Self::run_until_signal), which stops on
    /// SIGTERM as well as SIGINT.
    ///
    /// # Errors
    /// As [`run`](Self::run).
    #[cfg(any(feature = "tokio", feature = "async-io"))]
    #[deprecated(
        since = "0.2.0",
        note = "renamed `run_until_signal` (it stops on SIGTERM too)"
    )]
    pub async fn run_until_ctrl_c<H, Fut, E>(&self, handler: H) -> Result<(), ConsumeError>
    where
        H: Fn(Job) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        self.run_until_signal(handler).await
    }
}
