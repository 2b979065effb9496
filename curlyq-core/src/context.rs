//! [`JobContext`]: what a handler knows about the run it is in (the job, the queue, the
//! consumer) and the signal that asks it to stop.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use event_listener::Event;
use futures::channel::mpsc;

use crate::backend::{ConsumerId, QueueName};
use crate::consumer::RunId;
use crate::lock;

/// Why a run's cancellation signal fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CancelReason {
    /// The job's timeout ran out ([`ConsumerBuilder::job_timeout`](crate::ConsumerBuilder::job_timeout)
    /// or [`JobContext::set_timeout`]). The run counts as failed (retried or killed)
    /// unless the handler still returns `Ok`.
    TimedOut,
    /// The consumer is shutting down and its grace period ran out. The job is given back
    /// without counting an attempt unless the handler still returns `Ok`.
    Shutdown,
}

impl fmt::Display for CancelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CancelReason::TimedOut => "the job timed out",
            CancelReason::Shutdown => "the consumer is shutting down",
        })
    }
}

/// A request from a running handler to its consumer.
#[derive(Debug)]
pub(crate) enum HandlerRequest {
    /// Time the run out this long after its start (`None`: never).
    SetTimeout(Option<Duration>),
}

/// The sending half of a run's requests: the run and the driver's channel.
pub(crate) type RequestSender = mpsc::UnboundedSender<(RunId, HandlerRequest)>;

/// What a handler is told about the job it runs, given to every handler started with
/// [`Consumer::run_with_context`](crate::Consumer::run_with_context) or
/// [`Consumer::run_typed`](crate::Consumer::run_typed).
///
/// Its cancellation signal fires when the job's timeout or the shutdown grace period
/// runs out. A handler that watches it ([`cancelled`](Self::cancelled),
/// [`is_cancelled`](Self::is_cancelled)) can stop cleanly within the consumer's
/// [`cancel_grace_period`](crate::ConsumerBuilder::cancel_grace_period); one that does
/// not is dropped at its end (at its next `.await`).
///
/// ```
/// use curlyq_core::{Job, JobContext};
///
/// async fn handler(job: Job, ctx: JobContext) -> Result<(), std::io::Error> {
///     for chunk in job.data.chunks(100) {
///         if ctx.is_cancelled() {
///             // Leave things tidy; the job runs again later.
///             return Err(std::io::Error::other(format!("stopped: {:?}", ctx.cancel_reason())));
///         }
///         let _ = chunk; // ... work on the chunk ...
///     }
///     println!("job {} (attempt {}) of {} done", ctx.job_id(), ctx.attempt(), ctx.queue());
///     Ok(())
/// }
/// # let _ = handler;
/// ```
#[derive(Clone)]
pub struct JobContext {
    inner: Arc<Inner>,
}

/// One allocation per run: the context's fields and its cancellation signal.
struct Inner {
    job_id: String,
    attempt: u32,
    queue: QueueName,
    consumer: ConsumerId,
    started: SystemTime,
    timeout: Mutex<Option<Duration>>,
    run: RunId,
    requests: Option<RequestSender>,
    /// Set once, when the signal fires (never for a detached context).
    cancelled: Mutex<Option<CancelReason>>,
    /// Wakes the handler's `cancelled()` waits when it fires.
    fired: Event,
}

impl Inner {
    fn reason(&self) -> Option<CancelReason> {
        *lock(&self.cancelled)
    }
}

impl fmt::Debug for JobContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobContext")
            .field("job_id", &self.inner.job_id)
            .field("attempt", &self.inner.attempt)
            .field("queue", &self.inner.queue)
            .field("consumer", &self.inner.consumer)
            .field("started", &self.inner.started)
            .field("timeout", &self.timeout())
            .field("cancelled", &self.cancel_reason())
            .finish()
    }
}

/// The driver's half of a run's context: fires its cancellation signal.
pub(crate) struct CancelHandle(Arc<Inner>);

impl fmt::Debug for CancelHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CancelHandle")
            .field(&self.0.reason())
            .finish()
    }
}

impl CancelHandle {
    /// Fires the signal (once; later calls do nothing).
    pub(crate) fn fire(&mut self, reason: CancelReason) {
        let mut cancelled = lock(&self.0.cancelled);
        if cancelled.is_none() {
            *cancelled = Some(reason);
            drop(cancelled);
            self.0.fired.notify(usize::MAX);
        }
    }
}

