//! Failure modes of FredBackend on a real redis-server: a flushed script cache, wrong key
//! types, an unreachable server, passwords, and the blocking wait beside other work.

use std::time::{Duration, Instant};

use curlyq_core::{BackendError, ConsumerId, EncodedJob, QueueBackend, QueueName, Registration};
use curlyq_fred::{FredBackend, FredConfig};
use curlyq_testkit::RedisServer;

fn job(id: &str, data: &str) -> EncodedJob {
    EncodedJob {
        id: id.to_owned(),
        data: data.as_bytes().to_vec(),
    }
}

fn raw(server: &RedisServer, args: &[&str]) -> String {
    server.command(args).expect("redis command")
}

fn dump(server: &RedisServer, keys: &[&str]) -> Vec<Vec<u8>> {
    keys.iter()
        .map(|k| server.command_bytes(&[b"DUMP", k.as_bytes()]).unwrap())
        .collect()
}

async fn setup() -> (RedisServer, FredBackend, QueueName) {
    let server = RedisServer::start().expect("redis-server starts");
    let backend = FredBackend::connect(&server.url()).await.unwrap();
    (server, backend, QueueName::new("{q}").unwrap())
}

/// After SCRIPT FLUSH, single and chunked (pipelined) calls load the scripts again.
#[tokio::test(flavor = "multi_thread")]
async fn reloads_scripts_after_script_flush() {
    let (server, backend, queue) = setup().await;
    backend.push(&queue, &[job("a", "A")]).await.unwrap();
    assert_eq!(raw(&server, &["SCRIPT", "FLUSH"]), "+OK\r\n");
    assert_eq!(
        backend.push(&queue, &[job("b", "B")]).await.unwrap(),
        [true]
    );
    assert_eq!(raw(&server, &["SCRIPT", "FLUSH"]), "+OK\r\n");
    let many: Vec<_> = (0..2500).map(|i| job(&format!("m{i}"), "x")).collect();
    let new = backend.push(&queue, &many).await.unwrap();
    assert!(new.len() == 2500 && new.iter().all(|n| *n));
    assert_eq!(raw(&server, &["LLEN", "{q}:active"]), ":2502\r\n");
    assert_eq!(raw(&server, &["SCRIPT", "FLUSH"]), "+OK\r\n");
    backend.load_scripts().await.unwrap();
    let sha = curlyq_fred::fred::types::scripts::Script::from_lua(curlyq_lua::TAKE);
    assert_eq!(
        raw(&server, &["SCRIPT", "EXISTS", sha.sha1()]),
        "*1\r\n:1\r\n"
    );
}

/// A string where a hash belongs makes push, take and ack fail with Rejected, and every
/// key stays byte-identical.
#[tokio::test(flavor = "multi_thread")]
async fn wrongtype_rejects_and_writes_nothing() {
    let (server, backend, queue) = setup().await;
    let c = ConsumerId::from_string("c1");
    backend
        .push(&queue, &[job("a", "A"), job("b", "B")])
        .await
        .unwrap();
    backend
        .register(&queue, &c, 1.0, Registration::Join)
        .await
        .unwrap();
    backend.take(&queue, &c, 1).await.unwrap();
    raw(&server, &["SET", "{q}:data", "not a hash"]);
    let keys = [
        "{q}:data",
        "{q}:active",
        "{q}:signal",
        "{q}:consumers",
        "{q}:inflight:c1",
    ];
    let before = dump(&server, &keys);
    let expect_rejected = |result: Result<(), BackendError>, op: &str| match result {
        Err(BackendError::Rejected(msg)) => {
            assert!(msg.starts_with("WRONGTYPE"), "{op}: {msg}");
            assert!(msg.contains("{q}:data"), "{op}: {msg}");
        }
        other => panic!("{op}: expected Rejected, got {other:?}"),
    };
    expect_rejected(
        backend.push(&queue, &[job("n", "N")]).await.map(drop),
        "push",
    );
    expect_rejected(backend.take(&queue, &c, 5).await.map(drop), "take");
    expect_rejected(
        backend.ack(&queue, &c, &["a".to_owned()]).await.map(drop),
        "ack",
    );
    let many: Vec<_> = (0..2500).map(|i| job(&format!("m{i}"), "x")).collect();
    expect_rejected(backend.push(&queue, &many).await.map(drop), "chunked push");
    assert_eq!(before, dump(&server, &keys), "every key is byte-identical");
}

