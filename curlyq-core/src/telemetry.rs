//! Metrics and traces, named after OpenTelemetry's semantic conventions for messaging
//! systems.
//!
//! # Metrics and traces
//!
//! **Metrics** go through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`, on by default in the `curlyq` crate). curlyq records nothing until the
//! application installs a recorder, such as `metrics-exporter-prometheus`'s (which writes
//! the dots of the names below as underscores: `curlyq_jobs_processed`). A consumer takes
//! its metric handles from the recorder installed when [`Consumer::run`] starts, a
//! producer at its first push: install the recorder before either. A consumer registers
//! every series it can write when it starts (the durations of each error type too), so
//! a series reads 0 rather than being absent until its first event; recording is then
//! an atomic update on a handle, with no allocation or lookup per job.
//! `curlyq/examples/metrics.rs` exports them with `metrics-exporter-prometheus`.
//!
//! Every metric carries the labels `messaging.system` = `curlyq` and
//! `messaging.destination.name` = the queue's name; the table gives the others.
//!
//! | name | kind, unit | recorded | other labels |
//! |---|---|---|---|
//! | `messaging.client.sent.messages` ([`SENT_MESSAGES`]) | counter | jobs a producer stored (new ones only, not those refused as duplicates) | `messaging.operation.name`: `send` (now) or `schedule` (at a time) |
//! | `messaging.client.consumed.messages` ([`CONSUMED_MESSAGES`]) | counter | jobs a consumer took | `messaging.operation.name`: `take` |
//! | `messaging.process.duration` ([`PROCESS_DURATION`]) | histogram, seconds | each handler run, from its start until it returned or was dropped, on the consumer's clock | `messaging.operation.name`: `process`; `error.type` unless the run succeeded: `error` (it returned an error, [`Permanent`](crate::Permanent) and [`RetryAfter`](crate::RetryAfter) included), `panic`, `timeout` (it ran past its timeout), `cancelled` (stopped at shutdown: the job goes back) |
//! | `curlyq.jobs.processed` ([`JOBS_PROCESSED`]) | counter | jobs acked (their handler succeeded and the ack landed) | |
//! | `curlyq.jobs.failed` ([`JOBS_FAILED`]) | counter | handler runs that failed and count an attempt (`error.type` `error`, `panic` or `timeout`) | |
//! | `curlyq.jobs.retried` ([`JOBS_RETRIED`]) | counter | failed jobs scheduled for another run (recorded) | |
//! | `curlyq.jobs.killed` ([`JOBS_KILLED`]) | counter | jobs moved to the dead set: failures past their attempts, permanent failures, undecodable or missing data, and jobs the custodian found orphaned too often | |
//! | `curlyq.jobs.orphan_requeued` ([`JOBS_ORPHAN_REQUEUED`]) | counter | jobs this consumer's custodian took back from an expired consumer | |
//! | `curlyq.job.latency` ([`JOB_LATENCY`]) | histogram, seconds | per job started: its start minus the time it became ready ([`Job::ready_at`](crate::Job::ready_at): pushed, due, or retried due); not recorded for jobs without one (Go CurlyQ's) | |
//! | `curlyq.queue.jobs` ([`QUEUE_JOBS`]) | gauge | by [`record_queue_stats`] | `state`: `active`, `scheduled`, `dead`, `inflight` |
//! | `curlyq.queue.latency` ([`QUEUE_LATENCY`]) | gauge, seconds | by [`record_queue_stats`]: now minus the ready time of the job at the head of the active list (0 when it is empty) | |
//! | `curlyq.queue.consumers` ([`QUEUE_CONSUMERS`]) | gauge | by [`record_queue_stats`] | |
//! | `curlyq.queue.paused` ([`QUEUE_PAUSED`]) | gauge | by [`record_queue_stats`]: 1 when paused, else 0 | |
//!
//! The counters are this process's own, unlike the queue-wide outcome counters of the
//! admin stats (`Q:counts`, where "processed" counts every outcome, retries and kills
//! included). [`ConsumerStats`](crate::ConsumerStats) still counts the same outcomes for
//! one consumer in process.
//!
//! **Traces** go through `tracing`, with the field names tracing-opentelemetry maps to
//! span names, kinds and attributes:
//!
//! | span | when | fields |
//! |---|---|---|
//! | `send` | around each push ([`Producer::perform`](crate::Producer::perform) and the other `perform*` methods) | `otel.name` = `send {queue}`, `otel.kind` = `producer`, `messaging.system`, `messaging.destination.name`, `messaging.operation.type` = `send`, `messaging.operation.name` = `send` or `schedule`, `messaging.message.id` (one job) or `messaging.batch.message_count` (several) |
//! | `process` | around each handler run | `otel.name` = `process {queue}`, `otel.kind` = `consumer`, `messaging.system`, `messaging.destination.name`, `messaging.operation.type` = `process`, `messaging.operation.name` = `process`, `messaging.message.id`, `messaging.client.id` (the consumer ID), `curlyq.job.attempt`, and, for the logs of older versions, `queue`, `job_id` and `attempt`; when the run fails, `error.type` (as in the metrics) and `otel.status_code` = `error` |
//!
//! There is no `messaging.consumer.group.name`: every consumer of a queue takes from one
//! list, so a queue has no groups.
//!
//! **Trace context across the queue** (feature `opentelemetry`, off by default): the
//! producer writes its `send` span's context, through the globally configured
//! [`TextMapPropagator`](opentelemetry::propagation::TextMapPropagator) (set one, such as
//! `opentelemetry_sdk`'s `TraceContextPropagator`, with
//! `opentelemetry::global::set_text_map_propagator`), as a JSON object of headers
//! (`traceparent`, `tracestate`) into `Q:trace` beside each new job, in the same atomic
//! step as the push ([`QueueBackend::push_traced`](crate::QueueBackend::push_traced)).
//! The consumer reads it in the same script as the take
//! ([`QueueBackend::take_traced`](crate::QueueBackend::take_traced): one more hash read
//! per take, only with the feature) and makes it the parent of the run's `process` span,
//! so that tracing-opentelemetry exports the run as a child of the push. The context is
//! not in the job's encoding (Go CurlyQ drops keys it does not know when it rewrites a
//! job), and Go CurlyQ never reads `Q:trace`.
//!
//! The field lives as long as the job: kept through retries, death and a retry from the
//! dead set (so a revived job still joins its trace), deleted by the ack, the dead set's
//! trimming, and the admin delete and purge. A Go CurlyQ consumer acking a traced job
//! deletes the data only; its field is then a leftover that the custodian's dead-set
//! trim sweeps as it sweeps last errors (at most [`ERRORS_SWEEP`](crate::ERRORS_SWEEP)
//! fields examined per sweep and consumer, nothing while there are no more fields than
//! the dead set's bound), and a traced push that reuses the ID overwrites or clears it.
//!
//! [`Consumer::run`]: crate::Consumer::run

