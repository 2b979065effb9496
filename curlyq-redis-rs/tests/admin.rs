//! The admin operations of the backend against a real redis-server: counters, pause,
//! stats, pages, find, actions, and the consistency problems planted with raw commands,
//! confirmed and repaired.

mod common;

use common::{env, ids, Env};
use curlyq_core::admin::{
    self, minute_of, JobState, PageRequest, Problem, ProblemKind, Selection, COUNTER_TTL_SECONDS,
};
use curlyq_core::{
    BackendError, ConsumerId, EncodedJob, Job, KillJob, QueueBackend, QueueName, Registration,
    RetryJob, ScheduledJob,
};

const NOW: f64 = 1_700_000_000.0;

fn encoded(id: &str, payload: &[u8], ready_at: f64) -> EncodedJob {
    EncodedJob {
        id: id.to_owned(),
        data: Job::new(payload.to_vec())
            .with_id(id)
            .with_ready_at(ready_at)
            .encode(),
    }
}

async fn push(e: &Env, list: &[&str]) {
    let jobs: Vec<EncodedJob> = list
        .iter()
        .map(|id| encoded(id, id.as_bytes(), NOW))
        .collect();
    e.backend.push(&e.queue, &jobs).await.unwrap();
}

async fn join(e: &Env, id: &str, at: f64) -> ConsumerId {
    let c = ConsumerId::from_string(id);
    e.backend
        .register(&e.queue, &c, at, Registration::Join)
        .await
        .unwrap();
    c
}

async fn take(e: &Env, c: &ConsumerId, n: usize) -> Vec<String> {
    e.backend
        .take(&e.queue, c, n, NOW)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect()
}

fn problem(kind: ProblemKind, id: &str) -> Problem {
    Problem {
        kind,
        id: id.to_owned(),
        places: Vec::new(),
    }
}

/// ack, retry and kill count their owned jobs in the totals and in `now`'s minute (with
/// a TTL), in the same call; a job not owned counts nothing.
#[tokio::test(flavor = "multi_thread")]
async fn outcomes_are_counted_in_their_minute() {
    let e = env().await;
    push(&e, &["a", "b", "c", "d"]).await;
    let c = join(&e, "c1", NOW).await;
    assert_eq!(take(&e, &c, 4).await, ["a", "b", "c", "d"]);
    let earlier = NOW - 120.0;
    e.backend
        .ack(&e.queue, &c, &ids(&["a", "nope"]), earlier)
        .await
        .unwrap();
    let retry = RetryJob {
        id: "b".into(),
        data: b"B".to_vec(),
        at: NOW + 50.0,
        error: Some("boom".into()),
    };
    e.backend.retry(&e.queue, &c, &[retry], NOW).await.unwrap();
    let kill = KillJob {
        id: "c".into(),
        data: None,
        reason: "bad".into(),
    };
    e.backend.kill(&e.queue, &c, &[kill], NOW).await.unwrap();

    let stats = e.backend.stats(&e.queue, NOW, 3).await.unwrap();
    let t = stats.total;
    assert_eq!((t.processed, t.failed, t.retried, t.killed), (3, 2, 1, 1));
    let minutes: Vec<i64> = stats.minutes.iter().map(|m| m.minute).collect();
    let now_minute = minute_of(NOW);
    assert_eq!(minutes, [now_minute - 2, now_minute - 1, now_minute]);
    assert_eq!(stats.minutes[0].counts.processed, 1, "the ack's minute");
    assert_eq!(stats.minutes[1].counts, admin::Counts::default());
    let last = stats.minutes[2].counts;
    assert_eq!(
        (last.processed, last.failed, last.retried, last.killed),
        (2, 2, 1, 1)
    );
    let ttl: i64 = e.q(&["TTL", &e.keys.counts_minute(now_minute)]).await;
    assert!(ttl > 0 && ttl <= COUNTER_TTL_SECONDS as i64, "{ttl}");
    let total_ttl: i64 = e.q(&["TTL", &e.keys.counts]).await;
    assert_eq!(total_ttl, -1, "the totals never expire");
    assert_eq!(
        (stats.active, stats.scheduled, stats.dead, stats.inflight),
        (0, 1, 1, 1)
    );
    assert_eq!((stats.consumers, stats.paused), (1, false));
    assert_eq!(stats.next_due, Some(NOW + 50.0));
    assert_eq!(stats.oldest_ready_at, None, "nothing active");

    // Nothing owned: nothing written.
    let before = e.dump_all(&[&e.keys.counts]).await;
    e.backend
        .ack(&e.queue, &c, &ids(&["gone"]), NOW)
        .await
        .unwrap();
    assert_eq!(e.dump_all(&[&e.keys.counts]).await, before);
}

