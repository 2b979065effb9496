//! Checks of `requeue_orphans`: jobs of consumers that stopped heartbeating.

use super::*;

pub(super) async fn requeue_orphans_oldest_first_within_max(
    b: &dyn QueueBackend,
    q: &QueueName,
) -> Outcome {
    let (old, mid, idle) = (consumer("old"), consumer("mid"), consumer("idle"));
    join(b, q, &old, 10.0).await?;
    join(b, q, &mid, 20.0).await?;
    join(b, q, &idle, 5.0).await?;
    b.push(q, &jobs(&["m1", "m2", "m3"])).await.ctx("push")?;
    ensure_eq!(
        b.take(q, &mid, 3, 1_700_000_000.0).await.ctx("take")?.len(),
        3,
        "jobs taken by mid"
    );
    b.push(q, &jobs(&["o1", "o2"])).await.ctx("push")?;
    ensure_eq!(
        b.take(q, &old, 2, 1_700_000_000.0).await.ctx("take")?.len(),
        2,
        "jobs taken by old"
    );
    drain(b, q, "drainer").await?; // registers "drainer" at 0 holding nothing
    ensure!(!signal_is_set(b, q).await?, "signal set before the sweep");

    let report = b
        .requeue_orphans(q, sweep(25.0, 3, 0))
        .await
        .ctx("requeue_orphans")?;
    ensure_eq!(report.requeued, 3, "requeued with max_jobs 3");
    ensure_eq!(report.killed, 0, "killed with max_orphan_requeues 0");
    ensure!(
        signal_is_set(b, q).await?,
        "a sweep that requeued jobs did not set the signal"
    );
    // "old" (score 10) is served before "mid" (20): both of its jobs, then one of mid's.
    let reader = consumer("reader");
    join(b, q, &reader, 100.0).await?;
    let first = ids_of(&b.take(q, &reader, 2, 1_700_000_000.0).await.ctx("take")?);
    ensure_eq!(
        set(&first),
        set(&strings(&["o1", "o2"])),
        "first two requeued jobs (oldest consumer first)"
    );
    let third = ids_of(&b.take(q, &reader, 10, 1_700_000_000.0).await.ctx("take")?);
    ensure_eq!(third.len(), 1, "jobs requeued from mid");
    ensure!(
        third[0].starts_with('m'),
        "third requeued job {:?} is not mid's",
        third[0]
    );
    ensure!(
        !heartbeat(b, q, &old, 30.0).await?,
        "old (emptied) is still registered"
    );
    ensure!(
        heartbeat(b, q, &mid, 20.0).await?,
        "mid (still holding jobs) was removed"
    );
    // The empty expired consumers ("idle" at 5, "drainer" at 0) are gone too.
    ensure!(
        !heartbeat(b, q, &idle, 30.0).await?,
        "idle expired consumer still registered"
    );
    ensure!(
        report.consumers_removed >= 2,
        "consumers removed: {} (old and idle at least)",
        report.consumers_removed
    );

    let report = b
        .requeue_orphans(q, sweep(25.0, 10, 0))
        .await
        .ctx("requeue_orphans")?;
    ensure_eq!(report.requeued, 2, "second sweep requeued mid's other two");
    ensure!(
        !heartbeat(b, q, &mid, 30.0).await?,
        "mid still registered after being emptied"
    );
    let rest = ids_of(&b.take(q, &reader, 10, 1_700_000_000.0).await.ctx("take")?);
    let mut all: Vec<String> = third.into_iter().chain(rest).collect();
    all.sort();
    ensure_eq!(
        all,
        strings(&["m1", "m2", "m3"]),
        "mid's jobs, each requeued once"
    );
    let report = b
        .requeue_orphans(q, sweep(25.0, 10, 0))
        .await
        .ctx("requeue_orphans")?;
    ensure_eq!((report.requeued, report.killed), (0, 0), "third sweep");
    Ok(())
}

