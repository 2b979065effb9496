//! The consumer's behaviour on the in-memory backend under a manual clock: every
//! simulated minute passes in microseconds of wall time, deterministically.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use curlyq::backend::{ConsumerId, Registration};
use curlyq::{
    backoff_bounds, BoxError, ConfigError, ConsumeError, Consumer, Job, LoopName, ProduceError,
};
use curlyq_testkit::{ManualRuntime, Operation, QueueSnapshot};

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);
const MIN: Duration = Duration::from_secs(60);

fn fails(msg: &'static str) -> impl Fn(Job) -> std::future::Ready<Result<(), BoxError>> {
    move |_| std::future::ready(Err(msg.into()))
}

#[tokio::test]
async fn processes_every_job_once_acks_and_unregisters_at_shutdown() {
    let sim = Sim::new();
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(
            sim.producer
                .perform(Job::new(format!("job {i}")))
                .await
                .unwrap(),
        );
    }
    let consumer = sim
        .builder()
        .concurrency(3)
        .build(sim.backend_arc())
        .unwrap();
    let (handler, mut rx) = reporting(sim.clock(), |_| ok());
    let mut running = start(consumer, handler);
    let mut seen = Vec::new();
    for _ in 0..20 {
        seen.push(sim.next_event(&mut rx, SEC, MIN).await.id);
    }
    sim.until("all acked", MS, SEC, |s| s.data.is_empty()).await;
    running.stop();
    let stats = running.consumer.clone();
    sim.finish(running, SEC, MIN).await.unwrap();
    seen.sort();
    ids.sort();
    assert_eq!(seen, ids, "every job ran exactly once");
    let snap = sim.snapshot();
    assert!(snap.active.is_empty() && snap.inflight.is_empty());
    assert!(snap.consumers.is_empty(), "a clean shutdown unregisters");
    assert_eq!(stats.stats().succeeded, 20);
}

#[tokio::test]
async fn failed_job_retries_within_go_backoff_bounds_then_dies_at_max_attempts() {
    let sim = Sim::new();
    let id = sim.producer.perform(Job::new("flaky")).await.unwrap();
    let consumer = sim
        .builder()
        .job_max_attempts(3)
        .build(sim.backend_arc())
        .unwrap();
    let (handler, mut rx) = reporting(sim.clock(), fails("boom"));
    let mut running = start(consumer, handler);
    let max = consumer_max_backoff();
    for attempt in 0..=3u32 {
        let ev = sim.next_event(&mut rx, 10 * MS, 30 * SEC).await;
        assert_eq!((ev.id.as_str(), ev.attempt), (id.as_str(), attempt));
        ManualRuntime_settle().await;
        let snap = sim.snapshot();
        if attempt < 3 {
            // The retry is scheduled within the Go formula's bounds of the failure time.
            let (_, score) = snap.scheduled.first().cloned().expect("retry scheduled");
            let delay = score - unix(ev.at);
            let (lo, hi) = backoff_bounds(attempt, max);
            assert!(
                delay >= lo.as_secs_f64() - 1e-6 && delay <= hi.as_secs_f64() + 1e-6,
                "attempt {attempt}: retry in {delay}s, not within {lo:?}..{hi:?}"
            );
        }
    }
    sim.until("killed", MS, SEC, |s| s.dead.len() == 1).await;
    let snap = sim.snapshot();
    assert_eq!(snap.dead[0].0, id);
    let stored = Job::decode(&snap.data[&id]).unwrap();
    assert_eq!(stored.attempt, 4, "4 runs ended in failure");
    assert!(snap.reasons[&id].contains("boom"), "{:?}", snap.reasons);
    running.stop();
    sim.finish(running, SEC, MIN).await.unwrap();
}

fn consumer_max_backoff() -> Duration {
    curlyq::ConsumerOptions::default().job_max_backoff
}

#[allow(non_snake_case)]
async fn ManualRuntime_settle() {
    curlyq_testkit::ManualRuntime::settle().await;
}

#[tokio::test]
async fn panicking_handler_is_a_failure_and_the_consumer_keeps_running() {
    let sim = Sim::new();
    let bad = sim.producer.perform(Job::new("panic")).await.unwrap();
    let good = sim.producer.perform(Job::new("fine")).await.unwrap();
    let consumer = sim
        .builder()
        .no_retries()
        .concurrency(1)
        .build(sim.backend_arc())
        .unwrap();
    let (handler, mut rx) = reporting(sim.clock(), |job: Job| async move {
        if job.data == b"panic" {
            panic!("handler exploded");
        }
        Ok(())
    });
    let mut running = start(consumer, handler);
    assert_eq!(sim.next_event(&mut rx, MS, SEC).await.id, bad);
    assert_eq!(sim.next_event(&mut rx, MS, SEC).await.id, good);
    sim.until("settled", MS, SEC, |s| {
        s.dead.len() == 1 && s.data.len() == 1
    })
    .await;
    let snap = sim.snapshot();
    assert_eq!(snap.dead[0].0, bad);
    assert!(snap.reasons[&bad].contains("handler panicked: handler exploded"));
    assert_eq!(Job::decode(&snap.data[&bad]).unwrap().attempt, 1);
    running.stop();
    sim.finish(running, SEC, MIN).await.unwrap();
}

