//! Each operation of the backend against a real redis-server, owned and not-owned cases.

mod common;

use common::{env, ids, job};
use curlyq_core::{
    BackendError, ConsumerId, KillJob, QueueBackend, Registration, RetryJob, ScheduledJob,
};

/// push stores new jobs in order, sets the signal, and leaves an existing ID untouched.
#[tokio::test(flavor = "multi_thread")]
async fn push_dedups_and_signals() {
    let e = env().await;
    let new = e
        .backend
        .push(&e.queue, &[job("a", "A1"), job("b", "B"), job("a", "A2")])
        .await
        .unwrap();
    assert_eq!(new, [true, true, false]);
    assert_eq!(e.list(&e.keys.active).await, ["a", "b"]);
    assert_eq!(e.hget(&e.keys.data, "a").await.unwrap(), b"A1");
    assert_eq!(e.list(&e.keys.signal).await, ["1"]);

    let before: Vec<u8> = e.q(&["DUMP", &e.keys.data]).await;
    let again = e
        .backend
        .push(&e.queue, &[job("a", "other")])
        .await
        .unwrap();
    assert_eq!(again, [false]);
    let after: Vec<u8> = e.q(&["DUMP", &e.keys.data]).await;
    assert_eq!(before, after, "the stored job is byte-identical");
    assert_eq!(e.list(&e.keys.active).await, ["a", "b"]);
    assert!(e.backend.push(&e.queue, &[]).await.unwrap().is_empty());
}

/// schedule stores new jobs with their exact (fractional) scores and sets the signal
/// only when one is new.
#[tokio::test(flavor = "multi_thread")]
async fn schedule_dedups_with_exact_scores() {
    let e = env().await;
    let at = 1_700_000_000.123_456_7_f64;
    let jobs = [
        ScheduledJob {
            job: job("s1", "S1"),
            at,
        },
        ScheduledJob {
            job: job("s2", "S2"),
            at: -62_135_596_800.0,
        },
        ScheduledJob {
            job: job("s1", "dup"),
            at: 5.0,
        },
    ];
    assert_eq!(
        e.backend.schedule(&e.queue, &jobs).await.unwrap(),
        [true, true, false]
    );
    assert_eq!(e.zscore(&e.keys.scheduled, "s1").await, Some(at));
    assert_eq!(
        e.zscore(&e.keys.scheduled, "s2").await,
        Some(-62_135_596_800.0)
    );
    assert_eq!(e.hget(&e.keys.data, "s1").await.unwrap(), b"S1");
    assert!(
        e.signal_set().await,
        "new jobs scheduled: the signal is set"
    );
    // An existing pushed job is not scheduled either, and no signal is set for it.
    e.backend.push(&e.queue, &[job("p", "P")]).await.unwrap();
    let _: () = e.q(&["DEL", &e.keys.signal]).await;
    let dup = [ScheduledJob {
        job: job("p", "x"),
        at: 1.0,
    }];
    assert_eq!(e.backend.schedule(&e.queue, &dup).await.unwrap(), [false]);
    assert_eq!(e.zscore(&e.keys.scheduled, "p").await, None);
    assert!(!e.signal_set().await, "nothing new: no signal");
    // NaN is refused before anything is sent.
    let nan = [ScheduledJob {
        job: job("n", "x"),
        at: f64::NAN,
    }];
    assert!(matches!(
        e.backend.schedule(&e.queue, &nan).await,
        Err(BackendError::Rejected(_))
    ));
}

/// Join always registers; a heartbeat refreshes only a registered consumer.
#[tokio::test(flavor = "multi_thread")]
async fn register_join_and_heartbeat() {
    let e = env().await;
    let c = ConsumerId::from_string("c1");
    let member = e.inflight(&c);
    assert!(!e
        .backend
        .register(&e.queue, &c, 10.0, Registration::Heartbeat)
        .await
        .unwrap());
    assert_eq!(e.zscore(&e.keys.consumers, &member).await, None);
    assert!(e
        .backend
        .register(&e.queue, &c, 10.5, Registration::Join)
        .await
        .unwrap());
    assert_eq!(e.zscore(&e.keys.consumers, &member).await, Some(10.5));
    assert!(e
        .backend
        .register(&e.queue, &c, 20.25, Registration::Heartbeat)
        .await
        .unwrap());
    assert_eq!(e.zscore(&e.keys.consumers, &member).await, Some(20.25));
}