/// The head job's ready time, the earliest due time, and in-flight sums over the
/// registered consumers only; at most COUNTER_MINUTES minutes.
#[tokio::test(flavor = "multi_thread")]
async fn stats_read_sizes_latency_and_minutes() {
    let e = env().await;
    let big = vec![9u8; 20_000];
    e.backend
        .push(
            &e.queue,
            &[encoded("old", &big, NOW - 30.5), encoded("new", b"n", NOW)],
        )
        .await
        .unwrap();
    let c = join(&e, "c1", NOW).await;
    push(&e, &["x"]).await;
    let _: () = e.q(&["SADD", &e.keys.inflight("ghost"), "g"]).await;
    let _: () = e.q(&["SADD", &e.inflight(&c), "held"]).await;
    let stats = e.backend.stats(&e.queue, NOW, 100_000).await.unwrap();
    assert_eq!(
        stats.oldest_ready_at,
        Some(NOW - 30.5),
        "read from a 20 kB job's head"
    );
    assert_eq!((stats.active, stats.inflight), (3, 1));
    assert_eq!(stats.minutes.len(), admin::COUNTER_MINUTES);
    assert_eq!(stats.minutes.last().map(|m| m.minute), Some(minute_of(NOW)));
    assert!(stats
        .minutes
        .iter()
        .all(|m| m.counts == admin::Counts::default()));
    assert!(e
        .backend
        .stats(&e.queue, NOW, 0)
        .await
        .unwrap()
        .minutes
        .is_empty());
}

/// A crash-looping job killed by the orphan sweep is counted as killed.
#[tokio::test(flavor = "multi_thread")]
async fn sweep_kills_are_counted() {
    let e = env().await;
    push(&e, &["loop"]).await;
    let c = join(&e, "c1", 100.0).await;
    take(&e, &c, 1).await;
    let report = e
        .backend
        .requeue_orphans(
            &e.queue,
            curlyq_core::OrphanSweep {
                expired_before: 200.0,
                max_jobs: 10,
                max_orphan_requeues: 1,
                now: NOW,
            },
        )
        .await
        .unwrap();
    assert_eq!(report.killed, 1);
    let stats = e.backend.stats(&e.queue, NOW, 1).await.unwrap();
    assert_eq!((stats.total.killed, stats.total.processed), (1, 1));
    assert_eq!(stats.minutes[0].counts.failed, 1);
}

/// While paused, take takes nothing and clears the signal (after the NOTREG check), the
/// peek is still answered; resuming sets the signal.
#[tokio::test(flavor = "multi_thread")]
async fn pause_stops_takes_and_resume_signals() {
    let e = env().await;
    push(&e, &["a", "b"]).await;
    e.backend
        .schedule(
            &e.queue,
            &[ScheduledJob {
                job: encoded("s", b"s", NOW),
                at: NOW + 9.0,
            }],
        )
        .await
        .unwrap();
    let c = join(&e, "c1", NOW).await;
    assert!(!e.backend.set_paused(&e.queue, true).await.unwrap());
    assert!(
        e.backend.set_paused(&e.queue, true).await.unwrap(),
        "already paused"
    );
    assert!(e.signal_set().await);
    assert!(take(&e, &c, 5).await.is_empty());
    assert!(!e.signal_set().await, "a paused take clears the signal");
    let peek = e.backend.take_and_peek(&e.queue, &c, 5, NOW).await.unwrap();
    assert!(peek.jobs.is_empty());
    assert_eq!(
        peek.scheduled,
        curlyq_core::ScheduledPeek::Earliest(NOW + 9.0)
    );
    let stranger = ConsumerId::from_string("nobody");
    assert!(matches!(
        e.backend.take(&e.queue, &stranger, 1, NOW).await,
        Err(BackendError::NotRegistered { .. })
    ));
    assert!(e.backend.stats(&e.queue, NOW, 0).await.unwrap().paused);
    assert_eq!(e.list(&e.keys.active).await, ["a", "b"]);

    assert!(e.backend.set_paused(&e.queue, false).await.unwrap());
    assert!(e.signal_set().await, "resuming wakes consumers");
    let _: () = e.q(&["DEL", &e.keys.signal]).await;
    assert!(!e.backend.set_paused(&e.queue, false).await.unwrap());
    assert!(
        !e.signal_set().await,
        "resuming a running queue sets nothing"
    );
    assert_eq!(take(&e, &c, 5).await, ["a", "b"]);
}

