//! The behaviour of `MemoryBackend`, operation by operation, read back through snapshots.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use curlyq_core::{
    BackendError, ConsumerId, DeadTrim, EncodedJob, KillJob, OrphanSweep, QueueBackend, QueueName,
    Registration, RetryJob, ScheduledJob, TakenJob,
};
use curlyq_testkit::{orphan_kill_reason, ManualRuntime, MemoryBackend, QueueSnapshot};

fn queue(name: &str) -> QueueName {
    QueueName::new(name).unwrap()
}

fn job(id: &str, data: &str) -> EncodedJob {
    EncodedJob {
        id: id.into(),
        data: data.as_bytes().to_vec(),
    }
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn taken_ids(taken: &[TakenJob]) -> Vec<String> {
    taken.iter().map(|t| t.id.clone()).collect()
}

fn c(name: &str) -> ConsumerId {
    ConsumerId::from_string(name)
}

fn sset(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

async fn joined(b: &MemoryBackend, q: &QueueName, name: &str, now: f64) -> ConsumerId {
    let consumer = c(name);
    assert!(b
        .register(q, &consumer, now, Registration::Join)
        .await
        .unwrap());
    consumer
}

/// Pushes `list` and lets a new consumer `name` (joined at `now`) take them all.
async fn holding(
    b: &MemoryBackend,
    q: &QueueName,
    name: &str,
    now: f64,
    list: &[&str],
) -> ConsumerId {
    let consumer = joined(b, q, name, now).await;
    let jobs: Vec<EncodedJob> = list.iter().map(|id| job(id, id)).collect();
    b.push(q, &jobs).await.unwrap();
    let taken = b
        .take(q, &consumer, list.len(), 1_700_000_000.0)
        .await
        .unwrap();
    assert_eq!(taken_ids(&taken), ids(list));
    consumer
}

fn sweep(expired_before: f64, max_jobs: usize, max_orphan_requeues: u32) -> OrphanSweep {
    OrphanSweep {
        expired_before,
        max_jobs,
        max_orphan_requeues,
        now: 500.0,
    }
}

#[tokio::test]
async fn push_stores_appends_and_signals() {
    let b = MemoryBackend::new();
    let q = queue("q");
    assert_eq!(b.snapshot(&q), QueueSnapshot::default());
    let added = b.push(&q, &[job("a", "A"), job("b", "B")]).await.unwrap();
    assert_eq!(added, vec![true, true]);
    let s = b.snapshot(&q);
    assert_eq!(s.active, ids(&["a", "b"]));
    assert_eq!(s.data["a"], b"A");
    assert!(s.signal);
}

#[tokio::test]
async fn push_deduplicates_and_first_in_batch_wins() {
    let b = MemoryBackend::new();
    let q = queue("q");
    let added = b
        .push(&q, &[job("a", "1"), job("a", "2"), job("b", "3")])
        .await
        .unwrap();
    assert_eq!(added, vec![true, false, true]);
    assert_eq!(b.push(&q, &[job("a", "4")]).await.unwrap(), vec![false]);
    let s = b.snapshot(&q);
    assert_eq!(s.active, ids(&["a", "b"]));
    assert_eq!(s.data["a"], b"1");
}

#[tokio::test]
async fn push_of_only_duplicates_sets_no_signal() {
    let b = MemoryBackend::new();
    let q = queue("q");
    let consumer = holding(&b, &q, "c", 1.0, &["a"]).await;
    b.take(&q, &consumer, 1, 1_700_000_000.0).await.unwrap(); // finds nothing: clears the signal
    assert!(!b.snapshot(&q).signal);
    assert_eq!(b.push(&q, &[job("a", "x")]).await.unwrap(), vec![false]);
    assert!(!b.snapshot(&q).signal);
    assert_eq!(b.push(&q, &[]).await.unwrap(), Vec::<bool>::new());
    assert!(!b.snapshot(&q).signal);
}

#[tokio::test]
async fn schedule_stores_without_signal_and_deduplicates() {
    let b = MemoryBackend::new();
    let q = queue("q");
    let jobs = [
        ScheduledJob {
            job: job("s", "1"),
            at: 20.0,
        },
        ScheduledJob {
            job: job("s", "2"),
            at: 5.0,
        },
        ScheduledJob {
            job: job("t", "3"),
            at: 10.5,
        },
    ];
    assert_eq!(
        b.schedule(&q, &jobs).await.unwrap(),
        vec![true, false, true]
    );
    b.push(&q, &[job("p", "p")]).await.unwrap();
    b.set_signal(&q, false);
    let again = [ScheduledJob {
        job: job("p", "changed"),
        at: 1.0,
    }];
    assert_eq!(b.schedule(&q, &again).await.unwrap(), vec![false]);
    let s = b.snapshot(&q);
    assert_eq!(
        s.scheduled,
        vec![("t".to_string(), 10.5), ("s".to_string(), 20.0)]
    );
    assert_eq!(s.data["s"], b"1");
    assert_eq!(s.data["p"], b"p");
    assert!(!s.signal);
    assert_eq!(s.active, ids(&["p"]));
}

#[tokio::test]
async fn register_join_and_heartbeat() {
    let b = MemoryBackend::new();
    let q = queue("q");
    let x = c("x");
    assert!(!b
        .register(&q, &x, 1.0, Registration::Heartbeat)
        .await
        .unwrap());
    assert!(b.snapshot(&q).consumers.is_empty());
    assert!(b.register(&q, &x, 2.0, Registration::Join).await.unwrap());
    assert!(b.register(&q, &x, 3.0, Registration::Join).await.unwrap());
    assert!(b
        .register(&q, &x, 4.5, Registration::Heartbeat)
        .await
        .unwrap());
    assert_eq!(b.snapshot(&q).consumers, vec![("x".to_string(), 4.5)]);
}

#[tokio::test]
async fn enqueue_due_orders_by_score_then_member_including_negative() {
    let b = MemoryBackend::new();
    let q = queue("q");
    let sched: Vec<ScheduledJob> = [
        ("b", 1.0),
        ("a", 1.0),
        ("neg", -10.0),
        ("ninf", f64::NEG_INFINITY),
        ("c", 1.0),
        ("later", 5.0),
    ]
    .iter()
    .map(|(id, at)| ScheduledJob {
        job: job(id, id),
        at: *at,
    })
    .collect();
    b.schedule(&q, &sched).await.unwrap();
    let due = b.enqueue_due(&q, 1.0, 4).await.unwrap();
    assert_eq!(due.moved, 4);
    assert_eq!(due.next_due, Some(1.0));
    let s = b.snapshot(&q);
    assert_eq!(s.active, ids(&["ninf", "neg", "a", "b"]));
    assert_eq!(
        s.scheduled,
        vec![("c".to_string(), 1.0), ("later".to_string(), 5.0)]
    );
    assert!(s.signal);

    b.set_signal(&q, false);
    let due = b.enqueue_due(&q, 0.5, 10).await.unwrap();
    assert_eq!((due.moved, due.next_due), (0, Some(1.0)));
    assert!(!b.snapshot(&q).signal, "no move, no signal");

    let due = b.enqueue_due(&q, 100.0, 10).await.unwrap();
    assert_eq!((due.moved, due.next_due), (2, None));
    assert_eq!(
        b.snapshot(&q).active,
        ids(&["ninf", "neg", "a", "b", "c", "later"])
    );
}

#[tokio::test]
async fn enqueue_due_with_max_zero_moves_nothing() {
    let b = MemoryBackend::new();
    let q = queue("q");
    b.schedule(
        &q,
        &[ScheduledJob {
            job: job("a", "a"),
            at: -1.0,
        }],
    )
    .await
    .unwrap();
    b.set_signal(&q, false);
    let due = b.enqueue_due(&q, 0.0, 0).await.unwrap();
    assert_eq!((due.moved, due.next_due), (0, Some(-1.0)));
    assert!(!b.snapshot(&q).signal, "nothing moved, so no signal");
}

#[tokio::test]
async fn take_requires_registration_and_takes_nothing() {
    let b = MemoryBackend::new();
    let q = queue("q");
    b.push(&q, &[job("a", "a")]).await.unwrap();
    let before = b.snapshot(&q);
    match b.take(&q, &c("ghost"), 10, 1_700_000_000.0).await {
        Err(BackendError::NotRegistered { queue, consumer }) => {
            assert_eq!(queue, "q");
            assert_eq!(consumer, "ghost");
        }
        other => panic!("expected NotRegistered, got {other:?}"),
    }
    assert_eq!(b.snapshot(&q), before);
}

#[tokio::test]
async fn take_pops_head_and_clears_signal_when_short() {
    let b = MemoryBackend::new();
    let q = queue("q");
    let x = joined(&b, &q, "x", 1.0).await;
    b.push(&q, &[job("a", "A"), job("b", "B"), job("c", "C")])
        .await
        .unwrap();
    assert!(b.take(&q, &x, 0, 1_700_000_000.0).await.unwrap().is_empty());
    assert!(b.snapshot(&q).signal, "take of 0 is not short");
    let taken = b.take(&q, &x, 2, 1_700_000_000.0).await.unwrap();
    assert_eq!(
        taken,
        vec![
            TakenJob::new("a", Some(b"A".to_vec())),
            TakenJob::new("b", Some(b"B".to_vec())),
        ]
    );
    let s = b.snapshot(&q);
    assert!(s.signal);
    assert_eq!(s.active, ids(&["c"]));
    assert_eq!(s.inflight["x"], sset(&["a", "b"]));
    let taken = b.take(&q, &x, 2, 1_700_000_000.0).await.unwrap();
    assert_eq!(taken_ids(&taken), ids(&["c"]));
    let s = b.snapshot(&q);
    assert!(!s.signal);
    assert_eq!(s.inflight["x"], sset(&["a", "b", "c"]));
}

#[tokio::test]
async fn take_returns_none_for_missing_data() {
    let b = MemoryBackend::new();
    let q = queue("q");
    let x = joined(&b, &q, "x", 1.0).await;
    b.push(&q, &[job("a", "A")]).await.unwrap();
    assert!(b.remove_data(&q, "a"));
    assert!(!b.remove_data(&q, "a"));
    b.push_raw_active(&q, "ghost");
    b.put_raw_data(&q, "poison", vec![0xc1]);
    b.push_raw_active(&q, "poison");
    let taken = b.take(&q, &x, 10, 1_700_000_000.0).await.unwrap();
    assert_eq!(
        taken,
        vec![
            TakenJob::new("a", None),
            TakenJob::new("ghost", None),
            TakenJob::new("poison", Some(vec![0xc1])),
        ]
    );
    assert_eq!(
        b.snapshot(&q).inflight["x"],
        sset(&["a", "ghost", "poison"])
    );
}

#[tokio::test]
async fn ack_only_owned() {
    let b = MemoryBackend::new();
    let q = queue("q");
    let owner = holding(&b, &q, "owner", 1.0, &["a", "b"]).await;
    let other = joined(&b, &q, "other", 1.0).await;
    let before = b.snapshot(&q);
    assert_eq!(
        b.ack(&q, &other, &ids(&["a", "b"]), 0.0).await.unwrap(),
        vec![false, false]
    );
    assert_eq!(b.snapshot(&q), before);
    assert_eq!(
        b.ack(&q, &owner, &ids(&["a", "zz", "a"]), 0.0)
            .await
            .unwrap(),
        vec![true, false, false]
    );
    let s = b.snapshot(&q);
    assert!(!s.data.contains_key("a"));
    assert_eq!(s.inflight["owner"], sset(&["b"]));
    assert_eq!(
        b.ack(&q, &owner, &ids(&["b"]), 0.0).await.unwrap(),
        vec![true]
    );
    let s = b.snapshot(&q);
    assert!(s.data.is_empty());
    assert!(s.inflight.is_empty(), "empty in-flight sets are dropped");
}

#[tokio::test]
async fn ack_retry_kill_clear_the_orphan_count() {
    let b = MemoryBackend::new();
    let q = queue("q");
    b.push(&q, &[job("a", "a"), job("r", "r"), job("k", "k")])
        .await
        .unwrap();
    let dying = joined(&b, &q, "dying", 1.0).await;
    b.take(&q, &dying, 3, 1_700_000_000.0).await.unwrap();
    let report = b.requeue_orphans(&q, sweep(10.0, 10, 5)).await.unwrap();
    assert_eq!(report.requeued, 3);
    let orphaned: BTreeMap<String, u32> = [("a", 1), ("k", 1), ("r", 1)]
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    assert_eq!(b.snapshot(&q).orphaned, orphaned);
    let x = joined(&b, &q, "x", 100.0).await;
    b.take(&q, &x, 3, 1_700_000_000.0).await.unwrap();
    b.ack(&q, &x, &ids(&["a"]), 0.0).await.unwrap();
    b.retry(
        &q,
        &x,
        &[RetryJob {
            error: None,
            id: "r".into(),
            data: b"r2".to_vec(),
            at: 50.0,
        }],
        0.0,
    )
    .await
    .unwrap();
    b.kill(
        &q,
        &x,
        &[KillJob {
            id: "k".into(),
            data: None,
            reason: "why".into(),
        }],
        60.0,
    )
    .await
    .unwrap();
    assert!(b.snapshot(&q).orphaned.is_empty());
}

#[tokio::test]
async fn retry_only_owned() {
    let b = MemoryBackend::new();
    let q = queue("q");
    let owner = holding(&b, &q, "owner", 1.0, &["a", "b"]).await;
    let other = joined(&b, &q, "other", 1.0).await;
    let retry = |id: &str, at: f64| RetryJob {
        error: None,
        id: id.into(),
        data: format!("{id}-2").into_bytes(),
        at,
    };
    let before = b.snapshot(&q);
    assert_eq!(
        b.retry(&q, &other, &[retry("a", 9.0)], 0.0).await.unwrap(),
        vec![false]
    );
    assert_eq!(b.snapshot(&q), before);
    assert_eq!(
        b.retry(&q, &owner, &[retry("a", 9.0), retry("nope", 9.0)], 0.0)
            .await
            .unwrap(),
        vec![true, false]
    );
    let s = b.snapshot(&q);
    assert_eq!(s.scheduled, vec![("a".to_string(), 9.0)]);
    assert_eq!(s.data["a"], b"a-2");
    assert!(!s.data.contains_key("nope"));
    assert_eq!(s.inflight["owner"], sset(&["b"]));
}

#[tokio::test]
async fn kill_only_owned_keeps_or_overwrites_data() {
    let b = MemoryBackend::new();
    let q = queue("q");
    let owner = holding(&b, &q, "owner", 1.0, &["a", "b", "c"]).await;
    let other = joined(&b, &q, "other", 1.0).await;
    let kill = |id: &str, data: Option<&str>| KillJob {
        id: id.into(),
        data: data.map(|d| d.as_bytes().to_vec()),
        reason: format!("reason {id}"),
    };
    let before = b.snapshot(&q);
    assert_eq!(
        b.kill(&q, &other, &[kill("a", Some("x"))], 7.0)
            .await
            .unwrap(),
        vec![false]
    );
    assert_eq!(b.snapshot(&q), before);
    assert_eq!(
        b.kill(
            &q,
            &owner,
            &[kill("a", Some("new")), kill("b", None), kill("zz", None)],
            7.0
        )
        .await
        .unwrap(),
        vec![true, true, false]
    );
    let s = b.snapshot(&q);
    assert_eq!(s.dead, vec![("a".to_string(), 7.0), ("b".to_string(), 7.0)]);
    assert_eq!(s.data["a"], b"new");
    assert_eq!(s.data["b"], b"b");
    assert_eq!(s.reasons["a"], "reason a");
    assert_eq!(s.reasons["b"], "reason b");
    assert!(!s.reasons.contains_key("zz"));
    assert_eq!(s.inflight["owner"], sset(&["c"]));
}

#[tokio::test]
async fn give_back_only_owned() {
    let b = MemoryBackend::new();
    let q = queue("q");
    let owner = holding(&b, &q, "owner", 1.0, &["a", "b", "c"]).await;
    let other = joined(&b, &q, "other", 1.0).await;
    b.set_signal(&q, false);
    assert_eq!(b.give_back(&q, &other, &ids(&["a"])).await.unwrap(), 0);
    assert!(!b.snapshot(&q).signal);
    b.push_raw_active(&q, "x");
    assert_eq!(
        b.give_back(&q, &owner, &ids(&["c", "zz", "a", "c"]))
            .await
            .unwrap(),
        2
    );
    let s = b.snapshot(&q);
    assert!(s.signal);
    assert_eq!(s.active, ids(&["x", "c", "a"]));
    assert_eq!(s.inflight["owner"], sset(&["b"]));
    assert_eq!(s.data["a"], b"a");
}

#[tokio::test]
async fn requeue_orphans_oldest_consumer_first_within_max_jobs() {
    let b = MemoryBackend::new();
    let q = queue("q");
    holding(&b, &q, "mid", 20.0, &["m3", "m1", "m2"]).await;
    holding(&b, &q, "old", 10.0, &["o2", "o1"]).await;
    // Two expired consumers with one score: ties go by member bytes ("tie-a" first).
    holding(&b, &q, "tie-b", 15.0, &["tb"]).await;
    holding(&b, &q, "tie-a", 15.0, &["ta"]).await;
    joined(&b, &q, "idle", 30.0).await;
    holding(&b, &q, "live", 99.0, &["l"]).await;
    b.set_signal(&q, false);

    let report = b.requeue_orphans(&q, sweep(30.0, 5, 0)).await.unwrap();
    assert_eq!(report.requeued, 5);
    assert_eq!(report.killed, 0);
    // old, tie-a and tie-b emptied; mid keeps m3; idle (already empty) removed too.
    assert_eq!(report.consumers_removed, 4);
    let s = b.snapshot(&q);
    assert_eq!(s.active, ids(&["o1", "o2", "ta", "tb", "m1"]));
    assert_eq!(
        s.consumers,
        vec![("mid".to_string(), 20.0), ("live".to_string(), 99.0)]
    );
    assert_eq!(s.inflight["mid"], sset(&["m2", "m3"]));
    assert_eq!(s.inflight["live"], sset(&["l"]));
    assert!(s.signal);
    assert!(s.orphaned.values().all(|&n| n == 1));
    assert_eq!(s.orphaned.len(), 5);

    let report = b.requeue_orphans(&q, sweep(30.0, 0, 0)).await.unwrap();
    assert_eq!((report.requeued, report.consumers_removed), (0, 0));
    let report = b.requeue_orphans(&q, sweep(30.0, 10, 0)).await.unwrap();
    assert_eq!((report.requeued, report.consumers_removed), (2, 1));
    let s = b.snapshot(&q);
    assert_eq!(s.active, ids(&["o1", "o2", "ta", "tb", "m1", "m2", "m3"]));
    assert_eq!(s.consumers, vec![("live".to_string(), 99.0)]);
}

#[tokio::test]
async fn requeue_orphans_without_expired_consumers_changes_nothing() {
    let b = MemoryBackend::new();
    let q = queue("q");
    holding(&b, &q, "live", 50.0, &["a"]).await;
    b.set_signal(&q, false);
    let before = b.snapshot(&q);
    let report = b.requeue_orphans(&q, sweep(49.9, 10, 1)).await.unwrap();
    assert_eq!(report, Default::default());
    assert_eq!(b.snapshot(&q), before);
}

#[tokio::test]
async fn requeue_orphans_kills_a_crash_looping_job() {
    let b = MemoryBackend::new();
    let q = queue("q");
    b.push(&q, &[job("crash", "bytes")]).await.unwrap();
    for round in 1..=2u32 {
        let victim = joined(&b, &q, &format!("v{round}"), 1.0).await;
        b.take(&q, &victim, 1, 1_700_000_000.0).await.unwrap();
        let report = b.requeue_orphans(&q, sweep(10.0, 10, 3)).await.unwrap();
        assert_eq!((report.requeued, report.killed), (1, 0));
        assert_eq!(b.snapshot(&q).orphaned["crash"], round);
    }
    let victim = joined(&b, &q, "v3", 1.0).await;
    b.take(&q, &victim, 1, 1_700_000_000.0).await.unwrap();
    b.set_signal(&q, false);
    let report = b.requeue_orphans(&q, sweep(10.0, 10, 3)).await.unwrap();
    assert_eq!(report.requeued, 0);
    assert_eq!(report.killed, 1);
    assert_eq!(report.consumers_removed, 1);
    let s = b.snapshot(&q);
    assert_eq!(s.dead, vec![("crash".to_string(), 500.0)]);
    assert_eq!(s.reasons["crash"], orphan_kill_reason(3));
    assert!(s.reasons["crash"].starts_with("orphaned 3 times: its consumer stopped heartbeating"));
    assert!(s.orphaned.is_empty());
    assert_eq!(s.data["crash"], b"bytes", "data kept as it was");
    assert!(s.active.is_empty());
    assert!(!s.signal, "a sweep that only killed sets no signal");
}

#[tokio::test]
async fn requeue_orphans_kill_counts_toward_max_jobs() {
    let b = MemoryBackend::new();
    let q = queue("q");
    let dying = holding(&b, &q, "dying", 1.0, &["a", "b", "c"]).await;
    let report = b.requeue_orphans(&q, sweep(5.0, 10, 1)).await.unwrap();
    assert_eq!((report.requeued, report.killed), (0, 3));
    let _ = dying;
    let s = b.snapshot(&q);
    assert_eq!(s.dead.len(), 3);
    assert!(s.consumers.is_empty());

    let b = MemoryBackend::new();
    holding(&b, &q, "dying", 1.0, &["a", "b", "c"]).await;
    let report = b.requeue_orphans(&q, sweep(5.0, 2, 1)).await.unwrap();
    assert_eq!(
        (report.requeued, report.killed, report.consumers_removed),
        (0, 2, 0)
    );
    let s = b.snapshot(&q);
    assert_eq!(s.inflight["dying"], sset(&["c"]));
}

async fn dead_queue(b: &MemoryBackend, q: &QueueName) {
    let list = ["d1", "d2", "d3", "d4", "d5"];
    let owner = holding(b, q, "owner", 1.0, &list).await;
    for (i, id) in list.iter().enumerate() {
        b.kill(
            q,
            &owner,
            &[KillJob {
                id: id.to_string(),
                data: None,
                reason: "r".into(),
            }],
            10.0 * (i as f64 + 1.0),
        )
        .await
        .unwrap();
    }
}

fn dead_ids(s: &QueueSnapshot) -> Vec<String> {
    s.dead.iter().map(|(id, _)| id.clone()).collect()
}

#[tokio::test]
async fn trim_dead_by_age_then_count_within_max_jobs() {
    let b = MemoryBackend::new();
    let q = queue("q");
    dead_queue(&b, &q).await;
    b.put_raw_data(&q, "d1", b"x".to_vec());
    let removed = b
        .trim_dead(
            &q,
            DeadTrim {
                killed_before: 30.0,
                keep_at_most: 10,
                max_jobs: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(removed, 2);
    let s = b.snapshot(&q);
    assert_eq!(dead_ids(&s), ids(&["d3", "d4", "d5"]));
    assert!(!s.data.contains_key("d1") && !s.data.contains_key("d2"));
    assert!(!s.reasons.contains_key("d1"));
    assert!(s.reasons.contains_key("d3"));

    let removed = b
        .trim_dead(
            &q,
            DeadTrim {
                killed_before: 0.0,
                keep_at_most: 1,
                max_jobs: 1,
            },
        )
        .await
        .unwrap();
    assert_eq!(removed, 1, "capped at max_jobs");
    assert_eq!(dead_ids(&b.snapshot(&q)), ids(&["d4", "d5"]));
    let removed = b
        .trim_dead(
            &q,
            DeadTrim {
                killed_before: 0.0,
                keep_at_most: 1,
                max_jobs: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(removed, 1);
    let s = b.snapshot(&q);
    assert_eq!(dead_ids(&s), ids(&["d5"]));
    assert_eq!(s.data.keys().cloned().collect::<Vec<_>>(), ids(&["d5"]));
}

#[tokio::test]
async fn trim_dead_takes_the_larger_of_age_and_count() {
    let b = MemoryBackend::new();
    let q = queue("q");
    dead_queue(&b, &q).await;
    // One is too old, but keeping at most 2 means 3 go.
    let removed = b
        .trim_dead(
            &q,
            DeadTrim {
                killed_before: 15.0,
                keep_at_most: 2,
                max_jobs: 100,
            },
        )
        .await
        .unwrap();
    assert_eq!(removed, 3);
    assert_eq!(dead_ids(&b.snapshot(&q)), ids(&["d4", "d5"]));
    // Four would be too old; keep_at_most allows all.
    let removed = b
        .trim_dead(
            &q,
            DeadTrim {
                killed_before: 45.0,
                keep_at_most: 100,
                max_jobs: 100,
            },
        )
        .await
        .unwrap();
    assert_eq!(removed, 1);
    assert_eq!(dead_ids(&b.snapshot(&q)), ids(&["d5"]));
}

#[tokio::test]
async fn trim_dead_removes_orphan_counters_and_reasons() {
    let b = MemoryBackend::new();
    let q = queue("q");
    holding(&b, &q, "dying", 1.0, &["a"]).await;
    b.requeue_orphans(&q, sweep(5.0, 10, 1)).await.unwrap();
    let s = b.snapshot(&q);
    assert_eq!(dead_ids(&s), ids(&["a"]));
    let removed = b
        .trim_dead(
            &q,
            DeadTrim {
                killed_before: 1000.0,
                keep_at_most: 0,
                max_jobs: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(removed, 1);
    let s = b.snapshot(&q);
    assert!(s.dead.is_empty() && s.data.is_empty() && s.reasons.is_empty());
    assert!(s.orphaned.is_empty());
}

#[tokio::test]
async fn unregister_only_when_nothing_in_flight() {
    let b = MemoryBackend::new();
    let q = queue("q");
    let busy = holding(&b, &q, "busy", 1.0, &["a"]).await;
    let idle = joined(&b, &q, "idle", 1.0).await;
    assert!(!b.unregister(&q, &busy).await.unwrap());
    assert!(b.unregister(&q, &idle).await.unwrap());
    assert_eq!(b.snapshot(&q).consumers, vec![("busy".to_string(), 1.0)]);
    b.ack(&q, &busy, &ids(&["a"]), 0.0).await.unwrap();
    assert!(b.unregister(&q, &busy).await.unwrap());
    assert!(b.snapshot(&q).consumers.is_empty());
    assert!(
        b.unregister(&q, &c("never")).await.unwrap(),
        "a consumer holding nothing is unregistered even if it was not registered"
    );
}

#[tokio::test]
async fn nan_scores_are_rejected_before_any_write() {
    let b = MemoryBackend::new();
    let q = queue("q");
    let jobs = [
        ScheduledJob {
            job: job("ok", "x"),
            at: 1.0,
        },
        ScheduledJob {
            job: job("bad", "x"),
            at: f64::NAN,
        },
    ];
    assert!(matches!(
        b.schedule(&q, &jobs).await,
        Err(BackendError::Rejected(_))
    ));
    assert_eq!(b.snapshot(&q), QueueSnapshot::default());
    assert!(matches!(
        b.register(&q, &c("x"), f64::NAN, Registration::Join).await,
        Err(BackendError::Rejected(_))
    ));
    assert!(matches!(
        b.enqueue_due(&q, f64::NAN, 10).await,
        Err(BackendError::Rejected(_))
    ));
    assert_eq!(b.snapshot(&q), QueueSnapshot::default());
}

#[tokio::test]
async fn queues_are_independent_and_clones_share_state() {
    let b = MemoryBackend::new();
    let other_handle = b.clone();
    let (q1, q2) = (queue("one"), queue("two"));
    b.push(&q1, &[job("a", "1")]).await.unwrap();
    assert_eq!(
        other_handle.push(&q2, &[job("a", "2")]).await.unwrap(),
        vec![true]
    );
    assert_eq!(other_handle.snapshot(&q1).data["a"], b"1");
    assert_eq!(b.snapshot(&q2).data["a"], b"2");
    assert_eq!(b.queues(), vec![q1, q2]);
}

// ---- waiter on the manual clock ------------------------------------------------------

fn manual() -> (Arc<ManualRuntime>, MemoryBackend) {
    let rt = Arc::new(ManualRuntime::new(UNIX_EPOCH + Duration::from_secs(1_000)));
    let backend = MemoryBackend::with_runtime(rt.clone());
    (rt, backend)
}

#[tokio::test(flavor = "current_thread")]
async fn wait_times_out_only_when_the_clock_passes_the_timeout() {
    let (rt, b) = manual();
    let q = queue("q");
    let mut waiter = b.waiter(&q).await.unwrap();
    let task = tokio::spawn(async move { waiter.wait(Duration::from_secs(10)).await });
    ManualRuntime::settle().await;
    assert_eq!(rt.pending_timers(), 1);
    assert!(!task.is_finished());
    rt.advance_and_settle(Duration::from_millis(9_999)).await;
    assert!(!task.is_finished(), "timed out before the clock reached it");
    rt.advance_and_settle(Duration::from_millis(1)).await;
    assert!(task.is_finished());
    assert!(!task.await.unwrap().unwrap());
    assert_eq!(rt.pending_timers(), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn wait_returns_true_when_a_push_happens_while_waiting() {
    let (rt, b) = manual();
    let q = queue("q");
    let mut waiter = b.waiter(&q).await.unwrap();
    let task = tokio::spawn(async move { waiter.wait(Duration::from_secs(10)).await });
    ManualRuntime::settle().await;
    assert!(!task.is_finished());
    b.push(&q, &[job("a", "a")]).await.unwrap();
    ManualRuntime::settle().await;
    assert!(task.is_finished(), "the push did not wake the waiter");
    assert!(task.await.unwrap().unwrap());
    assert_eq!(rt.elapsed(), Duration::ZERO);
    assert_eq!(rt.pending_timers(), 0, "the dropped sleep left its timer");
}

#[tokio::test(flavor = "current_thread")]
async fn wait_returns_at_once_when_the_signal_is_set_and_keeps_it() {
    let (rt, b) = manual();
    let q = queue("q");
    b.push(&q, &[job("a", "a")]).await.unwrap();
    let mut waiter = b.waiter(&q).await.unwrap();
    assert!(waiter.wait(Duration::from_secs(10)).await.unwrap());
    assert!(waiter.wait(Duration::from_secs(10)).await.unwrap());
    assert!(b.snapshot(&q).signal);
    assert_eq!(rt.pending_timers(), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn wait_with_zero_timeout_only_checks() {
    let (_rt, b) = manual();
    let q = queue("q");
    let mut waiter = b.waiter(&q).await.unwrap();
    assert!(!waiter.wait(Duration::ZERO).await.unwrap());
    b.set_signal(&q, true);
    assert!(waiter.wait(Duration::ZERO).await.unwrap());
}

#[tokio::test(flavor = "current_thread")]
async fn wait_keeps_waiting_when_the_signal_is_cleared_before_it_looks() {
    let (rt, b) = manual();
    let q = queue("q");
    let x = joined(&b, &q, "x", 1.0).await;
    let mut waiter = b.waiter(&q).await.unwrap();
    let task = tokio::spawn(async move { waiter.wait(Duration::from_secs(5)).await });
    ManualRuntime::settle().await;
    // Set and clear in one go: the waiter is notified but finds no signal.
    b.push(&q, &[job("a", "a")]).await.unwrap();
    b.take(&q, &x, 10, 1_700_000_000.0).await.unwrap();
    ManualRuntime::settle().await;
    assert!(!task.is_finished(), "returned although the signal was gone");
    b.push(&q, &[job("b", "b")]).await.unwrap();
    ManualRuntime::settle().await;
    assert!(task.await.unwrap().unwrap());
    assert_eq!(rt.elapsed(), Duration::ZERO);
}

#[tokio::test(flavor = "current_thread")]
async fn wakes_only_waiters_of_the_signalled_queue() {
    let (rt, b) = manual();
    let (q1, q2) = (queue("one"), queue("two"));
    let mut waiter = b.waiter(&q1).await.unwrap();
    let task = tokio::spawn(async move { waiter.wait(Duration::from_secs(5)).await });
    ManualRuntime::settle().await;
    b.push(&q2, &[job("a", "a")]).await.unwrap();
    ManualRuntime::settle().await;
    assert!(!task.is_finished());
    rt.advance_and_settle(Duration::from_secs(5)).await;
    assert!(!task.await.unwrap().unwrap());
}
