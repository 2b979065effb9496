//! Network faults through the suite's own TCP proxy (`curlyq_faults::proxy`).
//!
//! - The proxy's own tests (fast, run with `cargo test --workspace`): a PING goes through,
//!   latency shows, a reset closes both sides, a pause or a black hole holds the bytes and
//!   delivers them when it ends.
//! - T6 (soak, `cargo test -p curlyq-faults --release --test soak --test network --
//!   --ignored --test-threads 1 --nocapture`): workers talk to Redis through proxies while the
//!   producer and the checker talk to it directly; under a steady load the proxies reset
//!   every connection every 10 s, black-hole all traffic for 4 s, add 200 ms of latency,
//!   and hold one worker's requests until that worker is reaped.
//! - T6-take (soak, same command): the defect T6 found, alone (a regression test): a take
//!   whose reply does not reach the worker must not leave its job stranded.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::Env;
use curlyq::Job;
use curlyq_faults::checker::{show, Verdict};
use curlyq_faults::harness::{self, wait_for, WorkerProc};
use curlyq_faults::ledger::LedgerSummary;
use curlyq_faults::proxy::{Direction, Proxy};
use curlyq_faults::worker::{published_consumer_id, Behaviour, WorkerConfig};
use curlyq_testkit::RedisServer;
use nix::sys::signal::Signal;
use rand::Rng;
use redis::aio::MultiplexedConnection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ----- the proxy itself -----

/// How long a reply that must not come is waited for.
const SILENCE: Duration = Duration::from_millis(300);
/// The bound on anything that must happen.
const LIMIT: Duration = Duration::from_secs(10);

/// One inline command as RESP.
fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

/// Reads one line-shaped reply (`+PONG`, `:3`, `-ERR ...`), waiting at most `limit`;
/// `None` if nothing complete came in time.
async fn line(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut got = Vec::new();
    let read = async {
        let mut byte = [0u8; 1];
        loop {
            match stream.read(&mut byte).await {
                Ok(1) => {
                    got.push(byte[0]);
                    if got.ends_with(b"\r\n") {
                        return true;
                    }
                }
                _ => return false,
            }
        }
    };
    match tokio::time::timeout(limit, read).await {
        Ok(true) => Some(String::from_utf8_lossy(&got).trim_end().to_owned()),
        _ => None,
    }
}

async fn ask(stream: &mut TcpStream, args: &[&str]) -> Option<String> {
    stream.write_all(&resp(args)).await.ok()?;
    line(stream, LIMIT).await
}

async fn get(conn: &mut MultiplexedConnection, key: &str) -> Option<i64> {
    redis::cmd("GET").arg(key).query_async(conn).await.unwrap()
}

async fn setup() -> (RedisServer, Proxy, MultiplexedConnection) {
    let server = RedisServer::start().expect("redis-server starts");
    let proxy = Proxy::start(server.addr()).await.unwrap();
    let direct = harness::inspect(&server.url()).await.unwrap();
    (server, proxy, direct)
}

/// A PING goes through; with latency a round trip takes at least twice the latency
/// (once per direction) and pipelined replies keep their order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_forwards_and_adds_latency() {
    let (_server, proxy, _direct) = setup().await;
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(ask(&mut c, &["PING"]).await.as_deref(), Some("+PONG"));

    let latency = Duration::from_millis(150);
    proxy.set_latency(latency);
    let started = Instant::now();
    assert_eq!(ask(&mut c, &["PING"]).await.as_deref(), Some("+PONG"));
    let took = started.elapsed();
    assert!(took >= 2 * latency, "a round trip took {took:?}");

    // Separate writes, each its own chunk, each delayed: the replies stay in order.
    proxy.set_latency(Duration::from_millis(20));
    for _ in 0..20 {
        c.write_all(&resp(&["INCR", "n"])).await.unwrap();
    }
    for i in 1..=20 {
        assert_eq!(line(&mut c, LIMIT).await, Some(format!(":{i}")));
    }
    proxy.set_latency(Duration::ZERO);
    assert_eq!(ask(&mut c, &["PING"]).await.as_deref(), Some("+PONG"));
    let s = proxy.stats();
    assert_eq!((s.accepted, s.live, s.reset), (1, 1, 0), "{s:?}");
}

