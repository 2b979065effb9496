//! The core's backend calls: what each call in flight is for ([`Purpose`]), asking for
//! one, routing its reply to the loop that made it, and registering fresh consumer IDs
//! (after a reaping, or after a take whose reply was lost).

use tracing::{debug, warn};

use crate::backend::{ConsumerId, Registration};
use crate::error::BackendError;

use super::machine::ConsumerCore;
use super::protocol::{BackendCall, CallId, Command, Reply};

/// Who asked for a rejoin after the current ID was found reaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Requester {
    Heartbeat,
    Poller,
    Confirm,
}

/// Why a fresh ID is being registered.
#[derive(Debug, Clone)]
pub(super) enum JoinReason {
    /// The current ID (`stale`) was found reaped.
    Reaped { stale: ConsumerId, by: Requester },
    /// A take's outcome is unknown: retire the current ID.
    Retire,
}

/// What a call in flight is for.
#[derive(Debug)]
pub(super) enum Purpose {
    Start {
        sent: f64,
    },
    Warnings,
    Heartbeat {
        id: ConsumerId,
        sent: f64,
    },
    Join {
        fresh: ConsumerId,
        sent: f64,
        reason: JoinReason,
    },
    Confirm {
        id: ConsumerId,
        sent: f64,
    },
    Due {
        now: f64,
    },
    Orphans,
    Trim,
    Take {
        consumer: ConsumerId,
        max: usize,
    },
    Wait,
    Outcome {
        flush: u64,
        group: usize,
    },
    GiveBack {
        consumer: ConsumerId,
        ids: Vec<String>,
        tries: u32,
    },
    Tend {
        id: ConsumerId,
        heartbeat: bool,
    },
    Unregister {
        id: ConsumerId,
    },
}

/// An error for a reply of the wrong kind (a backend bug, reported as one).
pub(super) fn unexpected(reply: &Reply) -> BackendError {
    BackendError::InvalidReply(format!("a reply of the wrong kind: {reply:?}"))
}

impl ConsumerCore {
    /// Registers `id` (`mode`: join or heartbeat) stamped with the current time, for the
    /// purpose `purpose` makes of the ID and that time (a confirmation counts from when
    /// it was sent).
    pub(super) fn register(
        &mut self,
        id: ConsumerId,
        mode: Registration,
        purpose: impl FnOnce(ConsumerId, f64) -> Purpose,
    ) -> CallId {
        let sent = self.unix_now();
        let call = BackendCall::Register {
            consumer: id.clone(),
            now: sent,
            mode,
        };
        self.call(call, purpose(id, sent))
    }

    /// Asks for a backend call made for `purpose`.
    pub(super) fn call(&mut self, call: BackendCall, purpose: Purpose) -> CallId {
        let id = CallId(self.next_call);
        self.next_call += 1;
        self.calls.insert(id, purpose);
        self.out.push_back(Command::Call { id, call });
        id
    }

    /// Forgets a call in flight (its reply will be dropped).
    pub(super) fn forget_call(&mut self, id: CallId) {
        self.calls.remove(&id);
    }

    /// Registers `fresh` for `reason` (one such join at a time).
    pub(super) fn join_fresh(&mut self, fresh: ConsumerId, reason: JoinReason) {
        self.joining = true;
        self.register(fresh, Registration::Join, |fresh, sent| Purpose::Join {
            fresh,
            sent,
            reason,
        });
    }

    /// Asks for a rejoin after `stale` was found reaped. Returns `false` when there is
    /// nothing to wait for: another join is in flight, or `stale` is no longer current.
    pub(super) fn rejoin(&mut self, stale: &ConsumerId, by: Requester) -> bool {
        self.ids.mark_reaped(stale);
        if self.joining || self.ids.current() != stale {
            return false;
        }
        let fresh = ConsumerId::random_from(&mut self.rng);
        let stale = stale.clone();
        self.join_fresh(fresh, JoinReason::Reaped { stale, by });
        true
    }

    pub(super) fn on_reply(&mut self, purpose: Purpose, result: Result<Reply, BackendError>) {
        match purpose {
            Purpose::Start { sent } => self.on_started(sent, result),
            Purpose::Warnings => match result {
                Ok(Reply::Warnings(warnings)) => {
                    for warning in warnings {
                        warn!(queue = %self.queue, "curlyq: {warning}");
                    }
                }
                Ok(other) => {
                    debug!(reply = ?other, "curlyq: unexpected reply to the settings check")
                }
                // Reading settings may be refused (an ACL without INFO); that is no
                // reason not to run.
                Err(e) => debug!(error = %e, "curlyq could not read the store's settings"),
            },
            Purpose::Heartbeat { id, sent } => self.on_heartbeat(id, sent, result),
            Purpose::Join {
                fresh,
                sent,
                reason,
            } => self.on_joined(fresh, sent, reason, result),
            Purpose::Confirm { id, sent } => self.on_confirmed(id, sent, result),
            Purpose::Due { now } => self.on_due(now, result),
            Purpose::Orphans => self.on_orphans(result),
            Purpose::Trim => self.on_trimmed(result),
            Purpose::Take { consumer, max } => self.on_taken(consumer, max, result),
            Purpose::Wait => self.on_waited(result),
            Purpose::Outcome { flush, group } => self.on_recorded(flush, group, result),
            Purpose::GiveBack {
                consumer,
                ids,
                tries,
            } => self.on_given_back(consumer, ids, tries, result),
            Purpose::Tend { id, heartbeat } => self.on_tended(id, heartbeat, result),
            Purpose::Unregister { id } => self.on_unregistered(id, result),
        }
    }
}
