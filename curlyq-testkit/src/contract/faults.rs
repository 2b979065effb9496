//! Checks of what failed calls and lost replies leave behind: the backend runs inside
//! [`Faulty`], which fails a call before it reaches the backend or lets it run and then
//! loses its reply.

use std::sync::Arc;

use curlyq_core::QueueSnapshot;

use super::*;
use crate::{InjectedFailure, Operation};

/// Checks that `result` is the injected failure of `operation`, `applied` or not.
fn expect_injected<T: fmt::Debug>(
    result: Result<T, BackendError>,
    operation: Operation,
    applied: bool,
) -> Outcome {
    let err = match result {
        Ok(reply) => {
            return Err(format!(
                "{operation:?} with an injected fault returned {reply:?}"
            ))
        }
        Err(err) => err,
    };
    let injected = match &err {
        BackendError::Unavailable(source) => source.downcast_ref::<InjectedFailure>(),
        _ => None,
    };
    match injected {
        Some(injected) => {
            ensure_eq!(
                injected.operation,
                operation,
                "operation of the injected fault"
            );
            ensure_eq!(injected.applied, applied, "{operation:?}: applied");
            Ok(())
        }
        None => Err(format!(
            "{operation:?} with an injected fault: expected the injected Unavailable, got {err:?}"
        )),
    }
}

async fn snapshot<B: QueueBackend>(b: &Faulty<B>, q: &QueueName) -> Result<QueueSnapshot, String> {
    QueueBackend::snapshot(b.inner(), q).await.ctx("snapshot")
}

pub(super) async fn lost_reply_push_is_applied<B: QueueBackend>(
    b: &Faulty<B>,
    q: &QueueName,
) -> Outcome {
    b.fail_next_applied(1);
    expect_injected(b.push(q, &[job("a", "first")]).await, Operation::Push, true)?;
    ensure_eq!(
        b.push(q, &[job("a", "second")]).await.ctx("push")?,
        vec![false],
        "push again of the ID whose push reply was lost"
    );
    ensure_eq!(b.calls(Operation::Push), 2, "push calls counted");
    let taken = drain(b, q, "reader").await?;
    ensure_eq!(
        ids_of(&taken),
        strings(&["a"]),
        "active list after the lost reply and the second push"
    );
    ensure_eq!(
        taken[0].data.as_deref(),
        Some(&b"first"[..]),
        "data of the job (the first push's)"
    );
    Ok(())
}

pub(super) async fn lost_reply_ack_leaves_the_job_acked<B: QueueBackend>(
    b: &Faulty<B>,
    q: &QueueName,
) -> Outcome {
    let (owner, _) = owned_setup(b, q, &["a", "b"]).await?;
    b.fail_next_applied(1);
    expect_injected(
        b.ack(q, &owner, &strings(&["a"]), 0.0).await,
        Operation::Ack,
        true,
    )?;
    ensure_eq!(
        b.ack(q, &owner, &strings(&["a", "b"]), 0.0)
            .await
            .ctx("ack")?,
        vec![false, true],
        "ack again after the lost reply (a was acked, b was not)"
    );
    ensure_eq!(
        b.push(q, &jobs(&["a"])).await.ctx("push")?,
        vec![true],
        "push of the ID whose ack reply was lost (its data must be gone)"
    );
    Ok(())
}

pub(super) async fn lost_reply_take_leaves_jobs_in_flight<B: QueueBackend>(
    b: &Faulty<B>,
    q: &QueueName,
) -> Outcome {
    let c = consumer("worker");
    join(b, q, &c, 1.0).await?;
    b.push(q, &jobs(&["a", "b"])).await.ctx("push")?;
    b.fail_next_applied(1);
    expect_injected(
        b.take(q, &c, 10, 1_700_000_000.0).await,
        Operation::Take,
        true,
    )?;
    ensure!(
        drain(b, q, "reader").await?.is_empty(),
        "jobs still active after a take whose reply was lost"
    );
    ensure_eq!(
        b.ack(q, &c, &strings(&["a", "b"]), 0.0).await.ctx("ack")?,
        vec![true, true],
        "ack by the consumer whose take reply was lost"
    );
    Ok(())
}

pub(super) async fn failing_take_takes_nothing<B: QueueBackend>(
    b: &Faulty<B>,
    q: &QueueName,
) -> Outcome {
    let c = consumer("worker");
    join(b, q, &c, 1.0).await?;
    b.push(q, &jobs(&["a", "b", "c"])).await.ctx("push")?;
    b.fail_next(1);
    expect_injected(
        b.take(q, &c, 2, 1_700_000_000.0).await,
        Operation::Take,
        false,
    )?;
    ensure_eq!(
        ids_of(&b.take(q, &c, 10, 1_700_000_000.0).await.ctx("take")?),
        strings(&["a", "b", "c"]),
        "take after a take that failed"
    );
    ensure_eq!(b.calls(Operation::Take), 2, "take calls counted");
    Ok(())
}

