//! [`Faulty`]: fault injection around any [`QueueBackend`].
//!
//! A call can be failed before it reaches the backend (nothing is carried out) or carried
//! out and then reported as failed (its reply lost on the way back, as when a connection
//! drops after Redis ran a script). Both come back as [`BackendError::Unavailable`]
//! holding an [`InjectedFailure`]. Every call is counted by [`Operation`].
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! use curlyq_core::{EncodedJob, QueueBackend, QueueName};
//! use curlyq_testkit::{Faulty, MemoryBackend, Operation};
//!
//! let backend = Faulty::new(MemoryBackend::new());
//! let queue = QueueName::new("emails").unwrap();
//! let job = EncodedJob { id: "j1".into(), data: b"bytes".to_vec() };
//! backend.fail_next_applied(1);
//! assert!(backend.push(&queue, &[job.clone()]).await.is_err()); // applied, reply lost
//! assert_eq!(backend.push(&queue, &[job]).await.unwrap(), vec![false]); // already there
//! assert_eq!(backend.calls(Operation::Push), 2);
//! # });
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use curlyq_core::admin;
use curlyq_core::{
    BackendError, ConsumerId, DeadTrim, DueReport, EncodedJob, KillJob, OrphanReport, OrphanSweep,
    QueueBackend, QueueName, QueueSnapshot, Registration, RetryJob, ScheduledJob, TakeReport,
    TakenJob, Waiter,
};

/// One operation of a [`QueueBackend`], as seen by [`Faulty`]'s hooks and call counters
/// (and by the simulator's call records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Operation {
    /// [`QueueBackend::push`].
    Push,
    /// [`QueueBackend::schedule`].
    Schedule,
    /// [`QueueBackend::register`].
    Register,
    /// [`QueueBackend::enqueue_due`].
    EnqueueDue,
    /// [`QueueBackend::take`].
    Take,
    /// [`QueueBackend::waiter`] (making a waiter).
    Waiter,
    /// [`Waiter::wait`] on a waiter of this backend.
    Wait,
    /// [`QueueBackend::ack`].
    Ack,
    /// [`QueueBackend::snapshot`].
    Snapshot,
    /// [`QueueBackend::retry`].
    Retry,
    /// [`QueueBackend::kill`].
    Kill,
    /// [`QueueBackend::give_back`].
    GiveBack,
    /// [`QueueBackend::requeue_orphans`].
    RequeueOrphans,
    /// [`QueueBackend::trim_dead`].
    TrimDead,
    /// [`QueueBackend::unregister`].
    Unregister,
    /// [`QueueBackend::settings_warnings`] (it names no queue: [`Faulty`] passes it
    /// through, neither failed nor counted).
    SettingsWarnings,
}

/// A predicate deciding which operations fail (see [`Faulty::set_failing`]).
pub type FailWhen = Arc<dyn Fn(Operation, &QueueName) -> bool + Send + Sync>;

/// The error inside the [`BackendError::Unavailable`] that an injected fault returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectedFailure {
    /// The operation that failed.
    pub operation: Operation,
    /// Whether the operation was carried out before the failure was reported (a lost
    /// reply, see [`Faulty::fail_next_applied`]).
    pub applied: bool,
}

impl fmt::Display for InjectedFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.applied {
            write!(
                f,
                "injected failure after {:?} was carried out (lost reply)",
                self.operation
            )
        } else {
            write!(
                f,
                "injected failure: {:?} was not carried out",
                self.operation
            )
        }
    }
}

impl std::error::Error for InjectedFailure {}

impl InjectedFailure {
    /// The [`BackendError::Unavailable`] holding this failure.
    pub fn into_error(self) -> BackendError {
        BackendError::Unavailable(Box::new(self))
    }
}

#[derive(Default)]
struct Faults {
    fail_next: u64,
    fail_next_applied: u64,
    fail_when: Option<FailWhen>,
    fail_applied_when: Option<FailWhen>,
    calls: HashMap<Operation, u64>,
}

/// What the fault hooks decided for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    Run,
    RunThenFail,
}

/// Locks a mutex, ignoring poisoning (a panicking test thread must not hide the hooks
/// from the next assertion).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A [`QueueBackend`] around another one that fails chosen calls, before they run or
/// after (a lost reply), and counts every call.
///
/// The hooks are checked in this order, once per call: [`fail_next`](Self::fail_next),
/// [`set_failing`](Self::set_failing) (the call fails without reaching the backend), then
/// [`fail_next_applied`](Self::fail_next_applied) and
/// [`set_failing_applied`](Self::set_failing_applied) (the call runs on the backend, then
/// fails; an error of the backend itself is returned as it is). Making a waiter and every
/// [`Waiter::wait`] of one count as calls too. [`QueueBackend::settings_warnings`] names no
/// queue and is passed through untouched.
///
/// Clones share the backend (when it is shared by its own clones, as the testkit's and
/// the Redis backends are) and the hooks.
pub struct Faulty<B> {
    inner: B,
    faults: Arc<Mutex<Faults>>,
}

