//! What operators see and do: the plain-data types of the admin operations of
//! [`QueueBackend`](crate::QueueBackend) (stats and counters, pages of jobs, a job found by
//! ID, actions, pause) and the consistency [`check`] built on them.
//!
//! Every admin operation is one atomic step of the store (one script call on Redis), bounded
//! in the work it does whatever the queue's size, except where its documentation says
//! otherwise (the check reads the whole queue, in pages).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// How many minutes of per-minute counters a queue keeps (24 hours).
pub const COUNTER_MINUTES: usize = 1440;

/// How long a per-minute counter key lives after its last write, in seconds (25 hours:
/// the 24 hours the stats read, and an hour to spare for clocks that disagree).
pub const COUNTER_TTL_SECONDS: u64 = 90_000;

/// Most jobs one page holds ([`PageRequest::limit`] is capped at it).
pub const MAX_PAGE: usize = 1000;

/// Most bytes of a payload a page entry carries as its preview.
pub const MAX_PREVIEW: usize = 4096;

/// How far into the active list [`find_job`](crate::QueueBackend::find_job) looks (`LPOS …
/// MAXLEN` on Redis: about 1 ms per 100,000 jobs). A job deeper than that is reported
/// [`JobState::Unplaced`].
pub const FIND_ACTIVE_SCAN: usize = 100_000;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum JobState {
    /// In the active list, waiting for a consumer.
    Active,
    /// In the scheduled set, due at its score (a new job scheduled, or a retry).
    Scheduled,
    /// In the dead set, killed at its score.
    Dead,
    /// In a consumer's in-flight set: taken, not yet finished.
    InFlight,
    /// Its data is stored but it is in none of the above (or deeper in the active list
    /// than [`FIND_ACTIVE_SCAN`]): the check reports such a job as unreferenced.
    Unplaced,
}

impl JobState {
    /// The states a page can list.
    pub const LISTED: [JobState; 4] = [
        JobState::Active,
        JobState::Scheduled,
        JobState::Dead,
        JobState::InFlight,
    ];

    /// The lower-case name (`active`, `scheduled`, `dead`, `inflight`, `unplaced`).
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Active => "active",
            JobState::Scheduled => "scheduled",
            JobState::Dead => "dead",
            JobState::InFlight => "inflight",
            JobState::Unplaced => "unplaced",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for JobState {
    type Err = String;

    /// Parses the names of [`as_str`](Self::as_str) (`in-flight` too).
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "active" => Ok(JobState::Active),
            "scheduled" => Ok(JobState::Scheduled),
            "dead" => Ok(JobState::Dead),
            "inflight" | "in-flight" => Ok(JobState::InFlight),
            "unplaced" => Ok(JobState::Unplaced),
            other => Err(format!(
                "unknown job state {other:?}: expected active, scheduled, dead or inflight"
            )),
        }
    }
}

/// Outcome counters, written by the outcome operations in the same atomic step as the
/// outcome (Go CurlyQ's consumers do not count: their outcomes are missing here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Runs whose outcome was recorded: acked, retried or killed (as Sidekiq counts
    /// "processed"), plus jobs killed by a custodian for crash-looping.
    pub processed: u64,
    /// Runs that failed: retried or killed.
    pub failed: u64,
    /// Failed runs scheduled for another run.
    pub retried: u64,
    /// Jobs moved to the dead set (by a consumer, or by a custodian after too many orphan
    /// requeues).
    pub killed: u64,
}

impl Counts {
    /// The counts of `n` acked jobs.
    pub fn acked(n: usize) -> Counts {
        Counts {
            processed: n as u64,
            ..Counts::default()
        }
    }

    /// The counts of `n` retried jobs.
    pub fn retried(n: usize) -> Counts {
        Counts {
            processed: n as u64,
            failed: n as u64,
            retried: n as u64,
            killed: 0,
        }
    }

