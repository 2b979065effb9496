//! The consumer's behaviour, scenario by scenario, on the deterministic simulator: the
//! scenarios of `curlyq/tests/consumer_sim.rs` (same names, same assertions) run on
//! [`ConsumerCore`](curlyq_core::consumer::ConsumerCore)s with simulated time, no async
//! runtime, no settling and no sleeping.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use curlyq_core::consumer::HandlerResult;
use curlyq_core::{
    backoff_bounds, unix_seconds, ConsumeError, ConsumerId, ConsumerOptions, Job, LoopName,
    OrphanSweep, QueueBackend, QueueSnapshot, Registration,
};
use curlyq_testkit::sim::{FaultKind, Faults, HandlerScript, NodeId, RunRecord, Simulation};
use curlyq_testkit::Operation;
use futures::executor::block_on;

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);
const MIN: Duration = Duration::from_secs(60);

// ----- helpers -----

/// The default options with `set` applied.
fn options(set: impl FnOnce(&mut ConsumerOptions)) -> ConsumerOptions {
    let mut o = ConsumerOptions::default();
    set(&mut o);
    o
}

/// No faults and no latency: for scenarios that need exact timing.
fn exact() -> Faults {
    Faults {
        latency: Duration::ZERO,
        ..Faults::default()
    }
}

/// A handler that succeeds at once.
fn ok(_: &Job) -> HandlerScript {
    HandlerScript::succeed_after(Duration::ZERO)
}

/// A handler that never ends by itself.
fn hang(_: &Job) -> HandlerScript {
    HandlerScript::Hang
}

/// A handler that fails at once with `msg`.
fn fails(msg: &'static str) -> impl Fn(&Job) -> HandlerScript + Send + Sync + 'static {
    move |_: &Job| HandlerScript::fail_after(Duration::ZERO, msg)
}

fn unix(t: SystemTime) -> f64 {
    unix_seconds(t)
}

/// Pushes `n` jobs whose payloads are "0", "1", ...; returns their IDs in order.
fn push_numbered(sim: &mut Simulation, n: usize) -> Vec<String> {
    (0..n).map(|i| sim.push(Job::new(format!("{i}")))).collect()
}

/// Runs until `cond` holds on the queue state, at most `max` of simulated time.
fn until(sim: &mut Simulation, what: &str, max: Duration, cond: impl Fn(&QueueSnapshot) -> bool) {
    assert!(
        sim.run_until(max, |s| cond(&s.snapshot())),
        "{what}: not reached within {max:?} of simulated time; state: {:#?}",
        sim.snapshot()
    );
}

/// Runs until `node` stopped (at most `max`); its result.
fn finish(sim: &mut Simulation, node: NodeId, max: Duration) -> &Result<(), ConsumeError> {
    assert!(
        sim.run_until(max, |s| s.is_finished(node)),
        "consumer did not stop within {max:?} of simulated time"
    );
    sim.result(node).expect("finished")
}

/// Shuts `node` down and checks it stopped cleanly within a minute.
fn stop(sim: &mut Simulation, node: NodeId) {
    sim.shutdown(node);
    let result = finish(sim, node, MIN);
    assert!(matches!(result, Ok(())), "{result:?}");
}

/// The handler starts a scenario has looked at so far, read one by one as from a channel.
#[derive(Debug, Default)]
struct Starts(usize);

impl Starts {
    /// The next handler start, running the simulation (at most `max`) until there is one.
    fn next(&mut self, sim: &mut Simulation, max: Duration) -> RunRecord {
        let i = self.0;
        assert!(
            sim.run_until(max, |s| s.runs().len() > i),
            "no handler start within {max:?} of simulated time"
        );
        self.0 += 1;
        sim.runs()[i].clone()
    }

    /// Whether no handler started beyond those looked at.
    fn none_left(&self, sim: &Simulation) -> bool {
        sim.runs().len() == self.0
    }
}

/// A gated handler: runs hang until the gate lets them through (one, or all: once open,
/// runs succeed at once).
#[derive(Debug, Clone, Default)]
struct Gate(Arc<AtomicBool>);

impl Gate {
    fn script(&self) -> impl Fn(&Job) -> HandlerScript + Send + Sync + 'static {
        let open = self.0.clone();
        move |_: &Job| {
            if open.load(Ordering::SeqCst) {
                HandlerScript::succeed_after(Duration::ZERO)
            } else {
                HandlerScript::Hang
            }
        }
    }

    /// Lets the run that has waited longest succeed.
    fn release_one(&self, sim: &mut Simulation) {
        let started: Vec<(NodeId, String)> = sim
            .runs()
            .iter()
            .map(|r| (r.node, r.job_id.clone()))
            .collect();
        let released = started
            .iter()
            .any(|(node, id)| sim.complete(*node, id, HandlerResult::Succeeded));
        assert!(released, "no run was waiting");
    }

    /// Lets every waiting run, and every later one, succeed.
    fn open(&self, sim: &mut Simulation) {
        self.0.store(true, Ordering::SeqCst);
        let started: Vec<(NodeId, String)> = sim
            .runs()
            .iter()
            .map(|r| (r.node, r.job_id.clone()))
            .collect();
        for (node, id) in started {
            sim.complete(node, &id, HandlerResult::Succeeded);
        }
    }
}

