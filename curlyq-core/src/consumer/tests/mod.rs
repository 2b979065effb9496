//! The consumer core driven by hand: no backend, no runtime, no clock. Each test plays
//! the store's part, replying to the calls the core asks for.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::backend::{QueueName, Registration, TakenJob};
use crate::backoff::backoff_bounds;
use crate::error::{BackendError, ConsumeError};
use crate::job::Job;
use crate::options::ConsumerOptions;
use crate::runtime::unix_seconds;

use super::{BackendCall, CallId, Command, ConsumerCore, HandlerResult, Input, Reply, RunId};

const T0: Duration = Duration::from_secs(1_800_000_000);

/// A core and the calls it has asked for and not yet had answered.
struct Harness {
    core: ConsumerCore,
    now: SystemTime,
    calls: BTreeMap<CallId, BackendCall>,
    started: Vec<(RunId, Job)>,
    signalled: Vec<RunId>,
    cancelled: Vec<RunId>,
    finished: Option<Result<(), ConsumeError>>,
}

impl Harness {
    /// A started core: its join answered.
    fn started(options: ConsumerOptions, seed: u64) -> Self {
        let now = UNIX_EPOCH + T0;
        let core = ConsumerCore::new(QueueName::new("q").unwrap(), options, seed, now).unwrap();
        let mut h = Harness {
            core,
            now,
            calls: BTreeMap::new(),
            started: Vec::new(),
            signalled: Vec::new(),
            cancelled: Vec::new(),
            finished: None,
        };
        h.pump();
        let join = h.expect(|c| {
            matches!(
                c,
                BackendCall::Register {
                    mode: Registration::Join,
                    ..
                }
            )
        });
        h.reply(join, Ok(Reply::Registered(true)));
        h
    }

    fn pump(&mut self) {
        while let Some(command) = self.core.poll_command() {
            match command {
                Command::Call { id, call } => {
                    self.calls.insert(id, call);
                }
                Command::CancelWait { id } => {
                    self.calls.remove(&id);
                }
                Command::StartHandler { run, job, .. } => self.started.push((run, job)),
                Command::SignalCancel { run, .. } => self.signalled.push(run),
                Command::CancelHandler { run } => self.cancelled.push(run),
                Command::Finished(result) => self.finished = Some(result),
            }
        }
    }

    /// The one pending call that matches (panics if none or several).
    fn expect(&mut self, matches: impl Fn(&BackendCall) -> bool) -> CallId {
        let found: Vec<CallId> = self
            .calls
            .iter()
            .filter(|(_, c)| matches(c))
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "expected one such call among {:#?}",
            self.calls
        );
        found[0]
    }

    fn call(&self, id: CallId) -> &BackendCall {
        &self.calls[&id]
    }

    fn reply(&mut self, id: CallId, result: Result<Reply, BackendError>) {
        self.calls.remove(&id);
        self.core
            .handle(self.now, Input::Reply { call: id, result });
        self.pump();
    }

    fn input(&mut self, input: Input) {
        self.core.handle(self.now, input);
        self.pump();
    }

    /// Moves time to the core's next timer (at most `max` ahead) and fires it.
    fn advance(&mut self, max: Duration) {
        let next = self.core.poll_timeout().expect("a timer");
        assert!(
            next > self.now,
            "a timer in the past: the driver would spin"
        );
        self.now = next.min(self.now + max);
        self.input(Input::Timeout);
    }

    /// Answers the scheduler's and custodian's first steps with "nothing to do".
    fn quiet_loops(&mut self) {
        let due = self.expect(|c| matches!(c, BackendCall::EnqueueDue { .. }));
        self.reply(due, Ok(Reply::Due(Default::default())));
        let sweep = self.expect(|c| matches!(c, BackendCall::RequeueOrphans(_)));
        self.reply(sweep, Ok(Reply::Orphans(Default::default())));
        let trim = self.expect(|c| matches!(c, BackendCall::TrimDead(_)));
        self.reply(trim, Ok(Reply::Trimmed(0)));
        let warnings = self.expect(|c| matches!(c, BackendCall::SettingsWarnings));
        self.reply(warnings, Ok(Reply::Warnings(Vec::new())));
    }

    /// Answers the pending take with these jobs (attempt 0).
    fn take(&mut self, ids: &[&str]) {
        let take = self.expect(|c| matches!(c, BackendCall::Take { .. }));
        let jobs: Vec<TakenJob> = ids
            .iter()
            .map(|id| TakenJob {
                id: id.to_string(),
                data: Some(Job::new("payload").with_id(*id).encode()),
                trace: None,
            })
            .collect();
        self.reply(take, Ok(Reply::Taken(jobs.into())));
    }
}

