//! [`MemoryBackend`]: the in-memory reference model of the wire contract.
//!
//! Every [`QueueBackend`] method is carried out under one lock, exactly as the Redis
//! scripts carry it out in one atomic step (including this project's improvements over Go
//! CurlyQ: the dead-set reasons, the orphan counters, the crash-loop kill, the last
//! errors of retried jobs, the outcome counters, the pause and the admin operations).
//! The state can be read back as plain data with [`MemoryBackend::snapshot`]. It is the pure model: to inject faults, wrap it in
//! `curlyq_testkit::Faulty`.
//!
//! It is also the backend for development and for an application's own tests without a
//! Redis (`curlyq::connect("memory://")`): single-process and not durable, every job is
//! lost when the process ends.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::ops::Bound;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::admin::Counts;
use crate::lock;
use crate::{
    BackendError, ConsumerId, DeadTrim, DueReport, EncodedJob, KillJob, OrphanReport, OrphanSweep,
    QueueBackend, QueueName, QueueSnapshot, Registration, RetryJob, Runtime, ScheduledJob,
    TakeReport, TakenJob, Waiter, ERRORS_SWEEP,
};
use async_trait::async_trait;
use event_listener::Event;
use futures::future::{self, Either};

mod admin;

/// The reason recorded for a job killed because its consumers kept dying while holding
/// it; `{n}` is the number of times it was orphaned.
pub fn orphan_kill_reason(times: u32) -> String {
    format!(
        "orphaned {times} times: its consumer stopped heartbeating while holding it \
         (the handler may be crashing the process)"
    )
}

/// A score of a sorted set: a non-NaN `f64`, with `-0.0` stored as `0.0` (Redis compares
/// them equal), totally ordered.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Score(f64);

impl Score {
    fn new(value: f64) -> Self {
        // Adding 0.0 turns -0.0 into 0.0 and leaves every other value as it is.
        Score(value + 0.0)
    }
}

impl Eq for Score {}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// A Redis-like sorted set: members ordered by (score, member bytes).
#[derive(Debug, Default)]
struct SortedSet {
    scores: HashMap<String, Score>,
    order: BTreeSet<(Score, String)>,
}

impl SortedSet {
    fn insert(&mut self, member: &str, score: f64) {
        let score = Score::new(score);
        if let Some(old) = self.scores.insert(member.to_owned(), score) {
            self.order.remove(&(old, member.to_owned()));
        }
        self.order.insert((score, member.to_owned()));
    }

    fn remove(&mut self, member: &str) -> Option<f64> {
        let old = self.scores.remove(member)?;
        self.order.remove(&(old, member.to_owned()));
        Some(old.0)
    }

    fn contains(&self, member: &str) -> bool {
        self.scores.contains_key(member)
    }

    fn len(&self) -> usize {
        self.scores.len()
    }

    fn score(&self, member: &str) -> Option<f64> {
        self.scores.get(member).map(|s| s.0)
    }

    fn first_score(&self) -> Option<f64> {
        self.order.first().map(|(score, _)| score.0)
    }

    /// Members in order, with their scores.
    fn iter(&self) -> impl Iterator<Item = (&str, f64)> + '_ {
        self.order.iter().map(|(s, m)| (m.as_str(), s.0))
    }

    /// Up to `max` members with score <= `max_score`, lowest first.
    fn up_to(&self, max_score: f64, max: usize) -> Vec<String> {
        self.iter()
            .take_while(|(_, score)| *score <= max_score)
            .take(max)
            .map(|(m, _)| m.to_owned())
            .collect()
    }

    fn to_vec(&self) -> Vec<(String, f64)> {
        self.iter().map(|(m, s)| (m.to_owned(), s)).collect()
    }
}

/// The keys of one queue.
#[derive(Debug)]
struct QueueState {
    data: HashMap<String, Vec<u8>>,
    active: VecDeque<String>,
    scheduled: SortedSet,
    dead: SortedSet,
    consumers: SortedSet,
    /// Never holds an empty set (Redis deletes empty sets).
    inflight: HashMap<String, BTreeSet<String>>,
    signal: bool,
    reasons: HashMap<String, String>,
    orphaned: HashMap<String, u32>,
    /// In ID order, so that a sweep of more than [`ERRORS_SWEEP`] entries can go on
    /// after the last ID it examined.
    errors: BTreeMap<String, String>,
    /// The last ID examined by an unfinished sweep of `errors` (Redis keeps its `HSCAN`
    /// cursor in `Q:errors:cursor`); `None`: the next sweep starts from the first ID.
    errors_cursor: Option<String>,
    /// `Q:trace`: job ID -> the trace context its producer stored (in ID order, swept as
    /// `errors` is).
    traces: BTreeMap<String, String>,
    /// The cursor of an unfinished sweep of `traces` (`Q:trace:cursor`).
    traces_cursor: Option<String>,
    /// Notified whenever the signal is set.
    event: Arc<Event>,
    /// The signal was set by the current operation: notify once the lock is released.
    notify: bool,
    /// `Q:paused`: whether takes give out nothing.
    paused: bool,
    /// `Q:counts`: the outcome counters' totals.
    total: Counts,
    /// `Q:counts:<minute>`: minute -> its counters (pruned as Redis expires them).
    minutes: BTreeMap<i64, Counts>,
}