/// enqueue_due moves due jobs lowest score first, negative ones included, removes exactly
/// those, and reports the next due score.
#[tokio::test(flavor = "multi_thread")]
async fn enqueue_due_moves_exactly_the_due_members() {
    let e = env().await;
    let s = &e.keys.scheduled;
    let _: () = e
        .q(&[
            "ZADD",
            s,
            "-62135596800",
            "zero",
            "1",
            "j1",
            "2.5",
            "j2",
            "3",
            "j3",
            "5000",
            "later",
        ])
        .await;
    let report = e.backend.enqueue_due(&e.queue, 10.0, 2).await.unwrap();
    assert_eq!(report.moved, 2);
    assert_eq!(report.next_due, Some(2.5));
    assert_eq!(e.list(&e.keys.active).await, ["zero", "j1"]);
    let left: Vec<String> = e.q(&["ZRANGE", s, "0", "-1"]).await;
    assert_eq!(left, ["j2", "j3", "later"]);
    assert!(e.signal_set().await);

    let report = e.backend.enqueue_due(&e.queue, 10.0, 10).await.unwrap();
    assert_eq!(report.moved, 2);
    assert_eq!(report.next_due, Some(5000.0));
    assert_eq!(e.list(&e.keys.active).await, ["zero", "j1", "j2", "j3"]);

    let _: () = e.q(&["DEL", &e.keys.signal]).await;
    let report = e.backend.enqueue_due(&e.queue, 10.0, 10).await.unwrap();
    assert_eq!(report.moved, 0);
    assert_eq!(report.next_due, Some(5000.0));
    assert!(!e.signal_set().await, "no signal when nothing moved");

    let report = e.backend.enqueue_due(&e.queue, 5000.0, 0).await.unwrap();
    assert_eq!(report.moved, 0, "max 0 moves nothing");
    let report = e.backend.enqueue_due(&e.queue, 5000.0, 1).await.unwrap();
    assert_eq!((report.moved, report.next_due), (1, None));
}

/// enqueue_due with max above MAX_BATCH (several script calls in one pipeline).
#[tokio::test(flavor = "multi_thread")]
async fn enqueue_due_beyond_one_batch() {
    let e = env().await;
    let jobs: Vec<ScheduledJob> = (0..2500)
        .map(|i| ScheduledJob {
            job: job(&format!("d{i}"), "x"),
            at: f64::from(i) - 1000.0,
        })
        .collect();
    assert!(e
        .backend
        .schedule(&e.queue, &jobs)
        .await
        .unwrap()
        .iter()
        .all(|b| *b));
    let report = e
        .backend
        .enqueue_due(&e.queue, 1_000_000.0, 2400)
        .await
        .unwrap();
    assert_eq!(report.moved, 2400);
    assert_eq!(report.next_due, Some(1400.0));
    let active = e.list(&e.keys.active).await;
    assert_eq!(active.len(), 2400);
    assert_eq!(active[0], "d0");
    assert_eq!(active[2399], "d2399");
}

