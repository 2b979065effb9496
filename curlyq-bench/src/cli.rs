//! Command-line options, and the plan of measurements they give.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{BenchError, Result};

/// The help text.
pub(crate) const USAGE: &str = "\
usage: curlyq-bench [options]

Measures curlyq on Redis for each backend and writes one Markdown table (with the
command, the machine and the date) to BENCHMARKS.md.

options:
  --redis URL        use the Redis at this redis:// URL instead of a redis-server of
                     our own on a free loopback port (its database is emptied between
                     measurements)
  --backend B        redis-rs, fred or both (default both)
  --jobs N           the backlog for end-to-end processing (default 100000; 1000 with
                     --quick); the other counts follow from it
  --runs R           repeat every measurement R times and report medians with the
                     lowest and highest run (default 5; 1 with --quick)
  --out PATH         where to write the report (default BENCHMARKS.md); `-` prints it
                     on stdout only
  --quick            small counts, one run: a smoke test of the tool, not a measurement
  --only PATTERN     measure only the lines whose label contains PATTERN (ignoring
                     case), e.g. --only 'concurrency 128' or --only enqueue; for A/B
                     work on a few lines
  --metrics          the consumer processes install a Prometheus recorder
                     (metrics-exporter-prometheus), so that every job is counted and
                     timed as in an application that exports curlyq's metrics: run
                     with and without it to measure what the metrics cost
  -h, --help         this text";

/// A curlyq backend under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Backend {
    /// `curlyq-redis-rs`.
    RedisRs,
    /// `curlyq-fred`.
    Fred,
}

impl Backend {
    /// The name used on the command line and in the report.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Backend::RedisRs => "redis-rs",
            Backend::Fred => "fred",
        }
    }

    /// Reads a backend name.
    pub(crate) fn parse(name: &str) -> Result<Self> {
        match name {
            "redis-rs" => Ok(Backend::RedisRs),
            "fred" => Ok(Backend::Fred),
            other => Err(BenchError::new(format!(
                "unknown backend {other:?} (expected redis-rs or fred)"
            ))),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the process was asked to do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Command {
    /// Print the help text.
    Help,
    /// Run the benchmark.
    Bench(Box<BenchOptions>),
    /// The hidden subcommand: be one consumer process of a measurement.
    Consume(ConsumeOptions),
}

/// Options of a benchmark run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BenchOptions {
    /// A Redis to use instead of one of our own.
    pub(crate) redis: Option<String>,
    /// The backends to measure, in order.
    pub(crate) backends: Vec<Backend>,
    /// How many times each measurement is repeated.
    pub(crate) runs: usize,
    /// Where the report goes; `None` prints it on stdout only.
    pub(crate) out: Option<PathBuf>,
    /// The counts and durations of every measurement.
    pub(crate) plan: Plan,
    /// The arguments as given, for the report.
    pub(crate) args: Vec<String>,
    /// `--metrics`: consumer processes record curlyq's metrics.
    pub(crate) metrics: bool,
}

/// The counts and durations of every measurement, all derived from `--jobs` and
/// `--quick`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    /// N: the backlog drained at each concurrency, and the jobs pushed by the
    /// 64-in-flight and `perform_many` enqueue measurements.
    pub(crate) jobs: usize,
    /// Jobs pushed one call at a time (N / 5: the slowest enqueue measurement).
    pub(crate) enqueue_one: usize,
    /// Calls in flight for the concurrent enqueue measurement.
    pub(crate) enqueue_in_flight: usize,
    /// Jobs per `perform_many` call.
    pub(crate) batch: usize,
    /// Consumer concurrencies at which N queued jobs are drained.
    pub(crate) concurrencies: Vec<usize>,
    /// The consumer concurrency of the backlog, steady-state and scheduled measurements.
    pub(crate) high_concurrency: usize,
    /// Backlogs drained at the high concurrency (N / 50, N / 5, 2 N).
    pub(crate) backlogs: Vec<usize>,
    /// Producer rates of the steady-state measurements, jobs/s.
    pub(crate) steady_rates: Vec<u32>,
    /// How long the producer runs at each rate.
    pub(crate) steady_duration: Duration,
    /// Jobs pushed with `perform_after` for the lateness measurement.
    pub(crate) scheduled_jobs: usize,
    /// The first job's delay; the others follow evenly over `scheduled_spread`.
    pub(crate) scheduled_first: Duration,
    /// The span of the delays.
    pub(crate) scheduled_spread: Duration,
    /// Requests per redis-benchmark measurement: (unpipelined 1 client, 50 clients,
    /// 50 clients pipelined).
    pub(crate) ceiling_requests: [usize; 3],
    /// `--only`: measure only the lines whose label contains this (lower case).
    pub(crate) only: Option<String>,
}

