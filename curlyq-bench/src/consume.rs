//! The consumer process: the hidden `consume` subcommand, run by the benchmark as a
//! child process so that its drain time and memory are its own.
//!
//! It consumes with a no-op handler until `--expect` jobs succeeded, then shuts down
//! and prints one line on stdout:
//!
//! `RESULT succeeded=<n> drain_us=<µs> rss_kb=<kB> samples=<n> p50_us=<µs> p99_us=<µs> max_us=<µs>`
//!
//! `drain_us` runs from the first handler start to the moment the consumer's counters
//! show the `expect`-th success (checked every millisecond). The samples are, per job
//! with a stamped payload, handler start minus the stamp (the enqueue time or the due
//! time, see [`stamped_payload`]). A job whose payload is [`WARMUP`] makes the process
//! print `READY` (the consumer is running) and is not sampled. On an error the process
//! prints `ERROR <message>` and exits with 1.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use curlyq::backend::QueueBackend;
use curlyq::{Consumer, Job};

use crate::cli::{Backend, ConsumeOptions};
use crate::error::{BenchError, Context, Result};

/// The payload size of every benchmark job, bytes.
pub(crate) const PAYLOAD_BYTES: usize = 100;

/// The payload of the job that tells the benchmark its consumer is running.
pub(crate) const WARMUP: &[u8] = b"warmup";

/// How many leading payload bytes hold the stamp (decimal microseconds).
const STAMP_DIGITS: usize = 20;

/// Microseconds since the Unix epoch (0 for a clock before it).
pub(crate) fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// A 100-byte payload carrying `stamp_us` (Unix microseconds) as 20 decimal digits,
/// padded with dots.
pub(crate) fn stamped_payload(stamp_us: i64) -> Vec<u8> {
    let mut payload = format!("{:0width$}", stamp_us.max(0), width = STAMP_DIGITS).into_bytes();
    payload.resize(PAYLOAD_BYTES, b'.');
    payload
}

/// The stamp of a payload made by [`stamped_payload`]; `None` for any other bytes.
pub(crate) fn read_stamp(payload: &[u8]) -> Option<i64> {
    let digits = payload.get(..STAMP_DIGITS)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Connects to `url` with `backend`.
pub(crate) async fn connect(backend: Backend, url: &str) -> Result<Arc<dyn QueueBackend>> {
    let connected = match backend {
        Backend::RedisRs => curlyq::connect_redis_rs(url).await,
        Backend::Fred => curlyq::connect_fred(url).await,
    };
    connected.context(|| {
        format!(
            "cannot connect to {} with {backend}",
            crate::admin::redact(url)
        )
    })
}

/// What one consumer process measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ConsumeReport {
    /// Jobs that succeeded.
    pub(crate) succeeded: u64,
    /// First handler start to the `expect`-th success, µs.
    pub(crate) drain_us: u64,
    /// Peak resident memory (VmHWM), kB; 0 where /proc is not available.
    pub(crate) rss_kb: u64,
    /// Jobs sampled (stamped payloads).
    pub(crate) samples: u64,
    /// Median of handler start minus stamp, µs.
    pub(crate) p50_us: i64,
    /// 99th percentile, µs.
    pub(crate) p99_us: i64,
    /// Largest, µs.
    pub(crate) max_us: i64,
    /// CPU time (user + system, every thread) the process spent from the first handler
    /// start to the end of the drain, µs; 0 where /proc is not available.
    pub(crate) cpu_us: u64,
}

impl ConsumeReport {
    /// The sampled latencies, with the rate the producer kept up (if one was measured).
    pub(crate) fn latency(&self, producer_rate: Option<f64>) -> crate::report::Latency {
        crate::report::Latency {
            p50_us: self.p50_us,
            p99_us: self.p99_us,
            max_us: self.max_us,
            producer_rate,
        }
    }

    /// The `RESULT` line.
    pub(crate) fn to_line(self) -> String {
        format!(
            "RESULT succeeded={} drain_us={} rss_kb={} samples={} p50_us={} p99_us={} max_us={} cpu_us={}",
            self.succeeded,
            self.drain_us,
            self.rss_kb,
            self.samples,
            self.p50_us,
            self.p99_us,
            self.max_us,
            self.cpu_us
        )
    }