/// take: an unregistered consumer takes nothing; a registered one takes from the head and
/// the signal is cleared only when fewer than max were there.
#[tokio::test(flavor = "multi_thread")]
async fn take_owned_and_unregistered() {
    let e = env().await;
    e.backend
        .push(&e.queue, &[job("a", "A"), job("b", "B"), job("c", "C")])
        .await
        .unwrap();
    let c = ConsumerId::from_string("c1");
    let err = e
        .backend
        .take(&e.queue, &c, 2, 1_700_000_000.0)
        .await
        .unwrap_err();
    match err {
        BackendError::NotRegistered { queue, consumer } => {
            assert_eq!(queue, "{q}");
            assert_eq!(consumer, "c1");
        }
        other => panic!("expected NotRegistered, got {other:?}"),
    }
    assert_eq!(e.list(&e.keys.active).await, ["a", "b", "c"]);
    assert!(e.members(&e.inflight(&c)).await.is_empty());
    assert!(e.signal_set().await);

    e.backend
        .register(&e.queue, &c, 1.0, Registration::Join)
        .await
        .unwrap();
    let taken = e
        .backend
        .take(&e.queue, &c, 2, 1_700_000_000.0)
        .await
        .unwrap();
    assert_eq!(taken.len(), 2);
    assert_eq!(
        (taken[0].id.as_str(), taken[0].data.as_deref()),
        ("a", Some(&b"A"[..]))
    );
    assert_eq!(
        (taken[1].id.as_str(), taken[1].data.as_deref()),
        ("b", Some(&b"B"[..]))
    );
    assert_eq!(e.members(&e.inflight(&c)).await, ["a", "b"]);
    assert!(e.signal_set().await, "max were there: the signal stays");

    let taken = e
        .backend
        .take(&e.queue, &c, 5, 1_700_000_000.0)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert!(
        !e.signal_set().await,
        "fewer than max: the signal is cleared"
    );
    assert_eq!(e.members(&e.inflight(&c)).await, ["a", "b", "c"]);
    assert!(e
        .backend
        .take(&e.queue, &c, 5, 1_700_000_000.0)
        .await
        .unwrap()
        .is_empty());
}

/// take returns a job whose data field is missing with data None.
#[tokio::test(flavor = "multi_thread")]
async fn take_with_missing_data() {
    let e = env().await;
    e.backend
        .push(&e.queue, &[job("a", "A"), job("b", "B")])
        .await
        .unwrap();
    let _: () = e.q(&["HDEL", &e.keys.data, "a"]).await;
    let c = ConsumerId::from_string("c1");
    e.backend
        .register(&e.queue, &c, 1.0, Registration::Join)
        .await
        .unwrap();
    let taken = e
        .backend
        .take(&e.queue, &c, 10, 1_700_000_000.0)
        .await
        .unwrap();
    assert_eq!(taken.len(), 2);
    assert_eq!(taken[0].id, "a");
    assert_eq!(taken[0].data, None);
    assert_eq!(taken[1].data.as_deref(), Some(&b"B"[..]));
    assert_eq!(e.members(&e.inflight(&c)).await, ["a", "b"]);
}

async fn taken_by(e: &common::Env, c: &ConsumerId, jobs: &[(&str, &str)]) {
    let list: Vec<_> = jobs.iter().map(|(id, data)| job(id, data)).collect();
    e.backend.push(&e.queue, &list).await.unwrap();
    e.backend
        .register(&e.queue, c, 1.0, Registration::Join)
        .await
        .unwrap();
    let taken = e
        .backend
        .take(&e.queue, c, jobs.len(), 1_700_000_000.0)
        .await
        .unwrap();
    assert_eq!(taken.len(), jobs.len());
}

/// ack removes owned jobs and their data; a job not owned is untouched.
#[tokio::test(flavor = "multi_thread")]
async fn ack_owned_and_not_owned() {
    let e = env().await;
    let c = ConsumerId::from_string("c1");
    let other = ConsumerId::from_string("c2");
    taken_by(&e, &c, &[("a", "A"), ("b", "B")]).await;
    let _: () = e.q(&["HSET", &e.keys.orphaned, "a", "1"]).await;
    assert_eq!(
        e.backend
            .ack(&e.queue, &other, &ids(&["a"]), 0.0)
            .await
            .unwrap(),
        [false]
    );
    assert_eq!(e.hget(&e.keys.data, "a").await.unwrap(), b"A");
    let acked = e
        .backend
        .ack(&e.queue, &c, &ids(&["a", "zzz"]), 0.0)
        .await
        .unwrap();
    assert_eq!(acked, [true, false]);
    assert_eq!(e.hget(&e.keys.data, "a").await, None);
    assert_eq!(e.hget(&e.keys.orphaned, "a").await, None);
    assert_eq!(e.members(&e.inflight(&c)).await, ["b"]);
    assert_eq!(
        e.backend
            .ack(&e.queue, &c, &ids(&["a"]), 0.0)
            .await
            .unwrap(),
        [false]
    );
}