    /// The counts of `n` killed jobs.
    pub fn killed(n: usize) -> Counts {
        Counts {
            processed: n as u64,
            failed: n as u64,
            retried: 0,
            killed: n as u64,
        }
    }

    /// Whether every counter is 0.
    pub fn is_zero(&self) -> bool {
        *self == Counts::default()
    }

    /// Adds `other` field by field.
    pub fn add(&mut self, other: Counts) {
        self.processed += other.processed;
        self.failed += other.failed;
        self.retried += other.retried;
        self.killed += other.killed;
    }
}

/// The counters of one minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MinuteCounts {
    /// The minute: Unix seconds / 60, rounded down.
    pub minute: i64,
    /// What happened in it.
    pub counts: Counts,
}

/// The minute (Unix seconds / 60, rounded down) of a time in Unix seconds.
pub fn minute_of(unix_seconds: f64) -> i64 {
    (unix_seconds / 60.0).floor() as i64
}

/// A queue's sizes and counters, read at one instant.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueueStats {
    /// Jobs in the active list.
    pub active: u64,
    /// Jobs in the scheduled set.
    pub scheduled: u64,
    /// Jobs in the dead set.
    pub dead: u64,
    /// Jobs in the in-flight sets of the registered consumers.
    pub inflight: u64,
    /// Registered consumers (live or expired).
    pub consumers: u64,
    /// Whether the queue is paused (see [`set_paused`](crate::QueueBackend::set_paused)).
    pub paused: bool,
    /// When the job at the head of the active list became ready (pushed, due, or retried
    /// due), Unix seconds; `None` when the list is empty or the job does not say (Go
    /// CurlyQ's jobs and jobs rewritten by Go carry no time). `now - oldest_ready_at` is
    /// the queue's latency.
    pub oldest_ready_at: Option<f64>,
    /// The earliest score in the scheduled set.
    pub next_due: Option<f64>,
    /// Counters since the queue's first counted outcome.
    pub total: Counts,
    /// The counters of the last minutes asked for, oldest first, one entry per minute
    /// (zeros included), the current minute last.
    pub minutes: Vec<MinuteCounts>,
}

impl QueueStats {
    /// How many jobs are in `state` ([`JobState::Unplaced`]: 0, the stats do not count
    /// them).
    pub fn size(&self, state: JobState) -> u64 {
        match state {
            JobState::Active => self.active,
            JobState::Scheduled => self.scheduled,
            JobState::Dead => self.dead,
            JobState::InFlight => self.inflight,
            JobState::Unplaced => 0,
        }
    }
}

/// A registered consumer.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerInfo {
    /// Its ID.
    pub id: String,
    /// Its last heartbeat, Unix seconds.
    pub heartbeat: f64,
    /// Jobs in its in-flight set.
    pub inflight: u64,
}

/// A request for one page of jobs in one state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// The state to list ([`JobState::Unplaced`] lists nothing).
    pub state: JobState,
    /// Where to start: 0 for the first page, then the previous page's
    /// [`JobPage::next`]. An offset from the head of the active list, the lowest score of
    /// the scheduled and dead sets, or into the in-flight jobs of all consumers (by
    /// consumer ID, then job ID): while the queue moves, a page may skip or repeat jobs.
    pub cursor: u64,
    /// Most jobs on the page (at least 1, capped at [`MAX_PAGE`]).
    pub limit: usize,
    /// Most payload bytes per entry (capped at [`MAX_PREVIEW`]).
    pub preview: usize,
}

impl PageRequest {
    /// The first page of `state`, 50 jobs with 64-byte previews.
    pub fn first(state: JobState) -> Self {
        PageRequest {
            state,
            cursor: 0,
            limit: 50,
            preview: 64,
        }
    }
}

