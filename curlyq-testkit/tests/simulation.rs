//! A property test of the consumer core on the deterministic simulator: random schedules
//! of two or three consumers sharing one queue (pushes, scheduled jobs, handler errors,
//! panics, permanent failures and chosen retry delays, crashes, failed calls and lost replies, pauses past the orphan timeout,
//! shutdowns with and without a grace period), with the queue's invariants checked after
//! every step that touches a job, and the outcome of every job checked at the end.
//!
//! `CURLYQ_SIM_CASES` sets the number of cases (default 256).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use curlyq_core::{ConsumeError, ConsumerOptions, Job};
use curlyq_testkit::sim::{Faults, HandlerScript, NodeId, Simulation};
use curlyq_testkit::Operation;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};

/// Runs a job may fail before it is killed: attempts 0..=MAX_ATTEMPTS may run.
const MAX_ATTEMPTS: u32 = 2;

/// How a planned job fails.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Failure {
    /// An error: retried with the consumer's backoff.
    Error,
    /// A panic: the same.
    Panic,
    /// A permanent failure: killed at its first failed run.
    Permanent,
    /// An error asking for a retry after this many seconds.
    RetryAfter(u64),
}

/// What one job does: fail (as `failure` says) while its attempt is below `fail_first`,
/// then succeed; each run takes `millis`.
#[derive(Debug, Clone, Copy)]
struct Plan {
    fail_first: u32,
    millis: u32,
    failure: Failure,
}

impl Plan {
    fn payload(&self) -> String {
        let failure = match self.failure {
            Failure::Error => "error".to_string(),
            Failure::Panic => "panic".to_string(),
            Failure::Permanent => "permanent".to_string(),
            Failure::RetryAfter(secs) => format!("after{secs}"),
        };
        format!("{}:{}:{failure}", self.fail_first, self.millis)
    }

    fn parse(data: &[u8]) -> Option<Plan> {
        let text = std::str::from_utf8(data).ok()?;
        let mut parts = text.split(':');
        let fail_first = parts.next()?.parse().ok()?;
        let millis = parts.next()?.parse().ok()?;
        let failure = match parts.next()? {
            "error" => Failure::Error,
            "panic" => Failure::Panic,
            "permanent" => Failure::Permanent,
            other => Failure::RetryAfter(other.strip_prefix("after")?.parse().ok()?),
        };
        Some(Plan {
            fail_first,
            millis,
            failure,
        })
    }

    /// Whether the job ends in the dead set.
    fn dies(&self) -> bool {
        match self.failure {
            Failure::Permanent => self.fail_first > 0,
            _ => self.fail_first > MAX_ATTEMPTS,
        }
    }

    /// How many runs it takes when nothing goes wrong.
    fn runs(&self) -> usize {
        match self.failure {
            Failure::Permanent => 1,
            _ => (self.fail_first.min(MAX_ATTEMPTS + 1) + u32::from(!self.dies())) as usize,
        }
    }
}

fn script(job: &Job) -> HandlerScript {
    let Some(plan) = Plan::parse(&job.data) else {
        return HandlerScript::fail_after(Duration::ZERO, "not a planned job");
    };
    let after = Duration::from_millis(u64::from(plan.millis));
    if job.attempt >= plan.fail_first {
        return HandlerScript::succeed_after(after);
    }
    match plan.failure {
        Failure::Error => HandlerScript::fail_after(after, "planned failure"),
        Failure::Panic => HandlerScript::panic_after(after, "planned panic"),
        Failure::Permanent => HandlerScript::fail_permanently_after(after, "planned permanent"),
        Failure::RetryAfter(secs) => {
            HandlerScript::retry_after(after, Duration::from_secs(secs), "planned retry-after")
        }
    }
}

#[derive(Debug, Clone)]
enum Action {
    Push(Vec<Plan>),
    Schedule(Vec<Plan>, u64),
    Advance(u64),
    Crash(usize),
    Pause(usize, u64),
    Shutdown(usize),
    Restart(usize),
}

#[derive(Debug, Clone)]
struct Case {
    seed: u64,
    nodes: Vec<(usize, usize, u64)>,
    fail: f64,
    lose_reply: f64,
    actions: Vec<Action>,
}

