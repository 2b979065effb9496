//! A model-based property suite: random sequences of queue operations run on a backend
//! and on the reference model ([`MemoryBackend`]) side by side.
//!
//! Each case makes a fresh backend with the factory you pass, picks a fresh queue name,
//! generates up to [`Config::max_ops`] operations ([`Op`]) and applies every one to the
//! model and to the backend with identical arguments. After every step it checks the
//! invariants below on the backend (and on the model), then compares the two replies and
//! the two [`QueueSnapshot`]s: the active list in order, the scheduled and dead sets with
//! their scores, the consumers with their heartbeats, every consumer's in-flight set, the
//! stored bytes of every job (so its attempt), the dead reasons, the orphan counters, the
//! last errors of retried jobs and the signal. When a case fails, proptest shrinks it to a short sequence, which is
//! replayed once more to give a readable [`Failure`]: the operations, the concrete calls
//! they became and the replies, up to the step that went wrong.
//!
//! ```
//! use curlyq_testkit::{conformance, MemoryBackend};
//!
//! // In a plain `#[test] fn` (the suite runs its own single-threaded tokio runtime).
//! let config = conformance::Config::from_env().cases(8);
//! conformance::check_with(&config, || async { MemoryBackend::new() }).unwrap();
//! ```
//!
//! # Invariants checked after every step
//!
//! On the backend's state before and after the step (and on the model's):
//!
//! 1. **One place per job.** Every job that exists (its ID has data: pushed or scheduled
//!    and not yet acked or trimmed) is in exactly one place: once in the active list, or
//!    in the scheduled set, or in the dead set, or in one consumer's in-flight set. An ID
//!    appears in the active list at most once, and no ID is anywhere without data.
//! 2. **No job lost or duplicated.** A job's data disappears only when its owner acks it
//!    or when `trim_dead` removes it from the dead set; new data appears only for the
//!    jobs of the push or schedule that created it.
//! 3. **Attempts never decrease.** Every stored job decodes, and its attempt is never
//!    lower than before the step.
//! 4. **An ID is unique while its job exists.** A push or schedule of an existing ID
//!    reports `false` and leaves the job's bytes and place as they were; a job's bytes
//!    change only by a retry or a kill (with new data) of its owner.
//! 5. **Take never serves an unregistered consumer.** A take by a consumer that is not in
//!    the consumer set fails with [`BackendError::NotRegistered`] and changes nothing; a
//!    take that succeeds puts every job it returns in that consumer's in-flight set.
//! 6. **Orphans only move from expired consumers.** `requeue_orphans` takes jobs only from
//!    (and removes only) consumers whose last heartbeat is at or before `expired_before`.
//! 7. **A last error belongs to a job waiting for a run.** Every ID with a last error has
//!    data and is not dead. A last error is written only by a retry of its owner (the
//!    error that retry sent), and removed only by its owner's ack, kill or retry without
//!    an error, by a crash-loop kill in `requeue_orphans`, or by `trim_dead`.
//!
//! Then the replies and the whole snapshots must equal the model's.
//!
//! # Operations generated
//!
//! Job IDs come from a pool of [`JOB_IDS`] (`j0`, `j1`, ...) and consumers from a pool of
//! [`CONSUMERS`] (`c0`, ...), so that duplicates, owned and not-owned jobs, and
//! registered and unregistered consumers all come up often. Times are a logical clock
//! that starts at 0 and moves only with [`Op::Advance`]; offsets from it may be negative
//! or fractional, so scores below zero occur. See [`Op`] for the list.
//!
//! # Where backends may legitimately differ
//!
//! Nowhere the suite goes: the contract fixes every choice. In particular
//! `requeue_orphans` takes the jobs of one consumer in ascending ID order (byte order),
//! and sorted-set ties are ordered by member bytes, as Redis orders them. The contract
//! leaves two choices to the backend. Whether `take_and_peek` looks at the scheduled set:
//! a backend that keeps the provided method answers
//! [`ScheduledPeek::Unknown`](curlyq_core::ScheduledPeek), which the suite accepts; one
//! that looks must report what the model reports. And which last errors a `trim_dead`
//! call examines when there are more than [`ERRORS_SWEEP`](curlyq_core::ERRORS_SWEEP) of
//! them: out of the reach of a pool of [`JOB_IDS`] IDs (the contract's `go` checks cover
//! it).
//!
//! # Number of cases
//!
//! [`Config::from_env`] reads `PROPTEST_CASES` (default 256), `PROPTEST_RNG_SEED` (a
//! fixed seed, to replay a run; otherwise a random one, printed on failure) and
//! `PROPTEST_MAX_SHRINK_ITERS` / `PROPTEST_MAX_SHRINK_TIME`.
//!
//! # Failures are remembered
//!
//! A failing case is saved (as proptest's seed of it) in
//! [`DEFAULT_REGRESSIONS`], `proptest-regressions/conformance.txt` under the directory the
//! test runs in (a crate's tests run in the crate's directory), and every later run
//! replays the saved cases first. Commit that file; the `regressions` field of [`Config`] moves it or
//! turns it off.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};

use curlyq_core::admin::{
    ActionReport, DeleteReport, JobDetail, JobPage, JobState, PageRequest, QueueStats,
    RemoveReport, Selection,
};
use curlyq_core::{
    BackendError, ConsumerId, DeadTrim, DueReport, EncodedJob, Job, KillJob, OrphanReport,
    OrphanSweep, QueueBackend, QueueName, QueueSnapshot, Registration, RetryJob, ScheduledJob,
    ScheduledPeek, TakenJob,
};
use proptest::prelude::{prop, prop_oneof, Just, Strategy};
use proptest::test_runner::{
    Config as RunnerConfig, FailurePersistence, FileFailurePersistence, RngSeed, TestCaseError,
    TestError, TestRunner,
};

use crate::MemoryBackend;

/// Cases per run when `PROPTEST_CASES` is not set.
pub const DEFAULT_CASES: u32 = 256;

/// Most operations in one generated sequence, by default.
pub const DEFAULT_MAX_OPS: usize = 50;

/// Where failing cases are saved and replayed from, by default (relative to the
/// directory the test runs in).
pub const DEFAULT_REGRESSIONS: &str = "proptest-regressions/conformance.txt";

/// Size of the pool of job IDs (`j0` ..).
pub const JOB_IDS: u8 = 8;

/// Size of the pool of consumers (`c0` ..).
pub const CONSUMERS: u8 = 3;

/// A job ID of the pool: `JobRef(3)` is the ID `"j3"`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobRef(pub u8);

impl JobRef {
    /// The job's ID.
    pub fn id(self) -> String {
        format!("j{}", self.0)
    }
}

impl fmt::Debug for JobRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "j{}", self.0)
    }
}

/// A consumer of the pool: `ConsumerRef(1)` is the consumer ID `"c1"`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConsumerRef(pub u8);

impl ConsumerRef {
    /// The consumer's ID.
    pub fn id(self) -> ConsumerId {
        ConsumerId::from_string(format!("c{}", self.0))
    }

    fn index(self) -> usize {
        usize::from(self.0 % CONSUMERS)
    }
}

impl fmt::Debug for ConsumerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// Which job an ack, retry, kill or give-back names.
#[derive(Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pick {
    /// That job of the pool, owned or not.
    Job(JobRef),
    /// The `n`-th (modulo its size) job of the consumer's in-flight set in the model,
    /// in ID order; when it holds nothing, the `n`-th job in flight at any consumer
    /// (not owned); when no job is in flight, the job `j<n>`.
    Owned(u8),
}

impl fmt::Debug for Pick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pick::Job(job) => write!(f, "{job:?}"),
            Pick::Owned(n) => write!(f, "owned#{n}"),
        }
    }
}

