//! Pushes a few jobs and processes them, on the in-memory backend, or on Redis when
//! `REDIS_URL` is set (for example `REDIS_URL=redis://127.0.0.1:6379`).
//!
//! Run with `cargo run --example quickstart`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use curlyq::{Consumer, Job, Producer, QueueBackend};

const JOBS: usize = 5;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Show curlyq's own logs with RUST_LOG=curlyq_core=debug.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();

    let backend: Arc<dyn QueueBackend> = match std::env::var("REDIS_URL") {
        Ok(url) => {
            println!("using Redis at {url}");
            curlyq::connect(&url).await?
        }
        Err(_) => {
            println!("using the in-memory backend (set REDIS_URL to use Redis)");
            Arc::new(curlyq_testkit::MemoryBackend::new())
        }
    };
    let queue = format!("quickstart-{}", std::process::id());

    // Producer: jobs now, and one after a delay.
    let producer = Producer::new(backend.clone(), queue.as_str())?;
    for i in 1..JOBS {
        producer.perform(Job::new(format!("hello #{i}"))).await?;
    }
    producer
        .perform_after(
            Duration::from_millis(500),
            Job::new("hello, a little later"),
        )
        .await?;

    // Consumer: runs the handler until every job is done, then shuts down gracefully.
    let done = Arc::new(AtomicUsize::new(0));
    let all_done = Arc::new(tokio::sync::Notify::new());
    let consumer = Consumer::builder(queue.as_str())
        .concurrency(2)
        .scheduler_poll_interval(Duration::from_millis(100))
        .build(backend)?;
    let (counter, notify) = (done.clone(), all_done.clone());
    consumer
        .run(
            move |job: Job| {
                let (counter, notify) = (counter.clone(), notify.clone());
                async move {
                    println!(
                        "processed {}: {}",
                        job.id,
                        String::from_utf8_lossy(&job.data)
                    );
                    if counter.fetch_add(1, Ordering::SeqCst) + 1 == JOBS {
                        notify.notify_one();
                    }
                    Ok::<(), std::io::Error>(())
                }
            },
            async move { all_done.notified().await },
        )
        .await?;
    println!("done: {} jobs processed", done.load(Ordering::SeqCst));
    Ok(())
}
