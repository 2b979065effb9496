//! Metrics and spans as an application sees them: a drain on the in-memory backend with
//! the manual clock, with planned failures, a panic, a timeout, retries, kills and an
//! orphan requeue, counted by a `DebuggingRecorder`; and the `send` / `process` spans
//! captured by a small `tracing` layer.
//!
//! Each test runs on a current-thread tokio runtime (`#[tokio::test]`), so the consumer's
//! driver and handlers run on the test's thread: the thread-local recorder and
//! subscriber installed by the test see everything. (Metric handles are taken when a
//! consumer run starts and at a producer's first push, both on the test's thread.)

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use curlyq::backend::{ConsumerId, QueueBackend, QueueName, Registration};
use curlyq::runtime::Runtime;
use curlyq::telemetry::*;
use curlyq::{
    BoxError, Consumer, Job, JobContext, MemoryBackend, Permanent, ProduceError, Producer,
};
use curlyq_testkit::ManualRuntime;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

const T0: u64 = 1_800_000_000;

/// The metrics of a snapshot: (name, sorted labels) -> value.
type Metrics = BTreeMap<(String, Vec<(String, String)>), DebugValue>;

fn metrics_of(snapshotter: &Snapshotter) -> Metrics {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_string(), l.value().to_string()))
                .collect();
            labels.sort();
            ((key.name().to_string(), labels), value)
        })
        .collect()
}

/// The labels every metric of queue `q` carries, plus `extra`, sorted.
fn labels(q: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = [(MESSAGING_SYSTEM, SYSTEM), (DESTINATION_NAME, q)]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    out.sort();
    out
}

fn counter(m: &Metrics, name: &str, labels: Vec<(String, String)>) -> u64 {
    match m.get(&(name.to_string(), labels)) {
        Some(DebugValue::Counter(n)) => *n,
        None => 0,
        Some(other) => panic!("{name} is not a counter: {other:?}"),
    }
}

fn samples(m: &Metrics, name: &str, labels: Vec<(String, String)>) -> Vec<f64> {
    match m.get(&(name.to_string(), labels)) {
        Some(DebugValue::Histogram(v)) => v.iter().map(|x| x.into_inner()).collect(),
        None => Vec::new(),
        Some(other) => panic!("{name} is not a histogram: {other:?}"),
    }
}