/// One generated step. Times are offsets from the suite's logical clock.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Op {
    /// `push` of a batch: `(job, payload)`, IDs may repeat (within the batch too); the
    /// payload number tells apart the bytes of two pushes of one ID.
    Push {
        /// The jobs, with their payload numbers.
        jobs: Vec<(JobRef, u8)>,
    },
    /// `schedule` of a batch at `clock + offset` each (offsets may be negative).
    Schedule {
        /// The jobs: `(job, payload, offset)`.
        jobs: Vec<(JobRef, u8, f64)>,
    },
    /// `register` with [`Registration::Join`] at the clock (also ends a crash).
    Join {
        /// Who joins.
        consumer: ConsumerRef,
    },
    /// `register` with [`Registration::Heartbeat`] at the clock; skipped while the
    /// consumer is crashed.
    Heartbeat {
        /// Who heartbeats.
        consumer: ConsumerRef,
    },
    /// The consumer crashes: it sends no heartbeat until it joins again, and its jobs
    /// stay in flight (later acks from it are still sent, like a zombie's).
    Crash {
        /// Who crashes.
        consumer: ConsumerRef,
    },
    /// Moves the logical clock forward.
    Advance {
        /// Seconds (may be fractional).
        secs: f64,
    },
    /// `enqueue_due` at the clock.
    EnqueueDue {
        /// Most jobs to move.
        max: usize,
    },
    /// `take` (the consumer may be unregistered).
    Take {
        /// Who takes.
        consumer: ConsumerRef,
        /// Most jobs to take.
        max: usize,
    },
    /// `ack` of a batch (owned or not).
    Ack {
        /// Who acks.
        consumer: ConsumerRef,
        /// The jobs.
        jobs: Vec<Pick>,
    },
    /// `retry` of a batch, each with the model's stored job with its attempt + 1, at
    /// `clock + offset`, with the error of the failed run: `Some(n)` sends the message
    /// numbered `n` (a 1,024-byte one, the longest a consumer sends, when `n % 4 == 3`),
    /// `None` sends none. Generated sequences take the error from the offset: none for a
    /// negative one.
    Retry {
        /// Who retries.
        consumer: ConsumerRef,
        /// The jobs, with their offsets and errors.
        jobs: Vec<(Pick, f64, Option<u8>)>,
    },
    /// `kill` of a batch at the clock, with the incremented job as new data, or with
    /// `None` (keep the stored bytes) when `keep_data`.
    Kill {
        /// Who kills.
        consumer: ConsumerRef,
        /// The jobs.
        jobs: Vec<Pick>,
        /// Send no new data.
        keep_data: bool,
    },
    /// `give_back` of a batch.
    GiveBack {
        /// Who gives back.
        consumer: ConsumerRef,
        /// The jobs.
        jobs: Vec<Pick>,
    },
    /// `requeue_orphans` with `expired_before = clock - timeout` and `now = clock`.
    RequeueOrphans {
        /// Seconds without heartbeat after which a consumer is expired.
        timeout: f64,
        /// Most jobs to move or kill.
        max_jobs: usize,
        /// Kill a job orphaned this many times (0 = never).
        max_orphan_requeues: u32,
    },
    /// `trim_dead` with `killed_before = clock - older_than`.
    TrimDead {
        /// Age in seconds beyond which dead jobs go.
        older_than: f64,
        /// Most dead jobs to keep.
        keep_at_most: usize,
        /// Most jobs to remove.
        max_jobs: usize,
    },
    /// `unregister`.
    Unregister {
        /// Who leaves.
        consumer: ConsumerRef,
    },
    /// An admin operation (see [`AdminOp`]).
    Admin(AdminOp),
}

/// An admin operation, interleaved with the consumer's operations.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum AdminOp {
    /// `set_paused`.
    Pause(bool),
    /// `stats` at the clock, with that many minutes of counters.
    Stats(usize),
    /// `jobs`: one page of a state from a cursor.
    Page(JobState, u64, usize),
    /// `find_job`.
    Find(JobRef),
    /// `retry_dead` of these jobs, or of the oldest `n` when the list is empty.
    RetryDead(Vec<JobRef>, usize),
    /// `run_scheduled` of these jobs, or of the earliest `n` when the list is empty.
    RunScheduled(Vec<JobRef>, usize),
    /// `delete_jobs`.
    Delete(Vec<JobRef>),
    /// `purge` of a state, at most `n`.
    Purge(JobState, usize),
    /// `remove_consumer` with `expired_before = clock - timeout`.
    RemoveConsumer(ConsumerRef, f64),
}

/// The strategy of one admin operation.
pub fn admin_op() -> impl Strategy<Value = AdminOp> {
    let state = || {
        prop::sample::select(vec![
            JobState::Active,
            JobState::Scheduled,
            JobState::Dead,
            JobState::InFlight,
        ])
    };
    let some_jobs = || prop::collection::vec(job_ref(), 0..=1);
    prop_oneof![
        2 => proptest::bool::ANY.prop_map(AdminOp::Pause),
        2 => small(&[0, 1, 3]).prop_map(AdminOp::Stats),
        3 => (state(), small(&[0, 1, 2]), small(&[1, 2, 5])).prop_map(|(s, c, l)| AdminOp::Page(s, c as u64, l)),
        2 => job_ref().prop_map(AdminOp::Find),
        2 => (some_jobs(), small(&[1, 2])).prop_map(|(j, n)| AdminOp::RetryDead(j, n)),
        2 => (some_jobs(), small(&[1, 2])).prop_map(|(j, n)| AdminOp::RunScheduled(j, n)),
        1 => prop::collection::vec(job_ref(), 1..=2).prop_map(AdminOp::Delete),
        1 => (state(), small(&[1, 2])).prop_map(|(s, n)| AdminOp::Purge(s, n)),
        1 => (consumer_ref(), prop::sample::select(vec![0.0, 5.0, 30.0])).prop_map(|(c, t)| AdminOp::RemoveConsumer(c, t)),
    ]
}

/// [`ops`], with up to `max_ops / 4` admin operations inserted at random steps. The
/// consumer operations are drawn first, so a seed gives the same ones as [`ops`] does.
pub fn ops_with_admin(max_ops: usize) -> impl Strategy<Value = Vec<Op>> {
    (
        ops(max_ops),
        prop::collection::vec((0..=max_ops, admin_op()), 0..=max_ops / 4),
    )
        .prop_map(|(mut ops, admin)| {
            let mut admin = admin;
            // Insert from the last position down, so that earlier indexes stay valid.
            admin.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
            for (at, op) in admin {
                let at = at.min(ops.len());
                ops.insert(at, Op::Admin(op));
            }
            ops
        })
}

fn job_ref() -> impl Strategy<Value = JobRef> {
    (0..JOB_IDS).prop_map(JobRef)
}

/// Mostly `c0`, so that the same consumer joins, takes and acks within one sequence.
fn consumer_ref() -> impl Strategy<Value = ConsumerRef> {
    prop_oneof![
        3 => Just(ConsumerRef(0)),
        2 => Just(ConsumerRef(1)),
        1 => Just(ConsumerRef(2))
    ]
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        3 => (0..JOB_IDS).prop_map(Pick::Owned),
        1 => job_ref().prop_map(Pick::Job)
    ]
}

/// The offsets from the clock that times are drawn from.
const OFFSETS: [f64; 10] = [0.0, 1.0, -1.0, 0.5, 2.5, 10.0, -0.25, 0.1, -100.5, 60.0];

fn offset() -> impl Strategy<Value = f64> {
    prop::sample::select(OFFSETS.to_vec())
}

/// The error a retry at `offset` sends: none for a negative offset, else the message
/// numbered by the offset's place in [`OFFSETS`]. Derived rather than drawn, so that the
/// errors added nothing to the random draws: a seed (a saved regression, a test's fixed
/// seed) generates the same operations as before retries carried errors.
fn retry_error(offset: f64) -> Option<u8> {
    if offset < 0.0 {
        return None;
    }
    OFFSETS
        .iter()
        .position(|o| *o == offset)
        .and_then(|i| u8::try_from(i).ok())
}

fn small(values: &[usize]) -> impl Strategy<Value = usize> {
    prop::sample::select(values.to_vec())
}

