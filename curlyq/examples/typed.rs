//! Typed jobs: a serde struct pushed as JSON and handled as the struct, with the job's
//! context. Runs on the in-memory backend, or on Redis when `REDIS_URL` is set.
//!
//! `cargo run --example typed`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use curlyq::{BoxError, Consumer, Job, JobContext, Permanent, Producer};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Email {
    to: String,
    subject: String,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "memory://typed".into());
    let backend = curlyq::connect(&url).await?;
    let queue = format!("typed-{}", std::process::id());

    let producer = Producer::new(backend.clone(), queue.as_str())?;
    for to in ["ada@example.com", "grace@example.com", "not an address"] {
        let email = Email {
            to: to.into(),
            subject: "Welcome".into(),
        };
        producer.perform_json(&email).await?;
    }
    // An ID of your own deduplicates: a second push of "welcome-alan" is refused.
    let alan = Email {
        to: "alan@example.com".into(),
        subject: "Welcome".into(),
    };
    producer
        .perform(Job::json(&alan)?.with_id("welcome-alan"))
        .await?;
    let again = producer
        .perform(Job::json(&alan)?.with_id("welcome-alan"))
        .await;
    assert!(matches!(
        again,
        Err(curlyq::ProduceError::AlreadyExists { .. })
    ));

    let consumer = Consumer::builder(queue.as_str())
        .concurrency(4)
        .build(backend)?;
    let seen = Arc::new(AtomicUsize::new(0));
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    let done = std::sync::Mutex::new(Some(done));
    let counter = seen.clone();
    consumer
        .run_typed(
            move |email: Email, ctx: JobContext| {
                let result = if email.to.contains('@') {
                    println!(
                        "job {} (attempt {}): mail to {} about {:?}",
                        ctx.job_id(),
                        ctx.attempt(),
                        email.to,
                        email.subject
                    );
                    Ok(())
                } else {
                    // Retrying cannot fix a bad address: straight to the dead set.
                    Err(BoxError::from(Permanent::new(format!(
                        "{:?} is not an address",
                        email.to
                    ))))
                };
                if counter.fetch_add(1, Ordering::SeqCst) + 1 == 4 {
                    if let Some(done) = done.lock().unwrap().take() {
                        let _ = done.send(());
                    }
                }
                async move { result }
            },
            async move {
                let _ = finished.await;
            },
        )
        .await?;
    let stats = consumer.stats();
    println!("done: {} sent, {} killed", stats.succeeded, stats.killed);
    assert_eq!((stats.succeeded, stats.killed), (3, 1));
    Ok(())
}