/// The handler of the drain: what a job does is its payload.
async fn planned(job: Job, ctx: JobContext, clock: Arc<ManualRuntime>) -> Result<(), BoxError> {
    let first = ctx.attempt() == 0;
    match job.data.as_slice() {
        b"ok" => Ok(()),
        b"two-seconds" => {
            clock.sleep(Duration::from_secs(2)).await;
            Ok(())
        }
        b"fail-once" if first => Err("the mail server is down".into()),
        b"panic-once" if first => panic!("planned panic"),
        b"always-fails" => Err("always".into()),
        b"permanent" => Err(Permanent::new(std::io::Error::other("bad address")).into()),
        // Past its 30 s timeout (then dropped after the 5 s cancel grace) on attempt 0.
        b"slow" if first => {
            clock.sleep(Duration::from_secs(60)).await;
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A drain with every kind of outcome: the counters, the process durations (by error
/// type, absent on success), the job latencies and the producer's sent counts.
#[tokio::test]
async fn a_drain_with_planned_failures_is_counted_by_outcome() -> Result<(), BoxError> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _recorder = metrics::set_default_local_recorder(&recorder);

    let q = "metered";
    let queue = QueueName::new(q)?;
    let clock = Arc::new(ManualRuntime::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(T0),
    ));
    let backend = Arc::new(MemoryBackend::with_runtime(clock.clone()));
    let producer = Producer::new(backend.clone(), q)?.with_clock(clock.clone());

    // A consumer that died an hour ago holding `orphan-1`.
    producer.perform(Job::new("ok").with_id("orphan-1")).await?;
    let ghost = ConsumerId::from_string("ghost");
    let long_ago = (T0 - 3600) as f64;
    backend
        .register(&queue, &ghost, long_ago, Registration::Join)
        .await?;
    assert_eq!(backend.take(&queue, &ghost, 1, long_ago).await?.len(), 1);

    for (id, data) in [
        ("ok-1", "ok"),
        ("ok-2", "two-seconds"),
        ("fail-once", "fail-once"),
        ("panic-once", "panic-once"),
        ("always-fails", "always-fails"),
        ("permanent", "permanent"),
        ("slow", "slow"),
    ] {
        producer.perform(Job::new(data).with_id(id)).await?;
    }
    let again = producer.perform(Job::new("ok").with_id("ok-1")).await;
    assert!(matches!(again, Err(ProduceError::AlreadyExists { .. })));
    producer
        .perform_after(Duration::from_secs(10), Job::new("ok").with_id("later"))
        .await?;

    let consumer = Consumer::builder(q)
        .runtime(clock.clone())
        .job_max_attempts(1)
        .job_timeout(Duration::from_secs(30))
        .cancel_grace_period(Duration::from_secs(5))
        .build(backend.clone())?;
    let watcher = consumer.clone();
    let stepper = clock.clone();
    let until_drained = async move {
        for _ in 0..5_000 {
            let stats = watcher.stats();
            if stats.succeeded == 7 && stats.killed == 2 {
                return;
            }
            stepper.advance_and_settle(Duration::from_millis(100)).await;
        }
        panic!(
            "not drained after 500 simulated seconds: {:?}",
            watcher.stats()
        );
    };
    let in_handler = clock.clone();
    consumer
        .run_with_context(
            move |job, ctx| planned(job, ctx, in_handler.clone()),
            until_drained,
        )
        .await?;

    let m = metrics_of(&snapshotter);
    let base = || labels(q, &[]);
    assert_eq!(
        counter(&m, SENT_MESSAGES, labels(q, &[(OPERATION_NAME, "send")])),
        8,
        "new pushes only, the duplicate not counted"
    );
    assert_eq!(
        counter(
            &m,
            SENT_MESSAGES,
            labels(q, &[(OPERATION_NAME, "schedule")])
        ),
        1
    );
    // Nine first runs (the orphan's included) and four second runs.
    assert_eq!(
        counter(
            &m,
            CONSUMED_MESSAGES,
            labels(q, &[(OPERATION_NAME, "take")])
        ),
        13
    );
    assert_eq!(counter(&m, JOBS_PROCESSED, base()), 7);
    // fail-once, panic-once, slow once each; always-fails twice; permanent once.
    assert_eq!(counter(&m, JOBS_FAILED, base()), 6);
    assert_eq!(counter(&m, JOBS_RETRIED, base()), 4);
    assert_eq!(counter(&m, JOBS_KILLED, base()), 2);
    assert_eq!(counter(&m, JOBS_ORPHAN_REQUEUED, base()), 1);
    let stats = consumer.stats();
    assert_eq!((stats.succeeded, stats.retried, stats.killed), (7, 4, 2));

    let process = |extra: &[(&str, &str)]| {
        let mut all = vec![(OPERATION_NAME, "process")];
        all.extend_from_slice(extra);
        labels(q, &all)
    };
    let ok = samples(&m, PROCESS_DURATION, process(&[]));
    assert_eq!(ok.len(), 7, "successes carry no error.type");
    let longest = ok.iter().cloned().fold(0.0, f64::max);
    assert!(
        (2.0..2.2).contains(&longest),
        "the two-second job: {longest}"
    );
    let errors = samples(
        &m,
        PROCESS_DURATION,
        process(&[(ERROR_TYPE, ERROR_HANDLER)]),
    );
    assert_eq!(errors.len(), 4);
    assert_eq!(
        samples(&m, PROCESS_DURATION, process(&[(ERROR_TYPE, ERROR_PANIC)])).len(),
        1
    );
    let timeouts = samples(
        &m,
        PROCESS_DURATION,
        process(&[(ERROR_TYPE, ERROR_TIMEOUT)]),
    );
    assert_eq!(timeouts.len(), 1);
    assert!(
        (35.0..35.2).contains(&timeouts[0]),
        "dropped after timeout + cancel grace: {}",
        timeouts[0]
    );
    assert!(samples(
        &m,
        PROCESS_DURATION,
        process(&[(ERROR_TYPE, ERROR_CANCELLED)])
    )
    .is_empty());

    let latencies = samples(&m, JOB_LATENCY, base());
    assert_eq!(latencies.len(), 13, "every run of a job with a ready time");
    assert!(latencies.iter().all(|l| *l >= 0.0));
    Ok(())
}

/// A job without a ready time (as Go CurlyQ writes them) gets no latency sample; a run
/// stopped at shutdown is `cancelled`, not a failure.
#[tokio::test]
async fn go_jobs_have_no_latency_and_shutdown_drops_are_cancelled() -> Result<(), BoxError> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _recorder = metrics::set_default_local_recorder(&recorder);

    let q = "go-made";
    let queue = QueueName::new(q)?;
    let clock = Arc::new(ManualRuntime::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(T0),
    ));
    let backend = Arc::new(MemoryBackend::with_runtime(clock.clone()));
    // What a Go producer stores: no ReadyAt key.
    backend.put_raw_data(&queue, "go-1", Job::new("hang").with_id("go-1").encode());
    backend.push_raw_active(&queue, "go-1");

    let consumer = Consumer::builder(q)
        .runtime(clock.clone())
        .shutdown_grace_period(Duration::from_secs(1))
        .cancel_grace_period(Duration::from_secs(1))
        .build(backend.clone())?;
    let stepper = clock.clone();
    let started = Arc::new(Mutex::new(false));
    let seen = started.clone();
    let until_started = async move {
        while !*seen.lock().unwrap_or_else(|e| e.into_inner()) {
            stepper.advance_and_settle(Duration::from_millis(100)).await;
        }
    };
    let stepper = clock.clone();
    // Keeps time moving during the shutdown so that both graces pass.
    tokio::spawn(async move {
        loop {
            stepper.advance_and_settle(Duration::from_millis(100)).await;
        }
    });
    let result = consumer
        .run(
            move |_job: Job| {
                *started.lock().unwrap_or_else(|e| e.into_inner()) = true;
                std::future::pending::<Result<(), BoxError>>()
            },
            until_started,
        )
        .await;
    assert!(result.is_err(), "handlers outlived the grace: {result:?}");

    let m = metrics_of(&snapshotter);
    assert!(samples(&m, JOB_LATENCY, labels(q, &[])).is_empty());
    let cancelled = labels(
        q,
        &[(OPERATION_NAME, "process"), (ERROR_TYPE, ERROR_CANCELLED)],
    );
    assert_eq!(samples(&m, PROCESS_DURATION, cancelled).len(), 1);
    assert_eq!(counter(&m, JOBS_FAILED, labels(q, &[])), 0);
    assert_eq!(
        counter(
            &m,
            CONSUMED_MESSAGES,
            labels(q, &[(OPERATION_NAME, "take")])
        ),
        1
    );
    Ok(())
}