/// The strategy of one operation.
pub fn op() -> impl Strategy<Value = Op> {
    let batch = |n| prop::collection::vec(pick(), 1..=n);
    prop_oneof![
        4 => prop::collection::vec((job_ref(), 0..4u8), 1..=3).prop_map(|jobs| Op::Push { jobs }),
        6 => (consumer_ref(), small(&[1, 2, 0, 3, 10])).prop_map(|(consumer, max)| Op::Take { consumer, max }),
        6 => consumer_ref().prop_map(|consumer| Op::Join { consumer }),
        3 => (consumer_ref(), batch(3)).prop_map(|(consumer, jobs)| Op::Ack { consumer, jobs }),
        3 => prop::sample::select(vec![1.0, 0.5, 5.0, 0.1, 31.0, 2.5]).prop_map(|secs| Op::Advance { secs }),
        2 => prop::collection::vec((job_ref(), 0..4u8, offset()), 1..=3).prop_map(|jobs| Op::Schedule { jobs }),
        2 => small(&[1, 10, 0, 2]).prop_map(|max| Op::EnqueueDue { max }),
        3 => consumer_ref().prop_map(|consumer| Op::Heartbeat { consumer }),
        2 => (
            consumer_ref(),
            prop::collection::vec(
                (pick(), offset()).prop_map(|(pick, at)| (pick, at, retry_error(at))),
                1..=3,
            ),
        )
            .prop_map(|(consumer, jobs)| Op::Retry { consumer, jobs }),
        2 => (consumer_ref(), batch(3), proptest::bool::weighted(0.25))
            .prop_map(|(consumer, jobs, keep_data)| Op::Kill { consumer, jobs, keep_data }),
        3 => (
            prop::sample::select(vec![5.0, 30.0, 1.0, 0.0]),
            small(&[1, 2, 50, 0]),
            prop::sample::select(vec![0u32, 1, 2, 3]),
        )
            .prop_map(|(timeout, max_jobs, max_orphan_requeues)| Op::RequeueOrphans {
                timeout,
                max_jobs,
                max_orphan_requeues,
            }),
        1 => consumer_ref().prop_map(|consumer| Op::Crash { consumer }),
        1 => (consumer_ref(), batch(2)).prop_map(|(consumer, jobs)| Op::GiveBack { consumer, jobs }),
        2 => (
            prop::sample::select(vec![10.0, 0.0, 1.0, 100.0]),
            small(&[1, 0, 2, 100]),
            small(&[100, 0, 1, 2]),
        )
            .prop_map(|(older_than, keep_at_most, max_jobs)| Op::TrimDead {
                older_than,
                keep_at_most,
                max_jobs,
            }),
        1 => consumer_ref().prop_map(|consumer| Op::Unregister { consumer }),
    ]
}

/// The strategy of a sequence of up to `max_ops` operations: up to two joins (as
/// consumers start), then any operations. Shrinks by dropping operations and
/// simplifying each.
pub fn ops(max_ops: usize) -> impl Strategy<Value = Vec<Op>> {
    let head = max_ops.min(2);
    (
        prop::collection::vec(
            consumer_ref().prop_map(|consumer| Op::Join { consumer }),
            0..=head,
        ),
        prop::collection::vec(op(), 0..=max_ops - head),
    )
        .prop_map(|(mut joins, rest)| {
            joins.extend(rest);
            joins
        })
}

/// How a run is set up. Start from [`Config::from_env`] (or `default()`, the same).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Cases to run (`PROPTEST_CASES`, default [`DEFAULT_CASES`]).
    pub cases: u32,
    /// Most operations per case (default [`DEFAULT_MAX_OPS`]).
    pub max_ops: usize,
    /// The seed of the run (`PROPTEST_RNG_SEED`); `None` picks a random one, which a
    /// failure reports.
    pub seed: Option<u64>,
    /// Most shrinking steps after a failure (`PROPTEST_MAX_SHRINK_ITERS`, default
    /// 100,000).
    pub max_shrink_iters: u32,
    /// Most milliseconds spent shrinking (`PROPTEST_MAX_SHRINK_TIME`, 0 = no limit,
    /// default 120,000).
    pub max_shrink_time_ms: u32,
    /// Queue names are `{<prefix><n>}` with a counter `n` (one hash slot per queue on a
    /// cluster). The default has a random part, so runs on a shared store never meet.
    pub queue_prefix: String,
    /// The file failing cases are saved to and replayed from first (default
    /// [`DEFAULT_REGRESSIONS`]); `None` neither saves nor replays.
    pub regressions: Option<&'static str>,
}

impl Default for Config {
    fn default() -> Self {
        Self::from_env()
    }
}

/// A random number that needs no dependency: std's hasher keys are random per process.
fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(u64::from(std::process::id()));
    if let Ok(since) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(since.as_nanos());
    }
    hasher.finish()
}

impl Config {
    /// The defaults, overridden by the `PROPTEST_*` variables that are set.
    pub fn from_env() -> Self {
        let env = RunnerConfig::default();
        let cases = match std::env::var_os("PROPTEST_CASES") {
            Some(_) => env.cases,
            None => DEFAULT_CASES,
        };
        let seed = match env.rng_seed {
            RngSeed::Fixed(seed) => Some(seed),
            RngSeed::Random => None,
        };
        let max_shrink_iters = match std::env::var_os("PROPTEST_MAX_SHRINK_ITERS") {
            Some(_) => env.max_shrink_iters,
            None => 100_000,
        };
        let max_shrink_time_ms = match std::env::var_os("PROPTEST_MAX_SHRINK_TIME") {
            Some(_) => env.max_shrink_time,
            None => 120_000,
        };
        Config {
            cases,
            max_ops: DEFAULT_MAX_OPS,
            seed,
            max_shrink_iters,
            max_shrink_time_ms,
            queue_prefix: format!("curlyq-conformance-{:08x}-", random_u64() as u32),
            regressions: Some(DEFAULT_REGRESSIONS),
        }
    }

    /// Sets the number of cases.
    pub fn cases(mut self, cases: u32) -> Self {
        self.cases = cases;
        self
    }

    /// Sets the most operations per case.
    pub fn max_ops(mut self, max_ops: usize) -> Self {
        self.max_ops = max_ops;
        self
    }

    /// Fixes the seed (the same seed and backend give the same run).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Sets the prefix of the queue names.
    pub fn queue_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.queue_prefix = prefix.into();
        self
    }

    /// Sets the file of saved failing cases (`None`: none saved, none replayed; for runs
    /// that are expected to fail, such as on a deliberately broken backend).
    pub fn regressions(mut self, path: Option<&'static str>) -> Self {
        self.regressions = path;
        self
    }
}

/// What a passing run did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// Cases run.
    pub cases: u32,
    /// Operations applied in all (to each side).
    pub steps: u64,
    /// The seed of the run.
    pub seed: u64,
    /// How often each interesting path of the contract was taken (by the model's
    /// replies), such as `"ack of an owned job"`: shows what the run exercised. See
    /// [`PATHS`].
    pub coverage: BTreeMap<&'static str, u64>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "conformance: {} cases, {} operations, all as the model (seed {})",
            self.cases, self.steps, self.seed
        )?;
        for (path, count) in &self.coverage {
            write!(f, "\n  {count:>6}  {path}")?;
        }
        Ok(())
    }
}

/// The paths of the contract that [`Report::coverage`] counts.
pub const PATHS: &[&str] = &[
    "push of a new job",
    "push of an existing ID",
    "schedule of a new job",
    "schedule at a negative time",
    "schedule of an existing ID",
    "heartbeat of a reaped consumer",
    "enqueue_due that moved jobs",
    "take that returned jobs",
    "take that found nothing",
    "take by an unregistered consumer",
    "ack of an owned job",
    "ack of a job not owned",
    "retry of an owned job",
    "retry of a job not owned",
    "kill of an owned job",
    "kill keeping the stored data",
    "kill of a job not owned",
    "give_back of an owned job",
    "requeue_orphans that requeued",
    "requeue_orphans that killed a crash-looping job",
    "requeue_orphans that removed a consumer",
    "requeue_orphans that left jobs for later (max_jobs used up)",
    "trim_dead that removed jobs",
    "unregister refused (jobs in flight)",
    "retry that stored an error",
    "take from a paused queue",
    "retry_dead that moved jobs",
    "run_scheduled that moved jobs",
    "delete_jobs that deleted a job",
    "purge that removed jobs",
    "remove_consumer that requeued jobs",
    "find_job of a job in flight",
];

