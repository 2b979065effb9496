//! The soak: long fault scenarios, each under 2 minutes, run on demand with
//! `cargo test -p curlyq-faults --release --test soak -- --ignored --test-threads 1 --nocapture`.
//!
//! - T2 SIGKILL: a random worker killed every 2–6 s for 60 s (and restarted) under load.
//! - T7 stall: a worker SIGSTOPped for twice the consumer expiry, then SIGCONTed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::Env;
use curlyq::Job;
use curlyq_faults::worker::Behaviour;
use nix::sys::signal::Signal;
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
            "duplicate {} not from the stalled worker: {runs:?}",
            String::from_utf8_lossy(id)
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
