//! The README's "Testing your handlers" example, and the per-job timeout on the manual
//! clock: the in-memory backend, no Redis, time moved by the test.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use curlyq::{BoxError, CancelReason, Consumer, Job, JobContext, MemoryBackend, Producer};
use curlyq_testkit::ManualRuntime;

#[tokio::test]
async fn a_failed_welcome_mail_is_retried() -> Result<(), BoxError> {
    let clock = Arc::new(ManualRuntime::new(SystemTime::now()));
    let backend = Arc::new(MemoryBackend::with_runtime(clock.clone()));
    let producer = Producer::new(backend.clone(), "emails")?.with_clock(clock.clone());
    producer
        .perform(Job::json(&"ada@example.com")?.with_id("welcome-ada"))
        .await?;

    let consumer = Consumer::builder("emails")
        .runtime(clock.clone())
        .build(backend.clone())?;
    let handler = |to: String, ctx: curlyq::JobContext| async move {
        assert_eq!(to, "ada@example.com");
        if ctx.attempt() == 0 {
            return Err(BoxError::from("the mail server is down"));
        }
        Ok(())
    };
    let watcher = consumer.clone();
    let until_sent = async move {
        // Each step moves the manual clock; the first retry is due within 1 s.
        while watcher.stats().succeeded == 0 {
            clock.advance_and_settle(Duration::from_millis(100)).await;
        }
    };
    consumer.run_typed(handler, until_sent).await?;
    assert_eq!(
        (consumer.stats().retried, consumer.stats().succeeded),
        (1, 1)
    );
    Ok(())
}

/// On the manual clock: a run past `job_timeout` sees its context cancelled at exactly
/// the timeout, is dropped after the cancel grace, is retried with "timed out after" as
/// its last error, and is killed at max attempts with that reason.
#[tokio::test]
async fn a_job_timeout_cancels_then_fails_the_run_at_exact_times() -> Result<(), BoxError> {
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let clock = Arc::new(ManualRuntime::new(start));
    let backend = Arc::new(MemoryBackend::with_runtime(clock.clone()));
    let queue = curlyq::backend::QueueName::new("slow")?;
    let id = Producer::new(backend.clone(), "slow")?
        .with_clock(clock.clone())
        .perform(Job::new("work"))
        .await?;
    let consumer = Consumer::builder("slow")
        .runtime(clock.clone())
        .job_timeout(Duration::from_secs(30))
        .cancel_grace_period(Duration::from_secs(5))
        .job_max_attempts(1)
        .build(backend.clone())?;
    let cancels = Arc::new(std::sync::Mutex::new(Vec::new()));
    let c = cancels.clone();
    let (t, seen) = (clock.clone(), backend.clone());
    let q = queue.clone();
    let until_dead = async move {
        for _ in 0..10_000 {
            if !seen.snapshot(&q).dead.is_empty() {
                return;
            }
            t.advance_and_settle(Duration::from_millis(250)).await;
        }
        panic!("not dead after 2,500 simulated seconds");
    };
    let clock_in = clock.clone();
    consumer
        .run_with_context(
            move |_job: Job, ctx: JobContext| {
                let (c, clock) = (c.clone(), clock_in.clone());
                async move {
                    let reason = ctx.cancelled().await;
                    let at = curlyq::runtime::Runtime::now(&*clock);
                    let after = at.duration_since(ctx.started()).unwrap_or_default();
                    c.lock().unwrap().push((ctx.attempt(), reason, after));
                    // Ignores the signal: dropped at the end of the cancel grace.
                    std::future::pending::<()>().await;
                    Ok::<(), BoxError>(())
                }
            },
            until_dead,
        )
        .await?;
    let cancels = cancels.lock().unwrap().clone();
    assert_eq!(cancels.len(), 2, "{cancels:?}");
    for (attempt, (a, reason, after)) in cancels.iter().enumerate() {
        assert_eq!(*a, attempt as u32);
        assert_eq!(*reason, CancelReason::TimedOut);
        assert!(
            *after >= Duration::from_secs(30) && *after < Duration::from_millis(30_250),
            "signalled at the timeout: {after:?}"
        );
    }
    let snap = backend.snapshot(&queue);
    assert_eq!(snap.reasons[&id], "timed out after 30s");
    assert_eq!(Job::decode(&snap.data[&id])?.attempt, 2);
    assert_eq!(consumer.stats().retried, 1);
    Ok(())
}