// ----- scenarios -----

/// Every pushed job runs exactly once and is acked, and a clean shutdown unregisters.
#[test]
fn processes_every_job_once_acks_and_unregisters_at_shutdown() {
    let mut sim = Simulation::new("sim", 1);
    let mut ids: Vec<String> = (0..20)
        .map(|i| sim.push(Job::new(format!("job {i}"))))
        .collect();
    let node = sim.start_consumer(options(|o| o.processor_concurrency = 3), ok);
    let mut starts = Starts::default();
    let mut seen: Vec<String> = (0..20).map(|_| starts.next(&mut sim, MIN).job_id).collect();
    until(&mut sim, "all acked", SEC, |s| s.data.is_empty());
    stop(&mut sim, node);
    seen.sort();
    ids.sort();
    assert_eq!(seen, ids, "every job ran exactly once");
    let snap = sim.snapshot();
    assert!(snap.active.is_empty() && snap.inflight.is_empty());
    assert!(snap.consumers.is_empty(), "a clean shutdown unregisters");
    assert_eq!(sim.stats(node).succeeded, 20);
}

/// A failing job is retried after Go's backoff and dies with its reason once its attempts are used.
#[test]
fn failed_job_retries_within_go_backoff_bounds_then_dies_at_max_attempts() {
    let mut sim = Simulation::new("sim", 2);
    let id = sim.push(Job::new("flaky"));
    let node = sim.start_consumer(options(|o| o.job_max_attempts = 3), fails("boom"));
    let max = ConsumerOptions::default().job_max_backoff;
    let mut starts = Starts::default();
    for attempt in 0..=3u32 {
        let ev = starts.next(&mut sim, 30 * SEC);
        assert_eq!((ev.job_id.as_str(), ev.attempt), (id.as_str(), attempt));
        if attempt < 3 {
            // The retry is scheduled within the Go formula's bounds of the failure time
            // (the run fails the instant it starts).
            until(&mut sim, "retry scheduled", SEC, |s| {
                !s.scheduled.is_empty()
            });
            let (_, score) = sim.snapshot().scheduled[0].clone();
            let delay = score - unix(ev.at);
            let (lo, hi) = backoff_bounds(attempt, max);
            assert!(
                delay >= lo.as_secs_f64() - 1e-6 && delay <= hi.as_secs_f64() + 1e-6,
                "attempt {attempt}: retry in {delay}s, not within {lo:?}..{hi:?}"
            );
        }
    }
    until(&mut sim, "killed", SEC, |s| s.dead.len() == 1);
    let snap = sim.snapshot();
    assert_eq!(snap.dead[0].0, id);
    let stored = Job::decode(&snap.data[&id]).unwrap();
    assert_eq!(stored.attempt, 4, "4 runs ended in failure");
    assert!(snap.reasons[&id].contains("boom"), "{:?}", snap.reasons);
    stop(&mut sim, node);
}

