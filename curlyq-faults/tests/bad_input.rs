//! T10, bad input: the parts `curlyq/tests` does not cover. Odd job IDs (a non-UTF-8 one
//! included), every queue key holding the wrong Redis type, undecodable data and absurd
//! attempts, `SCRIPT FLUSH` under load, an OOM during pushes, batch options beyond a
//! script's limit.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Env;
use curlyq::backend::{
    ConsumerId, KillJob, OrphanSweep, QueueBackend, QueueName, Registration, RetryJob,
};
use curlyq::{BackendError, Consumer, Job, Producer};
use curlyq_faults::harness::{self, wait_for};
use curlyq_faults::worker::Behaviour;
use curlyq_redis_rs::RedisBackend;
use tokio::sync::oneshot;

const LIMIT: Duration = Duration::from_secs(30);

type Seen = Arc<Mutex<Vec<String>>>;

/// Runs an in-process consumer of `queue` (handler: record the ID, succeed) until the
/// returned sender fires.
fn consume(
    backend: Arc<RedisBackend>,
    queue: &str,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<curlyq::ConsumerStats>,
    Seen,
) {
    let seen: Seen = Arc::default();
    let (tx, rx) = oneshot::channel::<()>();
    let consumer = Consumer::builder(queue)
        .poller_poll_duration(Duration::from_secs(1))
        .build(backend)
        .unwrap();
    let s = seen.clone();
    let join = tokio::spawn(async move {
        consumer
            .run(
                move |job: Job| {
                    s.lock().unwrap().push(job.id);
                    async { Ok::<(), std::io::Error>(()) }
                },
                async move {
                    let _ = rx.await;
                },
            )
            .await
            .unwrap();
        consumer.stats()
    });
    (tx, join, seen)
}

async fn zcard(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> usize {
    redis::cmd("ZCARD")
        .arg(key)
        .query_async(conn)
        .await
        .unwrap()
}

/// IDs with braces, colons, a newline, empty, 1 MiB long run once and are acked; a
/// non-UTF-8 ID (written by a foreign producer) is killed with its reason, its data kept,
/// instead of being run under a mangled ID that can never be acked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_odd_ids() {
    let env = Env::new("T10-ids", "ids").await;
    let producer = Producer::new(env.backend.clone(), "ids").unwrap();
    let long = "L".repeat(1 << 20);
    let ids = [
        "{braces}",
        "a:b:c",
        "{ids}:inflight:x",
        "line\nbreak",
        long.as_str(),
    ];
    for id in ids {
        producer.perform(Job::new("x").with_id(id)).await.unwrap();
    }
    let uuid = producer.perform(Job::new("x").with_id("")).await.unwrap();
    assert_eq!(uuid.len(), 36, "an empty ID is replaced by a UUID");
    // A foreign producer's jobs: an empty ID, and one that is not UTF-8.
    let raw = |id: &[u8]| {
        let mut job = Job::new("raw").encode();
        job.truncate(job.len());
        env.server
            .command_bytes(&[b"HSET", b"ids:data", id, &job])
            .unwrap();
        env.server
            .command_bytes(&[b"RPUSH", b"ids:active", id])
            .unwrap();
    };
    raw(b"");
    raw(b"bad\xff\xfeid");
    let (stop, join, seen) = consume(env.backend.clone(), "ids");
    let mut conn = env.conn().await;
    let c = conn.clone();
    wait_for("all handled", LIMIT, Duration::from_millis(20), || {
        let mut c = c.clone();
        async move { harness::counts(&mut c, "ids").await.unwrap() == (0, 0, 0, 1) }
    })
    .await
    .unwrap();
    let _ = stop.send(());
    let stats = tokio::time::timeout(LIMIT, join).await.unwrap().unwrap();
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    let mut expect: Vec<String> = ids
        .iter()
        .map(|s| s.to_string())
        .chain([uuid, String::new()])
        .collect();
    expect.sort();
    assert_eq!(seen.len(), expect.len());
    assert!(seen == expect, "each ID ran once, unmangled");
    assert_eq!(
        (stats.succeeded, stats.not_owned, stats.killed),
        (7, 0, 0),
        "{stats:?}"
    );
    let reason = env
        .server
        .command_bytes(&[b"HGET", b"ids:dead:reasons", b"bad\xff\xfeid"])
        .unwrap();
    assert!(String::from_utf8_lossy(&reason).contains("not valid UTF-8"));
    let data: usize = redis::cmd("HLEN")
        .arg("ids:data")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(data, 1, "only the dead job's data is left");
    eprintln!(
        "[T10-ids] jobs 9, lost 0, duplicated 0, dead 1 (non-UTF-8 ID), seed {}",
        env.seed
    );
}

