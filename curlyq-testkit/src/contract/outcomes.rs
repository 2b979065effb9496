//! Checks of the outcomes of a taken job: `ack`, `retry`, `kill`, `give_back`.

use super::*;

pub(super) async fn ack_only_owned(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    let (owner, other) = owned_setup(b, q, &["a", "b"]).await?;
    ensure_eq!(
        b.ack(q, &other, &strings(&["a", "b"]), 0.0)
            .await
            .ctx("ack")?,
        vec![false, false],
        "ack by another consumer"
    );
    ensure!(
        exists(b, q, "a").await?,
        "job a gone after another consumer's ack"
    );
    ensure_eq!(
        b.ack(q, &owner, &strings(&["a", "missing", "a"]), 0.0)
            .await
            .ctx("ack")?,
        vec![true, false, false],
        "ack by the owner (a, an unknown ID, a again)"
    );
    ensure!(!exists(b, q, "a").await?, "data of acked job a still there");
    ensure_eq!(
        b.ack(q, &owner, &strings(&["b"]), 0.0).await.ctx("ack")?,
        vec![true],
        "ack of b by the owner"
    );
    ensure_eq!(
        b.ack(q, &owner, &[], 0.0).await.ctx("ack")?,
        Vec::<bool>::new(),
        "ack of nothing"
    );
    Ok(())
}

pub(super) async fn retry_only_owned(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    let (owner, other) = owned_setup(b, q, &["a", "b"]).await?;
    let retry = |id: &str, at: f64| RetryJob {
        error: None,
        id: id.into(),
        data: format!("retried-{id}").into_bytes(),
        at,
    };
    ensure_eq!(
        b.retry(q, &other, &[retry("a", 50.0)], 0.0)
            .await
            .ctx("retry")?,
        vec![false],
        "retry by another consumer"
    );
    ensure_eq!(
        b.retry(q, &owner, &[retry("a", 50.0), retry("zzz", 50.0)], 0.0)
            .await
            .ctx("retry")?,
        vec![true, false],
        "retry by the owner (a, an unknown ID)"
    );
    ensure_eq!(
        b.retry(q, &owner, &[retry("a", 60.0)], 0.0)
            .await
            .ctx("retry")?,
        vec![false],
        "second retry of a"
    );
    ensure_eq!(
        b.ack(q, &owner, &strings(&["a"]), 0.0).await.ctx("ack")?,
        vec![false],
        "ack of a retried job"
    );
    let due = b.enqueue_due(q, 49.5, 10).await.ctx("enqueue_due")?;
    ensure_eq!(
        (due.moved, due.next_due),
        (0, Some(50.0)),
        "retried job not yet due"
    );
    let due = b.enqueue_due(q, 50.0, 10).await.ctx("enqueue_due")?;
    ensure_eq!(due.moved, 1, "retried job due at its time");
    let taken = b.take(q, &other, 10, 1_700_000_000.0).await.ctx("take")?;
    ensure_eq!(ids_of(&taken), strings(&["a"]), "retried job taken again");
    ensure_eq!(
        taken[0].data.as_deref(),
        Some(&b"retried-a"[..]),
        "data of the retried job"
    );
    ensure_eq!(
        b.ack(q, &owner, &strings(&["b"]), 0.0).await.ctx("ack")?,
        vec![true],
        "b still owned by the owner"
    );
    Ok(())
}