fn plan() -> impl Strategy<Value = Plan> {
    let failure = prop_oneof![
        3 => Just(Failure::Error),
        2 => Just(Failure::Panic),
        1 => Just(Failure::Permanent),
        1 => (0..=30u64).prop_map(Failure::RetryAfter),
    ];
    (0..=3u32, 0..=20_000u32, failure).prop_map(|(fail_first, millis, failure)| Plan {
        fail_first,
        millis,
        failure,
    })
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => prop::collection::vec(plan(), 1..=5).prop_map(Action::Push),
        2 => (prop::collection::vec(plan(), 1..=3), 0..=120u64)
            .prop_map(|(plans, secs)| Action::Schedule(plans, secs)),
        4 => (1..=60u64).prop_map(Action::Advance),
        1 => (0..3usize).prop_map(Action::Crash),
        1 => (0..3usize, 1..=90u64).prop_map(|(n, secs)| Action::Pause(n, secs)),
        1 => (0..3usize).prop_map(Action::Shutdown),
        1 => (0..3usize).prop_map(Action::Restart),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        any::<u64>(),
        prop::collection::vec(
            (1..=4usize, 1..=3usize, prop_oneof![Just(0u64), 1..=20u64]),
            2..=3,
        ),
        0.0..0.03f64,
        0.0..0.03f64,
        prop::collection::vec(action(), 5..25),
    )
        .prop_map(|(seed, nodes, fail, lose_reply, actions)| Case {
            seed,
            nodes,
            fail,
            lose_reply,
            actions,
        })
}

fn options(concurrency: usize, buffer: usize, grace: u64) -> ConsumerOptions {
    let mut o = ConsumerOptions::default();
    o.processor_concurrency = concurrency;
    o.poller_buffer_size = buffer;
    o.shutdown_grace_period = Duration::from_secs(grace);
    o.job_max_attempts = MAX_ATTEMPTS;
    o.job_max_backoff = Duration::from_secs(20);
    o.heartbeat_interval = Duration::from_secs(15);
    o.custodian_consumer_timeout = Duration::from_secs(5);
    o.custodian_poll_interval = Duration::from_secs(10);
    o.max_orphan_requeues = 0;
    let backoff = Duration::from_secs(5);
    o.heartbeat_max_backoff = backoff;
    o.scheduler_max_backoff = backoff;
    o.custodian_max_backoff = backoff;
    o.poller_max_backoff = backoff;
    o.processor_max_backoff = backoff;
    o
}

/// What the test knows of every job it made.
#[derive(Default)]
struct Ledger {
    /// Each consumer's concurrency.
    concurrency: BTreeMap<NodeId, usize>,
    plans: BTreeMap<String, Plan>,
    /// The highest attempt seen in each job's stored data.
    attempts: BTreeMap<String, u32>,
    checks: u64,
}

impl Ledger {
    fn add(&mut self, id: String, plan: Plan) {
        self.plans.insert(id, plan);
    }

