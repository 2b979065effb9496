//! The producer: pushes jobs now, at a time, or after a delay.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use tracing::{field, info_span, Instrument, Span};

use crate::backend::{EncodedJob, QueueBackend, QueueName, ScheduledJob};
use crate::error::{BackendError, ConfigError, ProduceError};
use crate::job::Job;
use crate::runtime::{unix_seconds, Runtime};
use crate::telemetry::ProducerMetrics;

/// Pushes jobs onto one queue. Cheap to clone; share it freely.
///
/// ```
/// # async fn demo(backend: std::sync::Arc<dyn curlyq_core::QueueBackend>) -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use curlyq_core::{Job, Producer, ProduceError};
///
/// let producer = Producer::new(backend, "emails")?;
/// let id = producer.perform(Job::new(b"welcome 42".to_vec())).await?;
/// producer.perform_after(Duration::from_secs(60), Job::new(b"reminder".to_vec())).await?;
/// // The same ID again is refused, and the stored job is left as it was.
/// let again = producer.perform(Job::new(b"x".to_vec()).with_id(id.clone())).await;
/// assert!(matches!(again, Err(ProduceError::AlreadyExists { .. })));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Producer {
    backend: Arc<dyn QueueBackend>,
    queue: QueueName,
    clock: Option<Arc<dyn Runtime>>,
    max_payload: usize,
    /// What every clone shares: the metric handles (made at the first push) and the
    /// `send` span's name.
    shared: Arc<Shared>,
}

struct Shared {
    metrics: OnceLock<ProducerMetrics>,
    /// `send {queue}`.
    span_name: String,
}