/// A handler panic counts as a failure of that job only; the consumer goes on with the next.
#[test]
fn panicking_handler_is_a_failure_and_the_consumer_keeps_running() {
    let mut sim = Simulation::new("sim", 3);
    let bad = sim.push(Job::new("panic"));
    let good = sim.push(Job::new("fine"));
    let node = sim.start_consumer(
        options(|o| {
            o.no_retries = true;
            o.processor_concurrency = 1;
        }),
        |job: &Job| {
            if job.data == b"panic" {
                HandlerScript::panic_after(Duration::ZERO, "handler exploded")
            } else {
                HandlerScript::succeed_after(Duration::ZERO)
            }
        },
    );
    let mut starts = Starts::default();
    assert_eq!(starts.next(&mut sim, SEC).job_id, bad);
    assert_eq!(starts.next(&mut sim, SEC).job_id, good);
    until(&mut sim, "settled", SEC, |s| {
        s.dead.len() == 1 && s.data.len() == 1
    });
    let snap = sim.snapshot();
    assert_eq!(snap.dead[0].0, bad);
    assert!(snap.reasons[&bad].contains("handler panicked: handler exploded"));
    assert_eq!(Job::decode(&snap.data[&bad]).unwrap().attempt, 1);
    stop(&mut sim, node);
}

/// A job ID without data is killed with a clear reason, never handed to the handler.
#[test]
fn missing_data_goes_to_the_dead_set_and_the_consumer_keeps_running() {
    let mut sim = Simulation::new("sim", 4);
    sim.backend().push_raw_active(sim.queue(), "ghost");
    let good = sim.push(Job::new("fine"));
    let node = sim.start_consumer(ConsumerOptions::default(), ok);
    let mut starts = Starts::default();
    assert_eq!(starts.next(&mut sim, SEC).job_id, good);
    until(&mut sim, "ghost dead", SEC, |s| {
        s.dead.len() == 1 && s.data.is_empty()
    });
    let snap = sim.snapshot();
    assert_eq!(snap.dead[0].0, "ghost");
    assert!(snap.reasons["ghost"].contains("job data missing"));
    assert!(starts.none_left(&sim), "the handler never saw the ghost");
    stop(&mut sim, node);
}

/// Undecodable data is killed with its raw bytes kept, and the rest of the batch still runs.
#[test]
fn poison_data_dies_with_its_raw_bytes_and_the_rest_of_the_batch_runs() {
    let mut sim = Simulation::new("sim", 5);
    let poison: &[u8] = b"\xc1not msgpack";
    let mut good = vec![sim.push(Job::new("a"))];
    sim.backend().put_raw_data(sim.queue(), "poison", poison);
    sim.backend().push_raw_active(sim.queue(), "poison");
    sim.backend()
        .put_raw_data(sim.queue(), "empty", b"".as_slice());
    sim.backend().push_raw_active(sim.queue(), "empty");
    good.push(sim.push(Job::new("b")));
    let node = sim.start_consumer(ConsumerOptions::default(), ok);
    let mut starts = Starts::default();
    let mut seen = vec![
        starts.next(&mut sim, SEC).job_id,
        starts.next(&mut sim, SEC).job_id,
    ];
    seen.sort();
    good.sort();
    assert_eq!(seen, good);
    until(&mut sim, "poison dead", SEC, |s| s.dead.len() == 2);
    let snap = sim.snapshot();
    assert_eq!(snap.data["poison"], poison, "raw bytes kept for inspection");
    assert!(snap.reasons["poison"].contains("undecodable"));
    assert!(snap.reasons["empty"].contains("undecodable"));
    stop(&mut sim, node);
}

/// A scheduled job starts within 50 ms of its due time, even on a consumer that went idle.
#[test]
fn scheduled_job_starts_within_50ms_of_its_due_time_on_an_idle_consumer() {
    let mut sim = Simulation::new("sim", 6);
    let node = sim.start_consumer(ConsumerOptions::default(), ok);
    // Let the consumer go idle (scheduler asleep for its 5 s poll, poller waiting).
    sim.run_for(SEC);
    let at = sim.now() + 2 * SEC;
    let due = unix(at);
    let id = sim.schedule(Job::new("later"), at);
    let mut starts = Starts::default();
    let ev = starts.next(&mut sim, 10 * SEC);
    assert_eq!(ev.job_id, id);
    let lateness = unix(ev.at) - due;
    assert!(
        (0.0..0.05).contains(&lateness),
        "started {lateness}s after its due time"
    );
    stop(&mut sim, node);
}

