//! T5, unknown outcomes (runs with `cargo test --workspace`, bounded to well under a
//! minute): Redis stops answering for longer than the clients' response timeout (`DEBUG
//! SLEEP`, `CLIENT PAUSE <ms> WRITE`) while takes, acks and pushes are in flight. Each
//! such call fails on the client side although Redis runs it afterwards, so its caller
//! cannot know whether it happened.
//!
//! - A take whose reply was lost leaves its jobs in the in-flight set of a consumer that
//!   never saw them: none may stay there longer than one orphan timeout (consumer expiry
//!   = heartbeat interval + consumer timeout).
//! - An ack whose reply was lost is retried and finds the job gone: the job ran once.
//! - A push whose reply was lost and that the caller retries with the same job (same ID)
//!   yields exactly one job.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Env;
use curlyq::Job;
use curlyq_faults::checker::show;
use curlyq_faults::harness::{self, LedgeredProducer};
use curlyq_faults::ledger::{now_micros, Kind, LedgerSummary, LedgerWriter};
use curlyq_faults::worker::{Behaviour, WorkerConfig};
use curlyq_redis_rs::{RedisBackend, RedisConfig};
use redis::aio::MultiplexedConnection;

/// The clients' response timeout in the scenario (workers and producer).
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(400);

/// Workers with a short response timeout, loops backing off at most 1 s, warnings on
/// stderr.
fn short_timeout_config(env: &Env) -> WorkerConfig {
    let mut config = env.config();
    config.response_timeout_ms = RESPONSE_TIMEOUT.as_millis() as u64;
    config.loop_max_backoff_ms = 1000;
    config.custodian_poll_ms = 500;
    config
}

fn spawn_workers(env: &mut Env, config: &WorkerConfig, n: usize) {
    for slot in 0..n {
        env.pool
            .spawn_with_env(slot, config, &[("CURLYQ_FAULT_LOG", "warn")])
            .unwrap();
    }
}

/// A connection for the faults themselves: it must outwait the server's sleep.
async fn fault_conn(env: &Env) -> MultiplexedConnection {
    let mut conn = env.conn().await;
    conn.set_response_timeout(Duration::from_secs(15));
    conn
}

/// A producer whose client gives up after [`RESPONSE_TIMEOUT`].
async fn short_timeout_producer(env: &Env) -> LedgeredProducer {
    let config = RedisConfig::default().with_response_timeout(RESPONSE_TIMEOUT);
    let backend = RedisBackend::connect_with(&env.server.url(), config)
        .await
        .unwrap();
    LedgeredProducer::new(Arc::new(backend), &env.queue, env.dir.path()).unwrap()
}