fn unavailable() -> BackendError {
    BackendError::Unavailable("connection reset".into())
}

fn opts(concurrency: usize, buffer: usize) -> ConsumerOptions {
    ConsumerOptions {
        processor_concurrency: concurrency,
        poller_buffer_size: buffer,
        ..ConsumerOptions::default()
    }
}

/// After its join a consumer runs every loop at once, takes for every slot and the
/// buffer, and sleeps until the heartbeat.
#[test]
fn a_started_core_runs_every_loop_then_sleeps_until_the_heartbeat() {
    let mut h = Harness::started(opts(5, 10), 1);
    assert!(h.core.consumer_id().is_some());
    let take = h.expect(|c| matches!(c, BackendCall::Take { .. }));
    assert!(matches!(h.call(take), BackendCall::Take { max: 15, .. }));
    h.quiet_loops();
    h.reply(take, Ok(Reply::Taken(Vec::new().into())));
    let wait = h.expect(|c| matches!(c, BackendCall::Wait { .. }));
    assert!(matches!(
        h.call(wait),
        BackendCall::Wait { timeout, fresh_waiter: false } if *timeout == Duration::from_secs(5)
    ));
    // The scheduler sleeps its poll interval; the heartbeat comes after one minute.
    assert_eq!(h.core.poll_timeout(), Some(h.now + Duration::from_secs(5)));
    h.reply(wait, Ok(Reply::Signal(false)));
    h.take(&[]);
    h.advance(Duration::from_secs(5));
    let due = h.expect(|c| matches!(c, BackendCall::EnqueueDue { .. }));
    h.reply(due, Ok(Reply::Due(Default::default())));
    for _ in 0..20 {
        if h.core.poll_timeout() == Some(UNIX_EPOCH + T0 + Duration::from_secs(60)) {
            break;
        }
        h.advance(Duration::from_secs(60));
        if let Some(due) = h
            .calls
            .iter()
            .find(|(_, c)| matches!(c, BackendCall::EnqueueDue { .. }))
            .map(|(id, _)| *id)
        {
            h.reply(due, Ok(Reply::Due(Default::default())));
        }
    }
    h.advance(Duration::from_secs(60));
    let beat = h.expect(|c| {
        matches!(
            c,
            BackendCall::Register {
                mode: Registration::Heartbeat,
                ..
            }
        )
    });
    assert_eq!(h.now, UNIX_EPOCH + T0 + Duration::from_secs(60));
    h.reply(beat, Ok(Reply::Registered(true)));
}