/// Shutdown returns unstarted jobs to the queue at once and lets the running job finish.
#[test]
fn shutdown_gives_back_unstarted_jobs_at_once_and_lets_the_running_one_finish() {
    let mut sim = Simulation::new("sim", 7);
    let ids = push_numbered(&mut sim, 6);
    let node = sim.start_consumer(
        options(|o| {
            o.processor_concurrency = 1;
            o.poller_buffer_size = 5;
        }),
        hang,
    );
    let mut starts = Starts::default();
    assert_eq!(starts.next(&mut sim, SEC).job_id, ids[0]);
    until(&mut sim, "all taken", SEC, |s| s.active.is_empty());
    sim.shutdown(node);
    until(&mut sim, "unstarted given back", SEC, |s| {
        s.active.len() == 5
    });
    assert_eq!(sim.snapshot().active, ids[1..].to_vec());
    assert!(!sim.is_finished(node), "waits for the running handler");
    assert!(sim.complete(node, &ids[0], HandlerResult::Succeeded));
    let result = finish(&mut sim, node, MIN);
    assert!(matches!(result, Ok(())), "{result:?}");
    let snap = sim.snapshot();
    assert!(
        !snap.data.contains_key(&ids[0]),
        "the running job finished and was acked"
    );
    assert_eq!(snap.active, ids[1..].to_vec());
    assert!(
        starts.none_left(&sim),
        "no other job started after shutdown"
    );
    assert_eq!(sim.stats(node).given_back, 5);
}

/// Past the grace period, running handlers are cancelled; their jobs go back, no attempt counted.
#[test]
fn grace_period_cancels_handlers_and_gives_their_jobs_back_without_an_attempt() {
    let mut sim = Simulation::new("sim", 8);
    let id = sim.push(Job::new("forever"));
    let node = sim.start_consumer(options(|o| o.shutdown_grace_period = 2 * SEC), hang);
    Starts::default().next(&mut sim, SEC);
    sim.shutdown(node);
    let result = finish(&mut sim, node, 10 * SEC);
    assert!(
        matches!(
            result,
            Err(ConsumeError::ShutdownTimeout { cancelled: 1, .. })
        ),
        "{result:?}"
    );
    let snap = sim.snapshot();
    assert_eq!(snap.active, vec![id.clone()]);
    assert_eq!(
        Job::decode(&snap.data[&id]).unwrap().attempt,
        0,
        "no attempt counted"
    );
    assert!(snap.inflight.is_empty());
}

/// A shutting-down consumer keeps heartbeating while a handler runs, so nobody takes its job.
#[test]
fn heartbeat_runs_until_the_last_handler_finishes() {
    let mut sim = Simulation::new("sim", 9);
    sim.set_faults(exact());
    let id = sim.push(Job::new("long"));
    let node = sim.start_consumer(ConsumerOptions::default(), hang);
    Starts::default().next(&mut sim, SEC);
    sim.shutdown(node);
    // Five simulated minutes of shutdown with the handler still running: the consumer
    // keeps heartbeating, so no custodian would take its job.
    for _ in 0..5 {
        sim.run_for(MIN);
        let (_, beat) = sim.snapshot().consumers[0];
        assert!(
            unix(sim.now()) - beat <= 60.0 + 1e-6,
            "heartbeat stale during shutdown"
        );
    }
    assert!(sim.complete(node, &id, HandlerResult::Succeeded));
    let result = finish(&mut sim, node, MIN);
    assert!(matches!(result, Ok(())), "{result:?}");
    assert!(sim.snapshot().consumers.is_empty());
}

/// Jobs held by a consumer that died are run by another consumer once its heartbeat expires.
#[test]
fn a_crashed_consumers_jobs_are_recovered_by_anothers_custodian() {
    let mut sim = Simulation::new("sim", 10);
    let ids = push_numbered(&mut sim, 3);
    // A consumer registers, takes two jobs, then crashes (never heartbeats again).
    let crashed = ConsumerId::from_string("crashed");
    let t0 = unix(sim.now());
    block_on(
        sim.backend()
            .register(sim.queue(), &crashed, t0, Registration::Join),
    )
    .unwrap();
    let taken = block_on(
        sim.backend()
            .take(sim.queue(), &crashed, 2, 1_700_000_000.0),
    )
    .unwrap();
    assert_eq!(taken.len(), 2);

    let node = sim.start_consumer(ConsumerOptions::default(), ok);
    let mut starts = Starts::default();
    assert_eq!(starts.next(&mut sim, SEC).job_id, ids[2]);
    // Orphaned after heartbeat interval + consumer timeout (2 min); the custodian sweeps
    // every minute.
    let mut recovered = [starts.next(&mut sim, 4 * MIN), starts.next(&mut sim, MIN)];
    let elapsed = unix(recovered[0].at) - t0;
    assert!(elapsed >= 120.0, "recovered too early, after {elapsed}s");
    recovered.sort_by(|a, b| a.job_id.cmp(&b.job_id));
    let mut expect = ids[..2].to_vec();
    expect.sort();
    assert_eq!(
        recovered
            .iter()
            .map(|r| r.job_id.clone())
            .collect::<Vec<_>>(),
        expect
    );
    until(&mut sim, "crashed consumer removed", MIN, |s| {
        s.consumers.iter().all(|(c, _)| c != "crashed") && s.data.is_empty()
    });
    stop(&mut sim, node);
}

