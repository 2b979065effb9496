//! The consumer IDs one consumer works under: the current one, the ones it retired
//! after a take whose reply was lost, and the ones it was reaped under, each with how
//! many of its jobs this consumer still holds; and when the current ID was last known
//! to be registered.

use std::time::Duration;

use crate::backend::ConsumerId;

use super::policy::may_be_reaped;

/// One consumer ID this consumer has taken jobs under.
#[derive(Debug)]
struct KnownId {
    id: ConsumerId,
    /// Jobs taken under it whose outcome is not yet recorded (or given up).
    held: usize,
    /// Found reaped: its jobs were handed on, so those not started must not run here.
    reaped: bool,
    /// Retired after a lost take: heartbeated while it holds jobs, then left to expire.
    retired: bool,
    /// A heartbeat or unregister of this retired ID is in flight.
    tending: bool,
}

/// What to do for a retired ID at a heartbeat (see [`Identities::tend`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tending {
    /// It still holds jobs of this consumer: heartbeat it.
    Heartbeat(ConsumerId),
    /// It holds none: unregister it (a lost take may have left jobs there; then it
    /// stays and expires).
    Unregister(ConsumerId),
}

/// The consumer IDs of one consumer.
#[derive(Debug)]
pub(crate) struct Identities {
    /// The current ID is `holders[0]`.
    holders: Vec<KnownId>,
    /// When the current ID was last known registered (Unix seconds).
    last_beat: f64,
    expiry: Duration,
}

impl Identities {
    pub(crate) fn new(first: ConsumerId, expiry: Duration) -> Self {
        Identities {
            holders: vec![KnownId::new(first)],
            last_beat: f64::NEG_INFINITY,
            expiry,
        }
    }

    pub(crate) fn current(&self) -> &ConsumerId {
        &self.holders[0].id
    }

    /// The current ID was confirmed registered by a call sent at `sent`.
    pub(crate) fn confirmed(&mut self, sent: f64) {
        if sent > self.last_beat {
            self.last_beat = sent;
        }
    }

    /// Whether no heartbeat confirmed the current ID for longer than a custodian waits.
    pub(crate) fn may_be_reaped(&self, now: f64) -> bool {
        may_be_reaped(now, self.last_beat, self.expiry)
    }

    /// Makes `fresh` (just registered by a call sent at `sent`) the current ID. The one
    /// it replaces is marked `reaped` (found reaped) or retired (after a lost take).
    pub(crate) fn switch_to(&mut self, fresh: ConsumerId, sent: f64, old_was_reaped: bool) {
        let old = &mut self.holders[0];
        if old_was_reaped {
            old.reaped = true;
        } else {
            old.retired = true;
        }
        self.holders.insert(0, KnownId::new(fresh));
        self.last_beat = sent;
        self.forget_idle();
    }

    /// `n` more jobs were taken under `id`.
    pub(crate) fn hold(&mut self, id: &ConsumerId, n: usize) {
        if let Some(h) = self.find(id) {
            h.held += n;
        }
    }

    /// `n` jobs taken under `id` are settled (recorded, given back, skipped or given up).
    pub(crate) fn release(&mut self, id: &ConsumerId, n: usize) {
        if let Some(h) = self.find(id) {
            h.held = h.held.saturating_sub(n);
        }
        self.forget_idle();
    }

    /// Whether `id` was found reaped (its jobs were handed on).
    pub(crate) fn is_reaped(&self, id: &ConsumerId) -> bool {
        self.holders.iter().any(|h| h.id == *id && h.reaped)
    }

    /// `id` was found reaped (a heartbeat or take said so): its jobs not started yet
    /// must not run here.
    pub(crate) fn mark_reaped(&mut self, id: &ConsumerId) {
        if let Some(h) = self.find(id) {
            h.reaped = true;
        }
    }

    /// Whether a call tending a retired ID is in flight.
    pub(crate) fn tending(&self) -> bool {
        self.holders.iter().any(|h| h.tending)
    }

    /// What to do now for each retired ID not already being tended; marks them tended.
    pub(crate) fn tend(&mut self) -> Vec<Tending> {
        let mut out = Vec::new();
        for h in self.holders.iter_mut().filter(|h| h.retired && !h.tending) {
            h.tending = true;
            out.push(if h.held > 0 {
                Tending::Heartbeat(h.id.clone())
            } else {
                Tending::Unregister(h.id.clone())
            });
        }
        out
    }

    /// A tending call for `id` ended: `keep` false drops it (unregistered, or found
    /// reaped: then its unstarted jobs must not run here).
    pub(crate) fn tended(&mut self, id: &ConsumerId, keep: bool, reaped: bool) {
        if let Some(h) = self.find(id) {
            h.tending = false;
            if reaped {
                h.reaped = true;
            }
            if !keep {
                h.retired = false;
            }
        }
        self.forget_idle();
    }

    fn find(&mut self, id: &ConsumerId) -> Option<&mut KnownId> {
        self.holders.iter_mut().find(|h| h.id == *id)
    }

    /// Drops former IDs that hold nothing and need no more tending.
    fn forget_idle(&mut self) {
        let mut first = true;
        self.holders.retain(|h| {
            let keep = first || h.held > 0 || h.retired || h.tending;
            first = false;
            keep
        });
    }
}

impl KnownId {
    fn new(id: ConsumerId) -> Self {
        KnownId {
            id,
            held: 0,
            reaped: false,
            retired: false,
            tending: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ConsumerId {
        ConsumerId::from_string(s)
    }

    #[test]
    fn a_reaped_id_is_remembered_while_its_jobs_are_held() {
        let mut ids = Identities::new(id("a"), Duration::from_secs(120));
        ids.hold(&id("a"), 2);
        ids.switch_to(id("b"), 10.0, true);
        assert_eq!(ids.current(), &id("b"));
        assert!(ids.is_reaped(&id("a")));
        ids.release(&id("a"), 1);
        assert!(ids.is_reaped(&id("a")));
        ids.release(&id("a"), 1);
        assert!(!ids.is_reaped(&id("a")), "forgotten once it holds nothing");
    }

    #[test]
    fn a_retired_id_is_heartbeated_while_it_holds_jobs_then_unregistered() {
        let mut ids = Identities::new(id("a"), Duration::from_secs(120));
        ids.hold(&id("a"), 1);
        ids.switch_to(id("b"), 10.0, false);
        assert_eq!(ids.tend(), vec![Tending::Heartbeat(id("a"))]);
        assert_eq!(ids.tend(), vec![], "one tending call at a time");
        ids.tended(&id("a"), true, false);
        ids.release(&id("a"), 1);
        assert_eq!(ids.tend(), vec![Tending::Unregister(id("a"))]);
        ids.tended(&id("a"), false, false);
        assert_eq!(ids.tend(), vec![], "dropped once unregistered");
        assert!(!ids.tending());
    }

    #[test]
    fn silence_longer_than_the_expiry_means_maybe_reaped() {
        let mut ids = Identities::new(id("a"), Duration::from_secs(120));
        assert!(ids.may_be_reaped(0.0), "never confirmed");
        ids.confirmed(100.0);
        assert!(!ids.may_be_reaped(220.0));
        assert!(ids.may_be_reaped(221.0));
        ids.confirmed(50.0);
        assert!(
            ids.may_be_reaped(221.0),
            "an older confirmation changes nothing"
        );
    }
}