pub(super) async fn failing_calls_change_nothing<B: QueueBackend>(
    b: &Faulty<B>,
    q: &QueueName,
) -> Outcome {
    let c = consumer("worker");
    join(b, q, &c, 1.0).await?;
    b.push(q, &jobs(&["a"])).await.ctx("push")?;
    b.take(q, &c, 1, 1_700_000_000.0).await.ctx("take")?;
    b.push(q, &jobs(&["b"])).await.ctx("push")?;
    let before = snapshot(b, q).await?;

    b.set_unavailable(true);
    expect_injected(b.push(q, &jobs(&["n"])).await, Operation::Push, false)?;
    let sched = [ScheduledJob {
        job: job("s", "s"),
        at: 5.0,
    }];
    expect_injected(b.schedule(q, &sched).await, Operation::Schedule, false)?;
    expect_injected(
        b.register(q, &consumer("new"), 2.0, Registration::Join)
            .await,
        Operation::Register,
        false,
    )?;
    expect_injected(
        b.enqueue_due(q, 10.0, 10).await,
        Operation::EnqueueDue,
        false,
    )?;
    expect_injected(
        b.take(q, &c, 10, 1_700_000_000.0).await,
        Operation::Take,
        false,
    )?;
    expect_injected(
        b.ack(q, &c, &strings(&["a"]), 0.0).await,
        Operation::Ack,
        false,
    )?;
    let retry = RetryJob {
        error: None,
        id: "a".into(),
        data: b"retried".to_vec(),
        at: 5.0,
    };
    expect_injected(b.retry(q, &c, &[retry], 0.0).await, Operation::Retry, false)?;
    let kill = KillJob {
        id: "a".into(),
        data: None,
        reason: "test".into(),
    };
    expect_injected(b.kill(q, &c, &[kill], 3.0).await, Operation::Kill, false)?;
    expect_injected(
        b.give_back(q, &c, &strings(&["a"])).await,
        Operation::GiveBack,
        false,
    )?;
    let sweep = OrphanSweep {
        expired_before: 100.0,
        max_jobs: 10,
        max_orphan_requeues: 0,
        now: 100.0,
    };
    expect_injected(
        b.requeue_orphans(q, sweep).await,
        Operation::RequeueOrphans,
        false,
    )?;
    let trim = DeadTrim {
        killed_before: 100.0,
        keep_at_most: 0,
        max_jobs: 10,
    };
    expect_injected(b.trim_dead(q, trim).await, Operation::TrimDead, false)?;
    expect_injected(b.unregister(q, &c).await, Operation::Unregister, false)?;
    expect_injected(b.waiter(q).await.map(drop), Operation::Waiter, false)?;
    b.set_unavailable(false);

    ensure_eq!(
        snapshot(b, q).await?,
        before,
        "queue state after calls that all failed"
    );
    Ok(())
}

pub(super) async fn failing_calls_are_selected_and_counted<B: QueueBackend>(
    b: &Faulty<B>,
    q: &QueueName,
) -> Outcome {
    let c = consumer("worker");
    b.set_failing(Some(Arc::new(|op: Operation, _: &QueueName| {
        op == Operation::Register
    })));
    ensure_eq!(
        b.push(q, &jobs(&["a"])).await.ctx("push")?,
        vec![true],
        "push while only register fails"
    );
    expect_injected(
        b.register(q, &c, 1.0, Registration::Join).await,
        Operation::Register,
        false,
    )?;
    let other = QueueName::new(format!("{q}-other")).map_err(|e| e.to_string())?;
    b.set_failing(Some(Arc::new(move |_: Operation, queue: &QueueName| {
        *queue == other
    })));
    join(b, q, &c, 2.0).await?;
    b.set_failing(None);
    ensure_eq!(
        ids_of(&b.take(q, &c, 10, 1_700_000_000.0).await.ctx("take")?),
        strings(&["a"]),
        "take after the failing register and the join"
    );
    let mut waiter = b.waiter(q).await.ctx("waiter")?;
    b.fail_next(1);
    expect_injected(waiter.wait(SHORT_WAIT).await, Operation::Wait, false)?;
    ensure!(
        !waiter.wait(Duration::ZERO).await.ctx("wait")?,
        "signal set after a take that found fewer than max"
    );
    let counted = [
        (Operation::Push, 1),
        (Operation::Register, 2),
        (Operation::Take, 1),
        (Operation::Waiter, 1),
        (Operation::Wait, 2),
        (Operation::Ack, 0),
    ];
    for (operation, calls) in counted {
        ensure_eq!(b.calls(operation), calls, "calls of {operation:?}");
    }
    Ok(())
}