/// Every queue key in turn holds the wrong Redis type: every operation that touches it
/// fails with a WRONGTYPE rejection and leaves every key byte-identical (DUMP before and
/// after); a consumer running meanwhile does not crash and drains once the key is fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_wrong_types_leave_redis_byte_identical() {
    let env = Env::new("T10-types", "wt").await;
    let q = QueueName::new("wt").unwrap();
    let b = &env.backend;
    let c = ConsumerId::from_string("c1");
    let dead_consumer = ConsumerId::from_string("gone");
    let job = |id: &str| curlyq::backend::EncodedJob {
        id: id.to_owned(),
        data: Job::new("x").with_id(id).encode(),
    };
    let keys = [
        "data",
        "active",
        "scheduled",
        "dead",
        "consumers",
        "signal",
        "orphaned",
        "dead:reasons",
        "inflight:c1",
        "inflight:gone",
    ];
    let mut conn = env.conn().await;
    for key in keys {
        let _: () = redis::cmd("FLUSHDB").query_async(&mut conn).await.unwrap();
        // A little of everything: active, scheduled, dead, in flight, an expired consumer.
        b.push(&q, &[job("a"), job("b"), job("c"), job("d")])
            .await
            .unwrap();
        b.register(&q, &c, 1e10, Registration::Join).await.unwrap();
        b.register(&q, &dead_consumer, 1.0, Registration::Join)
            .await
            .unwrap();
        b.take(&q, &dead_consumer, 1, 1_700_000_000.0)
            .await
            .unwrap();
        b.take(&q, &c, 2, 1_700_000_000.0).await.unwrap();
        b.kill(
            &q,
            &c,
            &[KillJob {
                id: "b".into(),
                data: None,
                reason: "r".into(),
            }],
            5.0,
        )
        .await
        .unwrap();
        producer_schedule(b, "s").await;
        let full = format!("wt:{key}");
        let saved: Option<Vec<u8>> = redis::cmd("DUMP")
            .arg(&full)
            .query_async(&mut conn)
            .await
            .unwrap();
        let _: () = redis::cmd("DEL")
            .arg(&full)
            .query_async(&mut conn)
            .await
            .unwrap();
        // A string, or a list where a string could be mistaken for absent.
        let _: () = redis::cmd("RPUSH")
            .arg(&full)
            .arg("wrong")
            .query_async(&mut conn)
            .await
            .unwrap();
        if key == "active" || key == "signal" {
            let _: () = redis::cmd("DEL")
                .arg(&full)
                .query_async(&mut conn)
                .await
                .unwrap();
            let _: () = redis::cmd("SET")
                .arg(&full)
                .arg("wrong")
                .query_async(&mut conn)
                .await
                .unwrap();
        }
        let mut rejected = 0;
        for op in 0..OPS {
            let before = dump_all(&mut conn).await;
            let (name, result) = run_op(b, &q, &c, op).await;
            match result {
                Err(BackendError::Rejected(msg)) => {
                    assert!(msg.starts_with("WRONGTYPE"), "{key}/{name}: {msg}");
                    assert_eq!(
                        dump_all(&mut conn).await,
                        before,
                        "{key}/{name} wrote before failing"
                    );
                    rejected += 1;
                }
                Err(e) => panic!("{key}/{name}: {e:?}"),
                Ok(()) => {}
            }
        }
        assert!(rejected > 0, "no operation noticed {key}");
        // Put the key back (dropping what the successful operations changed is fine:
        // the next key starts from this state).
        let _: () = redis::cmd("DEL")
            .arg(&full)
            .query_async(&mut conn)
            .await
            .unwrap();
        if let Some(saved) = saved {
            let _: () = redis::cmd("RESTORE")
                .arg(&full)
                .arg(0)
                .arg(saved)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    }
    // A consumer meeting a wrong-typed active list keeps running, then drains.
    let _: () = redis::cmd("DEL")
        .arg("wt:active")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("wt:active")
        .arg("wrong")
        .query_async(&mut conn)
        .await
        .unwrap();
    let (stop, join, _seen) = consume(env.backend.clone(), "wt");
    tokio::time::sleep(Duration::from_millis(1500)).await; // the fault lasts 1.5 s
    assert!(!join.is_finished(), "the consumer keeps running");
    let _: () = redis::cmd("DEL")
        .arg("wt:active")
        .query_async(&mut conn)
        .await
        .unwrap();
    env.producer
        .push(vec![Job::new("y").with_id("after")])
        .await
        .unwrap();
    let c2 = conn.clone();
    wait_for(
        "drained after the fix",
        LIMIT,
        Duration::from_millis(50),
        || {
            let mut c = c2.clone();
            async move {
                let n: usize = redis::cmd("LLEN")
                    .arg("wt:active")
                    .query_async(&mut c)
                    .await
                    .unwrap();
                let exists: bool = redis::cmd("HEXISTS")
                    .arg("wt:data")
                    .arg("after")
                    .query_async(&mut c)
                    .await
                    .unwrap();
                n == 0 && !exists
            }
        },
    )
    .await
    .unwrap();
    let _ = stop.send(());
    tokio::time::timeout(LIMIT, join).await.unwrap().unwrap();
}

