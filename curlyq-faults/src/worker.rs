//! The worker process: one consumer configured by arguments, with a handler whose
//! behaviour each job's payload chooses, recording each successful run in the ledger.
//!
//! Payloads: `ok` (sleep 0 to `jitter_ms` ms, then succeed), `sleep:<ms>` (sleep that
//! long, then succeed), `abort` (abort the process), `panic`, `fail` (return an error).
//! Anything else behaves as `ok`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use curlyq::{BoxError, ConsumeError, Consumer, Job};
use curlyq_redis_rs::{RedisBackend, RedisConfig};

use crate::ledger::{now_micros, Kind, LedgerWriter};

/// Everything a worker process is told on its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    /// The Redis URL.
    pub url: String,
    /// The queue.
    pub queue: String,
    /// Where the worker writes its ledger file.
    pub ledger_dir: PathBuf,
    /// Handlers at once.
    pub concurrency: usize,
    /// Jobs taken ahead.
    pub buffer: usize,
    /// Shutdown grace period in ms (0 = wait forever).
    pub grace_ms: u64,
    /// Heartbeat interval in seconds (min 15).
    pub heartbeat_s: u64,
    /// Consumer timeout in seconds (min 5).
    pub timeout_s: u64,
    /// Custodian poll interval in ms.
    pub custodian_poll_ms: u64,
    /// Poller block duration in ms (min 1000).
    pub poll_ms: u64,
    /// Scheduler poll interval in ms.
    pub scheduler_poll_ms: u64,
    /// Job max attempts.
    pub max_attempts: u32,
    /// Job max backoff in ms.
    pub max_backoff_ms: u64,
    /// Orphanings before a job is killed.
    pub max_orphan_requeues: u32,
    /// Upper bound of the `ok` handler's random sleep, in ms.
    pub jitter_ms: u64,
    /// The Redis client's response timeout in ms.
    pub response_timeout_ms: u64,
    /// The longest delay between two failed attempts of each loop (heartbeat, scheduler,
    /// custodian, poller, processor), in ms. Default 30,000 (the library's default).
    pub loop_max_backoff_ms: u64,
}

impl WorkerConfig {
    /// Defaults for a fast test worker on `url`, `queue`, writing to `ledger_dir`.
    pub fn new(url: &str, queue: &str, ledger_dir: &std::path::Path) -> Self {
        WorkerConfig {
            url: url.to_owned(),
            queue: queue.to_owned(),
            ledger_dir: ledger_dir.to_path_buf(),
            concurrency: 4,
            buffer: 4,
            grace_ms: 0,
            heartbeat_s: 15,
            timeout_s: 5,
            custodian_poll_ms: 1000,
            poll_ms: 1000,
            scheduler_poll_ms: 500,
            max_attempts: 20,
            max_backoff_ms: 1000,
            max_orphan_requeues: 3,
            jitter_ms: 5,
            response_timeout_ms: 5000,
            loop_max_backoff_ms: 30_000,
        }
    }