    /// The invariants that hold after every step.
    fn check(&mut self, sim: &Simulation) -> Result<(), TestCaseError> {
        self.checks += 1;
        for (node, limit) in &self.concurrency {
            let running = sim.running_handlers(*node);
            prop_assert!(
                running <= *limit,
                "{:?} runs {} handlers, limit {}",
                node,
                running,
                limit
            );
        }
        let snap = sim.snapshot();
        let mut places: BTreeMap<&str, usize> = BTreeMap::new();
        let all = snap
            .active
            .iter()
            .chain(snap.scheduled.iter().map(|(id, _)| id))
            .chain(snap.dead.iter().map(|(id, _)| id))
            .chain(snap.inflight.values().flatten());
        for id in all {
            *places.entry(id.as_str()).or_default() += 1;
        }
        let dead: BTreeSet<&str> = snap.dead.iter().map(|(id, _)| id.as_str()).collect();
        for (id, plan) in &self.plans {
            let n = places.get(id.as_str()).copied().unwrap_or(0);
            match snap.data.get(id) {
                Some(bytes) => {
                    prop_assert_eq!(n, 1, "job {} is in {} places at {:?}", id, n, sim.elapsed());
                    let job = Job::decode(bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    let seen = self.attempts.entry(id.clone()).or_default();
                    prop_assert!(job.attempt >= *seen, "job {}'s attempt went down", id);
                    *seen = job.attempt;
                    if dead.contains(id.as_str()) {
                        prop_assert!(plan.dies(), "job {} died unplanned ({:?})", id, plan);
                        // A permanent failure dies at its first failed run (counted).
                        let expect = if plan.failure == Failure::Permanent {
                            1
                        } else {
                            MAX_ATTEMPTS + 1
                        };
                        prop_assert_eq!(job.attempt, expect, "job {} killed early or late", id);
                    }
                }
                None => {
                    prop_assert_eq!(n, 0, "job {} has no data but is queued", id);
                    prop_assert!(
                        sim.successes(id) > 0,
                        "job {} lost: gone without success",
                        id
                    );
                }
            }
        }
        Ok(())
    }
}

/// Steps the simulation for `duration`, checking after every step that touched a job.
fn run_checked(
    sim: &mut Simulation,
    ledger: &mut Ledger,
    duration: Duration,
) -> Result<(), TestCaseError> {
    let deadline = sim.now() + duration;
    let mut seen = sim.calls().len();
    while sim.step_before(deadline) {
        let calls = sim.calls();
        let touched = calls[seen..].iter().any(|c| {
            !matches!(
                c.operation,
                Operation::Wait
                    | Operation::Register
                    | Operation::Unregister
                    | Operation::SettingsWarnings
            )
        });
        seen = calls.len();
        if touched {
            ledger.check(sim)?;
        }
    }
    // Nothing more happens before the deadline: the clock moves there.
    let rest = deadline.duration_since(sim.now()).unwrap_or(Duration::ZERO);
    sim.run_until(rest, |_| false);
    Ok(())
}

static SIMULATED_MILLIS: AtomicU64 = AtomicU64::new(0);
static CHECKS: AtomicU64 = AtomicU64::new(0);

fn run_case(case: Case) -> Result<(), TestCaseError> {
    let mut sim = Simulation::new("prop", case.seed);
    sim.set_faults(Faults {
        fail: case.fail,
        lose_reply: case.lose_reply,
        latency: Duration::from_millis(5),
    });
    let mut ledger = Ledger::default();
    let configs = case.nodes.clone();
    let start = |sim: &mut Simulation, ledger: &mut Ledger, i: usize| {
        let (c, b, g) = configs[i];
        let node = sim.start_consumer(options(c, b, g), script);
        ledger.concurrency.insert(node, c);
        node
    };
    let mut nodes: Vec<NodeId> = (0..configs.len())
        .map(|i| start(&mut sim, &mut ledger, i))
        .collect();
    let mut crashed: BTreeSet<NodeId> = BTreeSet::new();
    let mut counter = 0u64;
    let mut make = |plan: &Plan| {
        counter += 1;
        Job::new(plan.payload()).with_id(format!("job-{counter:04}"))
    };
    for action in &case.actions {
        let live = |i: usize| i < nodes.len();
        match action {
            Action::Push(plans) => {
                for plan in plans {
                    let id = sim.push(make(plan));
                    ledger.add(id, *plan);
                }
            }
            Action::Schedule(plans, secs) => {
                let at = sim.now() + Duration::from_secs(*secs);
                for plan in plans {
                    let id = sim.schedule(make(plan), at);
                    ledger.add(id, *plan);
                }
            }
            Action::Advance(secs) => {
                run_checked(&mut sim, &mut ledger, Duration::from_secs(*secs))?;
            }
            Action::Crash(i) if live(*i) && !sim.is_finished(nodes[*i]) => {
                sim.crash(nodes[*i]);
                crashed.insert(nodes[*i]);
            }
            Action::Pause(i, secs) if live(*i) => sim.pause(nodes[*i], Duration::from_secs(*secs)),
            Action::Shutdown(i) if live(*i) => sim.shutdown(nodes[*i]),
            Action::Restart(i)
                if live(*i) && (crashed.contains(&nodes[*i]) || sim.is_finished(nodes[*i])) =>
            {
                nodes[*i] = start(&mut sim, &mut ledger, *i);
            }
            _ => {}
        }
        ledger.check(&sim)?;
    }

    // The faults end; every consumer still running shuts down.
    sim.set_faults(Faults::default());
    for &node in &nodes {
        sim.shutdown(node);
    }
    let hour = Duration::from_secs(3600);
    run_checked(&mut sim, &mut ledger, Duration::from_secs(5))?;
    for &node in nodes.iter().filter(|n| !crashed.contains(n)) {
        let deadline = sim.now() + hour;
        while !sim.is_finished(node) && sim.now() < deadline {
            run_checked(&mut sim, &mut ledger, Duration::from_secs(10))?;
        }
        match sim.result(node) {
            // A consumer whose first registration failed (an injected fault) never ran.
            Some(Ok(()))
            | Some(Err(ConsumeError::ShutdownTimeout { .. }))
            | Some(Err(ConsumeError::Startup(_))) => {}
            None => prop_assert!(false, "{:?} did not stop: {}", node, sim.describe(node)),
            other => prop_assert!(false, "{:?} stopped with {:?}", node, other),
        }
    }

    // A fresh consumer finishes everything left (orphans of crashed consumers too).
    let cleaner = sim.start_consumer(options(4, 3, 0), script);
    let done = |sim: &Simulation, ledger: &Ledger| {
        let snap = sim.snapshot();
        snap.active.is_empty()
            && snap.scheduled.is_empty()
            && snap.inflight.is_empty()
            && ledger
                .plans
                .keys()
                .all(|id| !snap.data.contains_key(id) || snap.dead.iter().any(|(d, _)| d == id))
    };
    let deadline = sim.now() + 3 * hour;
    while !done(&sim, &ledger) && sim.now() < deadline {
        run_checked(&mut sim, &mut ledger, Duration::from_secs(30))?;
    }
    prop_assert!(
        done(&sim, &ledger),
        "not finished after 3 h: {:#?}",
        sim.snapshot()
    );
    // Long enough for the custodian to remove every expired consumer ID.
    run_checked(&mut sim, &mut ledger, Duration::from_secs(60))?;
    sim.shutdown(cleaner);
    run_checked(&mut sim, &mut ledger, Duration::from_secs(60))?;
    prop_assert!(
        matches!(sim.result(cleaner), Some(Ok(()))),
        "{:?}",
        sim.result(cleaner)
    );

    // Every job ended acked or dead, exactly as planned; none ran more often than
    // planned unless a fault could make it.
    let snap = sim.snapshot();
    let dead: BTreeSet<&String> = snap.dead.iter().map(|(id, _)| id).collect();
    let planned: BTreeSet<&String> = ledger
        .plans
        .iter()
        .filter(|(_, p)| p.dies())
        .map(|(id, _)| id)
        .collect();
    prop_assert_eq!(&dead, &planned, "the dead set is the planned failures");
    for (id, plan) in &ledger.plans {
        let runs = sim.runs_of(id).len();
        if sim.is_exposed(id) {
            prop_assert!(
                runs >= plan.runs(),
                "job {} ran {} times, planned {}",
                id,
                runs,
                plan.runs()
            );
        } else {
            prop_assert_eq!(runs, plan.runs(), "job {} ({:?}) with no fault", id, plan);
        }
        if !plan.dies() {
            prop_assert!(
                !snap.data.contains_key(id) && sim.successes(id) > 0,
                "job {} acked",
                id
            );
        }
    }
    prop_assert!(
        snap.consumers.is_empty(),
        "consumers left: {:?}",
        snap.consumers
    );
    SIMULATED_MILLIS.fetch_add(sim.elapsed().as_millis() as u64, Ordering::Relaxed);
    CHECKS.fetch_add(ledger.checks, Ordering::Relaxed);
    Ok(())
}

/// No job is lost, every job ends acked or dead as planned, and a job runs twice only
/// after a crash, pause, failed call, lost reply or grace-period cancel of its consumer.
#[test]
fn random_schedules_of_consumers_lose_no_job_and_run_none_twice_without_a_fault() {
    let cases = std::env::var("CURLYQ_SIM_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256);
    let config = Config {
        cases,
        max_shrink_iters: 2048,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/simulation.txt",
        ))),
        ..Config::default()
    };
    let started = Instant::now();
    let mut runner = TestRunner::new(config);
    if let Err(e) = runner.run(&case(), run_case) {
        panic!("{e}");
    }
    let simulated = Duration::from_millis(SIMULATED_MILLIS.load(Ordering::Relaxed));
    eprintln!(
        "{cases} cases: {:.1} h of simulated consumer time, {} invariant checks, in {:.2?} of wall time",
        simulated.as_secs_f64() / 3600.0,
        CHECKS.load(Ordering::Relaxed),
        started.elapsed()
    );
}