/// Waits until the ledger holds `n` handler starts in all.
async fn wait_starts(env: &Env, n: usize) {
    let dir = env.dir.path().to_path_buf();
    harness::wait_for(
        "handlers started",
        Duration::from_secs(20),
        Duration::from_millis(10),
        || {
            let dir = dir.clone();
            async move { LedgerSummary::read_dir(&dir).is_ok_and(|l| l.starts.len() >= n) }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("[{}] {e}\n{}", env.name, env.pool.stderr_tail(3000)));
}

/// A fault that holds back every script call for a while.
struct Fault {
    /// Names its jobs.
    name: &'static str,
    /// The command that starts it.
    cmd: redis::Cmd,
    /// How long it lasts.
    len: Duration,
}

/// Handlers running when a fault starts (two workers × concurrency 4).
const RUNNING: usize = 8;
/// Jobs planted in the active list just before a fault.
const PLANTED: usize = 24;

/// [`RUNNING`] handlers of `sleep:400` jobs are running (their acks will fall into the
/// fault) and the pollers are idle, waiting for the signal (their next take will too).
/// Then, in one pipeline, [`PLANTED`] ready jobs are written straight into the active
/// list without setting the signal (so that no poller takes them before the fault),
/// followed by the fault's command. Returns the planted IDs and when the fault ended
/// (µs since the epoch).
async fn takes_and_acks_under(
    env: &Env,
    conn: &mut MultiplexedConnection,
    planter: &LedgerWriter,
    fault: &Fault,
) -> (Vec<String>, u64) {
    let before = LedgerSummary::read_dir(env.dir.path())
        .unwrap()
        .starts
        .len();
    let phase = fault.name;
    env.push_many(
        &format!("{phase}-running"),
        0..RUNNING,
        Behaviour::Sleep(400),
        RUNNING,
    )
    .await;
    wait_starts(env, before + RUNNING).await;
    let ids: Vec<String> = (0..PLANTED)
        .map(|i| format!("{phase}-planted-{i}"))
        .collect();
    let mut pipe = redis::pipe();
    for id in &ids {
        let job = Job::new(Behaviour::Ok.payload()).with_id(id.clone());
        pipe.cmd("HSET")
            .arg(format!("{}:data", env.queue))
            .arg(id)
            .arg(job.encode())
            .ignore();
    }
    pipe.cmd("RPUSH")
        .arg(format!("{}:active", env.queue))
        .arg(&ids)
        .ignore();
    pipe.add_command(fault.cmd.clone()).ignore();
    let t = now_micros();
    planter.record(Kind::Attempt, &ids, t, t).unwrap();
    let started = Instant::now();
    let () = pipe.query_async(conn).await.unwrap();
    let t = now_micros();
    planter.record(Kind::Ok, &ids, t, t).unwrap();
    // DEBUG SLEEP answers when it ends, CLIENT PAUSE at once: wait out the rest.
    if let Some(rest) = fault.len.checked_sub(started.elapsed()) {
        tokio::time::sleep(rest).await; // the fault's own length
    }
    (ids, t.max(now_micros()))
}

/// How many "loop step failed" warnings the workers logged, for `loop` (poller,
/// processor, ...).
fn failed_steps(stderr: &str, name: &str) -> usize {
    let tag = format!("loop={name}");
    stderr
        .lines()
        .map(without_ansi)
        .filter(|l| l.contains("curlyq loop step failed") && l.contains(&tag))
        .count()
}

/// `line` without terminal colour sequences (`ESC [ ... letter`).
fn without_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Sums a counter over the workers' `STATS` lines.
fn stat_sum(lines: &[String], key: &str) -> u64 {
    let prefix = format!("{key}=");
    lines
        .iter()
        .flat_map(|l| l.split_whitespace())
        .filter_map(|kv| kv.strip_prefix(&prefix))
        .filter_map(|n| n.parse::<u64>().ok())
        .sum()
}

/// Pushes `ids` while Redis sleeps (`DEBUG SLEEP`, longer than the producer's response
/// timeout): the push times out, and the caller retries the same jobs until each is
/// confirmed, `retry_after` after each failure. Returns how many attempts were in doubt
/// and how the last attempt ended (ok, exists).
async fn push_into_sleep(
    conn: &MultiplexedConnection,
    producer: &LedgeredProducer,
    ids: &[String],
    sleep: Duration,
    retry_after: Duration,
) -> (usize, usize, usize) {
    let sleeper = tokio::spawn({
        let mut conn = conn.clone();
        let secs = format!("{:.3}", sleep.as_secs_f64());
        async move {
            redis::cmd("DEBUG")
                .arg("SLEEP")
                .arg(secs)
                .query_async::<()>(&mut conn)
                .await
        }
    });
    // Let DEBUG SLEEP reach the server first (ordering only; nothing is timed by it).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let jobs = || {
        ids.iter()
            .map(|id| Job::new(Behaviour::Ok.payload()).with_id(id.clone()))
            .collect::<Vec<_>>()
    };
    let mut doubts = 0;
    let mut last = (0, 0);
    for _ in 0..20 {
        let c = producer.push(jobs()).await.unwrap();
        if c.doubt == 0 {
            last = (c.ok, c.exists);
            break;
        }
        doubts += 1;
        tokio::time::sleep(retry_after).await; // the caller's retry backoff
    }
    sleeper.await.unwrap().unwrap();
    (doubts, last.0, last.1)
}

