//! What the async-compat bridge costs fred under smol and async-std: times `N`
//! one-job pushes (one script call, one round trip each), one after the other, then `N`
//! more from 16 tasks at once, for each backend × runtime, against a throwaway
//! redis-server on a free loopback port.
//!
//! ```sh
//! cargo run --release -p curlyq --example bridge_cost --features fred,async-std,smol
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use curlyq::backend::{EncodedJob, QueueBackend, QueueName};
use curlyq_testkit::RedisServer;

const N: usize = 20_000;
const TASKS: usize = 16;

#[derive(Clone, Copy, Debug)]
enum Exec {
    Tokio,
    Smol,
    AsyncStd,
}

fn block_on<T>(exec: Exec, f: impl Future<Output = T>) -> T {
    match exec {
        Exec::Tokio => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(f),
        Exec::Smol => smol::block_on(f),
        Exec::AsyncStd => async_std::task::block_on(f),
    }
}

/// Sequential pushes, then `TASKS` concurrent streams of pushes; both durations.
async fn measure(backend: Arc<dyn QueueBackend>, exec: Exec, name: &str) -> (Duration, Duration) {
    let queue = QueueName::new(name).expect("queue name");
    let job = |i: usize| EncodedJob {
        id: format!("{name}-{i}"),
        data: b"payload".to_vec(),
    };
    for i in 0..100 {
        backend
            .push(&queue, &[job(N * 4 + i)])
            .await
            .expect("warm-up");
    }
    let started = Instant::now();
    for i in 0..N {
        backend.push(&queue, &[job(i)]).await.expect("push");
    }
    let sequential = started.elapsed();
    let started = Instant::now();
    let (done_tx, done) = async_channel::unbounded::<()>();
    for t in 0..TASKS {
        let (backend, queue, done_tx) = (backend.clone(), queue.clone(), done_tx.clone());
        let task = async move {
            for i in (N + t..2 * N).step_by(TASKS) {
                let job = EncodedJob {
                    id: format!("c-{i}"),
                    data: b"payload".to_vec(),
                };
                backend.push(&queue, &[job]).await.expect("push");
            }
            let _ = done_tx.send(()).await;
        };
        match exec {
            Exec::Tokio => drop(tokio::spawn(task)),
            Exec::Smol => smol::spawn(task).detach(),
            Exec::AsyncStd => drop(async_std::task::spawn(task)),
        }
    }
    for _ in 0..TASKS {
        done.recv().await.expect("task done");
    }
    (sequential, started.elapsed())
}

fn main() {
    let server = RedisServer::start().expect("redis-server starts");
    let url = server.url();
    println!("{N} one-job pushes, sequential and from {TASKS} tasks; microseconds per push");
    println!(
        "{:<10} {:<10} {:>12} {:>12}",
        "backend", "runtime", "sequential", "concurrent"
    );
    for exec in [Exec::Tokio, Exec::Smol, Exec::AsyncStd] {
        for backend_name in ["redis-rs", "fred"] {
            let name = format!("{backend_name}-{exec:?}");
            let (seq, conc) = block_on(exec, async {
                let backend = match backend_name {
                    "fred" => curlyq::connect_fred(&url).await,
                    _ => curlyq::connect_redis_rs(&url).await,
                }
                .expect("connects");
                measure(backend, exec, &name).await
            });
            let per = |d: Duration| d.as_secs_f64() * 1e6 / N as f64;
            println!(
                "{:<10} {:<10} {:>12.1} {:>12.1}",
                backend_name,
                format!("{exec:?}"),
                per(seq),
                per(conc)
            );
        }
    }
}
