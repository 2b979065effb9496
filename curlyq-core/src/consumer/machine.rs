//! [`ConsumerCore`]: the five loops of a consumer as one state machine, with no I/O, no
//! clock and no runtime. It is fed [`Input`]s with the time they happened, asks for
//! work through [`Command`]s, and says when it next needs waking.
//!
//! This file owns the core's state, its entry points and its start-up; `calls.rs` the
//! bookkeeping of backend calls; each loop's decisions live in the file named for it
//! (`heartbeat.rs`, `scheduler.rs`, `custodian.rs`, `poller.rs`, `jobs.rs`,
//! `outcomes.rs`, `shutdown.rs`).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime};

use rand::rngs::StdRng;
use rand::SeedableRng;
use tracing::{error, info};

use crate::backend::{ConsumerId, QueueName, Registration};
use crate::error::{BackendError, ConfigError, ConsumeError};
use crate::options::ConsumerOptions;
use crate::runtime::unix_seconds;

use super::calls::Purpose;
use super::custodian::Custodian;
use super::heartbeat::Heartbeat;
use super::identity::Identities;
use super::jobs::Jobs;
use super::outcomes::Outcomes;
use super::policy::consumer_expiry;
use super::poller::Poller;
use super::protocol::{BackendCall, CallId, Command, Input, Reply};
use super::scheduler::Scheduler;
use super::shutdown::Stopping;
use super::stats::ConsumerStats;

/// The consumer's five loops (heartbeat, scheduler, custodian, poller, processor) as a
/// pure state machine.
///
/// Feed it with [`handle`](Self::handle) (each [`Input`] with the time it happened),
/// carry out what [`poll_command`](Self::poll_command) returns until it returns `None`,
/// and call `handle(now, Input::Timeout)` at [`poll_timeout`](Self::poll_timeout). It
/// never reads a clock, never waits and never draws from a global random source: the
/// backoff jitter and fresh consumer IDs come from the seed it was made with, so a run is
/// exactly reproducible. [`Consumer`](crate::Consumer) drives one with an async driver;
/// the testkit's simulator drives several with simulated time.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use curlyq_core::consumer::{BackendCall, Command, ConsumerCore, Input, Reply};
/// use curlyq_core::{ConsumerOptions, QueueName};
///
/// let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
/// let queue = QueueName::new("emails").unwrap();
/// let mut core = ConsumerCore::new(queue, ConsumerOptions::default(), 42, t0).unwrap();
/// // First it joins the queue.
/// let Some(Command::Call { id, call: BackendCall::Register { .. } }) = core.poll_command()
/// else { panic!("expected the join") };
/// core.handle(t0, Input::Reply { call: id, result: Ok(Reply::Registered(true)) });
/// // Then the loops start: the settings check, the scheduler, the custodian, a take.
/// let mut calls = Vec::new();
/// while let Some(Command::Call { call, .. }) = core.poll_command() {
///     calls.push(call);
/// }
/// assert!(calls.iter().any(|c| matches!(c, BackendCall::Take { max: 15, .. })));
/// // The heartbeat is due one interval after the start.
/// assert!(core.poll_timeout().unwrap() <= t0 + Duration::from_secs(60));
/// ```
#[derive(Debug)]
pub struct ConsumerCore {
    pub(super) queue: QueueName,
    pub(super) opts: ConsumerOptions,
    pub(super) rng: StdRng,
    /// The time of the input being handled.
    pub(super) now: SystemTime,
    pub(super) phase: Phase,
    pub(super) ids: Identities,
    pub(super) stats: ConsumerStats,
    /// What each call in flight is for.
    pub(super) calls: HashMap<CallId, Purpose>,
    pub(super) next_call: u64,
    pub(super) next_run: u64,
    pub(super) out: VecDeque<Command>,
    pub(super) heartbeat: Heartbeat,
    pub(super) scheduler: Scheduler,
    pub(super) custodian: Custodian,
    pub(super) poller: Poller,
    pub(super) jobs: Jobs,
    pub(super) outcomes: Outcomes,
    /// Set once shutdown began (asked for, or after a fatal error).
    pub(super) stopping: Option<Stopping>,
    /// The first fatal error, returned when the consumer has stopped.
    pub(super) fatal: Option<ConsumeError>,
    /// A join under a fresh ID (after a reaping or a lost take) is in flight.
    pub(super) joining: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// The first registration is in flight.
    Starting {
        shutdown_asked: bool,
    },
    Running,
    Finished,
}