impl QueueState {
    fn new() -> Self {
        QueueState {
            data: HashMap::new(),
            active: VecDeque::new(),
            scheduled: SortedSet::default(),
            dead: SortedSet::default(),
            consumers: SortedSet::default(),
            inflight: HashMap::new(),
            signal: false,
            reasons: HashMap::new(),
            orphaned: HashMap::new(),
            errors: BTreeMap::new(),
            errors_cursor: None,
            traces: BTreeMap::new(),
            traces_cursor: None,
            event: Arc::new(Event::new()),
            notify: false,
            paused: false,
            total: Counts::default(),
            minutes: BTreeMap::new(),
        }
    }

    fn set_signal(&mut self) {
        self.signal = true;
        self.notify = true;
    }

    /// Removes `id` from the consumer's in-flight set if it is there (dropping the set
    /// when it becomes empty). Returns whether it was owned.
    fn disown(&mut self, consumer: &str, id: &str) -> bool {
        let Some(set) = self.inflight.get_mut(consumer) else {
            return false;
        };
        let owned = set.remove(id);
        if set.is_empty() {
            self.inflight.remove(consumer);
        }
        owned
    }

    fn kill_job(&mut self, id: &str, now: f64, data: Option<&[u8]>, reason: String) {
        self.dead.insert(id, now);
        if let Some(data) = data {
            self.data.insert(id.to_owned(), data.to_vec());
        }
        self.reasons.insert(id.to_owned(), reason);
        self.orphaned.remove(id);
        // The dead reason now says why it failed.
        self.errors.remove(id);
    }

    /// Removes the last errors whose job has no data (left behind by a Go CurlyQ ack,
    /// which deletes the data only), as `trim_dead.lua` does: nothing while there are at
    /// most `keep` entries; all of them with at most [`ERRORS_SWEEP`] entries; else the
    /// next [`ERRORS_SWEEP`] IDs after the cursor, in ID order, starting over after the
    /// last.
    fn sweep_errors(&mut self, keep: usize) {
        sweep(&mut self.errors, &mut self.errors_cursor, &self.data, keep);
    }

    /// Removes the trace fields whose job has no data, by the rules of
    /// [`sweep_errors`](Self::sweep_errors) (a Go CurlyQ ack leaves them too).
    fn sweep_traces(&mut self, keep: usize) {
        sweep(&mut self.traces, &mut self.traces_cursor, &self.data, keep);
    }

    /// Stores new jobs (`at`: in the scheduled set at that time, else at the tail of the
    /// active list), setting or clearing their trace fields when `trace` is `Some`.
    fn store(
        &mut self,
        jobs: impl Iterator<Item = (EncodedJob, Option<f64>)>,
        trace: Option<Option<&str>>,
    ) -> Vec<bool> {
        let mut added = Vec::new();
        for (job, at) in jobs {
            let new = !self.data.contains_key(&job.id);
            if new {
                match trace {
                    Some(Some(trace)) => {
                        self.traces.insert(job.id.clone(), trace.to_owned());
                    }
                    Some(None) => {
                        self.traces.remove(&job.id);
                    }
                    None => {}
                }
                match at {
                    Some(at) => self.scheduled.insert(&job.id, at),
                    None => self.active.push_back(job.id.clone()),
                }
                self.data.insert(job.id, job.data);
            }
            added.push(new);
        }
        // Wake idle consumers (for a schedule: so their schedulers see the new due time).
        if added.contains(&true) {
            self.set_signal();
        }
        added
    }
}

