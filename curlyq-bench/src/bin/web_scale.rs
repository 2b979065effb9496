//! `curlyq-web-scale`: how fast the dashboard answers over a large queue, on a redis-server
//! of its own (a free loopback port).
//!
//! Fills one queue with `--jobs` active jobs (100-byte payloads), `--dead` dead ones, 10,000
//! scheduled ones, 100 in flight and one job of 16 MiB, serves the dashboard
//! (`curlyq_web::Dashboard`) on a loopback port, then asks every page `--calls` times over
//! real HTTP (a new connection per request, as a browser without keep-alive would) and
//! prints p50 / p99 / max per page, in Markdown on stdout.
//!
//! `cargo run --release -p curlyq-bench --bin curlyq-web-scale -- --jobs 1000000 --dead 100000`

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use curlyq::backend::{QueueBackend, QueueName};
use curlyq::Job;
use curlyq_testkit::RedisServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "../scale.rs"]
mod scale;
use scale::{id, now, summary, Error, Picks};

/// One GET over a new loopback connection: the status and the body's size.
async fn get(addr: std::net::SocketAddr, path: &str) -> Result<(u16, usize), Error> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the response has no end of headers")?;
    let status = std::str::from_utf8(&response[..head_end])?
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("the response has no status")?;
    Ok((status, response.len() - head_end - 4))
}

/// `calls` GETs of each path in turn; every answer must be 200.
async fn timed(
    addr: std::net::SocketAddr,
    paths: &[String],
    calls: usize,
) -> Result<(Vec<Duration>, usize), Error> {
    let mut samples = Vec::with_capacity(calls);
    let mut largest = 0;
    for i in 0..calls {
        let path = &paths[i % paths.len()];
        let start = Instant::now();
        let (status, size) = get(addr, path).await?;
        samples.push(start.elapsed());
        if status != 200 {
            return Err(format!("GET {path}: status {status}").into());
        }
        largest = largest.max(size);
    }
    Ok((samples, largest))
}

/// The path segment of a queue name or job ID.
fn segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn run() -> Result<(), Error> {
    let o = scale::Options::parse("curlyq-web-scale", 50)?;
    let server = RedisServer::start()?;
    let backend: Arc<dyn QueueBackend> = curlyq::connect_redis_rs(&server.url()).await?;
    let b = backend.as_ref();
    let q = QueueName::new("{scale}")?;

    let fill = Instant::now();
    let held_ids = scale::fill(b, &q, o.jobs, o.dead).await?;
    let big = Job::new(vec![b'x'; 16 << 20]).with_id("big").encode();
    b.schedule(
        &q,
        &[curlyq::backend::ScheduledJob {
            job: curlyq::backend::EncodedJob {
                id: "big".into(),
                data: big,
            },
            at: 4e9,
        }],
    )
    .await?;
    let fill = fill.elapsed();
    let stats = b.stats(&q, now(), 60).await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let router = curlyq_web::Dashboard::new(Arc::clone(&backend)).router();
    tokio::spawn(curlyq_web::serve(listener, router, std::future::pending()));

    println!(
        "## Dashboard pages at scale\n\n`cargo run --release -p curlyq-bench --bin \
         curlyq-web-scale -- --jobs {} --dead {}` on a redis-server of its own (loopback); \
         each request on a new HTTP connection, time to the last byte.\n",
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
        "| page ({} requests each) | p50 ms | p99 ms | max ms | largest body |",
        o.calls
    );
    println!("|---|---|---|---|---|");
    let qs = format!("/queues/{}", segment(q.as_str()));
    let mut picks = Picks::new();
    let job = |s: &str| format!("{qs}/jobs/{}", segment(s));
    let pages: Vec<(&str, Vec<String>)> = vec![
        ("overview", vec!["/".into()]),
        (
            "queue, active, first page",
            vec![format!("{qs}?state=active")],
        ),
        (
            "queue, active, page in the middle",
            vec![format!("{qs}?state=active&cursor={}", o.jobs / 2)],
        ),
        (
            "queue, scheduled, page in the middle",
            vec![format!("{qs}?state=scheduled&cursor=5000")],
        ),
        ("queue, dead, first page", vec![format!("{qs}?state=dead")]),
        (
            "queue, dead, page in the middle",
            vec![format!("{qs}?state=dead&cursor={}", o.dead / 2)],
        ),
        ("queue, in flight", vec![format!("{qs}?state=inflight")]),
        ("consumers", vec![format!("{qs}/consumers")]),
        (
            "job: random IDs, a quarter each active (anywhere), dead, scheduled, in flight",
            (0..o.calls)
                .map(|i| match i % 4 {
                    0 => job(&id("job", 100 + picks.below(o.jobs.saturating_sub(100)))),
                    1 => job(&id("dead", picks.below(o.dead))),
                    2 => job(&id("later", picks.below(10_000))),
                    _ => job(held_ids.get(picks.below(held_ids.len())).map_or("", |s| s)),
                })
                .collect(),
        ),
        ("job of 16 MiB", vec![job("big")]),
    ];
    // What the 16 MiB page costs below HTTP: the store's answer alone.
    let mut store = Vec::with_capacity(o.calls);
    for _ in 0..o.calls {
        let start = Instant::now();
        b.find_job(&q, "big").await?;
        store.push(start.elapsed());
    }
    for (label, paths) in pages {
        let (samples, largest) = timed(addr, &paths, o.calls).await?;
        println!(
            "| {label} | {} | {:.0} KiB |",
            summary(samples),
            largest as f64 / 1024.0
        );
    }
    println!(
        "| (below it: `find_job` of the 16 MiB job, the backend call alone) | {} | 16 MiB |",
        summary(store)
    );
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("curlyq-web-scale: {e}");
            ExitCode::FAILURE
        }
    }
}
