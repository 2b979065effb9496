//! The soak: long fault scenarios, each under 2 minutes, run on demand with
//! `cargo test -p curlyq-faults --release --test soak --test network -- --ignored --test-threads 1 --nocapture`
//! (T6, through a TCP proxy, is in `tests/network.rs`).
//!
//! - T2 SIGKILL: a random worker killed every 2–6 s for 60 s (and restarted) under load.
//! - T4 Redis crash: `kill -9` of Redis three times and one `DEBUG RESTART` under load,
//!   each restart from the AOF on the same port.
//! - T7 stall: a worker SIGSTOPped for twice the consumer expiry, then SIGCONTed.
//! - T8 scheduler: 5,000 jobs due over 10 s; none early, lateness within the poll bound.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use common::Env;
use curlyq::Job;
use curlyq_faults::checker::{show, Spread, Verdict};
use curlyq_faults::harness::{self, LedgeredProducer, PushCount};
use curlyq_faults::ledger::{now_micros, LedgerSummary};
use curlyq_faults::worker::{Behaviour, WorkerConfig};
use nix::sys::signal::Signal;
use rand::seq::SliceRandom;
use rand::Rng;

/// Pushes `per_tick` jobs with IDs `<prefix>-<n>`, continuing the numbering.
async fn push_tick(env: &Env, prefix: &str, next: &mut usize, per_tick: usize) {
    let jobs = (0..per_tick)
        .map(|i| Job::new(Behaviour::Ok.payload()).with_id(format!("{prefix}-{}", *next + i)))
        .collect();
    let c = env.producer.push(jobs).await.unwrap();
    assert_eq!(c.ok, per_tick, "{c:?}");
    *next += per_tick;
}

/// T2: under a steady load (300 jobs/s), a random worker of 4 is SIGKILLed every 2–6 s
/// for 60 s and restarted at once. Nothing is lost; every duplicate is a job a killed
/// worker had run to success but not acked, at most concurrency + buffer per kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: run with --ignored"]
async fn t2_sigkill() {
    let mut env = Env::new("T2", "t2").await;
    let config = env.config();
    for slot in 0..4 {
        env.pool.spawn(slot, &config).unwrap();
    }
    let held = config.concurrency + config.buffer;
    let mut killed = BTreeSet::new();
    let mut next = 0;
    let start = Instant::now();
    let mut next_kill = start + Duration::from_millis(env.rng.random_range(2000..6000));
    while start.elapsed() < Duration::from_secs(60) {
        push_tick(&env, "t2", &mut next, 75).await;
        if Instant::now() >= next_kill {
            let slot = env.rng.random_range(0..4);
            if let Some(w) = env.pool.in_slot(slot) {
                killed.insert(w.pid());
                w.hard_kill();
            }
            env.pool.reap_exited();
            env.pool.spawn(slot, &config).unwrap();
            env.faults += 1;
            next_kill = Instant::now() + Duration::from_millis(env.rng.random_range(2000..6000));
        }
        tokio::time::sleep(Duration::from_millis(250)).await; // the load's schedule
    }
    env.drained(0, Duration::from_secs(50)).await;
    env.stop_workers(Duration::from_secs(10));
    let v = env.check(next, &BTreeSet::new(), |_, _| false, true).await;
    assert_eq!(v.executed, next);
    let mut per_kill: BTreeMap<u32, usize> = BTreeMap::new();
    for (id, runs) in &v.duplicated {
        let mut runs = runs.clone();
        runs.sort_by_key(|r| r.start);
        for early in &runs[..runs.len() - 1] {
            assert!(
                killed.contains(&early.pid),
                "duplicate {} not traced to a kill: {runs:?}",
                String::from_utf8_lossy(id)
            );
            *per_kill.entry(early.pid).or_default() += 1;
        }
    }
    for (pid, n) in &per_kill {
        assert!(
            *n <= held,
            "worker {pid} held at most {held} jobs, {n} ran twice"
        );
    }
    eprintln!(
        "[T2] {} kills, {} duplicates, at most {} per kill",
        killed.len(),
        v.duplicated.len(),
        per_kill.values().max().unwrap_or(&0)
    );
}

