//! Backend-agnostic checks of the `# Behavior` docs of [`QueueBackend`] and
//! [`Waiter`](curlyq_core::Waiter).
//!
//! Each check runs a short scenario on its own fresh queue, named `prefix + check name`,
//! using only the trait's methods, and reports a [`ContractFailure`] (never a panic) when
//! the backend does something the contract forbids. Run them all with
//! [`check_backend`], or one by one from [`CHECKS`] (one test each):
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! use curlyq_testkit::{contract, MemoryBackend};
//!
//! let backend = MemoryBackend::new();
//! contract::check_backend(&backend, "contract-doc:").await.unwrap();
//! # });
//! ```
//!
//! On a shared store, give each run its own prefix (a random one), since a check assumes
//! its queue starts empty. On Redis Cluster, put a hash tag in the prefix
//! (`"{run-42}:"`) so that each queue lives in one slot. Times are small fixed numbers
//! (the store never reads a clock); the waiter checks use real timeouts of at most
//! [`SHORT_WAIT`] (and [`LONG_WAIT`] when a wake-up is expected).

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use curlyq_core::{
    BackendError, ConsumerId, DeadTrim, EncodedJob, KillJob, OrphanSweep, QueueBackend, QueueName,
    Registration, RetryJob, ScheduledJob, TakenJob,
};

/// The timeout of a wait that is expected to find no signal.
pub const SHORT_WAIT: Duration = Duration::from_millis(200);

/// The timeout of a wait that is expected to see the signal.
pub const LONG_WAIT: Duration = Duration::from_secs(5);

/// A broken rule: which check, and what the backend did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractFailure {
    /// The check's name (an entry of [`CHECKS`]).
    pub check: &'static str,
    /// The queue the check ran on.
    pub queue: String,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for ContractFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "contract check `{}` failed on queue {:?}: {}",
            self.check, self.queue, self.message
        )
    }
}

impl std::error::Error for ContractFailure {}

/// The future a check returns.
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// One scenario of the contract.
#[derive(Clone, Copy)]
pub struct Check {
    /// A short unique name (also the queue suffix).
    pub name: &'static str,
    /// The rule it checks, in one line.
    pub rule: &'static str,
    scenario: for<'a> fn(&'a dyn QueueBackend, &'a QueueName) -> CheckFuture<'a>,
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Check")
            .field("name", &self.name)
            .field("rule", &self.rule)
            .finish()
    }
}

impl Check {
    /// Runs the check on the queue `prefix + name`.
    pub async fn run(
        &self,
        backend: &dyn QueueBackend,
        queue_prefix: &str,
    ) -> Result<(), ContractFailure> {
        let name = format!("{queue_prefix}{}", self.name);
        let fail = |message: String| ContractFailure {
            check: self.name,
            queue: name.clone(),
            message,
        };
        let queue = QueueName::new(name.clone()).map_err(|e| fail(e.to_string()))?;
        (self.scenario)(backend, &queue).await.map_err(fail)
    }
}

/// Runs every check in [`CHECKS`], in order; stops at the first failure.
pub async fn check_backend(
    backend: &dyn QueueBackend,
    queue_prefix: &str,
) -> Result<(), ContractFailure> {
    for check in CHECKS {
        check.run(backend, queue_prefix).await?;
    }
    Ok(())
}

/// Runs every check in [`CHECKS`] and returns all the failures.
pub async fn check_backend_all(
    backend: &dyn QueueBackend,
    queue_prefix: &str,
) -> Vec<ContractFailure> {
    let mut failures = Vec::new();
    for check in CHECKS {
        if let Err(failure) = check.run(backend, queue_prefix).await {
            failures.push(failure);
        }
    }
    failures
}

macro_rules! checks {
    ($($name:ident: $rule:literal,)*) => {
        /// Every check, in the order [`check_backend`] runs them.
        pub const CHECKS: &[Check] = &[
            $(Check {
                name: stringify!($name),
                rule: $rule,
                scenario: |backend, queue| Box::pin($name(backend, queue)),
            },)*
        ];
    };
}

checks! {
    push_reports_new_and_keeps_order: "push appends new jobs in order and reports each as new",
    push_deduplicates_existing_ids: "push leaves an existing ID (active, scheduled, in flight, dead) untouched",
    push_batch_first_duplicate_wins: "two jobs with one ID in a batch: the first wins",
    push_sets_signal: "push sets the signal; wait returns true at once and does not clear it",
    schedule_deduplicates_and_signals: "schedule stores new jobs only and sets the signal when any is new",
    register_join_and_heartbeat: "Join always registers; Heartbeat refreshes only a registered consumer",
    take_requires_registration: "take by an unregistered consumer fails with NotRegistered and takes nothing",
    take_moves_head_and_clears_signal: "take moves up to max from the head; fewer than max clears the signal",
    wait_wakes_on_push: "a wait in progress sees a push",
    enqueue_due_moves_lowest_first: "enqueue_due moves due jobs lowest score first, negative scores included",
    enqueue_due_reports_next_due: "enqueue_due removes exactly what it moved and reports the next score",
    ack_only_owned: "ack removes owned jobs and their data; others are untouched",
    retry_only_owned: "retry reschedules owned jobs with new data; others are untouched",
    kill_only_owned: "kill moves owned jobs to the dead set; others are untouched",
    give_back_only_owned: "give_back returns owned jobs to the tail and sets the signal",
    requeue_orphans_oldest_first_within_max: "requeue_orphans serves the oldest consumers first, up to max_jobs",
    requeue_orphans_spares_live_consumers: "requeue_orphans never touches a consumer heartbeating after expired_before",
    requeue_orphans_kills_crash_loops: "a job orphaned max_orphan_requeues times is killed, not requeued",
    orphan_count_cleared_when_job_ends: "ack ends a job's orphan count (a new job with that ID starts from zero)",
    trim_dead_by_age_and_count: "trim_dead removes jobs killed before a time and the oldest beyond a count, within max_jobs",
    unregister_only_when_idle: "unregister removes a consumer holding nothing, and only such a consumer",
}