/// The parts of a context.
pub(crate) struct ContextParts {
    pub(crate) job_id: String,
    pub(crate) attempt: u32,
    pub(crate) queue: QueueName,
    pub(crate) consumer: ConsumerId,
    pub(crate) started: SystemTime,
    pub(crate) timeout: Option<Duration>,
    pub(crate) run: RunId,
    pub(crate) requests: Option<RequestSender>,
}

impl JobContext {
    /// A context and the handle that fires its cancellation signal.
    pub(crate) fn new(parts: ContextParts) -> (JobContext, CancelHandle) {
        let inner = Arc::new(Inner {
            job_id: parts.job_id,
            attempt: parts.attempt,
            queue: parts.queue,
            consumer: parts.consumer,
            started: parts.started,
            timeout: Mutex::new(parts.timeout),
            run: parts.run,
            requests: parts.requests,
            cancelled: Mutex::new(None),
            fired: Event::new(),
        });
        (
            JobContext {
                inner: Arc::clone(&inner),
            },
            CancelHandle(inner),
        )
    }

    /// A context for calling a handler outside a consumer (in a unit test of the
    /// handler): its signal never fires and [`set_timeout`](Self::set_timeout) only
    /// records the value.
    ///
    /// ```
    /// use curlyq_core::{ConsumerId, JobContext, QueueName};
    ///
    /// let queue = QueueName::new("emails").unwrap();
    /// let ctx = JobContext::detached("job-1", 0, queue, ConsumerId::from_string("test"));
    /// assert_eq!(ctx.job_id(), "job-1");
    /// assert!(!ctx.is_cancelled());
    /// ```
    pub fn detached(
        job_id: impl Into<String>,
        attempt: u32,
        queue: QueueName,
        consumer: ConsumerId,
    ) -> JobContext {
        // Nobody holds the handle, so the signal never fires.
        let (ctx, _never_fired) = JobContext::new(ContextParts {
            job_id: job_id.into(),
            attempt,
            queue,
            consumer,
            started: SystemTime::now(),
            timeout: None,
            run: RunId(0),
            requests: None,
        });
        ctx
    }

    /// The job's ID.
    pub fn job_id(&self) -> &str {
        &self.inner.job_id
    }

    /// The job's attempt: 0 on its first run, 1 on its first retry, and so on (Go
    /// CurlyQ's `Attempt`).
    pub fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// The queue the job came from.
    pub fn queue(&self) -> &QueueName {
        &self.inner.queue
    }

    /// The consumer ID the job was taken under (its in-flight set is
    /// `<queue>:inflight:<id>`).
    pub fn consumer_id(&self) -> &ConsumerId {
        &self.inner.consumer
    }

    /// When the handler started, on the consumer's clock.
    pub fn started(&self) -> SystemTime {
        self.inner.started
    }

    /// The run's timeout, counted from [`started`](Self::started) (`None`: none).
    pub fn timeout(&self) -> Option<Duration> {
        *lock(&self.inner.timeout)
    }

    /// When the run times out, if it has a timeout.
    pub fn deadline(&self) -> Option<SystemTime> {
        self.timeout()
            .and_then(|t| self.inner.started.checked_add(t))
    }

    /// Sets this run's timeout, counted from its start, replacing the consumer's
    /// [`job_timeout`](crate::ConsumerBuilder::job_timeout) (`None`: no timeout). A
    /// timeout already passed fires at once. Use it where one handler routes job kinds
    /// that need different bounds.
    pub fn set_timeout(&self, timeout: Option<Duration>) {
        *lock(&self.inner.timeout) = timeout;
        if let Some(requests) = &self.inner.requests {
            // The driver is gone only when the consumer stopped; nothing to time then.
            let _ = requests.unbounded_send((self.inner.run, HandlerRequest::SetTimeout(timeout)));
        }
    }

    /// Whether the cancellation signal fired.
    pub fn is_cancelled(&self) -> bool {
        self.cancel_reason().is_some()
    }

    /// Why the cancellation signal fired, if it did.
    pub fn cancel_reason(&self) -> Option<CancelReason> {
        self.inner.reason()
    }

    /// Completes when the cancellation signal fires, with its reason; never completes
    /// if it does not (race it against the work with `select`).
    pub async fn cancelled(&self) -> CancelReason {
        loop {
            if let Some(reason) = self.inner.reason() {
                return reason;
            }
            // Listen first, then look again: a signal fired in between is not missed.
            let listener = self.inner.fired.listen();
            if let Some(reason) = self.inner.reason() {
                return reason;
            }
            listener.await;
        }
    }
}
