//! The figures collected over all runs, and the Markdown report made of them.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::cli::{Backend, Plan};
use crate::conditions::{self, Conditions};

/// One line of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Row {
    /// redis-benchmark with this many connections and this pipeline depth.
    Ceiling {
        /// `-c`.
        clients: usize,
        /// `-P`.
        pipeline: usize,
    },
    /// `perform`, one call in flight.
    EnqueueOne,
    /// `perform`, one call in flight, on a current-thread runtime.
    EnqueueOneOnCurrentThread,
    /// `perform` with this many calls in flight.
    EnqueueInFlight(usize),
    /// `perform_many` in batches of this size, one call in flight.
    PerformMany(usize),
    /// N queued jobs drained at this concurrency.
    Drain(usize),
    /// N queued jobs drained at this concurrency by a consumer on a current-thread
    /// runtime.
    DrainOnCurrentThread(usize),
    /// A backlog of this many jobs drained at the high concurrency.
    Backlog(usize),
    /// Slowest ÷ fastest of the backlog rows (derived, no samples of its own).
    Flatness,
    /// A producer at this rate (jobs/s); latency from enqueue to handler start.
    Steady(u32),
    /// Lateness of `perform_after` jobs.
    Scheduled,
    /// Redis memory per queued job.
    MemoryPerJob,
    /// The consumer process's peak RSS at this concurrency.
    PeakRss(usize),
}

/// The unpipelined single-connection ceiling.
pub(crate) const CEILING_ONE: Row = Row::Ceiling {
    clients: 1,
    pipeline: 1,
};
/// The unpipelined 50-connection ceiling.
pub(crate) const CEILING_MANY: Row = Row::Ceiling {
    clients: 50,
    pipeline: 1,
};
/// The pipelined ceiling.
pub(crate) const CEILING_PIPELINED: Row = Row::Ceiling {
    clients: 50,
    pipeline: 16,
};

/// Percentiles of one latency measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Latency {
    /// Median, µs.
    pub(crate) p50_us: i64,
    /// 99th percentile, µs.
    pub(crate) p99_us: i64,
    /// Largest, µs.
    pub(crate) max_us: i64,
    /// The rate the producer reached, jobs/s (steady state only).
    pub(crate) producer_rate: Option<f64>,
}

/// One measured figure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value {
    /// Jobs (or calls) per second.
    Rate(f64),
    /// A latency distribution.
    Latency(Latency),
    /// Bytes.
    Bytes(f64),
}

/// One figure of one run, with the conditions it was measured in (none for derived or
/// by-product figures).
#[derive(Debug, Clone, Copy)]
struct Figure {
    backend: Option<Backend>,
    row: Row,
    value: Value,
    conditions: Option<Conditions>,
}

impl Figure {
    fn of(&self, backend: Backend, row: Row) -> bool {
        self.row == row && (self.backend.is_none() || self.backend == Some(backend))
    }
}

/// Every figure measured, in the order measured.
#[derive(Debug, Default)]
pub(crate) struct Results {
    figures: Vec<Figure>,
    /// Why the ceiling was not measured, if it was not.
    pub(crate) ceiling_missing: Option<String>,
}

impl Results {
    /// Records a figure of `backend` (`None`: shared, the ceiling).
    pub(crate) fn record(&mut self, backend: Option<Backend>, row: Row, value: Value) {
        self.figures.push(Figure {
            backend,
            row,
            value,
            conditions: None,
        });
    }

    /// Records a figure with the conditions it was measured in.
    pub(crate) fn record_measured(
        &mut self,
        backend: Option<Backend>,
        row: Row,
        value: Value,
        conditions: Conditions,
    ) {
        self.figures.push(Figure {
            backend,
            row,
            value,
            conditions: Some(conditions),
        });
    }

    /// The figures of one row for one backend (the ceiling's for any backend), by run.
    fn of(&self, backend: Backend, row: Row) -> Vec<Value> {
        self.figures
            .iter()
            .filter(|f| f.of(backend, row))
            .map(|f| f.value)
            .collect()
    }