/// A reaped consumer rejoins under a fresh ID; its stale outcome cannot undo the newer delivery.
#[test]
fn a_reaped_consumer_rejoins_under_a_fresh_id_and_its_stale_ack_changes_nothing() {
    let mut sim = Simulation::new("sim", 11);
    let id = sim.push(Job::new("slow"));
    let node = sim.start_consumer(options(|o| o.shutdown_grace_period = SEC), hang);
    let mut starts = Starts::default();
    starts.next(&mut sim, SEC);
    let old = sim.snapshot().consumers[0].0.clone();
    // Another process's custodian reaps this consumer (as after a long pause).
    let now = unix(sim.now());
    let report = block_on(sim.backend().requeue_orphans(
        sim.queue(),
        OrphanSweep {
            expired_before: now + 1.0,
            max_jobs: 50,
            max_orphan_requeues: 0,
            now,
        },
    ))
    .unwrap();
    assert_eq!(report.requeued, 1);
    // It finds out, rejoins under a new ID and takes the job again.
    let second = starts.next(&mut sim, 2 * MIN);
    assert_eq!(second.job_id, id);
    let new: Vec<String> = sim
        .snapshot()
        .consumers
        .iter()
        .map(|(c, _)| c.clone())
        .collect();
    assert_eq!(new.len(), 1);
    assert_ne!(new[0], old, "rejoined under a fresh ID");
    // The first (stale) delivery finishes: its ack must not delete the new delivery.
    assert!(sim.complete(node, &id, HandlerResult::Succeeded));
    assert!(
        sim.run_until(SEC, |s| s.stats(node).not_owned == 1),
        "stale outcome counted"
    );
    let snap = sim.snapshot();
    assert!(
        snap.data.contains_key(&id),
        "the newer delivery's job is intact"
    );
    assert_eq!(snap.inflight[&new[0]].len(), 1);
    assert_eq!(sim.stats(node).rejoined, 1);
    sim.shutdown(node);
    let result = finish(&mut sim, node, MIN);
    assert!(
        matches!(
            result,
            Err(ConsumeError::ShutdownTimeout { cancelled: 1, .. })
        ),
        "{result:?}"
    );
    assert_eq!(
        sim.snapshot().active,
        vec![id],
        "the cancelled delivery went back"
    );
}

/// An ack that fails is sent again with backoff until it lands, without stopping the consumer.
#[test]
fn a_failed_ack_is_retried_with_backoff_and_is_not_fatal() {
    let mut sim = Simulation::new("sim", 12);
    let id = sim.push(Job::new("x"));
    for _ in 0..3 {
        sim.inject(None, Operation::Ack, FaultKind::Fail);
    }
    let node = sim.start_consumer(ConsumerOptions::default(), ok);
    Starts::default().next(&mut sim, SEC);
    assert!(
        sim.run_until(MIN, |s| s.call_count(Operation::Ack) >= 3),
        "a few failed acks"
    );
    assert!(
        sim.calls()
            .iter()
            .filter(|c| c.operation == Operation::Ack)
            .all(|c| c.fault == Some(FaultKind::Fail)),
        "the acks so far failed"
    );
    assert!(
        !sim.is_finished(node),
        "a failing ack does not stop the consumer"
    );
    // Acked, and the ack's reply (up to a millisecond behind) counted.
    assert!(
        sim.run_until(2 * MIN, |s| {
            !s.snapshot().data.contains_key(&id) && s.stats(node).succeeded == 1
        }),
        "acked"
    );
    assert_eq!(sim.stats(node).succeeded, 1);
    stop(&mut sim, node);
}