/// T7: a worker is stopped (SIGSTOP) for twice the consumer expiry (heartbeat 15 s +
/// timeout 5 s) under load, then continued. Only its jobs run twice; it rejoins under a
/// fresh consumer ID and keeps working; nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: run with --ignored"]
async fn t7_stall() {
    let mut env = Env::new("T7", "t7").await;
    let config = env.config();
    for slot in 0..3 {
        env.pool.spawn(slot, &config).unwrap();
    }
    let stalled = env.pool.in_slot(0).unwrap().pid();
    let expiry = Duration::from_secs(config.heartbeat_s + config.timeout_s);
    let mut next = 0;
    let start = Instant::now();
    let (mut stopped, mut continued) = (false, false);
    while start.elapsed() < Duration::from_secs(55) {
        push_tick(&env, "t7", &mut next, 50).await;
        let t = start.elapsed();
        if !stopped && t >= Duration::from_secs(3) {
            env.pool.in_slot(0).unwrap().signal(Signal::SIGSTOP);
            stopped = true;
            env.faults += 1;
        }
        if stopped && !continued && t >= Duration::from_secs(3) + 2 * expiry {
            env.pool.in_slot(0).unwrap().signal(Signal::SIGCONT);
            continued = true;
            env.faults += 1;
        }
        tokio::time::sleep(Duration::from_millis(250)).await; // the load's schedule
    }
    assert!(continued);
    env.drained(0, Duration::from_secs(40)).await;
    let stats = {
        let at = env.pool.workers.iter().position(|w| w.slot == 0).unwrap();
        let mut w = env.pool.workers.remove(at);
        w.signal(Signal::SIGTERM);
        assert_eq!(w.wait(Duration::from_secs(10)), Ok(Some(0)));
        w.stats_line().unwrap_or_default()
    };
    env.stop_workers(Duration::from_secs(10));
    let v = env.check(next, &BTreeSet::new(), |_, _| false, true).await;
    assert_eq!(v.executed, next);
    for (id, runs) in &v.duplicated {
        let mut runs = runs.clone();
        runs.sort_by_key(|r| r.start);
        assert!(
            runs[..runs.len() - 1].iter().all(|r| r.pid == stalled),
            "duplicate {} not from the stalled worker ({stalled}): {runs:?}\n{}",
            String::from_utf8_lossy(id),
            env.pool.stderr_tail(20_000)
        );
    }
    let rejoined = stats
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("rejoined="))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        rejoined >= 1,
        "the stalled worker rejoined under a fresh ID: {stats}"
    );
    eprintln!(
        "[T7] stalled worker stats: {stats}; {} duplicates",
        v.duplicated.len()
    );
}

/// Restarts every worker that exited, recording it (slot, pid, when) in `exits`.
fn respawn_exited(env: &mut Env, config: &WorkerConfig, exits: &mut Vec<(usize, u32, Duration)>) {
    for (slot, pid) in env.pool.reap_exited() {
        exits.push((slot, pid, env.started.elapsed()));
        env.pool.spawn(slot, config).unwrap();
    }
}

/// One Redis crash of T4.
#[derive(Debug, Clone, Copy)]
enum Crash {
    /// `kill -9`, this long down, restart from the AOF on the same port.
    Kill9(Duration),
    /// `DEBUG RESTART`: Redis saves and re-executes itself.
    DebugRestart,
}

