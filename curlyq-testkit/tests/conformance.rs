//! The conformance suite on the reference model (it must pass) and on deliberately
//! broken backends (each must be caught, and reported as a value with a short sequence).

use curlyq_core::{
    async_trait, BackendError, ConsumerId, DeadTrim, DueReport, EncodedJob, KillJob, OrphanReport,
    OrphanSweep, QueueBackend, QueueName, QueueSnapshot, Registration, RetryJob, ScheduledJob,
    ScheduledPeek, TakeReport, TakenJob, Waiter,
};
use curlyq_testkit::conformance::{self, Config, ConsumerRef, JobRef, Op, Pick};
use curlyq_testkit::MemoryBackend;

/// The reference model conforms to itself, with the configured number of cases
/// (`PROPTEST_CASES`, default 256).
#[test]
fn memory_backend_conforms() {
    let report = conformance::assert_conforms(|| async { MemoryBackend::new() });
    eprintln!("{report}");
    assert!(report.cases >= 1);
}

/// A run of 512 cases of up to 50 operations (seed 8, or `COVER_SEED`) takes every path of the contract
/// that the report counts, several times.
#[test]
fn a_default_run_takes_every_path() {
    let seed: u64 = std::env::var("COVER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let config = Config::from_env().cases(512).seed(seed);
    let report = conformance::check_with(&config, || async { MemoryBackend::new() }).unwrap();
    eprintln!("{report}");
    for path in conformance::PATHS {
        let count = report.coverage.get(path).copied().unwrap_or(0);
        assert!(count >= 5, "{path:?} taken {count} times:\n{report}");
    }
}

/// What a broken backend gets wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// `ack` removes the job from in-flight but leaves its data behind.
    AckLeavesData,
    /// `requeue_orphans` drops one orphaned job (deletes it) and counts it as requeued.
    RequeueDropsOne,
    /// `take` registers an unknown consumer instead of refusing it.
    TakeIgnoresRegistration,
    /// `retry` stores the job's old bytes instead of the incremented attempt.
    RetryKeepsAttempt,
    /// `give_back` panics.
    GiveBackPanics,
    /// `take_and_peek` looks, but reports an empty scheduled set whatever it holds.
    PeekSeesNothing,
}

/// MemoryBackend with one fault.
#[derive(Clone)]
struct Broken {
    inner: MemoryBackend,
    fault: Fault,
}

#[async_trait]
impl QueueBackend for Broken {
    async fn push(&self, q: &QueueName, jobs: &[EncodedJob]) -> Result<Vec<bool>, BackendError> {
        self.inner.push(q, jobs).await
    }

    async fn schedule(
        &self,
        q: &QueueName,
        jobs: &[ScheduledJob],
    ) -> Result<Vec<bool>, BackendError> {
        self.inner.schedule(q, jobs).await
    }

    async fn register(
        &self,
        q: &QueueName,
        c: &ConsumerId,
        now: f64,
        mode: Registration,
    ) -> Result<bool, BackendError> {
        self.inner.register(q, c, now, mode).await
    }

    async fn enqueue_due(
        &self,
        q: &QueueName,
        now: f64,
        max: usize,
    ) -> Result<DueReport, BackendError> {
        self.inner.enqueue_due(q, now, max).await
    }

    async fn take(
        &self,
        q: &QueueName,
        c: &ConsumerId,
        max: usize,
        now: f64,
    ) -> Result<Vec<TakenJob>, BackendError> {
        match self.inner.take(q, c, max, now).await {
            Err(BackendError::NotRegistered { .. })
                if self.fault == Fault::TakeIgnoresRegistration =>
            {
                self.inner.register(q, c, 0.0, Registration::Join).await?;
                self.inner.take(q, c, max, now).await
            }
            other => other,
        }
    }

    async fn take_and_peek(
        &self,
        q: &QueueName,
        c: &ConsumerId,
        max: usize,
        now: f64,
    ) -> Result<TakeReport, BackendError> {
        if self.fault != Fault::PeekSeesNothing {
            // The other faults are in `take` itself: look no further, as the provided
            // method does.
            return Ok(self.take(q, c, max, now).await?.into());
        }
        let mut report = self.inner.take_and_peek(q, c, max, now).await?;
        report.scheduled = ScheduledPeek::Empty;
        Ok(report)
    }

    async fn waiter(&self, q: &QueueName) -> Result<Box<dyn Waiter>, BackendError> {
        self.inner.waiter(q).await
    }