/// Consumers oldest heartbeat first, with their in-flight counts.
#[tokio::test(flavor = "multi_thread")]
async fn consumers_are_listed_oldest_first() {
    let e = env().await;
    push(&e, &["a", "b", "c"]).await;
    let young = join(&e, "young", 300.0).await;
    let old = join(&e, "old", 100.0).await;
    take(&e, &young, 2).await;
    take(&e, &old, 1).await;
    let list = e.backend.consumers(&e.queue).await.unwrap();
    let rows: Vec<(String, f64, u64)> = list
        .into_iter()
        .map(|c| (c.id, c.heartbeat, c.inflight))
        .collect();
    assert_eq!(
        rows,
        [("old".to_owned(), 100.0, 1), ("young".to_owned(), 300.0, 2)]
    );
}

/// Pages of each state follow their cursors to the end, with positions, scores,
/// consumers, side fields and bounded previews.
#[tokio::test(flavor = "multi_thread")]
async fn pages_follow_cursors_with_previews() {
    let e = env().await;
    let big = Job::new(vec![7u8; 50_000])
        .with_id("big")
        .with_attempt(4)
        .with_ready_at(NOW)
        .encode();
    e.backend
        .push(
            &e.queue,
            &[EncodedJob {
                id: "big".into(),
                data: big.clone(),
            }],
        )
        .await
        .unwrap();
    push(&e, &["a2", "a3", "a4", "a5"]).await;
    let _: () = e.q(&["RPUSH", &e.keys.active, "nodata"]).await;

    let mut request = PageRequest {
        state: JobState::Active,
        cursor: 0,
        limit: 2,
        preview: 8,
    };
    let mut seen = Vec::new();
    let mut cursors = Vec::new();
    loop {
        let page = e.backend.jobs(&e.queue, request).await.unwrap();
        assert_eq!(page.total, 6);
        for job in &page.jobs {
            assert_eq!(job.position, Some(seen.len() as u64));
            seen.push(job.clone());
        }
        cursors.push(page.next);
        match page.next {
            Some(next) => request.cursor = next,
            None => break,
        }
    }
    assert_eq!(cursors, [Some(2), Some(4), None]);
    let first = &seen[0];
    assert_eq!(first.id, "big");
    assert_eq!(first.stored_bytes, Some(big.len() as u64));
    assert_eq!(
        (first.attempt, first.payload_bytes, first.ready_at),
        (Some(4), Some(50_000), Some(NOW))
    );
    assert_eq!(first.preview, vec![7u8; 8]);
    assert_eq!(seen[1].preview, b"a2");
    let last = &seen[5];
    assert_eq!((last.id.as_str(), last.stored_bytes), ("nodata", None));

    // A preview is capped at MAX_PREVIEW.
    let wide = PageRequest {
        limit: 1,
        preview: 1_000_000,
        ..PageRequest::first(JobState::Active)
    };
    let page = e.backend.jobs(&e.queue, wide).await.unwrap();
    assert_eq!(page.jobs[0].preview.len(), admin::MAX_PREVIEW);

    // Scheduled and dead by (score, ID), with scores; dead with reasons.
    let c = join(&e, "c1", NOW).await;
    let d = join(&e, "c0", NOW).await;
    take(&e, &c, 2).await; // big, a2
    take(&e, &d, 1).await; // a3
    let kill = KillJob {
        id: "a2".into(),
        data: None,
        reason: "why".into(),
    };
    e.backend.kill(&e.queue, &c, &[kill], 5.0).await.unwrap();
    let retry = RetryJob {
        id: "big".into(),
        data: big.clone(),
        at: 7.0,
        error: Some("err".into()),
    };
    e.backend.retry(&e.queue, &c, &[retry], NOW).await.unwrap();
    let _: () = e.q(&["HSET", &e.keys.orphaned, "a2", "3"]).await;
    let dead = e
        .backend
        .jobs(&e.queue, PageRequest::first(JobState::Dead))
        .await
        .unwrap();
    assert_eq!((dead.total, dead.next), (1, None));
    let job = &dead.jobs[0];
    assert_eq!(
        (
            job.id.as_str(),
            job.score,
            job.reason.as_deref(),
            job.orphaned
        ),
        ("a2", Some(5.0), Some("why"), 3)
    );
    let scheduled = e
        .backend
        .jobs(&e.queue, PageRequest::first(JobState::Scheduled))
        .await
        .unwrap();
    assert_eq!(scheduled.jobs[0].score, Some(7.0));
    assert_eq!(scheduled.jobs[0].last_error.as_deref(), Some("err"));

    // In flight by (consumer, job), over registered consumers only.
    take(&e, &c, 2).await; // a4, a5
    let _: () = e.q(&["SADD", &e.keys.inflight("stray"), "zz"]).await;
    let mut request = PageRequest {
        limit: 2,
        ..PageRequest::first(JobState::InFlight)
    };
    let mut flight = Vec::new();
    loop {
        let page = e.backend.jobs(&e.queue, request).await.unwrap();
        assert_eq!(page.total, 3);
        flight.extend(
            page.jobs
                .into_iter()
                .map(|j| (j.consumer.unwrap_or_default(), j.id)),
        );
        match page.next {
            Some(next) => request.cursor = next,
            None => break,
        }
    }
    let expected = [("c0", "a3"), ("c1", "a4"), ("c1", "a5")];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(c, j)| ((*c).to_owned(), (*j).to_owned()))
        .collect();
    assert_eq!(flight, expected);

    let unplaced = e
        .backend
        .jobs(&e.queue, PageRequest::first(JobState::Unplaced))
        .await
        .unwrap();
    assert!(unplaced.jobs.is_empty() && unplaced.next.is_none());
}

