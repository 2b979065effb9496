//! The handler outcomes beyond ok / error (permanent failures, chosen retry delays),
//! run timeouts and the shutdown signal, on the core driven by hand.

use std::time::Duration;

use crate::backend::TakenJob;
use crate::error::ConsumeError;
use crate::job::Job;
use crate::runtime::unix_seconds;

use super::super::{BackendCall, CallId, HandlerResult, Input, Reply, RunId};
use super::{opts, Harness};

/// The pending call that `pick` takes the jobs of (the first, in call order).
fn pending<T>(h: &Harness, pick: impl Fn(&BackendCall) -> Option<Vec<T>>) -> (CallId, Vec<T>) {
    h.calls
        .iter()
        .find_map(|(id, call)| pick(call).map(|jobs| (*id, jobs)))
        .expect("such a call")
}

/// The one kill call's jobs.
fn killed(h: &Harness) -> (CallId, Vec<crate::backend::KillJob>) {
    pending(h, |c| match c {
        BackendCall::Kill { jobs, .. } => Some(jobs.clone()),
        _ => None,
    })
}

/// The one retry call's jobs.
fn retried(h: &Harness) -> (CallId, Vec<crate::backend::RetryJob>) {
    pending(h, |c| match c {
        BackendCall::Retry { jobs, .. } => Some(jobs.clone()),
        _ => None,
    })
}

/// A permanent failure kills at once, with its attempt counted, whatever attempts are
/// left; a failure with a delay retries after exactly that delay (capped at the max
/// backoff) and keeps its message as the job's last error.
#[test]
fn permanent_failures_kill_at_once_and_asked_delays_are_kept_exactly() {
    let mut o = opts(2, 1);
    o.job_max_backoff = Duration::from_secs(60);
    let mut h = Harness::started(o, 21);
    h.take(&["p", "r"]);
    let runs: Vec<RunId> = h.started.iter().map(|(run, _)| *run).collect();
    h.input(Input::HandlerFinished {
        run: runs[0],
        result: HandlerResult::Permanent("bad address".into()),
    });
    let (kill, jobs) = killed(&h);
    assert_eq!(jobs[0].id, "p");
    assert_eq!(jobs[0].reason, "permanent failure: bad address");
    let stored = Job::decode(jobs[0].data.as_deref().unwrap()).unwrap();
    assert_eq!(stored.attempt, 1, "the attempt is counted");
    h.reply(kill, Ok(Reply::Owned(vec![true])));

    h.input(Input::HandlerFinished {
        run: runs[1],
        result: HandlerResult::RetryAfter {
            error: "rate limited".into(),
            delay: Duration::from_secs(3600),
        },
    });
    let (retry, jobs) = retried(&h);
    assert_eq!(jobs[0].at - unix_seconds(h.now), 60.0, "capped at 60 s");
    assert_eq!(
        jobs[0].error.as_deref(),
        Some("handler error: rate limited")
    );
    h.reply(retry, Ok(Reply::Owned(vec![true])));
    assert_eq!((h.core.stats().killed, h.core.stats().retried), (1, 1));
}