/// Removes the entries of `side` whose job has no data, as `trim_dead.lua` does: nothing
/// while there are at most `keep` entries; all of them with at most [`ERRORS_SWEEP`]
/// entries; else the next [`ERRORS_SWEEP`] IDs after `cursor`, in ID order, starting over
/// after the last.
fn sweep(
    side: &mut BTreeMap<String, String>,
    cursor: &mut Option<String>,
    data: &HashMap<String, Vec<u8>>,
    keep: usize,
) {
    let n = side.len();
    if n <= ERRORS_SWEEP {
        // A whole pass is possible: a pass under way is moot.
        *cursor = None;
    }
    if n <= keep {
        return;
    }
    let examined: Vec<String> = if n <= ERRORS_SWEEP {
        side.keys().cloned().collect()
    } else {
        let after = match cursor.as_ref() {
            Some(id) => Bound::Excluded(id.clone()),
            None => Bound::Unbounded,
        };
        let page: Vec<String> = side
            .range::<String, _>((after, Bound::Unbounded))
            .take(ERRORS_SWEEP)
            .map(|(id, _)| id.clone())
            .collect();
        // A short page reached the last ID: the pass is complete.
        *cursor = if page.len() < ERRORS_SWEEP {
            None
        } else {
            page.last().cloned()
        };
        page
    };
    for id in examined {
        if !data.contains_key(&id) {
            side.remove(&id);
        }
    }
}

impl QueueState {
    fn snapshot(&self) -> QueueSnapshot {
        QueueSnapshot {
            data: self
                .data
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            active: self.active.iter().cloned().collect(),
            scheduled: self.scheduled.to_vec(),
            dead: self.dead.to_vec(),
            consumers: self.consumers.to_vec(),
            inflight: self
                .inflight
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            signal: self.signal,
            reasons: self
                .reasons
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            orphaned: self.orphaned.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            errors: self.errors.clone(),
        }
    }
}

struct Shared {
    queues: Mutex<HashMap<QueueName, QueueState>>,
    /// The clock of waiters' timeouts; `None`: the runtime enabled by features, chosen
    /// when a wait starts (so that a backend made outside a runtime works inside one).
    runtime: Option<Arc<dyn Runtime>>,
}

fn check_score(what: &str, value: f64) -> Result<(), BackendError> {
    if value.is_nan() {
        Err(BackendError::Rejected(format!(
            "{what} is NaN, which is not a valid sorted-set score"
        )))
    } else {
        Ok(())
    }
}

/// An in-memory [`QueueBackend`]: the executable reference model of `spec/wire.md`.
///
/// Each operation runs entirely under one lock (never held across an `.await`), so it
/// is atomic like a Redis script. Queues are independent. Clones share the same state,
/// so a producer and a consumer can each hold one.
///
/// Semantics that the wire contract leaves open are fixed here as the Redis scripts fix
/// them: sorted-set ties are ordered by member bytes; a NaN score is rejected
/// ([`BackendError::Rejected`]) before anything is written; `requeue_orphans` moves the
/// jobs of one consumer in ID order, visits every expired consumer (removing those left
/// with nothing in flight even once `max_jobs` is used up); `unregister` of a consumer
/// holding nothing returns `true` even if it was not registered.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// use curlyq_core::{ConsumerId, EncodedJob, QueueBackend, QueueName, Registration};
/// use curlyq_core::MemoryBackend;
///
/// let backend = MemoryBackend::new();
/// let queue = QueueName::new("emails").unwrap();
/// let job = EncodedJob { id: "j1".into(), data: b"bytes".to_vec() };
/// assert_eq!(backend.push(&queue, &[job]).await.unwrap(), vec![true]);
///
/// let consumer = ConsumerId::from_string("c1");
/// backend.register(&queue, &consumer, 100.0, Registration::Join).await.unwrap();
/// let taken = backend.take(&queue, &consumer, 10, 1_700_000_000.0).await.unwrap();
/// assert_eq!(taken[0].id, "j1");
/// assert!(backend.snapshot(&queue).inflight["c1"].contains("j1"));
/// # });
/// ```
#[derive(Clone)]
pub struct MemoryBackend {
    shared: Arc<Shared>,
}