use crate::consumer::HandlerResult;
use crate::context::CancelReason;

#[cfg(feature = "metrics")]
use crate::admin::{JobState, QueueStats};
#[cfg(feature = "metrics")]
use crate::backend::QueueName;

/// Label: the messaging system, always [`SYSTEM`].
pub const MESSAGING_SYSTEM: &str = "messaging.system";
/// The value of [`MESSAGING_SYSTEM`].
pub const SYSTEM: &str = "curlyq";
/// Label: the queue's name.
pub const DESTINATION_NAME: &str = "messaging.destination.name";
/// Label: the operation (`send`, `schedule`, `take`, `process`).
pub const OPERATION_NAME: &str = "messaging.operation.name";
/// Label: why a handler run did not succeed (see [`ERROR_HANDLER`] and the others).
pub const ERROR_TYPE: &str = "error.type";
/// Label of [`QUEUE_JOBS`]: the state counted (`active`, `scheduled`, `dead`,
/// `inflight`).
pub const STATE: &str = "state";

/// [`ERROR_TYPE`] of a run whose handler returned an error.
pub const ERROR_HANDLER: &str = "error";
/// [`ERROR_TYPE`] of a run whose handler panicked.
pub const ERROR_PANIC: &str = "panic";
/// [`ERROR_TYPE`] of a run that ran past its timeout (and did not succeed).
pub const ERROR_TIMEOUT: &str = "timeout";
/// [`ERROR_TYPE`] of a run stopped at shutdown (its job goes back, no attempt counted).
pub const ERROR_CANCELLED: &str = "cancelled";

