//! Checks of the queue shared with a Go CurlyQ consumer: what curlyq cleans up after it.
//! Go's ack deletes a job's data only, so the job's last error (`Q:errors`, a key Go
//! does not know) stays behind until `trim_dead` finds it.

use curlyq_core::ERRORS_SWEEP;

use super::*;
use crate::contract::GoWrite;

/// Trims nothing from the dead set (none killed before 0, none beyond `keep_at_most`
/// unless the check killed some): only the sweep of last errors does anything.
fn trim(keep_at_most: usize, max_jobs: usize) -> DeadTrim {
    DeadTrim {
        killed_before: 0.0,
        keep_at_most,
        max_jobs,
    }
}

/// A Go consumer registered as `go-consumer` takes every job in the active list.
async fn gopher_takes(b: &dyn QueueBackend, q: &QueueName, n: usize) -> Result<ConsumerId, String> {
    let gopher = consumer("go-consumer");
    join(b, q, &gopher, 20.0).await?;
    let taken = b.take(q, &gopher, n, 1_700_000_000.0).await.ctx("take")?;
    ensure_eq!(taken.len(), n, "jobs taken by the Go consumer");
    Ok(gopher)
}

async fn go_ack(go: &dyn GoConsumer, q: &QueueName, gopher: &ConsumerId, id: &str) -> Outcome {
    ensure!(
        go.go_ack(q, gopher, id)?,
        "Go's ack of {id} found it not in flight"
    );
    Ok(())
}

pub(super) async fn trim_dead_removes_errors_left_by_go(
    b: &dyn QueueBackend,
    go: &dyn GoConsumer,
    q: &QueueName,
) -> Outcome {
    let (owner, _) = owned_setup(b, q, &["a", "b", "c"]).await?;
    let curlyq_errors = errors_of(&[("a", "failed a"), ("b", "failed b"), ("c", "failed c")]);
    let retries: Vec<RetryJob> = curlyq_errors
        .iter()
        .map(|(id, error)| failed(id, 10.0, Some(error)))
        .collect();
    ensure_eq!(
        b.retry(q, &owner, &retries, 0.0).await.ctx("retry")?,
        vec![true; 3],
        "retry by the curlyq owner"
    );
    b.enqueue_due(q, 10.0, 10).await.ctx("enqueue_due")?;
    let gopher = gopher_takes(b, q, 3).await?;
    go_ack(go, q, &gopher, "a").await?;
    ensure_eq!(
        last_errors(b, q).await?,
        curlyq_errors,
        "last errors after Go's ack of a (Go knows no Q:errors)"
    );
    ensure_eq!(
        b.trim_dead(q, trim(0, 0)).await.ctx("trim_dead")?,
        0,
        "trim_dead with max_jobs 0"
    );
    ensure_eq!(
        last_errors(b, q).await?.len(),
        3,
        "last errors after a trim_dead with max_jobs 0 (which does nothing)"
    );
    ensure_eq!(
        b.trim_dead(q, trim(0, 10)).await.ctx("trim_dead")?,
        0,
        "dead jobs removed (the last errors removed are not counted)"
    );
    ensure_eq!(
        last_errors(b, q).await?,
        errors_of(&[("b", "failed b"), ("c", "failed c")]),
        "last errors after trim_dead: a's leftover gone, those of existing jobs kept"
    );
    // The sweep does not depend on the dead-set budget: max_jobs 1 is enough.
    go_ack(go, q, &gopher, "b").await?;
    b.trim_dead(q, trim(0, 1)).await.ctx("trim_dead")?;
    ensure_eq!(
        last_errors(b, q).await?,
        errors_of(&[("c", "failed c")]),
        "last errors after a second leftover and a trim_dead with max_jobs 1"
    );
    Ok(())
}