/// `reset_all` closes both sides abruptly (the client reads a reset, the server drops
/// its client); a new connection works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_reset_closes_both_sides() {
    let (_server, proxy, mut direct) = setup().await;
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(
        ask(&mut c, &["CLIENT", "SETNAME", "through"])
            .await
            .as_deref(),
        Some("+OK")
    );
    assert_eq!(proxy.reset_all(), 1);
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(LIMIT, c.read(&mut byte))
        .await
        .unwrap();
    assert_eq!(
        read.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionReset),
        "the client sees a reset, not an end of stream"
    );
    wait_for(
        "the server drops its side",
        LIMIT,
        Duration::from_millis(20),
        || {
            let mut direct = direct.clone();
            async move {
                let list: String = redis::cmd("CLIENT")
                    .arg("LIST")
                    .query_async(&mut direct)
                    .await
                    .unwrap();
                !list.contains("name=through")
            }
        },
    )
    .await
    .unwrap();
    let mut d = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(ask(&mut d, &["PING"]).await.as_deref(), Some("+PONG"));
    assert_eq!(get(&mut direct, "absent").await, None);
    let s = proxy.stats();
    assert_eq!((s.accepted, s.live, s.reset), (2, 1, 1), "{s:?}");
}

/// A pause of one direction holds its bytes (the other direction flows) and delivers them
/// when it resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_pause_holds_then_releases() {
    let (_server, proxy, mut direct) = setup().await;
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(ask(&mut c, &["PING"]).await.as_deref(), Some("+PONG"));

    // Requests held: the server never sees the INCR, so no reply either.
    proxy.pause(Direction::ClientToServer, true);
    c.write_all(&resp(&["INCR", "k"])).await.unwrap();
    assert_eq!(line(&mut c, SILENCE).await, None);
    assert_eq!(get(&mut direct, "k").await, None);
    proxy.pause(Direction::ClientToServer, false);
    assert_eq!(line(&mut c, LIMIT).await.as_deref(), Some(":1"));

    // Replies held: the server runs the INCR, the client hears nothing until resumed.
    proxy.pause(Direction::ServerToClient, true);
    c.write_all(&resp(&["INCR", "k"])).await.unwrap();
    wait_for(
        "the server runs it",
        LIMIT,
        Duration::from_millis(20),
        || {
            let mut direct = direct.clone();
            async move { get(&mut direct, "k").await == Some(2) }
        },
    )
    .await
    .unwrap();
    assert_eq!(line(&mut c, SILENCE).await, None);
    proxy.pause(Direction::ServerToClient, false);
    assert_eq!(line(&mut c, LIMIT).await.as_deref(), Some(":2"));
}

/// A black hole accepts and keeps connections but forwards nothing either way; when it
/// ends, the held bytes go through in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_blackhole_holds_everything() {
    let (_server, proxy, mut direct) = setup().await;
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(ask(&mut c, &["PING"]).await.as_deref(), Some("+PONG"));
    proxy.set_blackhole(true);
    c.write_all(&resp(&["INCR", "k"])).await.unwrap();
    let mut d = TcpStream::connect(proxy.addr()).await.unwrap();
    d.write_all(&resp(&["INCR", "k"])).await.unwrap();
    assert_eq!(line(&mut c, SILENCE).await, None);
    assert_eq!(line(&mut d, SILENCE).await, None);
    assert_eq!(get(&mut direct, "k").await, None);
    assert_eq!(proxy.stats().live, 2, "connections are kept");
    proxy.set_blackhole(false);
    let mut replies = vec![
        line(&mut c, LIMIT).await.unwrap(),
        line(&mut d, LIMIT).await.unwrap(),
    ];
    replies.sort();
    assert_eq!(replies, [":1", ":2"]);
    assert_eq!(ask(&mut c, &["PING"]).await.as_deref(), Some("+PONG"));
}

// ----- T6 -----

/// The slot of the worker with a proxy of its own (the one that gets reaped).
const LONE: usize = 9;
/// Shared-proxy workers.
const SHARED: usize = 3;
/// `ok` jobs pushed per 250 ms tick (160 jobs/s).
const PER_TICK: usize = 40;

/// What a stopped worker left: its exit and its `STATS` counters.
#[derive(Debug)]
struct Stopped {
    slot: usize,
    pid: u32,
    exit: Result<Option<i32>, String>,
    stats: BTreeMap<String, u64>,
}

