//! Checks of the consumer side of taking: `register`, `take` (and `take_and_peek`), the
//! waiter, `unregister`.

use super::*;

pub(super) async fn register_join_and_heartbeat(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    let c = consumer("c1");
    ensure!(
        !heartbeat(b, q, &c, 1.0).await?,
        "heartbeat of a never-registered consumer returned true"
    );
    // The failed heartbeat must not have registered it.
    b.push(q, &jobs(&["j"])).await.ctx("push")?;
    match b.take(q, &c, 1, 1_700_000_000.0).await {
        Err(BackendError::NotRegistered { .. }) => {}
        other => {
            return Err(format!(
                "take after a failed heartbeat: expected NotRegistered, got {other:?}"
            ))
        }
    }
    join(b, q, &c, 10.0).await?;
    join(b, q, &c, 12.0).await?;
    ensure!(
        heartbeat(b, q, &c, 20.0).await?,
        "heartbeat of a registered consumer returned false"
    );
    // The score is the latest heartbeat: 20 is not expired before 19.
    let report = b
        .requeue_orphans(
            q,
            OrphanSweep {
                expired_before: 19.0,
                max_jobs: 10,
                max_orphan_requeues: 0,
                now: 30.0,
            },
        )
        .await
        .ctx("requeue_orphans")?;
    ensure_eq!(
        report.consumers_removed,
        0,
        "consumers removed at 19 after a heartbeat at 20"
    );
    let report = b
        .requeue_orphans(
            q,
            OrphanSweep {
                expired_before: 20.0,
                max_jobs: 10,
                max_orphan_requeues: 0,
                now: 30.0,
            },
        )
        .await
        .ctx("requeue_orphans")?;
    ensure_eq!(
        report.consumers_removed,
        1,
        "consumers removed at 20 (heartbeat at 20)"
    );
    ensure!(
        !heartbeat(b, q, &c, 31.0).await?,
        "heartbeat of a reaped consumer returned true"
    );
    join(b, q, &c, 32.0).await?;
    ensure!(
        heartbeat(b, q, &c, 33.0).await?,
        "heartbeat after rejoining returned false"
    );
    Ok(())
}

pub(super) async fn take_requires_registration(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    b.push(q, &jobs(&["a", "b"])).await.ctx("push")?;
    let stranger = consumer("stranger");
    match b.take(q, &stranger, 10, 1_700_000_000.0).await {
        Err(BackendError::NotRegistered { queue, consumer }) => {
            ensure_eq!(queue, q.as_str().to_owned(), "queue named in NotRegistered");
            ensure_eq!(
                consumer,
                stranger.as_str().to_owned(),
                "consumer named in NotRegistered"
            );
        }
        other => {
            return Err(format!(
                "take by an unregistered consumer: expected NotRegistered, got {other:?}"
            ))
        }
    }
    let taken = drain(b, q, "reader").await?;
    ensure_eq!(
        ids_of(&taken),
        strings(&["a", "b"]),
        "jobs left after the refused take"
    );
    ensure_eq!(
        b.ack(q, &stranger, &strings(&["a"]), 0.0)
            .await
            .ctx("ack")?,
        vec![false],
        "ack by the refused consumer"
    );
    Ok(())
}

pub(super) async fn take_and_peek_reports_the_earliest_scheduled(
    b: &dyn QueueBackend,
    q: &QueueName,
) -> Outcome {
    let c = consumer("worker");
    join(b, q, &c, 1.0).await?;
    let now = 1_700_000_000.0;
    let report = b.take_and_peek(q, &c, 5, now).await.ctx("take_and_peek")?;
    ensure!(
        report.jobs.is_empty(),
        "take_and_peek from an empty queue returned jobs"
    );
    // A backend may keep the provided method, which does not look; it must still take.
    let looks = report.scheduled != ScheduledPeek::Unknown;
    let expect = |score: f64| {
        if looks {
            ScheduledPeek::Earliest(score)
        } else {
            ScheduledPeek::Unknown
        }
    };
    if looks {
        ensure_eq!(
            report.scheduled,
            ScheduledPeek::Empty,
            "peek at nothing scheduled"
        );
    }
    let later = [
        ScheduledJob {
            job: job("s1", "x"),
            at: 50.0,
        },
        ScheduledJob {
            job: job("s2", "y"),
            at: -3.5,
        },
    ];
    b.schedule(q, &later).await.ctx("schedule")?;
    b.push(q, &jobs(&["a", "b"])).await.ctx("push")?;
    let report = b.take_and_peek(q, &c, 1, now).await.ctx("take_and_peek")?;
    ensure_eq!(ids_of(&report.jobs), strings(&["a"]), "take_and_peek of 1");
    ensure_eq!(
        report.scheduled,
        expect(-3.5),
        "peek with s2 at -3.5 earliest"
    );
    ensure!(
        signal_is_set(b, q).await?,
        "signal cleared by a take_and_peek that got all it asked for"
    );
    // More than one batch: the peek is still there, and the jobs all come in order.
    let many: Vec<String> = (0..MAX_BATCH + 5).map(|i| format!("m{i:05}")).collect();
    let names: Vec<&str> = many.iter().map(String::as_str).collect();
    b.push(q, &jobs(&names)).await.ctx("push")?;
    let report = b
        .take_and_peek(q, &c, MAX_BATCH + 10, now)
        .await
        .ctx("take_and_peek")?;
    let mut want = vec!["b".to_owned()];
    want.extend(many.iter().cloned());
    ensure_eq!(ids_of(&report.jobs), want, "take_and_peek over two batches");
    ensure_eq!(
        report.scheduled,
        expect(-3.5),
        "peek after a take over two batches"
    );
    ensure!(
        !signal_is_set(b, q).await?,
        "signal still set after a take_and_peek that found fewer than max"
    );
    // The peek follows the set: with s2 moved, s1 is the earliest.
    b.enqueue_due(q, 0.0, 10).await.ctx("enqueue_due")?;
    let report = b.take_and_peek(q, &c, 5, now).await.ctx("take_and_peek")?;
    ensure_eq!(
        ids_of(&report.jobs),
        strings(&["s2"]),
        "take_and_peek after enqueue_due"
    );
    ensure_eq!(report.scheduled, expect(50.0), "peek with s1 at 50 left");
    let stranger = consumer("stranger");
    match b.take_and_peek(q, &stranger, 5, now).await {
        Err(BackendError::NotRegistered { .. }) => Ok(()),
        other => Err(format!(
            "take_and_peek by an unregistered consumer: expected NotRegistered, got {other:?}"
        )),
    }
}