/// Counter: jobs a producer stored.
pub const SENT_MESSAGES: &str = "messaging.client.sent.messages";
/// Counter: jobs a consumer took.
pub const CONSUMED_MESSAGES: &str = "messaging.client.consumed.messages";
/// Histogram, seconds: handler run durations.
pub const PROCESS_DURATION: &str = "messaging.process.duration";
/// Counter: jobs acked.
pub const JOBS_PROCESSED: &str = "curlyq.jobs.processed";
/// Counter: handler runs that failed (an error, a panic, a timeout).
pub const JOBS_FAILED: &str = "curlyq.jobs.failed";
/// Counter: failed jobs scheduled for another run.
pub const JOBS_RETRIED: &str = "curlyq.jobs.retried";
/// Counter: jobs moved to the dead set.
pub const JOBS_KILLED: &str = "curlyq.jobs.killed";
/// Counter: jobs taken back from expired consumers by this consumer's custodian.
pub const JOBS_ORPHAN_REQUEUED: &str = "curlyq.jobs.orphan_requeued";
/// Histogram, seconds: from a job's ready time to its start.
pub const JOB_LATENCY: &str = "curlyq.job.latency";
/// Gauge: jobs in a state (label [`STATE`]).
pub const QUEUE_JOBS: &str = "curlyq.queue.jobs";
/// Gauge, seconds: the age of the job at the head of the active list.
pub const QUEUE_LATENCY: &str = "curlyq.queue.latency";
/// Gauge: registered consumers.
pub const QUEUE_CONSUMERS: &str = "curlyq.queue.consumers";
/// Gauge: 1 when the queue is paused, else 0.
pub const QUEUE_PAUSED: &str = "curlyq.queue.paused";

/// Registers the unit and description of every metric above with the installed
/// recorder (exporters show them, as Prometheus's `# HELP` lines). Consumers and
/// producers call it when they take their handles; calling it again is harmless.
///
/// ```
/// use metrics_util::debugging::DebuggingRecorder;
///
/// let recorder = DebuggingRecorder::new();
/// metrics::with_local_recorder(&recorder, curlyq_core::telemetry::describe);
/// ```
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(SENT_MESSAGES, Unit::Count, "Jobs stored by producers");
    describe_counter!(CONSUMED_MESSAGES, Unit::Count, "Jobs taken by consumers");
    describe_histogram!(PROCESS_DURATION, Unit::Seconds, "Handler run durations");
    describe_counter!(JOBS_PROCESSED, Unit::Count, "Jobs acked");
    describe_counter!(JOBS_FAILED, Unit::Count, "Handler runs that failed");
    describe_counter!(JOBS_RETRIED, Unit::Count, "Failed jobs scheduled again");
    describe_counter!(JOBS_KILLED, Unit::Count, "Jobs moved to the dead set");
    describe_counter!(
        JOBS_ORPHAN_REQUEUED,
        Unit::Count,
        "Jobs taken back from expired consumers"
    );
    describe_histogram!(
        JOB_LATENCY,
        Unit::Seconds,
        "From a job's ready time to its start"
    );
    describe_gauge!(QUEUE_JOBS, Unit::Count, "Jobs in each state");
    describe_gauge!(QUEUE_LATENCY, Unit::Seconds, "Age of the oldest active job");
    describe_gauge!(QUEUE_CONSUMERS, Unit::Count, "Registered consumers");
    describe_gauge!(QUEUE_PAUSED, "1 when the queue is paused, else 0");
}