impl fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let queues = lock(&self.shared.queues);
        let mut names: Vec<&QueueName> = queues.keys().collect();
        names.sort();
        f.debug_struct("MemoryBackend")
            .field("queues", &names)
            .finish_non_exhaustive()
    }
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBackend {
    /// An empty backend whose waiters time out on real time, with the timers of the
    /// runtime enabled by features (tokio inside a tokio runtime, else async-io). With
    /// no runtime feature, a wait only checks the signal; use
    /// [`with_runtime`](Self::with_runtime) then.
    pub fn new() -> Self {
        MemoryBackend {
            shared: Arc::new(Shared {
                queues: Mutex::new(HashMap::new()),
                runtime: None,
            }),
        }
    }

    /// The process-wide backend called `name`: every call with the same name returns
    /// (a clone of) the same store, made empty on first use. `curlyq::connect` gives
    /// `memory://<name>` URLs this.
    ///
    /// ```
    /// use curlyq_core::MemoryBackend;
    /// let a = MemoryBackend::named("dev");
    /// let b = MemoryBackend::named("dev");
    /// assert!(a.same_store(&b));
    /// assert!(!a.same_store(&MemoryBackend::named("other")));
    /// ```
    pub fn named(name: &str) -> Self {
        static STORES: std::sync::OnceLock<Mutex<HashMap<String, MemoryBackend>>> =
            std::sync::OnceLock::new();
        let stores = STORES.get_or_init(|| Mutex::new(HashMap::new()));
        lock(stores).entry(name.to_string()).or_default().clone()
    }

    /// Whether `self` and `other` share one store (one is a clone of the other).
    pub fn same_store(&self, other: &MemoryBackend) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// An empty backend whose waiters time out on `runtime`'s clock (such as the
    /// testkit's `ManualRuntime`).
    pub fn with_runtime(runtime: Arc<dyn Runtime>) -> Self {
        MemoryBackend {
            shared: Arc::new(Shared {
                queues: Mutex::new(HashMap::new()),
                runtime: Some(runtime),
            }),
        }
    }

    /// The state of `queue` as plain data (empty if the queue was never used).
    pub fn snapshot(&self, queue: &QueueName) -> QueueSnapshot {
        lock(&self.shared.queues)
            .get(queue)
            .map(QueueState::snapshot)
            .unwrap_or_default()
    }

    /// The names of the queues that have been used, sorted.
    pub fn queues(&self) -> Vec<QueueName> {
        let mut names: Vec<QueueName> = lock(&self.shared.queues).keys().cloned().collect();
        names.sort();
        names
    }

    /// Deletes the data field of job `id` (simulates a job whose data went missing).
    /// Returns whether there was one.
    #[cfg(feature = "test-hooks")]
    pub fn remove_data(&self, queue: &QueueName, id: &str) -> bool {
        self.edit(queue, |q| q.data.remove(id).is_some())
    }

    /// Writes `bytes` as the data of job `id` as they are (poison bytes, a job written by
    /// another program), touching nothing else.
    #[cfg(feature = "test-hooks")]
    pub fn put_raw_data(&self, queue: &QueueName, id: &str, bytes: impl Into<Vec<u8>>) {
        self.edit(queue, |q| {
            q.data.insert(id.to_owned(), bytes.into());
        });
    }

    /// Appends `id` to the active list as it is (no data written, no signal set).
    #[cfg(feature = "test-hooks")]
    pub fn push_raw_active(&self, queue: &QueueName, id: &str) {
        self.edit(queue, |q| q.active.push_back(id.to_owned()));
    }

    /// Adds `id` to the scheduled set at `at` as it is (no data written, no signal).
    #[cfg(feature = "test-hooks")]
    pub fn add_raw_scheduled(&self, queue: &QueueName, id: &str, at: f64) {
        self.edit(queue, |q| q.scheduled.insert(id, at));
    }

    /// Adds `id` to the in-flight set of `consumer` as it is (the consumer is not
    /// registered by it).
    #[cfg(feature = "test-hooks")]
    pub fn add_raw_inflight(&self, queue: &QueueName, consumer: &str, id: &str) {
        self.edit(queue, |q| {
            q.inflight
                .entry(consumer.to_owned())
                .or_default()
                .insert(id.to_owned());
        });
    }

    /// Acks `id` as a Go CurlyQ consumer does: if it is in the consumer's in-flight set,
    /// removes it there and deletes its data, touching none of curlyq's own keys (its
    /// orphan count and last error stay behind). Returns whether it was owned.
    #[cfg(feature = "test-hooks")]
    pub fn go_ack(&self, queue: &QueueName, consumer: &ConsumerId, id: &str) -> bool {
        self.edit(queue, |q| {
            let owned = q.disown(consumer.as_str(), id);
            if owned {
                q.data.remove(id);
            }
            owned
        })
    }

    /// Whether the signal of `queue` is set.
    pub fn signal(&self, queue: &QueueName) -> bool {
        lock(&self.shared.queues)
            .get(queue)
            .is_some_and(|q| q.signal)
    }

    /// Sets or clears the signal directly (waking waiters when set).
    #[cfg(feature = "test-hooks")]
    pub fn set_signal(&self, queue: &QueueName, signal: bool) {
        self.edit(queue, |q| {
            if signal {
                q.set_signal();
            } else {
                q.signal = false;
            }
        });
    }

    /// Runs `f` on the queue's state under the lock, then wakes waiters if it set the
    /// signal.
    fn edit<T>(&self, queue: &QueueName, f: impl FnOnce(&mut QueueState) -> T) -> T {
        let (result, event) = {
            let mut queues = lock(&self.shared.queues);
            let state = queues.entry(queue.clone()).or_insert_with(QueueState::new);
            let result = f(state);
            let event = std::mem::take(&mut state.notify).then(|| Arc::clone(&state.event));
            (result, event)
        };
        if let Some(event) = event {
            event.notify(usize::MAX);
        }
        result
    }

    /// One atomic operation: `f` under the lock, then wake-ups.
    fn op<T>(
        &self,
        queue: &QueueName,
        f: impl FnOnce(&mut QueueState) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        self.edit(queue, f)
    }

    /// One take (with `traced`, each job's trace field too) and a peek at the
    /// scheduled set.
    fn take_from(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        max: usize,
        _now: f64,
        traced: bool,
    ) -> Result<TakeReport, BackendError> {
        self.op(queue, |q| {
            if !q.consumers.contains(consumer.as_str()) {
                return Err(BackendError::NotRegistered {
                    queue: queue.as_str().to_owned(),
                    consumer: consumer.as_str().to_owned(),
                });
            }
            let mut taken = Vec::new();
            while taken.len() < max && !q.paused {
                let Some(id) = q.active.pop_front() else {
                    break;
                };
                q.inflight
                    .entry(consumer.as_str().to_owned())
                    .or_default()
                    .insert(id.clone());
                let data = q.data.get(&id).cloned();
                let trace = if traced {
                    q.traces.get(&id).cloned()
                } else {
                    None
                };
                taken.push(TakenJob { id, data, trace });
            }
            // A paused queue clears the signal whatever `max`, so idle consumers block.
            if taken.len() < max || q.paused {
                q.signal = false;
            }
            Ok(TakeReport {
                jobs: taken,
                scheduled: q.scheduled.first_score().into(),
            })
        })
    }

    fn signal_and_event(&self, queue: &QueueName) -> (bool, Arc<Event>) {
        self.edit(queue, |q| (q.signal, Arc::clone(&q.event)))
    }
}