impl<B: Clone> Clone for Faulty<B> {
    fn clone(&self) -> Self {
        Faulty {
            inner: self.inner.clone(),
            faults: Arc::clone(&self.faults),
        }
    }
}

impl<B: fmt::Debug> fmt::Debug for Faulty<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Faulty")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<B: Default> Default for Faulty<B> {
    fn default() -> Self {
        Self::new(B::default())
    }
}

impl<B> Faulty<B> {
    /// `inner` with no faults injected yet.
    pub fn new(inner: B) -> Self {
        Faulty {
            inner,
            faults: Arc::new(Mutex::new(Faults::default())),
        }
    }

    /// The backend inside (calls on it bypass the hooks and are not counted).
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// The backend inside, the hooks dropped.
    pub fn into_inner(self) -> B {
        self.inner
    }

    /// Makes every operation for which `fail_when` returns `true` fail with
    /// [`BackendError::Unavailable`] without being carried out, until cleared with
    /// `None`. Checked after [`fail_next`](Self::fail_next).
    pub fn set_failing(&self, fail_when: Option<FailWhen>) {
        lock(&self.faults).fail_when = fail_when;
    }

    /// Makes every operation fail (`true`) or none (`false`): a store that is down.
    pub fn set_unavailable(&self, unavailable: bool) {
        let fail_when: Option<FailWhen> = if unavailable {
            Some(Arc::new(|_, _| true))
        } else {
            None
        };
        self.set_failing(fail_when);
    }

    /// Makes the next `n` operations (of any kind, on any queue) fail with
    /// [`BackendError::Unavailable`] without being carried out.
    pub fn fail_next(&self, n: u64) {
        lock(&self.faults).fail_next = n;
    }

    /// Makes the next `n` operations be carried out but then report
    /// [`BackendError::Unavailable`] (a reply lost after the store applied the
    /// operation). Applies to operations that no other hook failed.
    pub fn fail_next_applied(&self, n: u64) {
        lock(&self.faults).fail_next_applied = n;
    }

    /// Makes every operation for which `fail_when` returns `true` be carried out and
    /// then report [`BackendError::Unavailable`] (its reply lost), until cleared with
    /// `None`. Checked after [`fail_next_applied`](Self::fail_next_applied).
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    /// use curlyq_testkit::{Faulty, MemoryBackend, Operation};
    ///
    /// let backend = Faulty::new(MemoryBackend::new());
    /// // Lose the reply of the first take only.
    /// let lost = Arc::new(AtomicBool::new(false));
    /// backend.set_failing_applied(Some(Arc::new(move |op, _queue| {
    ///     op == Operation::Take && !lost.swap(true, Ordering::SeqCst)
    /// })));
    /// ```
    pub fn set_failing_applied(&self, fail_when: Option<FailWhen>) {
        lock(&self.faults).fail_applied_when = fail_when;
    }

    /// How many times `operation` was called (failed calls included).
    pub fn calls(&self, operation: Operation) -> u64 {
        lock(&self.faults)
            .calls
            .get(&operation)
            .copied()
            .unwrap_or(0)
    }
}

/// Counts the call and applies the fault hooks.
fn gate(
    faults: &Mutex<Faults>,
    operation: Operation,
    queue: &QueueName,
) -> Result<Gate, BackendError> {
    let mut faults = lock(faults);
    *faults.calls.entry(operation).or_insert(0) += 1;
    let fail = if faults.fail_next > 0 {
        faults.fail_next -= 1;
        true
    } else {
        faults
            .fail_when
            .as_ref()
            .is_some_and(|fail_when| fail_when(operation, queue))
    };
    if fail {
        return Err(injected(operation, false));
    }
    if faults.fail_next_applied > 0 {
        faults.fail_next_applied -= 1;
        return Ok(Gate::RunThenFail);
    }
    if faults
        .fail_applied_when
        .as_ref()
        .is_some_and(|fail_when| fail_when(operation, queue))
    {
        return Ok(Gate::RunThenFail);
    }
    Ok(Gate::Run)
}

fn injected(operation: Operation, applied: bool) -> BackendError {
    InjectedFailure { operation, applied }.into_error()
}

/// The reply of a call the hooks let run.
fn settle<T>(
    gate: Gate,
    operation: Operation,
    result: Result<T, BackendError>,
) -> Result<T, BackendError> {
    let value = result?;
    match gate {
        Gate::Run => Ok(value),
        Gate::RunThenFail => Err(injected(operation, true)),
    }
}