/// The paths of [`PATHS`] that one step took, judged by the model.
fn paths(
    call: &Call,
    outcome: &Outcome,
    before: &QueueSnapshot,
    after: &QueueSnapshot,
) -> Vec<&'static str> {
    let mut out = Vec::new();
    if let Call::Retry(_, jobs, _) = call {
        for job in jobs {
            if !before.errors.contains_key(&job.id) && after.errors.contains_key(&job.id) {
                out.push(PATHS[24]);
            }
        }
    }
    let mut flags = |yes: &'static str, no: &'static str| {
        if let Ok(Reply::Flags(flags)) = outcome {
            for flag in flags {
                out.push(if *flag { yes } else { no });
            }
        }
    };
    match call {
        Call::Push(_) => flags(PATHS[0], PATHS[1]),
        Call::Schedule(jobs) => {
            flags(PATHS[2], PATHS[4]);
            if let Ok(Reply::Flags(flags)) = outcome {
                for (job, new) in jobs.iter().zip(flags) {
                    if *new && job.at < 0.0 {
                        out.push(PATHS[3]);
                    }
                }
            }
        }
        Call::Ack(..) => flags(PATHS[10], PATHS[11]),
        Call::Retry(..) => flags(PATHS[12], PATHS[13]),
        Call::Kill(_, jobs, _) => {
            flags(PATHS[14], PATHS[16]);
            if let Ok(Reply::Flags(flags)) = outcome {
                for (job, owned) in jobs.iter().zip(flags) {
                    if *owned && job.data.is_none() {
                        out.push(PATHS[15]);
                    }
                }
            }
        }
        Call::Register(_, _, Registration::Heartbeat) if outcome == &Ok(Reply::Flag(false)) => {
            out.push(PATHS[5]);
        }
        Call::EnqueueDue(..) => {
            if let Ok(Reply::Due(due)) = outcome {
                if due.moved > 0 {
                    out.push(PATHS[6]);
                }
            }
        }
        Call::Take(..) => match outcome {
            Ok(Reply::Taken(jobs, _))
                if jobs.is_empty()
                    && !before.active.is_empty()
                    && matches!(call, Call::Take(_, max) if *max > 0) =>
            {
                out.push(PATHS[25]);
            }
            Ok(Reply::Taken(jobs, _)) if jobs.is_empty() => out.push(PATHS[8]),
            Ok(Reply::Taken(..)) => out.push(PATHS[7]),
            Err(Refusal::NotRegistered) => out.push(PATHS[9]),
            _ => {}
        },
        Call::GiveBack(..) => {
            if let Ok(Reply::Count(n)) = outcome {
                out.extend(std::iter::repeat_n(PATHS[17], *n));
            }
        }
        Call::RequeueOrphans(sweep) => {
            if let Ok(Reply::Orphans(report)) = outcome {
                if report.requeued > 0 {
                    out.push(PATHS[18]);
                }
                if report.killed > 0 {
                    out.push(PATHS[19]);
                }
                if report.consumers_removed > 0 {
                    out.push(PATHS[20]);
                }
                let left = after.consumers.iter().any(|(c, score)| {
                    *score <= sweep.expired_before && after.inflight.contains_key(c)
                });
                if sweep.max_jobs > 0 && left {
                    out.push(PATHS[21]);
                }
            }
        }
        Call::TrimDead(_) if matches!(outcome, Ok(Reply::Count(n)) if *n > 0) => {
            out.push(PATHS[22]);
        }
        Call::Unregister(_) if outcome == &Ok(Reply::Flag(false)) => out.push(PATHS[23]),
        Call::RetryDead(_) | Call::RunScheduled(_) => {
            if let Ok(Reply::Action(report)) = outcome {
                if !report.done.is_empty() {
                    let retry = matches!(call, Call::RetryDead(_));
                    out.push(if retry { PATHS[26] } else { PATHS[27] });
                }
            }
        }
        Call::Delete(_) => {
            if let Ok(Reply::Deleted(report)) = outcome {
                if !report.deleted.is_empty() {
                    out.push(PATHS[28]);
                }
            }
        }
        Call::Purge(..) if matches!(outcome, Ok(Reply::Count(n)) if *n > 0) => {
            out.push(PATHS[29]);
        }
        Call::RemoveConsumer(..) => {
            if let Ok(Reply::Removed(report)) = outcome {
                if report.requeued > 0 {
                    out.push(PATHS[30]);
                }
            }
        }
        Call::Find(_) => {
            if let Ok(Reply::Found(Some(found))) = outcome {
                if found.summary.state == Some(JobState::InFlight) {
                    out.push(PATHS[31]);
                }
            }
        }
        _ => {}
    }
    out
}

/// A hand-written sequence through every path of the last errors (`Q:errors`): stored
/// (a 1,024-byte one too), replaced and cleared by a retry, cleared by an ack and by a
/// kill, kept by an orphan's requeue, cleared by a crash-loop kill, and dead jobs
/// trimmed. Random sequences rarely retry a job, take it again and end it, so replay
/// this one with [`replay`] beside the random run.
pub fn last_error_paths() -> Vec<Op> {
    let (c0, c1) = (ConsumerRef(0), ConsumerRef(1));
    let job = |n| Pick::Job(JobRef(n));
    let sweep = |max_orphan_requeues| Op::RequeueOrphans {
        timeout: 5.0,
        max_jobs: 50,
        max_orphan_requeues,
    };
    vec![
        Op::Join { consumer: c0 },
        Op::Push {
            jobs: vec![
                (JobRef(0), 0),
                (JobRef(1), 0),
                (JobRef(2), 0),
                (JobRef(3), 0),
            ],
        },
        Op::Take {
            consumer: c0,
            max: 10,
        },
        Op::Retry {
            consumer: c0,
            jobs: vec![
                (job(0), 0.0, Some(1)),
                (job(1), 0.0, Some(3)),
                (job(2), 0.0, Some(2)),
                (job(3), 0.0, Some(4)),
            ],
        },
        Op::EnqueueDue { max: 10 },
        Op::Take {
            consumer: c0,
            max: 10,
        },
        // Replaced (j0), cleared (j1); a job not owned (j5) writes nothing.
        Op::Retry {
            consumer: c0,
            jobs: vec![
                (job(0), 0.0, Some(5)),
                (job(1), 0.0, None),
                (job(5), 0.0, Some(6)),
            ],
        },
        Op::Ack {
            consumer: c0,
            jobs: vec![job(2)],
        },
        Op::Kill {
            consumer: c0,
            jobs: vec![job(3)],
            keep_data: false,
        },
        Op::EnqueueDue { max: 10 },
        Op::Take {
            consumer: c0,
            max: 10,
        },
        // c0 dies holding j0 and j1: requeued, j0 keeping its error.
        Op::Crash { consumer: c0 },
        Op::Advance { secs: 31.0 },
        sweep(0),
        // c1 takes them and dies too: orphaned twice, killed, j0's error cleared.
        Op::Join { consumer: c1 },
        Op::Take {
            consumer: c1,
            max: 10,
        },
        Op::Crash { consumer: c1 },
        Op::Advance { secs: 31.0 },
        sweep(2),
        Op::TrimDead {
            older_than: 0.0,
            keep_at_most: 0,
            max_jobs: 100,
        },
    ]
}

/// Why a run failed, with the shortest failing sequence found.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Failure {
    /// What went wrong at the failing step.
    pub message: String,
    /// The failing sequence, shrunk.
    pub ops: Vec<Op>,
    /// The index in `ops` of the step that failed (`None`: before the first operation,
    /// such as a queue that was not empty, or outside any step).
    pub step: Option<usize>,
    /// One line per step applied, up to the failing one: the operation, the concrete call
    /// and the replies.
    pub trace: Vec<String>,
    /// The seed of the run (`PROPTEST_RNG_SEED=<seed>` replays it).
    pub seed: Option<u64>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "the backend does not behave as the model: {}",
            self.message
        )?;
        match self.step {
            Some(step) => writeln!(
                f,
                "at step {step} of this sequence of {} operations:",
                self.ops.len()
            )?,
            None => writeln!(f, "sequence of {} operations:", self.ops.len())?,
        }
        for (i, op) in self.ops.iter().enumerate() {
            let mark = if Some(i) == self.step { ">>" } else { "  " };
            writeln!(f, "{mark}{i:>3}: {op:?}")?;
        }
        if !self.trace.is_empty() {
            writeln!(f, "calls made (call -> backend reply):")?;
            for line in &self.trace {
                writeln!(f, "  {line}")?;
            }
        }
        if let Some(seed) = self.seed {
            writeln!(f, "rerun the whole run with PROPTEST_RNG_SEED={seed}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Failure {}

/// Runs the suite with [`Config::from_env`] on backends made by `factory` (one per
/// case, each given a fresh queue name). Call it from a plain `#[test]`.
///
/// ```
/// use curlyq_testkit::{conformance, MemoryBackend};
/// let report = conformance::check(|| async { MemoryBackend::new() });
/// assert!(report.is_ok());
/// ```
pub fn check<B, F, Fut>(factory: F) -> Result<Report, Failure>
where
    B: QueueBackend,
    F: Fn() -> Fut + Sync,
    Fut: Future<Output = B>,
{
    check_with(&Config::from_env(), factory)
}

/// [`check`], panicking with the [`Failure`] (its sequence and trace) if there is one:
/// the one line for a backend's test suite.
///
/// ```no_run
/// // The body of a `#[test] fn my_backend_conforms()`:
/// curlyq_testkit::conformance::assert_conforms(|| async { curlyq_testkit::MemoryBackend::new() });
/// ```
#[track_caller]
pub fn assert_conforms<B, F, Fut>(factory: F) -> Report
where
    B: QueueBackend,
    F: Fn() -> Fut + Sync,
    Fut: Future<Output = B>,
{
    match check(factory) {
        Ok(report) => report,
        Err(failure) => panic!("{failure}"),
    }
}

/// [`check`] with an explicit [`Config`].
///
/// Runs on a thread of its own with a single-threaded tokio runtime (time and, when
/// tokio's `net` feature is on, I/O enabled), so it may be called from inside another
/// runtime too. A panic in the backend or the factory is reported as a [`Failure`].
pub fn check_with<B, F, Fut>(config: &Config, factory: F) -> Result<Report, Failure>
where
    B: QueueBackend,
    F: Fn() -> Fut + Sync,
    Fut: Future<Output = B>,
{
    let seed = config.seed.unwrap_or_else(random_u64);
    let outcome = std::thread::scope(|scope| {
        scope
            .spawn(|| run(config, seed, &factory))
            .join()
            .map_err(|panic| Failure {
                message: format!("the suite panicked: {}", panic_text(&*panic)),
                ops: Vec::new(),
                step: None,
                trace: Vec::new(),
                seed: Some(seed),
            })
    });
    outcome.and_then(|result| result)
}

/// [`replay`] that panics with the failure (for a test of a backend of your own).
pub fn assert_replays<B, F, Fut>(factory: F, ops: &[Op])
where
    B: QueueBackend,
    F: Fn() -> Fut + Sync,
    Fut: Future<Output = B>,
{
    if let Err(failure) = replay(factory, ops) {
        panic!("{failure}");
    }
}

/// Replays one sequence of operations (a regression test of a failure found earlier)
/// and reports how it went.
pub fn replay<B, F, Fut>(factory: F, ops: &[Op]) -> Result<(), Failure>
where
    B: QueueBackend,
    F: Fn() -> Fut + Sync,
    Fut: Future<Output = B>,
{
    let config = Config::from_env();
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = runtime().map_err(|message| failure(message, ops, None))?;
                let queue = next_queue(&config.queue_prefix).map_err(|m| failure(m, ops, None))?;
                match replay_traced(&runtime, &factory, &queue, ops) {
                    Ok(()) => Ok(()),
                    Err(mut failed) => {
                        failed.seed = None;
                        Err(failed)
                    }
                }
            })
            .join()
            .unwrap_or_else(|panic| {
                Err(failure(
                    format!("the suite panicked: {}", panic_text(&*panic)),
                    ops,
                    None,
                ))
            })
    })
}

