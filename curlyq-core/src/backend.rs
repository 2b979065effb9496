//! The [`QueueBackend`] trait: one method per atomic operation of the wire contract.
//!
//! Every method is one atomic step on the store (one Lua script call on Redis). Times are
//! passed in by the caller as Unix seconds (`f64`, fractions allowed) and never read
//! inside the store. Each method's `# Behavior` section is the contract that the testkit's
//! conformance suite checks.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::BackendError;
use crate::snapshot::QueueSnapshot;

/// Most jobs one script call handles. Backends split larger batches into chunks of at
/// most this many (Lua's `unpack` fails near 8,000 elements); consumer batch options are
/// capped at it.
pub const MAX_BATCH: usize = 1000;

/// Most fields of `Q:errors` (the last errors of retried jobs) one
/// [`trim_dead`](QueueBackend::trim_dead) call examines when it looks for entries whose
/// job is gone: with at most this many it examines all of them, with more it goes on
/// from where the previous call stopped.
pub const ERRORS_SWEEP: usize = 1000;

/// A validated queue name (not empty). Every key of the queue starts with it. Cloning
/// is cheap (the name is shared, not copied).
///
/// ```
/// use curlyq_core::QueueName;
/// assert!(QueueName::new("{emails}").is_ok());
/// assert!(QueueName::new("").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueName(std::sync::Arc<str>);

impl QueueName {
    /// Checks and wraps a queue name.
    pub fn new(name: impl Into<String>) -> Result<Self, crate::ConfigError> {
        let name = name.into();
        if name.is_empty() {
            return Err(crate::ConfigError::EmptyQueueName);
        }
        Ok(QueueName(name.into()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A consumer's identity (a random UUIDv4). A consumer that finds it was reaped takes a
/// fresh one. Cloning is cheap (the ID is shared, not copied).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConsumerId(std::sync::Arc<str>);

impl ConsumerId {
    /// A fresh random ID.
    pub fn random() -> Self {
        ConsumerId(crate::job::random_uuid().into())
    }

    /// A fresh random ID drawn from `rng` (a seeded consumer core makes the same IDs
    /// every run).
    pub fn random_from(rng: &mut impl rand::Rng) -> Self {
        ConsumerId(crate::job::uuid_from(rng.random()).into())
    }

    /// Wraps an existing ID (tests and tools).
    pub fn from_string(id: impl Into<String>) -> Self {
        ConsumerId(id.into().into())
    }

    /// The ID as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ConsumerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for ConsumerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A job ready to store: its ID and its encoding ([`Job::encode`](crate::Job::encode)).
#[derive(Clone, PartialEq, Eq)]
pub struct EncodedJob {
    /// The job's ID (never empty).
    pub id: String,
    /// The encoded job.
    pub data: Vec<u8>,
}

impl fmt::Debug for EncodedJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncodedJob")
            .field("id", &self.id)
            .field("len", &self.data.len())
            .finish()
    }
}

/// A job to schedule at a time.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledJob {
    /// The job.
    pub job: EncodedJob,
    /// When it becomes due, Unix seconds.
    pub at: f64,
}

/// A job taken by a consumer: its ID and its stored bytes (`None` when the data field is
/// missing; the consumer then kills it with a reason).
#[derive(Clone, PartialEq, Eq)]
pub struct TakenJob {
    /// The ID as found in the active list.
    pub id: String,
    /// The stored encoding, if any.
    pub data: Option<Vec<u8>>,
    /// The trace context its producer stored with it (`Q:trace`), when the take asked
    /// for it ([`QueueBackend::take_traced`]); `None` otherwise.
    pub trace: Option<String>,
}

impl TakenJob {
    /// A taken job without a trace context.
    ///
    /// ```
    /// let job = curlyq_core::TakenJob::new("a", Some(b"x".to_vec()));
    /// assert_eq!((job.id.as_str(), job.trace), ("a", None));
    /// ```
    pub fn new(id: impl Into<String>, data: Option<Vec<u8>>) -> Self {
        TakenJob {
            id: id.into(),
            data,
            trace: None,
        }
    }
}

impl fmt::Debug for TakenJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TakenJob")
            .field("id", &self.id)
            .field("len", &self.data.as_ref().map(Vec::len))
            .field("trace", &self.trace)
            .finish()
    }
}

