//! requeue_orphans against a real redis-server.

mod common;

use common::{env, job, Env};
use curlyq_core::{ConsumerId, OrphanSweep, QueueBackend, Registration};

async fn consumer_with(e: &Env, name: &str, heartbeat: f64, jobs: &[&str]) -> ConsumerId {
    let c = ConsumerId::from_string(name);
    let list: Vec<_> = jobs.iter().map(|id| job(id, id)).collect();
    e.backend.push(&e.queue, &list).await.unwrap();
    e.backend
        .register(&e.queue, &c, heartbeat, Registration::Join)
        .await
        .unwrap();
    let taken = e
        .backend
        .take(&e.queue, &c, jobs.len().max(1), 1_700_000_000.0)
        .await
        .unwrap();
    assert_eq!(taken.len(), jobs.len());
    c
}

fn sweep(expired_before: f64, max_jobs: usize, max_orphan_requeues: u32) -> OrphanSweep {
    OrphanSweep {
        expired_before,
        max_jobs,
        max_orphan_requeues,
        now: 1000.0,
    }
}

/// Oldest consumers first, max_jobs honoured, a live consumer never touched, emptied
/// consumers removed.
#[tokio::test(flavor = "multi_thread")]
async fn requeues_oldest_first_within_budget() {
    let e = env().await;
    let old = consumer_with(&e, "old", 100.0, &["o1", "o2", "o3"]).await;
    let mid = consumer_with(&e, "mid", 200.0, &["m1", "m2"]).await;
    let live = consumer_with(&e, "live", 900.0, &["l1", "l2"]).await;
    let empty = consumer_with(&e, "empty", 300.0, &[]).await;
    let _: () = e.q(&["DEL", &e.keys.signal]).await;

    let report = e
        .backend
        .requeue_orphans(&e.queue, sweep(500.0, 4, 0))
        .await
        .unwrap();
    assert_eq!((report.requeued, report.killed), (4, 0));
    assert_eq!(
        report.consumers_removed, 2,
        "old was emptied; empty had nothing"
    );
    assert_eq!(e.zscore(&e.keys.consumers, &e.inflight(&empty)).await, None);
    let active = e.list(&e.keys.active).await;
    assert_eq!(active.len(), 4);
    let mut first_three = active[..3].to_vec();
    first_three.sort();
    assert_eq!(first_three, ["o1", "o2", "o3"]);
    assert!(active[3] == "m1" || active[3] == "m2");
    assert!(e.signal_set().await);
    assert_eq!(e.zscore(&e.keys.consumers, &e.inflight(&old)).await, None);
    assert_eq!(e.members(&e.inflight(&mid)).await.len(), 1);
    assert_eq!(e.members(&e.inflight(&live)).await, ["l1", "l2"]);
    assert_eq!(
        e.zscore(&e.keys.consumers, &e.inflight(&live)).await,
        Some(900.0)
    );
    assert_eq!(e.hget(&e.keys.orphaned, "o1").await.unwrap(), b"1");

    let report = e
        .backend
        .requeue_orphans(&e.queue, sweep(500.0, 50, 0))
        .await
        .unwrap();
    assert_eq!(
        (report.requeued, report.killed, report.consumers_removed),
        (1, 0, 1)
    );
    assert_eq!(e.zscore(&e.keys.consumers, &e.inflight(&mid)).await, None);
    assert_eq!(e.members(&e.inflight(&live)).await, ["l1", "l2"]);
    let consumers: Vec<String> = e.q(&["ZRANGE", &e.keys.consumers, "0", "-1"]).await;
    assert_eq!(consumers, [e.inflight(&live)]);

    let report = e
        .backend
        .requeue_orphans(&e.queue, sweep(500.0, 50, 0))
        .await
        .unwrap();
    assert_eq!(report, Default::default());
}

/// A job orphaned max_orphan_requeues times goes to the dead set with a reason.
#[tokio::test(flavor = "multi_thread")]
async fn kills_a_job_orphaned_too_often() {
    let e = env().await;
    consumer_with(&e, "first", 100.0, &["crash"]).await;
    let report = e
        .backend
        .requeue_orphans(&e.queue, sweep(500.0, 10, 2))
        .await
        .unwrap();
    assert_eq!(
        (report.requeued, report.killed, report.consumers_removed),
        (1, 0, 1)
    );
    assert_eq!(e.hget(&e.keys.orphaned, "crash").await.unwrap(), b"1");

    let second = ConsumerId::from_string("second");
    e.backend
        .register(&e.queue, &second, 200.0, Registration::Join)
        .await
        .unwrap();
    assert_eq!(
        e.backend
            .take(&e.queue, &second, 1, 1_700_000_000.0)
            .await
            .unwrap()
            .len(),
        1
    );
    let report = e
        .backend
        .requeue_orphans(&e.queue, sweep(500.0, 10, 2))
        .await
        .unwrap();
    assert_eq!(
        (report.requeued, report.killed, report.consumers_removed),
        (0, 1, 1)
    );
    assert_eq!(e.zscore(&e.keys.dead, "crash").await, Some(1000.0));
    let reason = String::from_utf8(e.hget(&e.keys.reasons, "crash").await.unwrap()).unwrap();
    assert!(reason.starts_with("orphaned 2 times"), "{reason}");
    assert_eq!(e.hget(&e.keys.orphaned, "crash").await, None);
    assert_eq!(e.hget(&e.keys.data, "crash").await.unwrap(), b"crash");
    assert!(e.list(&e.keys.active).await.is_empty());
}

