//! The measurements, in the order they run: per run the ceiling, then per backend
//! enqueue, processing, steady state and scheduled jobs.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use curlyq::{Job, Producer};
use tokio::task::JoinSet;

use crate::admin::Target;
use crate::ceiling::{self, Load};
use crate::cli::{Backend, BenchOptions, ConsumeOptions, Plan, Runtime};
use crate::conditions::{Conditions, Watch};
use crate::consume::{self, now_micros, stamped_payload, ConsumeReport, PAYLOAD_BYTES, WARMUP};
use crate::error::{BenchError, Context, Result};
use crate::process::ConsumerProcess;
use crate::report::{self, Latency, Machine, Results, Row, Value};

/// The queue every measurement uses (emptied between measurements).
const QUEUE: &str = "bench";

/// Jobs per call when a backlog is queued before a drain, and calls in flight.
const FILL_BATCH: usize = 1000;
const FILL_IN_FLIGHT: usize = 4;

/// Jobs pushed one at a time, untimed, before a backend's first measurement.
const WARMUP_JOBS: usize = 500;

/// The runtime of every measurement not named otherwise.
const MULTI: Runtime = Runtime::MultiThread;

/// The length of an encoded job with a 100-byte payload and a UUID: what the push
/// script stores per job, and so what the ceiling stores per call.
pub(crate) fn stored_job_len() -> usize {
    Job::new(vec![0u8; PAYLOAD_BYTES]).encode().len()
}

/// A generous bound for pushing or draining `jobs`: a minute plus 1 ms per job (far
/// slower than 1,000 jobs/s means something is broken).
fn limit_for(jobs: usize) -> Duration {
    Duration::from_secs(60) + Duration::from_millis(jobs as u64)
}

/// Runs `future`, failing with `what` when it takes longer than `limit`.
async fn bounded<T>(
    what: &str,
    limit: Duration,
    future: impl Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(limit, future)
        .await
        .map_err(|_| BenchError::new(format!("{what} did not finish within {limit:?}")))?
}

/// `, steal 0.3%, load 1.9, Redis 12.0 µs/job`: the conditions, for the progress lines.
fn shown(c: &Conditions) -> String {
    let mut text = String::new();
    if let Some(steal) = c.steal {
        text.push_str(&format!(", steal {:.1}%", steal * 100.0));
    }
    if let Some(load) = c.load {
        text.push_str(&format!(", load {load:.1}"));
    }
    if let Some(us) = c.redis_us_per_job {
        text.push_str(&format!(", Redis {us:.1} µs/job"));
    }
    if let Some(us) = c.client_us_per_job {
        text.push_str(&format!(", consumer {us:.1} µs/job"));
    }
    text
}

/// Runs every measurement and writes the report.
pub(crate) async fn run(options: BenchOptions) -> Result<()> {
    let started_at = SystemTime::now();
    let started = Instant::now();
    let mut target = Target::open(options.redis.as_deref())?;
    target.metrics = options.metrics;
    let version = target.version()?;
    let mut machine = Machine::probe(version, target.own);
    eprintln!(
        "curlyq-bench: Redis {} at {}; backends {:?}; {} run(s); N = {}",
        machine.redis_version,
        crate::admin::redact(&target.url),
        options
            .backends
            .iter()
            .map(|b| b.name())
            .collect::<Vec<_>>(),
        options.runs,
        options.plan.jobs
    );
    let mut results = Results::default();
    for run in 1..=options.runs {
        eprintln!("== run {run}/{}", options.runs);
        let ceilings = [
            report::CEILING_ONE,
            report::CEILING_MANY,
            report::CEILING_PIPELINED,
        ];
        if ceilings.into_iter().any(|row| options.plan.wants(row)) {
            if let Err(why) = measure_ceiling(&mut target, &options.plan, &mut results).await {
                eprintln!("   ceiling not measured: {why}");
                results.ceiling_missing = Some(why.to_string());
            }
        }
        for &backend in &options.backends {
            measure_backend(&mut target, &options.plan, backend, &mut results).await?;
        }
    }
    target.flush()?;
    machine.load.1 = report::load_average();
    let ctx = report::Context {
        args: &options.args,
        plan: &options.plan,
        backends: &options.backends,
        runs: options.runs,
        machine: &machine,
        started: started_at,
        wall: started.elapsed(),
    };
    let document = report::document(&results, &ctx);
    match &options.out {
        None => print!("{document}"),
        Some(path) => {
            print!("{}", report::table(&results, &ctx));
            std::fs::write(path, &document)
                .context(|| format!("cannot write {}", path.display()))?;
            eprintln!("curlyq-bench: wrote {}", path.display());
        }
    }
    Ok(())
}