/// retry schedules owned jobs with new data; a job not owned is untouched.
#[tokio::test(flavor = "multi_thread")]
async fn retry_owned_and_not_owned() {
    let e = env().await;
    let c = ConsumerId::from_string("c1");
    let other = ConsumerId::from_string("c2");
    taken_by(&e, &c, &[("a", "A")]).await;
    let at = 1_700_000_123.456_f64;
    let job_a = RetryJob {
        error: None,
        id: "a".into(),
        data: b"A2".to_vec(),
        at,
    };
    assert_eq!(
        e.backend
            .retry(&e.queue, &other, std::slice::from_ref(&job_a), 0.0)
            .await
            .unwrap(),
        [false]
    );
    assert_eq!(e.hget(&e.keys.data, "a").await.unwrap(), b"A");
    assert_eq!(e.zscore(&e.keys.scheduled, "a").await, None);

    let _: () = e.q(&["HSET", &e.keys.orphaned, "a", "1"]).await;
    assert_eq!(
        e.backend
            .retry(&e.queue, &c, std::slice::from_ref(&job_a), 0.0)
            .await
            .unwrap(),
        [true]
    );
    assert_eq!(e.hget(&e.keys.data, "a").await.unwrap(), b"A2");
    assert_eq!(e.zscore(&e.keys.scheduled, "a").await, Some(at));
    assert_eq!(e.hget(&e.keys.orphaned, "a").await, None);
    assert!(e.members(&e.inflight(&c)).await.is_empty());
    assert_eq!(
        e.backend.retry(&e.queue, &c, &[job_a], 0.0).await.unwrap(),
        [false]
    );
}

/// kill moves owned jobs to the dead set with a reason, overwriting data only when given.
#[tokio::test(flavor = "multi_thread")]
async fn kill_owned_and_not_owned() {
    let e = env().await;
    let c = ConsumerId::from_string("c1");
    let other = ConsumerId::from_string("c2");
    taken_by(&e, &c, &[("a", "A"), ("b", "B")]).await;
    let kill_a = KillJob {
        id: "a".into(),
        data: Some(b"A2".to_vec()),
        reason: "boom".into(),
    };
    let kill_b = KillJob {
        id: "b".into(),
        data: None,
        reason: "undecodable".into(),
    };
    let done = e
        .backend
        .kill(&e.queue, &other, &[kill_a.clone(), kill_b.clone()], 99.5)
        .await
        .unwrap();
    assert_eq!(done, [false, false]);
    assert_eq!(e.zscore(&e.keys.dead, "a").await, None);

    let done = e
        .backend
        .kill(&e.queue, &c, &[kill_a, kill_b], 99.5)
        .await
        .unwrap();
    assert_eq!(done, [true, true]);
    assert_eq!(e.zscore(&e.keys.dead, "a").await, Some(99.5));
    assert_eq!(e.zscore(&e.keys.dead, "b").await, Some(99.5));
    assert_eq!(e.hget(&e.keys.data, "a").await.unwrap(), b"A2");
    assert_eq!(
        e.hget(&e.keys.data, "b").await.unwrap(),
        b"B",
        "no data given: kept"
    );
    assert_eq!(e.hget(&e.keys.reasons, "a").await.unwrap(), b"boom");
    assert_eq!(e.hget(&e.keys.reasons, "b").await.unwrap(), b"undecodable");
    assert!(e.members(&e.inflight(&c)).await.is_empty());
}

