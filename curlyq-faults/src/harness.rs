//! The harness: a durable `redis-server`, worker processes, seeds, bounded waits and a
//! producer that keeps the ledger.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use curlyq::{Job, ProduceError, Producer};
use curlyq_redis_rs::RedisBackend;
use curlyq_testkit::RedisServer;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::ledger::{now_micros, Kind, LedgerWriter};
use crate::worker::WorkerConfig;

/// The arguments every fault-suite server gets: durable (AOF, fsync always), never
/// evicting, `DEBUG` allowed from loopback.
pub const DURABLE_ARGS: &[&str] = &[
    "--appendonly",
    "yes",
    "--appendfsync",
    "always",
    "--maxmemory-policy",
    "noeviction",
    "--enable-debug-command",
    "local",
];

/// Starts a durable server (on a free loopback port; killed on drop).
pub fn durable_redis(extra: &[&str]) -> std::io::Result<RedisServer> {
    let mut args: Vec<&str> = DURABLE_ARGS.to_vec();
    args.extend_from_slice(extra);
    RedisServer::start_with_args(&args)
}

/// The scenario's seed: `CURLYQ_FAULT_SEED` if set, else random. Printed.
pub fn seeded(scenario: &str) -> (u64, StdRng) {
    let seed = std::env::var("CURLYQ_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("[{scenario}] seed {seed} (rerun with CURLYQ_FAULT_SEED={seed})");
    (seed, StdRng::seed_from_u64(seed))
}

/// Polls `cond` every `every` until it holds; `Err` with `what` after `limit`.
pub async fn wait_for<F, Fut>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut cond: F,
) -> Result<Duration, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if cond().await {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            return Err(format!("{what}: not reached within {limit:?}"));
        }
        tokio::time::sleep(every).await;
    }
}

/// A worker process (the `curlyq-fault-worker` binary).
#[derive(Debug)]
pub struct WorkerProc {
    child: Option<Child>,
    pid: u32,
    /// Its slot in the pool.
    pub slot: usize,
    /// Where its stdout went (the `STATS` line).
    pub stdout: PathBuf,
    /// Where its stderr went.
    pub stderr: PathBuf,
}

impl WorkerProc {
    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `signal`; an already exited process is not an error.
    pub fn signal(&self, signal: Signal) {
        if self.child.is_some() {
            let _ = kill(Pid::from_raw(self.pid as i32), signal);
        }
    }

    /// Waits up to `limit` for the process to exit; its exit code (`None` if killed by a
    /// signal), or `Err` when it still runs (it is then killed).
    pub fn wait(&mut self, limit: Duration) -> Result<Option<i32>, String> {
        let Some(child) = self.child.as_mut() else {
            return Err("already reaped".into());
        };
        let deadline = Instant::now() + limit;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.child = None;
                    return Ok(status.code());
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    self.hard_kill();
                    return Err(format!("worker {} did not exit within {limit:?}", self.pid));
                }
            }
        }
    }

    /// Whether the process has exited (reaping it).
    pub fn exited(&mut self) -> bool {
        match self.child.as_mut() {
            None => true,
            Some(child) => match child.try_wait() {
                Ok(Some(_)) => {
                    self.child = None;
                    true
                }
                _ => false,
            },
        }
    }

    /// SIGKILL and reap.
    pub fn hard_kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGCONT first: a stopped process still dies of SIGKILL, but be explicit.
            let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGCONT);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The `STATS` line it printed, if any.
    pub fn stats_line(&self) -> Option<String> {
        std::fs::read_to_string(&self.stdout)
            .ok()?
            .lines()
            .find(|l| l.starts_with("STATS "))
            .map(str::to_owned)
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        self.hard_kill();
    }
}

/// Worker processes of one scenario, each killed on drop (even when the test panics).
#[derive(Debug)]
pub struct WorkerPool {
    binary: PathBuf,
    dir: PathBuf,
    spawned: usize,
    /// The live (or not yet reaped) workers, by slot.
    pub workers: Vec<WorkerProc>,
}

impl WorkerPool {
    /// A pool running `binary`, writing outputs under `dir`.
    pub fn new(binary: impl Into<PathBuf>, dir: &Path) -> Self {
        WorkerPool {
            binary: binary.into(),
            dir: dir.to_path_buf(),
            spawned: 0,
            workers: Vec::new(),
        }
    }

    /// Starts a worker in `slot` with `config`.
    pub fn spawn(&mut self, slot: usize, config: &WorkerConfig) -> std::io::Result<u32> {
        self.spawn_with_env(slot, config, &[])
    }

