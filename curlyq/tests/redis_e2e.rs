//! End to end on a real redis-server that each test starts on a free loopback port:
//! producer, consumer and the redis-rs backend together, and a queue left by Go CurlyQ.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use common::{reporting, start, unix};
use curlyq::backend::QueueBackend;
use curlyq::{BackendError, ConsumeError, Consumer, Job, LoopName, Producer};
use curlyq_testkit::RedisServer;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(30);

fn clock() -> Arc<dyn curlyq::runtime::Runtime> {
    Arc::new(curlyq::runtime::TokioRuntime)
}

async fn backend(server: &RedisServer) -> Arc<dyn QueueBackend> {
    curlyq::connect(&server.url()).await.expect("connects")
}

fn cmd(server: &RedisServer, args: &[&str]) -> String {
    server.command(args).expect("redis command")
}

/// Stops the consumer and checks that its run ended without an error.
async fn stop_cleanly(mut running: common::Running) {
    running.stop();
    timeout(LIMIT, running.join)
        .await
        .expect("the consumer stops in time")
        .expect("its task did not panic")
        .expect("its run ended without an error");
}

/// Checks that a job due at `due` (Unix seconds) started at `at`, within `bound` seconds.
fn assert_started_on_time(at: SystemTime, due: f64, bound: f64) {
    let lateness = unix(at) - due;
    assert!(
        (0.0..bound).contains(&lateness),
        "started {lateness:.3}s after its due time (bound {bound}s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produces_and_consumes_every_job_exactly_once() {
    let server = RedisServer::start().unwrap();
    let backend = backend(&server).await;
    let producer = Producer::new(backend.clone(), "e2e").unwrap();
    let batch: Vec<Job> = (0..100).map(|i| Job::new(format!("bulk {i}"))).collect();
    for r in producer.perform_many(batch).await.unwrap() {
        r.unwrap();
    }
    for i in 0..100 {
        producer
            .perform(Job::new(format!("one {i}")))
            .await
            .unwrap();
    }
    let counts = Arc::new(Mutex::new(BTreeMap::<String, u32>::new()));
    let consumer = Consumer::builder("e2e")
        .concurrency(8)
        .build(backend)
        .unwrap();
    let c = counts.clone();
    let (handler, mut rx) = reporting(clock(), move |job: Job| {
        *c.lock().unwrap().entry(job.id).or_default() += 1;
        common::ok()
    });
    let running = start(consumer, handler);
    for _ in 0..200 {
        timeout(LIMIT, rx.recv()).await.expect("jobs keep coming");
    }
    stop_cleanly(running).await;
    let counts = counts.lock().unwrap();
    assert_eq!(counts.len(), 200);
    assert!(counts.values().all(|&n| n == 1), "each job ran once");
    assert_eq!(cmd(&server, &["HLEN", "e2e:data"]), ":0\r\n");
    assert_eq!(cmd(&server, &["ZCARD", "e2e:consumers"]), ":0\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drains_a_queue_left_by_go_curlyq_as_the_wire_contract_says() {
    let server = RedisServer::start().unwrap();
    server
        .load_dump(include_str!("go-queue-fixture.json"))
        .unwrap();
    let backend = backend(&server).await;
    let runs = Arc::new(Mutex::new(Vec::<(String, u32)>::new()));
    let r = runs.clone();
    let consumer = Consumer::builder("goq").build(backend).unwrap();
    let (handler, mut rx) = reporting(clock(), move |job: Job| {
        r.lock().unwrap().push((job.id, job.attempt));
        common::ok()
    });
    let running = start(consumer, handler);
    for _ in 0..7 {
        timeout(LIMIT, rx.recv()).await.expect("all seven jobs run");
    }
    // Let the last acks land, then stop.
    for _ in 0..200 {
        if cmd(&server, &["HLEN", "goq:data"]) == ":3\r\n" {
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop_cleanly(running).await;

    let mut runs = runs.lock().unwrap().clone();
    runs.sort();
    let expect: Vec<(String, u32)> = ["go-a2", "go-a3", "go-a4", "go-a5", "go-a6", "go-d1"]
        .iter()
        .map(|id| (id.to_string(), 0))
        .chain([("go-r1".to_string(), 1)])
        .collect();
    let mut expect = expect;
    expect.sort();
    assert_eq!(
        runs, expect,
        "each job ran exactly once, go-r1 with Attempt 1"
    );
    assert_eq!(
        cmd(&server, &["HKEYS", "goq:data"])
            .lines()
            .filter(|l| l.starts_with("go-"))
            .collect::<std::collections::BTreeSet<_>>(),
        ["go-k1", "go-s1", "go-s2"].into_iter().collect()
    );
    assert_eq!(cmd(&server, &["ZCARD", "goq:consumers"]), ":0\r\n");
    assert!(cmd(&server, &["ZRANGE", "goq:dead", "0", "-1"]).contains("go-k1"));
    let scheduled = cmd(&server, &["ZRANGE", "goq:scheduled", "0", "-1"]);
    assert!(scheduled.contains("go-s1") && scheduled.contains("go-s2"));
    let k1 = server
        .command_bytes(&[b"HGET", b"goq:data", b"go-k1"])
        .unwrap();
    let body = &k1[k1.iter().position(|&b| b == b'\n').unwrap() + 1..k1.len() - 2];
    assert_eq!(
        Job::decode(body).unwrap().attempt,
        2,
        "the dead job is untouched"
    );
    assert_eq!(cmd(&server, &["EXISTS", "goq:orphaned"]), ":0\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_is_a_clear_error_at_connect_and_at_startup() {
    let mut server = RedisServer::start().unwrap();
    let url = server.url();
    let backend = backend(&server).await;
    server.stop();
    let started = std::time::Instant::now();
    let err = match timeout(LIMIT, curlyq::connect(&url)).await.unwrap() {
        Err(e) => e,
        Ok(_) => panic!("connected to a stopped server"),
    };
    assert!(matches!(err, BackendError::Unavailable(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(15));
    let consumer = Consumer::builder("q").build(backend).unwrap();
    let err = timeout(
        LIMIT,
        consumer.run(|_: Job| common::ok(), std::future::pending()),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert!(matches!(err, ConsumeError::Startup(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_aborts_after_its_max_attempts_when_redis_stops_mid_run() {
    let mut server = RedisServer::start().unwrap();
    let backend = backend(&server).await;
    let producer = Producer::new(backend.clone(), "abort").unwrap();
    producer.perform(Job::new("warm-up")).await.unwrap();
    let consumer = Consumer::builder("abort")
        .poller_max_attempts(2)
        .poller_max_backoff(Duration::from_millis(200))
        .poller_poll_duration(Duration::from_secs(1))
        .shutdown_grace_period(Duration::from_secs(2))
        .build(backend)
        .unwrap();
    let (handler, mut rx) = reporting(clock(), |_| common::ok());
    let running = start(consumer, handler);
    timeout(LIMIT, rx.recv()).await.expect("running");
    server.stop();
    let err = timeout(Duration::from_secs(60), running.join)
        .await
        .expect("the consumer gives up")
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(
            err,
            ConsumeError::LoopAborted {
                name: LoopName::Poller,
                attempts: 2,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_job_starts_within_50ms_of_its_time_on_an_idle_consumer() {
    let server = RedisServer::start().unwrap();
    let backend = backend(&server).await;
    let producer = Producer::new(backend.clone(), "sched").unwrap();
    producer.perform(Job::new("warm-up")).await.unwrap();
    let consumer = Consumer::builder("sched").build(backend).unwrap();
    let (handler, mut rx) = reporting(clock(), |_| common::ok());
    let running = start(consumer, handler);
    timeout(LIMIT, rx.recv())
        .await
        .expect("idle consumer running");
    let due = unix(SystemTime::now()) + 1.5;
    producer
        .perform_at_unix(due, Job::new("on time"))
        .await
        .unwrap();
    let ev = timeout(LIMIT, rx.recv()).await.unwrap().unwrap();
    assert_started_on_time(ev.at, due, 0.05);
    stop_cleanly(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_data_in_redis_goes_to_the_dead_set_and_good_jobs_run() {
    let server = RedisServer::start().unwrap();
    let backend = backend(&server).await;
    let producer = Producer::new(backend.clone(), "bad").unwrap();
    let good = producer.perform(Job::new("good")).await.unwrap();
    server
        .command_bytes(&[b"HSET", b"bad:data", b"poison", b"\xc1\x00junk"])
        .unwrap();
    cmd(&server, &["RPUSH", "bad:active", "poison", "ghost"]);
    let good2 = producer.perform(Job::new("good too")).await.unwrap();
    let consumer = Consumer::builder("bad").build(backend).unwrap();
    let (handler, mut rx) = reporting(clock(), |_| common::ok());
    let running = start(consumer, handler);
    let mut seen = vec![
        timeout(LIMIT, rx.recv()).await.unwrap().unwrap().id,
        timeout(LIMIT, rx.recv()).await.unwrap().unwrap().id,
    ];
    seen.sort();
    let mut expect = vec![good, good2];
    expect.sort();
    assert_eq!(seen, expect);
    for _ in 0..500 {
        if cmd(&server, &["ZCARD", "bad:dead"]) == ":2\r\n" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(cmd(&server, &["ZCARD", "bad:dead"]), ":2\r\n");
    assert!(cmd(&server, &["HGET", "bad:dead:reasons", "poison"]).contains("undecodable"));
    assert!(cmd(&server, &["HGET", "bad:dead:reasons", "ghost"]).contains("missing"));
    let raw = server
        .command_bytes(&[b"HGET", b"bad:data", b"poison"])
        .unwrap();
    assert!(raw.ends_with(b"\xc1\x00junk\r\n"), "raw bytes kept");
    stop_cleanly(running).await;
}

/// A job as Go CurlyQ's producer stores it: `Data` is what Go's `json.Marshal` wrote for
/// a struct, the job encoded as Go's msgpack v4 writes it (`Attempt` as a full int64),
/// pushed the way Go's push script does (data field, active list, signal). A typed Rust
/// handler gets the struct: Go's HTML escapes (`\u003c`, `\u0026`) and its `null` for a
/// nil slice included.
/// Go CurlyQ's producer schedules with a whole-second score and sets no signal. An idle
/// consumer sees such a job at its next take (one poll duration at most, 1 s here) and
/// starts it at its due time, not at the scheduler's next poll (5 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_scheduled_the_go_way_starts_on_time_on_an_idle_consumer() {
    let server = RedisServer::start().unwrap();
    let backend = backend(&server).await;
    Producer::new(backend.clone(), "gosched")
        .unwrap()
        .perform(Job::new("warm-up"))
        .await
        .unwrap();
    let consumer = Consumer::builder("gosched")
        .poller_poll_duration(Duration::from_secs(1))
        .build(backend)
        .unwrap();
    let (handler, mut rx) = reporting(clock(), |_| common::ok());
    let running = start(consumer, handler);
    timeout(LIMIT, rx.recv())
        .await
        .expect("idle consumer running");
    // Due in 2 to 3 s, on a whole second: after the consumer's next take.
    let due = (unix(SystemTime::now()) + 2.0).ceil();
    let stored = Job::new("scheduled by Go").with_id("go-1").encode();
    server
        .command_bytes(&[b"HSET", b"gosched:data", b"go-1", &stored])
        .unwrap();
    cmd(
        &server,
        &["ZADD", "gosched:scheduled", &format!("{due}"), "go-1"],
    );
    let ev = timeout(LIMIT, rx.recv()).await.unwrap().unwrap();
    assert_eq!(ev.id, "go-1");
    assert_started_on_time(ev.at, due, 0.1);
    stop_cleanly(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_handler_reads_a_go_producers_json_payload() {
    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Email {
        to: String,
        subject: String,
        tags: Option<Vec<String>>,
        retries: u32,
    }

    // json.Marshal(Email{To: "ada@example.com", Subject: "Hello <Ada> & co", Retries: 2})
    // with `Tags []string` left nil.
    let data: &[u8] =
        br#"{"to":"ada@example.com","subject":"Hello \u003cAda\u003e \u0026 co","tags":null,"retries":2}"#;
    let id = b"go-typed-1";
    let mut stored = vec![0x83, 0xa2, b'I', b'D', 0xa0 | id.len() as u8];
    stored.extend_from_slice(id);
    stored.extend_from_slice(&[0xa4, b'D', b'a', b't', b'a', 0xc4, data.len() as u8]);
    stored.extend_from_slice(data);
    stored.extend_from_slice(b"\xa7Attempt\xd3\0\0\0\0\0\0\0\0");

    let server = RedisServer::start().unwrap();
    server
        .command_bytes(&[b"HSET", b"goq:data", id, &stored])
        .unwrap();
    cmd(&server, &["RPUSH", "goq:active", "go-typed-1"]);
    cmd(&server, &["LPUSH", "goq:signal", "1"]);

    let backend = backend(&server).await;
    let consumer = Consumer::builder("goq").build(backend).unwrap();
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn({
        let consumer = consumer.clone();
        async move {
            consumer
                .run_typed(
                    move |email: Email, ctx: curlyq::JobContext| {
                        let _ = seen_tx.send((ctx.job_id().to_string(), ctx.attempt(), email));
                        async { Ok::<(), curlyq::BoxError>(()) }
                    },
                    async move {
                        let _ = stopped.await;
                    },
                )
                .await
        }
    });
    let (job_id, attempt, email) = timeout(LIMIT, seen.recv()).await.unwrap().unwrap();
    assert_eq!((job_id.as_str(), attempt), ("go-typed-1", 0));
    assert_eq!(
        email,
        Email {
            to: "ada@example.com".into(),
            subject: "Hello <Ada> & co".into(),
            tags: None,
            retries: 2,
        }
    );
    let _ = stop.send(());
    timeout(LIMIT, run).await.unwrap().unwrap().unwrap();
    assert_eq!(cmd(&server, &["HLEN", "goq:data"]), ":0\r\n", "acked");
}

/// Dead jobs Go CurlyQ killed share `Q:dead` with curlyq's: by default curlyq trims the
/// dead set (older than 180 days here), Go's jobs included; `keep_dead_jobs()` leaves
/// them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_dead_jobs_leaves_go_killed_jobs_alone() {
    let server = RedisServer::start().unwrap();
    let a_year_ago = (unix(SystemTime::now()) - 365.0 * 86400.0)
        .floor()
        .to_string();
    for q in ["keep", "trim"] {
        let job = Job::new("killed by Go").with_id("go-dead").with_attempt(20);
        server
            .command_bytes(&[
                b"HSET",
                format!("{q}:data").as_bytes(),
                b"go-dead",
                &job.encode(),
            ])
            .unwrap();
        cmd(
            &server,
            &["ZADD", &format!("{q}:dead"), &a_year_ago, "go-dead"],
        );
    }
    let backend = backend(&server).await;
    for (q, keep) in [("keep", true), ("trim", false)] {
        let mut builder = Consumer::builder(q).custodian_poll_interval(Duration::from_millis(50));
        if keep {
            builder = builder.keep_dead_jobs();
        }
        let consumer = builder.build(backend.clone()).unwrap();
        let (handler, _rx) = reporting(clock(), |_job: Job| common::ok());
        let running = start(consumer, handler);
        // Long enough for many sweeps (every 50 ms; each one trims): the trimmed queue
        // is done as soon as its dead job is gone, the kept one waits the whole second.
        for _ in 0..100 {
            if !keep && cmd(&server, &["ZCARD", "trim:dead"]) == ":0\r\n" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop_cleanly(running).await;
    }
    assert_eq!(cmd(&server, &["ZCARD", "keep:dead"]), ":1\r\n", "kept");
    assert_eq!(cmd(&server, &["HLEN", "keep:data"]), ":1\r\n");
    assert_eq!(
        cmd(&server, &["ZCARD", "trim:dead"]),
        ":0\r\n",
        "trimmed by default"
    );
    assert_eq!(cmd(&server, &["HLEN", "trim:data"]), ":0\r\n");
}

/// A setting copied from a Go service that Go reads differently is refused with a
/// message saying what Go would have done: `JobMaxAttempts = 0` is Go's default (20),
/// never "no retries".
#[test]
fn go_style_zero_options_are_refused_with_what_go_would_do() {
    let backend: Arc<dyn QueueBackend> = Arc::new(curlyq::MemoryBackend::new());
    let err = Consumer::builder("q")
        .job_max_attempts(0)
        .runtime(clock())
        .build(backend.clone())
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("Go CurlyQ would silently use its default of 20 retries")
            && text.contains("no_retries()"),
        "{text}"
    );
    let err = Consumer::builder("q")
        .heartbeat_poll_interval(Duration::from_secs(5))
        .runtime(clock())
        .build(backend.clone())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("heartbeat_interval is 5s, below its minimum of 15s: Go CurlyQ would silently raise it to 15s"),
        "{err}"
    );
    assert!(Consumer::builder("q")
        .no_retries()
        .runtime(clock())
        .build(backend)
        .is_ok());
}
