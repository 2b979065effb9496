//! Several job kinds through one queue and one handler: an enum tagged with its kind
//! (`{"type":"Welcome",...}`), matched in the handler. A payload of an unknown kind goes
//! to the dead set at once with serde's message. Runs on the in-memory backend, or on
//! Redis when `REDIS_URL` is set.
//!
//! `cargo run --example routing`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use curlyq::{BoxError, Consumer, Job, JobContext, Producer};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type")]
enum Task {
    Welcome { user_id: u64 },
    Invoice { invoice_id: String, cents: u64 },
    Report { month: String },
}

async fn handle(task: Task, ctx: JobContext) -> Result<(), BoxError> {
    match task {
        Task::Welcome { user_id } => println!("welcome mail for user {user_id}"),
        Task::Invoice { invoice_id, cents } => println!("invoice {invoice_id}: {cents} cents"),
        Task::Report { month } => {
            // Reports may take longer than the consumer's default bound.
            ctx.set_timeout(Some(Duration::from_secs(600)));
            println!("report for {month} (timeout {:?})", ctx.timeout());
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "memory://routing".into());
    let backend = curlyq::connect(&url).await?;
    let queue = format!("routing-{}", std::process::id());

    let producer = Producer::new(backend.clone(), queue.as_str())?;
    producer.perform_json(&Task::Welcome { user_id: 7 }).await?;
    producer
        .perform_json(&Task::Invoice {
            invoice_id: "INV-1".into(),
            cents: 1999,
        })
        .await?;
    producer
        .perform_json(&Task::Report {
            month: "2026-11".into(),
        })
        .await?;
    // What an older or newer producer might send: no such kind here.
    producer
        .perform(Job::new(r#"{"type":"Refund","id":1}"#))
        .await?;

    let consumer = Consumer::builder(queue.as_str())
        .job_timeout(Duration::from_secs(30))
        .build(backend.clone())?;
    let ended = Arc::new(AtomicUsize::new(0));
    let watcher = consumer.clone();
    consumer
        .run_typed(
            {
                let ended = ended.clone();
                move |task: Task, ctx: JobContext| {
                    let ended = ended.clone();
                    async move {
                        let result = handle(task, ctx).await;
                        ended.fetch_add(1, Ordering::SeqCst);
                        result
                    }
                }
            },
            async move {
                // Stop once all four jobs are settled (three ran, one was killed).
                while watcher.stats().succeeded + watcher.stats().killed < 4 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        )
        .await?;
    let stats = consumer.stats();
    println!(
        "done: {} handled, {} killed (unknown kind)",
        stats.succeeded, stats.killed
    );
    assert_eq!((stats.succeeded, stats.killed), (3, 1));
    assert_eq!(
        ended.load(Ordering::SeqCst),
        3,
        "the unknown kind never reached the handler"
    );
    Ok(())
}