/// One job as a page or a find shows it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobSummary {
    /// The job's ID.
    pub id: String,
    /// Where it is (`None` only in a [`JobDetail`] of a job that does not exist).
    pub state: Option<JobState>,
    /// Its due time (scheduled) or time of death (dead), Unix seconds.
    pub score: Option<f64>,
    /// The consumer that holds it (in flight).
    pub consumer: Option<String>,
    /// Its position from the head of the active list (0 = next to be taken).
    pub position: Option<u64>,
    /// Its stored attempt count, when its data decodes that far.
    pub attempt: Option<u32>,
    /// When it became ready, when its data says (see [`QueueStats::oldest_ready_at`]).
    pub ready_at: Option<f64>,
    /// Bytes stored for it in `Q:data`; `None` when it has no data.
    pub stored_bytes: Option<u64>,
    /// Its payload's length, when its data decodes that far.
    pub payload_bytes: Option<u64>,
    /// The payload's first bytes (at most the preview asked for).
    pub preview: Vec<u8>,
    /// Why it died (dead jobs).
    pub reason: Option<String>,
    /// Why its last run failed (jobs waiting for a retry).
    pub last_error: Option<String>,
    /// Times a custodian took it back from an expired consumer.
    pub orphaned: u32,
}

/// A page of jobs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobPage {
    /// The jobs, in the state's order.
    pub jobs: Vec<JobSummary>,
    /// The cursor of the next page; `None` on the last page.
    pub next: Option<u64>,
    /// How many jobs the state holds in all.
    pub total: u64,
}

/// A job found by ID: its summary and its stored bytes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobDetail {
    /// Where it is and what it says; `preview` is empty (the bytes are in `data`).
    pub summary: JobSummary,
    /// The stored encoding (decode it with [`Job::decode`](crate::Job::decode)).
    pub data: Option<Vec<u8>>,
}

/// Which jobs an action applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// These IDs (at most [`MAX_BATCH`](crate::MAX_BATCH) per call).
    Ids(Vec<String>),
    /// The oldest (lowest-scored) jobs of the state, at most this many in one call
    /// (capped at [`MAX_BATCH`](crate::MAX_BATCH)); call again for more.
    Oldest(usize),
}

/// What an action did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ActionReport {
    /// The jobs it moved or removed, in order.
    pub done: Vec<String>,
    /// The IDs asked for that were not in the state the action applies to (left as they
    /// were).
    pub skipped: Vec<String>,
}

/// What [`delete_jobs`](crate::QueueBackend::delete_jobs) did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeleteReport {
    /// Jobs deleted, with the state each was in.
    pub deleted: Vec<(String, JobState)>,
    /// Jobs left alone because a consumer holds them.
    pub in_flight: Vec<String>,
    /// IDs of no job.
    pub missing: Vec<String>,
}

/// What [`remove_consumer`](crate::QueueBackend::remove_consumer) did.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RemoveReport {
    /// Whether the consumer was removed.
    pub removed: bool,
    /// Its jobs moved back to the active list.
    pub requeued: usize,
    /// Its last heartbeat (`None`: it was not registered).
    pub heartbeat: Option<f64>,
}

/// A kind of inconsistency the check looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ProblemKind {
    /// Data stored for a job that is in no list or set: nothing will ever run it.
    /// Repair: the job is appended to the active list.
    Unreferenced,
    /// A job ID in more than one place (or twice in the active list): it would run more
    /// than once. Repair: one place is kept (in flight, else scheduled, else active, else
    /// dead), the others are removed.
    Duplicate,
    /// A reference to a job with no data (active, scheduled or dead): a consumer would
    /// kill it as "data missing". Repair: the reference (and its side fields) go.
    /// References in flight are reported only (their consumer finishes them).
    Dangling,
    /// An in-flight set whose consumer is not registered: no custodian will ever take its
    /// jobs back. Repair: its jobs are appended to the active list and the set deleted.
    StrayInFlight,
}

impl ProblemKind {
    /// Every kind, in report order.
    pub const ALL: [ProblemKind; 4] = [
        ProblemKind::Unreferenced,
        ProblemKind::Duplicate,
        ProblemKind::Dangling,
        ProblemKind::StrayInFlight,
    ];

