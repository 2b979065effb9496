//! The last errors of retried jobs (`Q:errors`) and the `trim_dead` sweep of those left
//! behind, seen in the raw keys of a real redis-server: what the backend-agnostic
//! contract cannot see (the sweep's cursor key, key types, a foreign cursor).

mod common;

use common::{env, ids, job, Env};
use curlyq_core::{
    BackendError, ConsumerId, DeadTrim, KillJob, OrphanSweep, QueueBackend, Registration, RetryJob,
    ERRORS_SWEEP,
};

fn trim(keep_at_most: usize) -> DeadTrim {
    DeadTrim {
        killed_before: 0.0,
        keep_at_most,
        max_jobs: 1000,
    }
}

async fn hlen(e: &Env, key: &str) -> usize {
    e.q(&["HLEN", key]).await
}

async fn exists(e: &Env, key: &str) -> bool {
    let n: usize = e.q(&["EXISTS", key]).await;
    n == 1
}

/// retry writes the error as given (bytes intact) and a retry without one deletes it.
#[tokio::test(flavor = "multi_thread")]
async fn retry_writes_the_error_field_as_sent() {
    let e = env().await;
    let c = ConsumerId::from_string("c1");
    e.backend
        .register(&e.queue, &c, 1.0, Registration::Join)
        .await
        .unwrap();
    e.backend.push(&e.queue, &[job("a", "A")]).await.unwrap();
    e.backend.take(&e.queue, &c, 1, 1.0).await.unwrap();
    let message = "ça a échoué: \"quoted\" \u{1f4a5}";
    let retry = |error: Option<&str>| RetryJob {
        id: "a".into(),
        data: b"A2".to_vec(),
        at: 5.0,
        error: error.map(str::to_owned),
    };
    assert_eq!(
        e.backend
            .retry(&e.queue, &c, &[retry(Some(message))], 0.0)
            .await
            .unwrap(),
        [true]
    );
    assert_eq!(
        e.hget(&e.keys.errors, "a").await.unwrap(),
        message.as_bytes()
    );
    e.backend.enqueue_due(&e.queue, 5.0, 1).await.unwrap();
    e.backend.take(&e.queue, &c, 1, 1.0).await.unwrap();
    assert_eq!(
        e.backend
            .retry(&e.queue, &c, &[retry(None)], 0.0)
            .await
            .unwrap(),
        [true]
    );
    assert!(
        !exists(&e, &e.keys.errors).await,
        "the hash is gone with its last field"
    );
}

/// A dead job's last error (which a Go kill leaves) goes when trim_dead removes the job.
#[tokio::test(flavor = "multi_thread")]
async fn trim_dead_removes_the_error_of_a_dead_job_it_trims() {
    let e = env().await;
    for id in ["d1", "d2"] {
        let _: () = e.q(&["ZADD", &e.keys.dead, "10", id]).await;
        let _: () = e.q(&["HSET", &e.keys.data, id, "data"]).await;
        let _: () = e
            .q(&["HSET", &e.keys.errors, id, "left by a Go kill"])
            .await;
    }
    let by_count = DeadTrim {
        killed_before: 0.0,
        keep_at_most: 1,
        max_jobs: 10,
    };
    // keep_at_most 1 trims one dead job; the other's entry has data: kept.
    assert_eq!(e.backend.trim_dead(&e.queue, by_count).await.unwrap(), 1);
    assert_eq!(e.hget(&e.keys.errors, "d1").await, None);
    assert_eq!(
        e.hget(&e.keys.errors, "d2").await.unwrap(),
        b"left by a Go kill"
    );
}

/// Beyond ERRORS_SWEEP entries the sweep goes by HSCAN pages: the cursor is kept between
/// calls, no entry of an existing job is removed, and the cursor key is deleted when
/// the pass ends, every leftover gone.
#[tokio::test(flavor = "multi_thread")]
async fn many_errors_are_swept_in_pages_with_a_cursor() {
    let e = env().await;
    let total = ERRORS_SWEEP + 500;
    let mut live = 0;
    for i in 0..total {
        let id = format!("j{i}");
        // 100-byte messages: past the compact encoding, as real ones are.
        let _: () = e.q(&["HSET", &e.keys.errors, &id, &"e".repeat(100)]).await;
        if i % 3 != 0 {
            let _: () = e.q(&["HSET", &e.keys.data, &id, "data"]).await;
            live += 1;
        }
    }
    e.backend.trim_dead(&e.queue, trim(0)).await.unwrap();
    assert!(
        exists(&e, &e.keys.errors_cursor).await,
        "a pass of more than ERRORS_SWEEP entries is under way after one call"
    );
    let left = hlen(&e, &e.keys.errors).await;
    assert!(
        left < total && left >= live,
        "{left} entries after one call"
    );
    for _ in 0..3 {
        e.backend.trim_dead(&e.queue, trim(0)).await.unwrap();
    }
    assert_eq!(hlen(&e, &e.keys.errors).await, live);
    assert!(
        !exists(&e, &e.keys.errors_cursor).await,
        "cursor kept after the pass"
    );
    let data: usize = e.q(&["HLEN", &e.keys.data]).await;
    assert_eq!(data, live, "no data touched");
}

