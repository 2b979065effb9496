//! Outcome recording (calls shared by handlers that ended together, two calls in flight,
//! one backoff for calls that failed together) and the scheduler woken by what a take saw,
//! on the core driven by hand.

use std::time::Duration;

use crate::backend::{ScheduledPeek, TakeReport};
use crate::runtime::unix_seconds;

use super::super::{BackendCall, CallId, HandlerResult, Input, Reply, RunId};
use super::{opts, unavailable, Harness};

/// The IDs of the pending ack calls, by call.
fn pending_acks(h: &Harness) -> Vec<(CallId, Vec<String>)> {
    h.calls
        .iter()
        .filter_map(|(id, c)| match c {
            BackendCall::Ack { ids, .. } => Some((*id, ids.clone())),
            _ => None,
        })
        .collect()
}

fn succeeded(run: RunId) -> Input {
    Input::HandlerFinished {
        run,
        result: HandlerResult::Succeeded,
    }
}

/// Handlers that ended together (handed over in one `handle_all`) share one ack call;
/// while two outcome calls are in flight the next outcomes wait, and go in one call
/// when either reply comes.
#[test]
fn outcomes_that_end_together_share_a_call_and_two_calls_may_be_in_flight() {
    let mut h = Harness::started(opts(8, 1), 3);
    h.quiet_loops();
    h.take(&["a", "b", "c", "d", "e", "f", "g", "h"]);
    let runs: Vec<RunId> = h.started.iter().map(|(run, _)| *run).collect();
    assert_eq!(runs.len(), 8);
    h.core
        .handle_all(h.now, runs[..3].iter().map(|r| succeeded(*r)));
    h.pump();
    let acks = pending_acks(&h);
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(acks[0].1, ["a", "b", "c"], "one call for the three");
    // A lone outcome while that call is in flight goes at once, as a second call.
    h.input(succeeded(runs[3]));
    let acks = pending_acks(&h);
    assert_eq!(acks.len(), 2, "{acks:?}");
    // With two in flight, the next ones wait and then share one call.
    h.input(succeeded(runs[4]));
    h.input(succeeded(runs[5]));
    assert_eq!(pending_acks(&h).len(), 2, "a third call waits");
    let first = acks[0].0;
    h.reply(first, Ok(Reply::Owned(vec![true; 3])));
    let acks = pending_acks(&h);
    assert_eq!(acks.len(), 2, "{acks:?}");
    assert!(
        acks.iter().any(|(_, ids)| ids == &["e", "f"]),
        "the waiting two share the freed place: {acks:?}"
    );
    assert_eq!(h.core.stats().succeeded, 3);
}

/// Two outcome calls fail together (Redis went away): one backoff for both, the jobs of
/// both resent together once it is over, and no new outcome call meanwhile.
#[test]
fn outcome_calls_that_fail_together_back_off_once_and_are_resent_together() {
    let mut o = opts(4, 1);
    o.processor_max_attempts = 2;
    let mut h = Harness::started(o, 5);
    h.quiet_loops();
    h.take(&["a", "b", "c", "d"]);
    let runs: Vec<RunId> = h.started.iter().map(|(run, _)| *run).collect();
    h.input(succeeded(runs[0]));
    h.input(succeeded(runs[1]));
    let acks = pending_acks(&h);
    assert_eq!(acks.len(), 2);
    h.reply(acks[0].0, Err(unavailable()));
    h.reply(acks[1].0, Err(unavailable()));
    assert!(h.finished.is_none(), "one failure of two allowed attempts");
    // A job that ends during the backoff waits with the others.
    h.input(succeeded(runs[2]));
    assert!(
        pending_acks(&h).is_empty(),
        "nothing is sent during the backoff"
    );
    h.advance(Duration::from_secs(60));
    let acks = pending_acks(&h);
    assert_eq!(acks.len(), 2, "{acks:?}");
    let resent = acks
        .iter()
        .find(|(_, ids)| ids.len() == 2)
        .expect("a resend");
    assert_eq!(resent.1, ["a", "b"]);
    assert!(acks.iter().any(|(_, ids)| ids == &["c"]), "{acks:?}");
    for (id, ids) in acks {
        h.reply(id, Ok(Reply::Owned(vec![true; ids.len()])));
    }
    assert_eq!(h.core.stats().succeeded, 3);
    assert!(h.finished.is_none());
}

/// A job scheduled with no signal (as Go CurlyQ's producer does) is seen by the next
/// take: the idle consumer's scheduler steps at its due time, not at its next poll, and
/// one already due is moved at once.
#[test]
fn a_take_that_sees_a_scheduled_job_wakes_the_scheduler_at_its_due_time() {
    let mut h = Harness::started(opts(2, 2), 1);
    let take = h.expect(|c| matches!(c, BackendCall::Take { .. }));
    h.quiet_loops();
    let seen = TakeReport {
        jobs: Vec::new(),
        scheduled: ScheduledPeek::Earliest(unix_seconds(h.now) + 2.5),
    };
    h.reply(take, Ok(Reply::Taken(seen)));
    // The scheduler would poll after 5 s; it wakes at the due time instead.
    let at = h.core.poll_timeout().expect("a timer");
    let early = at.duration_since(h.now).unwrap();
    assert!(
        (early.as_secs_f64() - 2.5).abs() < 1e-3,
        "the scheduler wakes {early:?} ahead, not 2.5 s"
    );
    h.advance(Duration::from_secs(60));
    let due = h.expect(|c| matches!(c, BackendCall::EnqueueDue { .. }));
    h.reply(due, Ok(Reply::Due(Default::default())));
    // A wait that times out, then a take that sees a job already due: the scheduler
    // steps in the same round.
    let wait = h.expect(|c| matches!(c, BackendCall::Wait { .. }));
    h.reply(wait, Ok(Reply::Signal(false)));
    let take = h.expect(|c| matches!(c, BackendCall::Take { .. }));
    let seen = TakeReport {
        jobs: Vec::new(),
        scheduled: ScheduledPeek::Earliest(unix_seconds(h.now).floor() - 1.0),
    };
    h.reply(take, Ok(Reply::Taken(seen)));
    h.expect(|c| matches!(c, BackendCall::EnqueueDue { .. }));
}
