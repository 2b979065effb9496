//! The consumer and its five loops: heartbeat, scheduler, custodian, poller, processor.
//!
//! The loops are written once against [`QueueBackend`] and [`Runtime`]; they hold no
//! Redis or runtime details.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_channel::{Receiver, Sender};
use event_listener::Event;
use futures::channel::oneshot;
use futures::future::{AbortHandle, Abortable};
use futures::FutureExt;
use tracing::{debug, error, info, info_span, warn, Instrument};

use crate::backend::{
    ConsumerId, DeadTrim, KillJob, OrphanSweep, QueueBackend, QueueName, Registration, RetryJob,
    TakenJob, Waiter, MAX_BATCH,
};
use crate::backoff::backoff;
use crate::error::{BackendError, BoxError, ConfigError, ConsumeError, LoopName};
use crate::job::Job;
use crate::options::ConsumerOptions;
use crate::runtime::{unix_seconds, BoxFuture, Runtime};
use crate::sync::{until, Flag, TaskCount};

/// Builds a [`Consumer`], checking every option. Start with [`Consumer::builder`].
#[derive(Clone)]
pub struct ConsumerBuilder {
    queue: String,
    options: ConsumerOptions,
    runtime: Option<Arc<dyn Runtime>>,
}

impl std::fmt::Debug for ConsumerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerBuilder")
            .field("queue", &self.queue)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, value: $ty) -> Self {
                self.options.$name = value;
                self
            }
        )*
    };
}

impl ConsumerBuilder {
    setters! {
        /// See [`ConsumerOptions::job_max_attempts`].
        job_max_attempts: u32;
        /// See [`ConsumerOptions::job_max_backoff`].
        job_max_backoff: Duration;
        /// See [`ConsumerOptions::shutdown_grace_period`].
        shutdown_grace_period: Duration;
        /// See [`ConsumerOptions::custodian_consumer_timeout`].
        custodian_consumer_timeout: Duration;
        /// See [`ConsumerOptions::custodian_max_attempts`].
        custodian_max_attempts: u32;
        /// See [`ConsumerOptions::custodian_max_backoff`].
        custodian_max_backoff: Duration;
        /// See [`ConsumerOptions::custodian_max_jobs`].
        custodian_max_jobs: usize;
        /// See [`ConsumerOptions::custodian_poll_interval`].
        custodian_poll_interval: Duration;
        /// See [`ConsumerOptions::heartbeat_max_attempts`].
        heartbeat_max_attempts: u32;
        /// See [`ConsumerOptions::heartbeat_max_backoff`].
        heartbeat_max_backoff: Duration;
        /// See [`ConsumerOptions::heartbeat_interval`].
        heartbeat_interval: Duration;
        /// See [`ConsumerOptions::poller_buffer_size`].
        poller_buffer_size: usize;
        /// See [`ConsumerOptions::poller_max_attempts`].
        poller_max_attempts: u32;
        /// See [`ConsumerOptions::poller_max_backoff`].
        poller_max_backoff: Duration;
        /// See [`ConsumerOptions::poller_poll_duration`].
        poller_poll_duration: Duration;
        /// See [`ConsumerOptions::processor_concurrency`].
        processor_concurrency: usize;
        /// See [`ConsumerOptions::processor_max_attempts`].
        processor_max_attempts: u32;
        /// See [`ConsumerOptions::processor_max_backoff`].
        processor_max_backoff: Duration;
        /// See [`ConsumerOptions::scheduler_max_attempts`].
        scheduler_max_attempts: u32;
        /// See [`ConsumerOptions::scheduler_max_backoff`].
        scheduler_max_backoff: Duration;
        /// See [`ConsumerOptions::scheduler_max_jobs`].
        scheduler_max_jobs: usize;
        /// See [`ConsumerOptions::scheduler_poll_interval`].
        scheduler_poll_interval: Duration;
        /// See [`ConsumerOptions::max_orphan_requeues`].
        max_orphan_requeues: u32;
        /// See [`ConsumerOptions::dead_max_jobs`].
        dead_max_jobs: usize;
        /// See [`ConsumerOptions::dead_max_age`].
        dead_max_age: Duration;
    }

    /// Same as [`processor_concurrency`](Self::processor_concurrency).
    pub fn concurrency(self, handlers: usize) -> Self {
        self.processor_concurrency(handlers)
    }

    /// Replaces every option at once.
    pub fn options(mut self, options: ConsumerOptions) -> Self {
        self.options = options;
        self
    }

    /// Runs the loops on `runtime` (by default the runtime enabled by a feature).
    pub fn runtime(mut self, runtime: Arc<dyn Runtime>) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// Checks the options and builds the consumer on `backend`.
    pub fn build(self, backend: Arc<dyn QueueBackend>) -> Result<Consumer, ConfigError> {
        let queue = QueueName::new(self.queue)?;
        self.options.validate()?;
        let runtime = self
            .runtime
            .or_else(crate::runtime::default_runtime)
            .ok_or(ConfigError::NoRuntime)?;
        Ok(Consumer {
            shared: Arc::new(Shared {
                backend,
                runtime,
                queue,
                opts: self.options,
                stats: Stats::default(),
                current: Mutex::new(None),
            }),
        })
    }
}

