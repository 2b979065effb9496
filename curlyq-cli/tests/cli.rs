//! The `curlyq` binary run as a process against a throwaway redis-server (the testkit's,
//! on a free loopback port): JSON output, pages, each job state, dry runs that change
//! nothing, the Go CurlyQ fixture, check and repair, bad input, pause and enqueue.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use curlyq_core::{ConsumerId, Job, KillJob, QueueBackend, QueueName, Registration};
use curlyq_redis_rs::RedisBackend;
use curlyq_testkit::{RedisServer, Resp};
use serde_json::Value;

/// Longest any one command may run.
const LIMIT: Duration = Duration::from_secs(30);

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }

    fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    fn no_panic(&self) {
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        assert!(!self.stderr.contains("RUST_BACKTRACE"), "{}", self.stderr);
    }
}

/// Runs the binary with `args` (and `--url url`), bounded by [`LIMIT`].
fn run_url(url: &str, args: &[&str]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_curlyq"))
        .args(args)
        .arg("--url")
        .arg(url)
        .env_remove("REDIS_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            panic!("curlyq {args:?} ran past {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let run = Run {
        code: status.code().unwrap_or(-1),
        stdout: reader.join().expect("stdout reader"),
        stderr: err_reader.join().expect("stderr reader"),
    };
    run.no_panic();
    run
}

fn run(server: &RedisServer, args: &[&str]) -> Run {
    run_url(&server.url(), args)
}

/// `-o json` + args, expecting exit 0; the parsed document.
fn json(server: &RedisServer, args: &[&str]) -> Value {
    let mut all = vec!["-o", "json"];
    all.extend_from_slice(args);
    run(server, &all).ok().json()
}

fn cmd(server: &RedisServer, args: &[&str]) -> String {
    server.command(args).expect("redis command")
}

/// Every key with its `DUMP`, to compare the whole store before and after.
fn dump_all(server: &RedisServer) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let keys = match server.query(&[b"KEYS", b"*"]).expect("KEYS") {
        Resp::Array(Some(items)) => items,
        other => panic!("KEYS answered {other:?}"),
    };
    keys.into_iter()
        .map(|k| {
            let k = k.bytes().expect("a key");
            let v = server
                .query(&[b"DUMP", &k])
                .expect("DUMP")
                .bytes()
                .expect("a dump");
            (k, v)
        })
        .collect()
}

fn ids(doc: &Value, field: &str) -> Vec<String> {
    doc[field]
        .as_array()
        .unwrap_or_else(|| panic!("{field} is an array in {doc}"))
        .iter()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other["id"].as_str().expect("an id").to_owned(),
        })
        .collect()
}

fn now() -> f64 {
    curlyq_core::unix_seconds(SystemTime::now())
}

/// A consumer acting through the backend directly (taking, acking, killing jobs).
struct Worker {
    rt: tokio::runtime::Runtime,
    backend: RedisBackend,
    queue: QueueName,
    id: ConsumerId,
}

impl Worker {
    fn new(server: &RedisServer, queue: &str) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let backend = rt.block_on(RedisBackend::connect(&server.url())).unwrap();
        let queue = QueueName::new(queue).unwrap();
        let id = ConsumerId::random();
        rt.block_on(backend.register(&queue, &id, now(), Registration::Join))
            .unwrap();
        Worker {
            rt,
            backend,
            queue,
            id,
        }
    }

    fn take(&self, n: usize) -> Vec<String> {
        let jobs = self
            .rt
            .block_on(self.backend.take(&self.queue, &self.id, n, now()))
            .unwrap();
        jobs.into_iter().map(|j| j.id).collect()
    }

    fn ack(&self, ids: &[String]) {
        self.rt
            .block_on(self.backend.ack(&self.queue, &self.id, ids, now()))
            .unwrap();
    }

    fn kill(&self, id: &str, reason: &str) {
        let job = KillJob {
            id: id.to_owned(),
            data: None,
            reason: reason.to_owned(),
        };
        self.rt
            .block_on(self.backend.kill(&self.queue, &self.id, &[job], now()))
            .unwrap();
    }
}