pub(super) async fn trim_dead_tolerates_errors_within_keep_at_most(
    b: &dyn QueueBackend,
    go: &dyn GoConsumer,
    q: &QueueName,
) -> Outcome {
    let (owner, _) = owned_setup(b, q, &["a", "b"]).await?;
    let retries = [
        failed("a", 10.0, Some("failed a")),
        failed("b", 10.0, Some("failed b")),
    ];
    b.retry(q, &owner, &retries, 0.0).await.ctx("retry")?;
    b.enqueue_due(q, 10.0, 10).await.ctx("enqueue_due")?;
    let gopher = gopher_takes(b, q, 2).await?;
    go_ack(go, q, &gopher, "a").await?;
    let both = errors_of(&[("a", "failed a"), ("b", "failed b")]);
    b.trim_dead(q, trim(2, 10)).await.ctx("trim_dead")?;
    ensure_eq!(
        last_errors(b, q).await?,
        both,
        "last errors after trim_dead keeping at most 2 (2 entries: none looked at)"
    );
    b.trim_dead(q, trim(1, 10)).await.ctx("trim_dead")?;
    ensure_eq!(
        last_errors(b, q).await?,
        errors_of(&[("b", "failed b")]),
        "last errors after trim_dead keeping at most 1"
    );
    Ok(())
}

pub(super) async fn trim_dead_sweeps_many_errors_in_bounded_passes(
    b: &dyn QueueBackend,
    go: &dyn GoConsumer,
    q: &QueueName,
) -> Outcome {
    let n = ERRORS_SWEEP + 200;
    let ids: Vec<String> = (0..n).map(|i| format!("j{i:05}")).collect();
    let names: Vec<&str> = ids.iter().map(String::as_str).collect();
    let (owner, _) = owned_setup(b, q, &names).await?;
    let retries: Vec<RetryJob> = ids
        .iter()
        .map(|id| failed(id, 10.0, Some(&format!("failed {id}"))))
        .collect();
    ensure_eq!(
        b.retry(q, &owner, &retries, 0.0).await.ctx("retry")?,
        vec![true; n],
        "retry of every job"
    );
    ensure_eq!(
        b.enqueue_due(q, 10.0, n).await.ctx("enqueue_due")?.moved,
        n,
        "retried jobs due"
    );
    let gopher = gopher_takes(b, q, n).await?;
    let mut live = BTreeMap::new();
    for (i, id) in ids.iter().enumerate() {
        if i % 6 == 0 {
            go_ack(go, q, &gopher, id).await?;
        } else {
            live.insert(id.clone(), format!("failed {id}"));
        }
    }
    ensure_eq!(
        last_errors(b, q).await?.len(),
        n,
        "last errors before the sweep"
    );
    // A pass examines about ERRORS_SWEEP entries per call: n of them take two calls;
    // allow for the store's page sizes.
    let mut calls = 0;
    loop {
        b.trim_dead(q, trim(0, 10)).await.ctx("trim_dead")?;
        calls += 1;
        let errors = last_errors(b, q).await?;
        let lost: Vec<&String> = live.keys().filter(|id| !errors.contains_key(*id)).collect();
        ensure!(
            lost.is_empty(),
            "trim_dead call {calls} removed last errors of jobs that exist: {lost:?}"
        );
        if errors == live {
            break;
        }
        ensure!(
            calls < 4,
            "{} leftovers still there after {calls} trim_dead calls",
            errors.len() - live.len()
        );
    }
    Ok(())
}

