//! The custodian loop: gives back the jobs of consumers whose heartbeat expired (killing
//! those orphaned too often), then keeps the dead set within its bounds.

use std::time::{Duration, SystemTime};

use tracing::info;

use crate::backend::{DeadTrim, OrphanSweep, MAX_BATCH};
use crate::error::{BackendError, LoopName};
use crate::options::ConsumerOptions;

use super::calls::unexpected;
use super::calls::Purpose;
use super::machine::ConsumerCore;
use super::policy::{consumer_expiry, LoopBackoff};
use super::protocol::{BackendCall, Reply};

/// The custodian loop's state.
#[derive(Debug)]
pub(super) struct Custodian {
    /// When the next sweep is due (`None` while one is in flight, or stopped).
    pub(super) next_at: Option<SystemTime>,
    pub(super) busy: bool,
    /// The sweep in flight hit its job limit: sweep again at once.
    again: bool,
    /// The dead-set bounds of the sweep in flight.
    trim: Option<DeadTrim>,
    backoff: LoopBackoff,
}

impl Custodian {
    pub(super) fn new(o: &ConsumerOptions) -> Self {
        Custodian {
            next_at: None,
            busy: false,
            again: false,
            trim: None,
            backoff: LoopBackoff::new(
                LoopName::Custodian,
                o.custodian_max_attempts,
                o.custodian_max_backoff,
            ),
        }
    }
}

impl ConsumerCore {
    pub(super) fn drive_custodian(&mut self) {
        let c = &self.custodian;
        if self.is_stopping() || c.busy || !self.due(c.next_at) {
            return;
        }
        self.custodian.next_at = None;
        self.custodian.busy = true;
        let o = &self.opts;
        let now = self.unix_now();
        let sweep = OrphanSweep {
            expired_before: now - consumer_expiry(o).as_secs_f64(),
            max_jobs: o.custodian_max_jobs,
            max_orphan_requeues: o.max_orphan_requeues,
            now,
        };
        self.custodian.trim = Some(DeadTrim {
            killed_before: now - o.dead_max_age.as_secs_f64(),
            keep_at_most: o.dead_max_jobs,
            max_jobs: MAX_BATCH,
        });
        self.call(BackendCall::RequeueOrphans(sweep), Purpose::Orphans);
    }

    pub(super) fn on_orphans(&mut self, result: Result<Reply, BackendError>) {
        match result {
            Ok(Reply::Orphans(report)) => {
                if report.requeued + report.killed + report.consumers_removed > 0 {
                    info!(queue = %self.queue, requeued = report.requeued, killed = report.killed,
                        consumers_removed = report.consumers_removed, "curlyq recovered orphaned jobs");
                }
                self.custodian.again =
                    report.requeued + report.killed >= self.opts.custodian_max_jobs;
                self.trim_dead();
            }
            Ok(other) => self.custodian_done(Err(unexpected(&other))),
            Err(e) => self.custodian_done(Err(e)),
        }
    }

    fn trim_dead(&mut self) {
        match self.custodian.trim {
            Some(trim) => {
                self.call(BackendCall::TrimDead(trim), Purpose::Trim);
            }
            None => self.custodian_done(Ok(())),
        }
    }

    pub(super) fn on_trimmed(&mut self, result: Result<Reply, BackendError>) {
        match result {
            // A full batch: there may be more to remove.
            Ok(Reply::Trimmed(n)) if n >= MAX_BATCH && !self.is_stopping() => self.trim_dead(),
            Ok(Reply::Trimmed(_)) => self.custodian_done(Ok(())),
            Ok(other) => self.custodian_done(Err(unexpected(&other))),
            Err(e) => self.custodian_done(Err(e)),
        }
    }

    fn custodian_done(&mut self, step: Result<(), BackendError>) {
        self.custodian.busy = false;
        self.custodian.trim = None;
        let delay = match step {
            Ok(()) if self.custodian.again => Duration::ZERO,
            Ok(()) => {
                self.custodian.backoff.ok();
                self.opts.custodian_poll_interval
            }
            Err(e) => match self.custodian.backoff.failed(e, &mut self.rng) {
                Ok(delay) => delay,
                Err(fatal) => return self.abort(fatal),
            },
        };
        if !self.is_stopping() {
            self.custodian.next_at = self.after(delay);
        }
    }
}
