//! The poller loop: takes as many jobs as the handler slots and the buffer have room
//! for (at once when a slot would stay idle, else once the buffer is half empty); when
//! fewer came, blocks on the queue's signal (at most the poll duration) before
//! taking again. After a take whose reply was lost it continues under a fresh ID.

use std::time::{Duration, SystemTime};

use crate::backend::{ConsumerId, TakenJob};
use crate::error::{BackendError, LoopName};
use crate::options::ConsumerOptions;

use super::calls::unexpected;
use super::calls::{JoinReason, Purpose, Requester};
use super::jobs::Delivery;
use super::machine::ConsumerCore;
use super::policy::{poller_room, poller_should_take, LoopBackoff};
use super::protocol::{BackendCall, CallId, Reply};

/// What the poller is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PollerState {
    /// Ready to take when there is room.
    Idle,
    /// A take, or the join it needs first, is in flight.
    Busy,
    /// The blocking wait on the signal is in flight.
    Waiting(CallId),
}

/// The poller loop's state.
#[derive(Debug)]
pub(super) struct Poller {
    /// After a failure: no step before this time.
    pub(super) next_at: Option<SystemTime>,
    pub(super) state: PollerState,
    /// Set when a take's outcome is unknown: the next take goes under this fresh ID.
    in_doubt: Option<ConsumerId>,
    /// An earlier step failed: the next wait uses a new waiter (connection).
    fresh_waiter: bool,
    poll_duration: Duration,
    backoff: LoopBackoff,
}

impl Poller {
    pub(super) fn new(o: &ConsumerOptions) -> Self {
        Poller {
            next_at: None,
            state: PollerState::Idle,
            in_doubt: None,
            fresh_waiter: false,
            poll_duration: o.poller_poll_duration,
            backoff: LoopBackoff::new(
                LoopName::Poller,
                o.poller_max_attempts,
                o.poller_max_backoff,
            ),
        }
    }
}

impl ConsumerCore {
    pub(super) fn drive_poller(&mut self) {
        if self.is_stopping() || self.poller.state != PollerState::Idle {
            return;
        }
        if let Some(at) = self.poller.next_at {
            if at > self.now {
                return;
            }
            self.poller.next_at = None;
        }
        if self.joining {
            return;
        }
        if let Some(fresh) = self.poller.in_doubt.clone() {
            self.poller.state = PollerState::Busy;
            self.join_fresh(fresh, JoinReason::Retire);
            return;
        }
        let o = &self.opts;
        let (buffer, concurrency) = (o.poller_buffer_size, o.processor_concurrency);
        let (busy, buffered) = (self.jobs.busy_slots(), self.jobs.buffered());
        let room = poller_room(buffer, concurrency, busy, buffered);
        if room == 0 || !poller_should_take(buffer, concurrency, busy, buffered) {
            return;
        }
        self.poller.state = PollerState::Busy;
        let consumer = self.ids.current().clone();
        self.call(
            BackendCall::Take {
                consumer: consumer.clone(),
                max: room,
                now: self.unix_now(),
            },
            Purpose::Take {
                consumer,
                max: room,
            },
        );
    }

    pub(super) fn on_taken(
        &mut self,
        consumer: ConsumerId,
        max: usize,
        result: Result<Reply, BackendError>,
    ) {
        let taken: Vec<TakenJob> = match result {
            Ok(Reply::Taken(report)) => {
                self.scheduled_seen(report.scheduled);
                report.jobs
            }
            Err(BackendError::NotRegistered { .. }) => {
                if !self.rejoin(&consumer, Requester::Poller) {
                    self.poller_done(Ok(()));
                }
                return;
            }
            // A rejected script wrote nothing.
            Err(e @ BackendError::Rejected(_)) => return self.poller_done(Err(e)),
            // Any other failure may have come after the take was carried out.
            other => {
                let err = match other {
                    Ok(reply) => unexpected(&reply),
                    Err(e) => e,
                };
                if self.poller.in_doubt.is_none() {
                    self.poller.in_doubt = Some(ConsumerId::random_from(&mut self.rng));
                }
                return self.poller_done(Err(err));
            }
        };
        let n = taken.len();
        self.ids.hold(&consumer, n);
        self.jobs
            .buffer
            .extend(taken.into_iter().map(|taken| Delivery {
                consumer: consumer.clone(),
                taken,
            }));
        if n >= max || self.is_stopping() {
            return self.poller_done(Ok(()));
        }
        let fresh_waiter = std::mem::take(&mut self.poller.fresh_waiter);
        let timeout = self.poller.poll_duration;
        let id = self.call(
            BackendCall::Wait {
                timeout,
                fresh_waiter,
            },
            Purpose::Wait,
        );
        self.poller.state = PollerState::Waiting(id);
    }

    pub(super) fn on_waited(&mut self, result: Result<Reply, BackendError>) {
        match result {
            Ok(Reply::Signal(seen)) => {
                if seen {
                    // Producers set the signal when they schedule too: let the scheduler
                    // look again, in case the new job is due before its next wake-up.
                    self.wake_scheduler();
                }
                self.poller_done(Ok(()));
            }
            Ok(other) => self.poller_done(Err(unexpected(&other))),
            Err(e) => self.poller_done(Err(e)),
        }
    }

    /// Ends a poller step: the next one at once, or after a backoff.
    pub(super) fn poller_done(&mut self, step: Result<(), BackendError>) {
        self.poller.state = PollerState::Idle;
        match step {
            Ok(()) => self.poller.backoff.ok(),
            Err(e) => {
                self.poller.fresh_waiter = true;
                match self.poller.backoff.failed(e, &mut self.rng) {
                    Ok(delay) => self.poller.next_at = self.after(delay),
                    Err(fatal) => self.abort(fatal),
                }
            }
        }
        if self.is_stopping() {
            self.poller.next_at = None;
        }
    }

    /// The current ID was retired after a lost take: take under the fresh one at once.
    pub(super) fn poller_retired(&mut self) {
        self.poller.in_doubt = None;
        self.poller.state = PollerState::Idle;
    }

    /// Shutdown began: stop the blocking wait (no reply is needed any more).
    pub(super) fn stop_poller(&mut self) {
        self.poller.next_at = None;
        if let PollerState::Waiting(id) = self.poller.state {
            self.forget_call(id);
            self.command(super::protocol::Command::CancelWait { id });
            self.poller.state = PollerState::Idle;
        }
    }
}