pub(super) async fn check_finds_and_repairs_what_go_leaves(
    b: &dyn QueueBackend,
    go: &dyn GoConsumer,
    q: &QueueName,
) -> Outcome {
    use curlyq_core::admin::{self, JobState, ProblemKind};
    b.push(q, &jobs(&["a", "b"])).await.ctx("push")?;
    b.schedule(
        q,
        &[ScheduledJob {
            job: job("dup", "x"),
            at: 50.0,
        }],
    )
    .await
    .ctx("schedule")?;
    let writes = [
        GoWrite::Data("lost".into(), b"lost".to_vec()),
        GoWrite::Active("ghost".into()),
        GoWrite::Active("dup".into()),
        GoWrite::Data("orph".into(), b"orph".to_vec()),
        GoWrite::InFlight("gone".into(), "orph".into()),
    ];
    for write in &writes {
        go.go_write(q, write)?;
    }
    let report = admin::check(b, q).await.ctx("check")?;
    let found: Vec<(ProblemKind, String, Vec<JobState>)> = report
        .problems
        .iter()
        .map(|p| (p.kind, p.id.clone(), p.places.clone()))
        .collect();
    ensure_eq!(
        found,
        vec![
            (ProblemKind::Unreferenced, "lost".to_owned(), vec![]),
            (
                ProblemKind::Duplicate,
                "dup".to_owned(),
                vec![JobState::Active, JobState::Scheduled]
            ),
            (
                ProblemKind::Dangling,
                "ghost".to_owned(),
                vec![JobState::Active]
            ),
            (
                ProblemKind::StrayInFlight,
                "gone".to_owned(),
                vec![JobState::InFlight]
            ),
        ],
        "problems found"
    );
    ensure_eq!(report.jobs, 5, "jobs examined");
    for problem in &report.problems {
        ensure!(
            b.repair(q, problem).await.ctx("repair")?,
            "repair of {problem:?} changed nothing"
        );
        ensure!(
            !b.repair(q, problem).await.ctx("repair")?,
            "a second repair of {problem:?} changed something"
        );
    }
    let after = admin::check(b, q).await.ctx("check")?;
    ensure!(
        after.is_clean(),
        "problems left after repair: {:?}",
        after.problems
    );
    let snap = b.snapshot(q).await.ctx("snapshot")?;
    let ids: Vec<&str> = snap.data.keys().map(String::as_str).collect();
    ensure_eq!(
        ids,
        vec!["a", "b", "dup", "lost", "orph"],
        "every job with data kept"
    );
    ensure_eq!(
        snap.active,
        strings(&["a", "b", "lost", "orph"]),
        "active after repair (ghost and the second dup gone, lost and orph back)"
    );
    ensure_eq!(snap.scheduled.len(), 1, "dup still scheduled");
    Ok(())
}

pub(super) async fn trim_dead_removes_traces_left_by_go(
    b: &dyn QueueBackend,
    go: &dyn GoConsumer,
    q: &QueueName,
) -> Outcome {
    const TRACE: &str =
        r#"{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}"#;
    b.push_traced(q, &jobs(&["a", "b", "kept"]), Some(TRACE))
        .await
        .ctx("push_traced")?;
    let gopher = gopher_takes(b, q, 3).await?;
    // Go's ack deletes the data only: the trace fields of a and b stay behind.
    go_ack(go, q, &gopher, "a").await?;
    go_ack(go, q, &gopher, "b").await?;
    // A traced push of a reused ID without a context clears the leftover.
    b.push_traced(q, &jobs(&["a"]), None)
        .await
        .ctx("push_traced")?;
    let taken = b
        .take_traced(q, &gopher, 1, 1_700_000_000.0)
        .await
        .ctx("take_traced")?;
    ensure_eq!(ids_of(&taken.jobs), strings(&["a"]), "the reused ID taken");
    ensure_eq!(taken.jobs[0].trace, None, "a's leftover trace is cleared");
    b.trim_dead(q, trim(0, 10)).await.ctx("trim_dead")?;
    // b's leftover went with the sweep; a plain push does not touch the field.
    b.push(q, &jobs(&["b"])).await.ctx("push")?;
    b.give_back(q, &gopher, &strings(&["kept"]))
        .await
        .ctx("give_back")?;
    let taken = b
        .take_traced(q, &gopher, 2, 1_700_000_000.0)
        .await
        .ctx("take_traced")?;
    let traces: Vec<(String, Option<String>)> =
        taken.jobs.into_iter().map(|j| (j.id, j.trace)).collect();
    ensure_eq!(
        traces,
        vec![
            ("b".to_owned(), None),
            ("kept".to_owned(), Some(TRACE.to_owned()))
        ],
        "after trim_dead: the leftover of b is gone, the trace of a job with data kept"
    );
    Ok(())
}