/// Counters of what a consumer did, since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerStats {
    /// Jobs whose handler succeeded and whose ack was recorded.
    pub succeeded: u64,
    /// Failed jobs scheduled for another run.
    pub retried: u64,
    /// Jobs moved to the dead set (failures past max attempts, undecodable or missing
    /// data).
    pub killed: u64,
    /// Outcomes (ack, retry, kill) that found the job no longer owned by this consumer
    /// (it had been reaped; the job may run again elsewhere). They changed nothing.
    pub not_owned: u64,
    /// Taken jobs given back to the queue unstarted (at shutdown) or cancelled.
    pub given_back: u64,
    /// Times the consumer found itself reaped and rejoined under a fresh ID.
    pub rejoined: u64,
}

#[derive(Default)]
struct Stats {
    succeeded: AtomicU64,
    retried: AtomicU64,
    killed: AtomicU64,
    not_owned: AtomicU64,
    given_back: AtomicU64,
    rejoined: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

struct Shared {
    backend: Arc<dyn QueueBackend>,
    runtime: Arc<dyn Runtime>,
    queue: QueueName,
    opts: ConsumerOptions,
    stats: Stats,
    /// The consumer ID of the running `run`, if any.
    current: Mutex<Option<ConsumerId>>,
}

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

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("queue", &self.shared.queue)
            .field("options", &self.shared.opts)
            .finish_non_exhaustive()
    }
}

type DynHandler = Arc<dyn Fn(Job) -> BoxFuture<Result<(), BoxError>> + Send + Sync>;