/// Sets the queue gauges ([`QUEUE_JOBS`] per state, [`QUEUE_LATENCY`],
/// [`QUEUE_CONSUMERS`], [`QUEUE_PAUSED`]) from `stats` read at `now` (Unix seconds), on
/// the recorder installed now. Call it with fresh stats whenever the gauges are read (a
/// `/metrics` handler) or on a timer.
///
/// The latency is `now - stats.oldest_ready_at` (0 when the active list is empty, never
/// below 0); when the job at the head says no ready time (Go CurlyQ's jobs) the latency
/// gauge is left as it was.
///
/// ```
/// use curlyq_core::admin::QueueStats;
/// use curlyq_core::QueueName;
/// use metrics_util::debugging::{DebugValue, DebuggingRecorder};
///
/// let recorder = DebuggingRecorder::new();
/// let snapshotter = recorder.snapshotter();
/// let queue = QueueName::new("emails")?;
/// let stats = QueueStats { active: 3, paused: true, oldest_ready_at: Some(90.0), ..Default::default() };
/// metrics::with_local_recorder(&recorder, || {
///     curlyq_core::telemetry::record_queue_stats(&queue, &stats, 100.0);
/// });
/// let latency = snapshotter.snapshot().into_vec().into_iter()
///     .find(|(key, ..)| key.key().name() == "curlyq.queue.latency")
///     .map(|(.., value)| value);
/// assert_eq!(latency, Some(DebugValue::Gauge(10.0.into())));
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub fn record_queue_stats(queue: &QueueName, stats: &QueueStats, now: f64) {
    let labels = imp::base_labels(queue);
    for state in JobState::LISTED {
        let mut with_state = labels.clone();
        with_state.push(metrics::Label::new(STATE, state.as_str()));
        metrics::gauge!(QUEUE_JOBS, with_state).set(stats.size(state) as f64);
    }
    let latency = match stats.oldest_ready_at {
        _ if stats.active == 0 => Some(0.0),
        Some(at) => Some((now - at).max(0.0)),
        None => None,
    };
    if let Some(latency) = latency.filter(|l| l.is_finite()) {
        metrics::gauge!(QUEUE_LATENCY, labels.clone()).set(latency);
    }
    metrics::gauge!(QUEUE_CONSUMERS, labels.clone()).set(stats.consumers as f64);
    metrics::gauge!(QUEUE_PAUSED, labels).set(if stats.paused { 1.0 } else { 0.0 });
}

/// How a handler run ended, for [`PROCESS_DURATION`] and [`JOBS_FAILED`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunEnd {
    Succeeded,
    Error,
    Panic,
    TimedOut,
    Cancelled,
}

impl RunEnd {
    /// How a run ended that returned `result` after its cancellation signal fired for
    /// `signalled` (if it did), as the consumer core decides its outcome: a success is
    /// one whatever the signal; a failure after the shutdown signal gives the job back.
    pub(crate) fn of(result: &HandlerResult, signalled: Option<CancelReason>) -> Self {
        match (result, signalled) {
            (HandlerResult::Succeeded, _) => RunEnd::Succeeded,
            (_, Some(CancelReason::TimedOut)) => RunEnd::TimedOut,
            (_, Some(_)) => RunEnd::Cancelled,
            (HandlerResult::Panicked(_), None) => RunEnd::Panic,
            (_, None) => RunEnd::Error,
        }
    }

    /// How a run ended that was dropped after its signal for `signalled` fired.
    pub(crate) fn dropped(signalled: Option<CancelReason>) -> Self {
        match signalled {
            Some(CancelReason::TimedOut) => RunEnd::TimedOut,
            _ => RunEnd::Cancelled,
        }
    }

    /// The [`ERROR_TYPE`] value (`None` for a success).
    pub(crate) fn error_type(self) -> Option<&'static str> {
        match self {
            RunEnd::Succeeded => None,
            RunEnd::Error => Some(ERROR_HANDLER),
            RunEnd::Panic => Some(ERROR_PANIC),
            RunEnd::TimedOut => Some(ERROR_TIMEOUT),
            RunEnd::Cancelled => Some(ERROR_CANCELLED),
        }
    }

    /// Whether the run counts as a failure (an attempt used).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn failed(self) -> bool {
        matches!(self, RunEnd::Error | RunEnd::Panic | RunEnd::TimedOut)
    }
}

