//! The contract checks, run against `MemoryBackend` (and shown to catch a broken backend).
//! `backend_tests!` makes one test per check (`push::push_sets_signal`, ...).

use std::time::Duration;

use curlyq_core::{
    BackendError, ConsumerId, DeadTrim, DueReport, EncodedJob, KillJob, OrphanReport, OrphanSweep,
    QueueBackend, QueueName, Registration, RetryJob, ScheduledJob, TakenJob, Waiter,
};
use curlyq_testkit::contract::{self, CHECKS, FAULT_CHECKS, GO_CHECKS};
use curlyq_testkit::{Faulty, MemoryBackend};

curlyq_testkit::backend_tests!(|| async { MemoryBackend::new() });

#[tokio::test]
async fn memory_backend_passes_every_check() {
    let backend = MemoryBackend::new();
    let failures = contract::check_backend_all(&backend, "mem:").await;
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test]
async fn check_backend_passes_and_uses_one_queue_per_check() {
    let backend = MemoryBackend::new();
    contract::check_backend(&backend, "{run}:").await.unwrap();
    let queues = backend.queues();
    assert_eq!(queues.len(), CHECKS.len());
    for check in CHECKS {
        assert!(queues
            .iter()
            .any(|q| q.as_str() == format!("{{run}}:{}", check.name)));
    }
}

#[test]
fn check_names_are_unique_and_described() {
    let mut names: Vec<&str> = CHECKS.iter().map(|c| c.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), CHECKS.len());
    assert!(CHECKS.iter().all(|c| !c.rule.is_empty()));
    let mut all: Vec<&str> = names
        .into_iter()
        .chain(FAULT_CHECKS.iter().map(|c| c.name))
        .collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), CHECKS.len() + FAULT_CHECKS.len());
    assert!(FAULT_CHECKS.iter().all(|c| !c.rule.is_empty()));
}

/// Every check's name starts with the operation it is about, so that a test filter such
/// as `push_` or `take_` selects one operation's checks.
#[test]
fn check_names_start_with_their_operation() {
    let prefixes = [
        "push_",
        "schedule_",
        "register_",
        "take_",
        "wait_",
        "enqueue_due_",
        "ack_",
        "retry_",
        "kill_",
        "give_back_",
        "requeue_orphans_",
        "orphan_",
        "trim_dead_",
        "unregister_",
        // The admin operations.
        "stats_",
        "pause_",
        "jobs_",
        "find_job_",
        "run_scheduled_",
        "delete_jobs_",
        "purge_",
        "remove_consumer_",
        "list_queues_",
        "check_",
    ];
    for check in CHECKS {
        assert!(
            prefixes.iter().any(|p| check.name.starts_with(p)),
            "{}",
            check.name
        );
    }
    for check in FAULT_CHECKS {
        assert!(
            check.name.starts_with("lost_reply_") || check.name.starts_with("failing_"),
            "{}",
            check.name
        );
    }
}

/// The fault checks pass on the model inside `Faulty`, one fresh wrapper each.
#[tokio::test]
async fn fault_checks_pass_on_memory() {
    for check in FAULT_CHECKS {
        let backend = Faulty::new(MemoryBackend::new());
        check
            .run(&backend, "faults:")
            .await
            .unwrap_or_else(|f| panic!("{f}"));
    }
}

/// A backend with one bug: `ack` reports success for jobs it does not own (and deletes
/// them), as a script that forgot the ownership test would.
struct AckAnything(MemoryBackend);

#[curlyq_core::async_trait]
impl QueueBackend for AckAnything {
    async fn push(&self, q: &QueueName, jobs: &[EncodedJob]) -> Result<Vec<bool>, BackendError> {
        self.0.push(q, jobs).await
    }
    async fn schedule(
        &self,
        q: &QueueName,
        jobs: &[ScheduledJob],
    ) -> Result<Vec<bool>, BackendError> {
        self.0.schedule(q, jobs).await
    }
    async fn register(
        &self,
        q: &QueueName,
        c: &ConsumerId,
        now: f64,
        mode: Registration,
    ) -> Result<bool, BackendError> {
        self.0.register(q, c, now, mode).await
    }
    async fn enqueue_due(
        &self,
        q: &QueueName,
        now: f64,
        max: usize,
    ) -> Result<DueReport, BackendError> {
        self.0.enqueue_due(q, now, max).await
    }
    async fn take(
        &self,
        q: &QueueName,
        c: &ConsumerId,
        max: usize,
        now: f64,
    ) -> Result<Vec<TakenJob>, BackendError> {
        self.0.take(q, c, max, now).await
    }
    async fn waiter(&self, q: &QueueName) -> Result<Box<dyn Waiter>, BackendError> {
        self.0.waiter(q).await
    }
    async fn ack(
        &self,
        q: &QueueName,
        _c: &ConsumerId,
        ids: &[String],
        _now: f64,
    ) -> Result<Vec<bool>, BackendError> {
        for id in ids {
            self.0.remove_data(q, id);
        }
        Ok(vec![true; ids.len()])
    }
    async fn retry(
        &self,
        q: &QueueName,
        c: &ConsumerId,
        jobs: &[RetryJob],
        now: f64,
    ) -> Result<Vec<bool>, BackendError> {
        self.0.retry(q, c, jobs, now).await
    }
    async fn kill(
        &self,
        q: &QueueName,
        c: &ConsumerId,
        jobs: &[KillJob],
        now: f64,
    ) -> Result<Vec<bool>, BackendError> {
        self.0.kill(q, c, jobs, now).await
    }
    async fn give_back(
        &self,
        q: &QueueName,
        c: &ConsumerId,
        ids: &[String],
    ) -> Result<usize, BackendError> {
        self.0.give_back(q, c, ids).await
    }
    async fn requeue_orphans(
        &self,
        q: &QueueName,
        sweep: OrphanSweep,
    ) -> Result<OrphanReport, BackendError> {
        self.0.requeue_orphans(q, sweep).await
    }
    async fn trim_dead(&self, q: &QueueName, trim: DeadTrim) -> Result<usize, BackendError> {
        self.0.trim_dead(q, trim).await
    }
    async fn unregister(&self, q: &QueueName, c: &ConsumerId) -> Result<bool, BackendError> {
        self.0.unregister(q, c).await
    }