/// A loop that keeps failing stops the consumer with a typed error after its max attempts.
#[test]
fn a_loop_aborts_the_consumer_after_its_max_attempts() {
    let mut sim = Simulation::new("sim", 13);
    let node = sim.start_consumer(options(|o| o.poller_max_attempts = 3), ok);
    assert!(sim.run_until(SEC, |s| s.consumer_id(node).is_some()));
    sim.faulty()
        .set_failing(Some(Arc::new(|op, _| op == Operation::Take)));
    let result = finish(&mut sim, node, 5 * MIN);
    assert!(
        matches!(
            result,
            Err(ConsumeError::LoopAborted {
                name: LoopName::Poller,
                attempts: 3,
                ..
            })
        ),
        "{result:?}"
    );
}

/// A consumer that cannot reach the store at start-up returns a typed start-up error.
#[test]
fn startup_fails_with_a_typed_error_when_the_store_is_down() {
    let mut sim = Simulation::new("sim", 14);
    sim.faulty().set_unavailable(true);
    let node = sim.start_consumer(ConsumerOptions::default(), ok);
    let result = finish(&mut sim, node, SEC);
    assert!(
        matches!(result, Err(ConsumeError::Startup(_))),
        "{result:?}"
    );
}

/// A job whose wake-up signal was lost still starts within one poll duration.
#[test]
fn a_lost_signal_delays_jobs_by_at_most_one_poll() {
    let mut sim = Simulation::new("sim", 15);
    let node = sim.start_consumer(ConsumerOptions::default(), ok);
    sim.run_for(SEC);
    // A job lands in the active list without the signal (evicted or deleted).
    let job = Job::new("quiet").with_id("quiet");
    sim.backend()
        .put_raw_data(sim.queue(), "quiet", job.encode());
    sim.backend().push_raw_active(sim.queue(), "quiet");
    sim.backend().set_signal(sim.queue(), false);
    let t = sim.now();
    let ev = Starts::default().next(&mut sim, 10 * SEC);
    assert_eq!(ev.job_id, "quiet");
    assert!(ev.at.duration_since(t).unwrap() <= Duration::from_secs(5) + 100 * MS);
    stop(&mut sim, node);
}

/// The dead set never grows past its bound: the custodian trims it, keeping the newest.
#[test]
fn the_custodian_keeps_the_dead_set_bounded() {
    let mut sim = Simulation::new("sim", 16);
    for i in 0..5 {
        sim.push(Job::new("x").with_id(format!("d{i}")));
    }
    let node = sim.start_consumer(
        options(|o| {
            o.no_retries = true;
            o.processor_concurrency = 1;
            o.dead_max_jobs = 2;
        }),
        fails("nope"),
    );
    let mut starts = Starts::default();
    for _ in 0..5 {
        starts.next(&mut sim, SEC);
    }
    until(&mut sim, "trimmed", 2 * MIN, |s| {
        s.dead.len() == 2 && s.data.len() == 2 && s.reasons.len() == 2
    });
    let kept: Vec<String> = sim.snapshot().dead.into_iter().map(|(id, _)| id).collect();
    assert_eq!(kept, ["d3", "d4"], "the newest dead jobs are kept");
    stop(&mut sim, node);
}

/// A job whose consumers keep dying while holding it is killed instead of crashing more of them.
#[test]
fn a_job_that_keeps_crashing_its_consumer_is_killed() {
    let mut sim = Simulation::new("sim", 17);
    let id = sim.push(Job::new("crashy"));
    let crashed = ConsumerId::from_string("crashed");
    let now = unix(sim.now());
    block_on(
        sim.backend()
            .register(sim.queue(), &crashed, now, Registration::Join),
    )
    .unwrap();
    block_on(
        sim.backend()
            .take(sim.queue(), &crashed, 1, 1_700_000_000.0),
    )
    .unwrap();
    let node = sim.start_consumer(options(|o| o.max_orphan_requeues = 1), ok);
    until(&mut sim, "killed as a crash-looper", 5 * MIN, |s| {
        s.dead.len() == 1
    });
    let snap = sim.snapshot();
    assert_eq!(snap.dead[0].0, id);
    assert!(snap.reasons[&id].contains("orphaned"));
    assert!(Starts::default().none_left(&sim), "not run again");
    stop(&mut sim, node);
}