/// T5: two workers (concurrency 4, buffer 4, response timeout 400 ms, expiry 15 + 5 s)
/// under three faults: `DEBUG SLEEP 3` while handlers finish (acks) and pollers are
/// about to take, the same with `CLIENT PAUSE 3000 WRITE`, and `DEBUG SLEEP 1.5` under
/// a push that the caller retries at once with the same jobs. No job is lost or runs
/// twice, the keys are clean, every planted job starts within one orphan timeout of the
/// fault's end, and each retried push yields exactly one job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t5_unknown_outcomes() {
    let mut env = Env::new("T5", "t5").await;
    let config = short_timeout_config(&env);
    spawn_workers(&mut env, &config, 2);
    env.wait_registered(2).await;
    let expiry = Duration::from_secs(config.heartbeat_s + config.timeout_s);
    let custodian = Duration::from_millis(config.custodian_poll_ms);
    let mut conn = fault_conn(&env).await;
    let planter = LedgerWriter::create(env.dir.path(), "planter").unwrap();
    // Every script in the server's cache first: a call that times out then runs for
    // real, rather than as an EVALSHA answered NOSCRIPT (a no-op, retried by loading).
    env.backend.load_scripts().await.unwrap();
    let producer = short_timeout_producer(&env).await;
    let mut jobs = 0;

    // Takes and acks under DEBUG SLEEP.
    let mut cmd = redis::cmd("DEBUG");
    cmd.arg("SLEEP").arg(3);
    let sleep = Fault {
        name: "sleep",
        cmd,
        len: Duration::from_secs(3),
    };
    let (slept, slept_end) = takes_and_acks_under(&env, &mut conn, &planter, &sleep).await;
    env.faults += 1;
    jobs += RUNNING + slept.len();

    // Takes and acks under CLIENT PAUSE WRITE (scripts wait; reads do not).
    let mut cmd = redis::cmd("CLIENT");
    cmd.arg("PAUSE").arg(3000).arg("WRITE");
    let pause = Fault {
        name: "pause",
        cmd,
        len: Duration::from_secs(3),
    };
    let (paused, paused_end) = takes_and_acks_under(&env, &mut conn, &planter, &pause).await;
    env.faults += 1;
    jobs += RUNNING + paused.len();

    // A push under DEBUG SLEEP, retried at once by the caller with the same jobs.
    let retried: Vec<String> = (0..10).map(|i| format!("retried-{i}")).collect();
    let (doubts, ok, exists) = push_into_sleep(
        &conn,
        &producer,
        &retried,
        Duration::from_millis(1500),
        Duration::from_millis(50),
    )
    .await;
    env.faults += 1;
    jobs += retried.len();

    // No job stays stranded longer than one orphan timeout after the last fault.
    let limit = expiry + 2 * custodian + Duration::from_secs(4);
    let drained = harness::drain(&env.conn().await, &env.queue, limit).await;
    let stderr = env.pool.stderr_all();
    let (poller_failures, processor_failures) = (
        failed_steps(&stderr, "poller"),
        failed_steps(&stderr, "processor"),
    );
    let stranded = if drained.is_err() {
        let mut c = env.conn().await;
        harness::in_flight_sets(&mut c, &env.queue).await.unwrap()
    } else {
        Vec::new()
    };
    let stranded_text: Vec<String> = stranded
        .iter()
        .map(|s| {
            format!(
                "{} (last heartbeat {:?} s ago): {} jobs",
                s.key,
                s.heartbeat_age.map(|a| a.round()),
                s.ids.len()
            )
        })
        .collect();
    let worker_outs: Vec<_> = env.pool.workers.iter().map(|w| w.stdout.clone()).collect();
    env.stop_workers(Duration::from_secs(10));
    let stats: Vec<String> = worker_outs
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|t| t.lines().map(str::to_owned).collect::<Vec<_>>())
        .filter(|l| l.starts_with("STATS "))
        .collect();
    let ledger = LedgerSummary::read_dir(env.dir.path()).unwrap();
    let mut waits = Vec::new();
    for (ids, end) in [(&slept, slept_end), (&paused, paused_end)] {
        for id in ids {
            if let Some(run) = ledger.execs.get(id.as_bytes()).and_then(|r| r.first()) {
                waits.push(run.start.saturating_sub(end));
            }
        }
    }
    let longest = Duration::from_micros(waits.iter().copied().max().unwrap_or(0));
    let twice: Vec<String> = ledger
        .execs
        .iter()
        .filter(|(_, runs)| runs.len() > 1)
        .map(|(id, _)| show(id))
        .collect();
    eprintln!(
        "[T5] planted jobs that ran: {} of {}, at most {:.2} s after their fault ended; push retries in doubt {doubts} (then ok {ok}, exists {exists}); \
         poller step failures {poller_failures}, processor step failures {processor_failures}, acks found not owned {}; stranded in flight {stranded_text:?}",
        waits.len(),
        slept.len() + paused.len(),
        longest.as_secs_f64(),
        stat_sum(&stats, "not_owned")
    );

    // What holds whether or not the queue drained.
    assert!(twice.is_empty(), "[T5] jobs ran twice: {twice:?}");
    assert!(
        doubts >= 1,
        "[T5] the push under DEBUG SLEEP did not time out"
    );
    assert_eq!(
        (ok, exists),
        (0, retried.len()),
        "[T5] the retried push found its jobs already there"
    );
    assert!(processor_failures >= 1, "[T5] no ack timed out:\n{stderr}");
    assert!(poller_failures >= 1, "[T5] no take timed out:\n{stderr}");

    // FINDING (fails on the library as of this writing): jobs moved by a take whose
    // reply timed out stay in the in-flight set of a live consumer, which keeps
    // heartbeating, so no custodian ever requeues them; they are stuck until that
    // consumer dies. Expected: requeued within one orphan timeout.
    if let Err(e) = drained {
        eprintln!(
            "[T5] jobs {jobs}, faults injected {}, lost 0, duplicated 0, dead 0, stranded {}, wall {:.1} s, seed {}",
            env.faults,
            stranded.iter().map(|s| s.ids.len()).sum::<usize>(),
            env.started.elapsed().as_secs_f64(),
            env.seed
        );
        panic!(
            "[T5] {e} (one orphan timeout {expiry:?} + 2 custodian polls + 4 s after the last fault): \
             jobs taken by timed-out takes are stranded in live consumers' in-flight sets: {stranded_text:?}"
        );
    }
    let v = env.check(jobs, &BTreeSet::new(), |_, _| false, false).await;
    assert_eq!(v.executed, jobs);
    assert!(
        longest <= expiry + custodian + Duration::from_secs(2),
        "[T5] a planted job waited {longest:?} after its fault ended (orphan timeout {expiry:?})"
    );
    for id in &retried {
        assert_eq!(
            ledger.execs.get(id.as_bytes()).map_or(0, Vec::len),
            1,
            "[T5] retried push {id} ran once"
        );
    }
}