#[async_trait]
impl QueueBackend for MemoryBackend {
    async fn snapshot(&self, queue: &QueueName) -> Result<QueueSnapshot, BackendError> {
        self.op(queue, |q| Ok(q.snapshot()))
    }

    async fn push(
        &self,
        queue: &QueueName,
        jobs: &[EncodedJob],
    ) -> Result<Vec<bool>, BackendError> {
        self.op(queue, |q| {
            Ok(q.store(jobs.iter().map(|j| (j.clone(), None)), None))
        })
    }

    async fn push_traced(
        &self,
        queue: &QueueName,
        jobs: &[EncodedJob],
        trace: Option<&str>,
    ) -> Result<Vec<bool>, BackendError> {
        self.op(queue, |q| {
            Ok(q.store(jobs.iter().map(|j| (j.clone(), None)), Some(trace)))
        })
    }

    async fn schedule_traced(
        &self,
        queue: &QueueName,
        jobs: &[ScheduledJob],
        trace: Option<&str>,
    ) -> Result<Vec<bool>, BackendError> {
        self.op(queue, |q| {
            for job in jobs {
                check_score("schedule time", job.at)?;
            }
            let jobs = jobs.iter().map(|j| (j.job.clone(), Some(j.at)));
            Ok(q.store(jobs, Some(trace)))
        })
    }

    async fn take_traced(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        max: usize,
        now: f64,
    ) -> Result<TakeReport, BackendError> {
        self.take_from(queue, consumer, max, now, true)
    }

    async fn schedule(
        &self,
        queue: &QueueName,
        jobs: &[ScheduledJob],
    ) -> Result<Vec<bool>, BackendError> {
        self.op(queue, |q| {
            for job in jobs {
                check_score("schedule time", job.at)?;
            }
            let jobs = jobs.iter().map(|j| (j.job.clone(), Some(j.at)));
            Ok(q.store(jobs, None))
        })
    }

    async fn register(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        now: f64,
        mode: Registration,
    ) -> Result<bool, BackendError> {
        self.op(queue, |q| {
            check_score("heartbeat time", now)?;
            match mode {
                Registration::Join => {
                    q.consumers.insert(consumer.as_str(), now);
                    Ok(true)
                }
                Registration::Heartbeat => {
                    if q.consumers.contains(consumer.as_str()) {
                        q.consumers.insert(consumer.as_str(), now);
                        Ok(true)
                    } else {
                        Ok(false)
                    }
                }
            }
        })
    }