impl ConsumerCore {
    /// A core for `queue` with checked `options`, its randomness seeded by `seed`; `now`
    /// is the time of its first registration, which is its first command.
    ///
    /// # Errors
    /// The first option out of range.
    pub fn new(
        queue: QueueName,
        options: ConsumerOptions,
        seed: u64,
        now: SystemTime,
    ) -> Result<Self, ConfigError> {
        options.validate()?;
        Ok(Self::from_checked(queue, options, seed, now))
    }

    /// [`new`](Self::new) with options the builder already checked.
    pub(crate) fn from_checked(
        queue: QueueName,
        options: ConsumerOptions,
        seed: u64,
        now: SystemTime,
    ) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let first = ConsumerId::random_from(&mut rng);
        let expiry = consumer_expiry(&options);
        let mut core = ConsumerCore {
            heartbeat: Heartbeat::new(&options),
            scheduler: Scheduler::new(&options),
            custodian: Custodian::new(&options),
            poller: Poller::new(&options),
            jobs: Jobs::default(),
            outcomes: Outcomes::new(&options),
            queue,
            opts: options,
            rng,
            now,
            phase: Phase::Starting {
                shutdown_asked: false,
            },
            ids: Identities::new(first.clone(), expiry),
            stats: ConsumerStats::default(),
            calls: HashMap::new(),
            next_call: 0,
            next_run: 0,
            out: VecDeque::new(),
            stopping: None,
            fatal: None,
            joining: false,
        };
        core.register(first, Registration::Join, |_, sent| Purpose::Start { sent });
        core
    }

    /// Feeds what happened at `now` (a time earlier than one already seen counts as
    /// that one: the core's time never goes back).
    pub fn handle(&mut self, now: SystemTime, input: Input) {
        self.handle_all(now, [input]);
    }

    /// Feeds several things that happened by `now`, in order, and only then decides what
    /// to do: what a driver found ready together is acted on together (handlers that
    /// finished together share one outcome call, and replies that came together free
    /// their slots before the next take is sized).
    ///
    /// ```
    /// use std::time::SystemTime;
    /// use curlyq_core::consumer::{ConsumerCore, Input};
    /// use curlyq_core::{ConsumerOptions, QueueName};
    ///
    /// let queue = QueueName::new("emails")?;
    /// let now = SystemTime::now();
    /// let mut core = ConsumerCore::new(queue, ConsumerOptions::default(), 7, now)?;
    /// core.handle_all(now, [Input::Timeout, Input::Timeout]);
    /// assert!(core.poll_command().is_some(), "it asks to register first");
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// ```
    pub fn handle_all(&mut self, now: SystemTime, inputs: impl IntoIterator<Item = Input>) {
        if now > self.now {
            self.now = now;
        }
        for input in inputs {
            self.apply(input);
        }
        self.drive();
    }

    fn apply(&mut self, input: Input) {
        match input {
            Input::Timeout => {}
            Input::Reply { call, result } => {
                // A reply to a call the core no longer waits for (a cancelled wait) is
                // dropped.
                if let Some(purpose) = self.calls.remove(&call) {
                    self.on_reply(purpose, result);
                }
            }
            Input::HandlerFinished { run, result } => self.on_handler_finished(run, result),
            Input::Shutdown => self.begin_shutdown(),
            Input::SetTimeout { run, timeout } => self.on_set_timeout(run, timeout),
        }
    }

    /// The next thing to do, if any. Call it until it returns `None` after every
    /// [`handle`](Self::handle).
    pub fn poll_command(&mut self) -> Option<Command> {
        self.out.pop_front()
    }

    /// When to call [`handle`](Self::handle) with [`Input::Timeout`] at the latest, if
    /// nothing else happens first (`None`: only inputs move the core on).
    pub fn poll_timeout(&self) -> Option<SystemTime> {
        if self.phase != Phase::Running {
            return None;
        }
        [
            self.heartbeat.next_at,
            self.scheduler.next_at,
            self.custodian.next_at,
            self.poller.next_at,
            self.outcomes.retry_at,
            self.jobs.next_timer(),
            self.stopping.as_ref().and_then(Stopping::next_timer),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The consumer ID it is registered under (`None` before the first registration
    /// succeeded and once it stopped).
    pub fn consumer_id(&self) -> Option<&ConsumerId> {
        (self.phase == Phase::Running).then(|| self.ids.current())
    }

    /// What it did so far.
    pub fn stats(&self) -> ConsumerStats {
        self.stats
    }

    /// Whether it has stopped (it sent [`Command::Finished`]).
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    /// How many handler runs are in progress (started, not yet finished or cancelled).
    pub fn running_handlers(&self) -> usize {
        self.jobs.running()
    }

    // ----- shared helpers of the loop files -----

    pub(super) fn unix_now(&self) -> f64 {
        unix_seconds(self.now)
    }

    /// Whether a timer set for `at` has come.
    pub(super) fn due(&self, at: Option<SystemTime>) -> bool {
        at.is_some_and(|at| at <= self.now)
    }

    /// The time `delay` from now (`None` if it cannot be represented: never).
    pub(super) fn after(&self, delay: Duration) -> Option<SystemTime> {
        self.now.checked_add(delay)
    }

    pub(super) fn command(&mut self, command: Command) {
        self.out.push_back(command);
    }

    pub(super) fn is_stopping(&self) -> bool {
        self.stopping.is_some()
    }

    /// Records the first fatal error and starts shutdown.
    pub(super) fn abort(&mut self, err: ConsumeError) {
        error!(queue = %self.queue, error = %err, "curlyq consumer stopping");
        if self.fatal.is_none() {
            self.fatal = Some(err);
        }
        self.begin_shutdown();
    }

    pub(super) fn on_started(&mut self, sent: f64, result: Result<Reply, BackendError>) {
        let shutdown_asked = match self.phase {
            Phase::Starting { shutdown_asked } => shutdown_asked,
            _ => return,
        };
        match result {
            Ok(_) => {
                self.phase = Phase::Running;
                self.ids.confirmed(sent);
                info!(queue = %self.queue, consumer = %self.ids.current(), "curlyq consumer started");
                self.call(BackendCall::SettingsWarnings, Purpose::Warnings);
                let now = self.now;
                self.heartbeat.start(now, &self.opts);
                self.scheduler.next_at = Some(now);
                self.custodian.next_at = Some(now);
                self.poller.next_at = Some(now);
                if shutdown_asked {
                    self.begin_shutdown();
                }
            }
            Err(e) => self.finish(Err(ConsumeError::Startup(e))),
        }
    }

    /// Starts every step that is due, in a fixed order.
    fn drive(&mut self) {
        if self.phase != Phase::Running {
            return;
        }
        self.drive_heartbeat();
        self.drive_scheduler();
        self.drive_custodian();
        self.expire_runs();
        self.drive_jobs();
        // Outcomes before takes: a job's ack is then not queued behind a take.
        self.drive_outcomes();
        self.drive_poller();
        self.drive_shutdown();
    }

    /// Asks for the last command and stops.
    pub(super) fn finish(&mut self, result: Result<(), ConsumeError>) {
        self.phase = Phase::Finished;
        self.calls.clear();
        self.out.push_back(Command::Finished(result));
    }

    /// Marks a shutdown asked for before the consumer started.
    pub(super) fn ask_shutdown_before_start(&mut self) -> bool {
        if let Phase::Starting { shutdown_asked } = &mut self.phase {
            *shutdown_asked = true;
            return true;
        }
        false
    }
}
