//! Checks of the admin operations: stats and counters, pause, pages, find, the actions
//! and the consistency check.

use curlyq_core::admin::{
    self, Counts, JobState, PageRequest, Selection, COUNTER_MINUTES, MAX_PAGE,
};
use curlyq_core::Job;

use super::*;

fn page(state: JobState, cursor: u64, limit: usize) -> PageRequest {
    PageRequest {
        state,
        cursor,
        limit,
        preview: 8,
    }
}

/// Every ID of a state, page by page with `limit`.
async fn all_ids(
    b: &dyn QueueBackend,
    q: &QueueName,
    state: JobState,
    limit: usize,
) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cursor = 0;
    for _ in 0..100 {
        let p = b.jobs(q, page(state, cursor, limit)).await.ctx("jobs")?;
        ensure!(
            p.jobs.len() <= limit,
            "a page of {limit} held {}",
            p.jobs.len()
        );
        out.extend(p.jobs.into_iter().map(|j| j.id));
        match p.next {
            Some(next) => cursor = next,
            None => return Ok(out),
        }
    }
    Err(format!("paging {state} never ended"))
}

pub(super) async fn stats_count_outcomes_by_minute(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    let (owner, _) = owned_setup(b, q, &["a", "b", "c", "d"]).await?;
    b.ack(q, &owner, &strings(&["a", "zzz"]), 130.0)
        .await
        .ctx("ack")?;
    b.retry(q, &owner, &[failed("b", 500.0, Some("x"))], 150.0)
        .await
        .ctx("retry")?;
    let kill = KillJob {
        id: "c".into(),
        data: None,
        reason: "bad".into(),
    };
    b.kill(q, &owner, &[kill], 190.0).await.ctx("kill")?;
    let s = b.stats(q, 200.0, 4).await.ctx("stats")?;
    ensure_eq!(
        (s.active, s.scheduled, s.dead, s.inflight, s.consumers),
        (0, 1, 1, 1, 2),
        "sizes (active, scheduled, dead, in flight, consumers)"
    );
    ensure_eq!(
        s.total,
        Counts {
            processed: 3,
            failed: 2,
            retried: 1,
            killed: 1
        },
        "totals (the ack of a job not owned counts nothing)"
    );
    let minutes: Vec<i64> = s.minutes.iter().map(|m| m.minute).collect();
    ensure_eq!(minutes, vec![0, 1, 2, 3], "the last 4 minutes up to 200 s");
    ensure_eq!(
        s.minutes[2].counts,
        Counts {
            processed: 2,
            failed: 1,
            retried: 1,
            killed: 0
        },
        "minute 2 (the ack at 130 and the retry at 150)"
    );
    ensure_eq!(
        s.minutes[3].counts,
        Counts::killed(1),
        "minute 3 (the kill)"
    );
    ensure_eq!(s.minutes[0].counts, Counts::default(), "minute 0");
    ensure_eq!(s.next_due, Some(500.0), "next due");
    let day = b.stats(q, 200.0, 10_000).await.ctx("stats")?;
    ensure_eq!(
        day.minutes.len(),
        COUNTER_MINUTES,
        "minutes are capped at a day"
    );
    Ok(())
}

pub(super) async fn stats_report_the_head_jobs_ready_time(
    b: &dyn QueueBackend,
    q: &QueueName,
) -> Outcome {
    let s = b.stats(q, 100.0, 0).await.ctx("stats")?;
    ensure_eq!(s.oldest_ready_at, None, "an empty queue's latency");
    ensure!(
        s.minutes.is_empty(),
        "0 minutes asked, {} given",
        s.minutes.len()
    );
    let first = Job::new(vec![1u8; 3000])
        .with_id("first")
        .with_ready_at(42.5);
    let second = Job::new(b"y".to_vec())
        .with_id("second")
        .with_ready_at(50.0);
    let encoded: Vec<EncodedJob> = [first, second]
        .iter()
        .map(|j| EncodedJob {
            id: j.id.clone(),
            data: j.encode(),
        })
        .collect();
    b.push(q, &encoded).await.ctx("push")?;
    b.push(q, &[job("go-job", "not a job map")])
        .await
        .ctx("push")?;
    let s = b.stats(q, 100.0, 1).await.ctx("stats")?;
    ensure_eq!(s.active, 3, "active");
    ensure_eq!(s.oldest_ready_at, Some(42.5), "the head job's ready time");
    ensure!(!s.paused, "a new queue is not paused");
    Ok(())
}