async fn producer_schedule(b: &Arc<RedisBackend>, id: &str) {
    let p = Producer::new(b.clone(), "wt").unwrap();
    p.perform_after(Duration::from_secs(3600), Job::new("later").with_id(id))
        .await
        .unwrap();
}

async fn dump_all(conn: &mut redis::aio::MultiplexedConnection) -> Vec<(String, Option<Vec<u8>>)> {
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("wt:*")
        .query_async(conn)
        .await
        .unwrap();
    keys.sort();
    let mut out = Vec::new();
    for k in keys {
        let d: Option<Vec<u8>> = redis::cmd("DUMP").arg(&k).query_async(conn).await.unwrap();
        out.push((k, d));
    }
    out
}

const OPS: usize = 11;

/// Backend operation number `op`; its result reduced to `Ok(())` or its error.
async fn run_op(
    b: &Arc<RedisBackend>,
    q: &QueueName,
    c: &ConsumerId,
    op: usize,
) -> (&'static str, Result<(), BackendError>) {
    let job = curlyq::backend::EncodedJob {
        id: "n".into(),
        data: Job::new("n").with_id("n").encode(),
    };
    let zz = ["zz".to_owned()];
    match op {
        0 => ("push", b.push(q, &[job]).await.map(drop)),
        1 => {
            let sched = curlyq::backend::ScheduledJob { job, at: 1e10 };
            ("schedule", b.schedule(q, &[sched]).await.map(drop))
        }
        2 => (
            "register",
            b.register(q, c, 1e10, Registration::Heartbeat)
                .await
                .map(drop),
        ),
        3 => ("enqueue_due", b.enqueue_due(q, 1.0, 10).await.map(drop)),
        4 => ("take", b.take(q, c, 1, 1_700_000_000.0).await.map(drop)),
        5 => ("ack", b.ack(q, c, &zz, 0.0).await.map(drop)),
        6 => {
            let r = RetryJob {
                error: None,
                id: "zz".into(),
                at: 1e10,
                data: vec![1],
            };
            ("retry", b.retry(q, c, &[r], 0.0).await.map(drop))
        }
        7 => {
            let k = KillJob {
                id: "zz".into(),
                data: None,
                reason: "r".into(),
            };
            ("kill", b.kill(q, c, &[k], 1.0).await.map(drop))
        }
        8 => ("give_back", b.give_back(q, c, &zz).await.map(drop)),
        9 => {
            let sweep = OrphanSweep {
                expired_before: 2.0,
                max_jobs: 10,
                max_orphan_requeues: 3,
                now: 3.0,
            };
            (
                "requeue_orphans",
                b.requeue_orphans(q, sweep).await.map(drop),
            )
        }
        _ => {
            let trim = curlyq::backend::DeadTrim {
                killed_before: 0.0,
                keep_at_most: 1000,
                max_jobs: 10,
            };
            ("trim_dead", b.trim_dead(q, trim).await.map(drop))
        }
    }
}

