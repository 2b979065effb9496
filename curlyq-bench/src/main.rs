//! `curlyq-bench`: measures curlyq against a real Redis and writes `BENCHMARKS.md`.
//!
//! For each backend (redis-rs and fred) it measures enqueue throughput (one job per call
//! with 1 and 64 calls in flight, and `perform_many` in batches of 100), end-to-end
//! processing of a queued backlog by a consumer in a separate process (concurrency 1,
//! 16, 50 and 128, and backlogs of N/50, N/5 and 2N jobs at concurrency 128), the
//! latency from enqueue to handler start under a steady producer (1,000 and 10,000
//! jobs/s), the lateness of `perform_after` jobs, the Redis memory per queued job and
//! the consumer's peak RSS; and, to compare runtimes, `perform` one call at a time and
//! the concurrency-1 drain on a current-thread tokio runtime. In the same run, `redis-benchmark` gives the ceiling: an
//! `EVALSHA` of curlyq's push script, unpipelined and pipelined.
//!
//! It starts its own `redis-server` on a free loopback port unless given `--redis URL`,
//! and stops everything it started when it ends, also on an error or ctrl-c. Run
//! `curlyq-bench --help` for the options.

mod admin;
mod ceiling;
mod cli;
mod conditions;
mod consume;
mod error;
mod process;
mod report;
mod scenarios;

use std::process::ExitCode;

use crate::cli::Command;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match cli::parse(&args) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("curlyq-bench: {e}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    if let Command::Help = command {
        println!("{}", cli::USAGE);
        return ExitCode::SUCCESS;
    }
    let flavour = match &command {
        Command::Consume(options) => options.runtime,
        _ => cli::Runtime::MultiThread,
    };
    let runtime = match flavour.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("curlyq-bench: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Help => Ok(()),
            Command::Consume(options) => consume::run(options).await,
            Command::Bench(options) => {
                // Dropping the benchmark future on a signal drops its guards, which stop
                // the consumer processes and the redis-server it started.
                tokio::select! {
                    result = scenarios::run(*options) => result,
                    signal = interrupted() => Err(error::BenchError::new(format!("stopped by {signal}"))),
                }
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("curlyq-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Completes when the process receives SIGINT or SIGTERM; never when no handler can be
/// installed.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        },
        _ => std::future::pending().await,
    }
}