/// What a take saw of the scheduled set, in the same atomic step (see
/// [`QueueBackend::take_and_peek`]).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum ScheduledPeek {
    /// The backend did not look (the provided `take_and_peek` never does).
    #[default]
    Unknown,
    /// Nothing was scheduled.
    Empty,
    /// The earliest scheduled job's score (Unix seconds; it may be in the past, when a
    /// producer that sets no signal, such as Go CurlyQ's, scheduled it).
    Earliest(f64),
}

impl From<Option<f64>> for ScheduledPeek {
    /// The peek of a backend that looked: the lowest score, or `None` for an empty set.
    fn from(earliest: Option<f64>) -> Self {
        earliest.map_or(ScheduledPeek::Empty, ScheduledPeek::Earliest)
    }
}

/// What [`QueueBackend::take_and_peek`] answered: the jobs taken, and when the earliest
/// scheduled job is due.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TakeReport {
    /// The jobs taken, in order (as [`QueueBackend::take`] returns them).
    pub jobs: Vec<TakenJob>,
    /// The scheduled set's earliest score, when the backend looked.
    pub scheduled: ScheduledPeek,
}

impl From<Vec<TakenJob>> for TakeReport {
    /// Jobs taken without a look at the scheduled set.
    fn from(jobs: Vec<TakenJob>) -> Self {
        TakeReport {
            jobs,
            scheduled: ScheduledPeek::Unknown,
        }
    }
}

/// A failed job to retry later.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryJob {
    /// The job's ID.
    pub id: String,
    /// The job encoded with its incremented attempt.
    pub data: Vec<u8>,
    /// When to run it again, Unix seconds.
    pub at: f64,
    /// Why this run failed, kept in `Q:errors` for operators until the job is acked or
    /// killed (where the dead reason takes over); `None` keeps nothing (and clears an
    /// earlier one).
    pub error: Option<String>,
}

/// A job to move to the dead set.
#[derive(Debug, Clone, PartialEq)]
pub struct KillJob {
    /// The job's ID.
    pub id: String,
    /// New data to store (the job with its incremented attempt), or `None` to keep the
    /// stored bytes as they are (undecodable or missing data).
    pub data: Option<Vec<u8>>,
    /// Why it died, kept beside the dead set for operators.
    pub reason: String,
}

/// How a consumer registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Registration {
    /// First registration of a (new) consumer ID: always adds it.
    Join,
    /// A heartbeat: refreshes the score only if the consumer is still registered.
    Heartbeat,
}

/// What [`QueueBackend::enqueue_due`] did.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DueReport {
    /// How many jobs moved to the active list.
    pub moved: usize,
    /// The score of the earliest job still scheduled, if any.
    pub next_due: Option<f64>,
}

/// The parameters of one orphan sweep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OrphanSweep {
    /// Consumers whose last heartbeat is at or before this time are expired.
    pub expired_before: f64,
    /// Most jobs to move (or kill) in this sweep.
    pub max_jobs: usize,
    /// A job found orphaned this many times is killed instead of requeued (0 = never).
    pub max_orphan_requeues: u32,
    /// The current time (the kill time of crash-looping jobs).
    pub now: f64,
}

/// What one orphan sweep did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OrphanReport {
    /// Jobs moved back to the active list.
    pub requeued: usize,
    /// Jobs killed because they were orphaned too often (they crash their process).
    pub killed: usize,
    /// Expired consumers removed from the consumer set.
    pub consumers_removed: usize,
}

/// The bounds of the dead set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeadTrim {
    /// Dead jobs killed before this time are removed.
    pub killed_before: f64,
    /// At most this many dead jobs are kept (the oldest go first). Also the number of
    /// last errors (`Q:errors`) beyond which the call looks for entries whose job is gone.
    pub keep_at_most: usize,
    /// Most jobs to remove in this call.
    pub max_jobs: usize,
}

/// A dedicated handle for the poller's blocking wait (on Redis, its own connection, so
/// that a blocking command never stalls other operations).
#[async_trait]
pub trait Waiter: Send + Sync {
    /// Blocks until the queue's signal is set or `timeout` passes, without clearing the
    /// signal. Returns whether the signal was seen.
    ///
    /// # Behavior
    /// - Returns `true` at once when the signal is already set.
    /// - May return `false` early (spuriously); the caller then tries a take anyway.
    async fn wait(&mut self, timeout: Duration) -> Result<bool, BackendError>;
}