#[tokio::test]
async fn missing_data_goes_to_the_dead_set_and_the_consumer_keeps_running() {
    let sim = Sim::new();
    sim.backend.push_raw_active(&sim.queue, "ghost");
    let good = sim.producer.perform(Job::new("fine")).await.unwrap();
    let consumer = sim.builder().build(sim.backend_arc()).unwrap();
    let (handler, mut rx) = reporting(sim.clock(), |_| ok());
    let mut running = start(consumer, handler);
    assert_eq!(sim.next_event(&mut rx, MS, SEC).await.id, good);
    sim.until("ghost dead", MS, SEC, |s| {
        s.dead.len() == 1 && s.data.is_empty()
    })
    .await;
    let snap = sim.snapshot();
    assert_eq!(snap.dead[0].0, "ghost");
    assert!(snap.reasons["ghost"].contains("job data missing"));
    assert!(rx.try_recv().is_err(), "the handler never saw the ghost");
    running.stop();
    sim.finish(running, SEC, MIN).await.unwrap();
}

#[tokio::test]
async fn poison_data_dies_with_its_raw_bytes_and_the_rest_of_the_batch_runs() {
    let sim = Sim::new();
    let poison: &[u8] = b"\xc1not msgpack";
    let mut good = Vec::new();
    good.push(sim.producer.perform(Job::new("a")).await.unwrap());
    sim.backend.put_raw_data(&sim.queue, "poison", poison);
    sim.backend.push_raw_active(&sim.queue, "poison");
    sim.backend
        .put_raw_data(&sim.queue, "empty", b"".as_slice());
    sim.backend.push_raw_active(&sim.queue, "empty");
    good.push(sim.producer.perform(Job::new("b")).await.unwrap());
    let consumer = sim.builder().build(sim.backend_arc()).unwrap();
    let (handler, mut rx) = reporting(sim.clock(), |_| ok());
    let mut running = start(consumer, handler);
    let mut seen = vec![
        sim.next_event(&mut rx, MS, SEC).await.id,
        sim.next_event(&mut rx, MS, SEC).await.id,
    ];
    seen.sort();
    good.sort();
    assert_eq!(seen, good);
    sim.until("poison dead", MS, SEC, |s| s.dead.len() == 2)
        .await;
    let snap = sim.snapshot();
    assert_eq!(snap.data["poison"], poison, "raw bytes kept for inspection");
    assert!(snap.reasons["poison"].contains("undecodable"));
    assert!(snap.reasons["empty"].contains("undecodable"));
    running.stop();
    sim.finish(running, SEC, MIN).await.unwrap();
}

#[tokio::test]
async fn scheduled_job_starts_within_50ms_of_its_due_time_on_an_idle_consumer() {
    let sim = Sim::new();
    let consumer = sim.builder().build(sim.backend_arc()).unwrap();
    let (handler, mut rx) = reporting(sim.clock(), |_| ok());
    let mut running = start(consumer, handler);
    // Let the consumer go idle (scheduler asleep for its 5 s poll, poller waiting).
    sim.rt.advance_and_settle(SEC).await;
    let due = unix(sim.now()) + 2.0;
    let id = sim
        .producer
        .perform_after(Duration::from_secs(2), Job::new("later"))
        .await
        .unwrap();
    let ev = sim.next_event(&mut rx, 5 * MS, 10 * SEC).await;
    assert_eq!(ev.id, id);
    let lateness = unix(ev.at) - due;
    assert!(
        (0.0..0.05).contains(&lateness),
        "started {lateness}s after its due time"
    );
    running.stop();
    sim.finish(running, SEC, MIN).await.unwrap();
}