/// T4: under T1's load (20,000 jobs, here pushed at 1,000 jobs/s in batches of 100; 4
/// workers × concurrency 4, handler 0–5 ms), Redis is killed with `kill -9` three times
/// (down 1–3 s each) and restarted once with `DEBUG RESTART`, each time restarting from
/// its AOF (`appendfsync always`) on the same port and directory. Nothing confirmed is
/// lost, nothing runs twice, every push in doubt ran once or not at all, the keys are
/// clean after the drain, and no worker exits: each loop backs off (at most 1 s) and
/// retries through the outages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: run with --ignored"]
async fn t4_redis_crash() {
    let mut env = Env::new("T4", "t4").await;
    let mut config = env.config();
    config.loop_max_backoff_ms = 1000;
    for slot in 0..4 {
        env.pool.spawn(slot, &config).unwrap();
    }
    env.wait_registered(4).await;

    let mut crashes: Vec<Crash> = (0..3)
        .map(|_| Crash::Kill9(Duration::from_millis(env.rng.random_range(1000..=3000))))
        .chain([Crash::DebugRestart])
        .collect();
    crashes.shuffle(&mut env.rng);
    // One crash in each 5 s window of the push phase, at a seeded offset.
    let times: Vec<Duration> = (0..crashes.len() as u64)
        .map(|k| Duration::from_millis(2000 + 5000 * k + env.rng.random_range(0..2000)))
        .collect();

    let jobs = 20_000;
    let batch = 100;
    let producer =
        Arc::new(LedgeredProducer::new(env.backend.clone(), &env.queue, env.dir.path()).unwrap());
    let load = tokio::spawn({
        let producer = producer.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100)); // the load's schedule
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut total = PushCount::default();
            for first in (0..jobs).step_by(batch) {
                tick.tick().await;
                let chunk = (first..first + batch)
                    .map(|i| Job::new(Behaviour::Ok.payload()).with_id(format!("t4-{i}")))
                    .collect();
                let c = producer.push(chunk).await.expect("the ledger is writable");
                total.ok += c.ok;
                total.exists += c.exists;
                total.doubt += c.doubt;
            }
            total
        }
    });

    let start = Instant::now();
    let mut exits = Vec::new();
    let mut outages = Vec::new();
    for (crash, at) in crashes.iter().zip(&times) {
        while start.elapsed() < *at {
            respawn_exited(&mut env, &config, &mut exits);
            tokio::time::sleep(Duration::from_millis(50)).await; // until the crash's time
        }
        let began = start.elapsed();
        let down = tokio::task::block_in_place(|| match crash {
            Crash::Kill9(down) => harness::crash_and_restart(&mut env.server, *down),
            Crash::DebugRestart => harness::debug_restart(&env.server),
        })
        .unwrap_or_else(|e| panic!("[T4] {crash:?}: {e}"));
        env.faults += 1;
        eprintln!(
            "[T4] {crash:?} at {:.1} s: Redis unreachable for {:.2} s",
            began.as_secs_f64(),
            down.as_secs_f64()
        );
        outages.push(down);
    }
    while !load.is_finished() {
        respawn_exited(&mut env, &config, &mut exits);
        tokio::time::sleep(Duration::from_millis(50)).await; // until the load is pushed
    }
    let pushed = load.await.unwrap();
    let pushing = start.elapsed();
    respawn_exited(&mut env, &config, &mut exits);
    let drained = harness::drain(&env.conn().await, &env.queue, Duration::from_secs(60)).await;
    respawn_exited(&mut env, &config, &mut exits);
    let stranded = if drained.is_err() {
        let mut conn = env.conn().await;
        harness::in_flight_sets(&mut conn, &env.queue)
            .await
            .unwrap()
    } else {
        Vec::new()
    };
    let stderr = env.pool.stderr_tail(6000);
    env.stop_workers(Duration::from_secs(10));
    let ledger = LedgerSummary::read_dir(env.dir.path()).unwrap();
    let v = Verdict::of(&ledger, &BTreeSet::new());
    eprintln!(
        "[T4] pushes: ok {}, in doubt {} (ran {}, absent {}); executed {}; pushing took {:.1} s; outages {:?}; worker exits {}",
        pushed.ok,
        pushed.doubt,
        v.doubt_present,
        v.doubt_absent,
        v.executed,
        pushing.as_secs_f64(),
        outages,
        exits.len()
    );
    assert_eq!(pushed.ok + pushed.exists + pushed.doubt, jobs);
    assert!(v.duplicated.is_empty(), "[T4] {v}");
    assert!(v.unexpected.is_empty(), "[T4] {v}");
    let held: BTreeSet<&Vec<u8>> = stranded.iter().flat_map(|s| &s.ids).collect();
    let gone: Vec<String> = v
        .lost
        .iter()
        .filter(|id| !held.contains(id))
        .map(|id| show(id))
        .collect();
    assert!(
        gone.is_empty(),
        "[T4] confirmed jobs gone from Redis: {gone:?}"
    );
    // A worker that exits during an outage is a finding: its loops must back off and
    // retry (max attempts 0 = never give up).
    assert!(
        exits.is_empty(),
        "[T4] workers exited during the outages (slot, pid, when): {exits:?}\n{stderr}"
    );
    // FINDING (fails on the library as of this writing): a take that Redis ran and made
    // durable but whose reply never reached the consumer (the server went down between
    // the AOF write and the reply; `DEBUG RESTART` does that for every command of its
    // event-loop iteration) leaves its jobs in the in-flight set of a consumer that
    // keeps heartbeating, so no custodian ever requeues them. Same defect as T5's.
    if let Err(e) = drained {
        let sets: Vec<String> = stranded
            .iter()
            .map(|s| {
                let ids: Vec<String> = s.ids.iter().map(|id| show(id)).collect();
                format!(
                    "{} (last heartbeat {:?} s ago): {ids:?}",
                    s.key,
                    s.heartbeat_age.map(|a| a.round())
                )
            })
            .collect();
        eprintln!(
            "[T4] jobs {jobs}, faults injected {}, lost 0 (stranded {}), duplicated 0, dead 0, wall {:.1} s, seed {}",
            env.faults,
            held.len(),
            env.started.elapsed().as_secs_f64(),
            env.seed
        );
        panic!(
            "[T4] {e}: jobs stranded in flight under live consumers:\n{}",
            sets.join("\n")
        );
    }
    let v = env.check(jobs, &BTreeSet::new(), |_, _| false, false).await;
    assert_eq!(v.executed, pushed.ok + v.doubt_present);
}