/// The three redis-benchmark measurements of the push script.
async fn measure_ceiling(target: &mut Target, plan: &Plan, results: &mut Results) -> Result<()> {
    let endpoint = target
        .endpoint
        .clone()
        .ok_or_else(|| BenchError::new("redis-benchmark needs a plain redis:// host and port"))?;
    let sha = target.load_script(curlyq_lua::PUSH)?;
    let keys = curlyq_lua::Keys::new(QUEUE);
    let value = "x".repeat(stored_job_len());
    let loads = [
        (report::CEILING_ONE, plan.ceiling_requests[0]),
        (report::CEILING_MANY, plan.ceiling_requests[1]),
        (report::CEILING_PIPELINED, plan.ceiling_requests[2]),
    ];
    for (row, requests) in loads {
        let report::Row::Ceiling { clients, pipeline } = row else {
            continue;
        };
        if !plan.wants(row) {
            continue;
        }
        target.flush()?;
        let watch = Watch::start(target);
        let load = Load {
            clients,
            pipeline,
            requests,
        };
        let rps = ceiling::measure(
            &endpoint,
            &sha,
            [&keys.data, &keys.active, &keys.signal],
            &value,
            load,
        )
        .await
        .context(|| "redis-benchmark (is it installed? it comes with redis-server)".to_owned())?;
        let conditions = watch.stop(target, requests);
        eprintln!(
            "   ceiling -c {clients} -P {pipeline}: {:.0} calls/s{}",
            rps,
            shown(&conditions)
        );
        results.record_measured(None, row, Value::Rate(rps), conditions);
    }
    target.flush()
}