/// SIGTERMs `w` and waits (off the runtime: the proxies must keep forwarding while it
/// shuts down) at most `limit`.
async fn stop(mut w: WorkerProc, limit: Duration) -> Stopped {
    w.signal(Signal::SIGTERM);
    tokio::task::spawn_blocking(move || {
        let exit = w.wait(limit);
        let stats = w
            .stats_line()
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                Some((k.to_owned(), v.parse().ok()?))
            })
            .collect();
        Stopped {
            slot: w.slot,
            pid: w.pid(),
            exit,
            stats,
        }
    })
    .await
    .unwrap()
}

async fn consumers(conn: &mut MultiplexedConnection, queue: &str) -> BTreeMap<String, f64> {
    let flat: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(format!("{queue}:consumers"))
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(conn)
        .await
        .unwrap();
    flat.into_iter().collect()
}

async fn members(conn: &mut MultiplexedConnection, key: &str) -> BTreeSet<Vec<u8>> {
    redis::cmd("SMEMBERS")
        .arg(key)
        .query_async(conn)
        .await
        .unwrap()
}

/// Every non-empty in-flight set, with its owner's heartbeat age, for a failure message.
async fn inflight_report(conn: &mut MultiplexedConnection, queue: &str) -> String {
    let sets = harness::in_flight_sets(conn, queue).await.unwrap();
    let mut out = String::new();
    for set in sets.iter().filter(|s| !s.ids.is_empty()) {
        let owner = match set.heartbeat_age {
            Some(age) => format!("registered, last heartbeat {age:.1} s ago"),
            None => "not registered".to_owned(),
        };
        let sample: Vec<String> = set.ids.iter().take(12).map(|id| show(id)).collect();
        out.push_str(&format!(
            "\n  {} ({owner}): {} jobs, e.g. {sample:?}",
            set.key,
            set.ids.len()
        ));
    }
    out
}

/// Where a timed fault stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Before,
    On,
    Done,
}

/// Where the lone worker's pause stands.
enum Pause {
    /// Not yet (from this instant on, once it holds jobs).
    Waiting(Instant),
    /// Requests held since then; its jobs are read 2 s later.
    Held(Instant),
    /// Held since then, and holding jobs; released once it is reaped.
    Holding(Instant),
    /// Reaped at this instant; released a moment later.
    Reaped(Instant),
    /// Released then; the load goes on for a while.
    Resumed(Instant),
}

