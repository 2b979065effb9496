//! Scenarios run by `cargo test --workspace` (each bounded in jobs and time): T1
//! baseline, T3 poison, T9 shutdown, T10 bad input.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::Env;
use curlyq_faults::worker::Behaviour;

/// T1: 20,000 jobs, 4 workers × concurrency 4, handler 0–5 ms: nothing lost, nothing
/// run twice, the keys clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t1_baseline() {
    let mut env = Env::new("T1", "t1").await;
    let jobs = 20_000;
    let config = env.config();
    for slot in 0..4 {
        env.pool.spawn(slot, &config).unwrap();
    }
    env.push_many("t1", 0..jobs, Behaviour::Ok, 500).await;
    env.drained(0, Duration::from_secs(120)).await;
    env.stop_workers(Duration::from_secs(10));
    let v = env.check(jobs, &BTreeSet::new(), |_, _| false, false).await;
    assert_eq!(v.executed, jobs);
}

/// Restarts every worker that exited, until `done` holds or `limit` passes; returns the
/// number of restarts (crashes).
async fn restart_crashed_until(
    env: &mut Env,
    config: &curlyq_faults::worker::WorkerConfig,
    limit: Duration,
    mut done: impl FnMut((usize, usize, usize, usize)) -> bool,
) -> usize {
    let mut conn = env.conn().await;
    let started = std::time::Instant::now();
    let mut restarts = 0;
    loop {
        for (slot, _pid) in env.pool.reap_exited() {
            env.pool.spawn(slot, config).unwrap();
            restarts += 1;
        }
        let counts = curlyq_faults::harness::counts(&mut conn, &env.queue)
            .await
            .unwrap();
        if done(counts) {
            return restarts;
        }
        assert!(
            started.elapsed() < limit,
            "[{}] not done within {limit:?}: (active, scheduled, in flight, dead) = {counts:?}\n{}",
            env.name,
            env.pool.stderr_tail(3000)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// T3: 10 jobs that panic and 10 that always fail among 2,000 good ones, then 50 jobs
/// that abort their process: exactly those 70 end in the dead set, each with its reason;
/// every other job runs once.
///
/// The aborting jobs are pushed once the good ones are done: a crashing process also
/// orphans the jobs it had taken ahead, and `max_orphan_requeues` counts those too (see
/// the README), so mixing them would kill good jobs by design, not by a defect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t3_poison() {
    use rand::seq::SliceRandom;
    let mut env = Env::new("T3", "t3").await;
    let mut config = env.config();
    config.max_attempts = 1;
    config.max_backoff_ms = 500;
    config.max_orphan_requeues = 2;
    config.custodian_poll_ms = 500;
    for slot in 0..4 {
        env.pool.spawn(slot, &config).unwrap();
    }
    let mut jobs: Vec<(String, Behaviour)> = (0..2000)
        .map(|i| (format!("good-{i}"), Behaviour::Ok))
        .chain((0..10).map(|i| (format!("panic-{i}"), Behaviour::Panic)))
        .chain((0..10).map(|i| (format!("fail-{i}"), Behaviour::Fail)))
        .collect();
    jobs.shuffle(&mut env.rng);
    for chunk in jobs.chunks(100) {
        let batch = chunk
            .iter()
            .map(|(id, b)| curlyq::Job::new(b.payload()).with_id(id.clone()))
            .collect();
        env.producer.push(batch).await.unwrap();
    }
    let limit = Duration::from_secs(60);
    let cfg = config.clone();
    restart_crashed_until(&mut env, &cfg, limit, |(a, s, i, d)| {
        a == 0 && s == 0 && i == 0 && d == 20
    })
    .await;
    env.push_many("abort", 0..50, Behaviour::Abort, 50).await;
    let crashes =
        restart_crashed_until(&mut env, &cfg, Duration::from_secs(150), |(a, s, i, d)| {
            a == 0 && s == 0 && i == 0 && d == 70
        })
        .await;
    env.faults = crashes;
    env.stop_workers(Duration::from_secs(10));
    let planned: BTreeSet<Vec<u8>> = jobs
        .iter()
        .filter(|(_, b)| *b != Behaviour::Ok)
        .map(|(id, _)| id.clone().into_bytes())
        .chain((0..50).map(|i| format!("abort-{i}").into_bytes()))
        .collect();
    let v = env
        .check(
            2070,
            &planned,
            |id, why| {
                let id = String::from_utf8_lossy(id);
                if id.starts_with("abort-") {
                    why.contains("orphaned 2 times")
                } else if id.starts_with("panic-") {
                    why.contains("handler panicked: planned panic")
                } else {
                    why.contains("handler error: planned failure")
                }
            },
            false,
        )
        .await;
    assert_eq!(v.executed, 2000);
    assert!(
        crashes >= 7,
        "50 aborting jobs, 8 at most orphaned per crash, each twice: {crashes} crashes"
    );
}

/// T9 (a): SIGTERM while 16 handlers of 10 s run, grace 30 s: all 16 finish and are
/// acked, none runs twice, the consumer leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t9_shutdown_waits_for_running_handlers() {
    let mut env = Env::new("T9a", "t9a").await;
    let mut config = env.config();
    config.concurrency = 16;
    config.buffer = 16;
    config.grace_ms = 30_000;
    env.pool.spawn(0, &config).unwrap();
    env.push_many("long", 0..16, Behaviour::Sleep(10_000), 16)
        .await;
    let dir = env.dir.path().to_path_buf();
    curlyq_faults::harness::wait_for(
        "16 started",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || {
            let dir = dir.clone();
            async move {
                curlyq_faults::ledger::LedgerSummary::read_dir(&dir)
                    .map(|l| l.starts.len() == 16)
                    .unwrap_or(false)
            }
        },
    )
    .await
    .unwrap();
    env.faults = 1;
    let term = std::time::Instant::now();
    env.stop_workers(Duration::from_secs(35));
    let took = term.elapsed();
    assert!(took < Duration::from_secs(12), "shutdown took {took:?}");
    let v = env.check(16, &BTreeSet::new(), |_, _| false, false).await;
    assert_eq!(v.executed, 16);
    let mut conn = env.conn().await;
    let consumers: usize = redis::cmd("ZCARD")
        .arg("t9a:consumers")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(consumers, 0, "the consumer unregistered");
}

/// T9 (b): the same with a 2 s grace: once it passes the 16 jobs are back in the active
/// list at once, unstarted-as-far-as-Redis-knows (Attempt still 0), nothing in flight,
/// and no run recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t9_grace_period_gives_unfinished_jobs_back() {
    let mut env = Env::new("T9b", "t9b").await;
    let mut config = env.config();
    config.concurrency = 16;
    config.buffer = 16;
    config.grace_ms = 2_000;
    env.pool.spawn(0, &config).unwrap();
    env.push_many("long", 0..16, Behaviour::Sleep(10_000), 16)
        .await;
    let dir = env.dir.path().to_path_buf();
    curlyq_faults::harness::wait_for(
        "16 started",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || {
            let dir = dir.clone();
            async move {
                curlyq_faults::ledger::LedgerSummary::read_dir(&dir)
                    .map(|l| l.starts.len() == 16)
                    .unwrap_or(false)
            }
        },
    )
    .await
    .unwrap();
    let term = std::time::Instant::now();
    let mut worker = env.pool.workers.pop().unwrap();
    worker.signal(nix::sys::signal::Signal::SIGTERM);
    let code = worker.wait(Duration::from_secs(10)).unwrap();
    let took = term.elapsed();
    assert_eq!(
        code,
        Some(3),
        "exit code of a shutdown that cancelled handlers"
    );
    assert!(
        took < Duration::from_secs(4),
        "grace 2 s, but the worker took {took:?} to give the jobs back and exit"
    );
    let mut conn = env.conn().await;
    let (active, scheduled, inflight, dead) = curlyq_faults::harness::counts(&mut conn, "t9b")
        .await
        .unwrap();
    assert_eq!((active, scheduled, inflight, dead), (16, 0, 0, 0));
    for i in 0..16 {
        let raw: Vec<u8> = redis::cmd("HGET")
            .arg("t9b:data")
            .arg(format!("long-{i}"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            curlyq::Job::decode(&raw).unwrap().attempt,
            0,
            "no attempt counted"
        );
    }
    let consumers: usize = redis::cmd("ZCARD")
        .arg("t9b:consumers")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(consumers, 0, "the consumer unregistered");
    let ledger = curlyq_faults::ledger::LedgerSummary::read_dir(env.dir.path()).unwrap();
    assert!(ledger.execs.is_empty());
    eprintln!(
        "[T9b] jobs 16, faults injected 1 (SIGTERM), lost 0, duplicated 0, dead 0, back in active after {took:?}, wall {:.1} s, seed {}",
        env.started.elapsed().as_secs_f64(),
        env.seed
    );
}
