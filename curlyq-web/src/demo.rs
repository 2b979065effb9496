//! A demo store: jobs in every state and a day of outcome counters, for `curlyq web
//! --demo`, for trying the dashboard, and for tests.
//!
//! [`seed_demo`] writes it through the [`QueueBackend`] operations alone, so it works on
//! any backend (the in-memory one, or a throwaway Redis); [`demo_backend`] is a
//! [`MemoryBackend`] holding it.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use curlyq_core::{QueueBackend, QueueName};
//! use curlyq_web::demo;
//!
//! let backend = demo::demo_backend(1_700_000_000.0).await?;
//! let queue = QueueName::new(demo::QUEUE)?;
//! let xss = backend.find_job(&queue, demo::XSS_JOB).await?.expect("seeded");
//! assert!(xss.summary.state.is_some());
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use curlyq_core::{
    BackendError, ConsumerId, EncodedJob, Job, KillJob, MemoryBackend, QueueBackend, QueueName,
    Registration, RetryJob, ScheduledJob,
};

/// The main demo queue: every job state, two consumers, a day of counters.
pub const QUEUE: &str = "emails";
/// A second queue, paused, whose name carries a Redis Cluster hash tag.
pub const PAUSED_QUEUE: &str = "{reports}";
/// The consumer that holds a job and heartbeats (the CLI's demo keeps it beating).
pub const LIVE_CONSUMER: &str = "worker-live-7f3a";
/// The consumer whose heartbeat stopped ten minutes before the seed time.
pub const EXPIRED_CONSUMER: &str = "worker-gone-91c2";
/// An active job whose payload is JSON.
pub const JSON_JOB: &str = "welcome-ada";
/// An active job whose payload is binary (not UTF-8).
pub const BINARY_JOB: &str = "attachment-thumb";
/// An active job with a 256 KiB payload (more than a page shows).
pub const LARGE_JOB: &str = "monthly-report";
/// An active job whose payload is `<script>alert(1)</script>`.
pub const XSS_JOB: &str = "xss-probe";
/// An active job whose ID has a slash, spaces and a hash tag.
pub const ODD_ID_JOB: &str = "invoice 2024/07 {emails}";
/// A dead job (its reason is a permanent failure).
pub const DEAD_JOB: &str = "bounce-ada";
/// A scheduled job (due in an hour).
pub const SCHEDULED_JOB: &str = "reminder-bob";
/// A scheduled job waiting for its retry, with a last error.
pub const RETRY_JOB: &str = "digest-carol";
/// The job held by [`LIVE_CONSUMER`].
pub const LIVE_JOB: &str = "sending-dave";
/// Size of [`LARGE_JOB`]'s payload.
pub const LARGE_BYTES: usize = 256 * 1024;

/// The demo store in memory, as of `now` (Unix seconds).
pub async fn demo_backend(now: f64) -> Result<MemoryBackend, BackendError> {
    let backend = MemoryBackend::new();
    seed_demo(&backend, now).await?;
    Ok(backend)
}

fn name(queue: &str) -> Result<QueueName, BackendError> {
    QueueName::new(queue).map_err(BackendError::other)
}

fn encoded(id: &str, data: impl Into<Vec<u8>>, ready_at: f64) -> EncodedJob {
    let job = Job::new(data).with_id(id).with_ready_at(ready_at);
    EncodedJob {
        id: id.to_owned(),
        data: job.encode(),
    }
}