pub(super) async fn kill_only_owned(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    let (owner, other) = owned_setup(b, q, &["a", "b", "c"]).await?;
    let kill = |id: &str, data: Option<&str>| KillJob {
        id: id.into(),
        data: data.map(|d| d.as_bytes().to_vec()),
        reason: format!("killed {id}"),
    };
    ensure_eq!(
        b.kill(q, &other, &[kill("a", Some("x"))], 20.0)
            .await
            .ctx("kill")?,
        vec![false],
        "kill by another consumer"
    );
    ensure_eq!(
        b.kill(
            q,
            &owner,
            &[kill("a", Some("new")), kill("b", None), kill("nope", None)],
            20.0
        )
        .await
        .ctx("kill")?,
        vec![true, true, false],
        "kill by the owner"
    );
    ensure_eq!(
        b.kill(q, &owner, &[kill("a", None)], 21.0)
            .await
            .ctx("kill")?,
        vec![false],
        "second kill of a"
    );
    ensure_eq!(
        b.ack(q, &owner, &strings(&["a", "c"]), 0.0)
            .await
            .ctx("ack")?,
        vec![false, true],
        "ack after kill"
    );
    ensure!(exists(b, q, "a").await?, "a killed job no longer exists");
    ensure!(
        exists(b, q, "b").await?,
        "a job killed without new data no longer exists"
    );
    // Both are in the dead set at 20: they are trimmed as killed before 20.5.
    let trimmed = b
        .trim_dead(
            q,
            DeadTrim {
                killed_before: 20.5,
                keep_at_most: 100,
                max_jobs: 100,
            },
        )
        .await
        .ctx("trim_dead")?;
    ensure_eq!(trimmed, 2, "dead jobs killed at 20, trimmed before 20.5");
    Ok(())
}

pub(super) async fn give_back_only_owned(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    let (owner, other) = owned_setup(b, q, &["a", "b", "c"]).await?;
    // The owner took exactly what was there; a take that finds nothing clears the signal.
    ensure!(
        b.take(q, &owner, 1, 1_700_000_000.0)
            .await
            .ctx("take")?
            .is_empty(),
        "take from a drained queue returned jobs"
    );
    ensure!(
        !signal_is_set(b, q).await?,
        "signal set after a take that found nothing"
    );
    ensure_eq!(
        b.give_back(q, &other, &strings(&["a"]))
            .await
            .ctx("give_back")?,
        0,
        "give_back by another consumer"
    );
    ensure!(
        !signal_is_set(b, q).await?,
        "give_back that moved nothing set the signal"
    );
    let given = b
        .give_back(q, &owner, &strings(&["c", "zzz", "a", "c"]))
        .await
        .ctx("give_back")?;
    ensure_eq!(given, 2, "give_back by the owner (c, unknown, a, c again)");
    ensure!(
        signal_is_set(b, q).await?,
        "give_back that moved jobs did not set the signal"
    );
    // Given back to the tail, in the order given.
    b.push(q, &jobs(&["d"])).await.ctx("push")?;
    let given = b
        .give_back(q, &owner, &strings(&["b"]))
        .await
        .ctx("give_back")?;
    ensure_eq!(given, 1, "give_back of b by the owner");
    let taken = b.take(q, &other, 10, 1_700_000_000.0).await.ctx("take")?;
    ensure_eq!(
        ids_of(&taken),
        strings(&["c", "a", "d", "b"]),
        "active list after give_back, push, give_back"
    );
    ensure_eq!(
        taken[0].data.as_deref(),
        Some(&b"data-c"[..]),
        "data of a given-back job"
    );
    ensure_eq!(
        b.ack(q, &owner, &strings(&["a", "b"]), 0.0)
            .await
            .ctx("ack")?,
        vec![false, false],
        "ack by the owner after give_back"
    );
    ensure_eq!(
        b.ack(q, &other, &strings(&["c", "a", "d", "b"]), 0.0)
            .await
            .ctx("ack")?,
        vec![true; 4],
        "ack by the consumer that took the given-back jobs"
    );
    Ok(())
}

pub(super) async fn retry_keeps_the_last_error(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    let (owner, _) = owned_setup(b, q, &["a", "b"]).await?;
    ensure_eq!(
        last_errors(b, q).await?,
        errors_of(&[]),
        "last errors before any retry"
    );
    retried_with_errors(b, q, &owner, &owner, &["a", "b"]).await?;
    // The longest message a consumer sends (1,024 bytes), not all ASCII.
    let long = format!("échec {}", "x".repeat(1024 - "échec ".len()));
    ensure_eq!(long.len(), 1024, "length of the long message");
    let retried = b
        .retry(
            q,
            &owner,
            &[failed("a", 20.0, Some(&long)), failed("b", 20.0, None)],
            0.0,
        )
        .await
        .ctx("retry")?;
    ensure_eq!(retried, vec![true, true], "second retry of a and b");
    ensure_eq!(
        last_errors(b, q).await?,
        errors_of(&[("a", &long)]),
        "after a retry of a with a new error and of b without one"
    );
    Ok(())
}