    /// Reads a `RESULT` line; an error names what is missing or malformed.
    pub(crate) fn parse(line: &str) -> Result<Self> {
        let rest = line
            .strip_prefix("RESULT ")
            .ok_or_else(|| BenchError::new(format!("not a RESULT line: {line:?}")))?;
        let mut report = ConsumeReport::default();
        let mut seen = 0;
        for pair in rest.split_whitespace() {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| BenchError::new(format!("malformed field {pair:?} in {line:?}")))?;
            let bad = |e: std::num::ParseIntError| format!("{key}={value:?} in {line:?}: {e}");
            match key {
                "succeeded" => {
                    report.succeeded = value.parse().map_err(|e| BenchError::new(bad(e)))?
                }
                "drain_us" => {
                    report.drain_us = value.parse().map_err(|e| BenchError::new(bad(e)))?
                }
                "rss_kb" => report.rss_kb = value.parse().map_err(|e| BenchError::new(bad(e)))?,
                "samples" => report.samples = value.parse().map_err(|e| BenchError::new(bad(e)))?,
                "p50_us" => report.p50_us = value.parse().map_err(|e| BenchError::new(bad(e)))?,
                "p99_us" => report.p99_us = value.parse().map_err(|e| BenchError::new(bad(e)))?,
                "max_us" => report.max_us = value.parse().map_err(|e| BenchError::new(bad(e)))?,
                "cpu_us" => report.cpu_us = value.parse().map_err(|e| BenchError::new(bad(e)))?,
                _ => continue,
            }
            seen += 1;
        }
        if seen < 8 {
            return Err(BenchError::new(format!("fields missing in {line:?}")));
        }
        Ok(report)
    }
}

/// The value at `quantile` (0..=1) of sorted `values`, nearest rank; 0 when empty.
pub(crate) fn percentile(sorted: &[i64], quantile: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The process's peak resident set size (VmHWM) in kB, if /proc tells it.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The CPU time (user + system, every thread) of this process so far, µs, if
/// /proc/self/stat tells it (fields 14 and 15, in clock ticks of 1/100 s: the
/// USER_HZ every Linux reports there).
fn process_cpu_us() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    cpu_us_of_stat(&stat)
}

/// Reads utime + stime from the text of a /proc/PID/stat file, µs.
fn cpu_us_of_stat(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces: count the
    // fields after its closing parenthesis, where field 3 (the state) is the first.
    let (_, after) = stat.rsplit_once(')')?;
    let mut fields = after.split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) * 10_000)
}

/// What the handler records, shared by all its calls.
#[derive(Default)]
struct Observed {
    first_start: OnceLock<Instant>,
    /// The process's CPU time at the first handler start, µs.
    first_cpu_us: OnceLock<Option<u64>>,
    ready: OnceLock<()>,
    samples: Mutex<Vec<i64>>,
}

/// Runs the consumer process (see the module docs).
pub(crate) async fn run(options: ConsumeOptions) -> Result<()> {
    match consume(&options).await {
        Ok(report) => {
            println!("{}", report.to_line());
            Ok(())
        }
        Err(e) => {
            println!("ERROR {e}");
            Err(e)
        }
    }
}

async fn consume(options: &ConsumeOptions) -> Result<ConsumeReport> {
    // Before the consumer is built: its metric handles come from the recorder installed
    // when it starts.
    let exporter = if options.metrics {
        let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .map_err(|e| BenchError::new(format!("installing the Prometheus recorder: {e}")))?;
        Some(handle)
    } else {
        None
    };
    let report = consume_jobs(options).await;
    if let Some(handle) = exporter {
        // Once, after the drain (outside its timing), as a scrape would.
        if !handle.render().contains(curlyq::telemetry::SYSTEM) {
            return Err(BenchError::new(
                "the Prometheus recorder saw no curlyq metric",
            ));
        }
    }
    report
}