pub(super) async fn pause_stops_takes_until_resumed(
    b: &dyn QueueBackend,
    q: &QueueName,
) -> Outcome {
    let c = consumer("c");
    join(b, q, &c, 10.0).await?;
    ensure_eq!(
        b.set_paused(q, true).await.ctx("pause")?,
        false,
        "pause of a running queue"
    );
    ensure_eq!(
        b.set_paused(q, true).await.ctx("pause")?,
        true,
        "a second pause"
    );
    b.push(q, &jobs(&["a", "b"])).await.ctx("push")?;
    b.schedule(
        q,
        &[ScheduledJob {
            job: job("s", "x"),
            at: 5.0,
        }],
    )
    .await
    .ctx("schedule")?;
    ensure_eq!(
        b.enqueue_due(q, 10.0, 10).await.ctx("enqueue_due")?.moved,
        1,
        "the scheduler goes on"
    );
    let taken = b.take(q, &c, 10, 20.0).await.ctx("take")?;
    ensure!(
        taken.is_empty(),
        "a paused queue gave out {:?}",
        ids_of(&taken)
    );
    ensure!(
        !signal_is_set(b, q).await?,
        "a paused take leaves the signal set"
    );
    ensure!(
        b.stats(q, 20.0, 0).await.ctx("stats")?.paused,
        "stats show the pause"
    );
    ensure_eq!(
        b.set_paused(q, false).await.ctx("resume")?,
        true,
        "resume of a paused queue"
    );
    ensure!(signal_is_set(b, q).await?, "resume does not set the signal");
    let taken = b.take(q, &c, 10, 20.0).await.ctx("take")?;
    ensure_eq!(
        ids_of(&taken),
        strings(&["a", "b", "s"]),
        "taken after resume"
    );
    Ok(())
}

pub(super) async fn jobs_pages_each_state_in_order(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    b.push(q, &jobs(&["a1", "a2", "a3", "a4", "a5"]))
        .await
        .ctx("push")?;
    let scheduled: Vec<ScheduledJob> = [("s1", 30.0), ("s2", 10.0), ("s3", 20.0)]
        .iter()
        .map(|(id, at)| ScheduledJob {
            job: job(id, "x"),
            at: *at,
        })
        .collect();
    b.schedule(q, &scheduled).await.ctx("schedule")?;
    ensure_eq!(
        all_ids(b, q, JobState::Active, 2).await?,
        strings(&["a1", "a2", "a3", "a4", "a5"]),
        "active, pages of 2"
    );
    ensure_eq!(
        all_ids(b, q, JobState::Scheduled, 2).await?,
        strings(&["s2", "s3", "s1"]),
        "scheduled by score"
    );
    let first = b.jobs(q, page(JobState::Active, 0, 2)).await.ctx("jobs")?;
    ensure_eq!(
        (first.next, first.total),
        (Some(2), 5),
        "first page's cursor and total"
    );
    let positions: Vec<Option<u64>> = first.jobs.iter().map(|j| j.position).collect();
    ensure_eq!(positions, vec![Some(0), Some(1)], "positions");
    let raw = &first.jobs[0];
    ensure_eq!(
        (raw.stored_bytes, raw.payload_bytes, raw.attempt),
        (Some(7), None, None),
        "a job whose data is not a job map: its size only"
    );
    let (owner, _) = (consumer("p-owner"), ());
    join(b, q, &owner, 10.0).await?;
    b.take(q, &owner, 2, 10.0).await.ctx("take")?;
    let other = consumer("o-other");
    join(b, q, &other, 10.0).await?;
    b.take(q, &other, 1, 10.0).await.ctx("take")?;
    let inflight = b
        .jobs(q, page(JobState::InFlight, 0, 10))
        .await
        .ctx("jobs")?;
    let held: Vec<(String, Option<String>)> = inflight
        .jobs
        .iter()
        .map(|j| (j.id.clone(), j.consumer.clone()))
        .collect();
    ensure_eq!(
        held,
        vec![
            ("a3".to_owned(), Some("o-other".to_owned())),
            ("a1".to_owned(), Some("p-owner".to_owned())),
            ("a2".to_owned(), Some("p-owner".to_owned())),
        ],
        "in flight by consumer ID, then job ID"
    );
    ensure_eq!(inflight.total, 3, "in-flight total");
    let kill = |id: &str| KillJob {
        id: id.into(),
        data: None,
        reason: format!("reason {id}"),
    };
    b.kill(q, &owner, &[kill("a2")], 7.0).await.ctx("kill")?;
    b.kill(q, &owner, &[kill("a1")], 9.0).await.ctx("kill")?;
    let dead = b
        .jobs(q, page(JobState::Dead, 0, MAX_PAGE * 5))
        .await
        .ctx("jobs")?;
    let listed: Vec<(String, Option<f64>, Option<String>)> = dead
        .jobs
        .iter()
        .map(|j| (j.id.clone(), j.score, j.reason.clone()))
        .collect();
    ensure_eq!(
        listed,
        vec![
            ("a2".to_owned(), Some(7.0), Some("reason a2".to_owned())),
            ("a1".to_owned(), Some(9.0), Some("reason a1".to_owned())),
        ],
        "dead by time of death, with reasons"
    );
    ensure_eq!(dead.next, None, "one page holds the dead set");
    Ok(())
}