fn failure(message: String, ops: &[Op], seed: Option<u64>) -> Failure {
    Failure {
        message,
        ops: ops.to_vec(),
        step: None,
        trace: Vec::new(),
        seed,
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("could not start a tokio runtime: {e}"))
}

static QUEUE_COUNTER: AtomicU64 = AtomicU64::new(0);

fn next_queue(prefix: &str) -> Result<QueueName, String> {
    let n = QUEUE_COUNTER.fetch_add(1, Ordering::Relaxed);
    QueueName::new(format!("{{{prefix}{n}}}")).map_err(|e| format!("bad queue name: {e}"))
}

/// The whole run, on the suite's thread.
fn run<B, F, Fut>(config: &Config, seed: u64, factory: &F) -> Result<Report, Failure>
where
    B: QueueBackend,
    F: Fn() -> Fut,
    Fut: Future<Output = B>,
{
    let runtime = runtime().map_err(|message| failure(message, &[], Some(seed)))?;
    let runner_config = RunnerConfig {
        cases: config.cases,
        max_shrink_iters: config.max_shrink_iters,
        max_shrink_time: config.max_shrink_time_ms,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: config.regressions.map(|path| {
            Box::new(FileFailurePersistence::Direct(path)) as Box<dyn FailurePersistence>
        }),
        ..RunnerConfig::default()
    };
    let mut runner = TestRunner::new(runner_config);
    let steps = AtomicU64::new(0);
    let coverage = std::sync::Mutex::new(BTreeMap::new());
    let result = runner.run(&ops_with_admin(config.max_ops), |ops| {
        let queue = next_queue(&config.queue_prefix).map_err(TestCaseError::fail)?;
        steps.fetch_add(ops.len() as u64, Ordering::Relaxed);
        let mut taken = BTreeMap::new();
        let outcome = runtime
            .block_on(run_case(factory, &queue, &ops, None, &mut taken))
            .map_err(|(_, message)| TestCaseError::fail(message));
        let mut coverage = coverage.lock().unwrap_or_else(|p| p.into_inner());
        for (path, n) in taken {
            *coverage.entry(path).or_insert(0) += n;
        }
        outcome
    });
    match result {
        Ok(()) => Ok(Report {
            cases: config.cases,
            steps: steps.load(Ordering::Relaxed),
            seed,
            coverage: coverage.into_inner().unwrap_or_else(|p| p.into_inner()),
        }),
        Err(TestError::Abort(reason)) => Err(failure(
            format!("proptest aborted the run: {reason}"),
            &[],
            Some(seed),
        )),
        Err(TestError::Fail(reason, minimal)) => {
            let replayed = next_queue(&config.queue_prefix)
                .map_err(|message| failure(message, &minimal, Some(seed)))
                .and_then(|queue| replay_traced(&runtime, factory, &queue, &minimal));
            match replayed {
                Err(mut failed) => {
                    failed.seed = Some(seed);
                    Err(failed)
                }
                Ok(()) => Err(failure(
                    format!(
                        "{reason} (this sequence failed while shrinking but passed when \
                         replayed: the backend is not deterministic)"
                    ),
                    &minimal,
                    Some(seed),
                )),
            }
        }
    }
}

/// Runs `ops` once more, recording the trace, catching panics.
fn replay_traced<B, F, Fut>(
    runtime: &tokio::runtime::Runtime,
    factory: &F,
    queue: &QueueName,
    ops: &[Op],
) -> Result<(), Failure>
where
    B: QueueBackend,
    F: Fn() -> Fut,
    Fut: Future<Output = B>,
{
    let mut trace = Vec::new();
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        runtime.block_on(run_case(
            factory,
            queue,
            ops,
            Some(&mut trace),
            &mut BTreeMap::new(),
        ))
    }));
    let (step, message) = match outcome {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(failed)) => failed,
        Err(panic) => (
            trace.len().checked_sub(1),
            format!("panicked: {}", panic_text(&*panic)),
        ),
    };
    Err(Failure {
        message,
        ops: ops.to_vec(),
        step,
        trace,
        seed: None,
    })
}

/// A concrete call, the same for the model and the backend.
#[derive(Debug, Clone)]
enum Call {
    Nothing(&'static str),
    Push(Vec<EncodedJob>),
    Schedule(Vec<ScheduledJob>),
    Register(ConsumerId, f64, Registration),
    EnqueueDue(f64, usize),
    Take(ConsumerId, usize),
    Ack(ConsumerId, Vec<String>, f64),
    Retry(ConsumerId, Vec<RetryJob>, f64),
    Kill(ConsumerId, Vec<KillJob>, f64),
    GiveBack(ConsumerId, Vec<String>),
    RequeueOrphans(OrphanSweep),
    TrimDead(DeadTrim),
    Unregister(ConsumerId),
    Pause(bool),
    Stats(f64, usize),
    Page(PageRequest),
    Find(String),
    RetryDead(Selection),
    RunScheduled(Selection),
    Delete(Vec<String>),
    Purge(JobState, usize),
    RemoveConsumer(ConsumerId, f64),
}

fn attempt_of(data: &[u8]) -> String {
    match Job::decode(data) {
        Ok(job) => format!("attempt {}", job.attempt),
        Err(_) => "undecodable".to_owned(),
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Call::Nothing(why) => write!(f, "(no call: {why})"),
            Call::Push(jobs) => {
                let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
                write!(f, "push {ids:?}")
            }
            Call::Schedule(jobs) => {
                let jobs: Vec<String> = jobs
                    .iter()
                    .map(|j| format!("{} at {}", j.job.id, j.at))
                    .collect();
                write!(f, "schedule {jobs:?}")
            }
            Call::Register(c, now, mode) => write!(f, "register {c} {mode:?} at {now}"),
            Call::EnqueueDue(now, max) => write!(f, "enqueue_due now {now} max {max}"),
            Call::Take(c, max) => write!(f, "take {c} max {max}"),
            Call::Ack(c, ids, _) => write!(f, "ack {c} {ids:?}"),
            Call::Retry(c, jobs, _) => {
                let jobs: Vec<String> = jobs
                    .iter()
                    .map(|j| format!("{} at {} {}", j.id, j.at, attempt_of(&j.data)))
                    .collect();
                write!(f, "retry {c} {jobs:?}")
            }
            Call::Kill(c, jobs, now) => {
                let jobs: Vec<String> = jobs
                    .iter()
                    .map(|j| match &j.data {
                        Some(data) => format!("{} {}", j.id, attempt_of(data)),
                        None => format!("{} keeping its data", j.id),
                    })
                    .collect();
                write!(f, "kill {c} {jobs:?} at {now}")
            }
            Call::GiveBack(c, ids) => write!(f, "give_back {c} {ids:?}"),
            Call::RequeueOrphans(s) => write!(
                f,
                "requeue_orphans expired_before {} max_jobs {} max_orphan_requeues {} now {}",
                s.expired_before, s.max_jobs, s.max_orphan_requeues, s.now
            ),
            Call::TrimDead(t) => write!(
                f,
                "trim_dead killed_before {} keep_at_most {} max_jobs {}",
                t.killed_before, t.keep_at_most, t.max_jobs
            ),
            Call::Unregister(c) => write!(f, "unregister {c}"),
            Call::Pause(paused) => write!(f, "set_paused {paused}"),
            Call::Stats(now, minutes) => write!(f, "stats at {now}, {minutes} minutes"),
            Call::Page(p) => write!(f, "jobs {} from {} limit {}", p.state, p.cursor, p.limit),
            Call::Find(id) => write!(f, "find_job {id}"),
            Call::RetryDead(sel) => write!(f, "retry_dead {sel:?}"),
            Call::RunScheduled(sel) => write!(f, "run_scheduled {sel:?}"),
            Call::Delete(ids) => write!(f, "delete_jobs {ids:?}"),
            Call::Purge(state, max) => write!(f, "purge {state} max {max}"),
            Call::RemoveConsumer(c, before) => {
                write!(f, "remove_consumer {c} expired_before {before}")
            }
        }
    }
}