/// find_job in every state, with the precedence rule, Unplaced, and None.
#[tokio::test(flavor = "multi_thread")]
async fn find_reports_each_state() {
    let e = env().await;
    push(&e, &["act", "fly", "dup"]).await;
    let c = join(&e, "c1", NOW).await;
    let _: () = e.q(&["LREM", &e.keys.active, "0", "fly"]).await;
    let _: () = e.q(&["SADD", &e.inflight(&c), "fly"]).await;
    let _: () = e.q(&["ZADD", &e.keys.scheduled, "42", "sch"]).await;
    let _: () = e.q(&["HSET", &e.keys.data, "sch", "S", "lost", "L"]).await;
    let _: () = e.q(&["ZADD", &e.keys.dead, "9", "ded"]).await;
    let _: () = e.q(&["HSET", &e.keys.reasons, "ded", "why"]).await;
    let _: () = e.q(&["ZADD", &e.keys.scheduled, "43", "dup"]).await;

    let find = |id: &'static str| {
        let backend = e.backend.clone();
        let queue = e.queue.clone();
        async move { backend.find_job(&queue, id).await.unwrap() }
    };
    let act = find("act").await.unwrap();
    assert_eq!(
        (act.summary.state, act.summary.position),
        (Some(JobState::Active), Some(0))
    );
    assert_eq!(
        act.data.as_deref(),
        Some(&encoded("act", b"act", NOW).data[..])
    );
    assert_eq!(act.summary.payload_bytes, Some(3));
    assert!(act.summary.preview.is_empty());
    let fly = find("fly").await.unwrap();
    assert_eq!(
        (fly.summary.state, fly.summary.consumer.as_deref()),
        (Some(JobState::InFlight), Some("c1"))
    );
    let sch = find("sch").await.unwrap();
    assert_eq!(
        (
            sch.summary.state,
            sch.summary.score,
            sch.summary.stored_bytes
        ),
        (Some(JobState::Scheduled), Some(42.0), Some(1))
    );
    let ded = find("ded").await.unwrap();
    assert_eq!(
        (
            ded.summary.state,
            ded.summary.score,
            ded.summary.reason.as_deref()
        ),
        (Some(JobState::Dead), Some(9.0), Some("why"))
    );
    assert_eq!((ded.data, ded.summary.stored_bytes), (None, None));
    let dup = find("dup").await.unwrap();
    assert_eq!(
        dup.summary.state,
        Some(JobState::Scheduled),
        "scheduled before active"
    );
    let lost = find("lost").await.unwrap();
    assert_eq!(lost.summary.state, Some(JobState::Unplaced));
    assert!(find("none").await.is_none());
}