impl<B: QueueBackend> Faulty<B> {
    fn gate(&self, operation: Operation, queue: &QueueName) -> Result<Gate, BackendError> {
        gate(&self.faults, operation, queue)
    }
}

#[async_trait]
impl<B: QueueBackend> QueueBackend for Faulty<B> {
    async fn push(
        &self,
        queue: &QueueName,
        jobs: &[EncodedJob],
    ) -> Result<Vec<bool>, BackendError> {
        let gate = self.gate(Operation::Push, queue)?;
        settle(gate, Operation::Push, self.inner.push(queue, jobs).await)
    }

    async fn schedule(
        &self,
        queue: &QueueName,
        jobs: &[ScheduledJob],
    ) -> Result<Vec<bool>, BackendError> {
        let gate = self.gate(Operation::Schedule, queue)?;
        settle(
            gate,
            Operation::Schedule,
            self.inner.schedule(queue, jobs).await,
        )
    }

    async fn register(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        now: f64,
        mode: Registration,
    ) -> Result<bool, BackendError> {
        let gate = self.gate(Operation::Register, queue)?;
        let result = self.inner.register(queue, consumer, now, mode).await;
        settle(gate, Operation::Register, result)
    }

    async fn enqueue_due(
        &self,
        queue: &QueueName,
        now: f64,
        max: usize,
    ) -> Result<DueReport, BackendError> {
        let gate = self.gate(Operation::EnqueueDue, queue)?;
        let result = self.inner.enqueue_due(queue, now, max).await;
        settle(gate, Operation::EnqueueDue, result)
    }

    async fn take(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        max: usize,
        now: f64,
    ) -> Result<Vec<TakenJob>, BackendError> {
        let gate = self.gate(Operation::Take, queue)?;
        settle(
            gate,
            Operation::Take,
            self.inner.take(queue, consumer, max, now).await,
        )
    }

    async fn take_and_peek(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        max: usize,
        now: f64,
    ) -> Result<TakeReport, BackendError> {
        let gate = self.gate(Operation::Take, queue)?;
        settle(
            gate,
            Operation::Take,
            self.inner.take_and_peek(queue, consumer, max, now).await,
        )
    }

    async fn push_traced(
        &self,
        queue: &QueueName,
        jobs: &[EncodedJob],
        trace: Option<&str>,
    ) -> Result<Vec<bool>, BackendError> {
        let gate = self.gate(Operation::Push, queue)?;
        let result = self.inner.push_traced(queue, jobs, trace).await;
        settle(gate, Operation::Push, result)
    }

    async fn schedule_traced(
        &self,
        queue: &QueueName,
        jobs: &[ScheduledJob],
        trace: Option<&str>,
    ) -> Result<Vec<bool>, BackendError> {
        let gate = self.gate(Operation::Schedule, queue)?;
        let result = self.inner.schedule_traced(queue, jobs, trace).await;
        settle(gate, Operation::Schedule, result)
    }

    async fn take_traced(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        max: usize,
        now: f64,
    ) -> Result<TakeReport, BackendError> {
        let gate = self.gate(Operation::Take, queue)?;
        let result = self.inner.take_traced(queue, consumer, max, now).await;
        settle(gate, Operation::Take, result)
    }