async fn consume_jobs(options: &ConsumeOptions) -> Result<ConsumeReport> {
    let backend = connect(options.backend, &options.redis).await?;
    let consumer = Consumer::builder(options.queue.clone())
        .concurrency(options.concurrency)
        .poller_buffer_size(options.buffer)
        .build(backend)
        .context(|| "consumer options".to_owned())?;
    let observed = Arc::new(Observed::default());
    let seen = observed.clone();
    let handler = move |job: Job| {
        let now = now_micros();
        let started = Instant::now();
        seen.first_start.get_or_init(|| started);
        seen.first_cpu_us.get_or_init(process_cpu_us);
        if job.data == WARMUP {
            if seen.ready.set(()).is_ok() {
                println!("READY");
            }
        } else if let Some(stamp) = read_stamp(&job.data) {
            if let Ok(mut samples) = seen.samples.lock() {
                samples.push(now - stamp);
            }
        }
        std::future::ready(Ok::<(), Infallible>(()))
    };
    let deadline = Instant::now() + options.timeout;
    let mut finished = None;
    let watch = async {
        loop {
            tokio::time::sleep(Duration::from_millis(1)).await;
            if consumer.stats().succeeded >= options.expect {
                finished = Some(Instant::now());
                return;
            }
            if Instant::now() >= deadline {
                return;
            }
        }
    };
    consumer
        .run(handler, watch)
        .await
        .context(|| "the consumer stopped with an error".to_owned())?;
    let succeeded = consumer.stats().succeeded;
    let Some(end) = finished else {
        return Err(BenchError::new(format!(
            "timed out after {:?} with {succeeded} of {} jobs done",
            options.timeout, options.expect
        )));
    };
    let drain = observed.first_start.get().map_or(Duration::ZERO, |start| {
        end.saturating_duration_since(*start)
    });
    let mut samples = observed
        .samples
        .lock()
        .map(|s| s.clone())
        .unwrap_or_default();
    samples.sort_unstable();
    let cpu_us = match (
        observed.first_cpu_us.get().copied().flatten(),
        process_cpu_us(),
    ) {
        (Some(first), Some(now)) => now.saturating_sub(first),
        _ => 0,
    };
    Ok(ConsumeReport {
        cpu_us,
        succeeded,
        drain_us: u64::try_from(drain.as_micros()).unwrap_or(u64::MAX),
        rss_kb: peak_rss_kb().unwrap_or(0),
        samples: samples.len() as u64,
        p50_us: percentile(&samples, 0.50),
        p99_us: percentile(&samples, 0.99),
        max_us: samples.last().copied().unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_carry_their_stamp_in_100_bytes() {
        let p = stamped_payload(1_700_000_000_123_456);
        assert_eq!(p.len(), PAYLOAD_BYTES);
        assert_eq!(read_stamp(&p), Some(1_700_000_000_123_456));
        assert_eq!(read_stamp(WARMUP), None);
        assert_eq!(read_stamp(b"0000000000000000012x......"), None);
        assert_eq!(read_stamp(&[0xff; 100]), None);
    }

    #[test]
    fn result_lines_round_trip_and_bad_ones_are_errors() {
        let r = ConsumeReport {
            succeeded: 10,
            drain_us: 20,
            rss_kb: 30,
            samples: 40,
            p50_us: -5,
            p99_us: 60,
            max_us: 70,
            cpu_us: 80,
        };
        assert_eq!(ConsumeReport::parse(&r.to_line()), Ok(r));
        assert!(ConsumeReport::parse("RESULT succeeded=1").is_err());
        assert!(ConsumeReport::parse("RESULT succeeded=x drain_us=1").is_err());
        assert!(ConsumeReport::parse("READY").is_err());
    }

    #[test]
    fn cpu_time_is_read_after_the_command_name() {
        // pid (comm with a space and a parenthesis) state ppid … utime=250 stime=50 …
        let stat = "42 (my (odd) cmd) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9";
        assert_eq!(cpu_us_of_stat(stat), Some(3_000_000));
        assert_eq!(cpu_us_of_stat("42 (cmd) S 1"), None);
        assert!(
            process_cpu_us().is_some(),
            "this Linux process has a /proc/self/stat"
        );
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), 50);
        assert_eq!(percentile(&v, 0.99), 99);
        assert_eq!(percentile(&v, 1.0), 100);
        assert_eq!(percentile(&[7], 0.99), 7);
        assert_eq!(percentile(&[], 0.5), 0);
    }
}