/// Writes the demo's jobs and counters into `backend` as of `now` (Unix seconds): on
/// [`QUEUE`] jobs in every state ([`JSON_JOB`], [`BINARY_JOB`], [`LARGE_JOB`],
/// [`XSS_JOB`], [`ODD_ID_JOB`] active; [`SCHEDULED_JOB`] and [`RETRY_JOB`] scheduled;
/// [`DEAD_JOB`] and another dead with reasons; [`LIVE_JOB`] in flight under
/// [`LIVE_CONSUMER`] and two more under [`EXPIRED_CONSUMER`]) and per-minute counters over
/// the last 24 hours; [`PAUSED_QUEUE`], paused, with a few active jobs. Seed an empty
/// store: the IDs are fixed, and existing ones are left as they are.
pub async fn seed_demo(backend: &dyn QueueBackend, now: f64) -> Result<(), BackendError> {
    let q = name(QUEUE)?;
    seed_counters(backend, &q, now).await?;

    // In flight: one live consumer, one whose heartbeat stopped.
    let live = ConsumerId::from_string(LIVE_CONSUMER);
    backend
        .push(
            &q,
            &[encoded(
                LIVE_JOB,
                &br#"{"to":"dave@example.com"}"#[..],
                now - 4.0,
            )],
        )
        .await?;
    backend.register(&q, &live, now, Registration::Join).await?;
    backend.take(&q, &live, 1, now - 3.0).await?;
    let gone = ConsumerId::from_string(EXPIRED_CONSUMER);
    backend
        .push(
            &q,
            &[
                encoded(
                    "stuck-erin",
                    &br#"{"to":"erin@example.com"}"#[..],
                    now - 700.0,
                ),
                encoded(
                    "stuck-frank",
                    &br#"{"to":"frank@example.com"}"#[..],
                    now - 700.0,
                ),
            ],
        )
        .await?;
    backend
        .register(&q, &gone, now - 600.0, Registration::Join)
        .await?;
    backend.take(&q, &gone, 2, now - 650.0).await?;

    // Dead (with reasons) and a retry waiting with its last error, through a consumer's
    // outcomes as a real one would record them.
    let runner = ConsumerId::from_string("demo-runner");
    backend
        .register(&q, &runner, now, Registration::Join)
        .await?;
    backend
        .push(
            &q,
            &[
                encoded(
                    DEAD_JOB,
                    &br#"{"to":"ada@bounce.example"}"#[..],
                    now - 3000.0,
                ),
                encoded(
                    "timeout-gina",
                    &br#"{"to":"gina@example.com"}"#[..],
                    now - 2000.0,
                ),
                encoded(
                    RETRY_JOB,
                    &br#"{"to":"carol@example.com","kind":"digest"}"#[..],
                    now - 100.0,
                ),
            ],
        )
        .await?;
    backend.take(&q, &runner, 3, now - 90.0).await?;
    let kill = |id: &str, reason: &str| KillJob {
        id: id.to_owned(),
        data: None,
        reason: reason.to_owned(),
    };
    backend
        .kill(
            &q,
            &runner,
            &[kill(
                DEAD_JOB,
                "permanent failure: 550 5.1.1 mailbox unavailable",
            )],
            now - 2400.0,
        )
        .await?;
    backend
        .kill(
            &q,
            &runner,
            &[kill("timeout-gina", "timed out after 30s")],
            now - 1200.0,
        )
        .await?;
    let retried = Job::new(&br#"{"to":"carol@example.com","kind":"digest"}"#[..])
        .with_id(RETRY_JOB)
        .with_attempt(3)
        .with_ready_at(now + 300.0);
    backend
        .retry(
            &q,
            &runner,
            &[RetryJob {
                id: RETRY_JOB.to_owned(),
                data: retried.encode(),
                at: now + 300.0,
                error: Some("451 4.7.1 greylisted, try again later".to_owned()),
            }],
            now - 60.0,
        )
        .await?;
    backend.unregister(&q, &runner).await?;

    // Scheduled.
    backend
        .schedule(
            &q,
            &[
                ScheduledJob {
                    job: encoded(
                        SCHEDULED_JOB,
                        &br#"{"to":"bob@example.com","kind":"reminder"}"#[..],
                        now + 3600.0,
                    ),
                    at: now + 3600.0,
                },
                ScheduledJob {
                    job: encoded("newsletter-june", &b"newsletter #24"[..], now + 86_400.0),
                    at: now + 86_400.0,
                },
            ],
        )
        .await?;

    // Active: one of each kind of payload.
    let large: Vec<u8> = (0..LARGE_BYTES)
        .map(|i| {
            if i % 64 == 63 {
                b'\n'
            } else {
                b"report line "[i % 64 % 12]
            }
        })
        .collect();
    let binary: Vec<u8> = (0u8..=255).rev().collect();
    backend
        .push(
            &q,
            &[
                encoded(JSON_JOB, &br#"{"to":"ada@example.com","template":"welcome","vars":{"name":"Ada","plan":"pro"}}"#[..], now - 42.0),
                encoded(ODD_ID_JOB, &br#"{"invoice":"2024/07","amount_cents":129900}"#[..], now - 30.0),
                encoded(XSS_JOB, &b"<script>alert(1)</script>"[..], now - 20.0),
                encoded(BINARY_JOB, binary, now - 10.0),
                encoded(LARGE_JOB, large, now - 5.0),
                encoded("plain-text", &b"Hello, plain text payload."[..], now - 1.0),
            ],
        )
        .await?;

    // A second, paused queue.
    let paused = name(PAUSED_QUEUE)?;
    let reports: Vec<EncodedJob> = (1..=3)
        .map(|i| {
            encoded(
                &format!("report-{i}"),
                format!("{{\"report\":{i}}}"),
                now - 120.0 * i as f64,
            )
        })
        .collect();
    backend.push(&paused, &reports).await?;
    backend.set_paused(&paused, true).await?;
    Ok(())
}

/// How many jobs the demo counts as processed and failed `k` minutes before now: a
/// daily rhythm with bursts of failures.
fn demo_counts(k: usize) -> (usize, usize) {
    let busy = if (k / 90) % 4 < 2 { 4 } else { 0 };
    let processed = 2 + (k * 7) % 5 + busy;
    let failed = if k % 11 == 0 {
        3
    } else if k % 4 == 0 {
        1
    } else {
        0
    };
    (processed, failed.min(processed))
}

/// Records outcome counters as a consumer does: every minute of the last hour and every
/// fourth minute before that (with four minutes' worth), jobs pushed, taken and acked,
/// or retried and then deleted (so that only the counters stay).
async fn seed_counters(
    backend: &dyn QueueBackend,
    q: &QueueName,
    now: f64,
) -> Result<(), BackendError> {
    let counter = ConsumerId::from_string("demo-counter");
    backend
        .register(q, &counter, now, Registration::Join)
        .await?;
    for k in (0..1440).rev().filter(|k| *k < 60 || k % 4 == 0) {
        let at = now - 60.0 * k as f64;
        let (processed, failed) = demo_counts(k);
        // A sampled minute stands for the four around it, so that the 24-hour chart
        // keeps one rhythm.
        let (processed, failed) = if k < 60 {
            (processed, failed)
        } else {
            (processed * 4, failed * 4)
        };
        let jobs: Vec<EncodedJob> = (0..processed)
            .map(|i| encoded(&format!("counted-{k}-{i}"), &b"{}"[..], at))
            .collect();
        backend.push(q, &jobs).await?;
        let taken = backend.take(q, &counter, processed, at).await?;
        let (fail, ok) = taken.split_at(failed.min(taken.len()));
        let ids: Vec<String> = ok.iter().map(|j| j.id.clone()).collect();
        backend.ack(q, &counter, &ids, at).await?;
        if !fail.is_empty() {
            let retries: Vec<RetryJob> = fail
                .iter()
                .map(|j| RetryJob {
                    id: j.id.clone(),
                    data: j.data.clone().unwrap_or_default(),
                    at: at + 60.0,
                    error: None,
                })
                .collect();
            backend.retry(q, &counter, &retries, at).await?;
            let ids: Vec<String> = fail.iter().map(|j| j.id.clone()).collect();
            backend.delete_jobs(q, &ids).await?;
        }
    }
    backend.unregister(q, &counter).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rhythm_never_fails_more_than_it_processes() {
        for k in 0..1440 {
            let (p, f) = demo_counts(k);
            assert!(p >= 2 && f <= p, "{k}");
        }
    }
}