/// At most `concurrency` handlers run at once, holding at most handlers plus buffer jobs.
#[test]
fn handlers_run_concurrently_up_to_the_concurrency_limit_and_no_further() {
    let mut sim = Simulation::new("sim", 18);
    push_numbered(&mut sim, 10);
    let gate = Gate::default();
    let node = sim.start_consumer(
        options(|o| {
            o.processor_concurrency = 3;
            o.poller_buffer_size = 2;
        }),
        gate.script(),
    );
    let mut starts = Starts::default();
    for _ in 0..3 {
        starts.next(&mut sim, SEC);
    }
    sim.run_for(10 * SEC);
    assert!(
        starts.none_left(&sim),
        "a fourth handler started while three run"
    );
    // 3 running + a buffer of 2 taken; the other 5 wait in Redis for a free handler.
    let snap = sim.snapshot();
    assert_eq!(snap.all_inflight().len(), 5);
    assert_eq!(snap.active.len(), 5);
    gate.release_one(&mut sim);
    starts.next(&mut sim, SEC);
    assert!(starts.none_left(&sim), "one finished, one more started");
    gate.open(&mut sim);
    for _ in 0..6 {
        starts.next(&mut sim, SEC);
    }
    until(&mut sim, "all acked", SEC, |s| s.data.is_empty());
    stop(&mut sim, node);
}

/// Outcomes that finish together share one ack call, and a lone outcome is written at once.
#[test]
fn outcomes_that_finish_together_share_one_backend_call_and_none_waits_for_a_timer() {
    let mut sim = Simulation::new("sim", 19);
    sim.set_faults(exact());
    push_numbered(&mut sim, 20);
    let gate = Gate::default();
    let node = sim.start_consumer(
        options(|o| {
            o.processor_concurrency = 20;
            o.poller_buffer_size = 1;
        }),
        gate.script(),
    );
    let mut starts = Starts::default();
    for _ in 0..20 {
        starts.next(&mut sim, SEC);
    }
    assert_eq!(sim.call_count(Operation::Ack), 0, "no job finished yet");
    // All twenty finish at once; without moving the clock every ack lands.
    let started = sim.now();
    gate.open(&mut sim);
    assert!(
        sim.run_until(Duration::ZERO, |s| s.snapshot().data.is_empty()),
        "{:#?}",
        sim.snapshot()
    );
    // Their replies arrive at the same instant.
    sim.run_for(Duration::ZERO);
    assert_eq!(sim.now(), started, "no timer was needed to record them");
    let acks = sim.call_count(Operation::Ack);
    assert!(
        (1..=4).contains(&acks),
        "20 outcomes took {acks} ack calls, not one each"
    );
    assert_eq!(sim.stats(node).succeeded, 20);

    // A lone job afterwards is acked at once too.
    sim.push(Job::new("alone"));
    starts.next(&mut sim, 10 * SEC);
    let moved_to = sim.now();
    assert!(
        sim.run_until(Duration::ZERO, |s| s.snapshot().data.is_empty()),
        "the lone job was acked"
    );
    assert_eq!(sim.now(), moved_to, "without waiting for a timer");
    stop(&mut sim, node);
}

/// One take fills every idle handler and the buffer at once, and never holds more.
#[test]
fn one_take_fills_every_idle_handler_and_the_buffer() {
    let mut sim = Simulation::new("sim", 20);
    push_numbered(&mut sim, 40);
    let gate = Gate::default();
    let node = sim.start_consumer(
        options(|o| {
            o.processor_concurrency = 16;
            o.poller_buffer_size = 1;
        }),
        gate.script(),
    );
    let mut starts = Starts::default();
    for _ in 0..16 {
        starts.next(&mut sim, SEC);
    }
    sim.run_for(10 * SEC);
    let snap = sim.snapshot();
    assert_eq!(snap.all_inflight().len(), 17, "16 running + 1 buffered");
    assert_eq!(snap.active.len(), 23);
    assert!(
        sim.call_count(Operation::Take) <= 3,
        "17 jobs took {} take calls",
        sim.call_count(Operation::Take)
    );
    gate.open(&mut sim);
    until(&mut sim, "all acked", 10 * SEC, |s| s.data.is_empty());
    stop(&mut sim, node);
    assert_eq!(sim.snapshot().consumers.len(), 0);
}