    /// The conditions of one row's runs for one backend, by run.
    fn conditions(&self, backend: Backend, row: Row) -> Vec<Conditions> {
        self.figures
            .iter()
            .filter(|f| f.of(backend, row))
            .filter_map(|f| f.conditions)
            .collect()
    }

    /// Whether any run of the row was measured in noisy conditions.
    fn noisy(&self, backend: Backend, row: Row, cores: usize) -> bool {
        self.conditions(backend, row).iter().any(|c| c.noisy(cores))
    }

    /// The median over the row's runs of a CPU figure of its conditions, µs per job.
    fn cpu_per_job(
        &self,
        backend: Backend,
        row: Row,
        of: fn(&Conditions) -> Option<f64>,
    ) -> Option<f64> {
        let us: Vec<f64> = self
            .conditions(backend, row)
            .iter()
            .filter_map(of)
            .collect();
        median(&us)
    }

    fn rates(&self, backend: Backend, row: Row) -> Vec<f64> {
        self.of(backend, row)
            .into_iter()
            .filter_map(|v| match v {
                Value::Rate(r) | Value::Bytes(r) => Some(r),
                Value::Latency(_) => None,
            })
            .collect()
    }

    fn median_rate(&self, backend: Backend, row: Row) -> Option<f64> {
        median(&self.rates(backend, row))
    }
}

/// The median of `values` (the mean of the middle two for an even count).
pub(crate) fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// The machine and the server the figures were measured on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Machine {
    /// Logical CPUs.
    pub(crate) cores: usize,
    /// The CPU model, if /proc/cpuinfo tells it.
    pub(crate) cpu: Option<String>,
    /// Total memory, GiB.
    pub(crate) memory_gib: Option<f64>,
    /// The kernel release.
    pub(crate) kernel: Option<String>,
    /// `redis_version` of the server under test.
    pub(crate) redis_version: String,
    /// Whether the server was started by the tool.
    pub(crate) own_server: bool,
    /// The 1-minute load average when the run began and when it ended.
    pub(crate) load: (Option<f64>, Option<f64>),
    /// The git commit measured, if the tool runs in a git checkout.
    pub(crate) code: Option<String>,
}

impl Machine {
    /// Reads what /proc tells about this machine.
    pub(crate) fn probe(redis_version: String, own_server: bool) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu: cpuinfo
                .lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned()),
            memory_gib: meminfo
                .lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
                .map(|kb| kb / (1024.0 * 1024.0)),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|s| s.trim().to_owned()),
            redis_version,
            own_server,
            load: (load_average(), None),
            code: git_commit(),
        }
    }
}

/// The commit checked out in the current directory, and whether the working tree differs
/// from it (plumbing commands that never write, not even the index's stat cache: a file
/// touched but unchanged may count as changed); `None` outside a git checkout.
fn git_commit() -> Option<String> {
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let head = String::from_utf8_lossy(&head.stdout).trim().to_owned();
    let clean = std::process::Command::new("git")
        .args(["diff-index", "--quiet", "HEAD", "--"])
        .stderr(std::process::Stdio::null())
        .status()
        .ok()?
        .success();
    Some(if clean {
        format!("git commit {head}")
    } else {
        format!("git commit {head} with uncommitted changes in the working tree")
    })
}

/// The 1-minute load average, if /proc tells it.
pub(crate) fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Everything the report says besides the figures.
#[derive(Debug, Clone)]
pub(crate) struct Context<'a> {
    /// The arguments as given.
    pub(crate) args: &'a [String],
    /// The measurements' plan.
    pub(crate) plan: &'a Plan,
    /// The backends measured.
    pub(crate) backends: &'a [Backend],
    /// Runs per figure.
    pub(crate) runs: usize,
    /// The machine.
    pub(crate) machine: &'a Machine,
    /// When the run began.
    pub(crate) started: SystemTime,
    /// How long it took.
    pub(crate) wall: Duration,
}

/// Go CurlyQ's figures measured earlier by hand (not by this tool) on a 2-core Intel Xeon
/// machine of this kind, by row: the lowest and highest of its runs.
fn go_reference(row: Row) -> &'static str {
    match row {
        Row::EnqueueOne => "10,651 – 16,480",
        Row::Drain(16) => "20,178 – 24,168 (c=10)",
        Row::Drain(50) => "17,880 – 18,818",
        _ => "",
    }
}