    async fn enqueue_due(
        &self,
        queue: &QueueName,
        now: f64,
        max: usize,
    ) -> Result<DueReport, BackendError> {
        self.op(queue, |q| {
            check_score("current time", now)?;
            let due = q.scheduled.up_to(now, max);
            for id in &due {
                q.scheduled.remove(id);
                q.active.push_back(id.clone());
            }
            if !due.is_empty() {
                q.set_signal();
            }
            Ok(DueReport {
                moved: due.len(),
                next_due: q.scheduled.first_score(),
            })
        })
    }

    async fn take(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        max: usize,
        now: f64,
    ) -> Result<Vec<TakenJob>, BackendError> {
        Ok(self.take_and_peek(queue, consumer, max, now).await?.jobs)
    }

    async fn take_and_peek(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        max: usize,
        now: f64,
    ) -> Result<TakeReport, BackendError> {
        self.take_from(queue, consumer, max, now, false)
    }

    async fn waiter(&self, queue: &QueueName) -> Result<Box<dyn Waiter>, BackendError> {
        self.op(queue, |_| Ok(()))?;
        Ok(Box::new(MemoryWaiter {
            backend: self.clone(),
            queue: queue.clone(),
        }))
    }

    async fn ack(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        ids: &[String],
        now: f64,
    ) -> Result<Vec<bool>, BackendError> {
        self.op(queue, |q| {
            let owned: Vec<bool> = ids
                .iter()
                .map(|id| {
                    let owned = q.disown(consumer.as_str(), id);
                    if owned {
                        q.data.remove(id);
                        q.orphaned.remove(id);
                        q.errors.remove(id);
                        q.traces.remove(id);
                    }
                    owned
                })
                .collect();
            q.count(now, Counts::acked(owned.iter().filter(|o| **o).count()));
            Ok(owned)
        })
    }

    async fn retry(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        jobs: &[RetryJob],
        now: f64,
    ) -> Result<Vec<bool>, BackendError> {
        self.op(queue, |q| {
            for job in jobs {
                check_score("retry time", job.at)?;
            }
            let owned: Vec<bool> = jobs
                .iter()
                .map(|job| {
                    let owned = q.disown(consumer.as_str(), &job.id);
                    if owned {
                        q.scheduled.insert(&job.id, job.at);
                        q.data.insert(job.id.clone(), job.data.clone());
                        q.orphaned.remove(&job.id);
                        match &job.error {
                            Some(error) => q.errors.insert(job.id.clone(), error.clone()),
                            None => q.errors.remove(&job.id),
                        };
                    }
                    owned
                })
                .collect();
            q.count(now, Counts::retried(owned.iter().filter(|o| **o).count()));
            Ok(owned)
        })
    }

    async fn kill(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        jobs: &[KillJob],
        now: f64,
    ) -> Result<Vec<bool>, BackendError> {
        self.op(queue, |q| {
            check_score("kill time", now)?;
            let owned: Vec<bool> = jobs
                .iter()
                .map(|job| {
                    let owned = q.disown(consumer.as_str(), &job.id);
                    if owned {
                        q.kill_job(&job.id, now, job.data.as_deref(), job.reason.clone());
                    }
                    owned
                })
                .collect();
            q.count(now, Counts::killed(owned.iter().filter(|o| **o).count()));
            Ok(owned)
        })
    }

    async fn give_back(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        ids: &[String],
    ) -> Result<usize, BackendError> {
        self.op(queue, |q| {
            let mut moved = 0;
            for id in ids {
                if q.disown(consumer.as_str(), id) {
                    q.active.push_back(id.clone());
                    moved += 1;
                }
            }
            if moved > 0 {
                q.set_signal();
            }
            Ok(moved)
        })
    }

    async fn requeue_orphans(
        &self,
        queue: &QueueName,
        sweep: OrphanSweep,
    ) -> Result<OrphanReport, BackendError> {
        self.op(queue, |q| {
            check_score("expiry time", sweep.expired_before)?;
            check_score("current time", sweep.now)?;
            let expired = q.consumers.up_to(sweep.expired_before, usize::MAX);
            let mut report = OrphanReport::default();
            let mut budget = sweep.max_jobs;
            for consumer in expired {
                if let Some(set) = q.inflight.get_mut(&consumer) {
                    let ids: Vec<String> = set.iter().take(budget).cloned().collect();
                    for id in &ids {
                        set.remove(id);
                    }
                    if set.is_empty() {
                        q.inflight.remove(&consumer);
                    }
                    budget -= ids.len();
                    for id in ids {
                        let times = q.orphaned.entry(id.clone()).or_insert(0);
                        *times = times.saturating_add(1);
                        let times = *times;
                        if sweep.max_orphan_requeues > 0 && times >= sweep.max_orphan_requeues {
                            q.kill_job(&id, sweep.now, None, orphan_kill_reason(times));
                            report.killed += 1;
                        } else {
                            q.active.push_back(id);
                            report.requeued += 1;
                        }
                    }
                }
                if !q.inflight.contains_key(&consumer) {
                    q.consumers.remove(&consumer);
                    report.consumers_removed += 1;
                }
            }
            if report.requeued > 0 {
                q.set_signal();
            }
            q.count(sweep.now, Counts::killed(report.killed));
            Ok(report)
        })
    }