    /// How many workers were started so far.
    pub fn spawned(&self) -> usize {
        self.spawned
    }

    /// The live worker in `slot`.
    pub fn in_slot(&mut self, slot: usize) -> Option<&mut WorkerProc> {
        self.workers
            .iter_mut()
            .find(|w| w.slot == slot && w.child.is_some())
    }

    /// Slots whose worker exited (reaped and removed from the pool), with their pids.
    pub fn reap_exited(&mut self) -> Vec<(usize, u32)> {
        let mut out = Vec::new();
        self.workers.retain_mut(|w| {
            if w.exited() {
                out.push((w.slot, w.pid));
                false
            } else {
                true
            }
        });
        out
    }

    /// SIGTERMs every worker and waits (each at most `limit`); the exit codes.
    pub fn stop_all(&mut self, limit: Duration) -> Vec<Result<Option<i32>, String>> {
        for w in &self.workers {
            w.signal(Signal::SIGTERM);
        }
        let codes = self.workers.iter_mut().map(|w| w.wait(limit)).collect();
        self.workers.clear();
        codes
    }

    /// Every worker's stderr, concatenated (for failure messages).
    pub fn stderr_tail(&self, max: usize) -> String {
        let mut out = String::new();
        for n in 0..self.spawned {
            if let Ok(text) = std::fs::read_to_string(self.dir.join(format!("worker-{n}.err"))) {
                if !text.trim().is_empty() {
                    out.push_str(&format!("--- worker {n}\n{text}"));
                }
            }
        }
        let cut = out.len().saturating_sub(max);
        let cut = (cut..=out.len())
            .find(|&i| out.is_char_boundary(i))
            .unwrap_or(out.len());
        out[cut..].to_owned()
    }
}

/// A producer that records every push in its ledger: attempted, then ok, exists, or in
/// doubt (when the push failed with a backend error and its outcome is unknown).
#[derive(Debug)]
pub struct LedgeredProducer {
    producer: Producer,
    ledger: LedgerWriter,
}

/// What one batch push came to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PushCount {
    /// Confirmed.
    pub ok: usize,
    /// Already existing.
    pub exists: usize,
    /// Unknown outcome.
    pub doubt: usize,
}

impl LedgeredProducer {
    /// A producer on `backend` for `queue`, writing its ledger in `dir`.
    pub fn new(backend: Arc<RedisBackend>, queue: &str, dir: &Path) -> std::io::Result<Self> {
        let producer = Producer::new(backend, queue).map_err(std::io::Error::other)?;
        Ok(LedgeredProducer {
            producer,
            ledger: LedgerWriter::create(dir, "producer")?,
        })
    }

    /// Pushes `jobs` in one round trip (they must have IDs).
    pub async fn push(&self, jobs: Vec<Job>) -> std::io::Result<PushCount> {
        let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
        let t = now_micros();
        self.ledger.record(Kind::Attempt, &ids, t, t)?;
        let mut count = PushCount::default();
        match self.producer.perform_many(jobs).await {
            Ok(results) => {
                let mut ok = Vec::new();
                let mut exists = Vec::new();
                let mut doubt = Vec::new();
                for (id, r) in ids.into_iter().zip(results) {
                    match r {
                        Ok(_) => ok.push(id),
                        Err(ProduceError::AlreadyExists { .. }) => exists.push(id),
                        Err(e) => {
                            eprintln!("push of {id:?} in doubt: {e}");
                            doubt.push(id)
                        }
                    }
                }
                let t = now_micros();
                self.ledger.record(Kind::Ok, &ok, t, t)?;
                self.ledger.record(Kind::Exists, &exists, t, t)?;
                self.ledger.record(Kind::Doubt, &doubt, t, t)?;
                count.ok = ok.len();
                count.exists = exists.len();
                count.doubt = doubt.len();
            }
            Err(e) => {
                eprintln!("push of {} jobs in doubt: {e}", ids.len());
                let t = now_micros();
                self.ledger.record(Kind::Doubt, &ids, t, t)?;
                count.doubt = ids.len();
            }
        }
        Ok(count)
    }
}