/// Every measurement of one backend, once.
async fn measure_backend(
    target: &mut Target,
    plan: &Plan,
    backend: Backend,
    results: &mut Results,
) -> Result<()> {
    let connection = consume::connect(backend, &target.url).await?;
    let producer = Producer::new(connection, QUEUE).context(|| "producer".to_owned())?;
    let mut record = |row: Row, value: Value, conditions: Option<Conditions>| {
        let shown = match value {
            Value::Rate(r) => format!("{r:.0}/s"),
            Value::Bytes(b) if matches!(row, Row::PeakRss(_)) => {
                format!("{:.1} MiB", b / (1024.0 * 1024.0))
            }
            Value::Bytes(b) => format!("{b:.0} B"),
            Value::Latency(l) => format!(
                "p50 {} µs, p99 {} µs, max {} µs{}",
                l.p50_us,
                l.p99_us,
                l.max_us,
                l.producer_rate
                    .map_or_else(String::new, |r| format!(", producer {r:.0}/s"))
            ),
        };
        let label = report::label(row, plan);
        match conditions {
            Some(c) => {
                eprintln!("   {backend}: {label}: {shown}{}", self::shown(&c));
                results.record_measured(Some(backend), row, value, c);
            }
            None => {
                eprintln!("   {backend}: {label}: {shown}");
                results.record(Some(backend), row, value);
            }
        }
    };

    // Warm-up, not timed: the connection, the script cache and the allocator.
    bounded(
        "warm-up",
        limit_for(WARMUP_JOBS),
        enqueue(&producer, WARMUP_JOBS, 1),
    )
    .await?;
    target.flush()?;
    if plan.wants(Row::EnqueueOne) {
        let watch = Watch::start(target);
        let rate = bounded(
            "enqueue, 1 in flight",
            limit_for(plan.enqueue_one),
            enqueue(&producer, plan.enqueue_one, 1),
        )
        .await?;
        let conditions = watch.stop(target, plan.enqueue_one);
        record(Row::EnqueueOne, Value::Rate(rate), Some(conditions));
        target.flush()?;
    }
    if plan.wants(Row::EnqueueOneOnCurrentThread) {
        let watch = Watch::start(target);
        let rate = bounded(
            "enqueue, 1 in flight, current-thread runtime",
            limit_for(plan.enqueue_one),
            enqueue_on_current_thread(backend, &target.url, plan.enqueue_one),
        )
        .await?;
        let conditions = watch.stop(target, plan.enqueue_one);
        record(
            Row::EnqueueOneOnCurrentThread,
            Value::Rate(rate),
            Some(conditions),
        );
        target.flush()?;
    }
    let flight = plan.enqueue_in_flight;
    if plan.wants(Row::EnqueueInFlight(flight)) {
        let watch = Watch::start(target);
        let rate = bounded(
            "enqueue, many in flight",
            limit_for(plan.jobs),
            enqueue(&producer, plan.jobs, flight),
        )
        .await?;
        let conditions = watch.stop(target, plan.jobs);
        record(
            Row::EnqueueInFlight(flight),
            Value::Rate(rate),
            Some(conditions),
        );
        target.flush()?;
    }
    if plan.wants(Row::PerformMany(plan.batch)) {
        let watch = Watch::start(target);
        let rate = bounded(
            "perform_many",
            limit_for(plan.jobs),
            perform_many(&producer, plan.jobs, plan.batch),
        )
        .await?;
        let conditions = watch.stop(target, plan.jobs);
        record(
            Row::PerformMany(plan.batch),
            Value::Rate(rate),
            Some(conditions),
        );
    }

    for &concurrency in &plan.concurrencies {
        let high = concurrency == plan.high_concurrency;
        let by_product =
            high && (plan.wants(Row::MemoryPerJob) || plan.wants(Row::PeakRss(concurrency)));
        if plan.wants(Row::Drain(concurrency)) || by_product {
            let drained = drain(target, &producer, backend, concurrency, plan.jobs, MULTI).await?;
            if plan.wants(Row::Drain(concurrency)) {
                record(
                    Row::Drain(concurrency),
                    Value::Rate(drained.rate),
                    Some(drained.conditions),
                );
            }
            if by_product {
                record(Row::MemoryPerJob, Value::Bytes(drained.bytes_per_job), None);
                record(
                    Row::PeakRss(concurrency),
                    Value::Bytes(drained.rss_bytes),
                    None,
                );
            }
        }
        if concurrency == 1 && plan.wants(Row::DrainOnCurrentThread(concurrency)) {
            let single = Runtime::CurrentThread;
            let drained = drain(target, &producer, backend, concurrency, plan.jobs, single).await?;
            record(
                Row::DrainOnCurrentThread(concurrency),
                Value::Rate(drained.rate),
                Some(drained.conditions),
            );
        }
    }
    for &backlog in &plan.backlogs {
        if !plan.wants(Row::Backlog(backlog)) && !plan.wants(Row::Flatness) {
            continue;
        }
        let mut rates = Vec::new();
        let mut conditions = Vec::new();
        for _ in 0..Plan::repeats_for(plan.jobs, backlog) {
            let high = plan.high_concurrency;
            let drained = drain(target, &producer, backend, high, backlog, MULTI).await?;
            rates.push(drained.rate);
            conditions.push(drained.conditions);
        }
        let rate = report::median(&rates).unwrap_or(0.0);
        record(
            Row::Backlog(backlog),
            Value::Rate(rate),
            Some(Conditions::merge(&conditions)),
        );
    }
    for &rate in &plan.steady_rates {
        if plan.wants(Row::Steady(rate)) {
            let latency = steady(target, &producer, backend, plan, rate).await?;
            record(Row::Steady(rate), Value::Latency(latency), None);
        }
    }
    if plan.wants(Row::Scheduled) {
        let lateness = scheduled(target, &producer, backend, plan).await?;
        record(Row::Scheduled, Value::Latency(lateness), None);
    }
    target.flush()
}

/// Pushes `jobs` jobs with `perform` from `in_flight` tasks; returns jobs/s.
async fn enqueue(producer: &Producer, jobs: usize, in_flight: usize) -> Result<f64> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..in_flight {
        let (producer, next) = (producer.clone(), next.clone());
        tasks.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < jobs {
                producer
                    .perform(Job::new(stamped_payload(now_micros())))
                    .await
                    .context(|| "perform".to_owned())?;
            }
            Ok::<(), BenchError>(())
        });
    }
    join_all(tasks).await?;
    Ok(jobs as f64 / start.elapsed().as_secs_f64())
}