    async fn trim_dead(&self, queue: &QueueName, trim: DeadTrim) -> Result<usize, BackendError> {
        self.op(queue, |q| {
            check_score("trim time", trim.killed_before)?;
            let too_old = q
                .dead
                .iter()
                .take_while(|(_, score)| *score < trim.killed_before)
                .count();
            let too_many = q.dead.len().saturating_sub(trim.keep_at_most);
            let count = too_old.max(too_many).min(trim.max_jobs);
            let victims: Vec<String> = q
                .dead
                .iter()
                .take(count)
                .map(|(id, _)| id.to_owned())
                .collect();
            for id in &victims {
                q.dead.remove(id);
                q.data.remove(id);
                q.reasons.remove(id);
                q.orphaned.remove(id);
                q.errors.remove(id);
                q.traces.remove(id);
            }
            // Redis sends no script at all for max_jobs 0.
            if trim.max_jobs > 0 {
                q.sweep_errors(trim.keep_at_most);
                q.sweep_traces(trim.keep_at_most);
            }
            Ok(victims.len())
        })
    }

    async fn unregister(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
    ) -> Result<bool, BackendError> {
        self.op(queue, |q| {
            if q.inflight.contains_key(consumer.as_str()) {
                return Ok(false);
            }
            q.consumers.remove(consumer.as_str());
            Ok(true)
        })
    }

    async fn list_queues(&self) -> Result<Vec<QueueName>, BackendError> {
        let queues = lock(&self.shared.queues);
        let mut names: Vec<QueueName> = queues
            .iter()
            .filter(|(_, q)| {
                !(q.data.is_empty()
                    && q.active.is_empty()
                    && q.scheduled.len() == 0
                    && q.dead.len() == 0
                    && q.consumers.len() == 0)
            })
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        Ok(names)
    }

    async fn stats(
        &self,
        queue: &QueueName,
        now: f64,
        minutes: usize,
    ) -> Result<crate::admin::QueueStats, BackendError> {
        self.op(queue, |q| {
            check_score("current time", now)?;
            Ok(q.stats(now, minutes))
        })
    }

    async fn consumers(
        &self,
        queue: &QueueName,
    ) -> Result<Vec<crate::admin::ConsumerInfo>, BackendError> {
        self.op(queue, |q| Ok(q.consumer_infos()))
    }

    async fn jobs(
        &self,
        queue: &QueueName,
        page: crate::admin::PageRequest,
    ) -> Result<crate::admin::JobPage, BackendError> {
        self.op(queue, |q| Ok(q.page(page)))
    }

    async fn find_job(
        &self,
        queue: &QueueName,
        id: &str,
    ) -> Result<Option<crate::admin::JobDetail>, BackendError> {
        self.op(queue, |q| Ok(q.find(id)))
    }

    async fn retry_dead(
        &self,
        queue: &QueueName,
        selection: &crate::admin::Selection,
    ) -> Result<crate::admin::ActionReport, BackendError> {
        self.op(queue, |q| {
            Ok(q.revive(crate::admin::JobState::Dead, selection))
        })
    }

    async fn run_scheduled(
        &self,
        queue: &QueueName,
        selection: &crate::admin::Selection,
    ) -> Result<crate::admin::ActionReport, BackendError> {
        self.op(queue, |q| {
            Ok(q.revive(crate::admin::JobState::Scheduled, selection))
        })
    }

    async fn delete_jobs(
        &self,
        queue: &QueueName,
        ids: &[String],
    ) -> Result<crate::admin::DeleteReport, BackendError> {
        self.op(queue, |q| Ok(q.delete(ids)))
    }

    async fn purge(
        &self,
        queue: &QueueName,
        state: crate::admin::JobState,
        max: usize,
    ) -> Result<usize, BackendError> {
        self.op(queue, |q| q.purge(state, max))
    }