/// give_back returns owned jobs to the tail of the active list and sets the signal.
#[tokio::test(flavor = "multi_thread")]
async fn give_back_owned_and_not_owned() {
    let e = env().await;
    let c = ConsumerId::from_string("c1");
    let other = ConsumerId::from_string("c2");
    taken_by(&e, &c, &[("a", "A"), ("b", "B")]).await;
    e.backend.push(&e.queue, &[job("x", "X")]).await.unwrap();
    let _: () = e.q(&["DEL", &e.keys.signal]).await;
    assert_eq!(
        e.backend
            .give_back(&e.queue, &other, &ids(&["a"]))
            .await
            .unwrap(),
        0
    );
    assert!(!e.signal_set().await);
    let n = e
        .backend
        .give_back(&e.queue, &c, &ids(&["b", "a", "nope"]))
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(e.list(&e.keys.active).await, ["x", "b", "a"]);
    assert!(e.signal_set().await);
    assert!(e.members(&e.inflight(&c)).await.is_empty());
}

/// unregister removes a consumer only when its in-flight set is empty; false only while
/// it holds jobs.
#[tokio::test(flavor = "multi_thread")]
async fn unregister_only_when_empty() {
    let e = env().await;
    let c = ConsumerId::from_string("c1");
    taken_by(&e, &c, &[("a", "A")]).await;
    assert!(!e.backend.unregister(&e.queue, &c).await.unwrap());
    assert!(e.zscore(&e.keys.consumers, &e.inflight(&c)).await.is_some());
    e.backend
        .ack(&e.queue, &c, &ids(&["a"]), 0.0)
        .await
        .unwrap();
    assert!(e.backend.unregister(&e.queue, &c).await.unwrap());
    assert_eq!(e.zscore(&e.keys.consumers, &e.inflight(&c)).await, None);
    assert!(
        e.backend.unregister(&e.queue, &c).await.unwrap(),
        "not registered: reported removed"
    );
}

/// trim_dead removes by age, then the oldest beyond the count, with data and reasons.
#[tokio::test(flavor = "multi_thread")]
async fn trim_dead_by_age_and_count() {
    use curlyq_core::DeadTrim;
    let e = env().await;
    for (id, at) in [
        ("d1", "10"),
        ("d2", "20"),
        ("d3", "30"),
        ("d4", "40"),
        ("d5", "50"),
    ] {
        let _: () = e.q(&["ZADD", &e.keys.dead, at, id]).await;
        let _: () = e.q(&["HSET", &e.keys.data, id, "data"]).await;
        let _: () = e.q(&["HSET", &e.keys.reasons, id, "why"]).await;
        let _: () = e.q(&["HSET", &e.keys.orphaned, id, "3"]).await;
    }
    // By age, bounded by max_jobs.
    let trim = DeadTrim {
        killed_before: 35.0,
        keep_at_most: 100,
        max_jobs: 2,
    };
    assert_eq!(e.backend.trim_dead(&e.queue, trim).await.unwrap(), 2);
    let left: Vec<String> = e.q(&["ZRANGE", &e.keys.dead, "0", "-1"]).await;
    assert_eq!(left, ["d3", "d4", "d5"]);
    for id in ["d1", "d2"] {
        assert_eq!(e.hget(&e.keys.data, id).await, None);
        assert_eq!(e.hget(&e.keys.reasons, id).await, None);
        assert_eq!(e.hget(&e.keys.orphaned, id).await, None);
    }
    // Strictly before: a job killed at exactly killed_before stays.
    let trim = DeadTrim {
        killed_before: 30.0,
        keep_at_most: 100,
        max_jobs: 10,
    };
    assert_eq!(e.backend.trim_dead(&e.queue, trim).await.unwrap(), 0);
    // By count: keep the newest one.
    let trim = DeadTrim {
        killed_before: 0.0,
        keep_at_most: 1,
        max_jobs: 10,
    };
    assert_eq!(e.backend.trim_dead(&e.queue, trim).await.unwrap(), 2);
    let left: Vec<String> = e.q(&["ZRANGE", &e.keys.dead, "0", "-1"]).await;
    assert_eq!(left, ["d5"]);
    assert_eq!(e.hget(&e.keys.reasons, "d3").await, None);
    assert_eq!(e.hget(&e.keys.data, "d5").await.unwrap(), b"data");
}