/// The ceiling a row's rate is compared with, and its short name: one connection for
/// work done one call at a time, the pipelined ceiling for everything concurrent.
fn basis(row: Row) -> Option<(Row, &'static str)> {
    match row {
        Row::EnqueueOne
        | Row::EnqueueOneOnCurrentThread
        | Row::Drain(1)
        | Row::DrainOnCurrentThread(1) => Some((CEILING_ONE, "c1")),
        Row::EnqueueInFlight(_)
        | Row::PerformMany(_)
        | Row::Drain(_)
        | Row::DrainOnCurrentThread(_)
        | Row::Backlog(_) => Some((CEILING_PIPELINED, "P16")),
        _ => None,
    }
}

/// The rows in table order.
pub(crate) fn rows(plan: &Plan) -> Vec<Row> {
    let mut rows = vec![
        CEILING_ONE,
        CEILING_MANY,
        CEILING_PIPELINED,
        Row::EnqueueOne,
        Row::EnqueueOneOnCurrentThread,
        Row::EnqueueInFlight(plan.enqueue_in_flight),
        Row::PerformMany(plan.batch),
    ];
    for &c in &plan.concurrencies {
        rows.push(Row::Drain(c));
        if c == 1 {
            rows.push(Row::DrainOnCurrentThread(c));
        }
    }
    rows.extend(plan.backlogs.iter().map(|&b| Row::Backlog(b)));
    rows.push(Row::Flatness);
    rows.extend(plan.steady_rates.iter().map(|&r| Row::Steady(r)));
    rows.push(Row::Scheduled);
    rows.push(Row::MemoryPerJob);
    rows.push(Row::PeakRss(plan.high_concurrency));
    rows.retain(|&row| plan.wants(row));
    rows
}

/// What a row measures, as its first cell.
pub(crate) fn label(row: Row, plan: &Plan) -> String {
    let n = thousands(plan.jobs as f64);
    let high = plan.high_concurrency;
    match row {
        Row::Ceiling { clients, pipeline } => {
            let connections = if clients == 1 {
                "1 connection".to_owned()
            } else {
                format!("{clients} connections")
            };
            let pipelining = if pipeline > 1 {
                format!("pipeline {pipeline}")
            } else {
                "unpipelined".to_owned()
            };
            format!("Ceiling: redis-benchmark EVALSHA push, {connections}, {pipelining} (calls/s)")
        }
        Row::EnqueueOne => "Enqueue: `perform`, 1 call in flight (jobs/s)".to_owned(),
        Row::EnqueueOneOnCurrentThread => {
            "Enqueue: `perform`, 1 call in flight, current-thread runtime (jobs/s)".to_owned()
        }
        Row::EnqueueInFlight(c) => format!("Enqueue: `perform`, {c} calls in flight (jobs/s)"),
        Row::PerformMany(b) => {
            format!("Enqueue: `perform_many`, batches of {b}, 1 call in flight (jobs/s)")
        }
        Row::Drain(c) => format!("Process {n} queued jobs, concurrency {c} (jobs/s)"),
        Row::DrainOnCurrentThread(c) => {
            format!("Process {n} queued jobs, concurrency {c}, current-thread runtime (jobs/s)")
        }
        Row::Backlog(b) => format!(
            "Process a backlog of {} jobs, concurrency {high} (jobs/s)",
            thousands(b as f64)
        ),
        Row::Flatness => format!("Backlog flatness at concurrency {high}: slowest ÷ fastest"),
        Row::Steady(r) => format!(
            "Steady {} jobs/s: enqueue → handler start, p50 / p99 / max",
            thousands(f64::from(r))
        ),
        Row::Scheduled => format!(
            "`perform_after` ({} jobs due over {:?}): lateness p50 / p99 / max",
            thousands(plan.scheduled_jobs as f64),
            plan.scheduled_spread
        ),
        Row::MemoryPerJob => "Redis memory per queued job, 100-byte payload (bytes)".to_owned(),
        Row::PeakRss(c) => format!("Consumer peak RSS, concurrency {c}, {n} jobs (MiB)"),
    }
}

