//! Checks of `schedule` and `enqueue_due`: scheduled jobs and when they become due.

use super::*;

pub(super) async fn schedule_deduplicates_and_signals(
    b: &dyn QueueBackend,
    q: &QueueName,
) -> Outcome {
    let sched = [
        ScheduledJob {
            job: job("s1", "a"),
            at: 50.0,
        },
        ScheduledJob {
            job: job("s2", "b"),
            at: 40.0,
        },
    ];
    ensure_eq!(
        b.schedule(q, &sched).await.ctx("schedule")?,
        vec![true, true],
        "schedule of new jobs"
    );
    ensure!(
        signal_is_set(b, q).await?,
        "schedule of new jobs did not set the signal (idle consumers must wake to see the new due time)"
    );
    b.push(q, &jobs(&["p"])).await.ctx("push")?;
    let again = [
        ScheduledJob {
            job: job("s1", "changed"),
            at: 1.0,
        },
        ScheduledJob {
            job: job("p", "changed"),
            at: 1.0,
        },
    ];
    ensure_eq!(
        b.schedule(q, &again).await.ctx("schedule")?,
        vec![false, false],
        "schedule of existing IDs"
    );
    let due = b.enqueue_due(q, 45.0, 10).await.ctx("enqueue_due")?;
    ensure_eq!(due.moved, 1, "jobs due at 45");
    ensure_eq!(due.next_due, Some(50.0), "next due time");
    let taken = drain(b, q, "reader").await?;
    ensure_eq!(ids_of(&taken), strings(&["p", "s2"]), "active list");
    ensure_eq!(taken[0].data.as_deref(), Some(&b"data-p"[..]), "data of p");
    Ok(())
}

pub(super) async fn enqueue_due_moves_lowest_first(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    let sched: Vec<ScheduledJob> = [
        ("late", 30.0),
        ("neg", -5.0),
        ("mid", 10.0),
        ("zero", 0.0),
        ("future", 99.0),
    ]
    .iter()
    .map(|(id, at)| ScheduledJob {
        job: job(id, id),
        at: *at,
    })
    .collect();
    ensure_eq!(
        b.schedule(q, &sched).await.ctx("schedule")?,
        vec![true; 5],
        "schedule"
    );
    ensure!(
        signal_is_set(b, q).await?,
        "schedule of new jobs did not set the signal"
    );
    // A take that finds the active list empty clears the signal again.
    ensure!(
        drain(b, q, "reader").await?.is_empty(),
        "nothing is active before enqueue_due"
    );
    ensure!(
        !signal_is_set(b, q).await?,
        "signal still set after a take found nothing"
    );
    let due = b.enqueue_due(q, 30.0, 2).await.ctx("enqueue_due")?;
    ensure_eq!(due.moved, 2, "moved with max 2");
    ensure_eq!(due.next_due, Some(10.0), "next due after moving 2");
    ensure!(
        signal_is_set(b, q).await?,
        "enqueue_due that moved jobs did not set the signal"
    );
    let due = b.enqueue_due(q, 30.0, 10).await.ctx("enqueue_due")?;
    ensure_eq!(
        due.moved,
        2,
        "moved with max 10 at 30 (score equal to now included)"
    );
    ensure_eq!(due.next_due, Some(99.0), "next due");
    let taken = drain(b, q, "reader").await?;
    ensure_eq!(
        ids_of(&taken),
        strings(&["neg", "zero", "mid", "late"]),
        "active list (lowest scores first)"
    );
    let due = b.enqueue_due(q, 50.0, 0).await.ctx("enqueue_due")?;
    ensure_eq!(due.moved, 0, "moved with max 0");
    Ok(())
}

pub(super) async fn enqueue_due_reports_next_due(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    let due = b.enqueue_due(q, 100.0, 10).await.ctx("enqueue_due")?;
    ensure_eq!(
        (due.moved, due.next_due),
        (0, None),
        "enqueue_due on an empty queue"
    );
    ensure!(
        !signal_is_set(b, q).await?,
        "enqueue_due that moved nothing set the signal"
    );
    let sched: Vec<ScheduledJob> = (0..6)
        .map(|i| ScheduledJob {
            job: job(&format!("t{i}"), "x"),
            at: -100.0 + f64::from(i) * 0.5,
        })
        .collect();
    b.schedule(q, &sched).await.ctx("schedule")?;
    b.schedule(
        q,
        &[ScheduledJob {
            job: job("later", "x"),
            at: 7.25,
        }],
    )
    .await
    .ctx("schedule")?;
    let due = b.enqueue_due(q, -98.0, 3).await.ctx("enqueue_due")?;
    ensure_eq!(due.moved, 3, "moved with max 3 (5 due, all negative)");
    ensure_eq!(due.next_due, Some(-98.5), "next due (fractions kept)");
    let due = b.enqueue_due(q, -98.0, 10).await.ctx("enqueue_due")?;
    ensure_eq!(due.moved, 2, "moved the remaining due ones");
    ensure_eq!(due.next_due, Some(-97.5), "next due (t5)");
    let taken = drain(b, q, "reader").await?;
    ensure_eq!(
        ids_of(&taken),
        strings(&["t0", "t1", "t2", "t3", "t4"]),
        "moved exactly the due members"
    );
    let due = b.enqueue_due(q, 100.0, 10).await.ctx("enqueue_due")?;
    ensure_eq!((due.moved, due.next_due), (2, None), "moving the rest");
    Ok(())
}