    async fn remove_consumer(
        &self,
        queue: &QueueName,
        consumer: &str,
        expired_before: f64,
    ) -> Result<crate::admin::RemoveReport, BackendError> {
        self.op(queue, |q| {
            check_score("expiry time", expired_before)?;
            Ok(q.remove_consumer(consumer, expired_before))
        })
    }

    async fn set_paused(&self, queue: &QueueName, paused: bool) -> Result<bool, BackendError> {
        self.op(queue, |q| Ok(q.set_paused(paused)))
    }

    async fn data_ids(
        &self,
        queue: &QueueName,
        cursor: u64,
        count: usize,
    ) -> Result<(Vec<String>, Option<u64>), BackendError> {
        self.op(queue, |q| Ok(q.data_ids(cursor, count)))
    }

    async fn stray_inflight(
        &self,
        queue: &QueueName,
    ) -> Result<Vec<(String, BTreeSet<String>)>, BackendError> {
        self.op(queue, |q| Ok(q.stray()))
    }

    async fn confirm(
        &self,
        queue: &QueueName,
        problem: &crate::admin::Problem,
    ) -> Result<Option<crate::admin::Problem>, BackendError> {
        self.op(queue, |q| Ok(q.confirm(problem)))
    }

    async fn repair(
        &self,
        queue: &QueueName,
        problem: &crate::admin::Problem,
    ) -> Result<bool, BackendError> {
        self.op(queue, |q| Ok(q.repair(problem)))
    }
}

/// The [`Waiter`] of [`MemoryBackend`]: waits for the queue's event, racing a sleep on
/// the backend's runtime.
struct MemoryWaiter {
    backend: MemoryBackend,
    queue: QueueName,
}

#[async_trait]
impl Waiter for MemoryWaiter {
    /// A zero `timeout` only checks the signal.
    async fn wait(&mut self, timeout: Duration) -> Result<bool, BackendError> {
        Ok(self.wait_inner(timeout).await)
    }
}

impl MemoryWaiter {
    async fn wait_inner(&self, timeout: Duration) -> bool {
        let (signal, event) = self.backend.signal_and_event(&self.queue);
        if signal || timeout.is_zero() {
            return signal;
        }
        let runtime = self.backend.shared.runtime.clone();
        let Some(runtime) = runtime.or_else(crate::runtime::default_runtime) else {
            return signal;
        };
        let mut sleep = runtime.sleep(timeout);
        loop {
            // Listen before looking, so that a signal set in between is not missed.
            let listener = event.listen();
            if self.backend.signal_and_event(&self.queue).0 {
                return true;
            }
            match future::select(listener, &mut sleep).await {
                Either::Left(((), _)) => continue,
                Either::Right(((), _)) => return self.backend.signal_and_event(&self.queue).0,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_set_orders_by_score_then_member() {
        let mut set = SortedSet::default();
        set.insert("b", 1.0);
        set.insert("a", 1.0);
        set.insert("z", -3.0);
        set.insert("m", 0.5);
        set.insert("m", 2.0);
        assert_eq!(
            set.to_vec(),
            vec![
                ("z".into(), -3.0),
                ("a".into(), 1.0),
                ("b".into(), 1.0),
                ("m".into(), 2.0)
            ]
        );
        assert_eq!(set.up_to(1.0, 10), vec!["z", "a", "b"]);
        assert_eq!(set.up_to(1.0, 2), vec!["z", "a"]);
        assert_eq!(set.remove("a"), Some(1.0));
        assert_eq!(set.remove("a"), None);
        assert_eq!(set.len(), 3);
        assert_eq!(set.first_score(), Some(-3.0));
    }

    #[test]
    fn negative_zero_ties_with_zero() {
        let mut set = SortedSet::default();
        set.insert("b", -0.0);
        set.insert("a", 0.0);
        assert_eq!(set.up_to(0.0, 10), vec!["a", "b"]);
        assert!(set.iter().all(|(_, s)| s.is_sign_positive()));
    }

    #[test]
    fn infinite_scores_are_ordered() {
        let mut set = SortedSet::default();
        set.insert("inf", f64::INFINITY);
        set.insert("ninf", f64::NEG_INFINITY);
        set.insert("zero", 0.0);
        assert_eq!(set.up_to(f64::INFINITY, 10), vec!["ninf", "zero", "inf"]);
        assert_eq!(set.up_to(f64::NEG_INFINITY, 10), vec!["ninf"]);
    }

    #[test]
    fn orphan_reason_names_the_count() {
        assert!(orphan_kill_reason(3).starts_with("orphaned 3 times: "));
    }
}