/// Undecodable data (empty, truncated, not a map, wrong field types, no ID key) and
/// absurd attempts: each bad job dies with its reason, data kept; an Attempt of
/// u32::MAX is still a valid job and runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_bad_job_data_dies_with_reasons() {
    let env = Env::new("T10-data", "bd").await;
    let attempt = |n: i64| {
        let mut b = Vec::new();
        rmp::encode::write_map_len(&mut b, 3).unwrap();
        rmp::encode::write_str(&mut b, "ID").unwrap();
        rmp::encode::write_str(&mut b, "x").unwrap();
        rmp::encode::write_str(&mut b, "Data").unwrap();
        rmp::encode::write_bin(&mut b, b"d").unwrap();
        rmp::encode::write_str(&mut b, "Attempt").unwrap();
        rmp::encode::write_sint(&mut b, n).unwrap();
        b
    };
    let good = Job::new("g").encode();
    let bad: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "empty"),
        ("truncated", good[..good.len() - 3].to_vec(), "truncated"),
        ("array", vec![0x92, 0x01, 0x02], "not a MessagePack map"),
        ("int", vec![0x05], "not a MessagePack map"),
        ("attempt-2^40", attempt(1 << 40), "out of range"),
        ("attempt-neg", attempt(-5), "out of range"),
        (
            "attempt-str",
            {
                let mut b = attempt(0);
                let n = b.len();
                b.truncate(n - 1);
                rmp::encode::write_str(&mut b, "7").unwrap();
                b
            },
            "expected integer Attempt",
        ),
    ];
    for (id, bytes, _) in &bad {
        env.server
            .command_bytes(&[b"HSET", b"bd:data", id.as_bytes(), bytes])
            .unwrap();
        env.server
            .command_bytes(&[b"RPUSH", b"bd:active", id.as_bytes()])
            .unwrap();
    }
    env.server
        .command_bytes(&[
            b"HSET",
            b"bd:data",
            b"max-attempt",
            &attempt(u32::MAX as i64),
        ])
        .unwrap();
    env.server
        .command_bytes(&[b"RPUSH", b"bd:active", b"max-attempt"])
        .unwrap();
    let (stop, join, seen) = consume(env.backend.clone(), "bd");
    let c = env.conn().await;
    wait_for("bad data dead", LIMIT, Duration::from_millis(20), || {
        let mut c = c.clone();
        async move { harness::counts(&mut c, "bd").await.unwrap() == (0, 0, 0, 7) }
    })
    .await
    .unwrap();
    let _ = stop.send(());
    let stats = tokio::time::timeout(LIMIT, join).await.unwrap().unwrap();
    assert_eq!(seen.lock().unwrap().as_slice(), ["max-attempt"]);
    assert_eq!((stats.succeeded, stats.killed), (1, 7));
    let mut conn = env.conn().await;
    for (id, bytes, why) in &bad {
        let reason: String = redis::cmd("HGET")
            .arg("bd:dead:reasons")
            .arg(id)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(reason.contains(why), "{id}: {reason}");
        let kept: Vec<u8> = redis::cmd("HGET")
            .arg("bd:data")
            .arg(id)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(&kept, bytes, "{id}: bytes kept as stored");
    }
    let _ = zcard(&mut conn, "bd:dead").await;
    eprintln!(
        "[T10-data] jobs 8, dead 7 (each with its reason), seed {}",
        env.seed
    );
}

/// SCRIPT FLUSH every 2 s while 4 workers drain 6,000 jobs: nothing lost, nothing run
/// twice, the keys clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_script_flush_during_load() {
    let mut env = Env::new("T10-flush", "fl").await;
    let mut config = env.config();
    config.jitter_ms = 2;
    config.concurrency = 2;
    for slot in 0..4 {
        env.pool.spawn(slot, &config).unwrap();
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flushes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let flusher = {
        let (stop, flushes) = (stop.clone(), flushes.clone());
        let mut conn = env.conn().await;
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _: () = redis::cmd("SCRIPT")
                    .arg("FLUSH")
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                flushes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(2)).await; // the fault schedule
            }
        })
    };
    env.push_many("fl", 0..6000, Behaviour::Ok, 100).await;
    env.drained(0, Duration::from_secs(90)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flusher.await.unwrap();
    env.faults = flushes.load(std::sync::atomic::Ordering::Relaxed);
    assert!(env.faults >= 2, "the load lasted {} flushes", env.faults);
    env.stop_workers(Duration::from_secs(10));
    let v = env.check(6000, &BTreeSet::new(), |_, _| false, false).await;
    assert_eq!(v.executed, 6000);
}