/// While there are at most keep_at_most entries nothing is looked at, even leftovers.
#[tokio::test(flavor = "multi_thread")]
async fn errors_within_keep_at_most_are_not_looked_at() {
    let e = env().await;
    for i in 0..5 {
        let _: () = e
            .q(&["HSET", &e.keys.errors, &format!("gone{i}"), "x"])
            .await;
    }
    e.backend.trim_dead(&e.queue, trim(5)).await.unwrap();
    assert_eq!(hlen(&e, &e.keys.errors).await, 5);
    e.backend.trim_dead(&e.queue, trim(4)).await.unwrap();
    assert_eq!(hlen(&e, &e.keys.errors).await, 0);
}

/// A cursor key not written by curlyq (not a number, or too long for HSCAN) restarts the
/// pass: trim_dead neither fails nor stops halfway.
#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_cursor_restarts_the_pass() {
    let e = env().await;
    for i in 0..(ERRORS_SWEEP + 10) {
        let _: () = e
            .q(&["HSET", &e.keys.errors, &format!("gone{i}"), "x"])
            .await;
    }
    let _: () = e.q(&["ZADD", &e.keys.dead, "1", "d1"]).await;
    for cursor in ["not a cursor", "123456789012345678901234567890"] {
        let _: () = e.q(&["SET", &e.keys.errors_cursor, cursor]).await;
        let before = hlen(&e, &e.keys.errors).await;
        let trimmed = e
            .backend
            .trim_dead(
                &e.queue,
                DeadTrim {
                    killed_before: 2.0,
                    keep_at_most: 0,
                    max_jobs: 1000,
                },
            )
            .await
            .unwrap();
        assert!(trimmed <= 1, "{cursor:?}");
        assert!(
            hlen(&e, &e.keys.errors).await < before,
            "{cursor:?}: nothing swept"
        );
    }
}

/// Every script that touches Q:errors or Q:errors:cursor refuses a key of the wrong
/// type before writing anything: WRONGTYPE naming the key, every key byte-identical.
#[tokio::test(flavor = "multi_thread")]
async fn wrong_types_of_the_error_keys_are_refused_without_writing() {
    let e = env().await;
    let c = ConsumerId::from_string("c1");
    e.backend
        .register(&e.queue, &c, 1.0, Registration::Join)
        .await
        .unwrap();
    e.backend
        .push(&e.queue, &[job("a", "A"), job("b", "B"), job("c", "C")])
        .await
        .unwrap();
    e.backend.take(&e.queue, &c, 3, 1.0).await.unwrap();
    let _: () = e.q(&["ZADD", &e.keys.dead, "1", "old"]).await;
    let inflight = e.inflight(&c);
    let extra = [e.keys.errors.as_str(), &e.keys.errors_cursor, &inflight];

    let _: () = e.q(&["SET", &e.keys.errors, "not a hash"]).await;
    let before = e.dump_all(&extra).await;
    let refused = |result: Result<(), BackendError>, op: &str, key: &str| match result {
        Err(BackendError::Rejected(msg)) => {
            assert!(msg.starts_with("WRONGTYPE"), "{op}: {msg}");
            assert!(msg.contains(key), "{op}: {msg}");
        }
        other => panic!("{op}: expected Rejected, got {other:?}"),
    };
    let errors_key = e.keys.errors.clone();
    let retry = RetryJob {
        id: "a".into(),
        data: b"A2".to_vec(),
        at: 5.0,
        error: Some("boom".into()),
    };
    refused(
        e.backend.retry(&e.queue, &c, &[retry], 0.0).await.map(drop),
        "retry",
        &errors_key,
    );
    refused(
        e.backend
            .ack(&e.queue, &c, &ids(&["b"]), 0.0)
            .await
            .map(drop),
        "ack",
        &errors_key,
    );
    let kill = KillJob {
        id: "c".into(),
        data: None,
        reason: "r".into(),
    };
    refused(
        e.backend.kill(&e.queue, &c, &[kill], 2.0).await.map(drop),
        "kill",
        &errors_key,
    );
    refused(
        e.backend.trim_dead(&e.queue, trim(0)).await.map(drop),
        "trim_dead",
        &errors_key,
    );
    let sweep = OrphanSweep {
        expired_before: 10.0,
        max_jobs: 10,
        max_orphan_requeues: 1,
        now: 20.0,
    };
    refused(
        e.backend.requeue_orphans(&e.queue, sweep).await.map(drop),
        "requeue_orphans",
        &errors_key,
    );
    assert_eq!(
        before,
        e.dump_all(&extra).await,
        "every key is byte-identical"
    );

    let _: () = e.q(&["DEL", &e.keys.errors]).await;
    let _: () = e.q(&["HSET", &e.keys.errors_cursor, "f", "v"]).await;
    let before = e.dump_all(&extra).await;
    let cursor_key = e.keys.errors_cursor.clone();
    refused(
        e.backend.trim_dead(&e.queue, trim(0)).await.map(drop),
        "trim_dead",
        &cursor_key,
    );
    assert_eq!(
        before,
        e.dump_all(&extra).await,
        "every key is byte-identical"
    );
}
