//! What goes in and out of the consumer core: the inputs it is fed ([`Input`]), the
//! commands it asks its driver to carry out ([`Command`]), the backend calls inside
//! those commands ([`BackendCall`]) and their replies ([`Reply`]).
//!
//! These are plain data: a driver (the async one in this crate, or the testkit's
//! simulator) turns each [`BackendCall`] into one [`QueueBackend`] method call with
//! [`BackendCall::execute`] and feeds the outcome back as [`Input::Reply`].

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::backend::{
    ConsumerId, DeadTrim, DueReport, KillJob, OrphanReport, OrphanSweep, QueueBackend, QueueName,
    Registration, RetryJob, TakeReport,
};
use crate::context::CancelReason;
use crate::error::{BackendError, ConsumeError};
use crate::job::Job;

/// Names one backend call the core asked for; its reply carries the same ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub(crate) u64);

/// Names one handler run the core asked for; its end carries the same ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId(pub(crate) u64);

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "call#{}", self.0)
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "run#{}", self.0)
    }
}

/// One [`QueueBackend`] operation with its arguments (the queue is the core's own).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum BackendCall {
    /// [`QueueBackend::register`].
    Register {
        /// The consumer ID to register.
        consumer: ConsumerId,
        /// The heartbeat time, Unix seconds.
        now: f64,
        /// Join or heartbeat.
        mode: Registration,
    },
    /// [`QueueBackend::enqueue_due`].
    EnqueueDue {
        /// The current time, Unix seconds.
        now: f64,
        /// Most jobs to move.
        max: usize,
    },
    /// [`QueueBackend::take_and_peek`].
    Take {
        /// The consumer ID taking.
        consumer: ConsumerId,
        /// Most jobs to take.
        max: usize,
        /// The time now (Unix seconds), for jobs the backend must kill when taken.
        now: f64,
    },
    /// [`Waiter::wait`](crate::Waiter::wait) on the driver's dedicated waiter. The
    /// driver makes the waiter with [`QueueBackend::waiter`] when it has none, or when
    /// `fresh_waiter` is set (an earlier poller step failed: its connection may be
    /// broken). Replied with [`Reply::Signal`].
    Wait {
        /// The longest wait.
        timeout: Duration,
        /// Replace the waiter before waiting.
        fresh_waiter: bool,
    },
    /// [`QueueBackend::ack`].
    Ack {
        /// The consumer ID the jobs were taken under.
        consumer: ConsumerId,
        /// The jobs' IDs.
        ids: Vec<String>,
        /// The time the outcome is recorded (its counters' minute), Unix seconds.
        now: f64,
    },
    /// [`QueueBackend::retry`].
    Retry {
        /// The consumer ID the jobs were taken under.
        consumer: ConsumerId,
        /// The jobs with their next run time.
        jobs: Vec<RetryJob>,
        /// The time the outcome is recorded (its counters' minute), Unix seconds.
        now: f64,
    },
    /// [`QueueBackend::kill`].
    Kill {
        /// The consumer ID the jobs were taken under.
        consumer: ConsumerId,
        /// The jobs with their reasons.
        jobs: Vec<KillJob>,
        /// The time of death, Unix seconds.
        now: f64,
    },
    /// [`QueueBackend::give_back`].
    GiveBack {
        /// The consumer ID the jobs were taken under.
        consumer: ConsumerId,
        /// The jobs' IDs.
        ids: Vec<String>,
    },
    /// [`QueueBackend::requeue_orphans`].
    RequeueOrphans(OrphanSweep),
    /// [`QueueBackend::trim_dead`].
    TrimDead(DeadTrim),
    /// [`QueueBackend::unregister`].
    Unregister {
        /// The consumer ID to remove.
        consumer: ConsumerId,
    },
    /// [`QueueBackend::settings_warnings`].
    SettingsWarnings,
}

impl BackendCall {
    /// Carries out every call but [`BackendCall::Wait`] on `backend` (a wait is answered
    /// with `Ok(Reply::Signal(false))`, a spurious wake-up, by this method: drivers run
    /// waits on their own waiter).
    pub async fn execute(
        self,
        backend: &dyn QueueBackend,
        queue: &QueueName,
    ) -> Result<Reply, BackendError> {
        Ok(match self {
            BackendCall::Register {
                consumer,
                now,
                mode,
            } => Reply::Registered(backend.register(queue, &consumer, now, mode).await?),
            BackendCall::EnqueueDue { now, max } => {
                Reply::Due(backend.enqueue_due(queue, now, max).await?)
            }
            BackendCall::Take { consumer, max, now } => {
                Reply::Taken(backend.take_and_peek(queue, &consumer, max, now).await?)
            }
            BackendCall::Wait { .. } => Reply::Signal(false),
            BackendCall::Ack { consumer, ids, now } => {
                Reply::Owned(backend.ack(queue, &consumer, &ids, now).await?)
            }
            BackendCall::Retry {
                consumer,
                jobs,
                now,
            } => Reply::Owned(backend.retry(queue, &consumer, &jobs, now).await?),
            BackendCall::Kill {
                consumer,
                jobs,
                now,
            } => Reply::Owned(backend.kill(queue, &consumer, &jobs, now).await?),
            BackendCall::GiveBack { consumer, ids } => {
                Reply::GivenBack(backend.give_back(queue, &consumer, &ids).await?)
            }
            BackendCall::RequeueOrphans(sweep) => {
                Reply::Orphans(backend.requeue_orphans(queue, sweep).await?)
            }
            BackendCall::TrimDead(trim) => Reply::Trimmed(backend.trim_dead(queue, trim).await?),
            BackendCall::Unregister { consumer } => {
                Reply::Unregistered(backend.unregister(queue, &consumer).await?)
            }
            BackendCall::SettingsWarnings => Reply::Warnings(backend.settings_warnings().await?),
        })
    }
}