/// A direct connection for inspection and fault commands.
///
/// Replies may take up to 10 s (the backends' own default): redis-rs's default of 0.5 s
/// is too tight for a loaded 2-core machine whose server syncs every write to disk, and
/// an inspection that times out fails a scenario for the harness's sake, not the queue's.
pub async fn inspect(url: &str) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(10)))
        .set_response_timeout(Some(Duration::from_secs(10)));
    redis::Client::open(url)?
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// `ZCARD <queue>:consumers`, `LLEN <queue>:active` etc. in one call: the number of
/// jobs still active, scheduled, in flight (over every in-flight set), and dead.
pub async fn counts(
    conn: &mut redis::aio::MultiplexedConnection,
    queue: &str,
) -> redis::RedisResult<(usize, usize, usize, usize)> {
    let active: usize = redis::cmd("LLEN")
        .arg(format!("{queue}:active"))
        .query_async(conn)
        .await?;
    let scheduled: usize = redis::cmd("ZCARD")
        .arg(format!("{queue}:scheduled"))
        .query_async(conn)
        .await?;
    let dead: usize = redis::cmd("ZCARD")
        .arg(format!("{queue}:dead"))
        .query_async(conn)
        .await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{queue}:inflight:*"))
        .query_async(conn)
        .await?;
    let mut inflight = 0;
    for key in keys {
        let n: usize = redis::cmd("SCARD").arg(key).query_async(conn).await?;
        inflight += n;
    }
    Ok((active, scheduled, inflight, dead))
}

impl WorkerPool {
    /// [`spawn`](Self::spawn) with extra environment variables for the worker (such as
    /// `CURLYQ_FAULT_LOG=warn` to have its warnings on stderr).
    pub fn spawn_with_env(
        &mut self,
        slot: usize,
        config: &WorkerConfig,
        env: &[(&str, &str)],
    ) -> std::io::Result<u32> {
        let n = self.spawned;
        self.spawned += 1;
        let stdout = self.dir.join(format!("worker-{n}.out"));
        let stderr = self.dir.join(format!("worker-{n}.err"));
        let mut command = Command::new(&self.binary);
        command
            .args(config.to_args())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout)?)
            .stderr(std::fs::File::create(&stderr)?);
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn()?;
        let pid = child.id();
        self.workers.push(WorkerProc {
            child: Some(child),
            pid,
            slot,
            stdout,
            stderr,
        });
        Ok(pid)
    }

    /// Every worker's stderr (so far), concatenated in start order.
    pub fn stderr_all(&self) -> String {
        (0..self.spawned)
            .filter_map(|n| std::fs::read_to_string(self.dir.join(format!("worker-{n}.err"))).ok())
            .collect()
    }
}

