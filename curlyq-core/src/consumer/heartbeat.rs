//! The heartbeat loop, and the consumer IDs it looks after: every interval it
//! re-registers the current ID; when it finds that ID reaped it rejoins under a fresh
//! one; after each beat it tends the IDs retired after a lost take.

use std::time::{Duration, SystemTime};

use tracing::{debug, info, warn};

use crate::backend::{ConsumerId, Registration};
use crate::error::{BackendError, LoopName};
use crate::options::ConsumerOptions;

use super::calls::{unexpected, JoinReason, Purpose, Requester};
use super::identity::Tending;
use super::machine::ConsumerCore;
use super::policy::LoopBackoff;
use super::protocol::{BackendCall, Reply};

/// The heartbeat loop's state.
#[derive(Debug)]
pub(super) struct Heartbeat {
    /// When the next beat is due (`None` while one is in flight or after it stopped).
    pub(super) next_at: Option<SystemTime>,
    pub(super) busy: bool,
    /// Set when no handler runs any more at shutdown: no more beats.
    pub(super) done: bool,
    interval: Duration,
    backoff: LoopBackoff,
}

impl Heartbeat {
    pub(super) fn new(o: &ConsumerOptions) -> Self {
        Heartbeat {
            next_at: None,
            busy: false,
            done: false,
            interval: o.heartbeat_interval,
            backoff: LoopBackoff::new(
                LoopName::Heartbeat,
                o.heartbeat_max_attempts,
                o.heartbeat_max_backoff,
            ),
        }
    }

    /// The first beat comes one interval after the start.
    pub(super) fn start(&mut self, now: SystemTime, o: &ConsumerOptions) {
        self.next_at = now.checked_add(o.heartbeat_interval);
    }

    /// Stops beating (the last handler ended at shutdown).
    pub(super) fn stop(&mut self) {
        self.done = true;
        self.next_at = None;
    }
}

impl ConsumerCore {
    pub(super) fn drive_heartbeat(&mut self) {
        let hb = &self.heartbeat;
        if hb.busy || hb.done || !self.due(hb.next_at) {
            return;
        }
        self.heartbeat.next_at = None;
        self.heartbeat.busy = true;
        let id = self.ids.current().clone();
        self.register(id, Registration::Heartbeat, |id, sent| Purpose::Heartbeat {
            id,
            sent,
        });
    }

    pub(super) fn on_heartbeat(
        &mut self,
        id: ConsumerId,
        sent: f64,
        result: Result<Reply, BackendError>,
    ) {
        match result {
            Ok(Reply::Registered(true)) => {
                if id == *self.ids.current() {
                    self.ids.confirmed(sent);
                }
                self.heartbeat_done(Ok(()));
            }
            Ok(Reply::Registered(false)) => {
                if !self.rejoin(&id, Requester::Heartbeat) {
                    self.heartbeat_done(Ok(()));
                }
            }
            Ok(other) => self.heartbeat_done(Err(unexpected(&other))),
            Err(e) => self.heartbeat_done(Err(e)),
        }
    }

    /// Ends a beat: the next one after the interval (and the retired IDs tended), or
    /// after a backoff.
    pub(super) fn heartbeat_done(&mut self, step: Result<(), BackendError>) {
        self.heartbeat.busy = false;
        match step {
            Ok(()) => {
                self.heartbeat.backoff.ok();
                self.tend_retired();
                if !self.heartbeat.done {
                    self.heartbeat.next_at = self.after(self.heartbeat.interval);
                }
            }
            Err(e) => match self.heartbeat.backoff.failed(e, &mut self.rng) {
                Ok(delay) if !self.heartbeat.done => self.heartbeat.next_at = self.after(delay),
                Ok(_) => {}
                Err(fatal) => {
                    self.heartbeat.stop();
                    self.abort(fatal);
                }
            },
        }
    }

    /// A join under a fresh ID ended.
    pub(super) fn on_joined(
        &mut self,
        fresh: ConsumerId,
        sent: f64,
        reason: JoinReason,
        result: Result<Reply, BackendError>,
    ) {
        self.joining = false;
        let joined = result.map(|_| ());
        match reason {
            JoinReason::Reaped { stale, by } => {
                if joined.is_ok() {
                    self.ids.switch_to(fresh.clone(), sent, true);
                    warn!(queue = %self.queue, old = %stale, new = %fresh,
                        "curlyq consumer was reaped (missed heartbeats); rejoined under a new ID. \
                         Jobs it was running may run again elsewhere; their outcomes are ignored");
                    self.stats.rejoined += 1;
                }
                match by {
                    Requester::Heartbeat => self.heartbeat_done(joined),
                    Requester::Poller => self.poller_done(joined),
                    Requester::Confirm => self.confirm_done(joined),
                }
            }
            JoinReason::Retire => match joined {
                Ok(()) => {
                    let old = self.ids.current().clone();
                    self.ids.switch_to(fresh.clone(), sent, false);
                    warn!(queue = %self.queue, old = %old, new = %fresh,
                        "curlyq take's outcome is unknown (its reply was lost); continuing under a new \
                         consumer ID. Jobs that take may have moved come back once the old ID expires");
                    self.poller_retired();
                }
                Err(e) => self.poller_done(Err(e)),
            },
        }
    }

    /// Heartbeats the retired IDs that still hold jobs of this consumer; unregisters
    /// (or, when a lost take left jobs there, leaves to expire) the others.
    pub(super) fn tend_retired(&mut self) {
        for tending in self.ids.tend() {
            match tending {
                Tending::Heartbeat(id) => {
                    self.register(id, Registration::Heartbeat, |id, _| Purpose::Tend {
                        id,
                        heartbeat: true,
                    });
                }
                Tending::Unregister(id) => {
                    self.call(
                        BackendCall::Unregister {
                            consumer: id.clone(),
                        },
                        Purpose::Tend {
                            id,
                            heartbeat: false,
                        },
                    );
                }
            }
        }
    }

    pub(super) fn on_tended(
        &mut self,
        id: ConsumerId,
        heartbeat: bool,
        result: Result<Reply, BackendError>,
    ) {
        if heartbeat {
            match result {
                Ok(Reply::Registered(false)) => {
                    // Its jobs were handed on: those not started must not run here.
                    debug!(consumer = %id, "curlyq retired consumer ID was reaped");
                    self.ids.tended(&id, false, true);
                }
                Ok(_) => self.ids.tended(&id, true, false),
                Err(e) => {
                    debug!(consumer = %id, error = %e, "curlyq retired ID heartbeat failed");
                    self.ids.tended(&id, true, false);
                }
            }
            return;
        }
        match result {
            Ok(Reply::Unregistered(false)) => info!(queue = %self.queue, consumer = %id,
                "curlyq retired consumer ID holds jobs a lost take moved; a custodian requeues them once it expires"),
            Ok(_) => debug!(consumer = %id, "curlyq retired consumer ID unregistered"),
            Err(e) => debug!(consumer = %id, error = %e,
                "curlyq retired ID unregister failed; it will expire"),
        }
        self.ids.tended(&id, false, false);
    }
}