/// The successful reply to a [`BackendCall`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Reply {
    /// To [`BackendCall::Register`]: whether the consumer is registered.
    Registered(bool),
    /// To [`BackendCall::EnqueueDue`].
    Due(DueReport),
    /// To [`BackendCall::Take`].
    Taken(TakeReport),
    /// To [`BackendCall::Wait`]: whether the signal was seen.
    Signal(bool),
    /// To [`BackendCall::Ack`], [`BackendCall::Retry`] and [`BackendCall::Kill`]: per
    /// job, whether it was still owned.
    Owned(Vec<bool>),
    /// To [`BackendCall::GiveBack`]: how many jobs went back.
    GivenBack(usize),
    /// To [`BackendCall::RequeueOrphans`].
    Orphans(OrphanReport),
    /// To [`BackendCall::TrimDead`]: how many dead jobs were removed.
    Trimmed(usize),
    /// To [`BackendCall::Unregister`].
    Unregistered(bool),
    /// To [`BackendCall::SettingsWarnings`].
    Warnings(Vec<String>),
}

/// How a handler run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandlerResult {
    /// The handler returned `Ok`.
    Succeeded,
    /// The handler returned an error (its message).
    Failed(String),
    /// The handler panicked (the panic's message).
    Panicked(String),
    /// The handler returned a [`Permanent`](crate::Permanent) error (its message): kill
    /// the job now.
    Permanent(String),
    /// The handler returned a [`RetryAfter`](crate::RetryAfter) error: retry after
    /// `delay` (capped at `job_max_backoff`).
    RetryAfter {
        /// The error's message.
        error: String,
        /// The delay asked for.
        delay: Duration,
    },
}

/// Something that happened, fed to [`ConsumerCore::handle`](super::ConsumerCore::handle).
#[derive(Debug)]
#[non_exhaustive]
pub enum Input {
    /// The time of [`ConsumerCore::poll_timeout`](super::ConsumerCore::poll_timeout)
    /// came (any timer: a loop's next step, a backoff, the shutdown grace period). A
    /// spurious one does no harm.
    Timeout,
    /// A backend call finished.
    Reply {
        /// The call.
        call: CallId,
        /// Its reply or its failure.
        result: Result<Reply, BackendError>,
    },
    /// A handler run ended.
    HandlerFinished {
        /// The run.
        run: RunId,
        /// How it ended.
        result: HandlerResult,
    },
    /// Shut down gracefully (the application asked).
    Shutdown,
    /// A running handler set its run's timeout
    /// ([`JobContext::set_timeout`](crate::JobContext::set_timeout)), counted from its
    /// start; `None` removes it.
    SetTimeout {
        /// The run.
        run: RunId,
        /// The new timeout.
        timeout: Option<Duration>,
    },
}

/// What the core asks its driver to do, from
/// [`ConsumerCore::poll_command`](super::ConsumerCore::poll_command).
#[derive(Debug)]
#[non_exhaustive]
pub enum Command {
    /// Make this backend call, then feed its [`Input::Reply`]. Calls may run
    /// concurrently and their replies come back in any order.
    Call {
        /// The call's ID.
        id: CallId,
        /// What to call.
        call: BackendCall,
    },
    /// Stop waiting in the blocking wait `id` (shutdown began); no reply is expected.
    CancelWait {
        /// The wait's call ID.
        id: CallId,
    },
    /// Run the handler on `job`, then feed [`Input::HandlerFinished`].
    StartHandler {
        /// The run's ID.
        run: RunId,
        /// The job.
        job: Job,
        /// The consumer ID it was taken under (for the handler's context).
        consumer: ConsumerId,
        /// When it starts, on the core's clock.
        started: SystemTime,
        /// Its timeout, counted from `started` (the core fires the cancellation itself;
        /// this is for the handler's context).
        timeout: Option<Duration>,
        /// The trace context its producer stored with it, when the take read it
        /// ([`TakenJob::trace`](crate::TakenJob::trace)): the parent of the run's span.
        trace: Option<String>,
    },
    /// Fire the run's cancellation signal
    /// ([`JobContext::cancelled`](crate::JobContext::cancelled)); the handler keeps
    /// running until it returns or a [`Command::CancelHandler`] follows.
    SignalCancel {
        /// The run.
        run: RunId,
        /// Why.
        reason: CancelReason,
    },
    /// Drop the run (its timeout, or the shutdown grace period, and then the cancel grace
    /// period are over); its outcome is settled and no [`Input::HandlerFinished`] is
    /// expected (one that comes anyway is ignored).
    CancelHandler {
        /// The run.
        run: RunId,
    },
    /// The consumer stopped: return this result. Nothing more will be asked.
    Finished(Result<(), ConsumeError>),
}
