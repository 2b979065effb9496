//! The processor's job side: the buffer of taken jobs, the handler slots (a slot stays
//! taken from a job's start until its outcome is recorded), starting handlers with
//! bounded concurrency, timing runs out, turning each run's end into an outcome, and
//! confirming the registration before a job starts after a long silence.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, SystemTime};

use rand::Rng;
use tracing::{debug, warn};

use crate::backend::{ConsumerId, KillJob, Registration, RetryJob, TakenJob};
use crate::context::CancelReason;
use crate::error::BackendError;
use crate::failure::Asked;
use crate::job::Job;

use super::calls::{Purpose, Requester};
use super::machine::ConsumerCore;
use super::outcomes::Outcome;
use super::policy::{after_failure, buffered_fate, AfterFailure, BufferedFate};
use super::protocol::{Command, HandlerResult, Reply, RunId};

/// A taken job and the consumer ID it was taken under (its outcome goes to that ID's
/// in-flight set).
#[derive(Debug)]
pub(super) struct Delivery {
    pub(super) consumer: ConsumerId,
    pub(super) taken: TakenJob,
}

/// A busy handler slot.
#[derive(Debug)]
pub(super) struct Slot {
    pub(super) consumer: ConsumerId,
    pub(super) id: String,
    /// The stored bytes, decoded again for a retry (a failure is rare, so the handler
    /// gets the job itself rather than a copy).
    data: Option<Vec<u8>>,
    /// The handler runs (else the slot waits for its outcome to be recorded).
    pub(super) running: bool,
    /// When the handler started.
    started: SystemTime,
    /// The run's timeout, counted from `started`.
    timeout: Option<Duration>,
    /// The run's timer in [`Jobs::timers`]: its timeout, or the end of its cancel grace.
    timer: Option<SystemTime>,
    /// The run's cancellation signal fired, and why.
    pub(super) signalled: Option<CancelReason>,
}

/// The registration check before a job starts after a long silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Confirm {
    #[default]
    Idle,
    InFlight,
    /// A check ended (whatever it found): the next job may start.
    Passed,
}

/// The processor's jobs.
#[derive(Debug, Default)]
pub(super) struct Jobs {
    pub(super) buffer: VecDeque<Delivery>,
    pub(super) slots: HashMap<RunId, Slot>,
    pub(super) confirm: Confirm,
    /// The runs' timers by time (only runs with a timeout or a cancel grace running).
    timers: BTreeSet<(SystemTime, RunId)>,
}

impl Jobs {
    pub(super) fn busy_slots(&self) -> usize {
        self.slots.len()
    }

    pub(super) fn buffered(&self) -> usize {
        self.buffer.len()
    }

    pub(super) fn running(&self) -> usize {
        self.slots.values().filter(|s| s.running).count()
    }

    /// The earliest run timer.
    pub(super) fn next_timer(&self) -> Option<SystemTime> {
        self.timers.first().map(|(at, _)| *at)
    }

    /// Sets (or with `None` clears) the timer of `run`.
    pub(super) fn set_timer(&mut self, run: RunId, at: Option<SystemTime>) {
        let Some(slot) = self.slots.get_mut(&run) else {
            return;
        };
        if let Some(old) = slot.timer.take() {
            self.timers.remove(&(old, run));
        }
        if let Some(at) = at {
            slot.timer = Some(at);
            self.timers.insert((at, run));
        }
    }
}

/// The longest last-error message kept for a retried job (in bytes; longer ones are cut
/// at a character boundary).
pub(crate) const MAX_ERROR_LEN: usize = 1024;

/// `message` cut to at most [`MAX_ERROR_LEN`] bytes.
pub(crate) fn bounded_error(message: &str) -> String {
    if message.len() <= MAX_ERROR_LEN {
        return message.to_string();
    }
    let mut end = MAX_ERROR_LEN - 3;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &message[..end])
}

const MISSING_DATA: &str =
    "job data missing: the ID was in the active list but the data hash has no field for it";

impl ConsumerCore {
    /// Starts buffered jobs while a slot is free.
    pub(super) fn drive_jobs(&mut self) {
        while !self.is_stopping()
            && self.jobs.slots.len() < self.opts.processor_concurrency
            && !self.jobs.buffer.is_empty()
        {
            if self.ids.may_be_reaped(self.unix_now()) && self.jobs.confirm != Confirm::Passed {
                if self.jobs.confirm == Confirm::Idle && !self.joining {
                    self.confirm_registration();
                }
                return;
            }
            self.jobs.confirm = Confirm::Idle;
            let Some(delivery) = self.jobs.buffer.pop_front() else {
                return;
            };
            match buffered_fate(self.ids.is_reaped(&delivery.consumer)) {
                BufferedFate::Skip => {
                    self.stats.not_owned += 1;
                    self.ids.release(&delivery.consumer, 1);
                    warn!(queue = %self.queue, job_id = %delivery.taken.id,
                        "curlyq skipped a job taken before this consumer was reaped; it was handed on");
                }
                BufferedFate::Run => self.start_job(delivery),
            }
        }
    }