/// The queue gauges from the admin stats.
#[tokio::test]
async fn queue_gauges_follow_the_admin_stats() -> Result<(), BoxError> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _recorder = metrics::set_default_local_recorder(&recorder);

    let q = "gauged";
    let queue = QueueName::new(q)?;
    let clock = Arc::new(ManualRuntime::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(T0),
    ));
    let backend = Arc::new(MemoryBackend::with_runtime(clock.clone()));
    let producer = Producer::new(backend.clone(), q)?.with_clock(clock.clone());
    producer.perform(Job::new("a")).await?;
    producer.perform(Job::new("b")).await?;
    producer
        .perform_after(Duration::from_secs(60), Job::new("c"))
        .await?;
    backend.set_paused(&queue, true).await?;
    clock.advance(Duration::from_secs(5));
    let now = (T0 + 5) as f64;
    let stats = backend.stats(&queue, now, 1).await?;
    record_queue_stats(&queue, &stats, now);

    let m = metrics_of(&snapshotter);
    let gauge = |name: &str, labels: Vec<(String, String)>| match m.get(&(name.to_string(), labels))
    {
        Some(DebugValue::Gauge(v)) => Some(v.into_inner()),
        _ => None,
    };
    assert_eq!(
        gauge(QUEUE_JOBS, labels(q, &[(STATE, "active")])),
        Some(2.0)
    );
    assert_eq!(
        gauge(QUEUE_JOBS, labels(q, &[(STATE, "scheduled")])),
        Some(1.0)
    );
    assert_eq!(gauge(QUEUE_JOBS, labels(q, &[(STATE, "dead")])), Some(0.0));
    assert_eq!(
        gauge(QUEUE_JOBS, labels(q, &[(STATE, "inflight")])),
        Some(0.0)
    );
    let latency = gauge(QUEUE_LATENCY, labels(q, &[])).unwrap_or(-1.0);
    assert!((latency - 5.0).abs() < 0.01, "{latency}");
    assert_eq!(gauge(QUEUE_CONSUMERS, labels(q, &[])), Some(0.0));
    assert_eq!(gauge(QUEUE_PAUSED, labels(q, &[])), Some(1.0));
    Ok(())
}

/// One span as the capture layer saw it.
#[derive(Debug, Clone, Default)]
struct Captured {
    name: &'static str,
    fields: HashMap<String, String>,
}

struct FieldsOf<'a>(&'a mut HashMap<String, String>);

impl Visit for FieldsOf<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
}

/// Records every span's name and fields (those given at its start and recorded later).
#[derive(Clone, Default)]
struct Capture {
    spans: Arc<Mutex<Vec<Captured>>>,
    /// Open spans: their index in `spans` (span IDs are reused once a span closes).
    open: Arc<Mutex<HashMap<u64, usize>>>,
}