/// `1234567.8` as `1,234,568`.
pub(crate) fn thousands(value: f64) -> String {
    if !value.is_finite() {
        return "n/a".to_owned();
    }
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if value < -0.5 {
        out.insert(0, '-');
    }
    out
}

/// Microseconds as milliseconds with sensible precision.
fn millis(us: i64) -> String {
    let ms = us as f64 / 1000.0;
    if ms.abs() >= 100.0 {
        format!("{ms:.0}")
    } else if ms.abs() >= 10.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.2}")
    }
}

fn latency_cell(l: &Latency) -> String {
    format!(
        "{} / {} / {} ms",
        millis(l.p50_us),
        millis(l.p99_us),
        millis(l.max_us)
    )
}

/// ` [min – max]` of `values` when there are several, else nothing.
fn spread(values: &[f64]) -> String {
    if values.len() < 2 {
        return String::new();
    }
    let low = values.iter().copied().fold(f64::INFINITY, f64::min);
    let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!(" [{} – {}]", thousands(low), thousands(high))
}

/// The mark of a figure with a run measured in noisy conditions.
const NOISY: &str = " ‡";

/// The median cell of `row` for `backend`, with the spread of the runs and the mark of
/// noisy conditions.
fn cell(results: &Results, backend: Backend, row: Row, plan: &Plan, cores: usize) -> String {
    let mut text = median_cell(results, backend, row, plan);
    if results.noisy(backend, row, cores) {
        text.push_str(NOISY);
    }
    text
}

/// The median cell of `row` for `backend`.
fn median_cell(results: &Results, backend: Backend, row: Row, plan: &Plan) -> String {
    const NONE: &str = "not measured";
    match row {
        Row::Ceiling { .. } => results.median_rate(backend, row).map_or_else(
            || NONE.to_owned(),
            |r| thousands(r) + &spread(&results.rates(backend, row)),
        ),
        Row::Flatness => {
            let rates: Vec<f64> = plan
                .backlogs
                .iter()
                .filter_map(|&b| results.median_rate(backend, Row::Backlog(b)))
                .collect();
            let low = rates.iter().copied().fold(f64::INFINITY, f64::min);
            let high = rates.iter().copied().fold(0.0, f64::max);
            if rates.len() < plan.backlogs.len() || high <= 0.0 {
                return NONE.to_owned();
            }
            let ratio = low / high;
            format!("{ratio:.2} (within {:.0}%)", (1.0 - ratio) * 100.0)
        }
        Row::Steady(_) | Row::Scheduled => {
            let runs: Vec<Latency> = results
                .of(backend, row)
                .into_iter()
                .filter_map(|v| match v {
                    Value::Latency(l) => Some(l),
                    _ => None,
                })
                .collect();
            let pick = |f: fn(&Latency) -> i64| {
                median(&runs.iter().map(|l| f(l) as f64).collect::<Vec<_>>())
                    .map_or(0, |m| m.round() as i64)
            };
            if runs.is_empty() {
                return NONE.to_owned();
            }
            let summary = Latency {
                p50_us: pick(|l| l.p50_us),
                p99_us: pick(|l| l.p99_us),
                max_us: runs.iter().map(|l| l.max_us).max().unwrap_or(0),
                producer_rate: median(
                    &runs
                        .iter()
                        .filter_map(|l| l.producer_rate)
                        .collect::<Vec<_>>(),
                ),
            };
            let mut text = latency_cell(&summary);
            if let (Row::Steady(target), Some(reached)) = (row, summary.producer_rate) {
                if reached < 0.95 * f64::from(target) {
                    let _ = write!(text, " (producer reached only {}/s)", thousands(reached));
                }
            }
            text
        }
        Row::MemoryPerJob => results
            .median_rate(backend, row)
            .map_or_else(|| NONE.to_owned(), thousands),
        Row::PeakRss(_) => results.median_rate(backend, row).map_or_else(
            || NONE.to_owned(),
            |b| format!("{:.1}", b / (1024.0 * 1024.0)),
        ),
        _ => {
            let rates = results.rates(backend, row);
            let Some(rate) = median(&rates) else {
                return NONE.to_owned();
            };
            let mut text = thousands(rate);
            if let Some((ceiling, name)) = basis(row) {
                if let Some(c) = results.median_rate(backend, ceiling).filter(|c| *c > 0.0) {
                    let _ = write!(text, " ({:.2} × {name})", rate / c);
                }
            }
            text + &spread(&rates)
        }
    }
}