pub(super) async fn jobs_preview_a_large_job(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    let big = Job::new(vec![b'z'; 20_000])
        .with_id("big")
        .with_attempt(4)
        .with_ready_at(12.0);
    let bytes = big.encode();
    b.push(
        q,
        &[EncodedJob {
            id: "big".into(),
            data: bytes.clone(),
        }],
    )
    .await
    .ctx("push")?;
    let p = b
        .jobs(
            q,
            PageRequest {
                state: JobState::Active,
                cursor: 0,
                limit: 1,
                preview: 16,
            },
        )
        .await
        .ctx("jobs")?;
    let j = p.jobs.first().ok_or("an empty page")?;
    ensure_eq!(j.preview, vec![b'z'; 16], "preview");
    ensure_eq!(
        (j.attempt, j.ready_at, j.payload_bytes, j.stored_bytes),
        (Some(4), Some(12.0), Some(20_000), Some(bytes.len() as u64)),
        "attempt, ready time and sizes of a job larger than the bytes read"
    );
    Ok(())
}

pub(super) async fn find_job_in_each_state(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    let (owner, _) = owned_setup(b, q, &["held", "dead"]).await?;
    b.kill(
        q,
        &owner,
        &[KillJob {
            id: "dead".into(),
            data: None,
            reason: "why".into(),
        }],
        33.0,
    )
    .await
    .ctx("kill")?;
    let encoded = Job::new(b"hello".to_vec())
        .with_id("act")
        .with_attempt(2)
        .encode();
    b.push(q, &jobs(&["x1"])).await.ctx("push")?;
    b.push(
        q,
        &[EncodedJob {
            id: "act".into(),
            data: encoded.clone(),
        }],
    )
    .await
    .ctx("push")?;
    b.schedule(
        q,
        &[ScheduledJob {
            job: job("later", "x"),
            at: 99.0,
        }],
    )
    .await
    .ctx("schedule")?;
    let found = |id: &'static str| async move {
        b.find_job(q, id)
            .await
            .ctx("find_job")?
            .ok_or_else(|| format!("{id} not found"))
    };
    let act = found("act").await?;
    ensure_eq!(
        (act.summary.state, act.summary.position, act.summary.attempt),
        (Some(JobState::Active), Some(1), Some(2)),
        "an active job"
    );
    ensure_eq!(act.data, Some(encoded), "its stored bytes");
    let held = found("held").await?;
    ensure_eq!(
        (held.summary.state, held.summary.consumer),
        (Some(JobState::InFlight), Some("owner".to_owned())),
        "a job in flight"
    );
    let dead = found("dead").await?;
    ensure_eq!(
        (dead.summary.state, dead.summary.score, dead.summary.reason),
        (Some(JobState::Dead), Some(33.0), Some("why".to_owned())),
        "a dead job"
    );
    let later = found("later").await?;
    ensure_eq!(
        (later.summary.state, later.summary.score),
        (Some(JobState::Scheduled), Some(99.0)),
        "a scheduled job"
    );
    ensure!(
        b.find_job(q, "nope").await.ctx("find_job")?.is_none(),
        "a job that does not exist was found"
    );
    Ok(())
}