    async fn ack(
        &self,
        q: &QueueName,
        c: &ConsumerId,
        ids: &[String],
        now: f64,
    ) -> Result<Vec<bool>, BackendError> {
        let before = self.inner.snapshot(q);
        let acked = self.inner.ack(q, c, ids, now).await?;
        if self.fault == Fault::AckLeavesData {
            for (id, done) in ids.iter().zip(&acked) {
                if let (true, Some(bytes)) = (done, before.data.get(id)) {
                    self.inner.put_raw_data(q, id, bytes.clone());
                }
            }
        }
        Ok(acked)
    }

    async fn retry(
        &self,
        q: &QueueName,
        c: &ConsumerId,
        jobs: &[RetryJob],
        now: f64,
    ) -> Result<Vec<bool>, BackendError> {
        if self.fault != Fault::RetryKeepsAttempt {
            return self.inner.retry(q, c, jobs, now).await;
        }
        let before = self.inner.snapshot(q);
        let stale: Vec<RetryJob> = jobs
            .iter()
            .map(|job| RetryJob {
                error: None,
                data: before
                    .data
                    .get(&job.id)
                    .cloned()
                    .unwrap_or(job.data.clone()),
                ..job.clone()
            })
            .collect();
        self.inner.retry(q, c, &stale, now).await
    }

    async fn kill(
        &self,
        q: &QueueName,
        c: &ConsumerId,
        jobs: &[KillJob],
        now: f64,
    ) -> Result<Vec<bool>, BackendError> {
        self.inner.kill(q, c, jobs, now).await
    }

    async fn give_back(
        &self,
        q: &QueueName,
        c: &ConsumerId,
        ids: &[String],
    ) -> Result<usize, BackendError> {
        if self.fault == Fault::GiveBackPanics {
            panic!("give_back is not implemented");
        }
        self.inner.give_back(q, c, ids).await
    }

    async fn requeue_orphans(
        &self,
        q: &QueueName,
        sweep: OrphanSweep,
    ) -> Result<OrphanReport, BackendError> {
        if self.fault != Fault::RequeueDropsOne || sweep.max_jobs == 0 {
            return self.inner.requeue_orphans(q, sweep).await;
        }
        let before = self.inner.snapshot(q);
        let victim = before
            .consumers
            .iter()
            .filter(|(_, score)| *score <= sweep.expired_before)
            .find_map(|(c, _)| {
                let id = before.inflight.get(c)?.iter().next()?;
                Some((c.clone(), id.clone()))
            });
        let Some((consumer, id)) = victim else {
            return self.inner.requeue_orphans(q, sweep).await;
        };
        // Drop it: acked on the consumer's behalf, so its data is gone too.
        self.inner
            .ack(q, &ConsumerId::from_string(consumer), &[id], 0.0)
            .await?;
        let rest = OrphanSweep {
            max_jobs: sweep.max_jobs - 1,
            ..sweep
        };
        let mut report = self.inner.requeue_orphans(q, rest).await?;
        report.requeued += 1;
        Ok(report)
    }

    async fn trim_dead(&self, q: &QueueName, trim: DeadTrim) -> Result<usize, BackendError> {
        self.inner.trim_dead(q, trim).await
    }

    async fn snapshot(&self, q: &QueueName) -> Result<QueueSnapshot, BackendError> {
        QueueBackend::snapshot(&self.inner, q).await
    }

    async fn unregister(&self, q: &QueueName, c: &ConsumerId) -> Result<bool, BackendError> {
        self.inner.unregister(q, c).await
    }
}

/// Runs the suite on a broken backend with a fixed seed and few cases; it must report a
/// failure (not panic), shrunk to a short sequence.
fn caught(fault: Fault) -> conformance::Failure {
    // Not saved as regressions: these runs are meant to fail.
    let config = Config::from_env()
        .cases(64)
        .seed(20_261_127)
        .regressions(None);
    let result = conformance::check_with(&config, || async move {
        Broken {
            inner: MemoryBackend::new(),
            fault,
        }
    });
    let failure = match result {
        Ok(report) => panic!("{fault:?} was not caught: {report}"),
        Err(failure) => failure,
    };
    eprintln!("{fault:?} caught:\n{failure}");
    assert!(failure.step.is_some(), "{failure}");
    assert!(
        failure.ops.len() <= 8,
        "{fault:?}: the sequence was not shrunk: {failure}"
    );
    failure
}

/// An ack that leaves the data behind is caught: the job is nowhere but its data is.
#[test]
fn ack_leaving_data_is_caught() {
    let failure = caught(Fault::AckLeavesData);
    assert!(failure.message.contains("nowhere"), "{failure}");
    assert!(
        failure.ops.iter().any(|op| matches!(op, Op::Ack { .. })),
        "{failure}"
    );
}