/// A consumer that heartbeated after it was listed is not touched (the script re-checks):
/// simulated by an expired_before in the past of every consumer.
#[tokio::test(flavor = "multi_thread")]
async fn never_touches_a_live_consumer() {
    let e = env().await;
    let c = consumer_with(&e, "c", 100.0, &["a", "b"]).await;
    let report = e
        .backend
        .requeue_orphans(&e.queue, sweep(99.999, 10, 0))
        .await
        .unwrap();
    assert_eq!(report, Default::default());
    assert_eq!(e.members(&e.inflight(&c)).await, ["a", "b"]);
    let report = e
        .backend
        .requeue_orphans(&e.queue, sweep(100.0, 10, 0))
        .await
        .unwrap();
    assert_eq!(
        report.requeued, 2,
        "a heartbeat exactly at expired_before is expired"
    );
}

/// 10,000 orphaned jobs of one consumer are all requeued (chunked, nothing lost).
#[tokio::test(flavor = "multi_thread")]
async fn requeues_ten_thousand() {
    let e = env().await;
    let jobs: Vec<_> = (0..10_000).map(|i| job(&format!("j{i}"), "x")).collect();
    assert!(e
        .backend
        .push(&e.queue, &jobs)
        .await
        .unwrap()
        .iter()
        .all(|b| *b));
    let c = ConsumerId::from_string("big");
    e.backend
        .register(&e.queue, &c, 1.0, Registration::Join)
        .await
        .unwrap();
    let taken = e
        .backend
        .take(&e.queue, &c, 10_000, 1_700_000_000.0)
        .await
        .unwrap();
    assert_eq!(taken.len(), 10_000);
    assert_eq!(taken[9_999].id, "j9999");
    let n: usize = e.q(&["SCARD", &e.inflight(&c)]).await;
    assert_eq!(n, 10_000);

    let report = e
        .backend
        .requeue_orphans(&e.queue, sweep(5.0, 10_000, 0))
        .await
        .unwrap();
    assert_eq!(
        (report.requeued, report.killed, report.consumers_removed),
        (10_000, 0, 1)
    );
    let mut active = e.list(&e.keys.active).await;
    active.sort();
    active.dedup();
    assert_eq!(active.len(), 10_000);
    let n: usize = e.q(&["HLEN", &e.keys.data]).await;
    assert_eq!(n, 10_000);
}

/// The script itself re-checks each listed consumer: one listed while expired that
/// heartbeated before the script ran is skipped (the race, replayed with a raw EVAL).
#[tokio::test(flavor = "multi_thread")]
async fn script_rechecks_listed_consumers() {
    let e = env().await;
    let live = consumer_with(&e, "live", 900.0, &["l1"]).await;
    let gone = ConsumerId::from_string("gone");
    let k = &e.keys;
    let (live_key, gone_key) = (e.inflight(&live), e.inflight(&gone));
    let minute = k.counts_minute(16);
    let reply: Vec<i64> = e
        .q(&[
            "EVAL",
            curlyq_lua::REQUEUE_ORPHANS,
            "11",
            &k.consumers,
            &k.active,
            &k.dead,
            &k.reasons,
            &k.orphaned,
            &k.signal,
            &k.errors,
            &k.counts,
            &minute,
            &live_key,
            &gone_key,
            "500",
            "10",
            "0",
            "1000",
            "90000",
        ])
        .await;
    assert_eq!(reply, [0, 0, 0]);
    assert_eq!(e.members(&live_key).await, ["l1"]);
    assert_eq!(e.zscore(&k.consumers, &live_key).await, Some(900.0));
}

/// An expired consumer's in-flight key of the wrong type fails the sweep before any write.
#[tokio::test(flavor = "multi_thread")]
async fn wrongtype_inflight_rejects_the_sweep() {
    let e = env().await;
    consumer_with(&e, "old", 100.0, &["a"]).await;
    let bad = ConsumerId::from_string("bad");
    e.backend
        .register(&e.queue, &bad, 50.0, Registration::Join)
        .await
        .unwrap();
    let _: () = e.q(&["SET", &e.inflight(&bad), "oops"]).await;
    let before = e.dump_all(&[&e.inflight(&bad)]).await;
    let err = e
        .backend
        .requeue_orphans(&e.queue, sweep(500.0, 10, 0))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, curlyq_core::BackendError::Rejected(m) if m.starts_with("WRONGTYPE")),
        "{err:?}"
    );
    assert_eq!(before, e.dump_all(&[&e.inflight(&bad)]).await);
}