/// Every run's figure of `row` for `backend`, in run order, each marked when measured
/// in noisy conditions.
fn runs_cell(results: &Results, backend: Backend, row: Row, cores: usize) -> String {
    let parts: Vec<String> = results
        .figures
        .iter()
        .filter(|f| f.of(backend, row))
        .map(|f| {
            let mut text = run_value(row, &f.value);
            if f.conditions.is_some_and(|c| c.noisy(cores)) {
                text.push_str(NOISY);
            }
            text
        })
        .collect();
    parts.join(" · ")
}

/// The conditions of every run of `row` for `backend`: steal and load.
fn conditions_cell(results: &Results, backend: Backend, row: Row) -> String {
    let parts: Vec<String> = results
        .conditions(backend, row)
        .iter()
        .map(|c| {
            let steal = c
                .steal
                .map_or_else(|| "?".to_owned(), |s| format!("{:.1}%", s * 100.0));
            let load = c.load.map_or_else(|| "?".to_owned(), |l| format!("{l:.1}"));
            format!("{steal} / {load}")
        })
        .collect();
    parts.join(" · ")
}

/// One run's figure as the "Every run" table shows it.
fn run_value(row: Row, value: &Value) -> String {
    match (row, value) {
        (Row::PeakRss(_), Value::Bytes(b)) => format!("{:.1}", b / (1024.0 * 1024.0)),
        (_, Value::Rate(r) | Value::Bytes(r)) => thousands(*r),
        (_, Value::Latency(l)) => {
            let mut text = latency_cell(l);
            if let Some(rate) = l.producer_rate {
                let _ = write!(text, " @ {}/s", thousands(rate));
            }
            text
        }
    }
}

/// The Redis CPU table: per measured line, Redis's CPU µs per job, the rate that CPU
/// time allows (one core of Redis: 1,000,000 ÷ µs per job) and the share of it reached.
fn redis_cpu_table(results: &Results, ctx: &Context<'_>) -> Option<String> {
    let mut out = String::new();
    header(&mut out, ctx.backends, None);
    let mut any = false;
    for row in rows(ctx.plan) {
        let cells: Vec<String> = ctx
            .backends
            .iter()
            .map(|&b| {
                let redis = |c: &Conditions| c.redis_us_per_job;
                let Some(us) = results.cpu_per_job(b, row, redis).filter(|us| *us > 0.0) else {
                    return String::new();
                };
                let limit = 1e6 / us;
                let mut text = format!("{us:.1} µs · limit {}/s", thousands(limit));
                if let Some(rate) = results.median_rate(b, row) {
                    let _ = write!(text, " · {:.2} of it", rate / limit);
                }
                let client = |c: &Conditions| c.client_us_per_job;
                if let Some(client) = results.cpu_per_job(b, row, client) {
                    let _ = write!(text, " · consumer {client:.1} µs");
                }
                text
            })
            .collect();
        if cells.iter().all(String::is_empty) {
            continue;
        }
        any = true;
        let _ = write!(out, "| {} |", label(row, ctx.plan));
        for c in cells {
            let _ = write!(out, " {c} |");
        }
        out.push('\n');
    }
    any.then_some(out)
}

/// The main table: one row per measurement, one column per backend, Go's reference.
pub(crate) fn table(results: &Results, ctx: &Context<'_>) -> String {
    let mut out = String::new();
    header(
        &mut out,
        ctx.backends,
        Some("Go CurlyQ (reference, not measured in this run)"),
    );
    for row in rows(ctx.plan) {
        let _ = write!(out, "| {} |", label(row, ctx.plan));
        for &b in ctx.backends {
            let _ = write!(
                out,
                " {} |",
                cell(results, b, row, ctx.plan, ctx.machine.cores)
            );
        }
        let _ = writeln!(out, " {} |", go_reference(row));
    }
    out
}