pub(super) async fn take_moves_head_and_clears_signal(
    b: &dyn QueueBackend,
    q: &QueueName,
) -> Outcome {
    let c = consumer("worker");
    join(b, q, &c, 1.0).await?;
    ensure!(
        b.take(q, &c, 5, 1_700_000_000.0)
            .await
            .ctx("take")?
            .is_empty(),
        "take from an empty queue returned jobs"
    );
    b.push(q, &jobs(&["a", "b", "c", "d"])).await.ctx("push")?;
    let taken = b.take(q, &c, 2, 1_700_000_000.0).await.ctx("take")?;
    ensure_eq!(ids_of(&taken), strings(&["a", "b"]), "first take of 2");
    ensure!(
        signal_is_set(b, q).await?,
        "signal cleared by a take that got all it asked for"
    );
    let taken = b.take(q, &c, 2, 1_700_000_000.0).await.ctx("take")?;
    ensure_eq!(ids_of(&taken), strings(&["c", "d"]), "second take of 2");
    // Exactly max were there: the signal may stay set; the next take finds fewer.
    let taken = b.take(q, &c, 2, 1_700_000_000.0).await.ctx("take")?;
    ensure!(
        taken.is_empty(),
        "take from a drained queue returned {:?}",
        ids_of(&taken)
    );
    ensure!(
        !signal_is_set(b, q).await?,
        "signal still set after a take that found fewer than max"
    );
    b.push(q, &jobs(&["e"])).await.ctx("push")?;
    let taken = b.take(q, &c, 3, 1_700_000_000.0).await.ctx("take")?;
    ensure_eq!(
        ids_of(&taken),
        strings(&["e"]),
        "take of 3 with one waiting"
    );
    ensure!(
        !signal_is_set(b, q).await?,
        "signal still set after a take that found fewer than max"
    );
    // Every taken job is owned by the consumer.
    let all = strings(&["a", "b", "c", "d", "e"]);
    ensure_eq!(
        b.ack(q, &c, &all, 0.0).await.ctx("ack")?,
        vec![true; 5],
        "ack of every taken job"
    );
    Ok(())
}

pub(super) async fn wait_wakes_on_push(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    let mut waiter = b.waiter(q).await.ctx("waiter")?;
    let waiting = waiter.wait(LONG_WAIT);
    let to_push = jobs(&["a"]);
    let pushing = b.push(q, &to_push);
    let (seen, pushed) = futures::future::join(waiting, pushing).await;
    ensure_eq!(pushed.ctx("push")?, vec![true], "push during a wait");
    ensure!(
        seen.ctx("wait")?,
        "a wait of {LONG_WAIT:?} did not see a push made while it waited"
    );
    Ok(())
}

pub(super) async fn unregister_only_when_idle(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    let (busy, idle) = owned_setup(b, q, &["a"]).await?;
    ensure!(
        !b.unregister(q, &busy).await.ctx("unregister")?,
        "unregister of a consumer holding a job returned true"
    );
    ensure!(
        heartbeat(b, q, &busy, 11.0).await?,
        "a busy consumer was unregistered"
    );
    ensure!(
        b.unregister(q, &idle).await.ctx("unregister")?,
        "unregister of an idle consumer returned false"
    );
    ensure!(
        !heartbeat(b, q, &idle, 11.0).await?,
        "an unregistered consumer is still registered"
    );
    ensure_eq!(
        b.ack(q, &busy, &strings(&["a"]), 0.0).await.ctx("ack")?,
        vec![true],
        "ack"
    );
    ensure!(
        b.unregister(q, &busy).await.ctx("unregister")?,
        "unregister after the last ack returned false"
    );
    ensure!(
        !heartbeat(b, q, &busy, 12.0).await?,
        "consumer still registered after unregister"
    );
    match b.take(q, &busy, 1, 1_700_000_000.0).await {
        Err(BackendError::NotRegistered { .. }) => Ok(()),
        other => Err(format!(
            "take after unregister: expected NotRegistered, got {other:?}"
        )),
    }
}