/// A failed run is retried at a time drawn from the seed (the same seed, the same time,
/// within Go's bounds); at max attempts it is killed with the handler's message.
#[test]
fn a_failed_job_retries_at_an_exact_seeded_time_and_dies_at_max_attempts() {
    let retry_at = |seed| {
        let mut h = Harness::started(opts(1, 1), seed);
        h.take(&["j1"]);
        let (run, job) = h.started.pop().expect("a run");
        assert_eq!((job.id.as_str(), job.attempt), ("j1", 0));
        h.input(Input::HandlerFinished {
            run,
            result: HandlerResult::Failed("boom".into()),
        });
        let retry = h.expect(|c| matches!(c, BackendCall::Retry { .. }));
        match h.call(retry) {
            BackendCall::Retry { jobs, .. } => {
                assert_eq!(Job::decode(&jobs[0].data).unwrap().attempt, 1);
                jobs[0].at - unix_seconds(h.now)
            }
            _ => unreachable!(),
        }
    };
    let (lo, hi) = backoff_bounds(0, Duration::from_secs(7 * 24 * 3600));
    let delay = retry_at(42);
    assert!(
        delay >= lo.as_secs_f64() && delay < hi.as_secs_f64(),
        "{delay}"
    );
    assert_eq!(retry_at(42), delay, "the same seed gives the same delay");
    assert_ne!(retry_at(43), delay, "another seed, another delay");

    let mut o = opts(1, 1);
    o.no_retries = true;
    let mut h = Harness::started(o, 7);
    h.take(&["j1"]);
    let (run, _) = h.started.pop().expect("a run");
    h.input(Input::HandlerFinished {
        run,
        result: HandlerResult::Panicked("oops".into()),
    });
    let kill = h.expect(|c| matches!(c, BackendCall::Kill { .. }));
    match h.call(kill) {
        BackendCall::Kill { jobs, .. } => assert_eq!(jobs[0].reason, "handler panicked: oops"),
        _ => unreachable!(),
    }
    h.reply(kill, Ok(Reply::Owned(vec![true])));
    assert_eq!(h.core.stats().killed, 1);
}

/// A take whose reply was lost may have moved jobs: the next take goes under a fresh
/// consumer ID, registered first.
#[test]
fn after_a_lost_take_reply_the_consumer_takes_under_a_fresh_id() {
    let mut h = Harness::started(opts(1, 1), 3);
    let first = h.core.consumer_id().cloned().unwrap();
    let take = h.expect(|c| matches!(c, BackendCall::Take { .. }));
    h.reply(take, Err(unavailable()));
    h.advance(Duration::from_secs(30));
    let join = h.expect(|c| {
        matches!(
            c,
            BackendCall::Register {
                mode: Registration::Join,
                ..
            }
        )
    });
    let fresh = match h.call(join) {
        BackendCall::Register { consumer, .. } => consumer.clone(),
        _ => unreachable!(),
    };
    assert_ne!(fresh, first);
    h.reply(join, Ok(Reply::Registered(true)));
    assert_eq!(h.core.consumer_id(), Some(&fresh));
    let take = h.expect(|c| matches!(c, BackendCall::Take { .. }));
    assert!(matches!(h.call(take), BackendCall::Take { consumer, .. } if *consumer == fresh));
}

/// A consumer found reaped rejoins under a fresh ID and never starts the buffered jobs
/// it took under the old one (a custodian handed them on).
#[test]
fn a_reaped_consumer_rejoins_and_skips_the_buffered_jobs_of_its_old_id() {
    let mut h = Harness::started(opts(1, 1), 5);
    let old = h.core.consumer_id().cloned().unwrap();
    h.quiet_loops();
    h.take(&["a", "b"]);
    assert_eq!(h.started.len(), 1, "one slot");
    while !h.calls.values().any(|c| {
        matches!(
            c,
            BackendCall::Register {
                mode: Registration::Heartbeat,
                ..
            }
        )
    }) {
        h.advance(Duration::from_secs(60));
    }
    let beat = h.expect(|c| {
        matches!(
            c,
            BackendCall::Register {
                mode: Registration::Heartbeat,
                ..
            }
        )
    });
    h.reply(beat, Ok(Reply::Registered(false)));
    let join = h.expect(|c| {
        matches!(
            c,
            BackendCall::Register {
                mode: Registration::Join,
                ..
            }
        )
    });
    h.reply(join, Ok(Reply::Registered(true)));
    assert_ne!(h.core.consumer_id(), Some(&old));
    assert_eq!(h.core.stats().rejoined, 1);
    let (run, _) = h.started.pop().expect("the running job");
    h.input(Input::HandlerFinished {
        run,
        result: HandlerResult::Succeeded,
    });
    let ack = h.expect(|c| matches!(c, BackendCall::Ack { .. }));
    assert!(matches!(h.call(ack), BackendCall::Ack { consumer, .. } if *consumer == old));
    h.reply(ack, Ok(Reply::Owned(vec![false])));
    assert!(
        h.started.is_empty(),
        "the buffered job of the reaped ID did not start"
    );
    assert_eq!(
        h.core.stats().not_owned,
        2,
        "the refused ack and the skipped job"
    );
}