impl Plan {
    /// The plan for a backlog of `jobs`; `quick` shortens the timed phases.
    pub(crate) fn new(jobs: usize, quick: bool) -> Self {
        let jobs = jobs.max(10);
        let (steady, first, spread, scheduled) = if quick {
            (
                Duration::from_millis(500),
                Duration::from_millis(300),
                Duration::from_millis(700),
                200,
            )
        } else {
            (
                Duration::from_secs(5),
                Duration::from_secs(1),
                Duration::from_secs(2),
                2000,
            )
        };
        Plan {
            jobs,
            enqueue_one: (jobs / 5).max(10),
            enqueue_in_flight: 64,
            batch: 100,
            concurrencies: vec![1, 16, 50, 128],
            high_concurrency: 128,
            backlogs: vec![(jobs / 50).max(10), (jobs / 5).max(10), jobs * 2],
            steady_rates: vec![1000, 10_000],
            steady_duration: steady,
            scheduled_jobs: scheduled,
            scheduled_first: first,
            scheduled_spread: spread,
            ceiling_requests: [(jobs / 5).max(100), jobs.max(100), jobs.max(100)],
            only: None,
        }
    }

    /// Whether `row` is measured (every row without `--only`).
    pub(crate) fn wants(&self, row: crate::report::Row) -> bool {
        self.only.as_deref().is_none_or(|pattern| {
            crate::report::label(row, self)
                .to_lowercase()
                .contains(pattern)
        })
    }

    /// How many times a backlog of `backlog` jobs is drained in one run (its figure for
    /// the run is their median): short drains (a 2,000-job backlog lasts some tens of
    /// milliseconds) are repeated, up to 5 times, so that one hiccup of a shared machine
    /// does not decide the figure.
    pub(crate) fn repeats_for(jobs: usize, backlog: usize) -> usize {
        (jobs / backlog.max(1)).clamp(1, 5)
    }

    /// The poller buffer used with `concurrency` handlers: one take fills every free
    /// handler (at least Go's default of 10, at most the limit of 1,000).
    pub(crate) fn buffer_for(concurrency: usize) -> usize {
        concurrency.clamp(10, 1000)
    }
}

/// The tokio runtime a measurement runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Runtime {
    /// `tokio::runtime::Builder::new_multi_thread` with its default worker count (one per
    /// core): what `#[tokio::main]` gives.
    MultiThread,
    /// `tokio::runtime::Builder::new_current_thread`: every task on one thread.
    CurrentThread,
}

impl Runtime {
    /// The name used on the command line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Runtime::MultiThread => "multi-thread",
            Runtime::CurrentThread => "current-thread",
        }
    }

    /// Reads a runtime name.
    pub(crate) fn parse(name: &str) -> Result<Runtime> {
        match name {
            "multi-thread" => Ok(Runtime::MultiThread),
            "current-thread" => Ok(Runtime::CurrentThread),
            other => Err(BenchError::new(format!(
                "unknown runtime {other:?} (multi-thread or current-thread)"
            ))),
        }
    }

    /// Builds the runtime.
    pub(crate) fn build(self) -> std::io::Result<tokio::runtime::Runtime> {
        match self {
            Runtime::MultiThread => tokio::runtime::Builder::new_multi_thread(),
            Runtime::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        }
        .enable_all()
        .build()
    }
}

/// Options of the hidden `consume` subcommand (one consumer process).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsumeOptions {
    /// The Redis URL.
    pub(crate) redis: String,
    /// The backend to consume with.
    pub(crate) backend: Backend,
    /// The queue.
    pub(crate) queue: String,
    /// Handlers at once.
    pub(crate) concurrency: usize,
    /// The poller buffer.
    pub(crate) buffer: usize,
    /// Successes after which the consumer stops and reports.
    pub(crate) expect: u64,
    /// The process gives up (and reports what it has) after this long.
    pub(crate) timeout: Duration,
    /// The runtime the consumer runs on.
    pub(crate) runtime: Runtime,
    /// Install a Prometheus recorder before the consumer starts.
    pub(crate) metrics: bool,
}