/// retry_dead and run_scheduled move to the tail of the active list, by ID (in the
/// order given, skipped reported, chunked past MAX_BATCH) or oldest first.
#[tokio::test(flavor = "multi_thread")]
async fn retry_dead_and_run_scheduled_move_jobs() {
    let e = env().await;
    for (id, score) in [("d1", "3"), ("d2", "1"), ("d3", "2")] {
        let _: () = e.q(&["ZADD", &e.keys.dead, score, id]).await;
        let _: () = e.q(&["HSET", &e.keys.reasons, id, "r"]).await;
        let _: () = e.q(&["HSET", &e.keys.data, id, "D"]).await;
    }
    push(&e, &["head"]).await;
    let _: () = e.q(&["DEL", &e.keys.signal]).await;
    let report = e
        .backend
        .retry_dead(&e.queue, &Selection::Ids(ids(&["d3", "x", "d1"])))
        .await
        .unwrap();
    assert_eq!(
        (report.done, report.skipped),
        (ids(&["d3", "d1"]), ids(&["x"]))
    );
    assert_eq!(e.list(&e.keys.active).await, ["head", "d3", "d1"]);
    assert!(e.hget(&e.keys.reasons, "d1").await.is_none());
    assert!(e.hget(&e.keys.reasons, "d2").await.is_some());
    assert_eq!(e.hget(&e.keys.data, "d1").await.unwrap(), b"D");
    assert!(e.signal_set().await);
    let report = e
        .backend
        .retry_dead(&e.queue, &Selection::Oldest(5))
        .await
        .unwrap();
    assert_eq!(report.done, ids(&["d2"]));

    for (id, score) in [("s1", "30"), ("s2", "10"), ("s3", "20")] {
        let _: () = e.q(&["ZADD", &e.keys.scheduled, score, id]).await;
    }
    let _: () = e.q(&["DEL", &e.keys.signal]).await;
    let report = e
        .backend
        .run_scheduled(&e.queue, &Selection::Oldest(2))
        .await
        .unwrap();
    assert_eq!(report.done, ids(&["s2", "s3"]));
    assert!(e.signal_set().await);
    let many: Vec<String> = (0..curlyq_core::MAX_BATCH + 5)
        .map(|i| format!("m{i}"))
        .chain(["s1".to_owned()])
        .collect();
    let report = e
        .backend
        .run_scheduled(&e.queue, &Selection::Ids(many))
        .await
        .unwrap();
    assert_eq!(report.done, ids(&["s1"]));
    assert_eq!(report.skipped.len(), curlyq_core::MAX_BATCH + 5);
    let _: () = e.q(&["DEL", &e.keys.signal]).await;
    let none = e
        .backend
        .run_scheduled(&e.queue, &Selection::Oldest(3))
        .await
        .unwrap();
    assert!(none.done.is_empty());
    assert!(!e.signal_set().await, "nothing moved: no signal");
}

/// delete_jobs removes every reference and side field, leaves in-flight jobs alone, and
/// reports the state each was in.
#[tokio::test(flavor = "multi_thread")]
async fn delete_reports_states() {
    let e = env().await;
    push(&e, &["a", "fly", "both"]).await;
    let c = join(&e, "c1", NOW).await;
    let _: () = e.q(&["LREM", &e.keys.active, "0", "fly"]).await;
    let _: () = e.q(&["SADD", &e.inflight(&c), "fly"]).await;
    let _: () = e.q(&["ZADD", &e.keys.scheduled, "1", "both"]).await;
    let _: () = e.q(&["ZADD", &e.keys.dead, "1", "d"]).await;
    let _: () = e.q(&["HSET", &e.keys.reasons, "d", "r"]).await;
    let _: () = e.q(&["HSET", &e.keys.data, "d", "D", "u", "U"]).await;
    let _: () = e.q(&["HSET", &e.keys.errors, "a", "e"]).await;
    let report = e
        .backend
        .delete_jobs(&e.queue, &ids(&["a", "fly", "both", "d", "u", "nope"]))
        .await
        .unwrap();
    assert_eq!(
        report.deleted,
        [
            ("a".to_owned(), JobState::Active),
            ("both".to_owned(), JobState::Scheduled),
            ("d".to_owned(), JobState::Dead),
            ("u".to_owned(), JobState::Unplaced),
        ]
    );
    assert_eq!(
        (report.in_flight, report.missing),
        (ids(&["fly"]), ids(&["nope"]))
    );
    assert!(e.list(&e.keys.active).await.is_empty());
    let left: Vec<String> = e.q(&["HKEYS", &e.keys.data]).await;
    assert_eq!(left, ["fly"]);
    for key in [
        &e.keys.reasons,
        &e.keys.errors,
        &e.keys.scheduled,
        &e.keys.dead,
    ] {
        let exists: i64 = e.q(&["EXISTS", key]).await;
        assert_eq!(exists, 0, "{key}");
    }
}

