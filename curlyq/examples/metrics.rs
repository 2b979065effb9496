//! An application that exports curlyq's metrics to Prometheus: it installs
//! `metrics-exporter-prometheus`'s recorder, processes some jobs on the in-memory backend
//! (no Redis needed), sets the queue gauges from the admin stats, and prints what a
//! `/metrics` endpoint would serve (the dots of the metric names become underscores).
//!
//! ```sh
//! cargo run --example metrics
//! ```
//!
//! A web application would serve `handle.render()` from its `/metrics` route and call
//! `curlyq::telemetry::record_queue_stats` there (or on a timer) with fresh stats.

use std::time::Duration;

use curlyq::backend::QueueName;
use curlyq::{BoxError, Consumer, Job, JobContext, Producer, RetryAfter};
use metrics_exporter_prometheus::PrometheusBuilder;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // First the recorder: consumers and producers take their metric handles from the
    // recorder installed when they start. Buckets make the two histograms (durations
    // and latencies, in seconds) Prometheus histograms rather than summaries, so that
    // they add up across processes. A consumer registers every series it can write at
    // its start (the durations of each error type included), so they read 0 rather
    // than being absent.
    let buckets = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0];
    let handle = PrometheusBuilder::new()
        .set_buckets(&buckets)?
        .install_recorder()?;

    let backend = curlyq::connect("memory://metrics-example").await?;
    let producer = Producer::new(backend.clone(), "emails")?;
    for i in 0..20 {
        producer.perform(Job::new(format!("mail {i}"))).await?;
    }
    producer
        .perform_after(Duration::from_secs(3600), Job::new("reminder"))
        .await?;

    let consumer = Consumer::builder("emails")
        .concurrency(4)
        .job_max_attempts(1)
        .build(backend.clone())?;
    // Every fifth job fails once and is retried 10 ms later.
    let handler = |job: Job, ctx: JobContext| async move {
        let n: u32 = String::from_utf8_lossy(&job.data)
            .trim_start_matches("mail ")
            .parse()
            .unwrap_or(0);
        if n % 5 == 0 && ctx.attempt() == 0 {
            let error = std::io::Error::other("the mail server is busy");
            return Err(BoxError::from(RetryAfter::new(
                Duration::from_millis(10),
                error,
            )));
        }
        Ok(())
    };
    let watcher = consumer.clone();
    let until_sent = async move {
        while watcher.stats().succeeded < 20 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    consumer.run_with_context(handler, until_sent).await?;

    let queue = QueueName::new("emails")?;
    let now = curlyq::runtime::unix_seconds(std::time::SystemTime::now());
    let stats = backend.stats(&queue, now, 1).await?;
    curlyq::telemetry::record_queue_stats(&queue, &stats, now);

    println!("{}", handle.render());
    Ok(())
}