/// Writes a table's header row and separator: the measurement, one right-aligned column
/// per backend, then `last` if given.
fn header(out: &mut String, backends: &[Backend], last: Option<&str>) {
    out.push_str("| measurement |");
    for b in backends {
        let _ = write!(out, " {b} |");
    }
    if let Some(last) = last {
        let _ = write!(out, " {last} |");
    }
    let columns = backends.len() + usize::from(last.is_some());
    let _ = writeln!(out, "\n|---|{}", "---:|".repeat(columns));
}

/// The whole report: header, the table, how to read it, the options, every run.
pub(crate) fn document(results: &Results, ctx: &Context<'_>) -> String {
    let m = ctx.machine;
    let plan = ctx.plan;
    let mut out = String::from("# curlyq benchmarks\n\n");
    let profile = if cfg!(debug_assertions) {
        ""
    } else {
        " --release"
    };
    let mut command = format!("cargo run{profile} -p curlyq-bench");
    if !ctx.args.is_empty() {
        let shown: Vec<String> = ctx.args.iter().map(|a| crate::admin::redact(a)).collect();
        let _ = write!(command, " -- {}", shown.join(" "));
    }
    let _ = writeln!(
        out,
        "Written by `curlyq-bench` (crate `curlyq-bench/`). Command: `{command}`. \
         {} run(s); each figure is the median of the runs, with the lowest and highest run in \
         brackets (the max column of a latency is the largest over the runs); ‡ marks a figure \
         with at least one run measured in noisy conditions (CPU steal above {:.0}% of the \
         machine's CPU time over the measurement, or a 1-minute load average above {:.0} × the \
         cores at its end: see \"Conditions of every run\"); wall time {:.0} s.\n",
        ctx.runs,
        conditions::STEAL_BOUND * 100.0,
        conditions::LOAD_PER_CORE_BOUND,
        ctx.wall.as_secs_f64()
    );
    let _ = writeln!(out, "- Date: {} UTC", utc(ctx.started));
    if let Some(code) = &m.code {
        let _ = writeln!(out, "- Code: {code}");
    }
    let mut machine = format!("{} logical cores", m.cores);
    if let Some(cpu) = &m.cpu {
        let _ = write!(machine, " ({cpu})");
    }
    if let Some(gib) = m.memory_gib {
        let _ = write!(machine, ", {gib:.1} GiB RAM");
    }
    if let Some(kernel) = &m.kernel {
        let _ = write!(machine, ", Linux {kernel}");
    }
    let load = |l: Option<f64>| l.map_or_else(|| "?".to_owned(), |l| format!("{l:.2}"));
    let _ = writeln!(
        out,
        "- Machine: {machine}; 1-minute load average {} at the start, {} at the end \
         (the producer, the consumer process, redis-server and redis-benchmark share these cores)",
        load(m.load.0),
        load(m.load.1)
    );
    if [m.load.0, m.load.1]
        .into_iter()
        .flatten()
        .any(|l| l > m.cores as f64)
    {
        let _ = writeln!(
            out,
            "- **The machine was busy with other work** (load average above the core count): \
             expect noise, and compare the runs under \"Every run\""
        );
    }
    let server = if m.own_server {
        "a redis-server of the tool's own on a free loopback port, no persistence"
    } else {
        "the server given by --redis"
    };
    let _ = writeln!(out, "- Redis {} ({server})", m.redis_version);
    let _ = writeln!(
        out,
        "- Build: {}\n",
        if cfg!(debug_assertions) {
            "debug profile (figures are not representative)"
        } else {
            "release profile"
        }
    );
    out.push_str(&table(results, ctx));
    out.push('\n');
    if let Some(why) = &results.ceiling_missing {
        let _ = writeln!(out, "The ceiling was not measured: {why}.\n");
    }
    if let Some(cpu) = redis_cpu_table(results, ctx) {
        out.push_str(
            "## Redis CPU per job\n\nRedis's own CPU time (`used_cpu_user` + `used_cpu_sys` of \
             `INFO cpu`) over the timed part of each line, ÷ its jobs (median of the runs); the \
             rate one Redis core allows at that cost (1,000,000 ÷ µs per job); and the share \
             of that limit the line reached. Near 1, Redis's CPU is what bounds the line; far \
             below, the client or the round trips do. For the drains, the consumer process's \
             own CPU time per job too (user + system over all its threads, from \
             `/proc/self/stat`, first handler start to the last success).\n\n",
        );
        out.push_str(&cpu);
        out.push('\n');
    }
    let _ = write!(
        out,
        "## How to read it\n\n\
         - **Ceiling**: `redis-benchmark -c <connections> -P <pipeline> -r 1000000000 EVALSHA \
         <push> 3 bench:data bench:active bench:signal __rand_int__ <{value} bytes>`, curlyq's own \
         push script storing a value as long as an encoded job with a 100-byte payload, measured \
         in each run before the backends. `(0.42 × c1)` is a fraction of the 1-connection \
         unpipelined ceiling (for work done one call at a time), `(0.42 × P16)` of the \
         50-connection pipelined one (for concurrent work). Batched work can exceed 1: a \
         `perform_many` call pushes 100 jobs in one script call, and a consumer takes (and \
         records the outcomes of) many jobs per call.\n\
         - **Enqueue**: a `Producer` in the benchmark process (after 500 untimed pushes to warm \
         up its connection) pushes jobs with a 100-byte payload: \
         {one} jobs with `perform` one call at a time; {n} jobs with `perform` from {flight} \
         tasks; {n} jobs with `perform_many` in batches of {batch}, one call at a time. Every \
         measurement runs on a multi-thread tokio runtime (a worker per core, as \
         `#[tokio::main]` gives) except the rows marked current-thread: there the producer (a \
         connection of its own, warmed up the same way) or the consumer process runs every task \
         on one thread, to show what the choice of runtime does to work done one call at a \
         time.\n\
         - **Process**: {n} jobs (or the backlog shown) are queued first, then one consumer \
         process (`curlyq-bench consume`, the same binary) with a no-op handler drains them; the \
         figure is jobs ÷ (first handler start → the last success counted by \
         `Consumer::stats()`, polled every millisecond). The process's start-up is not timed. \
         A backlog smaller than {n} is drained up to 5 times per run (N ÷ backlog times), each \
         time queued afresh for a new consumer process, and the run's figure is their median.\n\
         - **Steady**: a consumer process (concurrency {high}) runs; the producer pushes jobs \
         with `perform` at the rate shown for {steady:?}, each call on its own task at its \
         planned time; each payload carries its enqueue time, the handler records its own start \
         minus that.\n\
         - **`perform_after`**: a running consumer (concurrency {high}); {sched} jobs are pushed \
         with delays spread evenly from {first:?} to {last:?}; the handler records its start \
         minus the due time.\n\
         - **Go CurlyQ**: reference figures, not measured by this tool nor in this run: Go \
         CurlyQ's own producer and consumer, measured by hand on another 2-core machine of \
         this kind (Intel Xeon, fresh Redis 7.0.15, 50,000 no-op jobs with 100-byte payloads, \
         alternated with curlyq, nothing else running); the lowest and highest of its runs: \
         enqueue one job at a time (4 runs), and processing at concurrency 10 (shown beside \
         concurrency 16) and 50 (2 runs each).\n\
         - **Memory**: Redis's `used_memory` after queueing the {n} jobs of the concurrency \
         {high} drain minus before, ÷ {n}. **RSS**: the consumer process's VmHWM at the end of \
         that drain.\n\n",
        value = crate::scenarios::stored_job_len(),
        one = thousands(plan.enqueue_one as f64),
        n = thousands(plan.jobs as f64),
        flight = plan.enqueue_in_flight,
        batch = plan.batch,
        high = plan.high_concurrency,
        steady = plan.steady_duration,
        sched = thousands(plan.scheduled_jobs as f64),
        first = plan.scheduled_first,
        last = plan.scheduled_first + plan.scheduled_spread,
    );
    let buffers: Vec<String> = plan
        .concurrencies
        .iter()
        .map(|&c| format!("{c} → {}", Plan::buffer_for(c)))
        .collect();
    let _ = write!(
        out,
        "## Consumer options\n\n\
         Every consumer uses the defaults (Go CurlyQ's) except `processor_concurrency` (the \
         concurrency shown) and `poller_buffer_size` = the concurrency, at least 10 ({}). So: \
         `poller_poll_duration` 5 s, `scheduler_poll_interval` 5 s (the scheduler also wakes at \
         the earliest due time), `scheduler_max_jobs` 50, `heartbeat_interval` 1 min, \
         `custodian_poll_interval` 1 min. Backends are made with `curlyq::connect_redis_rs` / \
         `curlyq::connect_fred` and their default settings, on tokio's multi-threaded runtime \
         (except in the rows marked current-thread).\n\n",
        buffers.join(", ")
    );
    out.push_str("## Every run\n\n");
    header(&mut out, ctx.backends, None);
    for row in rows(plan) {
        if row == Row::Flatness {
            continue;
        }
        let _ = write!(out, "| {} |", label(row, plan));
        for &b in ctx.backends {
            let _ = write!(out, " {} |", runs_cell(results, b, row, m.cores));
        }
        out.push('\n');
    }
    out.push_str(
        "\n## Conditions of every run\n\nCPU steal over the measurement / 1-minute load \
         average at its end, per run, for the lines that record them.\n\n",
    );
    header(&mut out, ctx.backends, None);
    for row in rows(plan) {
        let cells: Vec<String> = ctx
            .backends
            .iter()
            .map(|&b| conditions_cell(results, b, row))
            .collect();
        if cells.iter().all(String::is_empty) {
            continue;
        }
        let _ = write!(out, "| {} |", label(row, plan));
        for c in cells {
            let _ = write!(out, " {c} |");
        }
        out.push('\n');
    }
    out
}