    /// The kebab-case name (`unreferenced`, `duplicate`, `dangling`, `stray-inflight`).
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Unreferenced => "unreferenced",
            ProblemKind::Duplicate => "duplicate",
            ProblemKind::Dangling => "dangling",
            ProblemKind::StrayInFlight => "stray-inflight",
        }
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One inconsistency.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// What is wrong.
    pub kind: ProblemKind,
    /// The job ID ([`ProblemKind::StrayInFlight`]: the consumer ID of the set).
    pub id: String,
    /// Where the ID was found (for a stray set: the jobs in it, as `inflight`).
    pub places: Vec<JobState>,
}

/// A repair to make: [`repair`](crate::QueueBackend::repair) checks the problem still
/// holds, in the same atomic step, and fixes it.
pub type Repair = Problem;

/// A snapshot of where every job of a queue is referenced, read in pages (see
/// [`check`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Placement {
    /// IDs with a `Q:data` field.
    pub data: BTreeSet<String>,
    /// The active list, head first.
    pub active: Vec<String>,
    /// The scheduled set's members.
    pub scheduled: BTreeSet<String>,
    /// The dead set's members.
    pub dead: BTreeSet<String>,
    /// Registered consumer ID -> its in-flight jobs.
    pub inflight: BTreeMap<String, BTreeSet<String>>,
    /// In-flight sets whose consumer is not registered: consumer ID -> jobs.
    pub stray: BTreeMap<String, BTreeSet<String>>,
}

/// The inconsistencies of a placement (pure: no store involved), sorted by kind then ID.
pub fn problems_of(p: &Placement) -> Vec<Problem> {
    let mut places: BTreeMap<&str, Vec<JobState>> = BTreeMap::new();
    for id in &p.active {
        places.entry(id).or_default().push(JobState::Active);
    }
    for id in &p.scheduled {
        places.entry(id).or_default().push(JobState::Scheduled);
    }
    for id in &p.dead {
        places.entry(id).or_default().push(JobState::Dead);
    }
    for ids in p.inflight.values().chain(p.stray.values()) {
        for id in ids {
            places.entry(id).or_default().push(JobState::InFlight);
        }
    }
    let mut out = Vec::new();
    for id in &p.data {
        if !places.contains_key(id.as_str()) {
            out.push(Problem {
                kind: ProblemKind::Unreferenced,
                id: id.clone(),
                places: Vec::new(),
            });
        }
    }
    for (id, at) in &places {
        if at.len() > 1 {
            out.push(Problem {
                kind: ProblemKind::Duplicate,
                id: (*id).to_owned(),
                places: at.clone(),
            });
        }
        if !p.data.contains(*id) {
            out.push(Problem {
                kind: ProblemKind::Dangling,
                id: (*id).to_owned(),
                places: at.clone(),
            });
        }
    }
    for (consumer, ids) in &p.stray {
        out.push(Problem {
            kind: ProblemKind::StrayInFlight,
            id: consumer.clone(),
            places: vec![JobState::InFlight; ids.len()],
        });
    }
    out.sort();
    out
}

/// What [`check`] found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CheckReport {
    /// Problems by kind (every kind listed, zeros included).
    pub counts: BTreeMap<ProblemKind, usize>,
    /// Every problem found, confirmed (sorted by kind then ID).
    pub problems: Vec<Problem>,
    /// Jobs examined (data fields).
    pub jobs: usize,
}