/// Pushes `jobs` jobs with `perform`, one call at a time, from a producer of its own on a
/// current-thread runtime in a thread of its own (warmed up as the main one); returns
/// jobs/s. It is compared with the main producer, whose runtime has a worker per core.
async fn enqueue_on_current_thread(backend: Backend, url: &str, jobs: usize) -> Result<f64> {
    let url = url.to_owned();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("current-thread producer".into())
        .spawn(move || {
            let measured = Runtime::CurrentThread
                .build()
                .context(|| "building a current-thread runtime".to_owned())
                .and_then(|runtime| {
                    runtime.block_on(async {
                        let connection = consume::connect(backend, &url).await?;
                        let producer =
                            Producer::new(connection, QUEUE).context(|| "producer".to_owned())?;
                        enqueue(&producer, WARMUP_JOBS, 1).await?;
                        enqueue(&producer, jobs, 1).await
                    })
                });
            // The receiver is gone only when the measurement was abandoned.
            let _ = tx.send(measured);
        })
        .context(|| "starting the current-thread producer".to_owned())?;
    rx.await
        .context(|| "the current-thread producer ended without a result".to_owned())?
}

/// Pushes `jobs` jobs with `perform_many` in batches of `batch`, one call at a time;
/// returns jobs/s.
async fn perform_many(producer: &Producer, jobs: usize, batch: usize) -> Result<f64> {
    let start = Instant::now();
    push_batches(producer, jobs, batch).await?;
    Ok(jobs as f64 / start.elapsed().as_secs_f64())
}

/// Pushes `jobs` jobs in batches of `batch` with `perform_many`, checking each outcome.
async fn push_batches(producer: &Producer, jobs: usize, batch: usize) -> Result<()> {
    let mut left = jobs;
    while left > 0 {
        let size = left.min(batch);
        let batch: Vec<Job> = (0..size)
            .map(|_| Job::new(stamped_payload(now_micros())))
            .collect();
        let outcomes = producer
            .perform_many(batch)
            .await
            .context(|| "perform_many".to_owned())?;
        if let Some(Err(e)) = outcomes.into_iter().find(|o| o.is_err()) {
            return Err(BenchError::new(format!("perform_many refused a job: {e}")));
        }
        left -= size;
    }
    Ok(())
}

/// Awaits every task; the first failure (or panic) is the result.
async fn join_all(mut tasks: JoinSet<Result<()>>) -> Result<()> {
    while let Some(joined) = tasks.join_next().await {
        joined.context(|| "a producer task".to_owned())??;
    }
    Ok(())
}

/// What one drain gave.
struct Drained {
    rate: f64,
    bytes_per_job: f64,
    rss_bytes: f64,
    /// Over the consumer's run only (the queueing before it is not counted).
    conditions: Conditions,
}

/// Queues `jobs` jobs, then drains them with a consumer process at `concurrency`.
async fn drain(
    target: &mut Target,
    producer: &Producer,
    backend: Backend,
    concurrency: usize,
    jobs: usize,
    runtime: Runtime,
) -> Result<Drained> {
    target.flush()?;
    let before = target.used_memory()?;
    bounded("queueing the backlog", limit_for(jobs), async {
        let share = jobs.div_ceil(FILL_IN_FLIGHT);
        let mut tasks = JoinSet::new();
        for i in 0..FILL_IN_FLIGHT {
            let count = share.min(jobs.saturating_sub(i * share));
            let producer = producer.clone();
            tasks.spawn(async move { push_batches(&producer, count, FILL_BATCH).await });
        }
        join_all(tasks).await
    })
    .await?;
    let after = target.used_memory()?;
    let watch = Watch::start(target);
    let limit = limit_for(jobs);
    let report = consumer(target, backend, concurrency, jobs as u64, limit, runtime)?
        .finish(limit + Duration::from_secs(10))
        .await
        .context(|| format!("draining {jobs} jobs at concurrency {concurrency} with {backend}"))?;
    check_count(&report, jobs as u64)?;
    let mut conditions = watch.stop(target, jobs);
    conditions.client_us_per_job = (report.cpu_us > 0).then(|| report.cpu_us as f64 / jobs as f64);
    Ok(Drained {
        conditions,
        rate: jobs as f64 / (report.drain_us.max(1) as f64 / 1e6),
        bytes_per_job: after.saturating_sub(before) as f64 / jobs as f64,
        rss_bytes: report.rss_kb as f64 * 1024.0,
    })
}