/// `YYYY-MM-DD HH:MM` in UTC.
pub(crate) fn utc(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let (hour, minute) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    // Days since 1970-01-01 to a proleptic Gregorian date (eras of 400 years).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_dates() {
        let at = |s: u64| utc(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01 00:00");
        assert_eq!(at(951_782_400), "2000-02-29 00:00");
        assert_eq!(at(1_709_210_096), "2024-02-29 12:34");
        assert_eq!(at(4_102_444_799), "2099-12-31 23:59");
    }

    #[test]
    fn numbers_get_thousands_separators() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1_234_567.8), "1,234,568");
        assert_eq!(thousands(-12_345.0), "-12,345");
        assert_eq!(thousands(f64::NAN), "n/a");
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
    }

    #[test]
    fn every_row_has_a_cell_per_backend_and_fractions_of_the_ceiling() {
        let plan = Plan::new(1000, true);
        let mut results = Results::default();
        results.record(None, CEILING_ONE, Value::Rate(10_000.0));
        results.record(None, CEILING_PIPELINED, Value::Rate(100_000.0));
        results.record(Some(Backend::Fred), Row::EnqueueOne, Value::Rate(5_000.0));
        results.record(Some(Backend::Fred), Row::Drain(16), Value::Rate(20_000.0));
        let machine = Machine::probe("7.0.0".into(), true);
        let ctx = Context {
            args: &[],
            plan: &plan,
            backends: &[Backend::RedisRs, Backend::Fred],
            runs: 1,
            machine: &machine,
            started: UNIX_EPOCH,
            wall: Duration::ZERO,
        };
        let table = table(&results, &ctx);
        assert_eq!(table.lines().count(), 2 + rows(&plan).len());
        assert!(table.contains("| 5,000 (0.50 × c1) |"), "{table}");
        assert!(
            table.contains("| 20,000 (0.20 × P16) | 20,178 – 24,168 (c=10) |"),
            "{table}"
        );
        assert!(table.contains("| not measured |"), "{table}");
        for line in table.lines() {
            assert_eq!(line.matches('|').count(), 5, "{line}");
        }
    }
}