impl CheckReport {
    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks a queue's invariants: every data field referenced exactly once, no ID in two
/// places, no reference without data, no in-flight set without a consumer.
///
/// It reads the queue in pages ([`data_ids`](crate::QueueBackend::data_ids), the
/// [`jobs`](crate::QueueBackend::jobs) of each state,
/// [`stray_inflight`](crate::QueueBackend::stray_inflight)), so it costs a read of the whole
/// queue but never blocks the store for long; then it confirms each finding with
/// [`confirm`](crate::QueueBackend::confirm), atomically, so that a job a running consumer
/// moved between two pages is not reported. What is reported held at the instant of its
/// confirmation.
pub async fn check<B: crate::QueueBackend + ?Sized>(
    backend: &B,
    queue: &crate::QueueName,
) -> Result<CheckReport, crate::BackendError> {
    let placement = placement(backend, queue).await?;
    let mut report = CheckReport {
        counts: ProblemKind::ALL.iter().map(|k| (*k, 0)).collect(),
        jobs: placement.data.len(),
        ..CheckReport::default()
    };
    for candidate in problems_of(&placement) {
        if let Some(problem) = backend.confirm(queue, &candidate).await? {
            *report.counts.entry(problem.kind).or_default() += 1;
            report.problems.push(problem);
        }
    }
    report.problems.sort();
    Ok(report)
}

/// Reads where every job of a queue is, in pages (not atomic: see [`check`]).
pub async fn placement<B: crate::QueueBackend + ?Sized>(
    backend: &B,
    queue: &crate::QueueName,
) -> Result<Placement, crate::BackendError> {
    let mut p = Placement::default();
    let mut cursor = 0;
    loop {
        let (ids, next) = backend.data_ids(queue, cursor, MAX_PAGE).await?;
        p.data.extend(ids);
        match next {
            Some(next) => cursor = next,
            None => break,
        }
    }
    for state in JobState::LISTED {
        let mut request = PageRequest {
            state,
            cursor: 0,
            limit: MAX_PAGE,
            preview: 0,
        };
        loop {
            let page = backend.jobs(queue, request).await?;
            for job in page.jobs {
                match state {
                    JobState::Active => p.active.push(job.id),
                    JobState::Scheduled => {
                        p.scheduled.insert(job.id);
                    }
                    JobState::Dead => {
                        p.dead.insert(job.id);
                    }
                    _ => {
                        let consumer = job.consumer.unwrap_or_default();
                        p.inflight.entry(consumer).or_default().insert(job.id);
                    }
                }
            }
            match page.next {
                Some(next) => request.cursor = next,
                None => break,
            }
        }
    }
    p.stray = backend.stray_inflight(queue).await?.into_iter().collect();
    Ok(p)
}

/// Bytes of a job's head a page reads beyond its preview: room for the ID and the keys
/// before the payload.
pub const HEAD_EXTRA: usize = 512;

/// Bytes of a job's tail a page reads: room for the `Attempt` key that ends Go CurlyQ's
/// (and curlyq's) encoding, after the payload.
pub const TAIL_BYTES: usize = 32;

/// Fills in what a bounded view of a stored job says: `head` is its first bytes (the
/// whole encoding when `stored` is not larger), `tail` its last [`TAIL_BYTES`] bytes.
/// Sets `stored_bytes`, and, as far as the bytes allow, `attempt`, `ready_at`,
/// `payload_bytes` and a `preview` of at most `preview` payload bytes. Never fails:
/// what cannot be read stays `None`.
pub fn describe(summary: &mut JobSummary, head: &[u8], tail: &[u8], stored: u64, preview: usize) {
    summary.stored_bytes = Some(stored);
    if head.len() as u64 >= stored {
        if let Ok(job) = crate::Job::decode(head) {
            summary.attempt = Some(job.attempt);
            summary.ready_at = job.ready_at();
            summary.payload_bytes = Some(job.data.len() as u64);
            summary.preview = job.data[..job.data.len().min(preview)].to_vec();
        }
        return;
    }
    let view = crate::job::peek(head, preview);
    summary.ready_at = view.ready_at_ms.map(|ms| ms as f64 / 1000.0);
    summary.payload_bytes = view.payload_bytes;
    summary.preview = view.preview;
    summary.attempt = view.attempt.or_else(|| crate::job::attempt_at_end(tail));
}

/// Cuts a [`JobDetail`] for [`find_job_head`](crate::QueueBackend::find_job_head): when
/// its data is longer than `preview` + [`HEAD_EXTRA`], the data goes and the summary says
/// what its head and tail tell ([`describe`]); otherwise nothing changes.
pub fn cut_detail(detail: &mut JobDetail, preview: usize) {
    let head = preview.saturating_add(HEAD_EXTRA);
    let Some(data) = detail.data.as_deref().filter(|d| d.len() > head) else {
        return;
    };
    let tail = &data[data.len().saturating_sub(TAIL_BYTES)..];
    describe(
        &mut detail.summary,
        &data[..head],
        tail,
        data.len() as u64,
        preview,
    );
    detail.data = None;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_consistent_placement_has_no_problems() {
        let p = Placement {
            data: set(&["a", "s", "d", "f"]),
            active: vec!["a".into()],
            scheduled: set(&["s"]),
            dead: set(&["d"]),
            inflight: [("c1".to_owned(), set(&["f"]))].into_iter().collect(),
            stray: BTreeMap::new(),
        };
        assert!(problems_of(&p).is_empty());
    }

    #[test]
    fn each_kind_is_found() {
        let p = Placement {
            data: set(&["lost", "twice", "both", "f"]),
            active: vec![
                "twice".into(),
                "twice".into(),
                "both".into(),
                "ghost".into(),
            ],
            scheduled: set(&["both"]),
            dead: BTreeSet::new(),
            inflight: BTreeMap::new(),
            stray: [("gone".to_owned(), set(&["f"]))].into_iter().collect(),
        };
        let found: Vec<(ProblemKind, String)> = problems_of(&p)
            .into_iter()
            .map(|p| (p.kind, p.id))
            .collect();
        assert_eq!(
            found,
            vec![
                (ProblemKind::Unreferenced, "lost".to_owned()),
                (ProblemKind::Duplicate, "both".to_owned()),
                (ProblemKind::Duplicate, "twice".to_owned()),
                (ProblemKind::Dangling, "ghost".to_owned()),
                (ProblemKind::StrayInFlight, "gone".to_owned()),
            ]
        );
    }

    #[test]
    fn state_names_round_trip() {
        for state in JobState::LISTED {
            assert_eq!(state.as_str().parse::<JobState>(), Ok(state));
        }
        assert!("nope".parse::<JobState>().is_err());
    }

    #[test]
    fn a_cut_job_still_shows_its_attempt_ready_time_and_preview() {
        let job = crate::Job::new(vec![7u8; 10_000])
            .with_id("big")
            .with_attempt(3)
            .with_ready_at(1_700_000_000.5);
        let bytes = job.encode();
        let mut s = JobSummary::default();
        describe(
            &mut s,
            &bytes[..600],
            &bytes[bytes.len() - TAIL_BYTES..],
            bytes.len() as u64,
            8,
        );
        assert_eq!(s.attempt, Some(3));
        assert_eq!(s.ready_at, Some(1_700_000_000.5));
        assert_eq!(s.payload_bytes, Some(10_000));
        assert_eq!(s.preview, vec![7u8; 8]);
        assert_eq!(s.stored_bytes, Some(bytes.len() as u64));

        let mut whole = JobSummary::default();
        describe(&mut whole, &bytes, &[], bytes.len() as u64, 4);
        assert_eq!(
            (whole.attempt, whole.payload_bytes),
            (Some(3), Some(10_000))
        );
        assert_eq!(whole.preview, vec![7u8; 4]);

        let mut junk = JobSummary::default();
        describe(&mut junk, b"\xff\x00", b"", 2, 4);
        assert_eq!(
            (junk.attempt, junk.payload_bytes, junk.stored_bytes),
            (None, None, Some(2))
        );
    }

    #[test]
    fn minutes_round_down() {
        assert_eq!(minute_of(119.9), 1);
        assert_eq!(minute_of(120.0), 2);
        assert_eq!(minute_of(-0.5), -1);
    }
}
