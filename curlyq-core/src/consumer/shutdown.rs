//! Graceful shutdown, in stages: stop the loops and let their calls in flight end; give
//! back the taken-but-unstarted jobs; let the running handlers finish (when the grace
//! period ends, firing their cancellation signals, then after the cancel grace dropping
//! those still running; the jobs of both go back without counting an attempt);
//! stop the heartbeat once the last outcome is recorded; unregister; tend the retired
//! IDs; return.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use tracing::{debug, info, warn};

use crate::backend::{ConsumerId, MAX_BATCH};
use crate::backoff::backoff_with_jitter;
use crate::context::CancelReason;
use crate::error::{BackendError, ConsumeError};

use super::calls::Purpose;
use super::jobs::Confirm;
use super::machine::ConsumerCore;
use super::poller::PollerState;
use super::protocol::{BackendCall, Command, Reply, RunId};

use rand::Rng;

/// Tries of one give-back call before leaving its jobs to the custodian.
const GIVE_BACK_TRIES: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting for the scheduler's, custodian's and poller's calls in flight.
    Loops,
    /// Waiting for handlers, outcomes and give-backs.
    Handlers,
    /// Waiting for the last heartbeat (or rejoin) in flight.
    Heartbeat,
    Unregister,
    /// Waiting for the retired IDs' calls.
    Tending,
}

/// A give-back to try again at a time.
#[derive(Debug)]
struct Retry {
    at: SystemTime,
    consumer: ConsumerId,
    ids: Vec<String>,
    tries: u32,
}

/// The shutdown's state.
#[derive(Debug)]
pub(super) struct Stopping {
    stage: Stage,
    grace: Duration,
    grace_at: Option<SystemTime>,
    /// When the handlers signalled at the end of the grace period are dropped.
    drop_at: Option<SystemTime>,
    /// Handlers that outlived the grace period without succeeding (stopped on the signal,
    /// or dropped).
    cancelled: Option<usize>,
    give_backs: usize,
    retries: Vec<Retry>,
}

impl Stopping {
    /// The earliest time shutdown needs waking.
    pub(super) fn next_timer(&self) -> Option<SystemTime> {
        self.retries
            .iter()
            .map(|r| r.at)
            .chain(self.grace_at)
            .chain(self.drop_at)
            .min()
    }
}

impl ConsumerCore {
    /// Starts shutdown (once; before the start, once the start succeeded).
    pub(super) fn begin_shutdown(&mut self) {
        if self.ask_shutdown_before_start() || self.is_stopping() || self.is_finished() {
            return;
        }
        info!(queue = %self.queue, "curlyq consumer shutting down");
        let grace = self.opts.shutdown_grace_period;
        self.stopping = Some(Stopping {
            stage: Stage::Loops,
            grace,
            grace_at: if grace.is_zero() {
                None
            } else {
                self.after(grace)
            },
            drop_at: None,
            cancelled: None,
            give_backs: 0,
            retries: Vec::new(),
        });
        self.scheduler.next_at = None;
        self.custodian.next_at = None;
        self.stop_poller();
    }