#[tokio::test]
async fn producer_refuses_duplicates_and_bad_times_leaving_the_stored_job_untouched() {
    let sim = Sim::new();
    let job = Job::new("original").with_id("dup");
    assert_eq!(sim.producer.perform(job.clone()).await.unwrap(), "dup");
    let before = sim.snapshot();
    let again = sim
        .producer
        .perform(Job::new("changed").with_id("dup"))
        .await;
    assert!(matches!(again, Err(ProduceError::AlreadyExists { ref id }) if id == "dup"));
    let later = sim
        .producer
        .perform_after(SEC, Job::new("changed").with_id("dup"))
        .await;
    assert!(matches!(later, Err(ProduceError::AlreadyExists { .. })));
    assert_eq!(sim.snapshot(), before, "the stored job is untouched");

    // A job has its ID before the first push: pushing it again cannot make a second job.
    let j = Job::new("retry me");
    let first = sim.producer.perform(j.clone()).await.unwrap();
    assert_eq!(first, j.id);
    assert!(matches!(
        sim.producer.perform(j).await,
        Err(ProduceError::AlreadyExists { .. })
    ));

    for bad in [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -1.0,
        -62_135_596_800.0,
    ] {
        let r = sim.producer.perform_at_unix(bad, Job::new("x")).await;
        assert!(matches!(r, Err(ProduceError::InvalidTime { .. })), "{bad}");
    }
    let before_epoch = std::time::UNIX_EPOCH - SEC;
    assert!(matches!(
        sim.producer.perform_at(before_epoch, Job::new("x")).await,
        Err(ProduceError::InvalidTime { .. })
    ));

    let outcomes = sim
        .producer
        .perform_many(vec![
            Job::new("m1").with_id("m1"),
            Job::new("dup again").with_id("dup"),
            Job::new("m2").with_id("m2"),
        ])
        .await
        .unwrap();
    assert_eq!(outcomes[0].as_deref().unwrap(), "m1");
    assert!(matches!(
        outcomes[1],
        Err(ProduceError::AlreadyExists { .. })
    ));
    assert_eq!(outcomes[2].as_deref().unwrap(), "m2");
    assert_eq!(
        sim.snapshot().active[2..],
        ["m1".to_string(), "m2".to_string()]
    );
}

#[tokio::test]
async fn shutdown_gives_back_unstarted_jobs_at_once_and_lets_the_running_one_finish() {
    let sim = Sim::new();
    let ids = sim.push_numbered(6).await;
    let gate = Arc::new(tokio::sync::Notify::new());
    let g = gate.clone();
    let consumer = sim
        .builder()
        .concurrency(1)
        .poller_buffer_size(5)
        .build(sim.backend_arc())
        .unwrap();
    let (handler, mut rx) = reporting(sim.clock(), move |_| {
        let g = g.clone();
        async move {
            g.notified().await;
            Ok(())
        }
    });
    let mut running = start(consumer, handler);
    let first = sim.next_event(&mut rx, MS, SEC).await;
    assert_eq!(first.id, ids[0]);
    sim.until("all taken", MS, SEC, |s| s.active.is_empty())
        .await;
    running.stop();
    sim.until("unstarted given back", MS, SEC, |s| s.active.len() == 5)
        .await;
    assert_eq!(sim.snapshot().active, ids[1..].to_vec());
    assert!(!running.join.is_finished(), "waits for the running handler");
    gate.notify_one();
    let consumer = running.consumer.clone();
    sim.finish(running, SEC, MIN).await.unwrap();
    let snap = sim.snapshot();
    assert!(
        !snap.data.contains_key(&ids[0]),
        "the running job finished and was acked"
    );
    assert_eq!(snap.active, ids[1..].to_vec());
    assert!(
        rx.try_recv().is_err(),
        "no other job started after shutdown"
    );
    assert_eq!(consumer.stats().given_back, 5);
}

#[tokio::test]
async fn grace_period_cancels_handlers_and_gives_their_jobs_back_without_an_attempt() {
    let sim = Sim::new();
    let id = sim.producer.perform(Job::new("forever")).await.unwrap();
    let consumer = sim
        .builder()
        .shutdown_grace_period(2 * SEC)
        .build(sim.backend_arc())
        .unwrap();
    let (handler, mut rx) = reporting(sim.clock(), |_| async {
        std::future::pending::<()>().await;
        Ok(())
    });
    let mut running = start(consumer, handler);
    sim.next_event(&mut rx, MS, SEC).await;
    running.stop();
    let err = sim.finish(running, 100 * MS, 10 * SEC).await.unwrap_err();
    assert!(
        matches!(err, ConsumeError::ShutdownTimeout { cancelled: 1, .. }),
        "{err:?}"
    );
    let snap = sim.snapshot();
    assert_eq!(snap.active, vec![id.clone()]);
    assert_eq!(
        Job::decode(&snap.data[&id]).unwrap().attempt,
        0,
        "no attempt counted"
    );
    assert!(snap.inflight.is_empty());
}

#[tokio::test]
async fn heartbeat_runs_until_the_last_handler_finishes() {
    let sim = Sim::new();
    sim.producer.perform(Job::new("long")).await.unwrap();
    let gate = Arc::new(tokio::sync::Notify::new());
    let g = gate.clone();
    let consumer = sim.builder().build(sim.backend_arc()).unwrap();
    let (handler, mut rx) = reporting(sim.clock(), move |_| {
        let g = g.clone();
        async move {
            g.notified().await;
            Ok(())
        }
    });
    let mut running = start(consumer, handler);
    sim.next_event(&mut rx, MS, SEC).await;
    running.stop();
    // Five simulated minutes of shutdown with the handler still running: the consumer
    // keeps heartbeating, so no custodian would take its job.
    for _ in 0..5 {
        sim.rt.advance_and_settle(MIN).await;
        let snap = sim.snapshot();
        let (_, beat) = snap.consumers[0];
        assert!(
            unix(sim.now()) - beat <= 60.0 + 1e-6,
            "heartbeat stale during shutdown"
        );
    }
    gate.notify_one();
    sim.finish(running, SEC, MIN).await.unwrap();
    assert!(sim.snapshot().consumers.is_empty());
}

