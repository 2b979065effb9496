//! Failure modes: wrong key types, large batches, a flushed script cache, an unreachable
//! server, passwords, and the blocking wait beside other operations.

mod common;

use std::time::{Duration, Instant};

use common::{env, ids, job};
use curlyq_core::{BackendError, ConsumerId, QueueBackend, Registration};
use curlyq_redis_rs::RedisBackend;
use curlyq_testkit::RedisServer;

/// A string in `Q:data` makes push, take and ack fail with Rejected, writing nothing.
#[tokio::test(flavor = "multi_thread")]
async fn wrongtype_data_rejects_without_writing() {
    let e = env().await;
    let c = ConsumerId::from_string("c1");
    e.backend
        .push(&e.queue, &[job("a", "A"), job("b", "B"), job("c", "C")])
        .await
        .unwrap();
    e.backend
        .register(&e.queue, &c, 1.0, Registration::Join)
        .await
        .unwrap();
    e.backend.take(&e.queue, &c, 1).await.unwrap();
    let _: () = e.q(&["ZADD", &e.keys.dead, "5", "old"]).await;
    let _: () = e.q(&["SET", &e.keys.data, "not a hash"]).await;
    let inflight = e.inflight(&c);
    let before = e.dump_all(&[&inflight]).await;

    let rejected = |r: Result<_, BackendError>, op: &str| match r {
        Err(BackendError::Rejected(msg)) => {
            assert!(msg.starts_with("WRONGTYPE"), "{op}: {msg}");
            assert!(msg.contains("{q}:data"), "{op}: {msg}");
        }
        other => panic!("{op}: expected Rejected, got {other:?}"),
    };
    rejected(
        e.backend.push(&e.queue, &[job("n", "N")]).await.map(drop),
        "push",
    );
    rejected(e.backend.take(&e.queue, &c, 5).await.map(drop), "take");
    rejected(
        e.backend.ack(&e.queue, &c, &ids(&["a"])).await.map(drop),
        "ack",
    );
    let many: Vec<_> = (0..2500).map(|i| job(&format!("m{i}"), "x")).collect();
    rejected(
        e.backend.push(&e.queue, &many).await.map(drop),
        "chunked push",
    );

    let after = e.dump_all(&[&inflight]).await;
    assert_eq!(before, after, "every key is byte-identical");
}

/// 10,000 jobs in one push call: all stored, in order.
#[tokio::test(flavor = "multi_thread")]
async fn push_ten_thousand() {
    let e = env().await;
    let jobs: Vec<_> = (0..10_000)
        .map(|i| job(&format!("j{i}"), &format!("data{i}")))
        .collect();
    let new = e.backend.push(&e.queue, &jobs).await.unwrap();
    assert_eq!(new.len(), 10_000);
    assert!(new.iter().all(|b| *b));
    let active = e.list(&e.keys.active).await;
    assert_eq!(active.len(), 10_000);
    assert!(active
        .iter()
        .enumerate()
        .all(|(i, id)| *id == format!("j{i}")));
    let n: usize = e.q(&["HLEN", &e.keys.data]).await;
    assert_eq!(n, 10_000);
    assert_eq!(e.hget(&e.keys.data, "j9999").await.unwrap(), b"data9999");
    // Again: all duplicates.
    let again = e.backend.push(&e.queue, &jobs).await.unwrap();
    assert!(again.iter().all(|b| !*b));
}

/// After SCRIPT FLUSH, operations (single and chunked) load the scripts again.
#[tokio::test(flavor = "multi_thread")]
async fn survives_script_flush() {
    let e = env().await;
    e.backend.push(&e.queue, &[job("a", "A")]).await.unwrap();
    let _: () = e.q(&["SCRIPT", "FLUSH"]).await;
    assert_eq!(
        e.backend.push(&e.queue, &[job("b", "B")]).await.unwrap(),
        [true]
    );
    let _: () = e.q(&["SCRIPT", "FLUSH"]).await;
    let many: Vec<_> = (0..2500).map(|i| job(&format!("m{i}"), "x")).collect();
    let new = e.backend.push(&e.queue, &many).await.unwrap();
    assert!(new.len() == 2500 && new.iter().all(|b| *b));
    assert_eq!(e.list(&e.keys.active).await.len(), 2502);
    e.backend.load_scripts().await.unwrap();
    let loaded: Vec<bool> = e
        .q(&[
            "SCRIPT",
            "EXISTS",
            redis::Script::new(curlyq_lua::TAKE).get_hash(),
        ])
        .await;
    assert_eq!(loaded, [true]);
}

/// Every script compiles on the server.
#[tokio::test(flavor = "multi_thread")]
async fn every_script_loads() {
    let e = env().await;
    for (name, source) in curlyq_lua::ALL {
        let sha: String = e.q(&["SCRIPT", "LOAD", source]).await;
        assert_eq!(sha.len(), 40, "{name}");
    }
}