    pub(super) fn drive_shutdown(&mut self) {
        let Some(st) = self.stopping.as_mut() else {
            return;
        };
        let now = self.now;
        let (due, later): (Vec<Retry>, Vec<Retry>) = std::mem::take(&mut st.retries)
            .into_iter()
            .partition(|r| r.at <= now);
        st.retries = later;
        for r in due {
            self.send_give_back(r.consumer, r.ids, r.tries);
        }
        self.end_grace_if_due();
        loop {
            let Some(st) = self.stopping.as_ref() else {
                return;
            };
            let giving_back = st.give_backs > 0 || !st.retries.is_empty();
            match st.stage {
                Stage::Loops => {
                    if self.scheduler.busy
                        || self.custodian.busy
                        || self.poller.state != PollerState::Idle
                    {
                        return;
                    }
                    self.give_back_unstarted();
                    self.set_stage(Stage::Handlers);
                }
                Stage::Handlers => {
                    if !self.jobs.slots.is_empty() || self.outcomes.is_busy() || giving_back {
                        return;
                    }
                    if !self.jobs.buffer.is_empty() {
                        self.give_back_unstarted();
                        return;
                    }
                    self.heartbeat.stop();
                    if let Some(st) = self.stopping.as_mut() {
                        st.grace_at = None;
                        st.drop_at = None;
                    }
                    self.set_stage(Stage::Heartbeat);
                }
                Stage::Heartbeat => {
                    if self.heartbeat.busy || self.joining || self.jobs.confirm == Confirm::InFlight
                    {
                        return;
                    }
                    let id = self.ids.current().clone();
                    self.call(
                        BackendCall::Unregister {
                            consumer: id.clone(),
                        },
                        Purpose::Unregister { id },
                    );
                    self.set_stage(Stage::Unregister);
                }
                Stage::Unregister => return,
                Stage::Tending => {
                    if self.ids.tending() {
                        return;
                    }
                    info!(queue = %self.queue, "curlyq consumer stopped");
                    let cancelled = self.stopping.as_ref().and_then(|s| s.cancelled);
                    let grace = self.stopping.as_ref().map_or(Duration::ZERO, |s| s.grace);
                    let result = match (self.fatal.take(), cancelled) {
                        (Some(err), _) => Err(err),
                        (None, Some(cancelled)) => {
                            Err(ConsumeError::ShutdownTimeout { grace, cancelled })
                        }
                        (None, None) => Ok(()),
                    };
                    return self.finish(result);
                }
            }
        }
    }

    fn set_stage(&mut self, stage: Stage) {
        if let Some(st) = self.stopping.as_mut() {
            st.stage = stage;
        }
    }

    /// At the end of the grace period: fires the running handlers' cancellation signals;
    /// at the end of the cancel grace that follows (at once when it is zero): drops the
    /// handlers still running and gives their jobs back without counting an attempt.
    fn end_grace_if_due(&mut self) {
        let now = self.now;
        let cancel_grace = self.opts.cancel_grace_period;
        let Some(st) = self.stopping.as_mut() else {
            return;
        };
        if st.grace_at.is_some_and(|at| at <= now) {
            st.grace_at = None;
            let grace = st.grace;
            let runs = self.running_runs();
            if runs.is_empty() {
                return;
            }
            warn!(queue = %self.queue, running = runs.len(), ?grace, ?cancel_grace,
                "curlyq shutdown grace period passed; signalling handlers to stop");
            for run in &runs {
                if let Some(slot) = self.jobs.slots.get_mut(run) {
                    slot.signalled = Some(CancelReason::Shutdown);
                }
                self.command(Command::SignalCancel {
                    run: *run,
                    reason: CancelReason::Shutdown,
                });
            }
            let drop_at = if cancel_grace.is_zero() {
                Some(now)
            } else {
                self.after(cancel_grace)
            };
            if let Some(st) = self.stopping.as_mut() {
                st.drop_at = drop_at;
            }
        }
        let Some(st) = self.stopping.as_mut() else {
            return;
        };
        if st.drop_at.is_none_or(|at| at > now) {
            return;
        }
        st.drop_at = None;
        let runs = self.running_runs();
        if runs.is_empty() {
            return;
        }
        warn!(queue = %self.queue, running = runs.len(),
            "curlyq handlers still running after the cancel grace period; dropping them");
        let mut jobs = Vec::with_capacity(runs.len());
        for run in &runs {
            self.jobs.set_timer(*run, None);
            if let Some(slot) = self.jobs.slots.remove(run) {
                jobs.push((slot.consumer, slot.id));
            }
            self.command(Command::CancelHandler { run: *run });
        }
        self.count_cancelled(runs.len());
        self.give_back(jobs);
    }

    /// The runs whose handler still runs, in order.
    fn running_runs(&self) -> Vec<RunId> {
        let mut runs: Vec<_> = self
            .jobs
            .slots
            .iter()
            .filter(|(_, s)| s.running)
            .map(|(run, _)| *run)
            .collect();
        runs.sort();
        runs
    }