/// Shutdown stops the wait, gives back the buffered jobs at once, waits for the running
/// handler and its ack, then unregisters.
#[test]
fn shutdown_gives_back_buffered_jobs_waits_for_the_running_one_and_unregisters() {
    let mut h = Harness::started(opts(1, 10), 9);
    h.take(&["a", "b", "c"]);
    let wait = h.expect(|c| matches!(c, BackendCall::Wait { .. }));
    h.input(Input::Shutdown);
    assert!(!h.calls.contains_key(&wait), "the wait is cancelled");
    h.quiet_loops();
    let give_back = h.expect(|c| matches!(c, BackendCall::GiveBack { .. }));
    assert!(matches!(h.call(give_back), BackendCall::GiveBack { ids, .. } if ids == &["b", "c"]));
    h.reply(give_back, Ok(Reply::GivenBack(2)));
    assert!(h.finished.is_none(), "the running handler is waited for");
    let (run, _) = h.started.pop().unwrap();
    h.input(Input::HandlerFinished {
        run,
        result: HandlerResult::Succeeded,
    });
    let ack = h.expect(|c| matches!(c, BackendCall::Ack { .. }));
    h.reply(ack, Ok(Reply::Owned(vec![true])));
    let unregister = h.expect(|c| matches!(c, BackendCall::Unregister { .. }));
    h.reply(unregister, Ok(Reply::Unregistered(true)));
    assert!(matches!(h.finished, Some(Ok(()))));
    assert_eq!(
        (h.core.stats().succeeded, h.core.stats().given_back),
        (1, 2)
    );
    assert!(h.core.poll_timeout().is_none());
}

/// At the end of the grace period running handlers are cancelled, their jobs given
/// back, and the run reports how many.
#[test]
fn the_grace_period_cancels_running_handlers_and_says_so() {
    let mut o = opts(2, 1);
    o.shutdown_grace_period = Duration::from_secs(5);
    let mut h = Harness::started(o, 11);
    h.quiet_loops();
    h.take(&["a", "b"]);
    assert_eq!(h.started.len(), 2);
    h.input(Input::Shutdown);
    let wait = h
        .calls
        .iter()
        .find(|(_, c)| matches!(c, BackendCall::Take { .. }))
        .map(|(id, _)| *id);
    if let Some(take) = wait {
        h.reply(take, Ok(Reply::Taken(Vec::new().into())));
    }
    h.advance(Duration::from_secs(5));
    assert_eq!(h.signalled.len(), 2, "the handlers are signalled first");
    assert!(h.cancelled.is_empty(), "and dropped after the cancel grace");
    h.advance(Duration::from_secs(1));
    assert_eq!(h.cancelled.len(), 2);
    let give_back = h.expect(|c| matches!(c, BackendCall::GiveBack { .. }));
    h.reply(give_back, Ok(Reply::GivenBack(2)));
    let unregister = h.expect(|c| matches!(c, BackendCall::Unregister { .. }));
    h.reply(unregister, Ok(Reply::Unregistered(true)));
    assert!(matches!(
        h.finished,
        Some(Err(ConsumeError::ShutdownTimeout { cancelled: 2, .. }))
    ));
}

mod handlers;
mod outcomes;
