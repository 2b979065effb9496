//! What every scenario shares: a durable server, a ledger directory, a worker pool, the
//! final check and the figures line.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use curlyq::Job;
use curlyq_faults::checker::{Audit, Verdict};
use curlyq_faults::harness::{self, LedgeredProducer, WorkerPool};
use curlyq_faults::ledger::LedgerSummary;
use curlyq_faults::worker::{Behaviour, WorkerConfig};
use curlyq_redis_rs::RedisBackend;
use curlyq_testkit::RedisServer;
use rand::rngs::StdRng;

pub const WORKER: &str = env!("CARGO_BIN_EXE_curlyq-fault-worker");

pub struct Env {
    pub name: &'static str,
    pub seed: u64,
    pub rng: StdRng,
    pub server: RedisServer,
    pub dir: tempfile::TempDir,
    pub pool: WorkerPool,
    pub backend: Arc<RedisBackend>,
    pub producer: LedgeredProducer,
    pub queue: String,
    pub started: Instant,
    pub faults: usize,
}

impl Env {
    pub async fn new(name: &'static str, queue: &str) -> Env {
        Self::with_args(name, queue, &[]).await
    }

    pub async fn with_args(name: &'static str, queue: &str, extra: &[&str]) -> Env {
        let (seed, rng) = harness::seeded(name);
        let server = harness::durable_redis(extra).expect("redis-server starts");
        let dir = tempfile::Builder::new()
            .prefix("curlyq-faults-")
            .tempdir()
            .unwrap();
        let backend = Arc::new(RedisBackend::connect(&server.url()).await.unwrap());
        let producer = LedgeredProducer::new(backend.clone(), queue, dir.path()).unwrap();
        let pool = WorkerPool::new(WORKER, dir.path());
        Env {
            name,
            seed,
            rng,
            server,
            dir,
            pool,
            backend,
            producer,
            queue: queue.to_owned(),
            started: Instant::now(),
            faults: 0,
        }
    }

    pub fn config(&self) -> WorkerConfig {
        WorkerConfig::new(&self.server.url(), &self.queue, self.dir.path())
    }

    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        harness::inspect(&self.server.url()).await.unwrap()
    }

    /// Pushes `n` jobs with IDs `<prefix>-<i>` and `behaviour`, in batches of `batch`.
    pub async fn push_many(
        &self,
        prefix: &str,
        range: std::ops::Range<usize>,
        b: Behaviour,
        batch: usize,
    ) {
        let ids: Vec<usize> = range.collect();
        for chunk in ids.chunks(batch) {
            let jobs = chunk
                .iter()
                .map(|i| Job::new(b.payload()).with_id(format!("{prefix}-{i}")))
                .collect();
            let c = self.producer.push(jobs).await.unwrap();
            assert_eq!(c.ok, chunk.len(), "{c:?}");
        }
    }

    /// Waits until `n` consumers are registered on the queue (so that no worker is still
    /// connecting when a fault starts).
    pub async fn wait_registered(&self, n: usize) {
        let conn = self.conn().await;
        harness::consumers_registered(&conn, &self.queue, n, Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| panic!("[{}] {e}\n{}", self.name, self.pool.stderr_tail(3000)));
    }

    /// Waits until nothing is active, scheduled or in flight and `dead` jobs are dead.
    pub async fn drained(&self, dead: usize, limit: Duration) {
        let conn = self.conn().await;
        let queue = self.queue.clone();
        let waited = harness::wait_for("drain", limit, Duration::from_millis(100), || {
            let queue = queue.clone();
            let mut conn = conn.clone();
            async move {
                // A slow reply (a loaded machine) is "not yet", not a failure.
                harness::counts(&mut conn, &queue)
                    .await
                    .is_ok_and(|(a, s, i, d)| a == 0 && s == 0 && i == 0 && d >= dead)
            }
        })
        .await;
        if let Err(e) = waited {
            let mut conn = self.conn().await;
            let counts = harness::counts(&mut conn, &self.queue).await;
            panic!(
                "[{}] {e}; (active, scheduled, in flight, dead) = {counts:?}\n{}",
                self.name,
                self.pool.stderr_tail(4000)
            );
        }
    }

    pub fn stop_workers(&mut self, limit: Duration) {
        for code in self.pool.stop_all(limit) {
            assert_eq!(
                code,
                Ok(Some(0)),
                "[{}] worker exit\n{}",
                self.name,
                self.pool.stderr_tail(4000)
            );
        }
    }

    /// Checks the ledger and the keys; prints the figures line. Returns the verdict.
    pub async fn check(
        &self,
        jobs: usize,
        planned_dead: &BTreeSet<Vec<u8>>,
        reason_check: impl Fn(&[u8], &str) -> bool,
        allow_duplicates: bool,
    ) -> Verdict {
        let ledger = LedgerSummary::read_dir(self.dir.path()).unwrap();
        let verdict = Verdict::of(&ledger, planned_dead);
        let mut conn = self.conn().await;
        let audit = Audit::read(&mut conn, &self.queue).await.unwrap();
        let problems = audit.problems(planned_dead, reason_check);
        eprintln!(
            "[{}] jobs {jobs}, faults injected {}, lost {}, duplicated {}, dead {}, unexpected {}, wall {:.1} s, seed {}",
            self.name,
            self.faults,
            verdict.lost.len(),
            verdict.duplicated.len(),
            audit.dead.len(),
            verdict.unexpected.len(),
            self.started.elapsed().as_secs_f64(),
            self.seed
        );
        assert!(verdict.lost.is_empty(), "[{}] {verdict}", self.name);
        assert!(verdict.unexpected.is_empty(), "[{}] {verdict}", self.name);
        if !allow_duplicates {
            assert!(verdict.duplicated.is_empty(), "[{}] {verdict}", self.name);
        }
        assert!(problems.is_empty(), "[{}] audit: {problems:#?}", self.name);
        verdict
    }
}