    /// Asks whether the current ID is still registered before a job runs after a long
    /// silence (the process was stopped, or Redis unreachable).
    fn confirm_registration(&mut self) {
        self.jobs.confirm = Confirm::InFlight;
        let id = self.ids.current().clone();
        self.register(id, Registration::Heartbeat, |id, sent| Purpose::Confirm {
            id,
            sent,
        });
    }

    pub(super) fn on_confirmed(
        &mut self,
        id: ConsumerId,
        sent: f64,
        result: Result<Reply, BackendError>,
    ) {
        match result {
            Ok(Reply::Registered(false)) => {
                if self.rejoin(&id, Requester::Confirm) {
                    return;
                }
            }
            Ok(_) => {
                if id == *self.ids.current() {
                    self.ids.confirmed(sent);
                }
            }
            // If Redis cannot say, the job runs (at least once).
            Err(e) => debug!(error = %e, "curlyq could not confirm its registration"),
        }
        self.confirm_done(Ok(()));
    }

    pub(super) fn confirm_done(&mut self, step: Result<(), BackendError>) {
        if let Err(e) = step {
            debug!(error = %e, "curlyq rejoin after a long silence failed");
        }
        self.jobs.confirm = Confirm::Passed;
    }

    fn start_job(&mut self, delivery: Delivery) {
        let Delivery {
            consumer,
            taken: TakenJob { id, data, trace },
        } = delivery;
        let run = RunId(self.next_run);
        self.next_run += 1;
        let decoded = data.as_deref().map(Job::decode);
        let timeout = self.opts.job_timeout;
        let mut slot = Slot {
            consumer: consumer.clone(),
            id: id.clone(),
            data: None,
            running: false,
            started: self.now,
            timeout,
            timer: None,
            signalled: None,
        };
        let reason = match decoded {
            None => MISSING_DATA.to_string(),
            Some(Err(e)) => format!("undecodable job data (kept as stored): {e}"),
            Some(Ok(mut job)) => {
                if job.id != id {
                    warn!(queue = %self.queue, job_id = %id, stored_id = %job.id,
                        "curlyq job's stored ID differs from its key; using the key");
                    job.id = id;
                }
                slot.data = data;
                slot.running = true;
                self.jobs.slots.insert(run, slot);
                let started = self.now;
                self.jobs
                    .set_timer(run, timeout.and_then(|t| started.checked_add(t)));
                self.command(Command::StartHandler {
                    run,
                    job,
                    consumer,
                    started,
                    timeout,
                    trace,
                });
                return;
            }
        };
        warn!(queue = %self.queue, job_id = %id, "{reason}");
        self.jobs.slots.insert(run, slot);
        let kill = KillJob {
            id,
            data: None,
            reason,
        };
        self.submit(run, consumer, Outcome::Kill(kill));
    }

    pub(super) fn on_handler_finished(&mut self, run: RunId, result: HandlerResult) {
        let Some(slot) = self.jobs.slots.get_mut(&run).filter(|s| s.running) else {
            // Dropped after its cancel grace: its outcome is settled already.
            return;
        };
        slot.running = false;
        let (id, consumer, data) = (slot.id.clone(), slot.consumer.clone(), slot.data.take());
        let (signalled, timeout) = (slot.signalled, slot.timeout);
        self.jobs.set_timer(run, None);
        let (reason, asked) = match result {
            HandlerResult::Succeeded => return self.submit(run, consumer, Outcome::Ack(id)),
            HandlerResult::Failed(e) => (format!("handler error: {e}"), Asked::Backoff),
            HandlerResult::Panicked(p) => (format!("handler panicked: {p}"), Asked::Backoff),
            HandlerResult::Permanent(e) => (format!("permanent failure: {e}"), Asked::Permanent),
            HandlerResult::RetryAfter { error, delay } => {
                (format!("handler error: {error}"), Asked::RetryAfter(delay))
            }
        };
        let reason = match signalled {
            // Stopped on the shutdown signal: the job goes back unharmed.
            Some(CancelReason::Shutdown) => return self.give_back_stopped(run),
            Some(CancelReason::TimedOut) => format!("{}, then {reason}", timed_out(timeout)),
            None => reason,
        };
        let outcome = self.after_failure(id, data, reason, asked);
        self.submit(run, consumer, outcome);
    }