/// T5 (late retry): a push times out under `DEBUG SLEEP`, the job it did create runs and
/// is acked (by a worker started once the fault is over), and only then does the caller
/// retry the same job (same ID). Deduplication holds while a job is stored (README:
/// "Deduplication while a job is stored"); once acked its ID is free again, so the late
/// retry is a new job that runs once more (and a recurring job may reuse a fixed ID).
/// Nothing is left behind either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t5_push_retried_after_the_job_ran() {
    let mut env = Env::new("T5late", "t5late").await;
    let config = short_timeout_config(&env);
    let conn = fault_conn(&env).await;
    let producer = short_timeout_producer(&env).await;
    env.backend.load_scripts().await.unwrap();

    let sleeper = tokio::spawn({
        let mut conn = conn.clone();
        async move {
            redis::cmd("DEBUG")
                .arg("SLEEP")
                .arg("1.5")
                .query_async::<()>(&mut conn)
                .await
        }
    });
    // Let DEBUG SLEEP reach the server first (ordering only; nothing is timed by it).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let first = producer
        .push(vec![Job::new(Behaviour::Ok.payload()).with_id("late-0")])
        .await
        .unwrap();
    sleeper.await.unwrap().unwrap();
    env.faults += 1;
    assert_eq!(
        first.doubt, 1,
        "[T5late] the push under DEBUG SLEEP timed out"
    );
    // The worker starts after the fault, so that no take of its own is in doubt.
    spawn_workers(&mut env, &config, 1);

    // The push did land: the job runs and is acked before the caller's retry.
    let dir = env.dir.path().to_path_buf();
    harness::wait_for(
        "the first push's job ran",
        Duration::from_secs(15),
        Duration::from_millis(20),
        || {
            let dir = dir.clone();
            async move {
                LedgerSummary::read_dir(&dir).is_ok_and(|l| l.execs.contains_key(&b"late-0"[..]))
            }
        },
    )
    .await
    .unwrap();
    env.drained(0, Duration::from_secs(15)).await;

    let again = producer
        .push(vec![Job::new(Behaviour::Ok.payload()).with_id("late-0")])
        .await
        .unwrap();
    env.drained(0, Duration::from_secs(15)).await;
    env.stop_workers(Duration::from_secs(10));
    let ledger = LedgerSummary::read_dir(env.dir.path()).unwrap();
    let runs = ledger.execs.get(&b"late-0"[..]).map_or(0, Vec::len);
    eprintln!(
        "[T5late] retry after the job ran: {again:?}; runs {runs}, wall {:.1} s, seed {}",
        env.started.elapsed().as_secs_f64(),
        env.seed
    );
    assert_eq!(
        (again.ok, runs),
        (1, 2),
        "[T5late] once acked, the ID is free again: the late retry is a new job, run once more"
    );
    env.check(1, &BTreeSet::new(), |_, _| false, true).await;
}