pub(super) async fn requeue_orphans_spares_live_consumers(
    b: &dyn QueueBackend,
    q: &QueueName,
) -> Outcome {
    let (live, edge) = (consumer("live"), consumer("edge"));
    join(b, q, &live, 50.0).await?;
    join(b, q, &edge, 40.0).await?;
    b.push(q, &jobs(&["l"])).await.ctx("push")?;
    b.take(q, &live, 1, 1_700_000_000.0).await.ctx("take")?;
    b.push(q, &jobs(&["e"])).await.ctx("push")?;
    b.take(q, &edge, 1, 1_700_000_000.0).await.ctx("take")?;
    let report = b
        .requeue_orphans(q, sweep(39.999, 10, 1))
        .await
        .ctx("requeue_orphans")?;
    ensure_eq!(
        (report.requeued, report.killed, report.consumers_removed),
        (0, 0, 0),
        "sweep with no expired consumer"
    );
    let report = b
        .requeue_orphans(q, sweep(40.0, 10, 0))
        .await
        .ctx("requeue_orphans")?;
    ensure_eq!(
        (report.requeued, report.killed, report.consumers_removed),
        (1, 0, 1),
        "sweep expiring the consumer whose heartbeat equals expired_before"
    );
    ensure_eq!(
        b.ack(q, &live, &strings(&["l"]), 0.0).await.ctx("ack")?,
        vec![true],
        "live consumer's job still owned"
    );
    ensure!(
        heartbeat(b, q, &live, 60.0).await?,
        "live consumer was removed"
    );
    ensure_eq!(
        b.ack(q, &edge, &strings(&["e"]), 0.0).await.ctx("ack")?,
        vec![false],
        "expired consumer still owns its job"
    );
    Ok(())
}

pub(super) async fn requeue_orphans_kills_crash_loops(
    b: &dyn QueueBackend,
    q: &QueueName,
) -> Outcome {
    b.push(q, &jobs(&["crash", "fine"])).await.ctx("push")?;
    for round in 1..=2u32 {
        let victim = consumer(&format!("victim-{round}"));
        join(b, q, &victim, f64::from(round)).await?;
        let taken = ids_of(&b.take(q, &victim, 1, 1_700_000_000.0).await.ctx("take")?);
        ensure_eq!(taken, strings(&["crash"]), "round {round}: job taken");
        let report = b
            .requeue_orphans(q, sweep(100.0, 10, 3))
            .await
            .ctx("requeue_orphans")?;
        ensure_eq!(
            (report.requeued, report.killed),
            (1, 0),
            "round {round}: sweep"
        );
        // The job went back to the tail: put it ahead of "fine" again.
        let keeper = consumer(&format!("keeper-{round}"));
        join(b, q, &keeper, 1000.0).await?;
        let taken = ids_of(&b.take(q, &keeper, 1, 1_700_000_000.0).await.ctx("take")?);
        ensure_eq!(
            taken,
            strings(&["fine"]),
            "round {round}: head of the active list"
        );
        ensure_eq!(
            b.give_back(q, &keeper, &taken).await.ctx("give_back")?,
            1,
            "round {round}: give_back"
        );
    }
    let victim = consumer("victim-3");
    join(b, q, &victim, 3.0).await?;
    ensure_eq!(
        ids_of(&b.take(q, &victim, 1, 1_700_000_000.0).await.ctx("take")?),
        strings(&["crash"]),
        "round 3: job taken"
    );
    let report = b
        .requeue_orphans(q, sweep(100.0, 10, 3))
        .await
        .ctx("requeue_orphans")?;
    ensure_eq!(
        (report.requeued, report.killed, report.consumers_removed),
        (0, 1, 1),
        "round 3: sweep (third orphaning)"
    );
    ensure!(
        exists(b, q, "crash").await?,
        "the killed job no longer exists"
    );
    let reader = consumer("reader");
    join(b, q, &reader, 1000.0).await?;
    ensure_eq!(
        ids_of(&b.take(q, &reader, 10, 1_700_000_000.0).await.ctx("take")?),
        strings(&["fine"]),
        "active list after the kill"
    );
    let trimmed = b
        .trim_dead(
            q,
            DeadTrim {
                killed_before: 1000.5,
                keep_at_most: 100,
                max_jobs: 100,
            },
        )
        .await
        .ctx("trim_dead")?;
    ensure_eq!(trimmed, 1, "dead jobs killed at the sweep's now (1000)");
    // With max_orphan_requeues 0, a job is requeued however often it is orphaned.
    b.push(q, &jobs(&["again"])).await.ctx("push")?;
    for round in 1..=4u32 {
        let victim = consumer(&format!("zero-{round}"));
        join(b, q, &victim, 1.0).await?;
        b.take(q, &victim, 10, 1_700_000_000.0).await.ctx("take")?;
        let report = b
            .requeue_orphans(q, sweep(100.0, 10, 0))
            .await
            .ctx("requeue_orphans")?;
        ensure_eq!(
            (report.requeued, report.killed),
            (1, 0),
            "max_orphan_requeues 0, round {round}"
        );
    }
    Ok(())
}