    /// Changes the timeout of a running `run` (counted from its start).
    pub(super) fn on_set_timeout(&mut self, run: RunId, timeout: Option<Duration>) {
        let Some(slot) = self
            .jobs
            .slots
            .get_mut(&run)
            .filter(|s| s.running && s.signalled.is_none())
        else {
            return;
        };
        slot.timeout = timeout;
        let at = timeout.and_then(|t| slot.started.checked_add(t));
        self.jobs.set_timer(run, at);
    }

    /// Fires the due run timers: a timeout signals the handler (and starts its cancel
    /// grace); the end of a cancel grace drops it and fails the run.
    pub(super) fn expire_runs(&mut self) {
        while let Some(&(at, run)) = self.jobs.timers.first() {
            if at > self.now {
                return;
            }
            self.jobs.timers.remove(&(at, run));
            let Some(slot) = self.jobs.slots.get_mut(&run).filter(|s| s.running) else {
                continue;
            };
            slot.timer = None;
            match slot.signalled {
                None => {
                    slot.signalled = Some(CancelReason::TimedOut);
                    warn!(queue = %self.queue, job_id = %slot.id, timeout = ?slot.timeout,
                        "curlyq job timed out; cancelling its handler");
                    self.command(Command::SignalCancel {
                        run,
                        reason: CancelReason::TimedOut,
                    });
                    let grace = self.opts.cancel_grace_period;
                    if grace.is_zero() {
                        self.drop_timed_out(run);
                    } else {
                        let at = self.now.checked_add(grace);
                        self.jobs.set_timer(run, at);
                    }
                }
                Some(CancelReason::TimedOut) => self.drop_timed_out(run),
                // Shutdown drops its runs itself.
                Some(_) => {}
            }
        }
    }

    /// Drops a timed-out run that did not return within its cancel grace: a failure.
    fn drop_timed_out(&mut self, run: RunId) {
        let Some(slot) = self.jobs.slots.get_mut(&run).filter(|s| s.running) else {
            return;
        };
        slot.running = false;
        let (id, consumer, data) = (slot.id.clone(), slot.consumer.clone(), slot.data.take());
        let reason = timed_out(slot.timeout);
        self.jobs.set_timer(run, None);
        self.command(Command::CancelHandler { run });
        let outcome = self.after_failure(id, data, reason, Asked::Backoff);
        self.submit(run, consumer, outcome);
    }

    /// Retry (with the attempt counted) or kill a job whose run failed.
    fn after_failure(
        &mut self,
        id: String,
        data: Option<Vec<u8>>,
        reason: String,
        asked: Asked,
    ) -> Outcome {
        let Some(Ok(mut next)) = data.as_deref().map(Job::decode) else {
            // Decoded once already, so this cannot happen; kill rather than panic.
            return Outcome::Kill(KillJob {
                id,
                data: None,
                reason,
            });
        };
        next.id = id;
        let attempt = next.attempt;
        next.attempt = attempt.saturating_add(1);
        let o = &self.opts;
        // `no_retries` is a max of zero attempts: the policy kills at the first failure.
        let max_attempts = if o.no_retries { 0 } else { o.job_max_attempts };
        let max_backoff = o.job_max_backoff;
        let jitter = self.rng.random::<f64>();
        let decision = match asked {
            Asked::Permanent => AfterFailure::Kill,
            Asked::Backoff => after_failure(attempt, max_attempts, max_backoff, jitter, None),
            Asked::RetryAfter(delay) => {
                after_failure(attempt, max_attempts, max_backoff, jitter, Some(delay))
            }
        };
        match decision {
            AfterFailure::Retry(delay) => {
                debug!(queue = %self.queue, job_id = %next.id, attempt, error = %reason,
                    retry_in = ?delay, "curlyq job failed; retrying");
                let at = self.unix_now() + delay.as_secs_f64();
                let next = next.with_ready_at(at);
                Outcome::Retry(RetryJob {
                    data: next.encode(),
                    at,
                    id: next.id,
                    error: Some(bounded_error(&reason)),
                })
            }
            AfterFailure::Kill => {
                warn!(queue = %self.queue, job_id = %next.id, attempt, error = %reason,
                    "curlyq job failed for the last time; killed");
                Outcome::Kill(KillJob {
                    data: Some(next.encode()),
                    id: next.id,
                    reason,
                })
            }
        }
    }

    /// Frees the slot of `run` (its outcome is recorded or given up).
    pub(super) fn free_slot(&mut self, run: RunId) {
        if let Some(slot) = self.jobs.slots.remove(&run) {
            self.ids.release(&slot.consumer, 1);
        }
    }
}

/// The failure reason of a run that timed out.
fn timed_out(timeout: Option<Duration>) -> String {
    match timeout {
        Some(t) => format!("timed out after {t:?}"),
        None => "timed out".to_string(),
    }
}