/// What a call returned, in a comparable form.
#[derive(Debug, Clone, PartialEq)]
enum Reply {
    Nothing,
    Flags(Vec<bool>),
    Flag(bool),
    Count(usize),
    Due(DueReport),
    /// The jobs, and the peek at the scheduled set.
    Taken(Vec<TakenJob>, ScheduledPeek),
    Orphans(OrphanReport),
    Stats(Box<QueueStats>),
    Page(JobPage),
    Found(Option<Box<JobDetail>>),
    Action(ActionReport),
    Deleted(DeleteReport),
    Removed(RemoveReport),
}

/// An error, in a comparable form.
#[derive(Debug, Clone, PartialEq)]
enum Refusal {
    NotRegistered,
    Rejected,
    /// Unavailable, an invalid reply, or anything else: never expected here.
    Failed(String),
}

type Outcome = Result<Reply, Refusal>;

fn refusal(error: BackendError) -> Refusal {
    match error {
        BackendError::NotRegistered { .. } => Refusal::NotRegistered,
        BackendError::Rejected(_) => Refusal::Rejected,
        other => Refusal::Failed(other.to_string()),
    }
}

async fn apply(backend: &dyn QueueBackend, queue: &QueueName, call: &Call) -> Outcome {
    let result = match call {
        Call::Nothing(_) => Ok(Reply::Nothing),
        Call::Push(jobs) => backend.push(queue, jobs).await.map(Reply::Flags),
        Call::Schedule(jobs) => backend.schedule(queue, jobs).await.map(Reply::Flags),
        Call::Register(c, now, mode) => backend
            .register(queue, c, *now, *mode)
            .await
            .map(Reply::Flag),
        Call::EnqueueDue(now, max) => backend.enqueue_due(queue, *now, *max).await.map(Reply::Due),
        Call::Take(c, max) => backend
            .take_and_peek(queue, c, *max, 0.0)
            .await
            .map(|r| Reply::Taken(r.jobs, r.scheduled)),
        Call::Ack(c, ids, now) => backend.ack(queue, c, ids, *now).await.map(Reply::Flags),
        Call::Retry(c, jobs, now) => backend.retry(queue, c, jobs, *now).await.map(Reply::Flags),
        Call::Kill(c, jobs, now) => backend.kill(queue, c, jobs, *now).await.map(Reply::Flags),
        Call::GiveBack(c, ids) => backend.give_back(queue, c, ids).await.map(Reply::Count),
        Call::RequeueOrphans(sweep) => backend
            .requeue_orphans(queue, *sweep)
            .await
            .map(Reply::Orphans),
        Call::TrimDead(trim) => backend.trim_dead(queue, *trim).await.map(Reply::Count),
        Call::Unregister(c) => backend.unregister(queue, c).await.map(Reply::Flag),
        Call::Pause(paused) => backend.set_paused(queue, *paused).await.map(Reply::Flag),
        Call::Stats(now, minutes) => backend
            .stats(queue, *now, *minutes)
            .await
            .map(|s| Reply::Stats(Box::new(s))),
        Call::Page(page) => backend.jobs(queue, *page).await.map(Reply::Page),
        Call::Find(id) => backend
            .find_job(queue, id)
            .await
            .map(|found| Reply::Found(found.map(Box::new))),
        Call::RetryDead(sel) => backend.retry_dead(queue, sel).await.map(Reply::Action),
        Call::RunScheduled(sel) => backend.run_scheduled(queue, sel).await.map(Reply::Action),
        Call::Delete(ids) => backend.delete_jobs(queue, ids).await.map(Reply::Deleted),
        Call::Purge(state, max) => backend.purge(queue, *state, *max).await.map(Reply::Count),
        Call::RemoveConsumer(c, before) => backend
            .remove_consumer(queue, c.as_str(), *before)
            .await
            .map(Reply::Removed),
    };
    result.map_err(refusal)
}

/// The suite's side of a case: the clock and who has crashed.
struct Harness {
    clock: f64,
    /// Whether the backend has the admin operations (a backend that answers
    /// `Unsupported` to them is checked on the others only).
    admin: bool,
    crashed: [bool; CONSUMERS as usize],
    kills: u32,
}

/// The error message numbered `n`: a 1,024-byte one (too long for Redis's compact hash
/// encoding) when `n % 4 == 3`.
fn error_message(n: u8) -> String {
    let message = format!("run failed: error #{n}");
    if n % 4 == 3 {
        format!("{message} {}", "x".repeat(1023 - message.len()))
    } else {
        message
    }
}

fn job_bytes(id: &str, payload: u8) -> Vec<u8> {
    Job::new(format!("payload-{payload}").into_bytes())
        .with_id(id)
        .encode()
}

/// The model's stored job with its attempt + 1 (a fresh job at attempt 1 when there is
/// none or it does not decode).
fn bumped(model: &QueueSnapshot, id: &str) -> Vec<u8> {
    let job = model
        .data
        .get(id)
        .and_then(|bytes| Job::decode(bytes).ok())
        .unwrap_or_else(|| Job::new(Vec::new()).with_id(id));
    let attempt = job.attempt.saturating_add(1);
    job.with_attempt(attempt).encode()
}

impl Harness {
    fn resolve(&self, model: &QueueSnapshot, consumer: ConsumerRef, pick: Pick) -> String {
        match pick {
            Pick::Job(job) => job.id(),
            Pick::Owned(n) => {
                let nth = |set: &BTreeSet<String>| {
                    set.iter().nth(usize::from(n) % set.len().max(1)).cloned()
                };
                model
                    .inflight
                    .get(consumer.id().as_str())
                    .and_then(nth)
                    .or_else(|| nth(&model.all_inflight()))
                    .unwrap_or_else(|| JobRef(n % JOB_IDS).id())
            }
        }
    }