#[tokio::test]
async fn a_crashed_consumers_jobs_are_recovered_by_anothers_custodian() {
    let sim = Sim::new();
    let backend = sim.backend_arc();
    let ids = sim.push_numbered(3).await;
    // A consumer registers, takes two jobs, then crashes (never heartbeats again).
    let crashed = ConsumerId::from_string("crashed");
    let t0 = unix(sim.now());
    backend
        .register(&sim.queue, &crashed, t0, Registration::Join)
        .await
        .unwrap();
    let taken = backend
        .take(&sim.queue, &crashed, 2, 1_700_000_000.0)
        .await
        .unwrap();
    assert_eq!(taken.len(), 2);

    let consumer = sim.builder().build(sim.backend_arc()).unwrap();
    let (handler, mut rx) = reporting(sim.clock(), |_| ok());
    let mut running = start(consumer, handler);
    assert_eq!(sim.next_event(&mut rx, MS, SEC).await.id, ids[2]);
    // Orphaned after heartbeat interval + consumer timeout (2 min); the custodian sweeps
    // every minute.
    let mut recovered = [
        sim.next_event(&mut rx, SEC, 4 * MIN).await,
        sim.next_event(&mut rx, SEC, MIN).await,
    ];
    let elapsed = unix(recovered[0].at) - t0;
    assert!(elapsed >= 120.0, "recovered too early, after {elapsed}s");
    recovered.sort_by(|a, b| a.id.cmp(&b.id));
    let mut expect = ids[..2].to_vec();
    expect.sort();
    assert_eq!(
        recovered.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        expect
    );
    sim.until("crashed consumer removed", SEC, MIN, |s| {
        s.consumers.iter().all(|(c, _)| c != "crashed") && s.data.is_empty()
    })
    .await;
    running.stop();
    sim.finish(running, SEC, MIN).await.unwrap();
}

#[tokio::test]
async fn a_reaped_consumer_rejoins_under_a_fresh_id_and_its_stale_ack_changes_nothing() {
    let sim = Sim::new();
    let backend = sim.backend_arc();
    let id = sim.producer.perform(Job::new("slow")).await.unwrap();
    let release_first = Arc::new(tokio::sync::Notify::new());
    let first_run = Arc::new(AtomicBool::new(true));
    let (r, f) = (release_first.clone(), first_run.clone());
    let consumer = sim
        .builder()
        .shutdown_grace_period(SEC)
        .build(sim.backend_arc())
        .unwrap();
    let (handler, mut rx) = reporting(sim.clock(), move |_| {
        let (r, first) = (r.clone(), f.swap(false, Ordering::SeqCst));
        async move {
            if first {
                r.notified().await;
            } else {
                std::future::pending::<()>().await;
            }
            Ok(())
        }
    });
    let mut running = start(consumer.clone(), handler);
    sim.next_event(&mut rx, MS, SEC).await;
    let old = sim.snapshot().consumers[0].0.clone();
    // Another process's custodian reaps this consumer (as after a long pause).
    let report = backend
        .requeue_orphans(
            &sim.queue,
            curlyq::backend::OrphanSweep {
                expired_before: unix(sim.now()) + 1.0,
                max_jobs: 50,
                max_orphan_requeues: 0,
                now: unix(sim.now()),
            },
        )
        .await
        .unwrap();
    assert_eq!(report.requeued, 1);
    // At its next heartbeat it finds out, rejoins under a new ID and takes the job again.
    let second = sim.next_event(&mut rx, SEC, 2 * MIN).await;
    assert_eq!(second.id, id);
    let snap = sim.snapshot();
    let new = snap
        .consumers
        .iter()
        .map(|(c, _)| c.clone())
        .collect::<Vec<_>>();
    assert_eq!(new.len(), 1);
    assert_ne!(new[0], old, "rejoined under a fresh ID");
    // The first (stale) delivery finishes: its ack must not delete the new delivery.
    release_first.notify_one();
    sim.until("stale outcome counted", MS, SEC, |_| {
        consumer.stats().not_owned == 1
    })
    .await;
    let snap = sim.snapshot();
    assert!(
        snap.data.contains_key(&id),
        "the newer delivery's job is intact"
    );
    assert_eq!(snap.inflight[&new[0]].len(), 1);
    assert_eq!(consumer.stats().rejoined, 1);
    running.stop();
    let end = sim.finish(running, SEC, MIN).await;
    assert!(matches!(
        end,
        Err(ConsumeError::ShutdownTimeout { cancelled: 1, .. })
    ));
    assert_eq!(
        sim.snapshot().active,
        vec![id],
        "the cancelled delivery went back"
    );
}