pub(super) async fn retry_not_owned_writes_no_error(
    b: &dyn QueueBackend,
    q: &QueueName,
) -> Outcome {
    let (owner, other) = owned_setup(b, q, &["a"]).await?;
    ensure_eq!(
        b.retry(q, &other, &[failed("a", 10.0, Some("not mine"))], 0.0)
            .await
            .ctx("retry")?,
        vec![false],
        "retry of a by another consumer"
    );
    ensure_eq!(
        b.retry(q, &owner, &[failed("zzz", 10.0, Some("unknown"))], 0.0)
            .await
            .ctx("retry")?,
        vec![false],
        "retry of an unknown ID"
    );
    ensure_eq!(
        last_errors(b, q).await?,
        errors_of(&[]),
        "last errors after retries of jobs not owned"
    );
    ensure_eq!(
        b.retry(
            q,
            &owner,
            &[
                failed("a", 10.0, Some("mine")),
                failed("a", 10.0, Some("again"))
            ],
            0.0
        )
        .await
        .ctx("retry")?,
        vec![true, false],
        "retry of a by its owner, twice in one batch"
    );
    ensure_eq!(
        last_errors(b, q).await?,
        errors_of(&[("a", "mine")]),
        "the second retry of a (no longer owned) wrote nothing"
    );
    Ok(())
}

pub(super) async fn ack_clears_the_last_error(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    let (owner, other) = owned_setup(b, q, &["a", "b", "c"]).await?;
    retried_with_errors(b, q, &owner, &owner, &["a", "b", "c"]).await?;
    ensure_eq!(
        b.ack(q, &other, &strings(&["a"]), 0.0).await.ctx("ack")?,
        vec![false],
        "ack of a by another consumer"
    );
    ensure_eq!(
        last_errors(b, q).await?.len(),
        3,
        "last errors after an ack of a job not owned"
    );
    ensure_eq!(
        b.ack(q, &owner, &strings(&["a", "b"]), 0.0)
            .await
            .ctx("ack")?,
        vec![true, true],
        "ack of a and b by the owner"
    );
    ensure_eq!(
        last_errors(b, q).await?,
        errors_of(&[("c", "failed c")]),
        "last errors after the ack of a and b"
    );
    Ok(())
}

pub(super) async fn kill_clears_the_last_error(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    let (owner, other) = owned_setup(b, q, &["a", "b", "c"]).await?;
    retried_with_errors(b, q, &owner, &owner, &["a", "b", "c"]).await?;
    let kill = |id: &str, data: Option<&str>| KillJob {
        id: id.into(),
        data: data.map(|d| d.as_bytes().to_vec()),
        reason: format!("killed {id}"),
    };
    ensure_eq!(
        b.kill(q, &other, &[kill("a", Some("x"))], 20.0)
            .await
            .ctx("kill")?,
        vec![false],
        "kill of a by another consumer"
    );
    ensure_eq!(
        last_errors(b, q).await?.len(),
        3,
        "last errors after a kill of a job not owned"
    );
    ensure_eq!(
        b.kill(q, &owner, &[kill("a", Some("new")), kill("b", None)], 20.0)
            .await
            .ctx("kill")?,
        vec![true, true],
        "kill of a (new data) and b (data kept) by the owner"
    );
    let snap = b.snapshot(q).await.ctx("snapshot")?;
    ensure_eq!(
        snap.errors,
        errors_of(&[("c", "failed c")]),
        "last errors after the kill of a and b"
    );
    ensure_eq!(
        snap.reasons.get("a").map(String::as_str),
        Some("killed a"),
        "dead reason of a"
    );
    Ok(())
}