/// Jobs of a take whose reply was lost come back within one orphan timeout and run once.
#[test]
fn jobs_of_a_take_whose_reply_was_lost_come_back_within_one_orphan_timeout() {
    let mut sim = Simulation::new("sim", 21);
    push_numbered(&mut sim, 3);
    sim.inject(None, Operation::Take, FaultKind::LoseReply);
    let started = sim.now();
    let node = sim.start_consumer(
        options(|o| {
            o.processor_concurrency = 2;
            o.heartbeat_interval = 15 * SEC;
            o.custodian_consumer_timeout = 5 * SEC;
            o.custodian_poll_interval = SEC;
            o.poller_max_backoff = SEC;
        }),
        ok,
    );
    assert!(sim.run_until(SEC, |s| s.consumer_id(node).is_some()));
    let first_id = sim.consumer_id(node).expect("running: it has an ID");
    let mut starts = Starts::default();
    let mut seen: Vec<String> = (0..3).map(|_| starts.next(&mut sim, MIN).job_id).collect();
    let first_take = sim
        .calls()
        .iter()
        .find(|c| c.operation == Operation::Take)
        .expect("a take");
    assert_eq!(
        first_take.fault,
        Some(FaultKind::LoseReply),
        "the first take's reply was lost"
    );
    let second_id = sim.consumer_id(node).expect("still running");
    assert_ne!(first_id, second_id, "it continued under a fresh ID");
    let waited = sim.now().duration_since(started).unwrap();
    // One orphan timeout (heartbeat + consumer timeout) plus a custodian poll and the
    // poller's backoff.
    assert!(
        waited <= 15 * SEC + 5 * SEC + SEC + SEC + SEC,
        "stranded jobs came back after {waited:?}"
    );
    until(&mut sim, "all acked", MIN, |s| s.data.is_empty());
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 3, "each job ran once");
    assert!(starts.none_left(&sim), "no job ran twice");
    stop(&mut sim, node);
    assert_eq!(sim.consumer_id(node), None, "not running: no ID");
    let snap = sim.snapshot();
    assert!(snap.consumers.is_empty(), "both IDs gone: {snap:#?}");
}

/// Back from a silence past the orphan timeout, a consumer skips buffered jobs handed on.
#[test]
fn a_consumer_back_from_a_long_silence_skips_buffered_jobs_that_were_handed_on() {
    let mut sim = Simulation::new("sim", 22);
    for i in 0..3 {
        sim.push(Job::new(format!("{i}")).with_id(format!("j{i}")));
    }
    // Only j0's first run waits (until the scenario ends it).
    let first = Arc::new(AtomicBool::new(true));
    let node = sim.start_consumer(
        options(|o| {
            o.processor_concurrency = 1;
            o.poller_buffer_size = 2;
            o.heartbeat_interval = 15 * SEC;
            o.custodian_consumer_timeout = 5 * SEC;
            o.custodian_poll_interval = SEC;
        }),
        move |job: &Job| {
            if job.id == "j0" && first.swap(false, Ordering::SeqCst) {
                HandlerScript::Hang
            } else {
                HandlerScript::succeed_after(Duration::ZERO)
            }
        },
    );
    let mut starts = Starts::default();
    assert_eq!(starts.next(&mut sim, SEC).job_id, "j0");
    sim.run_for(100 * MS);
    assert_eq!(
        sim.snapshot().all_inflight().len(),
        3,
        "j0 runs, j1 and j2 buffered"
    );

    // Cut off for a minute; meanwhile another consumer's custodian reaps it.
    sim.faulty().set_unavailable(true);
    sim.run_for(MIN);
    sim.faulty().set_unavailable(false);
    let now = unix(sim.now());
    let report = block_on(sim.backend().requeue_orphans(
        sim.queue(),
        OrphanSweep {
            expired_before: now - 20.0,
            max_jobs: 100,
            max_orphan_requeues: 0,
            now,
        },
    ))
    .unwrap();
    assert_eq!(report.requeued, 3, "{report:?}");

    // Back: j0's handler ends; the buffered j1 and j2 must not run under the old ID.
    assert!(sim.complete(node, "j0", HandlerResult::Succeeded));
    let mut seen: Vec<String> = (0..3).map(|_| starts.next(&mut sim, MIN).job_id).collect();
    until(&mut sim, "all acked", MIN, |s| s.data.is_empty());
    sim.run_for(10 * SEC);
    assert!(starts.none_left(&sim), "nothing else ran");
    seen.sort();
    assert_eq!(seen, ["j0", "j1", "j2"], "the requeued jobs ran once each");
    let stats = sim.stats(node);
    assert_eq!(stats.rejoined, 1);
    assert!(stats.not_owned >= 2, "{stats:?}");
    stop(&mut sim, node);
}