    /// Turns an operation into a call (or a change of the suite's own state).
    fn call(&mut self, model: &QueueSnapshot, op: &Op) -> Call {
        let now = self.clock;
        match op {
            Op::Push { jobs } => Call::Push(
                jobs.iter()
                    .map(|(job, payload)| EncodedJob {
                        id: job.id(),
                        data: job_bytes(&job.id(), *payload),
                    })
                    .collect(),
            ),
            Op::Schedule { jobs } => Call::Schedule(
                jobs.iter()
                    .map(|(job, payload, offset)| ScheduledJob {
                        job: EncodedJob {
                            id: job.id(),
                            data: job_bytes(&job.id(), *payload),
                        },
                        at: now + offset,
                    })
                    .collect(),
            ),
            Op::Join { consumer } => {
                self.crashed[consumer.index()] = false;
                Call::Register(consumer.id(), now, Registration::Join)
            }
            Op::Heartbeat { consumer } => {
                if self.crashed[consumer.index()] {
                    Call::Nothing("the consumer has crashed")
                } else {
                    Call::Register(consumer.id(), now, Registration::Heartbeat)
                }
            }
            Op::Crash { consumer } => {
                self.crashed[consumer.index()] = true;
                Call::Nothing("the consumer stops heartbeating")
            }
            Op::Advance { secs } => {
                self.clock += secs;
                Call::Nothing("the clock moves")
            }
            Op::EnqueueDue { max } => Call::EnqueueDue(now, *max),
            Op::Take { consumer, max } => Call::Take(consumer.id(), *max),
            Op::Ack { consumer, jobs } => Call::Ack(
                consumer.id(),
                jobs.iter()
                    .map(|p| self.resolve(model, *consumer, *p))
                    .collect(),
                now,
            ),
            Op::Retry { consumer, jobs } => Call::Retry(
                consumer.id(),
                jobs.iter()
                    .map(|(p, offset, error)| {
                        let id = self.resolve(model, *consumer, *p);
                        RetryJob {
                            error: error.map(error_message),
                            data: bumped(model, &id),
                            id,
                            at: now + offset,
                        }
                    })
                    .collect(),
                now,
            ),
            Op::Kill {
                consumer,
                jobs,
                keep_data,
            } => {
                self.kills += 1;
                let reason = format!("killed by the suite (kill #{})", self.kills);
                Call::Kill(
                    consumer.id(),
                    jobs.iter()
                        .map(|p| {
                            let id = self.resolve(model, *consumer, *p);
                            KillJob {
                                data: (!keep_data).then(|| bumped(model, &id)),
                                id,
                                reason: reason.clone(),
                            }
                        })
                        .collect(),
                    now,
                )
            }
            Op::GiveBack { consumer, jobs } => Call::GiveBack(
                consumer.id(),
                jobs.iter()
                    .map(|p| self.resolve(model, *consumer, *p))
                    .collect(),
            ),
            Op::RequeueOrphans {
                timeout,
                max_jobs,
                max_orphan_requeues,
            } => Call::RequeueOrphans(OrphanSweep {
                expired_before: now - timeout,
                max_jobs: *max_jobs,
                max_orphan_requeues: *max_orphan_requeues,
                now,
            }),
            Op::TrimDead {
                older_than,
                keep_at_most,
                max_jobs,
            } => Call::TrimDead(DeadTrim {
                killed_before: now - older_than,
                keep_at_most: *keep_at_most,
                max_jobs: *max_jobs,
            }),
            Op::Unregister { consumer } => Call::Unregister(consumer.id()),
            Op::Admin(_) if !self.admin => Call::Nothing("the backend has no admin operations"),
            Op::Admin(op) => {
                let ids = |jobs: &[JobRef]| jobs.iter().map(|j| j.id()).collect::<Vec<_>>();
                let selection = |jobs: &[JobRef], n: usize| {
                    if jobs.is_empty() {
                        Selection::Oldest(n)
                    } else {
                        Selection::Ids(ids(jobs))
                    }
                };
                match op {
                    AdminOp::Pause(paused) => Call::Pause(*paused),
                    AdminOp::Stats(minutes) => Call::Stats(now.max(0.0), *minutes),
                    AdminOp::Page(state, cursor, limit) => Call::Page(PageRequest {
                        state: *state,
                        cursor: *cursor,
                        limit: *limit,
                        preview: 4,
                    }),
                    AdminOp::Find(job) => Call::Find(job.id()),
                    AdminOp::RetryDead(jobs, n) => Call::RetryDead(selection(jobs, *n)),
                    AdminOp::RunScheduled(jobs, n) => Call::RunScheduled(selection(jobs, *n)),
                    AdminOp::Delete(jobs) => Call::Delete(ids(jobs)),
                    AdminOp::Purge(state, n) => Call::Purge(*state, *n),
                    AdminOp::RemoveConsumer(c, timeout) => {
                        Call::RemoveConsumer(c.id(), now - timeout)
                    }
                }
            }
        }
    }
}

/// One case: a fresh backend and model, the operations in order. On failure returns the
/// failing step's index (`None` before the first) and what went wrong.
async fn run_case<B, F, Fut>(
    factory: &F,
    queue: &QueueName,
    ops: &[Op],
    mut trace: Option<&mut Vec<String>>,
    coverage: &mut BTreeMap<&'static str, u64>,
) -> Result<(), (Option<usize>, String)>
where
    B: QueueBackend,
    F: Fn() -> Fut,
    Fut: Future<Output = B>,
{
    let backend = factory().await;
    let backend: &dyn QueueBackend = &backend;
    let model = MemoryBackend::new();
    let mut before = backend
        .snapshot(queue)
        .await
        .map_err(|e| (None, format!("snapshot failed: {e}")))?;
    if before != QueueSnapshot::default() {
        return Err((
            None,
            format!("the fresh queue {queue} is not empty: {before:?}"),
        ));
    }
    let admin = !matches!(
        backend.stats(queue, 0.0, 0).await,
        Err(BackendError::Unsupported(_))
    );
    let mut harness = Harness {
        clock: 0.0,
        admin,
        crashed: [false; CONSUMERS as usize],
        kills: 0,
    };
    for (i, op) in ops.iter().enumerate() {
        let model_before = model.snapshot(queue);
        let call = harness.call(&model_before, op);
        // The line goes in first, so that a panic in the backend points at this step.
        if let Some(trace) = trace.as_deref_mut() {
            trace.push(format!("{i:>3}: {call}"));
        }
        let expected = apply(&model, queue, &call).await;
        let mut got = apply(backend, queue, &call).await;
        // A backend may keep the provided `take_and_peek`, which does not look.
        if let (Ok(Reply::Taken(_, peek @ ScheduledPeek::Unknown)), Ok(Reply::Taken(_, model))) =
            (&mut got, &expected)
        {
            *peek = *model;
        }
        if let Some(line) = trace.as_deref_mut().and_then(|trace| trace.last_mut()) {
            line.push_str(&format!(" -> {got:?}"));
        }
        let fail = |message: String| (Some(i), message);
        if let Err(Refusal::Failed(error)) = &got {
            return Err(fail(format!("{call} failed: {error}")));
        }
        let after = backend
            .snapshot(queue)
            .await
            .map_err(|e| fail(format!("snapshot after {call} failed: {e}")))?;
        let model_after = model.snapshot(queue);
        for path in paths(&call, &expected, &model_before, &model_after) {
            *coverage.entry(path).or_insert(0) += 1;
        }
        check_invariants(&model_before, &model_after, &call, &expected)
            .map_err(|e| fail(format!("the reference model broke an invariant: {e}")))?;
        check_invariants(&before, &after, &call, &got).map_err(fail)?;
        if got != expected {
            return Err(fail(format!(
                "{call} replied {got:?}, the model replied {expected:?}"
            )));
        }
        if let Some(diff) = diff(&model_after, &after) {
            return Err(fail(format!(
                "after {call} the state differs from the model:\n{diff}"
            )));
        }
        before = after;
    }
    Ok(())
}

/// Where each ID is: its places, by name.
fn places(snap: &QueueSnapshot) -> BTreeMap<&str, Vec<String>> {
    let mut at: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for id in &snap.active {
        at.entry(id).or_default().push("active".to_owned());
    }
    for (id, _) in &snap.scheduled {
        at.entry(id).or_default().push("scheduled".to_owned());
    }
    for (id, _) in &snap.dead {
        at.entry(id).or_default().push("dead".to_owned());
    }
    for (consumer, ids) in &snap.inflight {
        for id in ids {
            at.entry(id)
                .or_default()
                .push(format!("in flight at {consumer}"));
        }
    }
    at
}

fn owned_before(before: &QueueSnapshot, consumer: &ConsumerId, id: &str) -> bool {
    before
        .inflight
        .get(consumer.as_str())
        .is_some_and(|set| set.contains(id))
}

fn consumer_score(snap: &QueueSnapshot, consumer: &str) -> Option<f64> {
    snap.consumers
        .iter()
        .find(|(c, _)| c == consumer)
        .map(|(_, score)| *score)
}