pub(super) async fn find_job_head_cuts_big_jobs(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    let payload: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    let big = Job::new(payload.clone())
        .with_id("big")
        .with_attempt(3)
        .with_ready_at(12.5)
        .encode();
    let small = Job::new(b"tiny".to_vec()).with_id("small").encode();
    b.push(
        q,
        &[
            EncodedJob {
                id: "big".into(),
                data: big.clone(),
            },
            EncodedJob {
                id: "small".into(),
                data: small.clone(),
            },
        ],
    )
    .await
    .ctx("push")?;
    let cut = b
        .find_job_head(q, "big", 100)
        .await
        .ctx("find_job_head")?
        .ok_or("big not found")?;
    let s = &cut.summary;
    ensure_eq!(cut.data, None, "a big job's data is not in the answer");
    ensure_eq!(
        (s.state, s.position, s.attempt, s.ready_at),
        (Some(JobState::Active), Some(0), Some(3), Some(12.5)),
        "a cut job's place, attempt and ready time"
    );
    ensure_eq!(
        (s.stored_bytes, s.payload_bytes),
        (Some(big.len() as u64), Some(payload.len() as u64)),
        "a cut job's sizes"
    );
    ensure_eq!(
        s.preview,
        payload[..100].to_vec(),
        "a cut job's first payload bytes"
    );
    let whole = b
        .find_job_head(q, "small", 100)
        .await
        .ctx("find_job_head")?
        .ok_or("small not found")?;
    ensure_eq!(whole.data, Some(small), "a small job comes whole");
    ensure!(
        b.find_job_head(q, "nope", 100)
            .await
            .ctx("find_job_head")?
            .is_none(),
        "a job that does not exist was found"
    );
    Ok(())
}

async fn kill_all(b: &dyn QueueBackend, q: &QueueName, ids: &[&str]) -> Result<ConsumerId, String> {
    let (owner, _) = owned_setup(b, q, ids).await?;
    for (i, id) in ids.iter().enumerate() {
        let kill = KillJob {
            id: (*id).into(),
            data: None,
            reason: "r".into(),
        };
        b.kill(q, &owner, &[kill], 100.0 - i as f64)
            .await
            .ctx("kill")?;
    }
    Ok(owner)
}

pub(super) async fn retry_dead_moves_to_the_tail(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    kill_all(b, q, &["d1", "d2", "d3", "d4"]).await?;
    b.push(q, &jobs(&["first"])).await.ctx("push")?;
    let r = b
        .retry_dead(q, &Selection::Ids(strings(&["d2", "first", "gone"])))
        .await
        .ctx("retry_dead")?;
    ensure_eq!(
        (r.done, r.skipped),
        (strings(&["d2"]), strings(&["first", "gone"])),
        "by IDs"
    );
    let d2 = b
        .find_job(q, "d2")
        .await
        .ctx("find_job")?
        .ok_or("d2 gone")?;
    ensure_eq!(
        (d2.summary.state, d2.summary.reason),
        (Some(JobState::Active), None),
        "a retried dead job is active, its reason gone"
    );
    // Killed at 100, 99, 98, 97: the oldest are d4 then d3.
    let r = b
        .retry_dead(q, &Selection::Oldest(2))
        .await
        .ctx("retry_dead")?;
    ensure_eq!(r.done, strings(&["d4", "d3"]), "the oldest two");
    ensure_eq!(
        all_ids(b, q, JobState::Active, 10).await?,
        strings(&["first", "d2", "d4", "d3"]),
        "appended at the tail"
    );
    ensure!(signal_is_set(b, q).await?, "retry_dead sets the signal");
    ensure_eq!(b.stats(q, 0.0, 0).await.ctx("stats")?.dead, 1, "dead left");
    Ok(())
}