/// T6: 3 workers through a shared proxy and 1 through a proxy of its own, a steady load
/// (160 `ok` jobs/s and 4 one-second jobs/s) pushed directly. Every connection through
/// the proxies is reset every 10 s throughout; in sequence, a 4 s black hole (both
/// proxies), 8 s of +200 ms latency each way (both proxies), then the lone worker's
/// requests are held (its replies still flow) until its heartbeat has expired and a
/// custodian reaped it, then released. The workers' response timeout (2 s) is shorter
/// than the black hole, so requests time out and arrive late.
///
/// Nothing is lost and no worker exits; only jobs the reaped worker held run twice; its
/// late outcomes are refused as not owned (so it never acked into another consumer's
/// in-flight set: the audit is clean and every job ran); it rejoins under a fresh ID; no
/// other worker was reaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: run with --ignored"]
async fn t6_network() {
    let mut env = Env::new("T6", "t6").await;
    let queue = env.queue.clone();
    let shared = Proxy::start(env.server.addr()).await.unwrap();
    let lone = Proxy::start(env.server.addr()).await.unwrap();
    let mut base = env.config();
    base.response_timeout_ms = 2000;
    base.poll_ms = 1000;
    let via_shared = WorkerConfig {
        url: shared.redis_url(),
        ..base.clone()
    };
    let via_lone = WorkerConfig {
        url: lone.redis_url(),
        ..base.clone()
    };
    let mut conn = env.conn().await;

    // Start the shared workers, then the lone one, to learn its consumer ID.
    for slot in 0..SHARED {
        env.pool.spawn(slot, &via_shared).unwrap();
    }
    let watcher = conn.clone();
    let count = |n: usize| {
        let conn = watcher.clone();
        let queue = queue.clone();
        move || {
            let mut conn = conn.clone();
            let queue = queue.clone();
            async move { consumers(&mut conn, &queue).await.len() == n }
        }
    };
    wait_for(
        "the shared workers join",
        LIMIT,
        Duration::from_millis(50),
        count(SHARED),
    )
    .await
    .unwrap();
    let before = consumers(&mut conn, &queue).await;
    let lone_pid = env.pool.spawn(LONE, &via_lone).unwrap();
    wait_for(
        "the lone worker joins",
        LIMIT,
        Duration::from_millis(50),
        count(SHARED + 1),
    )
    .await
    .unwrap();
    let joined = consumers(&mut conn, &queue)
        .await
        .into_keys()
        .find(|k| !before.contains_key(k))
        .unwrap();
    // The lone worker's in-flight key: the one it joined under, then whatever ID it
    // publishes (a take whose reply a fault lost makes it continue under a fresh ID).
    let dir = env.dir.path().to_path_buf();
    let lone_key_now = |fallback: &str| {
        published_consumer_id(&dir, lone_pid)
            .map(|id| format!("{queue}:inflight:{id}"))
            .unwrap_or_else(|| fallback.to_owned())
    };
    let mut lone_key = lone_key_now(&joined);
    let mut moved_on = false;

    // The schedule, seeded. Each fault is logged with the next job number, so that a job
    // ID in a failure message tells which fault it was pushed under.
    let reset_phase = Duration::from_millis(env.rng.random_range(1000..9000));
    let hole_at = Duration::from_millis(env.rng.random_range(2000..4000));
    let hole_end = hole_at + Duration::from_secs(4);
    let slow_at = hole_end + Duration::from_millis(env.rng.random_range(1000..3000));
    let slow_end = slow_at + Duration::from_secs(8);
    let pause_from = slow_end + Duration::from_millis(env.rng.random_range(1000..3000));
    let start = Instant::now();
    let log = |what: &str, next: usize| {
        eprintln!(
            "[T6] {:6.2} s, next job t6-{next}: {what}",
            start.elapsed().as_secs_f64()
        )
    };
    let mut next_reset = start + reset_phase;
    let (mut resets, mut hole, mut slow) = (0, Stage::Before, Stage::Before);
    let mut pause = Pause::Waiting(start + pause_from);
    let (mut pause_tries, mut held, mut paused_for) = (0, BTreeSet::new(), Duration::ZERO);
    let mut next = 0;
    loop {
        let jobs: Vec<Job> = (next..next + PER_TICK + 1)
            .map(|i| {
                let b = if i % (PER_TICK + 1) == 0 {
                    Behaviour::Sleep(1000)
                } else {
                    Behaviour::Ok
                };
                Job::new(b.payload()).with_id(format!("t6-{i}"))
            })
            .collect();
        let c = env.producer.push(jobs).await.unwrap();
        assert_eq!(c.ok, PER_TICK + 1, "{c:?}");
        next += PER_TICK + 1;

        let exited = env.pool.reap_exited();
        assert!(
            exited.is_empty(),
            "[T6] workers (slot, pid) {exited:?} exited during the faults\n{}",
            env.pool.stderr_tail(6000)
        );
        let now = Instant::now();
        let t = now - start;
        let lone_paused = matches!(pause, Pause::Held(_) | Pause::Holding(_) | Pause::Reaped(_));
        if now >= next_reset {
            let mut open = shared.reset_all();
            env.faults += 1;
            if !lone_paused {
                open += lone.reset_all();
                env.faults += 1;
            }
            log(&format!("reset ({open} connections)"), next);
            resets += 1;
            next_reset += Duration::from_secs(10);
        }
        if hole == Stage::Before && t >= hole_at {
            shared.set_blackhole(true);
            lone.set_blackhole(true);
            env.faults += 1;
            log("black hole", next);
            hole = Stage::On;
        }
        if hole == Stage::On && t >= hole_end {
            shared.set_blackhole(false);
            lone.set_blackhole(false);
            log("black hole ends", next);
            hole = Stage::Done;
        }
        if slow == Stage::Before && t >= slow_at {
            shared.set_latency(Duration::from_millis(200));
            lone.set_latency(Duration::from_millis(200));
            env.faults += 1;
            log("latency +200 ms each way", next);
            slow = Stage::On;
        }
        if slow == Stage::On && t >= slow_end {
            shared.set_latency(Duration::ZERO);
            lone.set_latency(Duration::ZERO);
            log("latency ends", next);
            slow = Stage::Done;
        }
        match pause {
            Pause::Waiting(from) if now >= from => {
                lone_key = lone_key_now(&lone_key);
                let n: usize = redis::cmd("SCARD")
                    .arg(&lone_key)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                if n > 0 {
                    lone.pause(Direction::ClientToServer, true);
                    env.faults += 1;
                    log("lone worker's requests held", next);
                    pause = Pause::Held(now);
                }
            }
            Pause::Held(since) if now - since >= Duration::from_secs(2) => {
                // Every request sent before the pause has long been served: the set
                // can only shrink through the custodian now.
                assert!(
                    consumers(&mut conn, &queue).await.contains_key(&lone_key),
                    "[T6] the lone worker was reaped within 2 s of its pause"
                );
                held = members(&mut conn, &lone_key).await;
                if held.is_empty() {
                    // It finished everything before the pause hit: try again.
                    lone.pause(Direction::ClientToServer, false);
                    pause_tries += 1;
                    log("lone worker held no jobs; released, will retry", next);
                    assert!(pause_tries < 5, "[T6] the lone worker never held jobs");
                    pause = Pause::Waiting(now + Duration::from_secs(1));
                } else {
                    pause = Pause::Holding(since);
                }
            }
            Pause::Holding(since) => {
                if !consumers(&mut conn, &queue).await.contains_key(&lone_key) {
                    log("lone worker reaped", next);
                    paused_for = now - since;
                    pause = Pause::Reaped(now);
                } else {
                    assert!(
                        now - since < Duration::from_secs(40),
                        "[T6] the lone worker was not reaped within 40 s of silence"
                    );
                }
            }
            Pause::Reaped(at) if now - at >= Duration::from_secs(1) => {
                lone.pause(Direction::ClientToServer, false);
                log("lone worker's requests released", next);
                paused_for += now - at;
                pause = Pause::Resumed(now);
            }
            Pause::Resumed(at) => {
                // Reaped, it must go on under a fresh consumer ID (a rejoin, or a move
                // after a take whose reply the pause held).
                if lone_key_now(&lone_key) != lone_key {
                    moved_on = true;
                }
                if now - at >= Duration::from_secs(8) {
                    break;
                }
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(250)).await; // the load's schedule
    }
    log("load ends", next);
    shared.heal();
    lone.heal();
    eprintln!(
        "[T6] {resets} reset rounds; lone worker paused {paused_for:.1?} ({pause_tries} retries) \
         holding {} jobs",
        held.len()
    );

    // Drain, then stop the lone worker (it finishes its late outcomes first), then the rest.
    let drained = wait_for(
        "drain",
        Duration::from_secs(45),
        Duration::from_millis(100),
        || {
            let mut conn = conn.clone();
            let queue = queue.clone();
            async move {
                let (a, s, i, _) = harness::counts(&mut conn, &queue).await.unwrap();
                a == 0 && s == 0 && i == 0
            }
        },
    )
    .await;
    let stranded = match &drained {
        Ok(_) => String::new(),
        Err(e) => {
            let counts = harness::counts(&mut conn, &queue).await;
            let report = inflight_report(&mut conn, &queue).await;
            eprintln!(
                "[T6] {e}: (active, scheduled, in flight, dead) = {counts:?}{report}\n{}",
                env.pool.stderr_tail(8000)
            );
            format!("{e}: {counts:?}{report}")
        }
    };
    let mut stopped = Vec::new();
    while let Some(w) = env.pool.workers.pop() {
        let limit = Duration::from_secs(if w.slot == LONE { 45 } else { 20 });
        stopped.push(stop(w, limit).await);
    }
    for s in &stopped {
        eprintln!(
            "[T6] worker slot {} pid {}: exit {:?}, {:?}",
            s.slot, s.pid, s.exit, s.stats
        );
    }
    eprintln!("[T6] shared proxy {:?}", shared.stats());
    eprintln!("[T6] lone proxy {:?}", lone.stats());

    // Every property is checked and reported before the first assertion, so that one
    // failure does not hide the others.
    let ledger = LedgerSummary::read_dir(env.dir.path()).unwrap();
    let verdict = Verdict::of(&ledger, &BTreeSet::new());
    let mut problems = Vec::new();
    if !stranded.is_empty() {
        problems.push(stranded);
    }
    for s in stopped.iter().filter(|s| s.exit != Ok(Some(0))) {
        problems.push(format!("worker {} exit {:?}", s.pid, s.exit));
    }
    if verdict.executed != next {
        problems.push(format!("{} of {next} jobs ran", verdict.executed));
    }
    for (id, runs) in &verdict.duplicated {
        if !(held.contains(id) && runs.len() == 2 && runs.iter().any(|r| r.pid == lone_pid)) {
            problems.push(format!(
                "duplicate {} is not a job the reaped worker held: {runs:?}",
                show(id)
            ));
        }
    }
    let stat = |s: &Stopped, k: &str| s.stats.get(k).copied().unwrap_or(0);
    let reaped = stopped.iter().find(|s| s.slot == LONE).unwrap();
    if !moved_on {
        problems.push(format!(
            "the reaped worker did not go on under a fresh consumer ID: {:?}",
            reaped.stats
        ));
    }
    if stat(reaped, "not_owned") < 1 {
        problems.push(format!(
            "the reaped worker's late outcomes were not refused as not owned: {:?}",
            reaped.stats
        ));
    }
    let others: Vec<&Stopped> = stopped.iter().filter(|s| s.slot != LONE).collect();
    for s in others.iter().filter(|s| stat(s, "rejoined") > 0) {
        problems.push(format!(
            "worker {} (shared proxy) was reaped: {:?}",
            s.pid, s.stats
        ));
    }
    eprintln!(
        "[T6] reaped worker: held {} jobs, {} ran twice, rejoined {}, \
         outcomes refused as not owned {}; shared workers: rejoined {:?}, not owned {:?}",
        held.len(),
        verdict.duplicated.len(),
        stat(reaped, "rejoined"),
        stat(reaped, "not_owned"),
        others
            .iter()
            .map(|s| stat(s, "rejoined"))
            .collect::<Vec<_>>(),
        others
            .iter()
            .map(|s| stat(s, "not_owned"))
            .collect::<Vec<_>>(),
    );
    for p in &problems {
        eprintln!("[T6] problem: {p}");
    }
    env.check(next, &BTreeSet::new(), |_, _| false, true).await;
    assert!(problems.is_empty(), "[T6] {problems:#?}");
}

/// T6, the take alone: one worker behind the proxy. Its replies are held (its requests
/// still run) while one job is pushed, so the take that moves the job into the worker's
/// in-flight set fails on the worker's side (response timeout); then the replies flow
/// again. The job must still run: at the latest once a consumer expiry (heartbeat
/// interval + consumer timeout) and a custodian poll have passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: run with --ignored"]
async fn t6_take_reply_lost() {
    let mut env = Env::new("T6-take", "t6take").await;
    let queue = env.queue.clone();
    let proxy = Proxy::start(env.server.addr()).await.unwrap();
    let config = WorkerConfig {
        url: proxy.redis_url(),
        response_timeout_ms: 1000,
        ..env.config()
    };
    env.pool.spawn(0, &config).unwrap();
    let conn = env.conn().await;
    wait_for("the worker joins", LIMIT, Duration::from_millis(50), || {
        let mut conn = conn.clone();
        let queue = queue.clone();
        async move { consumers(&mut conn, &queue).await.len() == 1 }
    })
    .await
    .unwrap();

    proxy.pause(Direction::ServerToClient, true);
    env.faults += 1;
    env.push_many("t6take", 0..1, Behaviour::Ok, 1).await;
    // A take runs (under whichever consumer ID the worker has by then: a take of its own
    // whose reply was held before the push already made it move to a fresh ID).
    wait_for("the take runs", LIMIT, Duration::from_millis(20), || {
        let mut conn = conn.clone();
        let queue = queue.clone();
        async move {
            harness::counts(&mut conn, &queue)
                .await
                .is_ok_and(|c| c.2 == 1)
        }
    })
    .await
    .unwrap();
    // The fault's length: past the worker's response timeout, so its take fails.
    tokio::time::sleep(2 * Duration::from_millis(config.response_timeout_ms)).await;
    proxy.pause(Direction::ServerToClient, false);

    let expiry = Duration::from_secs(config.heartbeat_s + config.timeout_s);
    let limit = expiry + Duration::from_millis(config.custodian_poll_ms) + LIMIT;
    let drained = wait_for("the job runs", limit, Duration::from_millis(100), || {
        let mut conn = conn.clone();
        let queue = queue.clone();
        async move { harness::counts(&mut conn, &queue).await.unwrap() == (0, 0, 0, 0) }
    })
    .await;
    if let Err(e) = drained {
        let report = inflight_report(&mut conn.clone(), &queue).await;
        panic!(
            "[T6-take] {e}: a job whose take reply was lost stays in the in-flight set of a \
             live consumer that never saw it{report}\n{}",
            env.pool.stderr_tail(4000)
        );
    }
    let w = env.pool.workers.pop().unwrap();
    let stopped = stop(w, LIMIT).await;
    assert_eq!(stopped.exit, Ok(Some(0)), "{}", env.pool.stderr_tail(4000));
    env.check(1, &BTreeSet::new(), |_, _| false, false).await;
}
