//! Checks of the trace contexts a producer stores beside its jobs (`Q:trace`): written
//! with a push or schedule, read by a traced take, kept while the job lives (retried,
//! dead, retried from the dead set), removed with it.

use curlyq_core::admin::{JobState, Selection};

use super::*;

/// Two encoded contexts, as the producer writes them (opaque to the backend).
const T1: &str = r#"{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}"#;
const T2: &str = r#"{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}"#;

/// Takes up to `max` jobs with their traces: (ID, trace) each.
async fn take_traced(
    b: &dyn QueueBackend,
    q: &QueueName,
    c: &ConsumerId,
    max: usize,
) -> Result<Vec<(String, Option<String>)>, String> {
    let report = b
        .take_traced(q, c, max, 1_700_000_000.0)
        .await
        .ctx("take_traced")?;
    Ok(report.jobs.into_iter().map(|j| (j.id, j.trace)).collect())
}

fn traced(pairs: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
    pairs
        .iter()
        .map(|(id, t)| ((*id).to_owned(), t.map(str::to_owned)))
        .collect()
}

pub(super) async fn push_traced_is_read_by_a_traced_take_and_ack_removes_it(
    b: &dyn QueueBackend,
    q: &QueueName,
) -> Outcome {
    let c = consumer("worker");
    join(b, q, &c, 10.0).await?;
    ensure_eq!(
        b.push_traced(q, &jobs(&["a", "b"]), Some(T1))
            .await
            .ctx("push_traced")?,
        vec![true, true],
        "push_traced of two new jobs"
    );
    ensure_eq!(
        take_traced(b, q, &c, 1).await?,
        traced(&[("a", Some(T1))]),
        "a traced take gives the job its producer's context"
    );
    let plain = b
        .take_and_peek(q, &c, 1, 1_700_000_000.0)
        .await
        .ctx("take_and_peek")?;
    ensure_eq!(ids_of(&plain.jobs), strings(&["b"]), "plain take");
    ensure_eq!(plain.jobs[0].trace, None, "a plain take reads no trace");
    ensure_eq!(
        b.ack(q, &c, &strings(&["a", "b"]), 11.0).await.ctx("ack")?,
        vec![true, true],
        "ack of both"
    );
    // The same IDs pushed again without a context: nothing of the old one is left.
    b.push(q, &jobs(&["a", "b"])).await.ctx("push")?;
    ensure_eq!(
        take_traced(b, q, &c, 2).await?,
        traced(&[("a", None), ("b", None)]),
        "after the ack, the IDs pushed again carry no trace"
    );
    Ok(())
}

pub(super) async fn take_traced_sees_the_context_after_retry_and_death(
    b: &dyn QueueBackend,
    q: &QueueName,
) -> Outcome {
    let c = consumer("worker");
    join(b, q, &c, 10.0).await?;
    b.push_traced(q, &jobs(&["x"]), Some(T1))
        .await
        .ctx("push_traced")?;
    b.schedule_traced(
        q,
        &[ScheduledJob {
            job: job("later", "l"),
            at: 5.0,
        }],
        Some(T2),
    )
    .await
    .ctx("schedule_traced")?;
    ensure_eq!(
        take_traced(b, q, &c, 1).await?,
        traced(&[("x", Some(T1))]),
        "first run"
    );
    b.retry(q, &c, &[failed("x", 6.0, None)], 11.0)
        .await
        .ctx("retry")?;
    b.enqueue_due(q, 10.0, 10).await.ctx("enqueue_due")?;
    ensure_eq!(
        take_traced(b, q, &c, 2).await?,
        traced(&[("later", Some(T2)), ("x", Some(T1))]),
        "a scheduled job and a retried one keep their contexts"
    );
    let kill = KillJob {
        id: "x".into(),
        data: None,
        reason: "test".into(),
    };
    b.kill(q, &c, &[kill], 12.0).await.ctx("kill")?;
    b.retry_dead(q, &Selection::Ids(strings(&["x"])))
        .await
        .ctx("retry_dead")?;
    ensure_eq!(
        take_traced(b, q, &c, 1).await?,
        traced(&[("x", Some(T1))]),
        "a dead job retried keeps its context"
    );
    Ok(())
}

pub(super) async fn push_traced_never_touches_an_existing_job(
    b: &dyn QueueBackend,
    q: &QueueName,
) -> Outcome {
    let c = consumer("worker");
    join(b, q, &c, 10.0).await?;
    b.push_traced(q, &jobs(&["x"]), Some(T1))
        .await
        .ctx("push_traced")?;
    ensure_eq!(
        b.push_traced(q, &jobs(&["x", "y"]), Some(T2))
            .await
            .ctx("push_traced")?,
        vec![false, true],
        "push_traced of an existing ID and a new one"
    );
    ensure_eq!(
        b.schedule_traced(
            q,
            &[ScheduledJob {
                job: job("x", "again"),
                at: 1.0,
            }],
            None,
        )
        .await
        .ctx("schedule_traced")?,
        vec![false],
        "schedule_traced of an existing ID"
    );
    ensure_eq!(
        take_traced(b, q, &c, 2).await?,
        traced(&[("x", Some(T1)), ("y", Some(T2))]),
        "each job keeps the context of the push that stored it"
    );
    Ok(())
}

pub(super) async fn delete_jobs_and_purge_remove_the_trace(
    b: &dyn QueueBackend,
    q: &QueueName,
) -> Outcome {
    let c = consumer("worker");
    join(b, q, &c, 10.0).await?;
    b.push_traced(q, &jobs(&["deleted", "purged"]), Some(T1))
        .await
        .ctx("push_traced")?;
    b.delete_jobs(q, &strings(&["deleted"]))
        .await
        .ctx("delete_jobs")?;
    ensure_eq!(
        b.purge(q, JobState::Active, 10).await.ctx("purge")?,
        1,
        "jobs purged"
    );
    b.push(q, &jobs(&["deleted", "purged"])).await.ctx("push")?;
    ensure_eq!(
        take_traced(b, q, &c, 2).await?,
        traced(&[("deleted", None), ("purged", None)]),
        "IDs deleted or purged, then pushed again without a context"
    );
    Ok(())
}