/// At its timeout a run's handler is signalled; one that has not returned after the
/// cancel grace is dropped and the run fails ("timed out after"), retried, and killed
/// once out of attempts. One that returns `Ok` after the signal is acked.
#[test]
fn a_run_past_its_timeout_is_signalled_then_dropped_and_fails() {
    let mut o = opts(1, 1);
    o.job_timeout = Some(Duration::from_secs(10));
    o.cancel_grace_period = Duration::from_secs(2);
    o.job_max_attempts = 1;
    let mut h = Harness::started(o, 23);
    h.quiet_loops();
    h.take(&["slow"]);
    let (run, _) = h.started.pop().unwrap();
    let start = h.now;
    assert_eq!(h.core.poll_timeout(), Some(start + Duration::from_secs(5)));
    while h.signalled.is_empty() {
        h.advance(Duration::from_secs(60));
        for id in h
            .calls
            .iter()
            .filter(|(_, c)| matches!(c, BackendCall::EnqueueDue { .. } | BackendCall::Wait { .. }))
            .map(|(id, _)| *id)
            .collect::<Vec<_>>()
        {
            let reply = match h.call(id) {
                BackendCall::Wait { .. } => Reply::Signal(false),
                _ => Reply::Due(Default::default()),
            };
            h.reply(id, Ok(reply));
        }
    }
    assert_eq!(
        h.now,
        start + Duration::from_secs(10),
        "signalled at the timeout"
    );
    assert_eq!(h.signalled, vec![run]);
    assert!(h.cancelled.is_empty());
    h.advance(Duration::from_secs(2));
    assert_eq!(h.now, start + Duration::from_secs(12));
    assert_eq!(h.cancelled, vec![run], "dropped after the cancel grace");
    let (retry, jobs) = retried(&h);
    assert_eq!(jobs[0].error.as_deref(), Some("timed out after 10s"));
    h.reply(retry, Ok(Reply::Owned(vec![true])));
    // A late report of the dropped run changes nothing.
    h.input(Input::HandlerFinished {
        run,
        result: HandlerResult::Succeeded,
    });
    assert!(!h
        .calls
        .values()
        .any(|c| matches!(c, BackendCall::Ack { .. })));

    // The second run (attempt 1 of max 1) times out too and is killed; a third returns
    // `Ok` after its signal and is acked.
    let take = h.expect(|c| matches!(c, BackendCall::Take { .. }));
    let again = |id: &str, attempt| TakenJob {
        id: id.into(),
        data: Some(
            Job::new("payload")
                .with_id(id)
                .with_attempt(attempt)
                .encode(),
        ),
        trace: None,
    };
    h.reply(take, Ok(Reply::Taken(vec![again("slow", 1)].into())));
    let (run, _) = h.started.pop().unwrap();
    h.input(Input::SetTimeout {
        run,
        timeout: Some(Duration::from_secs(1)),
    });
    let started = h.now;
    h.advance(Duration::from_secs(60));
    assert_eq!(
        h.now,
        started + Duration::from_secs(1),
        "the handler's own timeout"
    );
    h.input(Input::HandlerFinished {
        run,
        result: HandlerResult::Failed("interrupted".into()),
    });
    let (_, jobs) = killed(&h);
    assert_eq!(
        jobs[0].reason,
        "timed out after 1s, then handler error: interrupted"
    );
}

/// When the shutdown grace period ends, handlers are signalled; one that stops on the
/// signal without succeeding has its job given back with no attempt counted, one that
/// succeeds is acked, and the run reports the one that did not succeed.
#[test]
fn handlers_that_stop_on_the_shutdown_signal_give_their_jobs_back() {
    let mut o = opts(2, 1);
    o.shutdown_grace_period = Duration::from_secs(5);
    o.cancel_grace_period = Duration::from_secs(3);
    let mut h = Harness::started(o, 25);
    h.quiet_loops();
    h.take(&["stops", "finishes"]);
    let runs: Vec<RunId> = h.started.iter().map(|(run, _)| *run).collect();
    h.input(Input::Shutdown);
    if let Some(take) = h
        .calls
        .iter()
        .find(|(_, c)| matches!(c, BackendCall::Take { .. }))
        .map(|(id, _)| *id)
    {
        h.reply(take, Ok(Reply::Taken(Vec::new().into())));
    }
    h.advance(Duration::from_secs(5));
    assert_eq!(h.signalled.len(), 2);
    h.input(Input::HandlerFinished {
        run: runs[0],
        result: HandlerResult::Failed("stopped: shutting down".into()),
    });
    let give_back = h.expect(|c| matches!(c, BackendCall::GiveBack { .. }));
    assert!(matches!(h.call(give_back), BackendCall::GiveBack { ids, .. } if ids == &["stops"]));
    h.reply(give_back, Ok(Reply::GivenBack(1)));
    h.input(Input::HandlerFinished {
        run: runs[1],
        result: HandlerResult::Succeeded,
    });
    let ack = h.expect(|c| matches!(c, BackendCall::Ack { .. }));
    h.reply(ack, Ok(Reply::Owned(vec![true])));
    assert!(h.cancelled.is_empty(), "nothing left to drop");
    assert!(!h
        .calls
        .values()
        .any(|c| matches!(c, BackendCall::Retry { .. })));
    let unregister = h.expect(|c| matches!(c, BackendCall::Unregister { .. }));
    h.reply(unregister, Ok(Reply::Unregistered(true)));
    assert!(matches!(
        h.finished,
        Some(Err(ConsumeError::ShutdownTimeout { cancelled: 1, .. }))
    ));
    assert_eq!(h.core.stats().succeeded, 1);
}