    async fn waiter(&self, queue: &QueueName) -> Result<Box<dyn Waiter>, BackendError> {
        let gate = self.gate(Operation::Waiter, queue)?;
        let inner = settle(gate, Operation::Waiter, self.inner.waiter(queue).await)?;
        Ok(Box::new(FaultyWaiter {
            inner,
            faults: Arc::clone(&self.faults),
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
        let gate = self.gate(Operation::Ack, queue)?;
        settle(
            gate,
            Operation::Ack,
            self.inner.ack(queue, consumer, ids, now).await,
        )
    }

    async fn retry(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        jobs: &[RetryJob],
        now: f64,
    ) -> Result<Vec<bool>, BackendError> {
        let gate = self.gate(Operation::Retry, queue)?;
        settle(
            gate,
            Operation::Retry,
            self.inner.retry(queue, consumer, jobs, now).await,
        )
    }

    async fn kill(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        jobs: &[KillJob],
        now: f64,
    ) -> Result<Vec<bool>, BackendError> {
        let gate = self.gate(Operation::Kill, queue)?;
        let result = self.inner.kill(queue, consumer, jobs, now).await;
        settle(gate, Operation::Kill, result)
    }

    async fn give_back(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        ids: &[String],
    ) -> Result<usize, BackendError> {
        let gate = self.gate(Operation::GiveBack, queue)?;
        let result = self.inner.give_back(queue, consumer, ids).await;
        settle(gate, Operation::GiveBack, result)
    }

    async fn requeue_orphans(
        &self,
        queue: &QueueName,
        sweep: OrphanSweep,
    ) -> Result<OrphanReport, BackendError> {
        let gate = self.gate(Operation::RequeueOrphans, queue)?;
        let result = self.inner.requeue_orphans(queue, sweep).await;
        settle(gate, Operation::RequeueOrphans, result)
    }

    async fn trim_dead(&self, queue: &QueueName, trim: DeadTrim) -> Result<usize, BackendError> {
        let gate = self.gate(Operation::TrimDead, queue)?;
        settle(
            gate,
            Operation::TrimDead,
            self.inner.trim_dead(queue, trim).await,
        )
    }

    async fn snapshot(&self, queue: &QueueName) -> Result<QueueSnapshot, BackendError> {
        let gate = self.gate(Operation::Snapshot, queue)?;
        settle(gate, Operation::Snapshot, self.inner.snapshot(queue).await)
    }

    async fn unregister(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
    ) -> Result<bool, BackendError> {
        let gate = self.gate(Operation::Unregister, queue)?;
        let result = self.inner.unregister(queue, consumer).await;
        settle(gate, Operation::Unregister, result)
    }

    async fn settings_warnings(&self) -> Result<Vec<String>, BackendError> {
        self.inner.settings_warnings().await
    }

    // The admin operations go straight through (no fault is injected into them).

    async fn list_queues(&self) -> Result<Vec<QueueName>, BackendError> {
        self.inner.list_queues().await
    }

    async fn stats(
        &self,
        queue: &QueueName,
        now: f64,
        minutes: usize,
    ) -> Result<admin::QueueStats, BackendError> {
        self.inner.stats(queue, now, minutes).await
    }

    async fn consumers(&self, queue: &QueueName) -> Result<Vec<admin::ConsumerInfo>, BackendError> {
        self.inner.consumers(queue).await
    }

    async fn jobs(
        &self,
        queue: &QueueName,
        page: admin::PageRequest,
    ) -> Result<admin::JobPage, BackendError> {
        self.inner.jobs(queue, page).await
    }

    async fn find_job(
        &self,
        queue: &QueueName,
        id: &str,
    ) -> Result<Option<admin::JobDetail>, BackendError> {
        self.inner.find_job(queue, id).await
    }

    async fn retry_dead(
        &self,
        queue: &QueueName,
        selection: &admin::Selection,
    ) -> Result<admin::ActionReport, BackendError> {
        self.inner.retry_dead(queue, selection).await
    }

    async fn run_scheduled(
        &self,
        queue: &QueueName,
        selection: &admin::Selection,
    ) -> Result<admin::ActionReport, BackendError> {
        self.inner.run_scheduled(queue, selection).await
    }

    async fn delete_jobs(
        &self,
        queue: &QueueName,
        ids: &[String],
    ) -> Result<admin::DeleteReport, BackendError> {
        self.inner.delete_jobs(queue, ids).await
    }

    async fn purge(
        &self,
        queue: &QueueName,
        state: admin::JobState,
        max: usize,
    ) -> Result<usize, BackendError> {
        self.inner.purge(queue, state, max).await
    }

    async fn remove_consumer(
        &self,
        queue: &QueueName,
        consumer: &str,
        expired_before: f64,
    ) -> Result<admin::RemoveReport, BackendError> {
        self.inner
            .remove_consumer(queue, consumer, expired_before)
            .await
    }

    async fn set_paused(&self, queue: &QueueName, paused: bool) -> Result<bool, BackendError> {
        self.inner.set_paused(queue, paused).await
    }

    async fn data_ids(
        &self,
        queue: &QueueName,
        cursor: u64,
        count: usize,
    ) -> Result<(Vec<String>, Option<u64>), BackendError> {
        self.inner.data_ids(queue, cursor, count).await
    }

    async fn stray_inflight(
        &self,
        queue: &QueueName,
    ) -> Result<Vec<(String, std::collections::BTreeSet<String>)>, BackendError> {
        self.inner.stray_inflight(queue).await
    }

    async fn confirm(
        &self,
        queue: &QueueName,
        problem: &admin::Problem,
    ) -> Result<Option<admin::Problem>, BackendError> {
        self.inner.confirm(queue, problem).await
    }

    async fn repair(
        &self,
        queue: &QueueName,
        problem: &admin::Problem,
    ) -> Result<bool, BackendError> {
        self.inner.repair(queue, problem).await
    }
}

/// The [`Waiter`] of [`Faulty`]: every wait goes through the hooks as [`Operation::Wait`].
struct FaultyWaiter {
    inner: Box<dyn Waiter>,
    faults: Arc<Mutex<Faults>>,
    queue: QueueName,
}

#[async_trait]
impl Waiter for FaultyWaiter {
    async fn wait(&mut self, timeout: Duration) -> Result<bool, BackendError> {
        let gate = gate(&self.faults, Operation::Wait, &self.queue)?;
        settle(gate, Operation::Wait, self.inner.wait(timeout).await)
    }
}