fn enqueue(server: &RedisServer, queue: &str, id: &str, data: &str, extra: &[&str]) {
    let mut args = vec!["enqueue", queue, "--id", id, "--data", data];
    args.extend_from_slice(extra);
    run(server, &args).ok();
}

#[test]
fn stats_count_enqueues_takes_and_acks() {
    let server = RedisServer::start().unwrap();
    for i in 0..4 {
        enqueue(&server, "st", &format!("j{i}"), "hello", &[]);
    }
    enqueue(&server, "st", "later", "hello", &["--in", "5m"]);
    let worker = Worker::new(&server, "st");
    let taken = worker.take(2);
    worker.ack(&taken[..1]);

    let doc = json(&server, &["stats", "st", "--minutes", "3"]);
    let q = &doc["queues"][0];
    assert_eq!(q["queue"], "st");
    assert_eq!(q["exists"], true);
    assert_eq!(
        (
            &q["active"],
            &q["scheduled"],
            &q["inflight"],
            &q["dead"],
            &q["consumers"]
        ),
        (
            &Value::from(2),
            &Value::from(1),
            &Value::from(1),
            &Value::from(0),
            &Value::from(1)
        )
    );
    assert_eq!(q["paused"], false);
    assert_eq!(q["total"]["processed"], 1);
    assert_eq!(q["recent"]["processed"], 1);
    assert_eq!(q["minutes"].as_array().unwrap().len(), 3);
    assert_eq!(doc["window_minutes"], 3);
    assert!(q["oldest_ready_at"]["unix"].as_f64().unwrap() > 1.6e9);
    assert!(q["oldest_ready_at"]["rfc3339"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    assert!(q["latency_seconds"].as_f64().unwrap() >= 0.0);
    let due = q["next_due"]["unix"].as_f64().unwrap();
    assert!(
        (due - now() - 300.0).abs() < 30.0,
        "due in about 5 minutes: {due}"
    );

    // Every queue when none is named; the table too.
    let all = json(&server, &["stats"]);
    assert_eq!(all["queues"].as_array().map(Vec::len), Some(1));
    assert_eq!(all["queues"][0]["queue"], "st");
    let table = run(&server, &["stats", "st"]).ok();
    assert!(table.stdout.starts_with("QUEUE"), "{}", table.stdout);
    assert!(table.stdout.contains("PROCESSED"), "{}", table.stdout);

    // JSONL: one line.
    let line = run(&server, &["-o", "jsonl", "stats", "st"]).ok();
    assert_eq!(line.stdout.lines().count(), 1);

    // A queue with no keys: zeros, and a note on stderr in table mode.
    let empty = run(&server, &["stats", "nothing-here"]).ok();
    assert!(empty.stderr.contains("no keys"), "{}", empty.stderr);
    let doc = json(&server, &["stats", "nothing-here"]);
    assert_eq!(doc["queues"][0]["exists"], false);
    assert_eq!(doc["queues"][0]["active"], 0);
}

#[test]
fn stats_watch_prints_one_line_per_refresh() {
    let server = RedisServer::start().unwrap();
    enqueue(&server, "w", "a", "x", &[]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_curlyq"))
        .args(["-o", "json", "stats", "w", "--watch", "--interval", "100ms"])
        .arg("--url")
        .arg(server.url())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 2, "{text}");
    for line in lines.iter().take(lines.len() - 1) {
        let doc: Value = serde_json::from_str(line).unwrap();
        assert_eq!(doc["queues"][0]["active"], 1);
    }
}

#[test]
fn pages_follow_their_cursors() {
    let server = RedisServer::start().unwrap();
    let expected: Vec<String> = (0..5).map(|i| format!("p{i}")).collect();
    for id in &expected {
        enqueue(&server, "pg", id, &format!("payload of {id}"), &[]);
    }
    let mut cursor = "0".to_owned();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let doc = json(
            &server,
            &[
                "jobs",
                "pg",
                "--state",
                "active",
                "--limit",
                "2",
                "--cursor",
                &cursor,
                "--preview",
                "7",
            ],
        );
        pages += 1;
        assert_eq!(doc["total"], 5);
        assert_eq!(doc["state"], "active");
        let page = ids(&doc, "jobs");
        assert!(page.len() <= 2);
        for job in doc["jobs"].as_array().unwrap() {
            assert_eq!(job["state"], "active");
            assert_eq!(job["preview"]["text"], "payload");
            assert_eq!(job["attempt"], 0);
        }
        seen.extend(page);
        match &doc["next_cursor"] {
            Value::Null => break,
            next => cursor = next.as_u64().unwrap().to_string(),
        }
        assert!(pages < 10, "the cursors end");
    }
    assert_eq!(seen, expected);
    assert_eq!(pages, 3);
    let table = run(
        &server,
        &["jobs", "pg", "--state", "active", "--limit", "2"],
    )
    .ok();
    assert!(
        table.stdout.contains("next page: --cursor"),
        "{}",
        table.stdout
    );
}

#[test]
fn a_job_is_shown_in_each_state() {
    let server = RedisServer::start().unwrap();
    enqueue(&server, "js", "dead-one", "to die", &[]);
    enqueue(&server, "js", "held", r#"{"to":"ada@example.com"}"#, &[]);
    enqueue(&server, "js", "waiting", "wait", &[]);
    enqueue(&server, "js", "later", "later", &["--in", "1h"]);
    let worker = Worker::new(&server, "js");
    assert_eq!(worker.take(2), ["dead-one", "held"]);
    worker.kill("dead-one", "permanent failure: boom");

    let active = json(&server, &["job", "js", "waiting"]);
    assert_eq!(active["state"], "active");
    assert_eq!(active["position"], 0);
    assert_eq!(active["payload"]["text"], "wait");
    assert_eq!(active["attempt"], 0);
    assert!(active["ready_at"]["unix"].as_f64().is_some());

    let scheduled = json(&server, &["job", "js", "later"]);
    assert_eq!(scheduled["state"], "scheduled");
    let due = scheduled["score"]["unix"].as_f64().unwrap();
    assert!((due - now() - 3600.0).abs() < 30.0);
    assert!(scheduled["score"]["rfc3339"].as_str().is_some());

    let dead = json(&server, &["job", "js", "dead-one"]);
    assert_eq!(dead["state"], "dead");
    assert_eq!(dead["reason"], "permanent failure: boom");
    assert!(dead["score"]["unix"].as_f64().is_some());

    let held = json(&server, &["job", "js", "held"]);
    assert_eq!(held["state"], "inflight");
    assert_eq!(
        held["consumer"]
            .as_str()
            .map(|c| c.contains(worker.id.as_str())),
        Some(true)
    );
    assert_eq!(held["payload_json"]["to"], "ada@example.com");

    // The table: pretty JSON, dates and Unix seconds.
    let text = run(&server, &["job", "js", "held"]).ok().stdout;
    assert!(text.contains("\"to\": \"ada@example.com\""), "{text}");
    let text = run(&server, &["job", "js", "later"]).ok().stdout;
    assert!(text.contains("(unix "), "{text}");

    // Cut at --max-bytes, with the count of bytes cut.
    let cut = json(&server, &["job", "js", "held", "--max-bytes", "5"]);
    assert_eq!(cut["payload"]["text"], "{\"to\"");
    assert_eq!(cut["payload_cut_bytes"], 19);
    assert_eq!(cut["payload_json"], Value::Null);

    // Each state's page lists its job.
    for (state, id) in [
        ("active", "waiting"),
        ("scheduled", "later"),
        ("dead", "dead-one"),
        ("inflight", "held"),
    ] {
        let doc = json(&server, &["jobs", "js", "--state", state]);
        assert_eq!(ids(&doc, "jobs"), [id], "{state}");
    }

    // A missing job: exit 1, a clear message.
    let missing = run(&server, &["job", "js", "nope"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("no job nope in js"),
        "{}",
        missing.stderr
    );
}

/// Jobs in every state, a consumer, an expired one, and a planted problem.
fn busy_queue(server: &RedisServer, queue: &str) -> Worker {
    for i in 0..3 {
        enqueue(server, queue, &format!("a{i}"), "x", &[]);
    }
    enqueue(server, queue, "s1", "x", &["--in", "1h"]);
    enqueue(server, queue, "d1", "x", &[]);
    let worker = Worker::new(server, queue);
    worker.take(1);
    worker.kill("a0", "dead");
    worker.take(1);
    cmd(
        server,
        &[
            "ZADD",
            &format!("{queue}:consumers"),
            "1000",
            &format!("{queue}:inflight:old-consumer"),
        ],
    );
    cmd(server, &["HSET", &format!("{queue}:data"), "lost", "x"]);
    worker
}

#[test]
fn dry_runs_change_nothing() {
    let server = RedisServer::start().unwrap();
    let _worker = busy_queue(&server, "dr");
    let before = dump_all(&server);
    assert!(before.len() >= 5);
    let retry = json(&server, &["retry", "dr", "--all", "--dry-run"]);
    assert_eq!(ids(&retry, "done"), ["a0"]);
    assert_eq!(retry["dry_run"], true);
    let oldest = json(&server, &["retry", "dr", "--oldest", "5", "--dry-run"]);
    assert_eq!(ids(&oldest, "done"), ["a0"]);
    let run_now = json(&server, &["run-now", "dr", "--all", "--dry-run"]);
    assert_eq!(ids(&run_now, "done"), ["s1"]);
    let some = json(&server, &["run-now", "dr", "s1", "--dry-run"]);
    assert_eq!(ids(&some, "done"), ["s1"]);
    let delete = run(
        &server,
        &[
            "-o",
            "json",
            "delete",
            "dr",
            "a2",
            "a1",
            "nope",
            "--dry-run",
        ],
    );
    assert_eq!(
        delete.code, 1,
        "a missing ID is an error: {}",
        delete.stderr
    );
    let delete = delete.json();
    assert_eq!(ids(&delete, "deleted"), ["a2"]);
    assert_eq!(ids(&delete, "in_flight"), ["a1"]);
    assert_eq!(ids(&delete, "missing"), ["nope"]);
    for (state, n) in [("active", 2), ("scheduled", 1), ("dead", 1)] {
        let purge = json(&server, &["purge", "dr", "--state", state, "--dry-run"]);
        assert_eq!(purge["purged"], n, "{state}");
    }
    let remove = json(
        &server,
        &["consumers", "dr", "--remove", "old-consumer", "--dry-run"],
    );
    assert_eq!(remove["removed"], true);
    let check = run(
        &server,
        &["-o", "json", "check", "dr", "--repair", "--dry-run"],
    );
    assert_eq!(check.code, 3, "{}", check.stderr);
    assert_eq!(check.json()["counts"]["unreferenced"], 1);
    run(&server, &["check", "dr"]);
    assert_eq!(dump_all(&server), before, "the dry runs changed nothing");

    // Without --yes or --dry-run: refused with exit 2, before touching anything.
    for args in [
        &["retry", "dr", "--all"][..],
        &["run-now", "dr", "--all"],
        &["delete", "dr", "a2"],
        &["purge", "dr", "--state", "dead"],
        &["consumers", "dr", "--remove", "old-consumer"],
        &["check", "dr", "--repair"],
    ] {
        let refused = run(&server, args);
        assert_eq!(refused.code, 2, "{args:?}");
        assert!(refused.stderr.contains("--yes") && refused.stderr.contains("--dry-run"));
    }
    assert_eq!(dump_all(&server), before);
}

#[test]
fn actions_with_yes_move_and_delete_jobs() {
    let server = RedisServer::start().unwrap();
    let _worker = busy_queue(&server, "ac");
    let retry = json(&server, &["retry", "ac", "--all", "--yes"]);
    assert_eq!(ids(&retry, "done"), ["a0"]);
    let run_now = json(&server, &["run-now", "ac", "s1"]);
    assert_eq!(ids(&run_now, "done"), ["s1"]);
    let skipped = run(&server, &["retry", "ac", "s1"]);
    assert_eq!(skipped.code, 1, "not dead: {}", skipped.stderr);
    let stats = json(&server, &["stats", "ac"]);
    assert_eq!(stats["queues"][0]["dead"], 0);
    assert_eq!(stats["queues"][0]["scheduled"], 0);
    let delete = json(&server, &["delete", "ac", "a2", "--yes"]);
    assert_eq!(delete["deleted"][0]["id"], "a2");
    assert_eq!(delete["deleted"][0]["state"], "active");
    let purge = json(&server, &["purge", "ac", "--state", "active", "--yes"]);
    assert_eq!(purge["purged"], 3, "d1, a0, s1 were active");
    assert_eq!(json(&server, &["stats", "ac"])["queues"][0]["active"], 0);

    let consumers = json(&server, &["consumers", "ac"]);
    let list = consumers["consumers"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    let old = list.iter().find(|c| c["id"] == "old-consumer").unwrap();
    assert_eq!(old["expired"], true);
    assert!(list
        .iter()
        .any(|c| c["expired"] == false && c["inflight"] == 1));
    let removed = json(
        &server,
        &["consumers", "ac", "--remove", "old-consumer", "--yes"],
    );
    assert_eq!(removed["removed"], true);
    let alive = list.iter().find(|c| c["id"] != "old-consumer").unwrap();
    let refused = run(
        &server,
        &[
            "consumers",
            "ac",
            "--remove",
            alive["id"].as_str().unwrap(),
            "--yes",
        ],
    );
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.contains("alive"), "{}", refused.stderr);
}

#[test]
fn the_go_fixture_is_listed_and_inspected() {
    let server = RedisServer::start().unwrap();
    server
        .load_dump(include_str!("../../curlyq/tests/go-queue-fixture.json"))
        .unwrap();
    let queues = json(&server, &["queues"]);
    assert_eq!(ids(&queues, "queues"), ["goq"]);
    let table = run(&server, &["queues"]).ok();
    assert_eq!(table.stdout, "goq\n");
    let stats = json(&server, &["stats", "goq"]);
    let q = &stats["queues"][0];
    assert_eq!(q["active"], 5);
    assert_eq!(q["scheduled"], 2);
    assert_eq!(q["dead"], 1);
    assert_eq!(q["consumers"], 2);
    assert_eq!(
        q["oldest_ready_at"],
        Value::Null,
        "Go jobs carry no ready time"
    );
    assert_eq!(q["latency_seconds"], Value::Null);
    let active = json(&server, &["jobs", "goq", "--state", "active"]);
    assert_eq!(
        ids(&active, "jobs"),
        ["go-a4", "go-a5", "go-a6", "go-d1", "go-r1"]
    );
    assert_eq!(active["jobs"][0]["preview"]["text"], "payload-a4");
    assert_eq!(active["jobs"][0]["ready_at"], Value::Null);
    let dead = json(&server, &["jobs", "goq", "--state", "dead"]);
    assert_eq!(ids(&dead, "jobs"), ["go-k1"]);
    assert_eq!(dead["jobs"][0]["attempt"], 2);
    let job = json(&server, &["job", "goq", "go-r1"]);
    assert_eq!(job["attempt"], 1);
    assert_eq!(job["payload"]["text"], "payload-r1");
    assert_eq!(job["ready_at"], Value::Null);
    let text = run(&server, &["job", "goq", "go-r1"]).ok().stdout;
    assert!(text.contains("Go CurlyQ jobs carry none"), "{text}");
    let inflight = json(&server, &["jobs", "goq", "--state", "inflight"]);
    assert_eq!(inflight["total"], 2);
}

#[test]
fn check_finds_planted_problems_and_repair_fixes_them_without_losing_a_job() {
    let server = RedisServer::start().unwrap();
    enqueue(&server, "ck", "fine", "x", &[]);
    let data = |id: &str| Job::new(b"x".to_vec()).with_id(id).encode();
    for id in ["lost", "both", "stray-job"] {
        server
            .command_bytes(&[b"HSET", b"ck:data", id.as_bytes(), &data(id)])
            .unwrap();
    }
    cmd(&server, &["RPUSH", "ck:active", "both"]);
    cmd(&server, &["ZADD", "ck:scheduled", "2000000000", "both"]);
    cmd(&server, &["RPUSH", "ck:active", "ghost"]);
    cmd(&server, &["SADD", "ck:inflight:gone-consumer", "stray-job"]);
    let with_data: BTreeSet<String> = ["fine", "lost", "both", "stray-job"]
        .iter()
        .map(|s| s.to_string())
        .collect();

    let found = run(&server, &["-o", "json", "check", "ck"]);
    assert_eq!(found.code, 3, "{}", found.stderr);
    let doc = found.json();
    assert_eq!(doc["counts"]["unreferenced"], 1);
    assert_eq!(doc["counts"]["duplicate"], 1);
    assert_eq!(doc["counts"]["dangling"], 1);
    assert_eq!(doc["counts"]["stray_inflight"], 1);
    let kinds: Vec<(String, String)> = doc["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["kind"].as_str().unwrap().to_owned(),
                p["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        kinds.contains(&("unreferenced".into(), "lost".into())),
        "{kinds:?}"
    );
    assert!(kinds.contains(&("duplicate".into(), "both".into())));
    assert!(kinds.contains(&("dangling".into(), "ghost".into())));
    assert!(kinds.contains(&("stray-inflight".into(), "gone-consumer".into())));
    let table = run(&server, &["check", "ck"]);
    assert_eq!(table.code, 3);
    assert!(table.stdout.contains("--repair --yes"), "{}", table.stdout);

    let repaired = run(&server, &["-o", "json", "check", "ck", "--repair", "--yes"]);
    assert_eq!(repaired.code, 0, "{}\n{}", repaired.stdout, repaired.stderr);
    let doc = repaired.json();
    assert_eq!(doc["remaining"], Value::Array(vec![]));
    assert_eq!(
        run(&server, &["check", "ck"]).code,
        0,
        "a second check is clean"
    );

    // No job lost: every job that had data still has it and is in exactly one place.
    let keys: BTreeSet<String> = cmd(&server, &["HKEYS", "ck:data"])
        .lines()
        .filter(|l| !l.starts_with(['*', '$']))
        .map(str::to_owned)
        .collect();
    assert_eq!(keys, with_data);
    let mut places = BTreeMap::<String, usize>::new();
    for state in ["active", "scheduled", "dead", "inflight"] {
        for id in ids(&json(&server, &["jobs", "ck", "--state", state]), "jobs") {
            *places.entry(id).or_default() += 1;
        }
    }
    for id in &with_data {
        assert_eq!(
            places.get(id),
            Some(&1),
            "{id} is in exactly one place: {places:?}"
        );
        let job = json(&server, &["job", "ck", id]);
        assert_ne!(job["state"], "unplaced");
    }
    assert!(!places.contains_key("ghost"));
}

#[test]
fn bad_input_gives_a_clear_message_and_a_non_zero_exit() {
    let server = RedisServer::start().unwrap();
    let unknown = run(&server, &["jobs", "q", "--state", "nope"]);
    assert_eq!(unknown.code, 2);
    assert!(unknown.stderr.contains("nope"), "{}", unknown.stderr);
    let empty = run(&server, &["job", "q", ""]);
    assert_eq!(empty.code, 2);
    assert!(empty.stderr.contains("error"), "{}", empty.stderr);
    let empty_queue = run(&server, &["stats", ""]);
    assert_eq!(empty_queue.code, 2);

    cmd(&server, &["SET", "wt:active", "not a list"]);
    let wrong = run(&server, &["jobs", "wt", "--state", "active"]);
    assert_eq!(wrong.code, 1);
    assert!(wrong.stderr.starts_with("error: "), "{}", wrong.stderr);
    assert!(wrong.stderr.contains("wrong type"), "{}", wrong.stderr);
    assert_eq!(wrong.stderr.lines().count(), 1, "{}", wrong.stderr);

    // A closed loopback port, with a password in the URL that must not be printed.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("redis://admin:s3cret-pw@127.0.0.1:{port}/0");
    let started = Instant::now();
    let down = run_url(&url, &["stats", "q"]);
    assert_eq!(down.code, 1);
    assert!(
        down.stderr.contains("cannot reach Redis"),
        "{}",
        down.stderr
    );
    assert!(!down.stderr.contains("s3cret-pw"), "{}", down.stderr);
    assert!(down.stderr.contains("REDIS_URL"), "{}", down.stderr);
    assert!(started.elapsed() < Duration::from_secs(20));

    let dup = run(&server, &["enqueue", "q", "--id", "same", "--data", "x"]);
    assert_eq!(dup.code, 0, "{}", dup.stderr);
    let dup = run(&server, &["enqueue", "q", "--id", "same", "--data", "y"]);
    assert_eq!(dup.code, 1);
    assert!(dup.stderr.contains("already exists"), "{}", dup.stderr);
}

#[test]
fn pause_and_resume_round_trip() {
    let server = RedisServer::start().unwrap();
    enqueue(&server, "pq", "a", "x", &[]);
    let paused = json(&server, &["pause", "pq"]);
    assert_eq!(
        (&paused["paused"], &paused["was_paused"]),
        (&Value::Bool(true), &Value::Bool(false))
    );
    assert_eq!(json(&server, &["stats", "pq"])["queues"][0]["paused"], true);
    let again = json(&server, &["pause", "pq"]);
    assert_eq!(again["was_paused"], true);
    let resumed = json(&server, &["resume", "pq"]);
    assert_eq!(
        (&resumed["paused"], &resumed["was_paused"]),
        (&Value::Bool(false), &Value::Bool(true))
    );
    assert_eq!(
        json(&server, &["stats", "pq"])["queues"][0]["paused"],
        false
    );
}

#[test]
fn enqueue_lands_where_asked() {
    let server = RedisServer::start().unwrap();
    let later = json(&server, &["enqueue", "eq", "--data", "hi", "--in", "5m"]);
    assert_eq!(later["state"], "scheduled");
    let id = later["id"].as_str().unwrap().to_owned();
    assert!(!id.is_empty());
    let job = json(&server, &["job", "eq", &id]);
    assert_eq!(job["state"], "scheduled");
    assert!((job["score"]["unix"].as_f64().unwrap() - now() - 300.0).abs() < 30.0);
    let at = json(
        &server,
        &[
            "enqueue",
            "eq",
            "--id",
            "at",
            "--data",
            "x",
            "--at",
            "2030-01-02T03:04:05Z",
        ],
    );
    assert_eq!(at["at"]["unix"], 1_893_553_445.0);
    assert_eq!(
        json(&server, &["job", "eq", "at"])["score"]["unix"],
        1_893_553_445.0
    );
    let dir = std::env::temp_dir().join(format!("curlyq-cli-test-{}", std::process::id()));
    std::fs::write(&dir, b"\xff\x00binary").unwrap();
    let file = json(
        &server,
        &[
            "enqueue",
            "eq",
            "--id",
            "f",
            "--data",
            &format!("@{}", dir.display()),
        ],
    );
    let _ = std::fs::remove_file(&dir);
    assert_eq!(file["state"], "active");
    assert_eq!(
        json(&server, &["job", "eq", "f"])["payload"]["hex"],
        "ff0062696e617279"
    );
}