/// purge deletes from the head or the lowest scores, with data; other states are
/// refused before anything is sent.
#[tokio::test(flavor = "multi_thread")]
async fn purge_deletes_in_order() {
    let e = env().await;
    push(&e, &["a", "b", "c"]).await;
    assert_eq!(
        e.backend
            .purge(&e.queue, JobState::Active, 2)
            .await
            .unwrap(),
        2
    );
    assert_eq!(e.list(&e.keys.active).await, ["c"]);
    assert!(e.hget(&e.keys.data, "a").await.is_none());
    for (id, score) in [("x", "2"), ("y", "1")] {
        let _: () = e.q(&["ZADD", &e.keys.dead, score, id]).await;
        let _: () = e.q(&["HSET", &e.keys.reasons, id, "r"]).await;
    }
    assert_eq!(
        e.backend.purge(&e.queue, JobState::Dead, 1).await.unwrap(),
        1
    );
    assert_eq!(e.zscore(&e.keys.dead, "x").await, Some(2.0));
    assert!(e.hget(&e.keys.reasons, "y").await.is_none());
    assert_eq!(
        e.backend
            .purge(&e.queue, JobState::Scheduled, 10)
            .await
            .unwrap(),
        0
    );
    for state in [JobState::InFlight, JobState::Unplaced] {
        assert!(matches!(
            e.backend.purge(&e.queue, state, 1).await,
            Err(BackendError::Rejected(_))
        ));
    }
}

/// remove_consumer: unknown, still alive, and expired (its jobs requeued in byte order).
#[tokio::test(flavor = "multi_thread")]
async fn remove_consumer_requeues_in_byte_order() {
    let e = env().await;
    let gone = e
        .backend
        .remove_consumer(&e.queue, "nobody", NOW)
        .await
        .unwrap();
    assert_eq!(
        (gone.removed, gone.requeued, gone.heartbeat),
        (false, 0, None)
    );
    let c = join(&e, "c1", 100.0).await;
    let _: () = e
        .q(&["SADD", &e.inflight(&c), "b", "B", "a", "\u{e9}"])
        .await;
    let alive = e
        .backend
        .remove_consumer(&e.queue, "c1", 50.0)
        .await
        .unwrap();
    assert_eq!((alive.removed, alive.heartbeat), (false, Some(100.0)));
    assert_eq!(e.members(&e.inflight(&c)).await.len(), 4);
    let done = e
        .backend
        .remove_consumer(&e.queue, "c1", 100.0)
        .await
        .unwrap();
    assert_eq!(
        (done.removed, done.requeued, done.heartbeat),
        (true, 4, Some(100.0))
    );
    assert_eq!(e.list(&e.keys.active).await, ["B", "a", "b", "\u{e9}"]);
    assert!(e.signal_set().await);
    assert!(e.zscore(&e.keys.consumers, &e.inflight(&c)).await.is_none());
}

/// data_ids pages over field names; stray_inflight finds unregistered sets only.
#[tokio::test(flavor = "multi_thread")]
async fn data_ids_and_stray_sets() {
    let e = env().await;
    let names: Vec<String> = (0..1500).map(|i| format!("j{i}")).collect();
    let jobs: Vec<EncodedJob> = names.iter().map(|id| encoded(id, b"x", NOW)).collect();
    e.backend.push(&e.queue, &jobs).await.unwrap();
    let mut found = std::collections::BTreeSet::new();
    let mut cursor = 0;
    let mut pages = 0;
    loop {
        let (page, next) = e.backend.data_ids(&e.queue, cursor, 200).await.unwrap();
        found.extend(page);
        pages += 1;
        match next {
            Some(next) => cursor = next,
            None => break,
        }
    }
    assert_eq!(found.len(), 1500);
    assert!(pages > 1);

    let c = join(&e, "live", NOW).await;
    let _: () = e.q(&["SADD", &e.inflight(&c), "l"]).await;
    let _: () = e.q(&["SADD", &e.keys.inflight("dead1"), "x", "y"]).await;
    let _: () = e.q(&["SET", &e.keys.inflight("str"), "not a set"]).await;
    // Another queue whose name a glob would match.
    let _: () = e.q(&["SADD", "{q}x:inflight:other", "z"]).await;
    let stray = e.backend.stray_inflight(&e.queue).await.unwrap();
    let expected: std::collections::BTreeSet<String> = ["x", "y"].map(String::from).into();
    assert_eq!(stray, [("dead1".to_owned(), expected)]);

    // Glob characters in the queue name are matched literally.
    let star = QueueName::new("q*").unwrap();
    let star_keys = curlyq_lua::Keys::new("q*");
    let _: () = e.q(&["SADD", "qq:inflight:a", "1"]).await;
    let _: () = e.q(&["SADD", &star_keys.inflight("b"), "2"]).await;
    let stray = e.backend.stray_inflight(&star).await.unwrap();
    assert_eq!(stray.len(), 1);
    assert_eq!(stray[0].0, "b");
}