// ---- helpers ------------------------------------------------------------------------

type Outcome = Result<(), String>;

/// Adds the operation's name to a backend error.
trait Context<T> {
    fn ctx(self, what: &str) -> Result<T, String>;
}

impl<T> Context<T> for Result<T, BackendError> {
    fn ctx(self, what: &str) -> Result<T, String> {
        self.map_err(|e| format!("{what} failed: {e}"))
    }
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

macro_rules! ensure_eq {
    ($left:expr, $right:expr, $($fmt:tt)+) => {
        match (&$left, &$right) {
            (left, right) => {
                if left != right {
                    return Err(format!(
                        "{}: got {:?}, expected {:?}",
                        format!($($fmt)+),
                        left,
                        right
                    ));
                }
            }
        }
    };
}

fn job(id: &str, data: &str) -> EncodedJob {
    EncodedJob {
        id: id.to_owned(),
        data: data.as_bytes().to_vec(),
    }
}

fn jobs(ids: &[&str]) -> Vec<EncodedJob> {
    ids.iter()
        .map(|id| job(id, &format!("data-{id}")))
        .collect()
}

fn strings(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

fn consumer(name: &str) -> ConsumerId {
    ConsumerId::from_string(name)
}

fn ids_of(taken: &[TakenJob]) -> Vec<String> {
    taken.iter().map(|t| t.id.clone()).collect()
}

fn set(ids: &[String]) -> BTreeSet<String> {
    ids.iter().cloned().collect()
}

async fn join(b: &dyn QueueBackend, q: &QueueName, c: &ConsumerId, now: f64) -> Outcome {
    let joined = b
        .register(q, c, now, Registration::Join)
        .await
        .ctx("register(Join)")?;
    ensure!(joined, "register(Join) of {c} returned false");
    Ok(())
}

async fn heartbeat(
    b: &dyn QueueBackend,
    q: &QueueName,
    c: &ConsumerId,
    now: f64,
) -> Result<bool, String> {
    b.register(q, c, now, Registration::Heartbeat)
        .await
        .ctx("register(Heartbeat)")
}

/// Takes everything in the active list with a fresh consumer, then unregisters it
/// (the jobs stay in its in-flight set).
async fn drain(b: &dyn QueueBackend, q: &QueueName, name: &str) -> Result<Vec<TakenJob>, String> {
    let drainer = consumer(name);
    join(b, q, &drainer, 0.0).await?;
    b.take(q, &drainer, 1000)
        .await
        .ctx("take (draining the active list)")
}

async fn signal_is_set(b: &dyn QueueBackend, q: &QueueName) -> Result<bool, String> {
    let mut waiter = b.waiter(q).await.ctx("waiter")?;
    waiter.wait(SHORT_WAIT).await.ctx("wait")
}

/// Whether `id` exists in the queue (a push of it is refused). Pushing a missing ID
/// creates it, so this is only used on IDs expected to exist.
async fn exists(b: &dyn QueueBackend, q: &QueueName, id: &str) -> Result<bool, String> {
    let added = b.push(q, &[job(id, "probe")]).await.ctx("push (probe)")?;
    Ok(!added.first().copied().unwrap_or(false))
}

// ---- push -----------------------------------------------------------------------------

async fn push_reports_new_and_keeps_order(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    let added = b.push(q, &jobs(&["a", "b", "c"])).await.ctx("push")?;
    ensure_eq!(added, vec![true, true, true], "push of three new jobs");
    let added = b.push(q, &[]).await.ctx("push of nothing")?;
    ensure!(added.is_empty(), "push of no jobs returned {added:?}");
    let taken = drain(b, q, "reader").await?;
    ensure_eq!(
        ids_of(&taken),
        strings(&["a", "b", "c"]),
        "IDs taken after push"
    );
    for t in &taken {
        ensure_eq!(
            t.data.as_deref(),
            Some(format!("data-{}", t.id).as_bytes()),
            "data of job {}",
            t.id
        );
    }
    Ok(())
}

async fn push_deduplicates_existing_ids(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    let c = consumer("worker");
    join(b, q, &c, 10.0).await?;
    // Active.
    b.push(q, &[job("act", "first")]).await.ctx("push")?;
    let added = b
        .push(q, &[job("act", "second"), job("new", "x")])
        .await
        .ctx("push")?;
    ensure_eq!(
        added,
        vec![false, true],
        "push of an active ID then a new one"
    );
    // In flight.
    let taken = b.take(q, &c, 1).await.ctx("take")?;
    ensure_eq!(ids_of(&taken), strings(&["act"]), "first take");
    ensure_eq!(
        taken[0].data.as_deref(),
        Some(&b"first"[..]),
        "data of the deduplicated job"
    );
    let added = b.push(q, &[job("act", "third")]).await.ctx("push")?;
    ensure_eq!(added, vec![false], "push of an in-flight ID");
    // Scheduled.
    b.schedule(
        q,
        &[ScheduledJob {
            job: job("sch", "s"),
            at: 1000.0,
        }],
    )
    .await
    .ctx("schedule")?;
    ensure_eq!(
        b.push(q, &[job("sch", "p")]).await.ctx("push")?,
        vec![false],
        "push of a scheduled ID"
    );
    // Dead.
    let kill = KillJob {
        id: "act".into(),
        data: None,
        reason: "test".into(),
    };
    ensure_eq!(
        b.kill(q, &c, &[kill], 11.0).await.ctx("kill")?,
        vec![true],
        "kill of an owned job"
    );
    ensure_eq!(
        b.push(q, &[job("act", "fourth")]).await.ctx("push")?,
        vec![false],
        "push of a dead ID"
    );
    // The active list holds only "new" (nothing was appended by the refused pushes).
    let taken = b.take(q, &c, 10).await.ctx("take")?;
    ensure_eq!(
        ids_of(&taken),
        strings(&["new"]),
        "active list after refused pushes"
    );
    // Acked: the ID is free again.
    ensure_eq!(
        b.ack(q, &c, &strings(&["new"])).await.ctx("ack")?,
        vec![true],
        "ack"
    );
    ensure_eq!(
        b.push(q, &[job("new", "again")]).await.ctx("push")?,
        vec![true],
        "push of an acked ID"
    );
    Ok(())
}

async fn push_batch_first_duplicate_wins(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    let added = b
        .push(q, &[job("x", "one"), job("y", "y"), job("x", "two")])
        .await
        .ctx("push")?;
    ensure_eq!(added, vec![true, true, false], "push with a repeated ID");
    let sched = [
        ScheduledJob {
            job: job("s", "one"),
            at: 5.0,
        },
        ScheduledJob {
            job: job("s", "two"),
            at: 1.0,
        },
    ];
    ensure_eq!(
        b.schedule(q, &sched).await.ctx("schedule")?,
        vec![true, false],
        "schedule with a repeated ID"
    );
    let due = b.enqueue_due(q, 3.0, 10).await.ctx("enqueue_due")?;
    ensure_eq!(
        due.moved,
        0,
        "jobs due at 3 (the second schedule must not have moved s to 1)"
    );
    b.enqueue_due(q, 5.0, 10).await.ctx("enqueue_due")?;
    let taken = drain(b, q, "reader").await?;
    ensure_eq!(ids_of(&taken), strings(&["x", "y", "s"]), "active list");
    ensure_eq!(taken[0].data.as_deref(), Some(&b"one"[..]), "data of x");
    ensure_eq!(taken[2].data.as_deref(), Some(&b"one"[..]), "data of s");
    Ok(())
}

async fn push_sets_signal(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    ensure!(
        !signal_is_set(b, q).await?,
        "wait on a fresh queue returned true"
    );
    b.push(q, &jobs(&["a"])).await.ctx("push")?;
    let mut waiter = b.waiter(q).await.ctx("waiter")?;
    for round in 1..=2 {
        let seen = waiter.wait(LONG_WAIT).await.ctx("wait")?;
        ensure!(seen, "wait #{round} after a push returned false");
    }
    ensure!(
        signal_is_set(b, q).await?,
        "a second waiter did not see the signal"
    );
    // A refused push sets no signal.
    drain(b, q, "reader").await?;
    ensure!(
        !signal_is_set(b, q).await?,
        "signal still set after the active list was drained"
    );
    b.push(q, &jobs(&["a"])).await.ctx("push")?;
    ensure!(
        !signal_is_set(b, q).await?,
        "a push that added nothing set the signal"
    );
    Ok(())
}

// ---- schedule, register -------------------------------------------------------------

async fn schedule_deduplicates_and_signals(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    let sched = [
        ScheduledJob {
            job: job("s1", "a"),
            at: 50.0,
        },
        ScheduledJob {
            job: job("s2", "b"),
            at: 40.0,
        },
    ];
    ensure_eq!(
        b.schedule(q, &sched).await.ctx("schedule")?,
        vec![true, true],
        "schedule of new jobs"
    );
    ensure!(
        signal_is_set(b, q).await?,
        "schedule of new jobs did not set the signal (idle consumers must wake to see the new due time)"
    );
    b.push(q, &jobs(&["p"])).await.ctx("push")?;
    let again = [
        ScheduledJob {
            job: job("s1", "changed"),
            at: 1.0,
        },
        ScheduledJob {
            job: job("p", "changed"),
            at: 1.0,
        },
    ];
    ensure_eq!(
        b.schedule(q, &again).await.ctx("schedule")?,
        vec![false, false],
        "schedule of existing IDs"
    );
    let due = b.enqueue_due(q, 45.0, 10).await.ctx("enqueue_due")?;
    ensure_eq!(due.moved, 1, "jobs due at 45");
    ensure_eq!(due.next_due, Some(50.0), "next due time");
    let taken = drain(b, q, "reader").await?;
    ensure_eq!(ids_of(&taken), strings(&["p", "s2"]), "active list");
    ensure_eq!(taken[0].data.as_deref(), Some(&b"data-p"[..]), "data of p");
    Ok(())
}

async fn register_join_and_heartbeat(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    let c = consumer("c1");
    ensure!(
        !heartbeat(b, q, &c, 1.0).await?,
        "heartbeat of a never-registered consumer returned true"
    );
    // The failed heartbeat must not have registered it.
    b.push(q, &jobs(&["j"])).await.ctx("push")?;
    match b.take(q, &c, 1).await {
        Err(BackendError::NotRegistered { .. }) => {}
        other => {
            return Err(format!(
                "take after a failed heartbeat: expected NotRegistered, got {other:?}"
            ))
        }
    }
    join(b, q, &c, 10.0).await?;
    join(b, q, &c, 12.0).await?;
    ensure!(
        heartbeat(b, q, &c, 20.0).await?,
        "heartbeat of a registered consumer returned false"
    );
    // The score is the latest heartbeat: 20 is not expired before 19.
    let report = b
        .requeue_orphans(
            q,
            OrphanSweep {
                expired_before: 19.0,
                max_jobs: 10,
                max_orphan_requeues: 0,
                now: 30.0,
            },
        )
        .await
        .ctx("requeue_orphans")?;
    ensure_eq!(
        report.consumers_removed,
        0,
        "consumers removed at 19 after a heartbeat at 20"
    );
    let report = b
        .requeue_orphans(
            q,
            OrphanSweep {
                expired_before: 20.0,
                max_jobs: 10,
                max_orphan_requeues: 0,
                now: 30.0,
            },
        )
        .await
        .ctx("requeue_orphans")?;
    ensure_eq!(
        report.consumers_removed,
        1,
        "consumers removed at 20 (heartbeat at 20)"
    );
    ensure!(
        !heartbeat(b, q, &c, 31.0).await?,
        "heartbeat of a reaped consumer returned true"
    );
    join(b, q, &c, 32.0).await?;
    ensure!(
        heartbeat(b, q, &c, 33.0).await?,
        "heartbeat after rejoining returned false"
    );
    Ok(())
}

// ---- take, wait -----------------------------------------------------------------------

async fn take_requires_registration(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    b.push(q, &jobs(&["a", "b"])).await.ctx("push")?;
    let stranger = consumer("stranger");
    match b.take(q, &stranger, 10).await {
        Err(BackendError::NotRegistered { queue, consumer }) => {
            ensure_eq!(queue, q.as_str().to_owned(), "queue named in NotRegistered");
            ensure_eq!(
                consumer,
                stranger.as_str().to_owned(),
                "consumer named in NotRegistered"
            );
        }
        other => {
            return Err(format!(
                "take by an unregistered consumer: expected NotRegistered, got {other:?}"
            ))
        }
    }
    let taken = drain(b, q, "reader").await?;
    ensure_eq!(
        ids_of(&taken),
        strings(&["a", "b"]),
        "jobs left after the refused take"
    );
    ensure_eq!(
        b.ack(q, &stranger, &strings(&["a"])).await.ctx("ack")?,
        vec![false],
        "ack by the refused consumer"
    );
    Ok(())
}

async fn take_moves_head_and_clears_signal(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    let c = consumer("worker");
    join(b, q, &c, 1.0).await?;
    ensure!(
        b.take(q, &c, 5).await.ctx("take")?.is_empty(),
        "take from an empty queue returned jobs"
    );
    b.push(q, &jobs(&["a", "b", "c", "d"])).await.ctx("push")?;
    let taken = b.take(q, &c, 2).await.ctx("take")?;
    ensure_eq!(ids_of(&taken), strings(&["a", "b"]), "first take of 2");
    ensure!(
        signal_is_set(b, q).await?,
        "signal cleared by a take that got all it asked for"
    );
    let taken = b.take(q, &c, 2).await.ctx("take")?;
    ensure_eq!(ids_of(&taken), strings(&["c", "d"]), "second take of 2");
    // Exactly max were there: the signal may stay set; the next take finds fewer.
    let taken = b.take(q, &c, 2).await.ctx("take")?;
    ensure!(
        taken.is_empty(),
        "take from a drained queue returned {:?}",
        ids_of(&taken)
    );
    ensure!(
        !signal_is_set(b, q).await?,
        "signal still set after a take that found fewer than max"
    );
    b.push(q, &jobs(&["e"])).await.ctx("push")?;
    let taken = b.take(q, &c, 3).await.ctx("take")?;
    ensure_eq!(
        ids_of(&taken),
        strings(&["e"]),
        "take of 3 with one waiting"
    );
    ensure!(
        !signal_is_set(b, q).await?,
        "signal still set after a take that found fewer than max"
    );
    // Every taken job is owned by the consumer.
    let all = strings(&["a", "b", "c", "d", "e"]);
    ensure_eq!(
        b.ack(q, &c, &all).await.ctx("ack")?,
        vec![true; 5],
        "ack of every taken job"
    );
    Ok(())
}

async fn wait_wakes_on_push(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    let mut waiter = b.waiter(q).await.ctx("waiter")?;
    let waiting = waiter.wait(LONG_WAIT);
    let to_push = jobs(&["a"]);
    let pushing = b.push(q, &to_push);
    let (seen, pushed) = futures::future::join(waiting, pushing).await;
    ensure_eq!(pushed.ctx("push")?, vec![true], "push during a wait");
    ensure!(
        seen.ctx("wait")?,
        "a wait of {LONG_WAIT:?} did not see a push made while it waited"
    );
    Ok(())
}

// ---- enqueue_due ----------------------------------------------------------------------

async fn enqueue_due_moves_lowest_first(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    let sched: Vec<ScheduledJob> = [
        ("late", 30.0),
        ("neg", -5.0),
        ("mid", 10.0),
        ("zero", 0.0),
        ("future", 99.0),
    ]
    .iter()
    .map(|(id, at)| ScheduledJob {
        job: job(id, id),
        at: *at,
    })
    .collect();
    ensure_eq!(
        b.schedule(q, &sched).await.ctx("schedule")?,
        vec![true; 5],
        "schedule"
    );
    ensure!(
        signal_is_set(b, q).await?,
        "schedule of new jobs did not set the signal"
    );
    // A take that finds the active list empty clears the signal again.
    ensure!(
        drain(b, q, "reader").await?.is_empty(),
        "nothing is active before enqueue_due"
    );
    ensure!(
        !signal_is_set(b, q).await?,
        "signal still set after a take found nothing"
    );
    let due = b.enqueue_due(q, 30.0, 2).await.ctx("enqueue_due")?;
    ensure_eq!(due.moved, 2, "moved with max 2");
    ensure_eq!(due.next_due, Some(10.0), "next due after moving 2");
    ensure!(
        signal_is_set(b, q).await?,
        "enqueue_due that moved jobs did not set the signal"
    );
    let due = b.enqueue_due(q, 30.0, 10).await.ctx("enqueue_due")?;
    ensure_eq!(
        due.moved,
        2,
        "moved with max 10 at 30 (score equal to now included)"
    );
    ensure_eq!(due.next_due, Some(99.0), "next due");
    let taken = drain(b, q, "reader").await?;
    ensure_eq!(
        ids_of(&taken),
        strings(&["neg", "zero", "mid", "late"]),
        "active list (lowest scores first)"
    );
    let due = b.enqueue_due(q, 50.0, 0).await.ctx("enqueue_due")?;
    ensure_eq!(due.moved, 0, "moved with max 0");
    Ok(())
}

async fn enqueue_due_reports_next_due(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    let due = b.enqueue_due(q, 100.0, 10).await.ctx("enqueue_due")?;
    ensure_eq!(
        (due.moved, due.next_due),
        (0, None),
        "enqueue_due on an empty queue"
    );
    ensure!(
        !signal_is_set(b, q).await?,
        "enqueue_due that moved nothing set the signal"
    );
    let sched: Vec<ScheduledJob> = (0..6)
        .map(|i| ScheduledJob {
            job: job(&format!("t{i}"), "x"),
            at: -100.0 + f64::from(i) * 0.5,
        })
        .collect();
    b.schedule(q, &sched).await.ctx("schedule")?;
    b.schedule(
        q,
        &[ScheduledJob {
            job: job("later", "x"),
            at: 7.25,
        }],
    )
    .await
    .ctx("schedule")?;
    let due = b.enqueue_due(q, -98.0, 3).await.ctx("enqueue_due")?;
    ensure_eq!(due.moved, 3, "moved with max 3 (5 due, all negative)");
    ensure_eq!(due.next_due, Some(-98.5), "next due (fractions kept)");
    let due = b.enqueue_due(q, -98.0, 10).await.ctx("enqueue_due")?;
    ensure_eq!(due.moved, 2, "moved the remaining due ones");
    ensure_eq!(due.next_due, Some(-97.5), "next due (t5)");
    let taken = drain(b, q, "reader").await?;
    ensure_eq!(
        ids_of(&taken),
        strings(&["t0", "t1", "t2", "t3", "t4"]),
        "moved exactly the due members"
    );
    let due = b.enqueue_due(q, 100.0, 10).await.ctx("enqueue_due")?;
    ensure_eq!((due.moved, due.next_due), (2, None), "moving the rest");
    Ok(())
}

// ---- ack, retry, kill, give_back ----------------------------------------------------

/// Pushes `ids`, lets `owner` take them, and registers `other` with nothing.
async fn owned_setup(
    b: &dyn QueueBackend,
    q: &QueueName,
    ids: &[&str],
) -> Result<(ConsumerId, ConsumerId), String> {
    let owner = consumer("owner");
    let other = consumer("other");
    join(b, q, &owner, 10.0).await?;
    join(b, q, &other, 10.0).await?;
    b.push(q, &jobs(ids)).await.ctx("push")?;
    let taken = b.take(q, &owner, ids.len()).await.ctx("take")?;
    ensure_eq!(ids_of(&taken), strings(ids), "jobs taken by the owner");
    Ok((owner, other))
}

async fn ack_only_owned(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    let (owner, other) = owned_setup(b, q, &["a", "b"]).await?;
    ensure_eq!(
        b.ack(q, &other, &strings(&["a", "b"])).await.ctx("ack")?,
        vec![false, false],
        "ack by another consumer"
    );
    ensure!(
        exists(b, q, "a").await?,
        "job a gone after another consumer's ack"
    );
    ensure_eq!(
        b.ack(q, &owner, &strings(&["a", "missing", "a"]))
            .await
            .ctx("ack")?,
        vec![true, false, false],
        "ack by the owner (a, an unknown ID, a again)"
    );
    ensure!(!exists(b, q, "a").await?, "data of acked job a still there");
    ensure_eq!(
        b.ack(q, &owner, &strings(&["b"])).await.ctx("ack")?,
        vec![true],
        "ack of b by the owner"
    );
    ensure_eq!(
        b.ack(q, &owner, &[]).await.ctx("ack")?,
        Vec::<bool>::new(),
        "ack of nothing"
    );
    Ok(())
}

async fn retry_only_owned(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    let (owner, other) = owned_setup(b, q, &["a", "b"]).await?;
    let retry = |id: &str, at: f64| RetryJob {
        id: id.into(),
        data: format!("retried-{id}").into_bytes(),
        at,
    };
    ensure_eq!(
        b.retry(q, &other, &[retry("a", 50.0)]).await.ctx("retry")?,
        vec![false],
        "retry by another consumer"
    );
    ensure_eq!(
        b.retry(q, &owner, &[retry("a", 50.0), retry("zzz", 50.0)])
            .await
            .ctx("retry")?,
        vec![true, false],
        "retry by the owner (a, an unknown ID)"
    );
    ensure_eq!(
        b.retry(q, &owner, &[retry("a", 60.0)]).await.ctx("retry")?,
        vec![false],
        "second retry of a"
    );
    ensure_eq!(
        b.ack(q, &owner, &strings(&["a"])).await.ctx("ack")?,
        vec![false],
        "ack of a retried job"
    );
    let due = b.enqueue_due(q, 49.5, 10).await.ctx("enqueue_due")?;
    ensure_eq!(
        (due.moved, due.next_due),
        (0, Some(50.0)),
        "retried job not yet due"
    );
    let due = b.enqueue_due(q, 50.0, 10).await.ctx("enqueue_due")?;
    ensure_eq!(due.moved, 1, "retried job due at its time");
    let taken = b.take(q, &other, 10).await.ctx("take")?;
    ensure_eq!(ids_of(&taken), strings(&["a"]), "retried job taken again");
    ensure_eq!(
        taken[0].data.as_deref(),
        Some(&b"retried-a"[..]),
        "data of the retried job"
    );
    ensure_eq!(
        b.ack(q, &owner, &strings(&["b"])).await.ctx("ack")?,
        vec![true],
        "b still owned by the owner"
    );
    Ok(())
}

async fn kill_only_owned(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    let (owner, other) = owned_setup(b, q, &["a", "b", "c"]).await?;
    let kill = |id: &str, data: Option<&str>| KillJob {
        id: id.into(),
        data: data.map(|d| d.as_bytes().to_vec()),
        reason: format!("killed {id}"),
    };
    ensure_eq!(
        b.kill(q, &other, &[kill("a", Some("x"))], 20.0)
            .await
            .ctx("kill")?,
        vec![false],
        "kill by another consumer"
    );
    ensure_eq!(
        b.kill(
            q,
            &owner,
            &[kill("a", Some("new")), kill("b", None), kill("nope", None)],
            20.0
        )
        .await
        .ctx("kill")?,
        vec![true, true, false],
        "kill by the owner"
    );
    ensure_eq!(
        b.kill(q, &owner, &[kill("a", None)], 21.0)
            .await
            .ctx("kill")?,
        vec![false],
        "second kill of a"
    );
    ensure_eq!(
        b.ack(q, &owner, &strings(&["a", "c"])).await.ctx("ack")?,
        vec![false, true],
        "ack after kill"
    );
    ensure!(exists(b, q, "a").await?, "a killed job no longer exists");
    ensure!(
        exists(b, q, "b").await?,
        "a job killed without new data no longer exists"
    );
    // Both are in the dead set at 20: they are trimmed as killed before 20.5.
    let trimmed = b
        .trim_dead(
            q,
            DeadTrim {
                killed_before: 20.5,
                keep_at_most: 100,
                max_jobs: 100,
            },
        )
        .await
        .ctx("trim_dead")?;
    ensure_eq!(trimmed, 2, "dead jobs killed at 20, trimmed before 20.5");
    Ok(())
}

async fn give_back_only_owned(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    let (owner, other) = owned_setup(b, q, &["a", "b", "c"]).await?;
    // The owner took exactly what was there; a take that finds nothing clears the signal.
    ensure!(
        b.take(q, &owner, 1).await.ctx("take")?.is_empty(),
        "take from a drained queue returned jobs"
    );
    ensure!(
        !signal_is_set(b, q).await?,
        "signal set after a take that found nothing"
    );
    ensure_eq!(
        b.give_back(q, &other, &strings(&["a"]))
            .await
            .ctx("give_back")?,
        0,
        "give_back by another consumer"
    );
    ensure!(
        !signal_is_set(b, q).await?,
        "give_back that moved nothing set the signal"
    );
    let given = b
        .give_back(q, &owner, &strings(&["c", "zzz", "a", "c"]))
        .await
        .ctx("give_back")?;
    ensure_eq!(given, 2, "give_back by the owner (c, unknown, a, c again)");
    ensure!(
        signal_is_set(b, q).await?,
        "give_back that moved jobs did not set the signal"
    );
    // Given back to the tail, in the order given.
    b.push(q, &jobs(&["d"])).await.ctx("push")?;
    let given = b
        .give_back(q, &owner, &strings(&["b"]))
        .await
        .ctx("give_back")?;
    ensure_eq!(given, 1, "give_back of b by the owner");
    let taken = b.take(q, &other, 10).await.ctx("take")?;
    ensure_eq!(
        ids_of(&taken),
        strings(&["c", "a", "d", "b"]),
        "active list after give_back, push, give_back"
    );
    ensure_eq!(
        taken[0].data.as_deref(),
        Some(&b"data-c"[..]),
        "data of a given-back job"
    );
    ensure_eq!(
        b.ack(q, &owner, &strings(&["a", "b"])).await.ctx("ack")?,
        vec![false, false],
        "ack by the owner after give_back"
    );
    ensure_eq!(
        b.ack(q, &other, &strings(&["c", "a", "d", "b"]))
            .await
            .ctx("ack")?,
        vec![true; 4],
        "ack by the consumer that took the given-back jobs"
    );
    Ok(())
}

// ---- requeue_orphans --------------------------------------------------------------------

fn sweep(expired_before: f64, max_jobs: usize, max_orphan_requeues: u32) -> OrphanSweep {
    OrphanSweep {
        expired_before,
        max_jobs,
        max_orphan_requeues,
        now: 1000.0,
    }
}

async fn requeue_orphans_oldest_first_within_max(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    let (old, mid, idle) = (consumer("old"), consumer("mid"), consumer("idle"));
    join(b, q, &old, 10.0).await?;
    join(b, q, &mid, 20.0).await?;
    join(b, q, &idle, 5.0).await?;
    b.push(q, &jobs(&["m1", "m2", "m3"])).await.ctx("push")?;
    ensure_eq!(
        b.take(q, &mid, 3).await.ctx("take")?.len(),
        3,
        "jobs taken by mid"
    );
    b.push(q, &jobs(&["o1", "o2"])).await.ctx("push")?;
    ensure_eq!(
        b.take(q, &old, 2).await.ctx("take")?.len(),
        2,
        "jobs taken by old"
    );
    drain(b, q, "drainer").await?; // registers "drainer" at 0 holding nothing
    ensure!(!signal_is_set(b, q).await?, "signal set before the sweep");

    let report = b
        .requeue_orphans(q, sweep(25.0, 3, 0))
        .await
        .ctx("requeue_orphans")?;
    ensure_eq!(report.requeued, 3, "requeued with max_jobs 3");
    ensure_eq!(report.killed, 0, "killed with max_orphan_requeues 0");
    ensure!(
        signal_is_set(b, q).await?,
        "a sweep that requeued jobs did not set the signal"
    );
    // "old" (score 10) is served before "mid" (20): both of its jobs, then one of mid's.
    let reader = consumer("reader");
    join(b, q, &reader, 100.0).await?;
    let first = ids_of(&b.take(q, &reader, 2).await.ctx("take")?);
    ensure_eq!(
        set(&first),
        set(&strings(&["o1", "o2"])),
        "first two requeued jobs (oldest consumer first)"
    );
    let third = ids_of(&b.take(q, &reader, 10).await.ctx("take")?);
    ensure_eq!(third.len(), 1, "jobs requeued from mid");
    ensure!(
        third[0].starts_with('m'),
        "third requeued job {:?} is not mid's",
        third[0]
    );
    ensure!(
        !heartbeat(b, q, &old, 30.0).await?,
        "old (emptied) is still registered"
    );
    ensure!(
        heartbeat(b, q, &mid, 20.0).await?,
        "mid (still holding jobs) was removed"
    );
    // The empty expired consumers ("idle" at 5, "drainer" at 0) are gone too.
    ensure!(
        !heartbeat(b, q, &idle, 30.0).await?,
        "idle expired consumer still registered"
    );
    ensure!(
        report.consumers_removed >= 2,
        "consumers removed: {} (old and idle at least)",
        report.consumers_removed
    );

    let report = b
        .requeue_orphans(q, sweep(25.0, 10, 0))
        .await
        .ctx("requeue_orphans")?;
    ensure_eq!(report.requeued, 2, "second sweep requeued mid's other two");
    ensure!(
        !heartbeat(b, q, &mid, 30.0).await?,
        "mid still registered after being emptied"
    );
    let rest = ids_of(&b.take(q, &reader, 10).await.ctx("take")?);
    let mut all: Vec<String> = third.into_iter().chain(rest).collect();
    all.sort();
    ensure_eq!(
        all,
        strings(&["m1", "m2", "m3"]),
        "mid's jobs, each requeued once"
    );
    let report = b
        .requeue_orphans(q, sweep(25.0, 10, 0))
        .await
        .ctx("requeue_orphans")?;
    ensure_eq!((report.requeued, report.killed), (0, 0), "third sweep");
    Ok(())
}

async fn requeue_orphans_spares_live_consumers(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    let (live, edge) = (consumer("live"), consumer("edge"));
    join(b, q, &live, 50.0).await?;
    join(b, q, &edge, 40.0).await?;
    b.push(q, &jobs(&["l"])).await.ctx("push")?;
    b.take(q, &live, 1).await.ctx("take")?;
    b.push(q, &jobs(&["e"])).await.ctx("push")?;
    b.take(q, &edge, 1).await.ctx("take")?;
    let report = b
        .requeue_orphans(q, sweep(39.999, 10, 1))
        .await
        .ctx("requeue_orphans")?;
    ensure_eq!(
        (report.requeued, report.killed, report.consumers_removed),
        (0, 0, 0),
        "sweep with no expired consumer"
    );
    let report = b
        .requeue_orphans(q, sweep(40.0, 10, 0))
        .await
        .ctx("requeue_orphans")?;
    ensure_eq!(
        (report.requeued, report.killed, report.consumers_removed),
        (1, 0, 1),
        "sweep expiring the consumer whose heartbeat equals expired_before"
    );
    ensure_eq!(
        b.ack(q, &live, &strings(&["l"])).await.ctx("ack")?,
        vec![true],
        "live consumer's job still owned"
    );
    ensure!(
        heartbeat(b, q, &live, 60.0).await?,
        "live consumer was removed"
    );
    ensure_eq!(
        b.ack(q, &edge, &strings(&["e"])).await.ctx("ack")?,
        vec![false],
        "expired consumer still owns its job"
    );
    Ok(())
}

async fn requeue_orphans_kills_crash_loops(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    b.push(q, &jobs(&["crash", "fine"])).await.ctx("push")?;
    for round in 1..=2u32 {
        let victim = consumer(&format!("victim-{round}"));
        join(b, q, &victim, f64::from(round)).await?;
        let taken = ids_of(&b.take(q, &victim, 1).await.ctx("take")?);
        ensure_eq!(taken, strings(&["crash"]), "round {round}: job taken");
        let report = b
            .requeue_orphans(q, sweep(100.0, 10, 3))
            .await
            .ctx("requeue_orphans")?;
        ensure_eq!(
            (report.requeued, report.killed),
            (1, 0),
            "round {round}: sweep"
        );
        // The job went back to the tail: put it ahead of "fine" again.
        let keeper = consumer(&format!("keeper-{round}"));
        join(b, q, &keeper, 1000.0).await?;
        let taken = ids_of(&b.take(q, &keeper, 1).await.ctx("take")?);
        ensure_eq!(
            taken,
            strings(&["fine"]),
            "round {round}: head of the active list"
        );
        ensure_eq!(
            b.give_back(q, &keeper, &taken).await.ctx("give_back")?,
            1,
            "round {round}: give_back"
        );
    }
    let victim = consumer("victim-3");
    join(b, q, &victim, 3.0).await?;
    ensure_eq!(
        ids_of(&b.take(q, &victim, 1).await.ctx("take")?),
        strings(&["crash"]),
        "round 3: job taken"
    );
    let report = b
        .requeue_orphans(q, sweep(100.0, 10, 3))
        .await
        .ctx("requeue_orphans")?;
    ensure_eq!(
        (report.requeued, report.killed, report.consumers_removed),
        (0, 1, 1),
        "round 3: sweep (third orphaning)"
    );
    ensure!(
        exists(b, q, "crash").await?,
        "the killed job no longer exists"
    );
    let reader = consumer("reader");
    join(b, q, &reader, 1000.0).await?;
    ensure_eq!(
        ids_of(&b.take(q, &reader, 10).await.ctx("take")?),
        strings(&["fine"]),
        "active list after the kill"
    );
    let trimmed = b
        .trim_dead(
            q,
            DeadTrim {
                killed_before: 1000.5,
                keep_at_most: 100,
                max_jobs: 100,
            },
        )
        .await
        .ctx("trim_dead")?;
    ensure_eq!(trimmed, 1, "dead jobs killed at the sweep's now (1000)");
    // With max_orphan_requeues 0, a job is requeued however often it is orphaned.
    b.push(q, &jobs(&["again"])).await.ctx("push")?;
    for round in 1..=4u32 {
        let victim = consumer(&format!("zero-{round}"));
        join(b, q, &victim, 1.0).await?;
        b.take(q, &victim, 10).await.ctx("take")?;
        let report = b
            .requeue_orphans(q, sweep(100.0, 10, 0))
            .await
            .ctx("requeue_orphans")?;
        ensure_eq!(
            (report.requeued, report.killed),
            (1, 0),
            "max_orphan_requeues 0, round {round}"
        );
    }
    Ok(())
}

async fn orphan_count_cleared_when_job_ends(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    b.push(q, &jobs(&["j"])).await.ctx("push")?;
    let first = consumer("first");
    join(b, q, &first, 1.0).await?;
    b.take(q, &first, 1).await.ctx("take")?;
    let report = b
        .requeue_orphans(q, sweep(10.0, 10, 2))
        .await
        .ctx("requeue_orphans")?;
    ensure_eq!((report.requeued, report.killed), (1, 0), "first orphaning");
    let finisher = consumer("finisher");
    join(b, q, &finisher, 100.0).await?;
    b.take(q, &finisher, 1).await.ctx("take")?;
    ensure_eq!(
        b.ack(q, &finisher, &strings(&["j"])).await.ctx("ack")?,
        vec![true],
        "ack"
    );
    // A new job with the same ID starts from zero: one orphaning requeues it.
    ensure_eq!(
        b.push(q, &jobs(&["j"])).await.ctx("push")?,
        vec![true],
        "push after ack"
    );
    let second = consumer("second");
    join(b, q, &second, 2.0).await?;
    b.take(q, &second, 1).await.ctx("take")?;
    let report = b
        .requeue_orphans(q, sweep(10.0, 10, 2))
        .await
        .ctx("requeue_orphans")?;
    ensure_eq!(
        (report.requeued, report.killed),
        (1, 0),
        "first orphaning of the new job (count not reset by ack?)"
    );
    Ok(())
}

// ---- trim_dead, unregister ----------------------------------------------------------

async fn trim_dead_by_age_and_count(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    let ids = ["d1", "d2", "d3", "d4", "d5", "d6"];
    let (owner, _) = owned_setup(b, q, &ids).await?;
    for (i, id) in ids.iter().enumerate() {
        let kill = KillJob {
            id: (*id).into(),
            data: None,
            reason: "test".into(),
        };
        let killed = b
            .kill(q, &owner, &[kill], 10.0 * (i as f64 + 1.0))
            .await
            .ctx("kill")?;
        ensure_eq!(killed, vec![true], "kill of {id}");
    }
    let none = b
        .trim_dead(
            q,
            DeadTrim {
                killed_before: 10.0,
                keep_at_most: 6,
                max_jobs: 10,
            },
        )
        .await
        .ctx("trim_dead")?;
    ensure_eq!(none, 0, "trim with nothing older than 10 and 6 kept");
    let by_age = b
        .trim_dead(
            q,
            DeadTrim {
                killed_before: 25.0,
                keep_at_most: 100,
                max_jobs: 10,
            },
        )
        .await
        .ctx("trim_dead")?;
    ensure_eq!(by_age, 2, "trim of jobs killed before 25");
    ensure_eq!(
        b.push(q, &[job("d1", "new")]).await.ctx("push")?,
        vec![true],
        "push of trimmed d1 (data must be gone)"
    );
    ensure!(exists(b, q, "d3").await?, "d3 (killed at 30) was trimmed");
    let capped = b
        .trim_dead(
            q,
            DeadTrim {
                killed_before: 100.0,
                keep_at_most: 0,
                max_jobs: 1,
            },
        )
        .await
        .ctx("trim_dead")?;
    ensure_eq!(capped, 1, "trim capped at max_jobs 1");
    ensure!(
        !exists(b, q, "d3").await?,
        "the oldest (d3) was not the one trimmed"
    );
    let by_count = b
        .trim_dead(
            q,
            DeadTrim {
                killed_before: 0.0,
                keep_at_most: 1,
                max_jobs: 10,
            },
        )
        .await
        .ctx("trim_dead")?;
    ensure_eq!(by_count, 2, "trim to keep at most 1 of 3");
    ensure!(exists(b, q, "d6").await?, "the newest (d6) was trimmed");
    ensure!(
        !exists(b, q, "d5").await?,
        "d5 was kept instead of the newest"
    );
    let zero = b
        .trim_dead(
            q,
            DeadTrim {
                killed_before: 100.0,
                keep_at_most: 0,
                max_jobs: 0,
            },
        )
        .await
        .ctx("trim_dead")?;
    ensure_eq!(zero, 0, "trim with max_jobs 0");
    let last = b
        .trim_dead(
            q,
            DeadTrim {
                killed_before: 100.0,
                keep_at_most: 0,
                max_jobs: 10,
            },
        )
        .await
        .ctx("trim_dead")?;
    ensure_eq!(last, 1, "trim of the last dead job");
    Ok(())
}

async fn unregister_only_when_idle(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    let (busy, idle) = owned_setup(b, q, &["a"]).await?;
    ensure!(
        !b.unregister(q, &busy).await.ctx("unregister")?,
        "unregister of a consumer holding a job returned true"
    );
    ensure!(
        heartbeat(b, q, &busy, 11.0).await?,
        "a busy consumer was unregistered"
    );
    ensure!(
        b.unregister(q, &idle).await.ctx("unregister")?,
        "unregister of an idle consumer returned false"
    );
    ensure!(
        !heartbeat(b, q, &idle, 11.0).await?,
        "an unregistered consumer is still registered"
    );
    ensure_eq!(
        b.ack(q, &busy, &strings(&["a"])).await.ctx("ack")?,
        vec![true],
        "ack"
    );
    ensure!(
        b.unregister(q, &busy).await.ctx("unregister")?,
        "unregister after the last ack returned false"
    );
    ensure!(
        !heartbeat(b, q, &busy, 12.0).await?,
        "consumer still registered after unregister"
    );
    match b.take(q, &busy, 1).await {
        Err(BackendError::NotRegistered { .. }) => Ok(()),
        other => Err(format!(
            "take after unregister: expected NotRegistered, got {other:?}"
        )),
    }
}