/// The trace context of `span` as the globally configured
/// [`TextMapPropagator`](opentelemetry::propagation::TextMapPropagator) writes it (W3C
/// `traceparent` / `tracestate` with `TraceContextPropagator`), encoded as a JSON object
/// for `Q:trace`; `None` when the propagator writes nothing (no OpenTelemetry layer, no
/// propagator set, or a span that is not sampled in).
#[cfg(feature = "opentelemetry")]
pub(crate) fn trace_of(span: &tracing::Span) -> Option<String> {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = span.context();
    let mut carrier = std::collections::HashMap::<String, String>::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut carrier));
    if carrier.is_empty() {
        return None;
    }
    serde_json::to_string(&carrier).ok()
}

/// Makes the context encoded in `trace` (by [`trace_of`], as stored in `Q:trace`) the
/// parent of `span`. A value that is not such an encoding (bad data in Redis) is ignored:
/// the span keeps its own parent.
#[cfg(feature = "opentelemetry")]
pub(crate) fn set_parent(span: &tracing::Span, trace: Option<&str>) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let Some(trace) = trace else {
        return;
    };
    let Ok(carrier) = serde_json::from_str::<std::collections::HashMap<String, String>>(trace)
    else {
        tracing::debug!("curlyq ignored a trace context that is not a JSON object of strings");
        return;
    };
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier));
    let _ = span.set_parent(cx);
}

/// Without the `opentelemetry` feature there is no context to set.
#[cfg(not(feature = "opentelemetry"))]
pub(crate) fn set_parent(_: &tracing::Span, _: Option<&str>) {}

#[cfg(feature = "metrics")]
pub(crate) use imp::{ConsumerMetrics, ProducerMetrics};
#[cfg(not(feature = "metrics"))]
pub(crate) use noop::{ConsumerMetrics, ProducerMetrics};

/// The metric handles, made once per consumer run and per producer.
#[cfg(feature = "metrics")]
mod imp {
    use std::time::Duration;

    use metrics::{Counter, Histogram, Label};

    use super::*;

    pub(super) fn base_labels(queue: &QueueName) -> Vec<Label> {
        vec![
            Label::new(MESSAGING_SYSTEM, SYSTEM),
            Label::new(DESTINATION_NAME, queue.as_str().to_owned()),
        ]
    }

    fn with(labels: &[Label], key: &'static str, value: &'static str) -> Vec<Label> {
        let mut out = labels.to_vec();
        out.push(Label::new(key, value));
        out
    }

    /// One consumer run's handles (registered once: recording is then an atomic add).
    #[derive(Debug)]
    pub(crate) struct ConsumerMetrics {
        consumed: Counter,
        processed: Counter,
        failed: Counter,
        retried: Counter,
        killed: Counter,
        orphan_requeued: Counter,
        latency: Histogram,
        /// By [`RunEnd`]: succeeded, error, panic, timeout, cancelled.
        durations: [Histogram; 5],
    }

    impl ConsumerMetrics {
        pub(crate) fn new(queue: &QueueName) -> Self {
            describe();
            let base = base_labels(queue);
            let process = with(&base, OPERATION_NAME, "process");
            let duration = |end: RunEnd| {
                let labels = match end.error_type() {
                    Some(kind) => with(&process, ERROR_TYPE, kind),
                    None => process.clone(),
                };
                metrics::histogram!(PROCESS_DURATION, labels)
            };
            ConsumerMetrics {
                consumed: metrics::counter!(CONSUMED_MESSAGES, with(&base, OPERATION_NAME, "take")),
                processed: metrics::counter!(JOBS_PROCESSED, base.clone()),
                failed: metrics::counter!(JOBS_FAILED, base.clone()),
                retried: metrics::counter!(JOBS_RETRIED, base.clone()),
                killed: metrics::counter!(JOBS_KILLED, base.clone()),
                orphan_requeued: metrics::counter!(JOBS_ORPHAN_REQUEUED, base.clone()),
                latency: metrics::histogram!(JOB_LATENCY, base),
                durations: [
                    duration(RunEnd::Succeeded),
                    duration(RunEnd::Error),
                    duration(RunEnd::Panic),
                    duration(RunEnd::TimedOut),
                    duration(RunEnd::Cancelled),
                ],
            }
        }