/// list_queues names every queue by its typed keys, sorted and deduplicated.
#[tokio::test(flavor = "multi_thread")]
async fn list_queues_by_typed_keys() {
    let e = env().await;
    push(&e, &["a"]).await;
    let _: () = e.q(&["ZADD", "goq:consumers", "1", "goq:inflight:x"]).await;
    let _: () = e.q(&["SET", "fake:data", "a string"]).await;
    let _: () = e.q(&["RPUSH", "other:dead:reasons", "x"]).await;
    let _: () = e.q(&["ZADD", "b:c:dead", "1", "x"]).await;
    let names: Vec<String> = e
        .backend
        .list_queues()
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.to_string())
        .collect();
    assert_eq!(names, ["b:c", "goq", "{q}"]);
}

/// Each problem kind, planted with raw commands: the check finds it, confirm reports
/// its places as now, repair fixes it without losing a job, and a second repair changes
/// nothing.
#[tokio::test(flavor = "multi_thread")]
async fn problems_are_confirmed_and_repaired() {
    let e = env().await;
    let c = join(&e, "c1", NOW).await;
    let k = &e.keys;
    // Unreferenced: data only.
    let _: () = e.q(&["HSET", &k.data, "lost", "L"]).await;
    // Duplicate: twice active, scheduled and dead.
    let _: () = e.q(&["HSET", &k.data, "dup", "D"]).await;
    let _: () = e.q(&["RPUSH", &k.active, "dup", "x1", "dup"]).await;
    let _: () = e.q(&["HSET", &k.data, "x1", "X"]).await;
    let _: () = e.q(&["ZADD", &k.scheduled, "5", "dup"]).await;
    let _: () = e.q(&["ZADD", &k.dead, "5", "dup"]).await;
    let _: () = e.q(&["HSET", &k.reasons, "dup", "r"]).await;
    // Duplicate in flight and active.
    let _: () = e.q(&["HSET", &k.data, "held", "H"]).await;
    let _: () = e.q(&["SADD", &e.inflight(&c), "held"]).await;
    let _: () = e.q(&["RPUSH", &k.active, "held"]).await;
    // Twice active only.
    let _: () = e.q(&["HSET", &k.data, "two", "T"]).await;
    let _: () = e.q(&["RPUSH", &k.active, "two", "two"]).await;
    // Dangling: references without data.
    let _: () = e.q(&["RPUSH", &k.active, "ghost"]).await;
    let _: () = e.q(&["ZADD", &k.dead, "1", "ghost"]).await;
    let _: () = e.q(&["HSET", &k.errors, "ghost", "e"]).await;
    // Dangling in flight only: reported, not repaired.
    let _: () = e.q(&["SADD", &e.inflight(&c), "phantom"]).await;
    // Stray in-flight set.
    let _: () = e.q(&["HSET", &k.data, "s1", "1", "s2", "2"]).await;
    let _: () = e.q(&["SADD", &k.inflight("gone"), "s2", "s1"]).await;

    let report = admin::check(&e.backend, &e.queue).await.unwrap();
    let found: Vec<(ProblemKind, String, Vec<JobState>)> = report
        .problems
        .iter()
        .map(|p| (p.kind, p.id.clone(), p.places.clone()))
        .collect();
    use JobState::*;
    let expected: Vec<(ProblemKind, String, Vec<JobState>)> = vec![
        (ProblemKind::Unreferenced, "lost".into(), vec![]),
        (
            ProblemKind::Duplicate,
            "dup".into(),
            vec![Active, Active, Scheduled, Dead],
        ),
        (ProblemKind::Duplicate, "ghost".into(), vec![Active, Dead]),
        (
            ProblemKind::Duplicate,
            "held".into(),
            vec![Active, InFlight],
        ),
        (ProblemKind::Duplicate, "two".into(), vec![Active, Active]),
        (ProblemKind::Dangling, "ghost".into(), vec![Active, Dead]),
        (ProblemKind::Dangling, "phantom".into(), vec![InFlight]),
        (
            ProblemKind::StrayInFlight,
            "gone".into(),
            vec![InFlight, InFlight],
        ),
    ];
    assert_eq!(found, expected);
    assert!(!report.is_clean());

    // Each repair fixes its problem; a repeat changes nothing.
    let repair = |kind, id: &'static str| {
        let backend = e.backend.clone();
        let queue = e.queue.clone();
        async move { backend.repair(&queue, &problem(kind, id)).await.unwrap() }
    };
    assert!(repair(ProblemKind::Unreferenced, "lost").await);
    assert!(!repair(ProblemKind::Unreferenced, "lost").await);
    assert!(repair(ProblemKind::Duplicate, "dup").await);
    assert_eq!(
        e.zscore(&k.scheduled, "dup").await,
        Some(5.0),
        "scheduled kept"
    );
    assert!(e.zscore(&k.dead, "dup").await.is_none());
    assert!(e.hget(&k.reasons, "dup").await.is_none());
    assert!(repair(ProblemKind::Duplicate, "held").await);
    assert_eq!(e.members(&e.inflight(&c)).await, ["held", "phantom"]);
    assert!(repair(ProblemKind::Duplicate, "two").await);
    assert!(repair(ProblemKind::Dangling, "ghost").await);
    assert!(e.hget(&k.errors, "ghost").await.is_none());
    assert!(
        !repair(ProblemKind::Dangling, "phantom").await,
        "in flight: left"
    );
    assert!(repair(ProblemKind::StrayInFlight, "gone").await);
    assert!(!repair(ProblemKind::StrayInFlight, "gone").await);
    assert_eq!(
        e.list(&k.active).await,
        ["x1", "two", "lost", "s1", "s2"],
        "every job with data is placed once"
    );
    let mut data: Vec<String> = e.q(&["HKEYS", &k.data]).await;
    data.sort();
    assert_eq!(data, ["dup", "held", "lost", "s1", "s2", "two", "x1"]);

    let after = admin::check(&e.backend, &e.queue).await.unwrap();
    let left: Vec<(ProblemKind, String)> =
        after.problems.into_iter().map(|p| (p.kind, p.id)).collect();
    assert_eq!(left, [(ProblemKind::Dangling, "phantom".to_owned())]);
    assert!(e
        .backend
        .confirm(&e.queue, &problem(ProblemKind::Duplicate, "dup"))
        .await
        .unwrap()
        .is_none());
}