    /// The command-line arguments that [`parse`](Self::parse) reads back.
    pub fn to_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut put = |k: &str, v: String| {
            out.push(format!("--{k}"));
            out.push(v);
        };
        put("url", self.url.clone());
        put("queue", self.queue.clone());
        put("ledger-dir", self.ledger_dir.display().to_string());
        put("concurrency", self.concurrency.to_string());
        put("buffer", self.buffer.to_string());
        put("grace-ms", self.grace_ms.to_string());
        put("heartbeat-s", self.heartbeat_s.to_string());
        put("timeout-s", self.timeout_s.to_string());
        put("custodian-poll-ms", self.custodian_poll_ms.to_string());
        put("poll-ms", self.poll_ms.to_string());
        put("scheduler-poll-ms", self.scheduler_poll_ms.to_string());
        put("max-attempts", self.max_attempts.to_string());
        put("max-backoff-ms", self.max_backoff_ms.to_string());
        put("max-orphan-requeues", self.max_orphan_requeues.to_string());
        put("jitter-ms", self.jitter_ms.to_string());
        put("response-timeout-ms", self.response_timeout_ms.to_string());
        put("loop-max-backoff-ms", self.loop_max_backoff_ms.to_string());
        out
    }

    /// Reads the arguments written by [`to_args`](Self::to_args).
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let mut c = WorkerConfig::new("", "", std::path::Path::new(""));
        let mut it = args.iter();
        while let Some(key) = it.next() {
            let value = it.next().ok_or_else(|| format!("{key} needs a value"))?;
            let num = |v: &str| v.parse::<u64>().map_err(|e| format!("{key}: {e}"));
            match key.as_str() {
                "--url" => c.url = value.clone(),
                "--queue" => c.queue = value.clone(),
                "--ledger-dir" => c.ledger_dir = PathBuf::from(value),
                "--concurrency" => c.concurrency = num(value)? as usize,
                "--buffer" => c.buffer = num(value)? as usize,
                "--grace-ms" => c.grace_ms = num(value)?,
                "--heartbeat-s" => c.heartbeat_s = num(value)?,
                "--timeout-s" => c.timeout_s = num(value)?,
                "--custodian-poll-ms" => c.custodian_poll_ms = num(value)?,
                "--poll-ms" => c.poll_ms = num(value)?,
                "--scheduler-poll-ms" => c.scheduler_poll_ms = num(value)?,
                "--max-attempts" => c.max_attempts = num(value)? as u32,
                "--max-backoff-ms" => c.max_backoff_ms = num(value)?,
                "--max-orphan-requeues" => c.max_orphan_requeues = num(value)? as u32,
                "--jitter-ms" => c.jitter_ms = num(value)?,
                "--response-timeout-ms" => c.response_timeout_ms = num(value)?,
                "--loop-max-backoff-ms" => c.loop_max_backoff_ms = num(value)?,
                other => return Err(format!("unknown argument {other}")),
            }
        }
        if c.url.is_empty() || c.queue.is_empty() {
            return Err("--url and --queue are required".into());
        }
        Ok(c)
    }
}

/// What a job's payload asks the handler to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Sleep 0 to jitter ms, succeed.
    Ok,
    /// Sleep this many ms, succeed.
    Sleep(u64),
    /// Abort the process.
    Abort,
    /// Panic.
    Panic,
    /// Return an error.
    Fail,
}

impl Behaviour {
    /// Reads a payload.
    pub fn of(payload: &[u8]) -> Self {
        match payload {
            b"abort" => Behaviour::Abort,
            b"panic" => Behaviour::Panic,
            b"fail" => Behaviour::Fail,
            p => match p.strip_prefix(b"sleep:") {
                Some(ms) => std::str::from_utf8(ms)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .map_or(Behaviour::Ok, Behaviour::Sleep),
                None => Behaviour::Ok,
            },
        }
    }

    /// The payload that asks for this behaviour.
    pub fn payload(self) -> Vec<u8> {
        match self {
            Behaviour::Ok => b"ok".to_vec(),
            Behaviour::Sleep(ms) => format!("sleep:{ms}").into_bytes(),
            Behaviour::Abort => b"abort".to_vec(),
            Behaviour::Panic => b"panic".to_vec(),
            Behaviour::Fail => b"fail".to_vec(),
        }
    }
}