/// T8: 5,000 jobs scheduled with `perform_at` at now + 0–10 s (uniform, seeded), 4
/// workers (scheduler poll 500 ms): none starts before its due time, and the lateness
/// of each start after the later of its due time and its push's confirmation has p99
/// under the scheduler's poll interval + 100 ms (the scheduler also wakes at the
/// earliest due time, and a schedule sets the signal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: run with --ignored"]
async fn t8_scheduler() {
    let mut env = Env::new("T8", "t8").await;
    let config = env.config();
    for slot in 0..4 {
        env.pool.spawn(slot, &config).unwrap();
    }
    env.wait_registered(4).await;
    let jobs = 5000;
    let spread_us = 10_000_000;
    let t0 = now_micros();
    let due: BTreeMap<String, u64> = (0..jobs)
        .map(|i| (format!("t8-{i}"), t0 + env.rng.random_range(0..spread_us)))
        .collect();
    let plan = due
        .iter()
        .map(|(id, at)| {
            (
                UNIX_EPOCH + Duration::from_micros(*at),
                Job::new(Behaviour::Ok.payload()).with_id(id.clone()),
            )
        })
        .collect();
    let (count, confirmed) = env.producer.perform_at_many(plan, 64).await.unwrap();
    let pushed_in = Duration::from_micros(now_micros() - t0);
    assert_eq!(count.ok, jobs, "{count:?}");
    env.drained(0, Duration::from_secs(40)).await;
    env.stop_workers(Duration::from_secs(10));
    let v = env.check(jobs, &BTreeSet::new(), |_, _| false, false).await;
    assert_eq!(v.executed, jobs);

    let ledger = LedgerSummary::read_dir(env.dir.path()).unwrap();
    let mut early = Vec::new();
    let mut late_after_ready = Vec::new();
    let mut late_after_due = Vec::new();
    let mut pushed_after_due = 0;
    for (id, at) in &due {
        let run = ledger.execs[id.as_bytes()][0];
        if run.start < *at {
            early.push((id.clone(), at - run.start));
            continue;
        }
        let ready = (*at).max(confirmed[id]);
        if confirmed[id] > *at {
            pushed_after_due += 1;
        }
        late_after_ready.push(run.start.saturating_sub(ready));
        late_after_due.push(run.start - at);
    }
    let ready = Spread::of(&late_after_ready);
    let after_due = Spread::of(&late_after_due);
    eprintln!(
        "[T8] pushed in {:.2} s ({pushed_after_due} confirmed after their due time); lateness after due-and-pushed: {ready}; after due: {after_due}",
        pushed_in.as_secs_f64()
    );
    assert!(
        early.is_empty(),
        "[T8] {} jobs started before their due time (id, µs early), e.g. {:?}",
        early.len(),
        &early[..early.len().min(5)]
    );
    let bound = Duration::from_millis(config.scheduler_poll_ms + 100);
    assert!(
        Duration::from_micros(ready.p99) < bound,
        "[T8] lateness p99 {ready} not under {bound:?}"
    );
}