impl Consumer {
    /// A builder for a consumer of `queue`, with Go CurlyQ's defaults.
    pub fn builder(queue: impl Into<String>) -> ConsumerBuilder {
        ConsumerBuilder {
            queue: queue.into(),
            options: ConsumerOptions::default(),
            runtime: None,
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
        let s = &self.shared.stats;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ConsumerStats {
            succeeded: get(&s.succeeded),
            retried: get(&s.retried),
            killed: get(&s.killed),
            not_owned: get(&s.not_owned),
            given_back: get(&s.given_back),
            rejoined: get(&s.rejoined),
        }
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
        let live = Live::new(self.shared.clone());
        let result = match live.start(handler).await {
            Ok(()) => {
                until(live.stopping.wait(), shutdown).await;
                live.shutdown().await
            }
            Err(e) => Err(e),
        };
        *lock(&self.shared.current) = None;
        result
    }

    /// The consumer ID this consumer is registered under while it runs (`None` when it
    /// is not running). It changes when the consumer rejoins after being reaped, or
    /// continues under a fresh ID after a take whose reply was lost; in-flight jobs are
    /// kept in `<queue>:inflight:<id>`, so tools can tell which process holds a job.
    pub fn consumer_id(&self) -> Option<ConsumerId> {
        lock(&self.shared.current).clone()
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

/// A consumer ID this process has taken jobs under, and how many of those it still
/// holds (taken, outcome not yet recorded or given up).
struct Holder {
    id: ConsumerId,
    held: AtomicUsize,
    /// Found reaped: its jobs were handed on, so those not started must not run here.
    reaped: AtomicBool,
}

impl Holder {
    fn new(id: ConsumerId) -> Arc<Self> {
        Arc::new(Holder {
            id,
            held: AtomicUsize::new(0),
            reaped: AtomicBool::new(false),
        })
    }
}

/// One taken job's share of its holder's count, released when dropped.
struct Lease(Arc<Holder>);

impl Lease {
    fn consumer(&self) -> &ConsumerId {
        &self.0.id
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A taken job and the consumer ID it was taken under (acks go to that ID's set).
struct Delivery {
    lease: Lease,
    taken: TakenJob,
}

/// What to record when a job's run ended.
enum Outcome {
    Ack(String),
    Retry(RetryJob),
    Kill(KillJob),
}

impl Outcome {
    fn kind(&self) -> OutcomeKind {
        match self {
            Outcome::Ack(_) => OutcomeKind::Ack,
            Outcome::Retry(_) => OutcomeKind::Retry,
            Outcome::Kill(_) => OutcomeKind::Kill,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum OutcomeKind {
    Ack,
    Retry,
    Kill,
}

/// An outcome waiting for the flusher, and the worker to tell once it is recorded.
struct Submitted {
    consumer: ConsumerId,
    outcome: Outcome,
    /// Dropped (never sent) when the outcome could not be recorded.
    recorded: oneshot::Sender<()>,
}

/// Outcomes of one kind for one consumer ID: one backend call.
struct OutcomeGroup {
    consumer: ConsumerId,
    kind: OutcomeKind,
    members: Vec<Submitted>,
    /// An earlier attempt failed: it may have landed with its reply lost.
    resent: bool,
}

impl OutcomeGroup {
    /// What `pick` finds in each member's outcome (a group holds one kind, so all).
    fn picked<T: Clone>(&self, pick: fn(&Outcome) -> Option<&T>) -> Vec<T> {
        self.members
            .iter()
            .filter_map(|m| pick(&m.outcome))
            .cloned()
            .collect()
    }
}

/// At most this many outcomes go into one flush (one call per kind and consumer ID).
const OUTCOME_BATCH: usize = 512;

/// The state of one `run`.
struct Live {
    shared: Arc<Shared>,
    /// The current consumer ID.
    holder: Mutex<Arc<Holder>>,
    /// Former IDs retired after a take whose outcome is unknown: heartbeated while this
    /// process still holds jobs under them, then left to expire.
    retired: Mutex<Vec<Arc<Holder>>>,
    /// When the current ID was last known registered (Unix seconds).
    last_beat: Mutex<f64>,
    /// Serializes the check a worker makes before running a job after a long silence.
    confirm: futures::lock::Mutex<()>,
    rejoin: futures::lock::Mutex<()>,
    /// Set when shutdown begins (or a loop aborts): stop taking jobs.
    stopping: Flag,
    /// Set when no handler runs any more: the heartbeat may stop.
    handlers_done: Flag,
    abort: Mutex<Option<ConsumeError>>,
    /// Set when a fatal error stops the consumer.
    aborted: Flag,
    tx: Sender<Delivery>,
    rx: Receiver<Delivery>,
    /// Handlers waiting for a job: the poller may take that many beyond the buffer.
    idle: AtomicUsize,
    space: Event,
    /// Finished jobs' outcomes, recorded by the flusher in batches.
    outcomes_tx: Sender<Submitted>,
    outcomes_rx: Receiver<Submitted>,
    /// Notified when the poller sees the signal: a newly scheduled job may be due
    /// sooner than the scheduler's next wake-up.
    nudge: Event,
    leftovers: Mutex<Vec<Delivery>>,
    running: Mutex<HashMap<u64, AbortHandle>>,
    next_token: AtomicU64,
    loops: Arc<TaskCount>,
    workers: Arc<TaskCount>,
    flusher: Arc<TaskCount>,
    heartbeat: Arc<TaskCount>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these short locks cannot leave the data inconsistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Marks a counted task finished when dropped (even if the task panicked).
struct Finished(Arc<TaskCount>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// Consecutive-failure accounting of one loop.
struct LoopBackoff {
    name: LoopName,
    max_attempts: u32,
    max_backoff: Duration,
    attempts: u32,
}

impl LoopBackoff {
    fn new(name: LoopName, max_attempts: u32, max_backoff: Duration) -> Self {
        LoopBackoff {
            name,
            max_attempts,
            max_backoff,
            attempts: 0,
        }
    }

    fn ok(&mut self) {
        self.attempts = 0;
    }

    /// Records a failure: the delay before the next attempt, or the error that stops the
    /// consumer when the loop reached its max attempts.
    fn failed(&mut self, err: BackendError) -> Result<Duration, ConsumeError> {
        self.attempts = self.attempts.saturating_add(1);
        warn!(loop = %self.name, attempt = self.attempts, error = %err, "curlyq loop step failed");
        if self.max_attempts > 0 && self.attempts >= self.max_attempts {
            return Err(ConsumeError::LoopAborted {
                name: self.name,
                attempts: self.attempts,
                last_error: err,
            });
        }
        Ok(backoff(self.attempts, self.max_backoff))
    }
}

impl Live {
    fn new(shared: Arc<Shared>) -> Arc<Self> {
        // Room for the buffer plus one job per idle handler (see `poller_loop`).
        let (tx, rx) = async_channel::bounded(
            shared.opts.poller_buffer_size + shared.opts.processor_concurrency,
        );
        // Each handler has at most one outcome waiting, so this is bounded too.
        let (outcomes_tx, outcomes_rx) = async_channel::unbounded();
        Arc::new(Live {
            shared,
            holder: Mutex::new(Holder::new(ConsumerId::random())),
            retired: Mutex::new(Vec::new()),
            last_beat: Mutex::new(f64::NEG_INFINITY),
            confirm: futures::lock::Mutex::new(()),
            rejoin: futures::lock::Mutex::new(()),
            stopping: Flag::default(),
            handlers_done: Flag::default(),
            abort: Mutex::new(None),
            aborted: Flag::default(),
            tx,
            rx,
            idle: AtomicUsize::new(0),
            space: Event::new(),
            outcomes_tx,
            outcomes_rx,
            nudge: Event::new(),
            leftovers: Mutex::new(Vec::new()),
            running: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(0),
            loops: Arc::default(),
            workers: Arc::default(),
            flusher: Arc::default(),
            heartbeat: Arc::default(),
        })
    }

    fn backend(&self) -> &dyn QueueBackend {
        &*self.shared.backend
    }

    fn queue(&self) -> &QueueName {
        &self.shared.queue
    }

    fn opts(&self) -> &ConsumerOptions {
        &self.shared.opts
    }

    fn now(&self) -> f64 {
        unix_seconds(self.shared.runtime.now())
    }

    fn sleep(&self, d: Duration) -> BoxFuture<()> {
        self.shared.runtime.sleep(d)
    }

    fn current(&self) -> ConsumerId {
        lock(&self.holder).id.clone()
    }

    fn holder(&self) -> Arc<Holder> {
        lock(&self.holder).clone()
    }

    /// Makes `id` the current consumer ID (just registered); returns the holder it
    /// replaces.
    fn switch_to(&self, id: ConsumerId) -> Arc<Holder> {
        *lock(&self.shared.current) = Some(id.clone());
        self.beat_confirmed();
        std::mem::replace(&mut *lock(&self.holder), Holder::new(id))
    }

    fn beat_confirmed(&self) {
        *lock(&self.last_beat) = self.now();
    }

    /// Whether the current ID may have expired: no heartbeat confirmed it for longer
    /// than a custodian waits (the process was stopped, or Redis unreachable).
    fn may_be_reaped(&self) -> bool {
        let o = self.opts();
        let expiry = (o.heartbeat_interval + o.custodian_consumer_timeout).as_secs_f64();
        self.now() - *lock(&self.last_beat) > expiry
    }

    /// After a long silence, asks Redis whether the current ID is still registered
    /// before a job runs; if it was reaped, rejoins (marking the old ID's jobs as handed
    /// on). If Redis cannot say, the job runs (at least once).
    async fn confirm_registration(&self) {
        let _serial = self.confirm.lock().await;
        if !self.may_be_reaped() {
            return;
        }
        let id = self.current();
        let beat = self
            .backend()
            .register(self.queue(), &id, self.now(), Registration::Heartbeat)
            .await;
        match beat {
            Ok(true) => self.beat_confirmed(),
            Ok(false) => {
                if let Err(e) = self.rejoin(&id).await {
                    debug!(error = %e, "curlyq rejoin after a long silence failed");
                }
            }
            Err(e) => debug!(error = %e, "curlyq could not confirm its registration"),
        }
    }

    fn spawn(&self, count: &Arc<TaskCount>, task: impl Future<Output = ()> + Send + 'static) {
        count.start();
        let guard = Finished(count.clone());
        self.shared.runtime.spawn(Box::pin(async move {
            let _guard = guard;
            task.await;
        }));
    }

    /// Records the first fatal error and starts shutdown.
    fn abort(&self, err: ConsumeError) {
        error!(queue = %self.queue(), error = %err, "curlyq consumer stopping");
        lock(&self.abort).get_or_insert(err);
        self.aborted.set();
        self.stopping.set();
    }

    async fn start(self: &Arc<Self>, handler: DynHandler) -> Result<(), ConsumeError> {
        let id = self.current();
        self.backend()
            .register(self.queue(), &id, self.now(), Registration::Join)
            .await
            .map_err(ConsumeError::Startup)?;
        *lock(&self.shared.current) = Some(id.clone());
        self.beat_confirmed();
        info!(queue = %self.queue(), consumer = %id, "curlyq consumer started");
        match self.backend().settings_warnings().await {
            Ok(warnings) => {
                for warning in warnings {
                    warn!(queue = %self.queue(), "curlyq: {warning}");
                }
            }
            // Reading settings may be refused (an ACL without INFO); that is no reason
            // not to run.
            Err(e) => debug!(error = %e, "curlyq could not read the store's settings"),
        }
        self.spawn(&self.heartbeat, self.clone().heartbeat_loop());
        self.spawn(&self.loops, self.clone().scheduler_loop());
        self.spawn(&self.loops, self.clone().custodian_loop());
        self.spawn(&self.loops, self.clone().poller_loop());
        self.spawn(&self.flusher, self.clone().flusher_loop());
        for _ in 0..self.opts().processor_concurrency {
            self.spawn(&self.workers, self.clone().worker(handler.clone()));
        }
        Ok(())
    }

    async fn shutdown(self: &Arc<Self>) -> Result<(), ConsumeError> {
        info!(queue = %self.queue(), "curlyq consumer shutting down");
        let grace = self.opts().shutdown_grace_period;
        let grace_timer = (!grace.is_zero()).then(|| self.sleep(grace));
        self.stopping.set();
        self.loops.idle().await;
        self.give_back_unstarted().await;

        let mut cancelled = None;
        match grace_timer {
            None => self.workers.idle().await,
            Some(timer) => {
                if until(timer, self.workers.idle()).await.is_none() {
                    let handles: Vec<AbortHandle> =
                        lock(&self.running).drain().map(|(_, h)| h).collect();
                    warn!(queue = %self.queue(), running = handles.len(),
                        "curlyq shutdown grace period passed; cancelling handlers");
                    for h in &handles {
                        h.abort();
                    }
                    cancelled = Some(handles.len());
                    self.workers.idle().await;
                }
            }
        }
        // Every worker waited for its outcome, so the flusher has nothing left to do.
        self.outcomes_tx.close();
        self.flusher.idle().await;
        self.give_back_unstarted().await;
        self.handlers_done.set();
        self.heartbeat.idle().await;

        let id = self.current();
        match self.backend().unregister(self.queue(), &id).await {
            Ok(removed) => debug!(consumer = %id, removed, "curlyq consumer unregistered"),
            Err(e) => debug!(consumer = %id, error = %e, "curlyq unregister failed"),
        }
        // Nothing is held any more: retired IDs are unregistered, or left to expire when
        // a lost take left jobs under them.
        self.tend_retired().await;
        info!(queue = %self.queue(), "curlyq consumer stopped");
        if let Some(err) = lock(&self.abort).take() {
            return Err(err);
        }
        match cancelled {
            Some(cancelled) => Err(ConsumeError::ShutdownTimeout { grace, cancelled }),
            None => Ok(()),
        }
    }

    /// Takes a fresh consumer ID after finding `stale` reaped (unless already done).
    async fn rejoin(&self, stale: &ConsumerId) -> Result<(), BackendError> {
        let _serial = self.rejoin.lock().await;
        if self.current() != *stale {
            return Ok(());
        }
        let fresh = ConsumerId::random();
        let old = self.join_as(fresh.clone()).await?;
        warn!(queue = %self.queue(), old = %stale, new = %fresh,
            "curlyq consumer was reaped (missed heartbeats); rejoined under a new ID. \
             Jobs it was running may run again elsewhere; their outcomes are ignored");
        old.reaped.store(true, Ordering::Release);
        bump(&self.shared.stats.rejoined, 1);
        Ok(())
    }

    /// Registers `fresh` and makes it the current ID; returns the holder it replaces.
    async fn join_as(&self, fresh: ConsumerId) -> Result<Arc<Holder>, BackendError> {
        self.backend()
            .register(self.queue(), &fresh, self.now(), Registration::Join)
            .await?;
        Ok(self.switch_to(fresh))
    }

    /// Continues under a fresh consumer ID after a take whose outcome is unknown (its
    /// reply was lost: a timeout, a dropped connection). That take may have moved jobs
    /// into the current ID's in-flight set without this process seeing them; as long
    /// as the ID heartbeats, no custodian would give them back. The old ID is
    /// heartbeated only while this process still holds jobs taken under it, then left
    /// to expire, and a custodian requeues whatever the lost take moved.
    ///
    /// `fresh` is chosen once per unknown take and kept across attempts, so that
    /// retries while Redis stays unreachable register one new ID, not many.
    async fn retire_current(&self, fresh: &ConsumerId) -> Result<(), BackendError> {
        let _serial = self.rejoin.lock().await;
        let old = self.join_as(fresh.clone()).await?;
        warn!(queue = %self.queue(), old = %old.id, new = %fresh,
            "curlyq take's outcome is unknown (its reply was lost); continuing under a new \
             consumer ID. Jobs that take may have moved come back once the old ID expires");
        lock(&self.retired).push(old);
        Ok(())
    }

    /// Heartbeats the retired IDs that still hold jobs of this process; unregisters
    /// (or, when a lost take left jobs there, stops heartbeating) the others.
    async fn tend_retired(&self) {
        let retired = std::mem::take(&mut *lock(&self.retired));
        let mut keep = Vec::new();
        for holder in retired {
            let (queue, id) = (self.queue(), &holder.id);
            if holder.held.load(Ordering::Acquire) > 0 {
                let beat = self
                    .backend()
                    .register(queue, id, self.now(), Registration::Heartbeat)
                    .await;
                match beat {
                    Ok(false) => {
                        // Its jobs were handed on: those not started must not run here.
                        holder.reaped.store(true, Ordering::Release);
                        debug!(consumer = %id, "curlyq retired consumer ID was reaped");
                    }
                    Ok(true) => keep.push(holder),
                    Err(e) => {
                        debug!(consumer = %id, error = %e, "curlyq retired ID heartbeat failed");
                        keep.push(holder);
                    }
                }
            } else {
                match self.backend().unregister(queue, id).await {
                    Ok(true) => debug!(consumer = %id, "curlyq retired consumer ID unregistered"),
                    Ok(false) => info!(queue = %queue, consumer = %id,
                        "curlyq retired consumer ID holds jobs a lost take moved; a custodian requeues them once it expires"),
                    Err(e) => debug!(consumer = %id, error = %e,
                        "curlyq retired ID unregister failed; it will expire"),
                }
            }
        }
        lock(&self.retired).extend(keep);
    }

    // ----- heartbeat -----

    async fn heartbeat_loop(self: Arc<Self>) {
        let o = self.opts();
        let mut bo = LoopBackoff::new(
            LoopName::Heartbeat,
            o.heartbeat_max_attempts,
            o.heartbeat_max_backoff,
        );
        let mut delay = o.heartbeat_interval;
        loop {
            if until(self.handlers_done.wait(), self.sleep(delay))
                .await
                .is_none()
            {
                return;
            }
            let id = self.current();
            let step = match self
                .backend()
                .register(self.queue(), &id, self.now(), Registration::Heartbeat)
                .await
            {
                Ok(true) => {
                    self.beat_confirmed();
                    Ok(())
                }
                Ok(false) => self.rejoin(&id).await,
                Err(e) => Err(e),
            };
            delay = match step {
                Ok(()) => {
                    bo.ok();
                    self.tend_retired().await;
                    o.heartbeat_interval
                }
                Err(e) => match bo.failed(e) {
                    Ok(d) => d,
                    Err(fatal) => return self.abort(fatal),
                },
            };
        }
    }

    // ----- scheduler -----

    async fn scheduler_loop(self: Arc<Self>) {
        let o = self.opts();
        let mut bo = LoopBackoff::new(
            LoopName::Scheduler,
            o.scheduler_max_attempts,
            o.scheduler_max_backoff,
        );
        while !self.stopping.is_set() {
            let nudged = self.nudge.listen();
            let now = self.now();
            let delay = match self
                .backend()
                .enqueue_due(self.queue(), now, o.scheduler_max_jobs)
                .await
            {
                Ok(report) => {
                    bo.ok();
                    if report.moved > 0 {
                        debug!(queue = %self.queue(), moved = report.moved, "curlyq scheduled jobs due");
                    }
                    if report.moved >= o.scheduler_max_jobs {
                        continue;
                    }
                    // Wake at the earliest due time, bounded by the poll interval.
                    match report.next_due {
                        Some(next) if next - now < o.scheduler_poll_interval.as_secs_f64() => {
                            Duration::from_secs_f64((next - now).max(0.001))
                        }
                        _ => o.scheduler_poll_interval,
                    }
                }
                Err(e) => match bo.failed(e) {
                    Ok(d) => d,
                    Err(fatal) => return self.abort(fatal),
                },
            };
            let wake = futures::future::select(self.sleep(delay), nudged);
            if until(self.stopping.wait(), wake).await.is_none() {
                return;
            }
        }
    }

    // ----- custodian -----

    async fn custodian_loop(self: Arc<Self>) {
        let o = self.opts();
        let mut bo = LoopBackoff::new(
            LoopName::Custodian,
            o.custodian_max_attempts,
            o.custodian_max_backoff,
        );
        while !self.stopping.is_set() {
            let delay = match self.custodian_step().await {
                Ok(true) => continue,
                Ok(false) => {
                    bo.ok();
                    o.custodian_poll_interval
                }
                Err(e) => match bo.failed(e) {
                    Ok(d) => d,
                    Err(fatal) => return self.abort(fatal),
                },
            };
            if until(self.stopping.wait(), self.sleep(delay))
                .await
                .is_none()
            {
                return;
            }
        }
    }

    /// One sweep; `Ok(true)` when it hit its limit and should run again at once.
    async fn custodian_step(&self) -> Result<bool, BackendError> {
        let o = self.opts();
        let now = self.now();
        let expiry = (o.heartbeat_interval + o.custodian_consumer_timeout).as_secs_f64();
        let report = self
            .backend()
            .requeue_orphans(
                self.queue(),
                OrphanSweep {
                    expired_before: now - expiry,
                    max_jobs: o.custodian_max_jobs,
                    max_orphan_requeues: o.max_orphan_requeues,
                    now,
                },
            )
            .await?;
        if report.requeued + report.killed + report.consumers_removed > 0 {
            info!(queue = %self.queue(), requeued = report.requeued, killed = report.killed,
                consumers_removed = report.consumers_removed, "curlyq recovered orphaned jobs");
        }
        let trim = DeadTrim {
            killed_before: now - o.dead_max_age.as_secs_f64(),
            keep_at_most: o.dead_max_jobs,
            max_jobs: MAX_BATCH,
        };
        while self.backend().trim_dead(self.queue(), trim).await? >= MAX_BATCH {
            if self.stopping.is_set() {
                break;
            }
        }
        Ok(report.requeued + report.killed >= o.custodian_max_jobs)
    }

    // ----- poller -----

    async fn poller_loop(self: Arc<Self>) {
        let o = self.opts();
        let buffer = o.poller_buffer_size;
        // Jobs held are those buffered (`tx.len()`) plus those running (concurrency minus
        // idle handlers); keeping that at most `buffer + concurrency` leaves room for
        // `buffer + idle - buffered`, so one take fills every idle handler at once.
        let room = || (buffer + self.idle.load(Ordering::Acquire)).saturating_sub(self.tx.len());
        let mut bo = LoopBackoff::new(
            LoopName::Poller,
            o.poller_max_attempts,
            o.poller_max_backoff,
        );
        let mut waiter: Option<Box<dyn Waiter>> = None;
        // Set when a take's outcome is unknown: the next take goes under this fresh ID.
        let mut in_doubt: Option<ConsumerId> = None;
        while !self.stopping.is_set() {
            let free = room();
            if free == 0 {
                let listener = self.space.listen();
                if room() == 0 {
                    until(self.stopping.wait(), listener).await;
                }
                continue;
            }
            let step = self.poll_once(free, &mut waiter, &mut in_doubt).await;
            let delay = match step {
                Ok(()) => {
                    bo.ok();
                    continue;
                }
                Err(e) => {
                    waiter = None;
                    match bo.failed(e) {
                        Ok(d) => d,
                        Err(fatal) => return self.abort(fatal),
                    }
                }
            };
            until(self.stopping.wait(), self.sleep(delay)).await;
        }
    }

    /// Takes up to `free` jobs into the buffer; when fewer came, waits for the signal
    /// (at most the poll duration: a take follows every timeout, so a lost signal only
    /// delays jobs).
    async fn poll_once(
        &self,
        free: usize,
        waiter: &mut Option<Box<dyn Waiter>>,
        in_doubt: &mut Option<ConsumerId>,
    ) -> Result<(), BackendError> {
        if let Some(fresh) = in_doubt {
            self.retire_current(fresh).await?;
            *in_doubt = None;
        }
        let holder = self.holder();
        let taken = match self.backend().take(self.queue(), &holder.id, free).await {
            Ok(taken) => taken,
            Err(BackendError::NotRegistered { .. }) => return self.rejoin(&holder.id).await,
            Err(e) => {
                // A rejected script wrote nothing; any other failure may have come after
                // the take was carried out.
                if !matches!(e, BackendError::Rejected { .. }) {
                    in_doubt.get_or_insert_with(ConsumerId::random);
                }
                return Err(e);
            }
        };
        let n = taken.len();
        holder.held.fetch_add(n, Ordering::AcqRel);
        for job in taken {
            let delivery = Delivery {
                lease: Lease(holder.clone()),
                taken: job,
            };
            // Only the poller sends and it sent no more than the free room, so this
            // does not wait; the channel is never closed.
            if let Err(e) = self.tx.send(delivery).await {
                lock(&self.leftovers).push(e.into_inner());
            }
        }
        if n >= free || self.stopping.is_set() {
            return Ok(());
        }
        let w = match waiter {
            Some(w) => w,
            None => waiter.insert(self.backend().waiter(self.queue()).await?),
        };
        let poll = self.opts().poller_poll_duration;
        match until(self.stopping.wait(), w.wait(poll)).await {
            Some(Err(e)) => Err(e),
            Some(Ok(true)) => {
                // Producers set the signal when they schedule too: let the scheduler
                // look again, in case the new job is due before its next wake-up.
                self.nudge.notify(1);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Gives back every taken job that no handler started.
    async fn give_back_unstarted(&self) {
        let mut jobs = std::mem::take(&mut *lock(&self.leftovers));
        while let Ok(d) = self.rx.try_recv() {
            jobs.push(d);
        }
        self.give_back(jobs).await;
    }

    async fn give_back(&self, jobs: Vec<Delivery>) {
        let mut by_consumer: HashMap<ConsumerId, Vec<String>> = HashMap::new();
        // The leases are released after the give-back (when `jobs` drops).
        for d in &jobs {
            by_consumer
                .entry(d.lease.consumer().clone())
                .or_default()
                .push(d.taken.id.clone());
        }
        for (consumer, ids) in by_consumer {
            for chunk in ids.chunks(MAX_BATCH) {
                let mut tries = 0;
                loop {
                    match self
                        .backend()
                        .give_back(self.queue(), &consumer, chunk)
                        .await
                    {
                        Ok(n) => {
                            bump(&self.shared.stats.given_back, n as u64);
                            debug!(queue = %self.queue(), given_back = n, "curlyq gave back unstarted jobs");
                            break;
                        }
                        Err(e) if tries < 3 => {
                            tries += 1;
                            warn!(error = %e, attempt = tries, "curlyq give back failed; retrying");
                            self.sleep(backoff(tries, Duration::from_secs(2))).await;
                        }
                        Err(e) => {
                            warn!(error = %e, jobs = chunk.len(),
                                "curlyq could not give jobs back; the custodian will requeue them once this consumer's heartbeat expires");
                            break;
                        }
                    }
                }
            }
        }
    }

    // ----- processor -----

    async fn worker(self: Arc<Self>, handler: DynHandler) {
        loop {
            // An idle handler is room for one more job: tell the poller.
            self.idle.fetch_add(1, Ordering::AcqRel);
            self.space.notify(1);
            let received = until(self.stopping.wait(), self.rx.recv()).await;
            self.idle.fetch_sub(1, Ordering::AcqRel);
            let delivery = match received {
                Some(Ok(d)) => d,
                _ => return,
            };
            if self.stopping.is_set() {
                lock(&self.leftovers).push(delivery);
                return;
            }
            if self.may_be_reaped() {
                self.confirm_registration().await;
            }
            if delivery.lease.0.reaped.load(Ordering::Acquire) {
                // Taken before this consumer was reaped: a custodian has handed the job
                // on (or killed it), so running it here would only run it twice.
                bump(&self.shared.stats.not_owned, 1);
                warn!(queue = %self.queue(), job_id = %delivery.taken.id,
                    "curlyq skipped a job taken before this consumer was reaped; it was handed on");
                continue;
            }
            self.process(delivery, &handler).await;
        }
    }

    async fn process(&self, delivery: Delivery, handler: &DynHandler) {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (handle, registration) = AbortHandle::new_pair();
        lock(&self.running).insert(token, handle);
        let Delivery { lease, taken } = delivery;
        let id = taken.id.clone();
        let execution = self.execute(lease.consumer(), taken, handler);
        let result = Abortable::new(execution, registration).await;
        lock(&self.running).remove(&token);
        if result.is_err() {
            // Cancelled at the end of the grace period: give the job back without
            // counting an attempt.
            self.give_back(vec![Delivery {
                lease,
                taken: TakenJob { id, data: None },
            }])
            .await;
        }
    }

    async fn execute(&self, consumer: &ConsumerId, taken: TakenJob, handler: &DynHandler) {
        let TakenJob { id, data } = taken;
        let job = match data.as_deref().map(Job::decode) {
            None => {
                let reason = "job data missing: the ID was in the active list but the data hash has no field for it".to_string();
                warn!(queue = %self.queue(), job_id = %id, "{reason}");
                let kill = KillJob {
                    id,
                    data: None,
                    reason,
                };
                return self.finish(consumer, Outcome::Kill(kill)).await;
            }
            Some(Err(e)) => {
                let reason = format!("undecodable job data (kept as stored): {e}");
                warn!(queue = %self.queue(), job_id = %id, "{reason}");
                let kill = KillJob {
                    id,
                    data: None,
                    reason,
                };
                return self.finish(consumer, Outcome::Kill(kill)).await;
            }
            Some(Ok(mut job)) => {
                if job.id != id {
                    warn!(queue = %self.queue(), job_id = %id, stored_id = %job.id,
                        "curlyq job's stored ID differs from its key; using the key");
                    job.id = id;
                }
                job
            }
        };
        let span =
            info_span!("job", queue = %self.queue(), job_id = %job.id, attempt = job.attempt);
        // The handler gets the job itself; a failure is rare, so rather than a copy the
        // stored bytes are kept and decoded again for the retry.
        let id = job.id.clone();
        let outcome = run_handler(handler, job).instrument(span.clone()).await;
        let outcome = match outcome {
            Ok(()) => Outcome::Ack(id),
            Err(reason) => {
                let mut next = match data.as_deref().map(Job::decode) {
                    Some(Ok(job)) => job,
                    // Decoded once already, so this cannot happen; kill rather than panic.
                    _ => {
                        let kill = KillJob {
                            id,
                            data: None,
                            reason,
                        };
                        return self.finish(consumer, Outcome::Kill(kill)).await;
                    }
                };
                next.id = id;
                let attempt = next.attempt;
                next.attempt = attempt.saturating_add(1);
                if attempt < self.opts().job_max_attempts {
                    let delay = backoff(attempt, self.opts().job_max_backoff);
                    span.in_scope(|| debug!(error = %reason, retry_in = ?delay, "curlyq job failed; retrying"));
                    Outcome::Retry(RetryJob {
                        data: next.encode(),
                        id: next.id,
                        at: self.now() + delay.as_secs_f64(),
                    })
                } else {
                    span.in_scope(
                        || warn!(error = %reason, "curlyq job failed for the last time; killed"),
                    );
                    Outcome::Kill(KillJob {
                        data: Some(next.encode()),
                        id: next.id,
                        reason,
                    })
                }
            }
        };
        self.finish(consumer, outcome).instrument(span).await;
    }

    /// Hands a job's outcome to the flusher and waits until it is recorded (or given
    /// up after a fatal error), so that a handler slot stays taken until then.
    async fn finish(&self, consumer: &ConsumerId, outcome: Outcome) {
        let (recorded, done) = oneshot::channel();
        let submitted = Submitted {
            consumer: consumer.clone(),
            outcome,
            recorded,
        };
        // The channel closes only once every worker has returned.
        if self.outcomes_tx.send(submitted).await.is_ok() {
            let _ = done.await;
        }
    }

    // ----- flusher (the processor's outcome recording) -----

    /// Records outcomes in batches: whatever finished while the previous batch was being
    /// written goes in the next one (a group commit). Nothing waits for a timer, so a
    /// lone outcome is written at once; under load a flush carries many.
    async fn flusher_loop(self: Arc<Self>) {
        let o = self.opts();
        let mut bo = LoopBackoff::new(
            LoopName::Processor,
            o.processor_max_attempts,
            o.processor_max_backoff,
        );
        while let Ok(first) = self.outcomes_rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < OUTCOME_BATCH {
                match self.outcomes_rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            self.flush(batch, &mut bo).await;
        }
    }

    /// Writes one batch: one call per kind and consumer ID, concurrently, each retried
    /// with backoff (every operation is idempotent: it acts only on jobs still owned).
    async fn flush(&self, batch: Vec<Submitted>, bo: &mut LoopBackoff) {
        let mut groups: Vec<OutcomeGroup> = Vec::new();
        for s in batch {
            let kind = s.outcome.kind();
            match groups
                .iter_mut()
                .find(|g| g.kind == kind && g.consumer == s.consumer)
            {
                Some(g) => g.members.push(s),
                None => groups.push(OutcomeGroup {
                    consumer: s.consumer.clone(),
                    kind,
                    members: vec![s],
                    resent: false,
                }),
            }
        }
        loop {
            let results = futures::future::join_all(groups.iter().map(|g| self.record(g))).await;
            let mut failed = Vec::new();
            let mut error = None;
            for (group, result) in groups.into_iter().zip(results) {
                match result {
                    Ok(owned) => self.recorded(group, &owned),
                    Err(e) => {
                        failed.push(OutcomeGroup {
                            resent: true,
                            ..group
                        });
                        error = Some(e);
                    }
                }
            }
            let Some(err) = error else {
                bo.ok();
                return;
            };
            groups = failed;
            let delay = match bo.failed(err) {
                Ok(d) => d,
                Err(fatal) => return self.abort(fatal),
            };
            // After a fatal error elsewhere the consumer is going away: stop retrying
            // and leave the jobs in flight. They are not lost: once this consumer's
            // heartbeat expires a custodian requeues them.
            if until(self.aborted.wait(), self.sleep(delay))
                .await
                .is_none()
            {
                let jobs: usize = groups.iter().map(|g| g.members.len()).sum();
                warn!(queue = %self.queue(), jobs,
                    "curlyq consumer stopping after a fatal error; job outcomes were not recorded and the jobs will run again");
                return;
            }
        }
    }

    /// One backend call for a group; per member, whether the job was still owned.
    async fn record(&self, g: &OutcomeGroup) -> Result<Vec<bool>, BackendError> {
        let (queue, consumer) = (self.queue(), &g.consumer);
        match g.kind {
            OutcomeKind::Ack => {
                let ids = g.picked(|o| match o {
                    Outcome::Ack(id) => Some(id),
                    _ => None,
                });
                self.backend().ack(queue, consumer, &ids).await
            }
            OutcomeKind::Retry => {
                let jobs = g.picked(|o| match o {
                    Outcome::Retry(job) => Some(job),
                    _ => None,
                });
                self.backend().retry(queue, consumer, &jobs).await
            }
            OutcomeKind::Kill => {
                let jobs = g.picked(|o| match o {
                    Outcome::Kill(job) => Some(job),
                    _ => None,
                });
                let now = self.now();
                self.backend().kill(queue, consumer, &jobs, now).await
            }
        }
    }

    /// Counts a recorded group and releases its workers.
    fn recorded(&self, group: OutcomeGroup, owned: &[bool]) {
        let stats = &self.shared.stats;
        let counter = match group.kind {
            OutcomeKind::Ack => &stats.succeeded,
            OutcomeKind::Retry => &stats.retried,
            OutcomeKind::Kill => &stats.killed,
        };
        let n = group.members.len();
        let mine = owned.iter().take(n).filter(|o| **o).count();
        bump(counter, mine as u64);
        if mine < n {
            bump(&stats.not_owned, (n - mine) as u64);
            if group.resent {
                info!(queue = %self.queue(), consumer = %group.consumer, jobs = n - mine,
                    "curlyq job outcome found already settled: most likely an earlier attempt landed and only its reply was lost (else the consumer was reaped and the job may run again)");
            } else {
                warn!(queue = %self.queue(), consumer = %group.consumer, jobs = n - mine,
                    "curlyq job outcome ignored: the job is no longer owned by this consumer (it was reaped; the job may run again)");
            }
        }
        if group.kind == OutcomeKind::Retry && mine > 0 {
            // A retry may be due before the scheduler's next wake-up.
            self.nudge.notify(1);
        }
        for m in group.members {
            let _ = m.recorded.send(());
        }
    }
}

/// Runs the handler, turning an error or a panic into a reason string.
async fn run_handler(handler: &DynHandler, job: Job) -> Result<(), String> {
    let fut = match std::panic::catch_unwind(AssertUnwindSafe(|| handler(job))) {
        Ok(fut) => fut,
        Err(panic) => return Err(format!("handler panicked: {}", panic_message(&*panic))),
    };
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("handler error: {e}")),
        Err(panic) => Err(format!("handler panicked: {}", panic_message(&*panic))),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_string()
    }
}