#[tokio::test]
async fn a_failed_ack_is_retried_with_backoff_and_is_not_fatal() {
    let sim = Sim::new();
    let id = sim.producer.perform(Job::new("x")).await.unwrap();
    let acks_fail = Arc::new(AtomicBool::new(true));
    let af = acks_fail.clone();
    sim.faults.set_failing(Some(Arc::new(move |op, _| {
        op == Operation::Ack && af.load(Ordering::SeqCst)
    })));
    let consumer = sim.builder().build(sim.backend_arc()).unwrap();
    let (handler, mut rx) = reporting(sim.clock(), |_| ok());
    let mut running = start(consumer.clone(), handler);
    sim.next_event(&mut rx, MS, SEC).await;
    sim.until("a few failed acks", 100 * MS, MIN, |_| {
        sim.faults.calls(Operation::Ack) >= 3
    })
    .await;
    assert!(
        !running.join.is_finished(),
        "a failing ack does not stop the consumer"
    );
    acks_fail.store(false, Ordering::SeqCst);
    sim.until("acked", 100 * MS, 2 * MIN, |s| !s.data.contains_key(&id))
        .await;
    assert_eq!(consumer.stats().succeeded, 1);
    running.stop();
    sim.finish(running, SEC, MIN).await.unwrap();
}