/// `maxmemory 5mb` during pushes: each push either stored all of its jobs (data and
/// active entry) or none; a refused push is a typed error; nothing is half-written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_oom_during_push_leaves_nothing_half_written() {
    let env = Env::new("T10-oom", "oom").await;
    let mut conn = env.conn().await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("5mb")
        .query_async(&mut conn)
        .await
        .unwrap();
    let producer = Producer::new(env.backend.clone(), "oom").unwrap();
    let payload = vec![7u8; 20_000];
    let mut stored = BTreeSet::new();
    let mut refused = 0;
    for batch in 0..60 {
        let jobs: Vec<Job> = (0..20)
            .map(|i| Job::new(payload.clone()).with_id(format!("{batch}-{i}")))
            .collect();
        match producer.perform_many(jobs).await {
            Ok(results) => {
                for r in results {
                    stored.insert(r.unwrap());
                }
            }
            Err(curlyq::ProduceError::Backend {
                source: BackendError::Rejected(msg),
                ..
            }) => {
                assert!(msg.starts_with("OOM"), "{msg}");
                refused += 1;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(refused > 0, "5 MB filled up");
    let fields: Vec<String> = redis::cmd("HKEYS")
        .arg("oom:data")
        .query_async(&mut conn)
        .await
        .unwrap();
    let active: Vec<String> = redis::cmd("LRANGE")
        .arg("oom:active")
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    let fields: BTreeSet<String> = fields.into_iter().collect();
    let active_set: BTreeSet<String> = active.iter().cloned().collect();
    assert_eq!(active.len(), active_set.len());
    assert_eq!(fields, stored, "exactly the confirmed jobs have data");
    assert_eq!(active_set, stored, "exactly the confirmed jobs are active");
    eprintln!("[T10-oom] batches 60 x 20 jobs, {} stored, {refused} batches refused with OOM, none half-written, seed {}", stored.len(), env.seed);
}

/// Batch options of 7,999, 8,000 and 50,000 (beyond a script call's limit) are refused
/// by the builder, never a panic or a script error later.
#[test]
fn t10_batch_options_beyond_the_script_limit_are_refused() {
    for n in [7_999, 8_000, 50_000] {
        let b = || {
            Consumer::builder("q").runtime(Arc::new(curlyq_testkit::ManualRuntime::new(
                std::time::UNIX_EPOCH,
            )))
        };
        let backend: Arc<dyn QueueBackend> = Arc::new(curlyq_testkit::MemoryBackend::new());
        for (name, builder) in [
            ("custodian_max_jobs", b().custodian_max_jobs(n)),
            ("scheduler_max_jobs", b().scheduler_max_jobs(n)),
            ("poller_buffer_size", b().poller_buffer_size(n)),
        ] {
            match builder.build(backend.clone()) {
                Err(curlyq::ConfigError::TooLarge { option, given, max }) => {
                    assert_eq!((option, given, max), (name, n, 1000));
                }
                other => panic!("{name} = {n}: {other:?}"),
            }
        }
    }
}

/// Regression (found by `t10_script_flush_during_load`): a SCRIPT FLUSH landing between
/// the backend's SCRIPT LOAD and its retried EVALSHA failed the whole operation ("the
/// server lost the script again"). Flushing without pause while pushing: every push lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_back_to_back_script_flushes_never_fail_an_operation() {
    let env = Env::new("T10-flush-race", "race").await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flusher = {
        let stop = stop.clone();
        let mut conn = env.conn().await;
        tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _: () = redis::cmd("SCRIPT")
                    .arg("FLUSH")
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                n += 1;
            }
            n
        })
    };
    let producer = Producer::new(env.backend.clone(), "race").unwrap();
    let mut failures = Vec::new();
    for i in 0..2000 {
        if let Err(e) = producer
            .perform(Job::new("x").with_id(format!("r{i}")))
            .await
        {
            failures.push(e.to_string());
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let flushes = flusher.await.unwrap();
    assert!(
        failures.is_empty(),
        "{} of 2000 pushes failed during {flushes} flushes: {:?}",
        failures.len(),
        failures.first()
    );
    let mut conn = env.conn().await;
    let n: usize = redis::cmd("LLEN")
        .arg("race:active")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 2000);
}