/// Starts a consumer process on the queue that stops after `expect` successes.
fn consumer(
    target: &Target,
    backend: Backend,
    concurrency: usize,
    expect: u64,
    limit: Duration,
    runtime: Runtime,
) -> Result<ConsumerProcess> {
    ConsumerProcess::spawn(&ConsumeOptions {
        redis: target.url.clone(),
        backend,
        queue: QUEUE.to_owned(),
        concurrency,
        buffer: Plan::buffer_for(concurrency),
        expect,
        timeout: limit,
        runtime,
        metrics: target.metrics,
    })
}

fn check_count(report: &ConsumeReport, expect: u64) -> Result<()> {
    if report.succeeded < expect {
        return Err(BenchError::new(format!(
            "the consumer reported {} successes of {expect}",
            report.succeeded
        )));
    }
    Ok(())
}

/// Starts a consumer (concurrency: the plan's high one) and waits until it has run the
/// warm-up job, so that it is polling when the measured jobs come.
async fn running_consumer(
    target: &mut Target,
    producer: &Producer,
    backend: Backend,
    plan: &Plan,
    jobs: usize,
    limit: Duration,
) -> Result<ConsumerProcess> {
    target.flush()?;
    producer
        .perform(Job::new(WARMUP.to_vec()))
        .await
        .context(|| "pushing the warm-up job".to_owned())?;
    let mut process = consumer(
        target,
        backend,
        plan.high_concurrency,
        jobs as u64 + 1,
        limit,
        MULTI,
    )?;
    process
        .ready(Duration::from_secs(30))
        .await
        .context(|| format!("starting a {backend} consumer"))?;
    Ok(process)
}

/// A producer at `rate` jobs/s for the plan's duration, and a running consumer; the
/// latency from enqueue to handler start.
async fn steady(
    target: &mut Target,
    producer: &Producer,
    backend: Backend,
    plan: &Plan,
    rate: u32,
) -> Result<Latency> {
    let jobs = (plan.steady_duration.as_secs_f64() * f64::from(rate))
        .round()
        .max(1.0) as usize;
    let limit = plan.steady_duration + limit_for(jobs);
    let process = running_consumer(target, producer, backend, plan, jobs, limit).await?;
    let produced = bounded("the steady producer", limit, async {
        let start = tokio::time::Instant::now();
        let mut tasks = JoinSet::new();
        for i in 0..jobs {
            let due = start + Duration::from_secs_f64(i as f64 / f64::from(rate.max(1)));
            tokio::time::sleep_until(due).await;
            let producer = producer.clone();
            tasks.spawn(async move {
                producer
                    .perform(Job::new(stamped_payload(now_micros())))
                    .await
                    .map(drop)
                    .context(|| "perform".to_owned())
            });
            while let Some(done) = tasks.try_join_next() {
                done.context(|| "a producer task".to_owned())??;
            }
        }
        join_all(tasks).await?;
        Ok(jobs as f64 / start.elapsed().as_secs_f64())
    })
    .await?;
    let report = process
        .finish(limit)
        .await
        .context(|| format!("steady state at {rate} jobs/s with {backend}"))?;
    check_count(&report, jobs as u64 + 1)?;
    Ok(report.latency(Some(produced)))
}

/// Jobs pushed with `perform_after`, due over the plan's spread, and a running
/// consumer; the lateness of each handler start after the due time.
async fn scheduled(
    target: &mut Target,
    producer: &Producer,
    backend: Backend,
    plan: &Plan,
) -> Result<Latency> {
    let jobs = plan.scheduled_jobs.max(2);
    let limit = plan.scheduled_first + plan.scheduled_spread + limit_for(jobs);
    let process = running_consumer(target, producer, backend, plan, jobs, limit).await?;
    bounded("pushing the scheduled jobs", limit, async {
        for i in 0..jobs {
            let delay =
                plan.scheduled_first + plan.scheduled_spread.mul_f64(i as f64 / (jobs - 1) as f64);
            let due = now_micros() + i64::try_from(delay.as_micros()).unwrap_or(i64::MAX);
            producer
                .perform_after(delay, Job::new(stamped_payload(due)))
                .await
                .context(|| "perform_after".to_owned())?;
        }
        Ok(())
    })
    .await?;
    let report = process
        .finish(limit)
        .await
        .context(|| format!("scheduled jobs with {backend}"))?;
    check_count(&report, jobs as u64 + 1)?;
    Ok(report.latency(None))
}