/// An orphan sweep that drops a job is caught: the job was lost.
#[test]
fn requeue_dropping_a_job_is_caught() {
    let failure = caught(Fault::RequeueDropsOne);
    assert!(failure.message.contains("lost"), "{failure}");
    assert!(
        failure
            .ops
            .iter()
            .any(|op| matches!(op, Op::RequeueOrphans { .. })),
        "{failure}"
    );
}

/// A take that serves an unregistered consumer is caught.
#[test]
fn take_ignoring_registration_is_caught() {
    let failure = caught(Fault::TakeIgnoresRegistration);
    assert!(failure.message.contains("unregistered"), "{failure}");
    // Shrinks to the shortest possible case: one take by a consumer that never joined.
    assert_eq!(failure.ops.len(), 1, "{failure}");
}

/// A retry that stores the old attempt is caught by the comparison with the model.
#[test]
fn retry_keeping_the_attempt_is_caught() {
    let failure = caught(Fault::RetryKeepsAttempt);
    assert!(failure.message.contains("data of"), "{failure}");
    assert!(
        failure.ops.iter().any(|op| matches!(op, Op::Retry { .. })),
        "{failure}"
    );
}

/// A take that misreports the scheduled set is caught (one that does not look, the
/// provided method, is accepted: every other fault's backend keeps it).
#[test]
fn a_peek_that_misses_scheduled_jobs_is_caught() {
    let failure = caught(Fault::PeekSeesNothing);
    assert!(failure.message.contains("Earliest"), "{failure}");
    assert!(
        failure.ops.iter().any(|op| matches!(op, Op::Take { .. })),
        "{failure}"
    );
}

/// A backend that panics is reported as a failure, not a crash of the test.
#[test]
fn a_panicking_backend_is_reported() {
    let failure = caught(Fault::GiveBackPanics);
    assert!(failure.message.contains("panicked"), "{failure}");
}

/// `replay` runs one sequence: a hand-written regression case passes on the model and
/// fails on the broken ack.
#[test]
fn replay_runs_one_sequence() {
    let c0 = ConsumerRef(0);
    let ops = vec![
        Op::Push {
            jobs: vec![(JobRef(1), 0), (JobRef(1), 1)],
        },
        Op::Join { consumer: c0 },
        Op::Take {
            consumer: c0,
            max: 2,
        },
        Op::Ack {
            consumer: c0,
            jobs: vec![Pick::Owned(0)],
        },
    ];
    conformance::replay(|| async { MemoryBackend::new() }, &ops).unwrap();
    let failure = conformance::replay(
        || async {
            Broken {
                inner: MemoryBackend::new(),
                fault: Fault::AckLeavesData,
            }
        },
        &ops,
    )
    .unwrap_err();
    assert_eq!(failure.step, Some(3), "{failure}");
    assert_eq!(failure.trace.len(), 4, "{failure}");
    let text = failure.to_string();
    assert!(text.contains(">>  3: Ack"), "{text}");
}

/// The suite may be called from inside an async runtime too (it runs on its own thread).
#[tokio::test]
async fn callable_inside_a_runtime() {
    let config = Config::from_env().cases(4);
    conformance::check_with(&config, || async { MemoryBackend::new() }).unwrap();
}

/// The hand-written sequence through the last errors replays on the model, and takes
/// the paths it says it takes (checked on the model's state after each part of it).
#[test]
fn last_error_paths_replay_on_the_model() {
    let ops = conformance::last_error_paths();
    conformance::replay(|| async { MemoryBackend::new() }, &ops).unwrap();
    // The last errors after the first `n` operations, by ID.
    let errors_after = |n: usize| {
        let memory = MemoryBackend::new();
        let model = memory.clone();
        conformance::replay(move || std::future::ready(model.clone()), &ops[..n]).unwrap();
        let queues = memory.queues();
        assert_eq!(queues.len(), 1, "{queues:?}");
        let snap = memory.snapshot(&queues[0]);
        snap.errors.keys().cloned().collect::<Vec<_>>()
    };
    assert_eq!(errors_after(4), ["j0", "j1", "j2", "j3"], "stored");
    assert_eq!(errors_after(7), ["j0", "j2", "j3"], "j1 cleared by a retry");
    assert_eq!(errors_after(9), ["j0"], "j2 acked, j3 killed");
    assert_eq!(errors_after(14), ["j0"], "kept by the requeue of j0");
    assert_eq!(
        errors_after(19),
        Vec::<String>::new(),
        "j0 killed as a crash loop"
    );
}