/// Connecting where nothing listens fails fast with Unavailable.
#[tokio::test(flavor = "multi_thread")]
async fn unreachable_server_is_unavailable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let started = Instant::now();
    let err = RedisBackend::connect(&format!("redis://127.0.0.1:{port}/"))
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Unavailable(_)), "{err:?}");
    eprintln!("{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

/// The password never shows in Debug or Display of the backend or of connect errors.
#[tokio::test(flavor = "multi_thread")]
async fn password_never_shown() {
    let password = "s3cr3t-Pa55word";
    // (RedisServer waits for a PONG at start, which --requirepass would refuse.)
    let server = RedisServer::start().unwrap();
    let set = server
        .command(&["CONFIG", "SET", "requirepass", password])
        .unwrap();
    assert!(set.starts_with("+OK"), "{set}");
    let url = format!("redis://:{password}@127.0.0.1:{}/0", server.port());
    let backend = RedisBackend::connect(&url).await.unwrap();
    let queue = curlyq_core::QueueName::new("pw").unwrap();
    assert_eq!(
        backend.push(&queue, &[job("a", "A")]).await.unwrap(),
        [true]
    );
    eprintln!("{backend}\n{backend:?}");
    for text in [format!("{backend:?}"), format!("{backend}")] {
        assert!(!text.contains(password), "{text}");
        assert!(text.contains("127.0.0.1"), "{text}");
    }

    let wrong = "wr0ng-Pa55word";
    let bad_urls = [
        format!("redis://:{wrong}@127.0.0.1:{}/0", server.port()),
        format!("redis://default:{wrong}@127.0.0.1:{}/0", server.port()),
        format!("redis://:{wrong}@127.0.0.1:1/0"),
        format!("redis://:{wrong}@127.0.0.1:{}/notanumber", server.port()),
    ];
    for url in &bad_urls {
        let err = RedisBackend::connect(url).await.unwrap_err();
        eprintln!("connect error: {err}");
        let mut texts = vec![format!("{err}"), format!("{err:?}")];
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            texts.push(format!("{s}"));
            texts.push(format!("{s:?}"));
            source = s.source();
        }
        for text in texts {
            assert!(!text.contains(wrong), "{text}");
        }
    }
    // A wrong password is Unavailable (the store cannot be used), not a panic.
    let err = RedisBackend::connect(&bad_urls[0]).await.unwrap_err();
    assert!(matches!(err, BackendError::Unavailable(_)), "{err:?}");
}

/// The waiter sees a set signal at once, times out after its timeout, and wakes on a push;
/// meanwhile other operations on the backend are not stalled by its blocking command.
#[tokio::test(flavor = "multi_thread")]
async fn waiter_blocks_on_its_own_connection() {
    let e = env().await;
    let mut waiter = e.backend.waiter(&e.queue).await.unwrap();

    let started = Instant::now();
    assert!(!waiter.wait(Duration::from_secs(1)).await.unwrap());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "{waited:?}"
    );

    // Block for up to 5 s (beyond the 500 ms default response timeout of redis-rs) while
    // other operations run.
    let task = tokio::spawn(async move {
        let started = Instant::now();
        let seen = waiter.wait(Duration::from_secs(5)).await;
        (seen, started.elapsed(), waiter)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let c = ConsumerId::from_string("c");
    for _ in 0..20 {
        let op = Instant::now();
        e.backend
            .register(&e.queue, &c, 1.0, Registration::Join)
            .await
            .unwrap();
        assert!(e.backend.take(&e.queue, &c, 1).await.unwrap().is_empty());
        assert!(
            op.elapsed() < Duration::from_millis(500),
            "{:?}",
            op.elapsed()
        );
    }
    assert!(!task.is_finished());
    e.backend.push(&e.queue, &[job("a", "A")]).await.unwrap();
    let (seen, waited, mut waiter) = task.await.unwrap();
    assert!(seen.unwrap());
    assert!(waited < Duration::from_secs(4), "{waited:?}");
    // The signal is still set (not consumed by the wait): returns at once.
    let started = Instant::now();
    assert!(waiter.wait(Duration::from_secs(5)).await.unwrap());
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(e.list(&e.keys.signal).await, ["1"]);

    // A long wait beyond the client's response timeout does not fail client-side.
    let _: () = e.q(&["DEL", &e.keys.signal]).await;
    let backend = RedisBackend::connect_with(
        &e.server.url(),
        curlyq_redis_rs::RedisConfig::default().with_response_timeout(Duration::from_millis(200)),
    )
    .await
    .unwrap();
    let mut waiter = backend.waiter(&e.queue).await.unwrap();
    assert!(!waiter.wait(Duration::from_millis(1500)).await.unwrap());
}

/// A wait whose future is dropped mid-block does not delay the next wait.
#[tokio::test(flavor = "multi_thread")]
async fn cancelled_wait_does_not_delay_the_next() {
    let e = env().await;
    let mut waiter = e.backend.waiter(&e.queue).await.unwrap();
    let cancelled = tokio::time::timeout(
        Duration::from_millis(200),
        waiter.wait(Duration::from_secs(10)),
    )
    .await;
    assert!(cancelled.is_err());
    e.backend.push(&e.queue, &[job("a", "A")]).await.unwrap();
    let started = Instant::now();
    assert!(waiter.wait(Duration::from_secs(10)).await.unwrap());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

/// After a server restart the backend reconnects (and reloads its scripts).
#[tokio::test(flavor = "multi_thread")]
async fn recovers_after_a_restart() {
    let mut e = env().await;
    e.backend.push(&e.queue, &[job("a", "A")]).await.unwrap();
    e.server.restart().unwrap();
    let mut last = None;
    for _ in 0..50 {
        match e.backend.push(&e.queue, &[job("b", "B")]).await {
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
    assert_eq!(last, Some(vec![true]));
}

/// An eviction policy other than `noeviction` is reported (consumers log it at start).
#[tokio::test(flavor = "multi_thread")]
async fn an_evicting_policy_is_a_settings_warning() {
    let server = RedisServer::start().unwrap();
    let backend = RedisBackend::connect(&server.url()).await.unwrap();
    server
        .command(&["CONFIG", "SET", "maxmemory-policy", "noeviction"])
        .unwrap();
    assert_eq!(
        backend.settings_warnings().await.unwrap(),
        Vec::<String>::new()
    );
    server
        .command(&["CONFIG", "SET", "maxmemory-policy", "volatile-lru"])
        .unwrap();
    let warnings = backend.settings_warnings().await.unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("volatile-lru") && warnings[0].contains("noeviction"));
}