/// Connecting where nothing listens fails fast with Unavailable.
#[tokio::test(flavor = "multi_thread")]
async fn unreachable_server_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let err = FredBackend::connect(&format!("redis://127.0.0.1:{port}/"))
        .await
        .unwrap_err();
    eprintln!("{err}");
    assert!(matches!(err, BackendError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

/// After the server stops, operations fail with Unavailable within the response timeout;
/// after it is back, they work again.
#[tokio::test(flavor = "multi_thread")]
async fn stopped_server_is_unavailable_then_recovers() {
    let mut server = RedisServer::start().unwrap();
    let config = FredConfig::default()
        .with_response_timeout(Duration::from_millis(500))
        .with_reconnect_max_delay(Duration::from_millis(100));
    let backend = FredBackend::connect_with(&server.url(), config)
        .await
        .unwrap();
    let queue = QueueName::new("r").unwrap();
    backend.push(&queue, &[job("a", "A")]).await.unwrap();
    server.stop();
    let started = Instant::now();
    let err = backend.push(&queue, &[job("b", "B")]).await.unwrap_err();
    assert!(matches!(err, BackendError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    server.restart().unwrap();
    let mut last = None;
    for _ in 0..100 {
        match backend.push(&queue, &[job("c", "C")]).await {
            Ok(new) => {
                last = Some(new);
                break;
            }
            Err(err) => {
                assert!(matches!(err, BackendError::Unavailable(_)), "{err:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert_eq!(
        last,
        Some(vec![true]),
        "reconnected and reloaded the script"
    );
}

/// The password never shows in Debug or Display of the backend or of errors.
#[tokio::test(flavor = "multi_thread")]
async fn password_never_shown() {
    let password = "s3cr3t-Pa55word";
    let server = RedisServer::start().unwrap();
    let set = raw(&server, &["CONFIG", "SET", "requirepass", password]);
    assert!(set.starts_with("+OK"), "{set}");
    let url = format!("redis://:{password}@127.0.0.1:{}/0", server.port());
    let backend = FredBackend::connect(&url).await.unwrap();
    let queue = QueueName::new("pw").unwrap();
    assert_eq!(
        backend.push(&queue, &[job("a", "A")]).await.unwrap(),
        [true]
    );
    for text in [format!("{backend:?}"), format!("{backend}")] {
        eprintln!("{text}");
        assert!(!text.contains(password), "{text}");
        assert!(text.contains("127.0.0.1"), "{text}");
    }
    let wrong = "wr0ng-Pa55word";
    let bad = [
        format!("redis://:{wrong}@127.0.0.1:{}/0", server.port()),
        format!("redis://default:{wrong}@127.0.0.1:{}/0", server.port()),
        format!("redis://:{wrong}@127.0.0.1:1/0"),
        format!("redis://:{wrong}@127.0.0.1:{}/notanumber", server.port()),
        format!("redis://:{wrong}@[bad"),
    ];
    for url in &bad {
        let err = FredBackend::connect(url).await.unwrap_err();
        eprintln!("connect error: {err}");
        let mut texts = vec![err.to_string(), format!("{err:?}")];
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            texts.push(s.to_string());
            texts.push(format!("{s:?}"));
            source = s.source();
        }
        for text in texts {
            assert!(!text.contains(wrong), "{text}");
        }
    }
    let err = FredBackend::connect(&bad[0]).await.unwrap_err();
    assert!(matches!(err, BackendError::Unavailable(_)), "{err:?}");
}

/// The number of client connections the server has.
fn connections(server: &RedisServer) -> usize {
    let info = raw(server, &["INFO", "clients"]);
    info.lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .expect("connected_clients in INFO")
        // Not counting the connection of this very command.
        - 1
}

/// A waiter blocks on its own connection: other operations go on meanwhile, it wakes on
/// a push, a long wait does not fail client-side, and dropping it closes its connection.
#[tokio::test(flavor = "multi_thread")]
async fn waiter_does_not_starve_other_operations() {
    let (server, backend, queue) = setup().await;
    let before = connections(&server);
    let mut waiter = backend.waiter(&queue).await.unwrap();
    assert_eq!(
        connections(&server),
        before + 1,
        "one connection of its own"
    );

    let started = Instant::now();
    assert!(!waiter.wait(Duration::from_secs(1)).await.unwrap());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert!(
        !waiter.wait(Duration::ZERO).await.unwrap(),
        "zero timeout: LLEN"
    );

    let task = tokio::spawn(async move {
        let started = Instant::now();
        let seen = waiter.wait(Duration::from_secs(5)).await;
        (seen, started.elapsed(), waiter)
    });
    // Other operations while the waiter blocks: each answers at once.
    let c = ConsumerId::from_string("c");
    let mut ops = 0;
    while !task.is_finished() && ops < 20 {
        let op = Instant::now();
        backend
            .register(&queue, &c, 1.0, Registration::Join)
            .await
            .unwrap();
        assert!(backend.take(&queue, &c, 1).await.unwrap().is_empty());
        assert!(
            op.elapsed() < Duration::from_millis(500),
            "{:?}",
            op.elapsed()
        );
        ops += 1;
    }
    assert_eq!(ops, 20);
    assert!(!task.is_finished(), "the waiter still blocks");
    backend.push(&queue, &[job("a", "A")]).await.unwrap();
    let (seen, waited, mut waiter) = task.await.unwrap();
    assert!(seen.unwrap());
    assert!(waited < Duration::from_secs(4), "{waited:?}");
    assert!(
        waiter.wait(Duration::from_secs(5)).await.unwrap(),
        "the signal stays set"
    );
    assert!(waiter.wait(Duration::ZERO).await.unwrap());

    // Beyond the response timeout: the client waits for the server's answer.
    raw(&server, &["DEL", "{q}:signal"]);
    let short = FredConfig::default().with_response_timeout(Duration::from_millis(200));
    let quick = FredBackend::connect_with(&server.url(), short)
        .await
        .unwrap();
    let mut long = quick.waiter(&queue).await.unwrap();
    assert!(!long.wait(Duration::from_millis(1500)).await.unwrap());

    drop(waiter);
    drop(long);
    drop(quick);
    for _ in 0..100 {
        if connections(&server) == before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        connections(&server),
        before,
        "dropped waiters close their connections"
    );
}

/// A wait whose future is dropped mid-block does not delay the next one.
#[tokio::test(flavor = "multi_thread")]
async fn cancelled_wait_does_not_delay_the_next() {
    let (_server, backend, queue) = setup().await;
    let mut waiter = backend.waiter(&queue).await.unwrap();
    let cancelled = tokio::time::timeout(
        Duration::from_millis(200),
        waiter.wait(Duration::from_secs(10)),
    )
    .await;
    assert!(cancelled.is_err());
    backend.push(&queue, &[job("a", "A")]).await.unwrap();
    let started = Instant::now();
    assert!(waiter.wait(Duration::from_secs(10)).await.unwrap());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

/// A take by a consumer that is not registered is NotRegistered, taking nothing.
#[tokio::test(flavor = "multi_thread")]
async fn take_by_an_unknown_consumer_is_not_registered() {
    let (server, backend, queue) = setup().await;
    backend.push(&queue, &[job("a", "A")]).await.unwrap();
    let err = backend
        .take(&queue, &ConsumerId::from_string("ghost"), 1)
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::NotRegistered { .. }), "{err:?}");
    assert_eq!(raw(&server, &["LLEN", "{q}:active"]), ":1\r\n");
}

/// A taken job whose ID is not UTF-8 is killed by its raw bytes (it could never be
/// acked under a string ID); the other jobs of the batch are taken as usual.
#[tokio::test(flavor = "multi_thread")]
async fn a_non_utf8_id_is_killed_when_taken() {
    let (server, backend, queue) = setup().await;
    backend.push(&queue, &[job("good", "G")]).await.unwrap();
    server
        .command_bytes(&[b"RPUSH", b"{q}:active", b"bad\xff"])
        .unwrap();
    server
        .command_bytes(&[b"HSET", b"{q}:data", b"bad\xff", b"raw"])
        .unwrap();
    let c = ConsumerId::from_string("c");
    backend
        .register(&queue, &c, 1.0, Registration::Join)
        .await
        .unwrap();
    let taken = backend.take(&queue, &c, 10).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].id, "good");
    assert_eq!(raw(&server, &["ZCARD", "{q}:dead"]), ":1\r\n");
    assert_eq!(raw(&server, &["SCARD", "{q}:inflight:c"]), ":1\r\n");
    let reason = server
        .command_bytes(&[b"HGET", b"{q}:dead:reasons", b"bad\xff"])
        .unwrap();
    assert!(String::from_utf8_lossy(&reason).contains("UTF-8"));
}

/// An eviction policy other than `noeviction` is reported (consumers log it at start).
#[tokio::test(flavor = "multi_thread")]
async fn an_evicting_policy_is_a_settings_warning() {
    let (server, backend, _) = setup().await;
    raw(
        &server,
        &["CONFIG", "SET", "maxmemory-policy", "noeviction"],
    );
    assert_eq!(
        backend.settings_warnings().await.unwrap(),
        Vec::<String>::new()
    );
    raw(
        &server,
        &["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"],
    );
    let warnings = backend.settings_warnings().await.unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("allkeys-lru") && warnings[0].contains("noeviction"));
}