impl ConsumeOptions {
    /// The arguments (after the program name) that [`parse`] reads back.
    pub(crate) fn to_args(&self) -> Vec<String> {
        vec![
            "consume".into(),
            "--redis".into(),
            self.redis.clone(),
            "--backend".into(),
            self.backend.name().into(),
            "--queue".into(),
            self.queue.clone(),
            "--concurrency".into(),
            self.concurrency.to_string(),
            "--buffer".into(),
            self.buffer.to_string(),
            "--expect".into(),
            self.expect.to_string(),
            "--timeout-ms".into(),
            self.timeout.as_millis().to_string(),
            "--runtime".into(),
            self.runtime.name().into(),
            "--metrics".into(),
            if self.metrics { "on" } else { "off" }.into(),
        ]
    }
}

/// Reads the command line (without the program name).
pub(crate) fn parse(args: &[String]) -> Result<Command> {
    if args.first().map(String::as_str) == Some("consume") {
        return parse_consume(&args[1..]).map(Command::Consume);
    }
    let mut redis = None;
    let mut backends = vec![Backend::RedisRs, Backend::Fred];
    let mut jobs = None;
    let mut runs = None;
    let mut out = Some(PathBuf::from("BENCHMARKS.md"));
    let mut quick = false;
    let mut only = None;
    let mut metrics = false;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| BenchError::new(format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--quick" => quick = true,
            "--metrics" => metrics = true,
            "--redis" => redis = Some(value()?.clone()),
            "--backend" => {
                backends = match value()?.as_str() {
                    "both" => vec![Backend::RedisRs, Backend::Fred],
                    one => vec![Backend::parse(one)?],
                }
            }
            "--jobs" => jobs = Some(number(flag, value()?)?),
            "--runs" => runs = Some(number(flag, value()?)?),
            "--only" => only = Some(value()?.to_lowercase()),
            "--out" => {
                out = match value()?.as_str() {
                    "-" => None,
                    path => Some(PathBuf::from(path)),
                }
            }
            other => return Err(BenchError::new(format!("unknown option {other:?}"))),
        }
    }
    let jobs = jobs.unwrap_or(if quick { 1000 } else { 100_000 });
    let runs = runs.unwrap_or(if quick { 1 } else { 5 });
    if runs == 0 {
        return Err(BenchError::new("--runs must be at least 1"));
    }
    let mut plan = Plan::new(jobs, quick);
    plan.only = only;
    if crate::report::rows(&plan).is_empty() {
        return Err(BenchError::new(format!(
            "--only {:?} matches no line of the report (see the first column of BENCHMARKS.md)",
            plan.only.as_deref().unwrap_or_default()
        )));
    }
    Ok(Command::Bench(Box::new(BenchOptions {
        redis,
        backends,
        runs,
        out,
        plan,
        args: args.to_vec(),
        metrics,
    })))
}

fn parse_consume(args: &[String]) -> Result<ConsumeOptions> {
    let mut options = ConsumeOptions {
        redis: String::new(),
        backend: Backend::RedisRs,
        queue: String::new(),
        concurrency: 1,
        buffer: 10,
        expect: 0,
        timeout: Duration::from_secs(60),
        runtime: Runtime::MultiThread,
        metrics: false,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| BenchError::new(format!("{flag} needs a value")))?;
        match flag.as_str() {
            "--redis" => options.redis = value.clone(),
            "--backend" => options.backend = Backend::parse(value)?,
            "--queue" => options.queue = value.clone(),
            "--concurrency" => options.concurrency = number(flag, value)?,
            "--buffer" => options.buffer = number(flag, value)?,
            "--expect" => options.expect = number(flag, value)? as u64,
            "--timeout-ms" => options.timeout = Duration::from_millis(number(flag, value)? as u64),
            "--runtime" => options.runtime = Runtime::parse(value)?,
            "--metrics" => {
                options.metrics = match value.as_str() {
                    "on" => true,
                    "off" => false,
                    other => {
                        return Err(BenchError::new(format!(
                            "--metrics {other:?} (expected on or off)"
                        )))
                    }
                }
            }
            other => return Err(BenchError::new(format!("unknown option {other:?}"))),
        }
    }
    if options.redis.is_empty() || options.queue.is_empty() {
        return Err(BenchError::new("consume needs --redis and --queue"));
    }
    Ok(options)
}