pub(super) async fn run_scheduled_now(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    let scheduled: Vec<ScheduledJob> = [("s1", 3e9), ("s2", 2e9), ("s3", 4e9)]
        .iter()
        .map(|(id, at)| ScheduledJob {
            job: job(id, "x"),
            at: *at,
        })
        .collect();
    b.schedule(q, &scheduled).await.ctx("schedule")?;
    let r = b
        .run_scheduled(q, &Selection::Ids(strings(&["s3", "zz"])))
        .await
        .ctx("run_scheduled")?;
    ensure_eq!(
        (r.done, r.skipped),
        (strings(&["s3"]), strings(&["zz"])),
        "by IDs"
    );
    let r = b
        .run_scheduled(q, &Selection::Oldest(100))
        .await
        .ctx("run_scheduled")?;
    ensure_eq!(r.done, strings(&["s2", "s1"]), "the rest, earliest first");
    ensure_eq!(
        all_ids(b, q, JobState::Active, 10).await?,
        strings(&["s3", "s2", "s1"]),
        "active now"
    );
    Ok(())
}

pub(super) async fn delete_jobs_in_any_state_but_in_flight(
    b: &dyn QueueBackend,
    q: &QueueName,
) -> Outcome {
    let owner = kill_all(b, q, &["dead", "held"]).await?;
    // "held" was killed too: put it back in flight.
    b.retry_dead(q, &Selection::Ids(strings(&["held"])))
        .await
        .ctx("retry_dead")?;
    b.take(q, &owner, 1, 1.0).await.ctx("take")?;
    b.push(q, &jobs(&["act"])).await.ctx("push")?;
    b.schedule(
        q,
        &[ScheduledJob {
            job: job("sch", "x"),
            at: 50.0,
        }],
    )
    .await
    .ctx("schedule")?;
    let r = b
        .delete_jobs(q, &strings(&["act", "sch", "dead", "held", "none"]))
        .await
        .ctx("delete_jobs")?;
    ensure_eq!(
        r.deleted,
        vec![
            ("act".to_owned(), JobState::Active),
            ("sch".to_owned(), JobState::Scheduled),
            ("dead".to_owned(), JobState::Dead),
        ],
        "deleted"
    );
    ensure_eq!(
        (r.in_flight, r.missing),
        (strings(&["held"]), strings(&["none"])),
        "left alone"
    );
    for id in ["act", "sch", "dead"] {
        ensure!(
            b.find_job(q, id).await.ctx("find_job")?.is_none(),
            "{id} still found"
        );
    }
    ensure!(
        b.find_job(q, "held").await.ctx("find_job")?.is_some(),
        "the job in flight went"
    );
    Ok(())
}

pub(super) async fn purge_a_state_in_chunks(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    b.push(q, &jobs(&["a", "b", "c"])).await.ctx("push")?;
    ensure_eq!(
        b.purge(q, JobState::Active, 2).await.ctx("purge")?,
        2,
        "first chunk"
    );
    ensure_eq!(
        all_ids(b, q, JobState::Active, 10).await?,
        strings(&["c"]),
        "the tail is left"
    );
    ensure_eq!(
        b.purge(q, JobState::Active, 2).await.ctx("purge")?,
        1,
        "second chunk"
    );
    ensure_eq!(
        b.purge(q, JobState::Active, 2).await.ctx("purge")?,
        0,
        "nothing left"
    );
    ensure!(
        !exists_quietly(b, q, "a").await?,
        "a purged job's data stayed"
    );
    ensure!(
        matches!(
            b.purge(q, JobState::InFlight, 1).await,
            Err(BackendError::Rejected(_))
        ),
        "a purge of the in-flight jobs was not refused"
    );
    Ok(())
}