/// A store for queues: the eleven atomic operations of the wire contract (see
/// `spec/wire.md`), plus dead-set trimming (the twelfth there, curlyq's own) and
/// unregistration.
///
/// Implement it to run curlyq on another store; prove the implementation with
/// `curlyq-testkit`. Every method is atomic: it happens entirely or not at all. Batch
/// methods may be carried out in several atomic steps of at most [`MAX_BATCH`] jobs
/// each, in order.
#[async_trait]
pub trait QueueBackend: Send + Sync + 'static {
    /// Pushes jobs to the tail of the active list, in order, and sets the signal.
    ///
    /// # Behavior
    /// - For each job returns whether it was new. A job whose ID already exists (active,
    ///   scheduled, in flight or dead) is left untouched and reported `false`.
    /// - Two jobs with the same ID in one batch: the first wins.
    async fn push(&self, queue: &QueueName, jobs: &[EncodedJob])
        -> Result<Vec<bool>, BackendError>;

    /// Stores jobs and adds them to the scheduled set at their times; sets the signal if
    /// any was new, so that idle consumers wake and their schedulers see the new due time
    /// (Go CurlyQ sets no signal here; an extra wake-up is harmless to it).
    ///
    /// # Behavior
    /// - Same deduplication as [`push`](Self::push).
    async fn schedule(
        &self,
        queue: &QueueName,
        jobs: &[ScheduledJob],
    ) -> Result<Vec<bool>, BackendError>;

    /// Registers a consumer with its heartbeat time `now`.
    ///
    /// # Behavior
    /// - [`Registration::Join`] always adds (or refreshes) the consumer; returns `true`.
    /// - [`Registration::Heartbeat`] refreshes the score only if the consumer is still
    ///   registered and returns `true`; if it was reaped, changes nothing and returns
    ///   `false` (the consumer must rejoin under a new ID).
    async fn register(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        now: f64,
        mode: Registration,
    ) -> Result<bool, BackendError>;

    /// Moves up to `max` scheduled jobs with score <= `now` (lowest first, any score
    /// including negative ones) to the tail of the active list; sets the signal if any
    /// moved.
    ///
    /// # Behavior
    /// - Removes exactly the members it moved.
    /// - Reports the earliest score still scheduled.
    async fn enqueue_due(
        &self,
        queue: &QueueName,
        now: f64,
        max: usize,
    ) -> Result<DueReport, BackendError>;

    /// Moves up to `max` IDs from the head of the active list into the consumer's
    /// in-flight set and returns them with their stored bytes.
    ///
    /// # Behavior
    /// - Fails with [`BackendError::NotRegistered`] (taking nothing) if the consumer is
    ///   not registered.
    /// - A taken ID whose data is missing is still taken, with `data: None`.
    /// - If fewer than `max` were available, clears the signal.
    /// - A taken job that cannot run under a string ID (bytes that are not UTF-8, which
    ///   only a foreign producer writes) is not returned: it is moved to the dead set
    ///   with time of death `now` and a reason, its data kept as stored. Backends whose
    ///   IDs are always strings never see one.
    async fn take(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        max: usize,
        now: f64,
    ) -> Result<Vec<TakenJob>, BackendError>;

    /// [`take`](Self::take), and in the same atomic step a look at the scheduled set: the
    /// consumer's poller takes through this, so that a job scheduled without a signal
    /// (Go CurlyQ's producer sets none) is seen at the next take, and the scheduler
    /// wakes at its due time rather than at its next poll.
    ///
    /// # Behavior
    /// - Takes exactly as [`take`](Self::take) does.
    /// - `scheduled` is [`ScheduledPeek::Empty`] when nothing is scheduled, else
    ///   [`ScheduledPeek::Earliest`] with the lowest score in the scheduled set (read
    ///   after the take, in the same atomic step; taking never changes it).
    /// - The provided implementation calls [`take`](Self::take) and answers
    ///   [`ScheduledPeek::Unknown`]; the consumer then relies on its scheduler's poll
    ///   alone, as before. Override it when the backend can read the set in the same
    ///   call (it costs a consumer nothing extra: no further call is made).
    ///
    /// ```
    /// use curlyq_core::{MemoryBackend, QueueBackend, QueueName, ScheduledPeek, ConsumerId};
    /// use curlyq_core::{Registration, ScheduledJob, EncodedJob};
    /// # futures::executor::block_on(async {
    /// let backend = MemoryBackend::new();
    /// let queue = QueueName::new("emails")?;
    /// let consumer = ConsumerId::from_string("c1");
    /// backend.register(&queue, &consumer, 1.0, Registration::Join).await?;
    /// let job = EncodedJob { id: "later".into(), data: b"x".to_vec() };
    /// backend.schedule(&queue, &[ScheduledJob { job, at: 60.0 }]).await?;
    /// let report = backend.take_and_peek(&queue, &consumer, 10, 1.0).await?;
    /// assert!(report.jobs.is_empty());
    /// assert_eq!(report.scheduled, ScheduledPeek::Earliest(60.0));
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    async fn take_and_peek(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        max: usize,
        now: f64,
    ) -> Result<TakeReport, BackendError> {
        Ok(self.take(queue, consumer, max, now).await?.into())
    }

    /// [`push`](Self::push), storing `trace` (an encoded trace context, opaque to the
    /// backend: the producer's W3C `traceparent` / `tracestate`, feature `opentelemetry`)
    /// for each new job, in the same atomic step, in `Q:trace` (field = job ID).
    ///
    /// # Behavior
    /// - Pushes exactly as [`push`](Self::push) does, with the same reply.
    /// - Each new job's trace field is set to `trace`, or removed when `trace` is `None`
    ///   (a field a Go CurlyQ ack left behind for a reused ID must not pass for this
    ///   job's); a job that already existed is left untouched, its trace included.
    /// - The field stays while the job is scheduled, active, in flight, retried or dead;
    ///   [`ack`](Self::ack), [`trim_dead`](Self::trim_dead),
    ///   [`delete_jobs`](Self::delete_jobs) and [`purge`](Self::purge) remove it with the
    ///   job.
    /// - The provided implementation drops `trace` and calls [`push`](Self::push).
    ///
    /// ```
    /// use curlyq_core::{ConsumerId, EncodedJob, MemoryBackend, QueueBackend, QueueName, Registration};
    /// # futures::executor::block_on(async {
    /// let backend = MemoryBackend::new();
    /// let queue = QueueName::new("emails")?;
    /// let job = EncodedJob { id: "a".into(), data: b"x".to_vec() };
    /// backend.push_traced(&queue, &[job], Some("{\"traceparent\":\"...\"}")).await?;
    /// let consumer = ConsumerId::from_string("c1");
    /// backend.register(&queue, &consumer, 1.0, Registration::Join).await?;
    /// let taken = backend.take_traced(&queue, &consumer, 1, 1.0).await?;
    /// assert_eq!(taken.jobs[0].trace.as_deref(), Some("{\"traceparent\":\"...\"}"));
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    async fn push_traced(
        &self,
        queue: &QueueName,
        jobs: &[EncodedJob],
        trace: Option<&str>,
    ) -> Result<Vec<bool>, BackendError> {
        let _ = trace;
        self.push(queue, jobs).await
    }

    /// [`schedule`](Self::schedule), storing `trace` for each new job as
    /// [`push_traced`](Self::push_traced) does.
    ///
    /// # Behavior
    /// - Schedules exactly as [`schedule`](Self::schedule) does; the trace field as by
    ///   [`push_traced`](Self::push_traced).
    /// - The provided implementation drops `trace` and calls [`schedule`](Self::schedule).
    async fn schedule_traced(
        &self,
        queue: &QueueName,
        jobs: &[ScheduledJob],
        trace: Option<&str>,
    ) -> Result<Vec<bool>, BackendError> {
        let _ = trace;
        self.schedule(queue, jobs).await
    }

    /// [`take_and_peek`](Self::take_and_peek), and in the same atomic step each taken
    /// job's trace field ([`TakenJob::trace`]). The consumer takes through this with the
    /// feature `opentelemetry` (reading the fields costs the take one more hash read per
    /// chunk), else through [`take_and_peek`](Self::take_and_peek).
    ///
    /// # Behavior
    /// - Takes and peeks exactly as [`take_and_peek`](Self::take_and_peek) does.
    /// - Each taken job carries the trace stored for its ID, `None` when there is none.
    /// - The provided implementation calls [`take_and_peek`](Self::take_and_peek) (no
    ///   traces).
    async fn take_traced(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        max: usize,
        now: f64,
    ) -> Result<TakeReport, BackendError> {
        self.take_and_peek(queue, consumer, max, now).await
    }

    /// A new dedicated handle for blocking waits on the queue's signal.
    async fn waiter(&self, queue: &QueueName) -> Result<Box<dyn Waiter>, BackendError>;

    /// Acknowledges finished jobs: for each ID in the consumer's in-flight set, removes it
    /// there and deletes its data.
    ///
    /// # Behavior
    /// - Returns, per ID, whether it was owned. A job not owned is left untouched.
    /// - An owned job's last error (see [`retry`](Self::retry)) is removed with it.
    /// - Counts the owned jobs as processed, in the total and in `now`'s minute
    ///   ([`stats`](Self::stats)).
    async fn ack(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        ids: &[String],
        now: f64,
    ) -> Result<Vec<bool>, BackendError>;

    /// Schedules failed jobs for another run: for each owned job, removes it from
    /// in-flight, overwrites its data and adds it to the scheduled set at `at`.
    ///
    /// # Behavior
    /// - Returns, per job, whether it was owned; a job not owned is left untouched.
    /// - For each owned job, stores [`RetryJob::error`] as the job's last error
    ///   ([`QueueSnapshot::errors`]), replacing an earlier one; `None` removes it.
    /// - Counts the owned jobs as processed, failed and retried, in the total and in
    ///   `now`'s minute.
    async fn retry(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        jobs: &[RetryJob],
        now: f64,
    ) -> Result<Vec<bool>, BackendError>;

    /// Moves failed jobs to the dead set: for each owned job, removes it from in-flight,
    /// overwrites its data (when given), records the reason and adds it to the dead set
    /// with score `now`.
    ///
    /// # Behavior
    /// - Returns, per job, whether it was owned; a job not owned is left untouched.
    /// - An owned job's last error is removed: its dead reason takes over.
    /// - Counts the owned jobs as processed, failed and killed, in the total and in
    ///   `now`'s minute.
    async fn kill(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        jobs: &[KillJob],
        now: f64,
    ) -> Result<Vec<bool>, BackendError>;

    /// Gives taken-but-unstarted jobs back: each ID still owned moves from in-flight to
    /// the tail of the active list; sets the signal if any moved. Returns the count.
    async fn give_back(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        ids: &[String],
    ) -> Result<usize, BackendError>;

    /// Recovers the jobs of expired consumers (last heartbeat <= `expired_before`), oldest
    /// consumers first, up to `max_jobs` in total, moving them to the tail of the active
    /// list; removes an expired consumer once its in-flight set is empty; sets the signal
    /// if any moved.
    ///
    /// # Behavior
    /// - Counts each requeue of a job; a job reaching `max_orphan_requeues` goes to the
    ///   dead set with a reason instead (when that option is non-zero), and its last
    ///   error is removed as by [`kill`](Self::kill), and it is counted as by
    ///   [`kill`](Self::kill) in `now`'s minute. A job requeued keeps its last error.
    /// - Never touches a consumer whose heartbeat is after `expired_before`.
    /// - Takes the jobs of one consumer in ascending ID order (byte order) and appends
    ///   them in that order, so that every backend makes the same choice when
    ///   `max_jobs` is smaller than what is orphaned.
    /// - Removes every visited expired consumer whose in-flight set is empty, even once
    ///   `max_jobs` is used up.
    async fn requeue_orphans(
        &self,
        queue: &QueueName,
        sweep: OrphanSweep,
    ) -> Result<OrphanReport, BackendError>;

    /// Removes dead jobs (their data, reason, counters and last error too) killed before
    /// `killed_before`, and the oldest beyond `keep_at_most`, at most `max_jobs` of them.
    /// Returns how many were removed.
    ///
    /// Then it removes last errors that outlived their job. A curlyq consumer removes a
    /// job's last error whenever it finishes the job, but a Go CurlyQ consumer sharing
    /// the queue acks by deleting the data only, and leaves the entry behind.
    ///
    /// # Behavior
    /// - With `max_jobs` 0 it does nothing at all.
    /// - Entries are looked at only while there are more than `keep_at_most` of them (the
    ///   dead set's bound: so many leftovers are tolerated, and a call with fewer costs
    ///   one count).
    /// - Then, with at most [`ERRORS_SWEEP`] entries, every entry whose job has no data
    ///   is removed. With more, at most about [`ERRORS_SWEEP`] entries are examined per
    ///   call, each call going on from where the previous one stopped, so that every
    ///   leftover is removed within about `entries / ERRORS_SWEEP` calls. Which entries
    ///   one such call examines is the backend's choice.
    /// - An entry whose job has data is never removed; the returned count does not
    ///   include the entries removed.
    async fn trim_dead(&self, queue: &QueueName, trim: DeadTrim) -> Result<usize, BackendError>;

    /// Reads the whole state of a queue at one instant (for tests, tools and the
    /// conformance suite; it reads every job, so it is not for hot paths).
    ///
    /// # Behavior
    /// - Atomic: no operation is seen half done.
    /// - In-flight sets are listed for the consumers in the consumer set; empty ones are
    ///   absent.
    async fn snapshot(&self, queue: &QueueName) -> Result<QueueSnapshot, BackendError>;

    /// Removes a consumer from the consumer set if its in-flight set is empty (clean
    /// shutdown). Returns `false` only when the consumer still holds jobs (then nothing
    /// changes); a consumer that was not registered is reported `true`.
    async fn unregister(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
    ) -> Result<bool, BackendError>;

    /// Looks for store settings that put jobs at risk, such as a Redis eviction policy
    /// other than `noeviction` (Redis may then delete queue keys when memory runs
    /// short). Returns one warning per risk, each saying what to change; consumers log
    /// them when they start. The default finds none.
    async fn settings_warnings(&self) -> Result<Vec<String>, BackendError> {
        Ok(Vec::new())
    }

    // ----- Admin operations (for tools: the `curlyq` CLI, dashboards). Each is one atomic
    // step unless said otherwise. The provided implementations answer
    // `BackendError::Unsupported`, so a backend written before them still builds.

    /// The queues of this store: every name `Q` for which one of `Q:data`, `Q:active`,
    /// `Q:scheduled`, `Q:dead` or `Q:consumers` exists with its type (Go CurlyQ's queues
    /// included), sorted.
    ///
    /// # Behavior
    /// - A queue holding any job, dead job or consumer is listed.
    /// - On Redis, found with `SCAN` (never `KEYS`): not atomic, and it costs a pass over
    ///   the whole keyspace, in pages.
    async fn list_queues(&self) -> Result<Vec<QueueName>, BackendError> {
        Err(BackendError::Unsupported("list_queues"))
    }

    /// A queue's sizes, pause state, latency and counters at one instant.
    ///
    /// # Behavior
    /// - `active`, `scheduled`, `dead`, `consumers` are the sizes of those keys;
    ///   `inflight` sums the in-flight sets of the registered consumers.
    /// - `oldest_ready_at` is the head job's ready time as its data says (see
    ///   [`Job::ready_at`](crate::Job::ready_at)), `next_due` the scheduled set's lowest
    ///   score.
    /// - `minutes` holds the last `minutes` minutes up to `now`'s (at most
    ///   [`COUNTER_MINUTES`](crate::admin::COUNTER_MINUTES)), oldest first, one entry
    ///   each; `total` every counted outcome.
    async fn stats(
        &self,
        queue: &QueueName,
        now: f64,
        minutes: usize,
    ) -> Result<crate::admin::QueueStats, BackendError> {
        let _ = (queue, now, minutes);
        Err(BackendError::Unsupported("stats"))
    }

    /// The registered consumers with their in-flight counts.
    ///
    /// # Behavior
    /// - Oldest heartbeat first (ties by ID); the ID without the `Q:inflight:` prefix.
    async fn consumers(
        &self,
        queue: &QueueName,
    ) -> Result<Vec<crate::admin::ConsumerInfo>, BackendError> {
        let _ = queue;
        Err(BackendError::Unsupported("consumers"))
    }

    /// One page of the jobs in a state.
    ///
    /// # Behavior
    /// - Active jobs from the head, scheduled and dead jobs by (score, ID), in-flight jobs
    ///   by (consumer ID, job ID) over the registered consumers.
    /// - Costs O(limit) (plus the offset in the active list, and the in-flight jobs of
    ///   all consumers for that state), whatever the queue's size.
    /// - Each entry carries its score, consumer or position, and what its data says
    ///   (attempt, ready time, sizes, a preview of at most `preview` payload bytes),
    ///   reason, last error and orphan count. A job without data is listed with
    ///   `stored_bytes: None`.
    async fn jobs(
        &self,
        queue: &QueueName,
        page: crate::admin::PageRequest,
    ) -> Result<crate::admin::JobPage, BackendError> {
        let _ = (queue, page);
        Err(BackendError::Unsupported("jobs"))
    }

    /// Finds a job by ID: where it is and its stored bytes; `None` when it has no data
    /// and is in no list or set.
    ///
    /// # Behavior
    /// - O(1) for the data, scheduled, dead and in-flight sets (one look per registered
    ///   consumer); the active list is searched in its first
    ///   [`FIND_ACTIVE_SCAN`](crate::admin::FIND_ACTIVE_SCAN) entries only.
    /// - A job with data found nowhere is [`JobState::Unplaced`](crate::admin::JobState);
    ///   when it is in several places, the first of in flight, scheduled, active, dead.
    async fn find_job(
        &self,
        queue: &QueueName,
        id: &str,
    ) -> Result<Option<crate::admin::JobDetail>, BackendError> {
        let _ = (queue, id);
        Err(BackendError::Unsupported("find_job"))
    }

    /// [`find_job`](Self::find_job) for a page: a job whose stored bytes are more than
    /// `preview` + [`HEAD_EXTRA`](crate::admin::HEAD_EXTRA) comes without `data`, its
    /// summary carrying instead `stored_bytes`, `payload_bytes`, its attempt and ready
    /// time as far as the bytes say, and a `preview` of its first `preview` payload bytes.
    /// A smaller job comes with its `data`, as from `find_job`.
    ///
    /// # Behavior
    /// - The answer's size is bounded by `preview` whatever the job's size: a page over a
    ///   job of 16 MiB does not move 16 MiB (on Redis, the script cuts the bytes before
    ///   replying).
    /// - The default reads the job with `find_job` and cuts it with
    ///   [`cut_detail`](crate::admin::cut_detail).
    async fn find_job_head(
        &self,
        queue: &QueueName,
        id: &str,
        preview: usize,
    ) -> Result<Option<crate::admin::JobDetail>, BackendError> {
        let mut found = self.find_job(queue, id).await?;
        if let Some(detail) = found.as_mut() {
            crate::admin::cut_detail(detail, preview);
        }
        Ok(found)
    }

    /// Moves dead jobs to the tail of the active list (their dead reasons go; data and
    /// attempt are kept) and sets the signal if any moved.
    ///
    /// # Behavior
    /// - [`Selection::Ids`](crate::admin::Selection): each ID in the dead set moves, the
    ///   others are reported skipped; [`Selection::Oldest`](crate::admin::Selection): the
    ///   lowest-scored, at most [`MAX_BATCH`] per call.
    async fn retry_dead(
        &self,
        queue: &QueueName,
        selection: &crate::admin::Selection,
    ) -> Result<crate::admin::ActionReport, BackendError> {
        let _ = (queue, selection);
        Err(BackendError::Unsupported("retry_dead"))
    }

    /// Moves scheduled jobs to the tail of the active list now, whatever their due time,
    /// and sets the signal if any moved.
    ///
    /// # Behavior
    /// - The selection rules of [`retry_dead`](Self::retry_dead), lowest due time first;
    ///   data, attempt and last error are kept.
    async fn run_scheduled(
        &self,
        queue: &QueueName,
        selection: &crate::admin::Selection,
    ) -> Result<crate::admin::ActionReport, BackendError> {
        let _ = (queue, selection);
        Err(BackendError::Unsupported("run_scheduled"))
    }

    /// Deletes jobs by ID in any state but in flight: the references, the data and the
    /// side fields (reason, last error, orphan count).
    ///
    /// # Behavior
    /// - A job held by a registered consumer is not touched (reported `in_flight`).
    /// - An ID with no data and no reference is reported `missing`.
    /// - Removing an ID from the active list costs a pass over it (`LREM`).
    async fn delete_jobs(
        &self,
        queue: &QueueName,
        ids: &[String],
    ) -> Result<crate::admin::DeleteReport, BackendError> {
        let _ = (queue, ids);
        Err(BackendError::Unsupported("delete_jobs"))
    }

    /// Deletes up to `max` jobs (at most [`MAX_BATCH`] per call) of a state, from the head
    /// of the active list or the lowest scores, with their data and side fields; returns
    /// how many. Call again until it returns 0.
    ///
    /// # Behavior
    /// - Only [`JobState::Active`](crate::admin::JobState), `Scheduled` and `Dead`:
    ///   in-flight jobs are their consumers'; any other state is
    ///   [`BackendError::Rejected`].
    async fn purge(
        &self,
        queue: &QueueName,
        state: crate::admin::JobState,
        max: usize,
    ) -> Result<usize, BackendError> {
        let _ = (queue, state, max);
        Err(BackendError::Unsupported("purge"))
    }

    /// Removes a consumer whose last heartbeat is at or before `expired_before`, and moves
    /// its in-flight jobs to the tail of the active list.
    ///
    /// # Behavior
    /// - The jobs go in ascending ID order (byte order); the signal is set if any moved.
    /// - A consumer with a later heartbeat is left alone (`removed: false`, its
    ///   heartbeat reported); one not registered gives `heartbeat: None`.
    async fn remove_consumer(
        &self,
        queue: &QueueName,
        consumer: &str,
        expired_before: f64,
    ) -> Result<crate::admin::RemoveReport, BackendError> {
        let _ = (queue, consumer, expired_before);
        Err(BackendError::Unsupported("remove_consumer"))
    }

    /// Pauses or resumes a queue (`Q:paused`); returns whether it was paused before.
    ///
    /// # Behavior
    /// - While paused, [`take`](Self::take) takes nothing and clears the signal; pushes,
    ///   schedules, the scheduler, the custodian and outcomes go on.
    /// - Resuming sets the signal, so that idle consumers wake.
    /// - Go CurlyQ's consumers do not know the key: they go on taking.
    async fn set_paused(&self, queue: &QueueName, paused: bool) -> Result<bool, BackendError> {
        let _ = (queue, paused);
        Err(BackendError::Unsupported("set_paused"))
    }

    /// One page of the job IDs that have data (for the check): `Q:data`'s fields from
    /// `cursor` (0 to start), about `count` of them, and the next cursor (`None` when the
    /// pass is over).
    ///
    /// # Behavior
    /// - Every field present for the whole pass is returned at least once.
    async fn data_ids(
        &self,
        queue: &QueueName,
        cursor: u64,
        count: usize,
    ) -> Result<(Vec<String>, Option<u64>), BackendError> {
        let _ = (queue, cursor, count);
        Err(BackendError::Unsupported("data_ids"))
    }

    /// In-flight sets whose consumer is not in the consumer set: consumer ID -> its jobs.
    /// On Redis found with `SCAN` (`Q:inflight:*`).
    async fn stray_inflight(
        &self,
        queue: &QueueName,
    ) -> Result<Vec<(String, std::collections::BTreeSet<String>)>, BackendError> {
        let _ = queue;
        Err(BackendError::Unsupported("stray_inflight"))
    }

    /// Whether `problem` holds now (atomically): the problem as it stands (its places
    /// as found now), or `None` when it no longer holds.
    async fn confirm(
        &self,
        queue: &QueueName,
        problem: &crate::admin::Problem,
    ) -> Result<Option<crate::admin::Problem>, BackendError> {
        let _ = (queue, problem);
        Err(BackendError::Unsupported("confirm"))
    }

    /// Repairs one problem, if it still holds, in one atomic step (see
    /// [`ProblemKind`](crate::admin::ProblemKind) for what each repair does); returns
    /// whether anything changed. No job with data is ever deleted by a repair.
    async fn repair(
        &self,
        queue: &QueueName,
        problem: &crate::admin::Problem,
    ) -> Result<bool, BackendError> {
        let _ = (queue, problem);
        Err(BackendError::Unsupported("repair"))
    }
}