        pub(crate) fn taken(&self, jobs: usize) {
            if jobs > 0 {
                self.consumed.increment(jobs as u64);
            }
        }

        /// Outcomes recorded since the last call: acked, retried, killed.
        pub(crate) fn recorded(&self, acked: u64, retried: u64, killed: u64) {
            for (counter, n) in [
                (&self.processed, acked),
                (&self.retried, retried),
                (&self.killed, killed),
            ] {
                if n > 0 {
                    counter.increment(n);
                }
            }
        }

        /// What one orphan sweep of this consumer's custodian did.
        pub(crate) fn orphans(&self, requeued: usize, killed: usize) {
            if requeued > 0 {
                self.orphan_requeued.increment(requeued as u64);
            }
            if killed > 0 {
                self.killed.increment(killed as u64);
            }
        }

        /// A job started `latency` seconds after it became ready.
        pub(crate) fn started(&self, latency: Option<f64>) {
            if let Some(latency) = latency.filter(|l| l.is_finite()) {
                self.latency.record(latency.max(0.0));
            }
        }

        /// A handler run ended after `took`.
        pub(crate) fn ended(&self, end: RunEnd, took: Duration) {
            let index = match end {
                RunEnd::Succeeded => 0,
                RunEnd::Error => 1,
                RunEnd::Panic => 2,
                RunEnd::TimedOut => 3,
                RunEnd::Cancelled => 4,
            };
            self.durations[index].record(took.as_secs_f64());
            if end.failed() {
                self.failed.increment(1);
            }
        }
    }

    /// A producer's handles.
    #[derive(Debug)]
    pub(crate) struct ProducerMetrics {
        send: Counter,
        schedule: Counter,
    }

    impl ProducerMetrics {
        pub(crate) fn new(queue: &QueueName) -> Self {
            describe();
            let base = base_labels(queue);
            ProducerMetrics {
                send: metrics::counter!(SENT_MESSAGES, with(&base, OPERATION_NAME, "send")),
                schedule: metrics::counter!(SENT_MESSAGES, with(&base, OPERATION_NAME, "schedule")),
            }
        }

        /// `jobs` new jobs were pushed (`scheduled`: to the scheduled set).
        pub(crate) fn sent(&self, jobs: usize, scheduled: bool) {
            if jobs > 0 {
                let counter = if scheduled {
                    &self.schedule
                } else {
                    &self.send
                };
                counter.increment(jobs as u64);
            }
        }
    }
}

/// Without the `metrics` feature: the same calls, doing nothing.
#[cfg(not(feature = "metrics"))]
mod noop {
    use std::time::Duration;

    use super::RunEnd;
    use crate::backend::QueueName;

    #[derive(Debug)]
    pub(crate) struct ConsumerMetrics;

    impl ConsumerMetrics {
        pub(crate) fn new(_: &QueueName) -> Self {
            ConsumerMetrics
        }
        pub(crate) fn taken(&self, _: usize) {}
        pub(crate) fn recorded(&self, _: u64, _: u64, _: u64) {}
        pub(crate) fn orphans(&self, _: usize, _: usize) {}
        pub(crate) fn started(&self, _: Option<f64>) {}
        pub(crate) fn ended(&self, _: RunEnd, _: Duration) {}
    }

    #[derive(Debug)]
    pub(crate) struct ProducerMetrics;

    impl ProducerMetrics {
        pub(crate) fn new(_: &QueueName) -> Self {
            ProducerMetrics
        }
        pub(crate) fn sent(&self, _: usize, _: bool) {}
    }
}