/// Waits (blocking) until `server` answers `PING` again; how long that took. `Err`
/// after `limit`.
pub fn wait_pong(server: &RedisServer, limit: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    loop {
        if let Ok(reply) = server.command(&["PING"]) {
            if reply.starts_with("+PONG") {
                return Ok(started.elapsed());
            }
        }
        if started.elapsed() > limit {
            return Err(format!(
                "redis-server on port {} did not answer PING within {limit:?}",
                server.port()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `kill -9` of `server`, `down` of outage, then a restart on the same port and
/// directory (it reloads its AOF). Blocking (call it from `block_in_place`). Returns how
/// long the server was unreachable, up to its first `PONG`.
pub fn crash_and_restart(server: &mut RedisServer, down: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    server.stop();
    std::thread::sleep(down);
    server
        .restart()
        .map_err(|e| format!("restart after kill -9 failed: {e}"))?;
    wait_pong(server, Duration::from_secs(10))?;
    Ok(started.elapsed())
}

/// `DEBUG RESTART` of `server` (it saves, re-executes itself with the same arguments and
/// reloads its AOF; the pid stays), then waits for its first `PONG`. Blocking (call it
/// from `block_in_place`). Returns how long it was unreachable. (`RedisServer` starts
/// `redis-server` by its absolute path, which `DEBUG RESTART` needs.)
pub fn debug_restart(server: &RedisServer) -> Result<Duration, String> {
    let started = Instant::now();
    // The server closes the connection without replying when it restarts; a reply is
    // its refusal.
    if let Ok(reply) = server.command(&["DEBUG", "RESTART"]) {
        return Err(format!("DEBUG RESTART refused: {}", reply.trim_end()));
    }
    wait_pong(server, Duration::from_secs(10))?;
    Ok(started.elapsed())
}

impl LedgeredProducer {
    /// Schedules each job at its time with [`Producer::perform_at`], at most `in_flight`
    /// calls at once (they must have IDs). Records every attempt first, then each
    /// outcome. Returns the counts and, for each confirmed job, when its call returned
    /// (µs since the epoch).
    pub async fn perform_at_many(
        &self,
        jobs: Vec<(std::time::SystemTime, Job)>,
        in_flight: usize,
    ) -> std::io::Result<(PushCount, std::collections::BTreeMap<String, u64>)> {
        let ids: Vec<String> = jobs.iter().map(|(_, j)| j.id.clone()).collect();
        let t = now_micros();
        self.ledger.record(Kind::Attempt, &ids, t, t)?;
        let mut set = tokio::task::JoinSet::new();
        let mut outcomes = Vec::with_capacity(jobs.len());
        for (when, job) in jobs {
            if set.len() >= in_flight.max(1) {
                if let Some(done) = set.join_next().await {
                    outcomes.push(done.map_err(std::io::Error::other)?);
                }
            }
            let producer = self.producer.clone();
            set.spawn(async move {
                let id = job.id.clone();
                let result = producer.perform_at(when, job).await;
                (id, result, now_micros())
            });
        }
        while let Some(done) = set.join_next().await {
            outcomes.push(done.map_err(std::io::Error::other)?);
        }
        let mut confirmed = std::collections::BTreeMap::new();
        let (mut ok, mut exists, mut doubt) = (Vec::new(), Vec::new(), Vec::new());
        for (id, result, at) in outcomes {
            match result {
                Ok(_) => {
                    confirmed.insert(id.clone(), at);
                    ok.push(id);
                }
                Err(ProduceError::AlreadyExists { .. }) => exists.push(id),
                Err(e) => {
                    eprintln!("schedule of {id:?} in doubt: {e}");
                    doubt.push(id);
                }
            }
        }
        let t = now_micros();
        self.ledger.record(Kind::Ok, &ok, t, t)?;
        self.ledger.record(Kind::Exists, &exists, t, t)?;
        self.ledger.record(Kind::Doubt, &doubt, t, t)?;
        let count = PushCount {
            ok: ok.len(),
            exists: exists.len(),
            doubt: doubt.len(),
        };
        Ok((count, confirmed))
    }
}

/// One consumer's in-flight set, for explaining a drain that did not finish.
#[derive(Debug, Clone)]
pub struct InFlightSet {
    /// The key (`<queue>:inflight:<consumer ID>`).
    pub key: String,
    /// Seconds since the consumer's last heartbeat; `None` when it is not registered.
    pub heartbeat_age: Option<f64>,
    /// The job IDs in it.
    pub ids: Vec<Vec<u8>>,
}

/// Every non-empty in-flight set of `queue`, with its consumer's heartbeat age: jobs
/// under a consumer that still heartbeats are not orphans, and no custodian takes them
/// back.
pub async fn in_flight_sets(
    conn: &mut redis::aio::MultiplexedConnection,
    queue: &str,
) -> redis::RedisResult<Vec<InFlightSet>> {
    let audit = crate::checker::Audit::read(conn, queue).await?;
    let now = now_micros() as f64 / 1e6;
    let mut out = Vec::new();
    for (key, ids) in audit.inflight {
        let score: Option<f64> = redis::cmd("ZSCORE")
            .arg(format!("{queue}:consumers"))
            .arg(&key)
            .query_async(conn)
            .await?;
        out.push(InFlightSet {
            key,
            heartbeat_age: score.map(|s| now - s),
            ids,
        });
    }
    Ok(out)
}

/// Waits until at least `n` consumers are registered on `queue` (so that no worker is
/// still connecting when a fault starts); `Err` after `limit`.
pub async fn consumers_registered(
    conn: &redis::aio::MultiplexedConnection,
    queue: &str,
    n: usize,
    limit: Duration,
) -> Result<Duration, String> {
    let key = format!("{queue}:consumers");
    wait_for(
        "consumers registered",
        limit,
        Duration::from_millis(20),
        || {
            let (mut conn, key) = (conn.clone(), key.clone());
            async move {
                redis::cmd("ZCARD")
                    .arg(&key)
                    .query_async::<usize>(&mut conn)
                    .await
                    .is_ok_and(|c| c >= n)
            }
        },
    )
    .await
}

/// Waits until nothing of `queue` is active, scheduled or in flight; how long that took,
/// or `Err` after `limit` (a failed read counts as not drained).
pub async fn drain(
    conn: &redis::aio::MultiplexedConnection,
    queue: &str,
    limit: Duration,
) -> Result<Duration, String> {
    wait_for("drain", limit, Duration::from_millis(100), || {
        let mut conn = conn.clone();
        async move {
            counts(&mut conn, queue)
                .await
                .is_ok_and(|(a, s, i, _)| a == 0 && s == 0 && i == 0)
        }
    })
    .await
}