/// Whether `id` has data or a place (through find_job, which changes nothing).
async fn exists_quietly(b: &dyn QueueBackend, q: &QueueName, id: &str) -> Result<bool, String> {
    Ok(b.find_job(q, id).await.ctx("find_job")?.is_some())
}

pub(super) async fn remove_consumer_only_when_expired(
    b: &dyn QueueBackend,
    q: &QueueName,
) -> Outcome {
    let c = consumer("gone");
    join(b, q, &c, 10.0).await?;
    b.push(q, &jobs(&["z", "m", "a"])).await.ctx("push")?;
    b.take(q, &c, 3, 10.0).await.ctx("take")?;
    let live = b
        .remove_consumer(q, "gone", 5.0)
        .await
        .ctx("remove_consumer")?;
    ensure_eq!(
        (live.removed, live.heartbeat),
        (false, Some(10.0)),
        "a live consumer"
    );
    let infos = b.consumers(q).await.ctx("consumers")?;
    ensure_eq!(infos.len(), 1, "consumers");
    ensure_eq!(
        (infos[0].id.as_str(), infos[0].inflight),
        ("gone", 3),
        "its in-flight count"
    );
    let r = b
        .remove_consumer(q, "gone", 10.0)
        .await
        .ctx("remove_consumer")?;
    ensure_eq!((r.removed, r.requeued), (true, 3), "an expired consumer");
    ensure_eq!(
        all_ids(b, q, JobState::Active, 10).await?,
        strings(&["a", "m", "z"]),
        "its jobs back, by ID"
    );
    ensure!(
        b.consumers(q).await.ctx("consumers")?.is_empty(),
        "still listed"
    );
    let none = b
        .remove_consumer(q, "never", 10.0)
        .await
        .ctx("remove_consumer")?;
    ensure_eq!(
        (none.removed, none.heartbeat),
        (false, None),
        "an unknown consumer"
    );
    Ok(())
}

pub(super) async fn list_queues_finds_this_queue(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    b.push(q, &jobs(&["x"])).await.ctx("push")?;
    let queues = b.list_queues().await.ctx("list_queues")?;
    ensure!(queues.contains(q), "{q} not among {queues:?}");
    Ok(())
}

pub(super) async fn check_finds_nothing_on_a_consistent_queue(
    b: &dyn QueueBackend,
    q: &QueueName,
) -> Outcome {
    let ids: Vec<String> = (0..2500).map(|i| format!("j{i:04}")).collect();
    let batch: Vec<EncodedJob> = ids.iter().map(|id| job(id, "x")).collect();
    b.push(q, &batch).await.ctx("push")?;
    let owner = consumer("owner");
    join(b, q, &owner, 10.0).await?;
    let taken = b.take(q, &owner, 10, 1.0).await.ctx("take")?;
    let kills: Vec<KillJob> = taken
        .iter()
        .take(3)
        .map(|t| KillJob {
            id: t.id.clone(),
            data: None,
            reason: "r".into(),
        })
        .collect();
    b.kill(q, &owner, &kills, 5.0).await.ctx("kill")?;
    ensure_eq!(taken.len(), 10, "jobs taken");
    b.retry(q, &owner, &[failed(&taken[5].id, 9.0, None)], 5.0)
        .await
        .ctx("retry")?;
    let mut seen = BTreeSet::new();
    let mut cursor = 0;
    for _ in 0..1000 {
        let (page, next) = b.data_ids(q, cursor, 300).await.ctx("data_ids")?;
        seen.extend(page);
        match next {
            Some(next) => cursor = next,
            None => break,
        }
    }
    ensure_eq!(seen.len(), 2500, "data_ids over a whole pass");
    let report = admin::check(b, q).await.ctx("check")?;
    ensure!(
        report.is_clean(),
        "problems on a consistent queue: {:?}",
        report.problems
    );
    ensure_eq!(report.jobs, 2500, "jobs examined");
    Ok(())
}