    fn count_cancelled(&mut self, n: usize) {
        if let Some(st) = self.stopping.as_mut() {
            st.cancelled = Some(st.cancelled.unwrap_or(0) + n);
        }
    }

    /// Gives back the job of a run that stopped without succeeding after the shutdown
    /// signal (no attempt counted).
    pub(super) fn give_back_stopped(&mut self, run: RunId) {
        let Some(slot) = self.jobs.slots.remove(&run) else {
            return;
        };
        self.count_cancelled(1);
        self.give_back(vec![(slot.consumer, slot.id)]);
    }

    /// Gives back every taken job that no handler started.
    fn give_back_unstarted(&mut self) {
        let jobs = self
            .jobs
            .buffer
            .drain(..)
            .map(|d| (d.consumer, d.taken.id))
            .collect();
        self.give_back(jobs);
    }

    /// One give-back call per consumer ID and chunk of at most [`MAX_BATCH`] jobs.
    fn give_back(&mut self, jobs: Vec<(ConsumerId, String)>) {
        let mut by_consumer: HashMap<ConsumerId, Vec<String>> = HashMap::new();
        let mut order = Vec::new();
        for (consumer, id) in jobs {
            let ids = by_consumer.entry(consumer.clone()).or_default();
            if ids.is_empty() {
                order.push(consumer);
            }
            ids.push(id);
        }
        for consumer in order {
            let ids = by_consumer.remove(&consumer).unwrap_or_default();
            for chunk in ids.chunks(MAX_BATCH) {
                self.send_give_back(consumer.clone(), chunk.to_vec(), 0);
            }
        }
    }

    fn send_give_back(&mut self, consumer: ConsumerId, ids: Vec<String>, tries: u32) {
        if let Some(st) = self.stopping.as_mut() {
            st.give_backs += 1;
        }
        self.call(
            BackendCall::GiveBack {
                consumer: consumer.clone(),
                ids: ids.clone(),
            },
            Purpose::GiveBack {
                consumer,
                ids,
                tries,
            },
        );
    }

    pub(super) fn on_given_back(
        &mut self,
        consumer: ConsumerId,
        ids: Vec<String>,
        tries: u32,
        result: Result<Reply, BackendError>,
    ) {
        if let Some(st) = self.stopping.as_mut() {
            st.give_backs = st.give_backs.saturating_sub(1);
        }
        match result {
            Ok(reply) => {
                if let Reply::GivenBack(n) = reply {
                    self.stats.given_back += n as u64;
                    debug!(queue = %self.queue, given_back = n, "curlyq gave back unstarted jobs");
                }
                self.ids.release(&consumer, ids.len());
            }
            Err(e) if tries < GIVE_BACK_TRIES => {
                let tries = tries + 1;
                warn!(error = %e, attempt = tries, "curlyq give back failed; retrying");
                let jitter = self.rng.random::<f64>();
                let delay = backoff_with_jitter(tries, Duration::from_secs(2), jitter);
                match (self.after(delay), self.stopping.as_mut()) {
                    (Some(at), Some(st)) => st.retries.push(Retry {
                        at,
                        consumer,
                        ids,
                        tries,
                    }),
                    _ => self.ids.release(&consumer, ids.len()),
                }
            }
            Err(e) => {
                warn!(error = %e, jobs = ids.len(),
                    "curlyq could not give jobs back; the custodian will requeue them once this consumer's heartbeat expires");
                self.ids.release(&consumer, ids.len());
            }
        }
    }

    pub(super) fn on_unregistered(&mut self, id: ConsumerId, result: Result<Reply, BackendError>) {
        match result {
            Ok(reply) => debug!(consumer = %id, ?reply, "curlyq consumer unregistered"),
            Err(e) => debug!(consumer = %id, error = %e, "curlyq unregister failed"),
        }
        // Nothing is held any more: retired IDs are unregistered, or left to expire when
        // a lost take left jobs under them.
        self.tend_retired();
        self.set_stage(Stage::Tending);
    }
}