async fn handle(job: Job, ledger: Arc<LedgerWriter>, jitter_ms: u64) -> Result<(), BoxError> {
    let start = now_micros();
    match Behaviour::of(&job.data) {
        Behaviour::Abort => std::process::abort(),
        Behaviour::Panic => panic!("planned panic of job {}", job.id),
        Behaviour::Fail => return Err(format!("planned failure of job {}", job.id).into()),
        Behaviour::Sleep(ms) => {
            let (l, id) = (ledger.clone(), job.id.clone());
            tokio::task::spawn_blocking(move || l.record(Kind::Start, &[id], start, start))
                .await??;
            tokio::time::sleep(Duration::from_millis(ms)).await
        }
        Behaviour::Ok => {
            let ms = rand::random_range(0..=jitter_ms);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
    let end = now_micros();
    let id = job.id.clone();
    tokio::task::spawn_blocking(move || ledger.record(Kind::Exec, &[id], start, end)).await??;
    Ok(())
}

/// Runs the worker until SIGTERM (or SIGINT); returns the process exit code: 0 after a
/// clean shutdown, 3 when the grace period cancelled handlers, 1 on any other error.
/// Prints `STATS <counters>` on stdout before returning.
pub async fn run(config: WorkerConfig) -> i32 {
    let ledger = match LedgerWriter::create(&config.ledger_dir, "worker") {
        Ok(l) => Arc::new(l),
        Err(e) => {
            eprintln!("worker: cannot create the ledger: {e}");
            return 1;
        }
    };
    let redis_config = RedisConfig::default()
        .with_response_timeout(Duration::from_millis(config.response_timeout_ms));
    let backend = match RedisBackend::connect_with(&config.url, redis_config).await {
        Ok(b) => Arc::new(b),
        Err(e) => {
            eprintln!("worker: cannot connect: {e}");
            return 1;
        }
    };
    let ms = Duration::from_millis;
    let consumer = Consumer::builder(config.queue.clone())
        .concurrency(config.concurrency)
        .poller_buffer_size(config.buffer)
        .shutdown_grace_period(ms(config.grace_ms))
        .heartbeat_interval(Duration::from_secs(config.heartbeat_s))
        .custodian_consumer_timeout(Duration::from_secs(config.timeout_s))
        .custodian_poll_interval(ms(config.custodian_poll_ms))
        .poller_poll_duration(ms(config.poll_ms))
        .scheduler_poll_interval(ms(config.scheduler_poll_ms))
        .job_max_attempts(config.max_attempts)
        .job_max_backoff(ms(config.max_backoff_ms))
        .max_orphan_requeues(config.max_orphan_requeues)
        .heartbeat_max_backoff(ms(config.loop_max_backoff_ms))
        .scheduler_max_backoff(ms(config.loop_max_backoff_ms))
        .custodian_max_backoff(ms(config.loop_max_backoff_ms))
        .poller_max_backoff(ms(config.loop_max_backoff_ms))
        .processor_max_backoff(ms(config.loop_max_backoff_ms))
        .build(backend);
    let consumer = match consumer {
        Ok(c) => c,
        Err(e) => {
            eprintln!("worker: bad options: {e}");
            return 1;
        }
    };
    let jitter = config.jitter_ms;
    let handler = move |job: Job| handle(job, ledger.clone(), jitter);
    let shutdown = async {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => std::future::pending::<()>().await,
        }
    };
    let consumer = Arc::new(consumer);
    let publisher = tokio::spawn(publish_consumer_id(
        consumer.clone(),
        config.ledger_dir.clone(),
    ));
    let result = consumer.run(handler, shutdown).await;
    publisher.abort();
    let s = consumer.stats();
    println!(
        "STATS succeeded={} retried={} killed={} not_owned={} given_back={} rejoined={}",
        s.succeeded, s.retried, s.killed, s.not_owned, s.given_back, s.rejoined
    );
    match result {
        Ok(()) => 0,
        Err(ConsumeError::ShutdownTimeout { .. }) => {
            eprintln!("worker: grace period passed; handlers cancelled");
            3
        }
        Err(e) => {
            eprintln!("worker: {e}");
            1
        }
    }
}

/// Where a worker process publishes the consumer ID it currently runs under.
pub fn consumer_id_path(ledger_dir: &std::path::Path, pid: u32) -> PathBuf {
    ledger_dir.join(format!("consumer-{pid}.id"))
}

/// The consumer ID worker `pid` last published, if any.
pub fn published_consumer_id(ledger_dir: &std::path::Path, pid: u32) -> Option<String> {
    std::fs::read_to_string(consumer_id_path(ledger_dir, pid))
        .ok()
        .filter(|id| !id.is_empty())
}

/// Writes the consumer's current ID to [`consumer_id_path`] whenever it changes (it
/// changes after a rejoin or a lost take), so that a scenario can tell which in-flight
/// set is this process's. Written to a temporary file and renamed: readers never see
/// half an ID.
async fn publish_consumer_id(consumer: Arc<Consumer>, dir: PathBuf) {
    let path = consumer_id_path(&dir, std::process::id());
    let temporary = path.with_extension("tmp");
    let mut last = None;
    loop {
        let now = consumer.consumer_id();
        if now != last {
            let text = now.as_ref().map(|id| id.as_str()).unwrap_or_default();
            if std::fs::write(&temporary, text).is_ok() {
                let _ = std::fs::rename(&temporary, &path);
            }
            last = now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