/// The invariants of the module docs, on one step.
fn check_invariants(
    before: &QueueSnapshot,
    after: &QueueSnapshot,
    call: &Call,
    outcome: &Outcome,
) -> Result<(), String> {
    // 1. One place per job.
    let at = places(after);
    for (id, found) in &at {
        if !after.data.contains_key(*id) {
            return Err(format!("{id} is in {found:?} but has no data"));
        }
        if found.len() > 1 {
            return Err(format!("{id} is in {} places: {found:?}", found.len()));
        }
    }
    for id in after.data.keys() {
        if !at.contains_key(id.as_str()) {
            return Err(format!(
                "{id} has data but is nowhere (not active, scheduled, dead or in flight): lost"
            ));
        }
    }
    // 2. No job lost or duplicated.
    for id in before.data.keys() {
        if after.data.contains_key(id) {
            continue;
        }
        let may_go = match call {
            Call::Ack(consumer, ids, _) => ids.contains(id) && owned_before(before, consumer, id),
            Call::TrimDead(_) => before.dead.iter().any(|(dead, _)| dead == id),
            Call::Delete(ids) => ids.contains(id) && !before.all_inflight().contains(id),
            Call::Purge(JobState::Active, _) => before.active.contains(id),
            Call::Purge(JobState::Scheduled, _) => before.scheduled.iter().any(|(s, _)| s == id),
            Call::Purge(JobState::Dead, _) => before.dead.iter().any(|(d, _)| d == id),
            _ => false,
        };
        if !may_go {
            return Err(format!("{id} was lost: its data is gone after {call}"));
        }
    }
    for id in after.data.keys() {
        if before.data.contains_key(id) {
            continue;
        }
        let may_come = match call {
            Call::Push(jobs) => jobs.iter().any(|j| &j.id == id),
            Call::Schedule(jobs) => jobs.iter().any(|j| &j.job.id == id),
            _ => false,
        };
        if !may_come {
            return Err(format!("{id} appeared from nowhere after {call}"));
        }
    }
    // 3. Attempts never decrease.
    for (id, bytes) in &after.data {
        let now = Job::decode(bytes)
            .map_err(|e| format!("the stored data of {id} does not decode: {e}"))?;
        if let Some(old) = before.data.get(id) {
            let old = Job::decode(old)
                .map_err(|e| format!("the stored data of {id} does not decode: {e}"))?;
            if now.attempt < old.attempt {
                return Err(format!(
                    "the attempt of {id} went down from {} to {}",
                    old.attempt, now.attempt
                ));
            }
        }
    }
    // 4. An ID is unique while its job exists.
    for (id, old) in &before.data {
        let Some(new) = after.data.get(id) else {
            continue;
        };
        if new == old {
            continue;
        }
        let may_change = match call {
            Call::Retry(consumer, jobs, _) => {
                jobs.iter().any(|j| &j.id == id) && owned_before(before, consumer, id)
            }
            Call::Kill(consumer, jobs, _) => {
                jobs.iter().any(|j| &j.id == id && j.data.is_some())
                    && owned_before(before, consumer, id)
            }
            _ => false,
        };
        if !may_change {
            return Err(format!("the data of {id} was overwritten by {call}"));
        }
    }
    let batch: Option<Vec<&str>> = match call {
        Call::Push(jobs) => Some(jobs.iter().map(|j| j.id.as_str()).collect()),
        Call::Schedule(jobs) => Some(jobs.iter().map(|j| j.job.id.as_str()).collect()),
        _ => None,
    };
    if let (Some(batch), Ok(Reply::Flags(flags))) = (batch, outcome) {
        let mut seen = BTreeSet::new();
        for (id, flag) in batch.iter().zip(flags) {
            let new = !before.data.contains_key(*id) && seen.insert(*id);
            if *flag != new {
                return Err(format!(
                    "{call} reported {id} as {} but it {}",
                    if *flag { "new" } else { "existing" },
                    if new { "was new" } else { "existed" }
                ));
            }
        }
    }
    // 5. Take never serves an unregistered consumer.
    if let Call::Take(consumer, _) = call {
        if consumer_score(before, consumer.as_str()).is_none() {
            if outcome != &Err(Refusal::NotRegistered) {
                return Err(format!(
                    "{call} by an unregistered consumer returned {outcome:?}, not \
                     NotRegistered"
                ));
            }
            if before != after {
                return Err(format!(
                    "{call} by an unregistered consumer changed the queue"
                ));
            }
        }
        if let Ok(Reply::Taken(jobs, _)) = outcome {
            for job in jobs {
                if !after
                    .inflight
                    .get(consumer.as_str())
                    .is_some_and(|set| set.contains(&job.id))
                {
                    return Err(format!(
                        "{call} returned {} but it is not in {consumer}'s in-flight set",
                        job.id
                    ));
                }
            }
        }
    }
    // 6. Orphans only move from expired consumers.
    if let Call::RequeueOrphans(sweep) = call {
        for (consumer, score) in &before.consumers {
            let expired = *score <= sweep.expired_before;
            let removed = consumer_score(after, consumer).is_none();
            let old = before.inflight.get(consumer);
            let new = after.inflight.get(consumer);
            let lost_jobs = old.is_some_and(|old| new.is_none_or(|new| !old.is_subset(new)));
            if !expired && (removed || lost_jobs) {
                return Err(format!(
                    "{call} touched consumer {consumer}, whose heartbeat at {score} has not \
                     expired"
                ));
            }
        }
    }
    // 7. A last error belongs to a job waiting for a run.
    for id in after.errors.keys() {
        if !after.data.contains_key(id) {
            return Err(format!("{id} has a last error but no data after {call}"));
        }
        if after.dead.iter().any(|(dead, _)| dead == id) {
            return Err(format!("{id} is dead but kept its last error after {call}"));
        }
    }
    let ids: BTreeSet<&String> = before.errors.keys().chain(after.errors.keys()).collect();
    for id in ids {
        let (old, new) = (before.errors.get(id), after.errors.get(id));
        if old == new {
            continue;
        }
        let owned = |consumer: &ConsumerId| owned_before(before, consumer, id);
        let allowed = match call {
            // The first job of the batch with this ID is the one retried.
            Call::Retry(consumer, jobs, _) => {
                owned(consumer)
                    && jobs
                        .iter()
                        .find(|j| &j.id == id)
                        .is_some_and(|job| job.error.as_ref() == new)
            }
            Call::Ack(consumer, ids, _) => new.is_none() && ids.contains(id) && owned(consumer),
            // Deleted or purged with its job.
            Call::Delete(_) | Call::Purge(..) => new.is_none() && !after.data.contains_key(id),
            Call::Kill(consumer, jobs, _) => {
                new.is_none() && jobs.iter().any(|j| &j.id == id) && owned(consumer)
            }
            Call::RequeueOrphans(_) => new.is_none() && after.dead.iter().any(|(d, _)| d == id),
            Call::TrimDead(_) => new.is_none(),
            _ => false,
        };
        if !allowed {
            return Err(format!(
                "the last error of {id} went from {old:?} to {new:?} by {call}"
            ));
        }
    }
    Ok(())
}

fn show_job(bytes: Option<&Vec<u8>>) -> String {
    match bytes {
        None => "none".to_owned(),
        Some(bytes) => match Job::decode(bytes) {
            Ok(job) => format!(
                "{:?} attempt {}",
                String::from_utf8_lossy(&job.data),
                job.attempt
            ),
            Err(e) => format!("{} undecodable bytes ({e})", bytes.len()),
        },
    }
}

/// What differs between the model's snapshot and the backend's, one line per field.
fn diff(model: &QueueSnapshot, got: &QueueSnapshot) -> Option<String> {
    let mut lines = Vec::new();
    let mut field = |name: &str, m: String, g: String| {
        if m != g {
            lines.push(format!("  {name}: model {m}, backend {g}"));
        }
    };
    field(
        "active",
        format!("{:?}", model.active),
        format!("{:?}", got.active),
    );
    field(
        "scheduled",
        format!("{:?}", model.scheduled),
        format!("{:?}", got.scheduled),
    );
    field(
        "dead",
        format!("{:?}", model.dead),
        format!("{:?}", got.dead),
    );
    field(
        "consumers",
        format!("{:?}", model.consumers),
        format!("{:?}", got.consumers),
    );
    field(
        "in flight",
        format!("{:?}", model.inflight),
        format!("{:?}", got.inflight),
    );
    field("signal", model.signal.to_string(), got.signal.to_string());
    field(
        "reasons",
        format!("{:?}", model.reasons),
        format!("{:?}", got.reasons),
    );
    field(
        "orphaned",
        format!("{:?}", model.orphaned),
        format!("{:?}", got.orphaned),
    );
    field(
        "errors",
        format!("{:?}", model.errors),
        format!("{:?}", got.errors),
    );
    let ids: BTreeSet<&String> = model.data.keys().chain(got.data.keys()).collect();
    for id in ids {
        let (m, g) = (model.data.get(id), got.data.get(id));
        if m != g {
            lines.push(format!(
                "  data of {id}: model {}, backend {}",
                show_job(m),
                show_job(g)
            ));
        }
    }
    // Scores compare as numbers (a -0 from a store equals 0): a difference that only
    // shows in the text above is none.
    if model == got {
        None
    } else if lines.is_empty() {
        Some("  (a difference that the text does not show)".to_owned())
    } else {
        Some(lines.join("\n"))
    }
}