fn number(flag: &str, value: &str) -> Result<usize> {
    value
        .replace('_', "")
        .parse()
        .map_err(|e| BenchError::new(format!("{flag} {value:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Row;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn defaults_are_the_issue_s() {
        let Ok(Command::Bench(o)) = parse(&[]) else {
            panic!("no options must give a benchmark run");
        };
        assert_eq!(o.runs, 5);
        assert_eq!(o.plan.jobs, 100_000);
        assert_eq!(o.plan.backlogs, vec![2000, 20_000, 200_000]);
        let repeats: Vec<usize> = o
            .plan
            .backlogs
            .iter()
            .map(|&b| Plan::repeats_for(o.plan.jobs, b))
            .collect();
        assert_eq!(repeats, vec![5, 5, 1]);
        assert_eq!(o.backends, vec![Backend::RedisRs, Backend::Fred]);
        assert_eq!(o.out, Some(PathBuf::from("BENCHMARKS.md")));
    }

    #[test]
    fn only_keeps_the_lines_whose_label_matches() {
        let Ok(Command::Bench(o)) = parse(&args(&["--only", "Concurrency 128"])) else {
            panic!("a pattern that matches lines refused");
        };
        let rows = crate::report::rows(&o.plan);
        let labels: Vec<String> = rows
            .iter()
            .map(|&r| crate::report::label(r, &o.plan))
            .collect();
        assert!(!rows.is_empty());
        assert!(
            labels.iter().all(|l| l.contains("concurrency 128")),
            "{labels:?}"
        );
        assert!(rows.contains(&Row::Drain(128)), "{labels:?}");
        assert!(!rows.contains(&Row::Drain(16)));
        assert!(!rows.contains(&Row::EnqueueOne));
        assert!(o.plan.wants(Row::Backlog(2000)));
        assert!(!o.plan.wants(Row::Steady(1000)));
        let Ok(Command::Bench(all)) = parse(&[]) else {
            panic!("no options must give a benchmark run");
        };
        assert!(crate::report::rows(&all.plan).len() > rows.len());
        let refused = parse(&args(&["--only", "nothing like this"]));
        assert!(
            matches!(&refused, Err(e) if e.to_string().contains("matches no line")),
            "{refused:?}"
        );
    }

    #[test]
    fn options_are_read() {
        let given = args(&[
            "--quick",
            "--backend",
            "fred",
            "--out",
            "-",
            "--jobs",
            "500",
            "--redis",
            "redis://x",
        ]);
        let Ok(Command::Bench(o)) = parse(&given) else {
            panic!("valid options refused");
        };
        assert_eq!((o.runs, o.plan.jobs, o.out), (1, 500, None));
        assert_eq!(o.backends, vec![Backend::Fred]);
        assert_eq!(o.redis.as_deref(), Some("redis://x"));
        assert!(!o.metrics);
        let Ok(Command::Bench(with)) = parse(&args(&["--quick", "--metrics"])) else {
            panic!("--metrics refused");
        };
        assert!(with.metrics);
        assert!(parse(&args(&["--runs", "0"])).is_err());
        assert!(parse(&args(&["--jobs"])).is_err());
        assert!(parse(&args(&["--backend", "go"])).is_err());
        assert!(parse(&args(&["--frobnicate"])).is_err());
    }

    #[test]
    fn consume_options_round_trip() {
        let options = ConsumeOptions {
            redis: "redis://127.0.0.1:1/".into(),
            backend: Backend::Fred,
            queue: "q".into(),
            concurrency: 128,
            buffer: 128,
            expect: 1234,
            timeout: Duration::from_millis(5678),
            runtime: Runtime::CurrentThread,
            metrics: true,
        };
        assert_eq!(parse(&options.to_args()), Ok(Command::Consume(options)));
        assert!(parse(&args(&["consume", "--queue", "q"])).is_err());
        let fibres = [
            "consume",
            "--redis",
            "redis://x",
            "--queue",
            "q",
            "--runtime",
            "fibres",
        ];
        assert!(parse(&args(&fibres)).is_err());
    }
}
