//! Pushes a few jobs and processes them, on the in-memory backend, or on Redis when
//! `REDIS_URL` is set (for example `REDIS_URL=redis://127.0.0.1:6379`).
//!
//! Run with `cargo run --example quickstart`. It runs on the runtime the features choose
//! (tokio when on, else smol, else async-std) and connects with the backend they choose,
//! for example `cargo run --example quickstart --no-default-features --features fred,smol`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use curlyq::backend::QueueBackend;
use curlyq::{Consumer, Job, Producer};

const JOBS: usize = 5;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    // The executor the features choose; the consumer picks the matching runtime itself.
    #[cfg(feature = "tokio")]
    return tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(quickstart());
    #[cfg(all(not(feature = "tokio"), feature = "smol"))]
    return smol::block_on(quickstart());
    #[cfg(all(not(feature = "tokio"), not(feature = "smol"), feature = "async-std"))]
    return async_std::task::block_on(quickstart());
}

async fn quickstart() -> Result<(), Error> {
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
            curlyq::connect("memory://quickstart").await?
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
    let (all_done, finished) = async_channel::bounded::<()>(1);
    let consumer = Consumer::builder(queue.as_str())
        .concurrency(2)
        .scheduler_poll_interval(Duration::from_millis(100))
        .build(backend)?;
    let counter = done.clone();
    consumer
        .run(
            move |job: Job| {
                let (counter, all_done) = (counter.clone(), all_done.clone());
                async move {
                    println!(
                        "processed {}: {}",
                        job.id,
                        String::from_utf8_lossy(&job.data)
                    );
                    if counter.fetch_add(1, Ordering::SeqCst) + 1 == JOBS {
                        let _ = all_done.try_send(());
                    }
                    Ok::<(), std::io::Error>(())
                }
            },
            async move {
                let _ = finished.recv().await;
            },
        )
        .await?;
    println!("done: {} jobs processed", done.load(Ordering::SeqCst));
    Ok(())
}