impl Capture {
    fn spans(&self) -> Vec<Captured> {
        self.spans.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut span = Captured {
            name: attrs.metadata().name(),
            ..Captured::default()
        };
        attrs.record(&mut FieldsOf(&mut span.fields));
        let mut spans = self.spans.lock().unwrap_or_else(|e| e.into_inner());
        spans.push(span);
        let at = spans.len() - 1;
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.into_u64(), at);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = open.get(&id.into_u64()) {
            let mut spans = self.spans.lock().unwrap_or_else(|e| e.into_inner());
            values.record(&mut FieldsOf(&mut spans[*at].fields));
        }
    }

    fn on_close(&self, id: Id, _: Context<'_, S>) {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id.into_u64());
    }
}

fn field<'a>(span: &'a Captured, name: &str) -> Option<&'a str> {
    span.fields.get(name).map(String::as_str)
}

/// The producer's `send` spans and the consumer's `process` spans carry the OTel
/// messaging fields; a failed run's span says so.
#[tokio::test]
async fn send_and_process_spans_carry_the_messaging_fields() -> Result<(), BoxError> {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    let _subscriber = tracing::subscriber::set_default(subscriber);

    let q = "traced";
    let clock = Arc::new(ManualRuntime::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(T0),
    ));
    let backend = Arc::new(MemoryBackend::with_runtime(clock.clone()));
    let producer = Producer::new(backend.clone(), q)?.with_clock(clock.clone());
    producer.perform(Job::new("ok").with_id("one")).await?;
    producer
        .perform_many(vec![Job::new("ok"), Job::new("fail")])
        .await?;
    producer
        .perform_after(Duration::from_secs(1), Job::new("ok").with_id("later"))
        .await?;

    let sends: Vec<Captured> = capture
        .spans()
        .into_iter()
        .filter(|s| s.name == "send")
        .collect();
    assert_eq!(sends.len(), 3);
    for send in &sends {
        assert_eq!(field(send, "otel.name"), Some("send traced"));
        assert_eq!(field(send, "otel.kind"), Some("producer"));
        assert_eq!(field(send, "messaging.system"), Some("curlyq"));
        assert_eq!(field(send, "messaging.destination.name"), Some("traced"));
        assert_eq!(field(send, "messaging.operation.type"), Some("send"));
    }
    assert_eq!(field(&sends[0], "messaging.message.id"), Some("one"));
    assert_eq!(field(&sends[0], "messaging.operation.name"), Some("send"));
    assert_eq!(field(&sends[1], "messaging.batch.message_count"), Some("2"));
    assert_eq!(field(&sends[1], "messaging.message.id"), None);
    assert_eq!(field(&sends[2], "messaging.message.id"), Some("later"));
    assert_eq!(
        field(&sends[2], "messaging.operation.name"),
        Some("schedule")
    );

    let consumer = Consumer::builder(q)
        .runtime(clock.clone())
        .no_retries()
        .build(backend.clone())?;
    let watcher = consumer.clone();
    let stepper = clock.clone();
    let until_drained = async move {
        for _ in 0..1_000 {
            let stats = watcher.stats();
            if stats.succeeded == 3 && stats.killed == 1 {
                return;
            }
            stepper.advance_and_settle(Duration::from_millis(100)).await;
        }
        panic!("not drained: {:?}", watcher.stats());
    };
    consumer
        .run(
            |job: Job| async move {
                if job.data == b"fail" {
                    return Err(BoxError::from("planned"));
                }
                Ok(())
            },
            until_drained,
        )
        .await?;

    let processes: Vec<Captured> = capture
        .spans()
        .into_iter()
        .filter(|s| s.name == "process")
        .collect();
    assert_eq!(processes.len(), 4);
    assert!(
        capture.spans().iter().all(|s| s.name != "job"),
        "the old `job` span is gone"
    );
    for p in &processes {
        assert_eq!(field(p, "otel.name"), Some("process traced"));
        assert_eq!(field(p, "otel.kind"), Some("consumer"));
        assert_eq!(field(p, "messaging.system"), Some("curlyq"));
        assert_eq!(field(p, "messaging.destination.name"), Some("traced"));
        assert_eq!(field(p, "messaging.operation.type"), Some("process"));
        assert_eq!(field(p, "curlyq.job.attempt"), Some("0"));
        assert_eq!(field(p, "attempt"), Some("0"));
        assert!(field(p, "messaging.client.id").is_some_and(|c| !c.is_empty()));
        assert_eq!(field(p, "messaging.message.id"), field(p, "job_id"));
    }
    let one = processes
        .iter()
        .find(|p| field(p, "messaging.message.id") == Some("one"))
        .ok_or("no process span for job one")?;
    assert_eq!(field(one, "error.type"), None);
    let failed: Vec<&Captured> = processes
        .iter()
        .filter(|p| field(p, "error.type").is_some())
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(field(failed[0], "error.type"), Some("error"));
    assert_eq!(field(failed[0], "otel.status_code"), Some("error"));
    Ok(())
}