/// The largest payload ([`Job::data`]) a producer accepts by default: 16 MiB.
pub const DEFAULT_MAX_PAYLOAD: usize = 16 * 1024 * 1024;

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl Producer {
    /// A producer for `queue` on `backend`. Fails only on an empty queue name.
    pub fn new(
        backend: Arc<dyn QueueBackend>,
        queue: impl Into<String>,
    ) -> Result<Self, ConfigError> {
        let queue = QueueName::new(queue)?;
        let shared = Arc::new(Shared {
            metrics: OnceLock::new(),
            span_name: format!("send {queue}"),
        });
        Ok(Producer {
            backend,
            queue,
            clock: None,
            max_payload: DEFAULT_MAX_PAYLOAD,
            shared,
        })
    }

    /// Uses `runtime`'s clock for [`perform_after`](Self::perform_after) (a manual
    /// clock in tests); the system clock otherwise.
    pub fn with_clock(mut self, runtime: Arc<dyn Runtime>) -> Self {
        self.clock = Some(runtime);
        self
    }

    /// Refuses jobs whose payload is larger than `bytes` with
    /// [`ProduceError::PayloadTooLarge`], writing nothing for them (default
    /// [`DEFAULT_MAX_PAYLOAD`]).
    pub fn with_max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    /// The queue's name.
    pub fn queue(&self) -> &QueueName {
        &self.queue
    }

    /// The `send` span of one push; `operation` is `send` or `schedule`.
    fn span(&self, operation: &'static str) -> Span {
        info_span!(
            "send",
            otel.name = self.shared.span_name.as_str(),
            otel.kind = "producer",
            messaging.system = crate::telemetry::SYSTEM,
            messaging.destination.name = self.queue.as_str(),
            messaging.operation.type = "send",
            messaging.operation.name = operation,
            messaging.message.id = field::Empty,
            messaging.batch.message_count = field::Empty,
        )
    }

    /// Counts `jobs` new jobs stored.
    fn sent(&self, jobs: usize, scheduled: bool) {
        self.shared
            .metrics
            .get_or_init(|| ProducerMetrics::new(&self.queue))
            .sent(jobs, scheduled);
    }

    fn now(&self) -> SystemTime {
        self.clock
            .as_ref()
            .map_or_else(SystemTime::now, |rt| rt.now())
    }

    /// Pushes a job to run as soon as a consumer is free. Returns its ID.
    ///
    /// Fails with [`ProduceError::AlreadyExists`] when the queue holds a job with this
    /// ID (the stored job is untouched). On [`ProduceError::Backend`] the push may or may
    /// not have happened: pushing the same job (same ID) again is safe.
    pub async fn perform(&self, job: Job) -> Result<String, ProduceError> {
        let mut results = self.perform_many(vec![job]).await?;
        results.pop().unwrap_or_else(|| {
            Err(ProduceError::Backend {
                ids: Vec::new(),
                source: crate::BackendError::InvalidReply("no result for the job".into()),
            })
        })
    }

    /// Pushes a job whose payload is `value` as JSON (see [`Job::json`]). Returns its ID.
    /// To set an ID or a run time, make the job with [`Job::json`] and use
    /// [`perform`](Self::perform), [`perform_at`](Self::perform_at) or
    /// [`perform_after`](Self::perform_after).
    ///
    /// ```
    /// # async fn demo(producer: curlyq_core::Producer) -> Result<(), curlyq_core::ProduceError> {
    /// #[derive(serde::Serialize)]
    /// struct Email<'a> { to: &'a str, subject: &'a str }
    ///
    /// producer.perform_json(&Email { to: "a@example.com", subject: "Welcome" }).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ProduceError::Encode`] when the value cannot be encoded, else as
    /// [`perform`](Self::perform).
    pub async fn perform_json<T: serde::Serialize + ?Sized>(
        &self,
        value: &T,
    ) -> Result<String, ProduceError> {
        self.perform(Job::json(value)?).await
    }

    /// Pushes many jobs in one round trip, in order. Returns one outcome per job (its ID,
    /// or [`ProduceError::AlreadyExists`]); the outer error is a backend failure for the
    /// whole batch.
    pub async fn perform_many(
        &self,
        jobs: Vec<Job>,
    ) -> Result<Vec<Result<String, ProduceError>>, ProduceError> {
        let span = self.span("send");
        self.push_many(jobs, &span).instrument(span.clone()).await
    }

    async fn push_many(
        &self,
        jobs: Vec<Job>,
        span: &Span,
    ) -> Result<Vec<Result<String, ProduceError>>, ProduceError> {
        // Oversized jobs are refused here, in place; the others go in one round trip.
        let mut results: Vec<Option<Result<String, ProduceError>>> = Vec::with_capacity(jobs.len());
        let mut encoded = Vec::with_capacity(jobs.len());
        let now = unix_seconds(self.now());
        for job in jobs {
            match self.check_payload(job) {
                Ok(job) => {
                    results.push(None);
                    encoded.push(encode_with_id(job, now));
                }
                Err(refused) => results.push(Some(Err(refused))),
            }
        }
        match encoded.as_slice() {
            [one] => {
                span.record("messaging.message.id", one.id.as_str());
            }
            many if many.len() > 1 => {
                span.record("messaging.batch.message_count", many.len());
            }
            _ => {}
        }
        let pushed = if encoded.is_empty() {
            Vec::new()
        } else {
            let created =
                self.store(&encoded, span)
                    .await
                    .map_err(|source| ProduceError::Backend {
                        ids: encoded.iter().map(|j| j.id.clone()).collect(),
                        source,
                    })?;
            self.sent(created.iter().filter(|new| **new).count(), false);
            outcomes(encoded, created)?
        };
        let mut pushed = pushed.into_iter();
        Ok(results
            .into_iter()
            .map(|slot| {
                slot.or_else(|| pushed.next()).unwrap_or_else(|| {
                    Err(ProduceError::Backend {
                        ids: Vec::new(),
                        source: crate::BackendError::InvalidReply("no result for a job".into()),
                    })
                })
            })
            .collect())
    }

    /// Pushes `jobs`; with the `opentelemetry` feature, with the trace context of `span`.
    async fn store(&self, jobs: &[EncodedJob], span: &Span) -> Result<Vec<bool>, BackendError> {
        #[cfg(feature = "opentelemetry")]
        {
            let trace = crate::telemetry::trace_of(span);
            self.backend
                .push_traced(&self.queue, jobs, trace.as_deref())
                .await
        }
        #[cfg(not(feature = "opentelemetry"))]
        {
            let _ = span;
            self.backend.push(&self.queue, jobs).await
        }
    }

    /// Schedules `jobs`, as [`store`](Self::store) pushes.
    async fn store_scheduled(
        &self,
        jobs: &[ScheduledJob],
        span: &Span,
    ) -> Result<Vec<bool>, BackendError> {
        #[cfg(feature = "opentelemetry")]
        {
            let trace = crate::telemetry::trace_of(span);
            self.backend
                .schedule_traced(&self.queue, jobs, trace.as_deref())
                .await
        }
        #[cfg(not(feature = "opentelemetry"))]
        {
            let _ = span;
            self.backend.schedule(&self.queue, jobs).await
        }
    }

    fn check_payload(&self, job: Job) -> Result<Job, ProduceError> {
        if job.data.len() > self.max_payload {
            return Err(ProduceError::PayloadTooLarge {
                id: job.id,
                size: job.data.len(),
                max: self.max_payload,
            });
        }
        Ok(job)
    }

    /// Pushes a job to run at `when` (it waits in the scheduled set until then).
    ///
    /// Fails with [`ProduceError::InvalidTime`] for a time before the Unix epoch.
    pub async fn perform_at(&self, when: SystemTime, job: Job) -> Result<String, ProduceError> {
        self.schedule(unix_seconds(when), job).await
    }

    /// Pushes a job to run at `unix_seconds` (fractions allowed).
    ///
    /// Fails with [`ProduceError::InvalidTime`] for a negative, NaN or infinite time.
    pub async fn perform_at_unix(
        &self,
        unix_seconds: f64,
        job: Job,
    ) -> Result<String, ProduceError> {
        self.schedule(unix_seconds, job).await
    }

    /// Pushes a job to run after `delay`.
    pub async fn perform_after(&self, delay: Duration, job: Job) -> Result<String, ProduceError> {
        let at = unix_seconds(self.now()) + delay.as_secs_f64();
        self.schedule(at, job).await
    }

    async fn schedule(&self, at: f64, job: Job) -> Result<String, ProduceError> {
        let span = self.span("schedule");
        self.schedule_one(at, job, &span)
            .instrument(span.clone())
            .await
    }

    async fn schedule_one(&self, at: f64, job: Job, span: &Span) -> Result<String, ProduceError> {
        let job = encode_with_id(self.check_payload(job)?, at);
        span.record("messaging.message.id", job.id.as_str());
        if !at.is_finite() || at < 0.0 {
            return Err(ProduceError::InvalidTime {
                id: job.id,
                reason: format!(
                    "{at} is not a time from 1970 on; give a finite, non-negative Unix time"
                ),
            });
        }
        let created = self
            .store_scheduled(
                &[ScheduledJob {
                    job: job.clone(),
                    at,
                }],
                span,
            )
            .await
            .map_err(|source| ProduceError::Backend {
                ids: vec![job.id.clone()],
                source,
            })?;
        self.sent(created.iter().filter(|new| **new).count(), true);
        let mut results = outcomes(vec![job], created)?;
        results.pop().unwrap_or_else(|| {
            Err(ProduceError::Backend {
                ids: Vec::new(),
                source: crate::BackendError::InvalidReply("no result for the job".into()),
            })
        })
    }
}

/// The job with an ID (a fresh one when empty) and its ready time, encoded. A job that
/// says when it became ready keeps that time (a tool moving jobs between queues).
fn encode_with_id(mut job: Job, ready_at: f64) -> EncodedJob {
    if job.id.is_empty() {
        job.id = crate::job::random_uuid();
    }
    if job.ready_at().is_none() {
        job = job.with_ready_at(ready_at);
    }
    EncodedJob {
        data: job.encode(),
        id: job.id,
    }
}

fn outcomes(
    jobs: Vec<EncodedJob>,
    created: Vec<bool>,
) -> Result<Vec<Result<String, ProduceError>>, ProduceError> {
    if created.len() != jobs.len() {
        let message = format!("{} results for {} jobs", created.len(), jobs.len());
        return Err(ProduceError::Backend {
            ids: jobs.into_iter().map(|j| j.id).collect(),
            source: crate::BackendError::InvalidReply(message),
        });
    }
    Ok(jobs
        .into_iter()
        .zip(created)
        .map(|(job, new)| {
            if new {
                Ok(job.id)
            } else {
                Err(ProduceError::AlreadyExists { id: job.id })
            }
        })
        .collect())
}