#[tokio::test]
async fn a_loop_aborts_the_consumer_after_its_max_attempts() {
    let sim = Sim::new();
    let consumer = sim
        .builder()
        .poller_max_attempts(3)
        .build(sim.backend_arc())
        .unwrap();
    let (handler, _rx) = reporting(sim.clock(), |_| ok());
    let running = start(consumer, handler);
    ManualRuntime_settle().await;
    sim.faults
        .set_failing(Some(Arc::new(|op, _| op == Operation::Take)));
    let err = sim.finish(running, 100 * MS, 5 * MIN).await.unwrap_err();
    assert!(
        matches!(
            err,
            ConsumeError::LoopAborted {
                name: LoopName::Poller,
                attempts: 3,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn startup_fails_with_a_typed_error_when_the_store_is_down() {
    let sim = Sim::new();
    sim.faults.set_unavailable(true);
    let consumer = sim.builder().build(sim.backend_arc()).unwrap();
    let err = consumer
        .run(|_: Job| ok(), std::future::pending())
        .await
        .unwrap_err();
    assert!(matches!(err, ConsumeError::Startup(_)), "{err:?}");
}

#[tokio::test]
async fn a_lost_signal_delays_jobs_by_at_most_one_poll() {
    let sim = Sim::new();
    let consumer = sim.builder().build(sim.backend_arc()).unwrap();
    let (handler, mut rx) = reporting(sim.clock(), |_| ok());
    let mut running = start(consumer, handler);
    sim.rt.advance_and_settle(SEC).await;
    // A job lands in the active list without the signal (evicted or deleted).
    let job = Job::new("quiet").with_id("quiet");
    sim.backend.put_raw_data(&sim.queue, "quiet", job.encode());
    sim.backend.push_raw_active(&sim.queue, "quiet");
    sim.backend.set_signal(&sim.queue, false);
    let t = sim.now();
    let ev = sim.next_event(&mut rx, 100 * MS, 10 * SEC).await;
    assert_eq!(ev.id, "quiet");
    assert!(ev.at.duration_since(t).unwrap() <= Duration::from_secs(5) + 100 * MS);
    running.stop();
    sim.finish(running, SEC, MIN).await.unwrap();
}

#[tokio::test]
async fn the_custodian_keeps_the_dead_set_bounded() {
    let sim = Sim::new();
    for i in 0..5 {
        sim.producer
            .perform(Job::new("x").with_id(format!("d{i}")))
            .await
            .unwrap();
    }
    let consumer = sim
        .builder()
        .no_retries()
        .concurrency(1)
        .dead_max_jobs(2)
        .build(sim.backend_arc())
        .unwrap();
    let (handler, mut rx) = reporting(sim.clock(), fails("nope"));
    let mut running = start(consumer, handler);
    for _ in 0..5 {
        sim.next_event(&mut rx, MS, SEC).await;
    }
    sim.until("trimmed", SEC, 2 * MIN, |s: &QueueSnapshot| {
        s.dead.len() == 2 && s.data.len() == 2 && s.reasons.len() == 2
    })
    .await;
    let kept: Vec<String> = sim.snapshot().dead.into_iter().map(|(id, _)| id).collect();
    assert_eq!(kept, ["d3", "d4"], "the newest dead jobs are kept");
    running.stop();
    sim.finish(running, SEC, MIN).await.unwrap();
}

#[tokio::test]
async fn a_job_that_keeps_crashing_its_consumer_is_killed() {
    let sim = Sim::new();
    let backend = sim.backend_arc();
    let id = sim.producer.perform(Job::new("crashy")).await.unwrap();
    let crashed = ConsumerId::from_string("crashed");
    backend
        .register(&sim.queue, &crashed, unix(sim.now()), Registration::Join)
        .await
        .unwrap();
    backend
        .take(&sim.queue, &crashed, 1, 1_700_000_000.0)
        .await
        .unwrap();
    let consumer = sim
        .builder()
        .max_orphan_requeues(1)
        .build(sim.backend_arc())
        .unwrap();
    let (handler, mut rx) = reporting(sim.clock(), |_| ok());
    let mut running = start(consumer, handler);
    sim.until("killed as a crash-looper", SEC, 5 * MIN, |s| {
        s.dead.len() == 1
    })
    .await;
    let snap = sim.snapshot();
    assert_eq!(snap.dead[0].0, id);
    assert!(snap.reasons[&id].contains("orphaned"));
    assert!(rx.try_recv().is_err(), "not run again");
    running.stop();
    sim.finish(running, SEC, MIN).await.unwrap();
}

#[test]
fn bad_options_are_builder_errors_not_panics() {
    let sim = Sim::new();
    let b = || Consumer::builder("q").runtime(sim.rt.clone());
    assert_eq!(
        Consumer::builder("").build(sim.backend_arc()).unwrap_err(),
        ConfigError::EmptyQueueName
    );
    assert!(matches!(
        b().concurrency(0).build(sim.backend_arc()),
        Err(ConfigError::Zero { .. })
    ));
    assert!(matches!(
        b().poller_poll_duration(MS * 999).build(sim.backend_arc()),
        Err(ConfigError::BelowMinimum { .. })
    ));
    assert!(matches!(
        b().custodian_max_jobs(8000).build(sim.backend_arc()),
        Err(ConfigError::TooLarge { .. })
    ));
}

#[tokio::test]
async fn handlers_run_concurrently_up_to_the_concurrency_limit_and_no_further() {
    let sim = Sim::new();
    sim.push_numbered(10).await;
    let (gate, handler, mut rx) = gated(sim.clock());
    let consumer = sim
        .builder()
        .concurrency(3)
        .poller_buffer_size(2)
        .build(sim.backend_arc())
        .unwrap();
    let mut running = start(consumer, handler);
    for _ in 0..3 {
        sim.next_event(&mut rx, MS, SEC).await;
    }
    sim.rt.advance_and_settle(10 * SEC).await;
    assert!(
        rx.try_recv().is_err(),
        "a fourth handler started while three run"
    );
    // 3 running + a buffer of 2 taken; the other 5 wait in Redis for a free handler.
    let snap = sim.snapshot();
    assert_eq!(snap.all_inflight().len(), 5);
    assert_eq!(snap.active.len(), 5);
    gate.add_permits(1);
    sim.next_event(&mut rx, MS, SEC).await;
    assert!(rx.try_recv().is_err(), "one finished, one more started");
    gate.add_permits(100);
    for _ in 0..6 {
        sim.next_event(&mut rx, MS, SEC).await;
    }
    sim.until("all acked", MS, SEC, |s| s.data.is_empty()).await;
    running.stop();
    sim.finish(running, SEC, MIN).await.unwrap();
}

/// A handler that blocks its thread (CPU-bound work done wrong) does not stop the
/// heartbeat: handlers run in their own tasks on the runtime's worker threads, apart from
/// the loops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_blocking_handler_does_not_starve_the_heartbeat() {
    let sim = Sim::new();
    sim.producer.perform(Job::new("cpu-bound")).await.unwrap();
    let (release, blocked) = std::sync::mpsc::channel::<()>();
    let blocked = Arc::new(std::sync::Mutex::new(blocked));
    let consumer = sim
        .builder()
        .concurrency(1)
        .build(sim.backend_arc())
        .unwrap();
    let (handler, mut rx) = reporting(sim.clock(), move |_| {
        let blocked = blocked.clone();
        async move {
            // Holds a worker thread without yielding until the test releases it.
            let _ = blocked.lock().unwrap().recv();
            Ok(())
        }
    });
    let mut running = start(consumer, handler);
    let started = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("handler started")
        .unwrap();
    let beat_before = sim.snapshot().consumers[0].1;
    sim.rt.advance(MIN);
    // Wait (in wall time, bounded) for the heartbeat of the new minute to land.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sim.snapshot().consumers[0].1 <= beat_before {
        assert!(
            std::time::Instant::now() < deadline,
            "no heartbeat while a handler blocked its thread"
        );
        tokio::task::yield_now().await;
        std::thread::yield_now();
    }
    assert!(sim.snapshot().consumers[0].1 >= unix(started.at) + 60.0);
    release.send(()).unwrap();
    running.stop();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !running.join.is_finished() {
        assert!(
            std::time::Instant::now() < deadline,
            "consumer did not stop"
        );
        tokio::task::yield_now().await;
        std::thread::yield_now();
    }
    running.join.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_oversized_payload_is_refused_and_nothing_is_written() {
    let sim = Sim::new();
    let producer = sim.producer.clone().with_max_payload(1024);
    let before = sim.snapshot();
    let big = Job::new(vec![7u8; 1025]).with_id("big");
    assert!(matches!(
        producer.perform(big.clone()).await,
        Err(ProduceError::PayloadTooLarge {
            size: 1025,
            max: 1024,
            ..
        })
    ));
    assert!(matches!(
        producer.perform_after(SEC, big.clone()).await,
        Err(ProduceError::PayloadTooLarge { .. })
    ));
    assert_eq!(sim.snapshot(), before, "nothing written");
    let outcomes = producer
        .perform_many(vec![
            Job::new("small").with_id("a"),
            big,
            Job::new(vec![0u8; 1024]).with_id("b"),
        ])
        .await
        .unwrap();
    assert_eq!(outcomes[0].as_deref().unwrap(), "a");
    assert!(matches!(
        outcomes[1],
        Err(ProduceError::PayloadTooLarge { .. })
    ));
    assert_eq!(outcomes[2].as_deref().unwrap(), "b");
    assert_eq!(sim.snapshot().active, ["a".to_string(), "b".to_string()]);
    assert_eq!(curlyq::DEFAULT_MAX_PAYLOAD, 16 * 1024 * 1024);
}

/// Outcomes are written in batches: jobs that finish together share one ack call (a
/// group commit), and a lone job's ack waits for no timer (the clock does not move).
#[tokio::test]
async fn outcomes_that_finish_together_share_one_backend_call_and_none_waits_for_a_timer() {
    let sim = Sim::new();
    sim.push_numbered(20).await;
    let (gate, handler, mut rx) = gated(sim.clock());
    let consumer = sim
        .builder()
        .concurrency(20)
        .poller_buffer_size(1)
        .build(sim.backend_arc())
        .unwrap();
    let mut running = start(consumer, handler);
    for _ in 0..20 {
        sim.next_event(&mut rx, MS, SEC).await;
    }
    let acks_before = sim.faults.calls(Operation::Ack);
    assert_eq!(acks_before, 0, "no job finished yet");
    // All twenty finish at once; without moving the clock every ack lands.
    let started = sim.now();
    gate.add_permits(20);
    for _ in 0..100 {
        ManualRuntime::settle().await;
        if sim.snapshot().data.is_empty() {
            break;
        }
    }
    assert!(sim.snapshot().data.is_empty(), "{:#?}", sim.snapshot());
    assert_eq!(sim.now(), started, "no timer was needed to record them");
    let acks = sim.faults.calls(Operation::Ack);
    assert!(
        (1..=4).contains(&acks),
        "20 outcomes took {acks} ack calls, not one each"
    );
    assert_eq!(running.consumer.stats().succeeded, 20);

    // A lone job afterwards is acked at once too.
    sim.producer.perform(Job::new("alone")).await.unwrap();
    gate.add_permits(1);
    sim.next_event(&mut rx, MS, 10 * SEC).await;
    let moved_to = sim.now();
    for _ in 0..100 {
        ManualRuntime::settle().await;
        if sim.snapshot().data.is_empty() {
            break;
        }
    }
    assert!(sim.snapshot().data.is_empty(), "the lone job was acked");
    assert_eq!(sim.now(), moved_to, "without waiting for a timer");
    running.stop();
    sim.finish(running, SEC, MIN).await.unwrap();
}

/// One take fills every idle handler (and the buffer) at once: 16 idle handlers and a
/// buffer of 1 take 17 jobs in one call, and never hold more than that.
#[tokio::test]
async fn one_take_fills_every_idle_handler_and_the_buffer() {
    let sim = Sim::new();
    sim.push_numbered(40).await;
    let (gate, handler, mut rx) = gated(sim.clock());
    let consumer = sim
        .builder()
        .concurrency(16)
        .poller_buffer_size(1)
        .build(sim.backend_arc())
        .unwrap();
    let mut running = start(consumer, handler);
    for _ in 0..16 {
        sim.next_event(&mut rx, MS, SEC).await;
    }
    sim.rt.advance_and_settle(10 * SEC).await;
    let snap = sim.snapshot();
    assert_eq!(snap.all_inflight().len(), 17, "16 running + 1 buffered");
    assert_eq!(snap.active.len(), 23);
    assert!(
        sim.faults.calls(Operation::Take) <= 3,
        "17 jobs took {} take calls",
        sim.faults.calls(Operation::Take)
    );
    gate.add_permits(100);
    sim.until("all acked", MS, 10 * SEC, |s| s.data.is_empty())
        .await;
    running.stop();
    sim.finish(running, SEC, MIN).await.unwrap();
    assert_eq!(sim.snapshot().consumers.len(), 0);
}

/// A take whose reply is lost (carried out, reported as a timeout) must not strand the
/// jobs it moved: the consumer continues under a fresh ID and lets the old one expire,
/// so a custodian gives those jobs back. Each job then runs exactly once.
#[tokio::test]
async fn jobs_of_a_take_whose_reply_was_lost_come_back_within_one_orphan_timeout() {
    let sim = Sim::new();
    sim.push_numbered(3).await;
    let lost = Arc::new(AtomicBool::new(false));
    let l = lost.clone();
    sim.faults.set_failing_applied(Some(Arc::new(move |op, _| {
        op == Operation::Take && !l.swap(true, Ordering::SeqCst)
    })));
    let consumer = sim
        .builder()
        .concurrency(2)
        .heartbeat_interval(15 * SEC)
        .custodian_consumer_timeout(5 * SEC)
        .custodian_poll_interval(SEC)
        .poller_max_backoff(SEC)
        .build(sim.backend_arc())
        .unwrap();
    let (handler, mut rx) = reporting(sim.clock(), |_| ok());
    let started = sim.now();
    let mut running = start(consumer, handler);
    ManualRuntime::settle().await;
    let first_id = running
        .consumer
        .consumer_id()
        .expect("running: it has an ID");
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(sim.next_event(&mut rx, 100 * MS, MIN).await.id);
    }
    assert!(
        lost.load(Ordering::SeqCst),
        "the first take's reply was lost"
    );
    let second_id = running.consumer.consumer_id().expect("still running");
    assert_ne!(first_id, second_id, "it continued under a fresh ID");
    let waited = sim.now().duration_since(started).unwrap();
    // One orphan timeout (heartbeat + consumer timeout) plus a custodian poll and the
    // poller's backoff.
    assert!(
        waited <= 15 * SEC + 5 * SEC + SEC + SEC + SEC,
        "stranded jobs came back after {waited:?}"
    );
    sim.until("all acked", 100 * MS, MIN, |s| s.data.is_empty())
        .await;
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 3, "each job ran once");
    assert!(rx.try_recv().is_err(), "no job ran twice");
    running.stop();
    let stopped = running.consumer.clone();
    sim.finish(running, SEC, MIN).await.unwrap();
    assert_eq!(stopped.consumer_id(), None, "not running: no ID");
    let snap = sim.snapshot();
    assert!(snap.consumers.is_empty(), "both IDs gone: {snap:#?}");
}

/// A consumer cut off for longer than the orphan timeout (stopped, or unable to reach
/// Redis) is reaped and its jobs handed on. When it comes back it must not run the jobs
/// still waiting in its buffer: it confirms its registration first, finds itself reaped,
/// rejoins and skips them. Only the job that was already running runs twice.
#[tokio::test]
async fn a_consumer_back_from_a_long_silence_skips_buffered_jobs_that_were_handed_on() {
    let sim = Sim::new();
    for i in 0..3 {
        sim.producer
            .perform(Job::new(format!("{i}")).with_id(format!("j{i}")))
            .await
            .unwrap();
    }
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let g = gate.clone();
    let first = Arc::new(AtomicBool::new(true));
    let consumer = sim
        .builder()
        .concurrency(1)
        .poller_buffer_size(2)
        .heartbeat_interval(15 * SEC)
        .custodian_consumer_timeout(5 * SEC)
        .custodian_poll_interval(SEC)
        .build(sim.backend_arc())
        .unwrap();
    let (handler, mut rx) = reporting(sim.clock(), move |job: Job| {
        let g = g.clone();
        // Only j0's first run waits for the gate.
        let wait = job.id == "j0" && first.swap(false, Ordering::SeqCst);
        async move {
            if wait {
                g.acquire().await.expect("open").forget();
            }
            Ok(())
        }
    });
    let mut running = start(consumer, handler);
    assert_eq!(sim.next_event(&mut rx, MS, SEC).await.id, "j0");
    sim.rt.advance_and_settle(100 * MS).await;
    assert_eq!(
        sim.snapshot().all_inflight().len(),
        3,
        "j0 runs, j1 and j2 buffered"
    );

    // Cut off for a minute; meanwhile another consumer's custodian reaps it.
    sim.faults.set_unavailable(true);
    sim.rt.advance_and_settle(MIN).await;
    sim.faults.set_unavailable(false);
    let now = unix(sim.now());
    let report = curlyq::backend::QueueBackend::requeue_orphans(
        &sim.backend,
        &sim.queue,
        curlyq::backend::OrphanSweep {
            expired_before: now - 20.0,
            max_jobs: 100,
            max_orphan_requeues: 0,
            now,
        },
    )
    .await
    .unwrap();
    assert_eq!(report.requeued, 3, "{report:?}");

    // Back: j0's handler ends; the buffered j1 and j2 must not run under the old ID.
    gate.add_permits(1);
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(sim.next_event(&mut rx, 100 * MS, MIN).await.id);
    }
    sim.until("all acked", 100 * MS, MIN, |s| s.data.is_empty())
        .await;
    sim.rt.advance_and_settle(10 * SEC).await;
    assert!(rx.try_recv().is_err(), "nothing else ran");
    seen.sort();
    assert_eq!(seen, ["j0", "j1", "j2"], "the requeued jobs ran once each");
    let stats = running.consumer.stats();
    assert_eq!(stats.rejoined, 1);
    assert!(stats.not_owned >= 2, "{stats:?}");
    running.stop();
    sim.finish(running, SEC, MIN).await.unwrap();
}