    async fn snapshot(&self, q: &QueueName) -> Result<curlyq_core::QueueSnapshot, BackendError> {
        QueueBackend::snapshot(&self.0, q).await
    }
}

#[tokio::test]
async fn a_broken_ack_is_reported_not_panicked() {
    let backend = AckAnything(MemoryBackend::new());
    let failures = contract::check_backend_all(&backend, "broken:").await;
    let ack = failures
        .iter()
        .find(|f| f.check == "ack_only_owned")
        .expect("the ack check must fail");
    assert_eq!(ack.queue, "broken:ack_only_owned");
    assert!(ack.message.contains("ack by another consumer"), "{ack}");
    assert!(ack.to_string().contains("ack_only_owned"));
    let first = contract::check_backend(&backend, "broken2:")
        .await
        .unwrap_err();
    assert!(failures.iter().any(|f| f.check == first.check));
}

#[tokio::test]
async fn an_unavailable_backend_is_reported_with_the_operation() {
    let backend = Faulty::new(MemoryBackend::new());
    backend.set_unavailable(true);
    let failure = CHECKS[0].run(&backend, "down:").await.unwrap_err();
    assert!(failure.message.contains("push failed"), "{failure}");
    assert!(failure.message.contains("unavailable"), "{failure}");
}

#[tokio::test]
async fn each_check_runs_alone() {
    let backend = MemoryBackend::new();
    for check in CHECKS {
        tokio::time::timeout(Duration::from_secs(30), check.run(&backend, "solo:"))
            .await
            .expect("check timed out")
            .unwrap_or_else(|f| panic!("{f}"));
    }
}

/// The checks beside a Go consumer pass on the model, which is its own Go consumer.
#[tokio::test]
async fn go_checks_pass_on_memory() {
    for check in GO_CHECKS {
        let backend = MemoryBackend::new();
        check
            .run(&backend, &backend, "go:")
            .await
            .unwrap_or_else(|f| panic!("{f}"));
    }
}

/// The `go` checks have names of their own, each starting with its operation, and a rule.
#[test]
fn go_check_names_are_unique_and_start_with_their_operation() {
    let mut all: Vec<&str> = CHECKS
        .iter()
        .map(|c| c.name)
        .chain(FAULT_CHECKS.iter().map(|c| c.name))
        .chain(GO_CHECKS.iter().map(|c| c.name))
        .collect();
    all.sort();
    all.dedup();
    assert_eq!(
        all.len(),
        CHECKS.len() + FAULT_CHECKS.len() + GO_CHECKS.len()
    );
    for check in GO_CHECKS {
        assert!(
            check.name.starts_with("trim_dead_") || check.name.starts_with("check_"),
            "{}",
            check.name
        );
        assert!(!check.rule.is_empty(), "{}", check.name);
    }
}

/// A Go consumer's ack on the model deletes the data only: the last error stays behind.
#[tokio::test]
async fn a_go_ack_leaves_the_last_error() {
    let backend = MemoryBackend::new();
    let queue = QueueName::new("go-ack").unwrap();
    let c = ConsumerId::from_string("gopher");
    backend
        .register(&queue, &c, 1.0, Registration::Join)
        .await
        .unwrap();
    let job = EncodedJob {
        id: "a".into(),
        data: b"A".to_vec(),
    };
    backend.push(&queue, &[job]).await.unwrap();
    backend.take(&queue, &c, 1, 1.0).await.unwrap();
    let retry = RetryJob {
        id: "a".into(),
        data: b"A2".to_vec(),
        at: 1.0,
        error: Some("boom".into()),
    };
    backend.retry(&queue, &c, &[retry], 0.0).await.unwrap();
    backend.enqueue_due(&queue, 1.0, 1).await.unwrap();
    backend.take(&queue, &c, 1, 1.0).await.unwrap();
    assert!(backend.go_ack(&queue, &c, "a"));
    assert!(!backend.go_ack(&queue, &c, "a"), "no longer in flight");
    let snap = backend.snapshot(&queue);
    assert!(snap.data.is_empty() && snap.inflight.is_empty(), "{snap:?}");
    assert_eq!(snap.errors.get("a").map(String::as_str), Some("boom"));
}

/// A `go` check on a backend with no Go consumer fails, saying what it needs.
#[test]
#[should_panic(expected = "needs a GoConsumer")]
fn a_go_check_without_a_go_consumer_says_so() {
    contract::run_test("trim_dead_removes_errors_left_by_go", || async {
        Faulty::new(MemoryBackend::new())
    });
}