/// A key of the wrong type fails the admin operations with Rejected, writing nothing.
#[tokio::test(flavor = "multi_thread")]
async fn wrong_types_are_rejected_without_writes() {
    let e = env().await;
    push(&e, &["a", "b"]).await;
    let c = join(&e, "c1", NOW).await;
    take(&e, &c, 1).await;
    let k = &e.keys;
    let minute = k.counts_minute(minute_of(NOW));
    let _: () = e.q(&["SET", &minute, "oops"]).await;
    let before = e.dump_all(&[&minute, &e.inflight(&c), &k.counts]).await;
    let err = e.backend.ack(&e.queue, &c, &ids(&["a"]), NOW).await;
    assert!(matches!(err, Err(BackendError::Rejected(m)) if m.contains("WRONGTYPE")));
    assert_eq!(
        e.dump_all(&[&minute, &e.inflight(&c), &k.counts]).await,
        before
    );
    let _: () = e.q(&["DEL", &minute]).await;

    let _: () = e.q(&["RPUSH", &k.paused, "x"]).await;
    let before = e.dump_all(&[&k.paused, &e.inflight(&c)]).await;
    assert!(matches!(
        e.backend.take(&e.queue, &c, 1, NOW).await,
        Err(BackendError::Rejected(_))
    ));
    assert!(matches!(
        e.backend.set_paused(&e.queue, false).await,
        Err(BackendError::Rejected(_))
    ));
    assert!(matches!(
        e.backend.stats(&e.queue, NOW, 5).await,
        Err(BackendError::Rejected(_))
    ));
    assert_eq!(e.dump_all(&[&k.paused, &e.inflight(&c)]).await, before);
    let _: () = e.q(&["DEL", &k.paused]).await;

    let _: () = e.q(&["SET", &k.reasons, "oops"]).await;
    let _: () = e.q(&["ZADD", &k.dead, "1", "d"]).await;
    let before = e.dump_all(&[]).await;
    for result in [
        e.backend
            .retry_dead(&e.queue, &Selection::Oldest(5))
            .await
            .map(|_| ()),
        e.backend
            .delete_jobs(&e.queue, &ids(&["a", "b", "d"]))
            .await
            .map(|_| ()),
        e.backend
            .purge(&e.queue, JobState::Dead, 5)
            .await
            .map(|_| ()),
        e.backend
            .repair(&e.queue, &problem(ProblemKind::Dangling, "d"))
            .await
            .map(|_| ()),
        e.backend
            .jobs(&e.queue, PageRequest::first(JobState::Active))
            .await
            .map(|_| ()),
    ] {
        assert!(
            matches!(result, Err(BackendError::Rejected(_))),
            "{result:?}"
        );
    }
    assert_eq!(e.dump_all(&[]).await, before);
}
