//! Checks of `push`: new jobs in order, deduplication, the signal.

use super::*;

pub(super) async fn push_reports_new_and_keeps_order(
    b: &dyn QueueBackend,
    q: &QueueName,
) -> Outcome {
    let added = b.push(q, &jobs(&["a", "b", "c"])).await.ctx("push")?;
    ensure_eq!(added, vec![true, true, true], "push of three new jobs");
    let added = b.push(q, &[]).await.ctx("push of nothing")?;
    ensure!(added.is_empty(), "push of no jobs returned {added:?}");
    let taken = drain(b, q, "reader").await?;
    ensure_eq!(
        ids_of(&taken),
        strings(&["a", "b", "c"]),
        "IDs taken after push"
    );
    for t in &taken {
        ensure_eq!(
            t.data.as_deref(),
            Some(format!("data-{}", t.id).as_bytes()),
            "data of job {}",
            t.id
        );
    }
    Ok(())
}

pub(super) async fn push_deduplicates_existing_ids(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    let c = consumer("worker");
    join(b, q, &c, 10.0).await?;
    // Active.
    b.push(q, &[job("act", "first")]).await.ctx("push")?;
    let added = b
        .push(q, &[job("act", "second"), job("new", "x")])
        .await
        .ctx("push")?;
    ensure_eq!(
        added,
        vec![false, true],
        "push of an active ID then a new one"
    );
    // In flight.
    let taken = b.take(q, &c, 1, 1_700_000_000.0).await.ctx("take")?;
    ensure_eq!(ids_of(&taken), strings(&["act"]), "first take");
    ensure_eq!(
        taken[0].data.as_deref(),
        Some(&b"first"[..]),
        "data of the deduplicated job"
    );
    let added = b.push(q, &[job("act", "third")]).await.ctx("push")?;
    ensure_eq!(added, vec![false], "push of an in-flight ID");
    // Scheduled.
    b.schedule(
        q,
        &[ScheduledJob {
            job: job("sch", "s"),
            at: 1000.0,
        }],
    )
    .await
    .ctx("schedule")?;
    ensure_eq!(
        b.push(q, &[job("sch", "p")]).await.ctx("push")?,
        vec![false],
        "push of a scheduled ID"
    );
    // Dead.
    let kill = KillJob {
        id: "act".into(),
        data: None,
        reason: "test".into(),
    };
    ensure_eq!(
        b.kill(q, &c, &[kill], 11.0).await.ctx("kill")?,
        vec![true],
        "kill of an owned job"
    );
    ensure_eq!(
        b.push(q, &[job("act", "fourth")]).await.ctx("push")?,
        vec![false],
        "push of a dead ID"
    );
    // The active list holds only "new" (nothing was appended by the refused pushes).
    let taken = b.take(q, &c, 10, 1_700_000_000.0).await.ctx("take")?;
    ensure_eq!(
        ids_of(&taken),
        strings(&["new"]),
        "active list after refused pushes"
    );
    // Acked: the ID is free again.
    ensure_eq!(
        b.ack(q, &c, &strings(&["new"]), 0.0).await.ctx("ack")?,
        vec![true],
        "ack"
    );
    ensure_eq!(
        b.push(q, &[job("new", "again")]).await.ctx("push")?,
        vec![true],
        "push of an acked ID"
    );
    Ok(())
}

pub(super) async fn push_batch_first_duplicate_wins(
    b: &dyn QueueBackend,
    q: &QueueName,
) -> Outcome {
    let added = b
        .push(q, &[job("x", "one"), job("y", "y"), job("x", "two")])
        .await
        .ctx("push")?;
    ensure_eq!(added, vec![true, true, false], "push with a repeated ID");
    let sched = [
        ScheduledJob {
            job: job("s", "one"),
            at: 5.0,
        },
        ScheduledJob {
            job: job("s", "two"),
            at: 1.0,
        },
    ];
    ensure_eq!(
        b.schedule(q, &sched).await.ctx("schedule")?,
        vec![true, false],
        "schedule with a repeated ID"
    );
    let due = b.enqueue_due(q, 3.0, 10).await.ctx("enqueue_due")?;
    ensure_eq!(
        due.moved,
        0,
        "jobs due at 3 (the second schedule must not have moved s to 1)"
    );
    b.enqueue_due(q, 5.0, 10).await.ctx("enqueue_due")?;
    let taken = drain(b, q, "reader").await?;
    ensure_eq!(ids_of(&taken), strings(&["x", "y", "s"]), "active list");
    ensure_eq!(taken[0].data.as_deref(), Some(&b"one"[..]), "data of x");
    ensure_eq!(taken[2].data.as_deref(), Some(&b"one"[..]), "data of s");
    Ok(())
}

pub(super) async fn push_sets_signal(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    ensure!(
        !signal_is_set(b, q).await?,
        "wait on a fresh queue returned true"
    );
    b.push(q, &jobs(&["a"])).await.ctx("push")?;
    let mut waiter = b.waiter(q).await.ctx("waiter")?;
    for round in 1..=2 {
        let seen = waiter.wait(LONG_WAIT).await.ctx("wait")?;
        ensure!(seen, "wait #{round} after a push returned false");
    }
    ensure!(
        signal_is_set(b, q).await?,
        "a second waiter did not see the signal"
    );
    // A refused push sets no signal.
    drain(b, q, "reader").await?;
    ensure!(
        !signal_is_set(b, q).await?,
        "signal still set after the active list was drained"
    );
    b.push(q, &jobs(&["a"])).await.ctx("push")?;
    ensure!(
        !signal_is_set(b, q).await?,
        "a push that added nothing set the signal"
    );
    Ok(())
}
