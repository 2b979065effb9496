//! `curlyq-admin-scale`: the admin operations on a large queue, on a redis-server of its
//! own (a free loopback port).
//!
//! Fills one queue with `--jobs` active jobs (100-byte payloads), `--dead` dead ones and a
//! few scheduled and in-flight ones, then times 100 calls each of `stats`, a page of every
//! state (at the head and deep in it) and `find_job` (random IDs of every state), and
//! prints p50 / p99 / max. Then it retries every dead job in chunks of 1,000 while a
//! consumer drains the queue, with Redis's slow log set to 10 ms, and prints the longest
//! call, what the slow log caught and what the consumer processed meanwhile. Last, the
//! consistency check over the whole queue. Prints Markdown on stdout.
//!
//! `cargo run --release -p curlyq-bench --bin curlyq-admin-scale -- --jobs 1000000 --dead 100000`

use std::convert::Infallible;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use curlyq::admin::{self, JobState, PageRequest, Selection};
use curlyq::backend::{QueueBackend, QueueName};
use curlyq::{Consumer, Job};
use curlyq_testkit::RedisServer;

#[path = "../scale.rs"]
mod scale;
use scale::{id, now, summary, Error, Picks};

async fn timed<T, F, Fut>(calls: usize, mut f: F) -> Result<Vec<Duration>, Error>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<T, curlyq::BackendError>>,
{
    let mut out = Vec::with_capacity(calls);
    for i in 0..calls {
        let start = Instant::now();
        f(i).await?;
        out.push(start.elapsed());
    }
    Ok(out)
}

async fn run() -> Result<(), Error> {
    let o = scale::Options::parse("curlyq-admin-scale", 100)?;
    let server = RedisServer::start()?;
    let backend: Arc<dyn QueueBackend> = curlyq::connect_redis_rs(&server.url()).await?;
    let b = backend.as_ref();
    let q = QueueName::new("{scale}")?;

    let fill = Instant::now();
    let held_ids = scale::fill(b, &q, o.jobs, o.dead).await?;
    let fill = fill.elapsed();
    let stats = b.stats(&q, now(), 60).await?;
    println!(
        "## Admin operations at scale\n\n`cargo run --release -p curlyq-bench --bin \
         curlyq-admin-scale -- --jobs {} --dead {}` on a redis-server of its own (loopback).\n",
        o.jobs, o.dead
    );
    println!(
        "Queue: {} active, {} scheduled, {} dead, {} in flight (filled in {:.1} s).\n",
        stats.active,
        stats.scheduled,
        stats.dead,
        stats.inflight,
        fill.as_secs_f64()
    );

    println!(
        "| operation ({} calls each) | p50 ms | p99 ms | max ms |",
        o.calls
    );
    println!("|---|---|---|---|");
    let s = timed(o.calls, |_| b.stats(&q, now(), 60)).await?;
    println!("| stats, last hour of counters | {} |", summary(s));
    let s = timed(o.calls, |_| b.stats(&q, now(), admin::COUNTER_MINUTES)).await?;
    println!("| stats, 24 hours of counters | {} |", summary(s));
    let pages = [
        (JobState::Active, 0, "active, first page"),
        (
            JobState::Active,
            o.jobs as u64 / 2,
            "active, page in the middle",
        ),
        (JobState::Scheduled, 5_000, "scheduled, page in the middle"),
        (JobState::Dead, 0, "dead, first page"),
        (
            JobState::Dead,
            o.dead as u64 / 2,
            "dead, page in the middle",
        ),
        (JobState::InFlight, 0, "in flight"),
    ];
    for (state, cursor, label) in pages {
        let page = PageRequest {
            state,
            cursor,
            limit: 50,
            preview: 64,
        };
        let s = timed(o.calls, |_| b.jobs(&q, page)).await?;
        println!("| page of 50: {label} | {} |", summary(s));
    }
    let mut picks = Picks::new();
    let lookups: Vec<String> = (0..o.calls)
        .map(|i| match i % 4 {
            0 => id("job", 100 + picks.below(o.jobs.saturating_sub(100))),
            1 => id("dead", picks.below(o.dead)),
            2 => id("later", picks.below(10_000)),
            _ => held_ids
                .get(picks.below(held_ids.len()))
                .cloned()
                .unwrap_or_default(),
        })
        .collect();
    let s = timed(o.calls, |i| b.find_job(&q, &lookups[i])).await?;
    println!(
        "| find_job: random IDs, a quarter each active (anywhere in the list), dead, \
         scheduled, in flight | {} |",
        summary(s)
    );

    // Retry every dead job in chunks while a consumer drains the queue.
    server.command(&["CONFIG", "SET", "slowlog-log-slower-than", "10000"])?;
    server.command(&["SLOWLOG", "RESET"])?;
    // keep_dead_jobs: its custodian would otherwise trim the dead set to 10,000 at once.
    let consumer = Consumer::builder(q.as_str())
        .concurrency(50)
        .keep_dead_jobs()
        .build(Arc::clone(&backend))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = {
        let consumer = consumer.clone();
        tokio::spawn(async move {
            consumer
                .run(
                    |_job: Job| std::future::ready(Ok::<(), Infallible>(())),
                    async {
                        let _ = stop_rx.await;
                    },
                )
                .await
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = consumer.stats().succeeded;
    let start = Instant::now();
    let mut calls = Vec::new();
    let mut retried = 0;
    loop {
        let t = Instant::now();
        let report = b.retry_dead(&q, &Selection::Oldest(1000)).await?;
        calls.push(t.elapsed());
        if report.done.is_empty() {
            break;
        }
        retried += report.done.len();
    }
    let window = start.elapsed();
    let during = consumer.stats().succeeded - before;
    let slow = server.command(&["SLOWLOG", "LEN"])?;
    let _ = stop_tx.send(());
    running.await??;
    let max_call = calls.iter().max().copied().unwrap_or_default();
    println!(
        "\nRetry of {retried} dead jobs, {} calls of `retry_dead(Oldest(1000))`: {:.2} s in \
         all, the longest call {:.2} ms (client side, round trip included); calls of more \
         than 10 ms in Redis's slow log: {}; meanwhile a consumer (concurrency 50, no-op \
         handler) on the same queue processed {during} jobs ({:.0} jobs/s).",
        calls.len(),
        window.as_secs_f64(),
        max_call.as_secs_f64() * 1000.0,
        slow.trim().trim_start_matches(':'),
        during as f64 / window.as_secs_f64().max(1e-9),
    );

    let start = Instant::now();
    let report = admin::check(b, &q).await?;
    println!(
        "\nConsistency check of the whole queue ({} jobs): {:.2} s, {} problems.",
        report.jobs,
        start.elapsed().as_secs_f64(),
        report.problems.len()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("curlyq-admin-scale: {e}");
            ExitCode::FAILURE
        }
    }
}