pub(super) async fn orphan_count_cleared_when_job_ends(
    b: &dyn QueueBackend,
    q: &QueueName,
) -> Outcome {
    b.push(q, &jobs(&["j"])).await.ctx("push")?;
    let first = consumer("first");
    join(b, q, &first, 1.0).await?;
    b.take(q, &first, 1, 1_700_000_000.0).await.ctx("take")?;
    let report = b
        .requeue_orphans(q, sweep(10.0, 10, 2))
        .await
        .ctx("requeue_orphans")?;
    ensure_eq!((report.requeued, report.killed), (1, 0), "first orphaning");
    let finisher = consumer("finisher");
    join(b, q, &finisher, 100.0).await?;
    b.take(q, &finisher, 1, 1_700_000_000.0).await.ctx("take")?;
    ensure_eq!(
        b.ack(q, &finisher, &strings(&["j"]), 0.0)
            .await
            .ctx("ack")?,
        vec![true],
        "ack"
    );
    // A new job with the same ID starts from zero: one orphaning requeues it.
    ensure_eq!(
        b.push(q, &jobs(&["j"])).await.ctx("push")?,
        vec![true],
        "push after ack"
    );
    let second = consumer("second");
    join(b, q, &second, 2.0).await?;
    b.take(q, &second, 1, 1_700_000_000.0).await.ctx("take")?;
    let report = b
        .requeue_orphans(q, sweep(10.0, 10, 2))
        .await
        .ctx("requeue_orphans")?;
    ensure_eq!(
        (report.requeued, report.killed),
        (1, 0),
        "first orphaning of the new job (count not reset by ack?)"
    );
    Ok(())
}

pub(super) async fn requeue_orphans_keeps_or_clears_the_last_error(
    b: &dyn QueueBackend,
    q: &QueueName,
) -> Outcome {
    let first = consumer("first");
    join(b, q, &first, 10.0).await?;
    b.push(q, &jobs(&["a", "b"])).await.ctx("push")?;
    b.take(q, &first, 2, 1_700_000_000.0).await.ctx("take")?;
    retried_with_errors(b, q, &first, &first, &["a", "b"]).await?;
    // "first" stops heartbeating (last at 10): both jobs are orphaned once, requeued.
    let report = b
        .requeue_orphans(q, sweep(20.0, 10, 2))
        .await
        .ctx("requeue_orphans")?;
    ensure_eq!(
        (report.requeued, report.killed),
        (2, 0),
        "first sweep (requeued, killed)"
    );
    ensure_eq!(
        last_errors(b, q).await?,
        errors_of(&[("a", "failed a"), ("b", "failed b")]),
        "last errors of requeued orphans"
    );
    // "second" takes a and dies too: a is orphaned a second time, killed.
    let second = consumer("second");
    join(b, q, &second, 30.0).await?;
    let taken = b.take(q, &second, 1, 1_700_000_000.0).await.ctx("take")?;
    ensure_eq!(ids_of(&taken), strings(&["a"]), "job taken by second");
    let report = b
        .requeue_orphans(q, sweep(40.0, 10, 2))
        .await
        .ctx("requeue_orphans")?;
    ensure_eq!(
        (report.requeued, report.killed),
        (0, 1),
        "second sweep (requeued, killed)"
    );
    let snap = b.snapshot(q).await.ctx("snapshot")?;
    ensure_eq!(
        snap.errors,
        errors_of(&[("b", "failed b")]),
        "last errors after a crash-loop kill of a"
    );
    ensure!(
        snap.reasons
            .get("a")
            .is_some_and(|r| r.starts_with("orphaned 2 times")),
        "dead reason of a: {:?}",
        snap.reasons.get("a")
    );
    Ok(())
}
