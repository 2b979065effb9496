//! End-to-end consumer tests for one cell of the backend × runtime matrix, against real
//! redis-server processes the tests start on free loopback ports.
//!
//! The cell comes from the environment: `CURLYQ_BACKEND` (`redis-rs` or `fred`) and
//! `CURLYQ_RUNTIME` (`tokio`, `async-std` or `smol`); without them, the first backend and
//! runtime the crate's features enable. CI builds this binary once with every feature and
//! runs it once per cell:
//!
//! ```sh
//! CURLYQ_BACKEND=fred CURLYQ_RUNTIME=smol \
//!     cargo test -p curlyq --features fred,async-std,smol --test matrix
//! ```
//!
//! Nothing here uses tokio unless the cell's runtime is tokio: the executor, the timers
//! (the consumer's [`Runtime`]), the channels and the spawned tasks all follow the cell.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use curlyq::backend::{ConsumerId, QueueBackend, QueueName, Registration};
use curlyq::runtime::Runtime;
use curlyq::{BoxError, ConsumeError, Consumer, ConsumerBuilder, Job, Producer};
use curlyq_testkit::RedisServer;
use futures::future::{select, Either};

#[path = "matrix_cells/handlers.rs"]
mod handlers;

/// Unix seconds now.
fn unix_now() -> f64 {
    curlyq::runtime::unix_seconds(SystemTime::now())
}

/// Longest wait for anything in these tests.
const LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Backend {
    RedisRs,
    Fred,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Exec {
    Tokio,
    AsyncStd,
    Smol,
}

fn cell() -> (Backend, Exec) {
    let backend = match std::env::var("CURLYQ_BACKEND").as_deref() {
        Ok("redis-rs") => Backend::RedisRs,
        Ok("fred") => Backend::Fred,
        Ok(other) => panic!("CURLYQ_BACKEND={other}: expected redis-rs or fred"),
        Err(_) if cfg!(feature = "redis-rs") => Backend::RedisRs,
        Err(_) => Backend::Fred,
    };
    let exec = match std::env::var("CURLYQ_RUNTIME").as_deref() {
        Ok("tokio") => Exec::Tokio,
        Ok("async-std") => Exec::AsyncStd,
        Ok("smol") => Exec::Smol,
        Ok(other) => panic!("CURLYQ_RUNTIME={other}: expected tokio, async-std or smol"),
        Err(_) if cfg!(feature = "tokio") => Exec::Tokio,
        Err(_) if cfg!(feature = "smol") => Exec::Smol,
        Err(_) => Exec::AsyncStd,
    };
    (backend, exec)
}

/// Runs `test` to completion on the cell's executor.
fn block_on<F: Future<Output = ()>>(exec: Exec, test: F) {
    match exec {
        #[cfg(feature = "tokio")]
        Exec::Tokio => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime")
            .block_on(test),
        #[cfg(feature = "async-std")]
        Exec::AsyncStd => async_std::task::block_on(test),
        #[cfg(feature = "smol")]
        Exec::Smol => smol::block_on(test),
        #[allow(unreachable_patterns)]
        other => panic!("runtime {other:?} is not enabled: build with its feature"),
    }
}

/// One test's world: a server, the cell's backend on it, and the cell's clock.
struct World {
    server: RedisServer,
    backend: Arc<dyn QueueBackend>,
    clock: Arc<dyn Runtime>,
}

impl World {
    fn builder(&self, queue: &str) -> ConsumerBuilder {
        Consumer::builder(queue).runtime(self.clock.clone())
    }

    fn producer(&self, queue: &str) -> Producer {
        Producer::new(self.backend.clone(), queue).unwrap()
    }

    fn redis(&self, args: &[&str]) -> String {
        self.server.command(args).expect("redis command")
    }

    /// `fut`, or a panic naming `what` once [`LIMIT`] passes (on the cell's timers).
    async fn within<T>(&self, what: &str, fut: impl Future<Output = T>) -> T {
        let sleep = self.clock.sleep(LIMIT);
        match select(Box::pin(fut), sleep).await {
            Either::Left((value, _)) => value,
            Either::Right(_) => panic!("{what}: not done within {LIMIT:?}"),
        }
    }

    /// Polls `cond` every 10 ms (cell timers) until it holds.
    async fn until(&self, what: &str, cond: impl Fn(&World) -> bool) {
        self.within(what, async {
            while !cond(self) {
                self.clock.sleep(Duration::from_millis(10)).await;
            }
        })
        .await
    }

    /// Starts `consumer.run` as a task of the cell's runtime.
    fn start<H, Fut>(&self, consumer: Consumer, handler: H) -> Running
    where
        H: Fn(Job) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        self.start_run(consumer, move |c, stop| async move {
            c.run(handler, stop).await
        })
    }
}

struct Running {
    consumer: Consumer,
    stop: async_channel::Sender<()>,
    done: async_channel::Receiver<Result<(), ConsumeError>>,
}

impl Running {
    /// Asks for a graceful shutdown and waits for the run's result.
    async fn stop(self, world: &World) -> Result<(), ConsumeError> {
        let _ = self.stop.try_send(());
        world
            .within("graceful shutdown", self.done.recv())
            .await
            .expect("the consumer task reports")
    }
}

/// Runs a test on the cell: starts a server, connects the cell's backend.
fn matrix_test<F, Fut>(test: F)
where
    F: FnOnce(World) -> Fut,
    Fut: Future<Output = ()>,
{
    let (backend_kind, exec) = cell();
    eprintln!("cell: {backend_kind:?} on {exec:?}");
    let server = RedisServer::start().expect("redis-server starts");
    block_on(exec, async move {
        if exec != Exec::Tokio {
            assert!(
                tokio::runtime::Handle::try_current().is_err(),
                "a non-tokio cell runs outside any tokio runtime"
            );
        }
        let clock: Arc<dyn Runtime> = match exec {
            #[cfg(feature = "tokio")]
            Exec::Tokio => Arc::new(curlyq::runtime::TokioRuntime),
            #[cfg(any(feature = "async-std", feature = "smol"))]
            Exec::AsyncStd | Exec::Smol => Arc::new(curlyq::runtime::AsyncIoRuntime),
            #[allow(unreachable_patterns)]
            other => panic!("runtime {other:?} is not enabled"),
        };
        let url = server.url();
        let backend = match backend_kind {
            #[cfg(feature = "redis-rs")]
            Backend::RedisRs => curlyq::connect_redis_rs(&url).await,
            #[cfg(feature = "fred")]
            Backend::Fred => curlyq::connect_fred(&url).await,
            #[allow(unreachable_patterns)]
            other => panic!("backend {other:?} is not enabled: build with its feature"),
        }
        .expect("connects");
        test(World {
            server,
            backend,
            clock,
        })
        .await;
    });
}

/// Records every run of every job: (id, attempt).
#[derive(Clone, Default)]
struct Runs(Arc<Mutex<Vec<(String, u32)>>>);

impl Runs {
    fn add(&self, job: &Job) {
        self.0.lock().unwrap().push((job.id.clone(), job.attempt));
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn per_job(&self) -> BTreeMap<String, Vec<u32>> {
        let mut out: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for (id, attempt) in self.0.lock().unwrap().iter() {
            out.entry(id.clone()).or_default().push(*attempt);
        }
        out
    }
}

fn fail(why: &str) -> Result<(), BoxError> {
    Err(why.to_owned().into())
}

/// Produce: single and batch pushes; consume: every job runs exactly once, then the
/// queue is empty and the consumer gone.
#[test]
fn produces_and_consumes_every_job_once() {
    matrix_test(|w| async move {
        let producer = w.producer("e2e");
        let batch: Vec<Job> = (0..100).map(|i| Job::new(format!("bulk {i}"))).collect();
        for r in producer.perform_many(batch).await.unwrap() {
            r.unwrap();
        }
        for i in 0..50 {
            producer
                .perform(Job::new(format!("one {i}")))
                .await
                .unwrap();
        }
        let runs = Runs::default();
        let consumer = w
            .builder("e2e")
            .concurrency(8)
            .build(w.backend.clone())
            .unwrap();
        let r = runs.clone();
        let running = w.start(consumer, move |job: Job| {
            r.add(&job);
            async { Ok(()) }
        });
        w.until("150 jobs run", |_| runs.len() >= 150).await;
        w.until("all acked", |w| w.redis(&["HLEN", "e2e:data"]) == ":0\r\n")
            .await;
        running.stop(&w).await.unwrap();
        let per_job = runs.per_job();
        assert_eq!(per_job.len(), 150);
        assert!(per_job.values().all(|a| a == &[0]), "each job ran once");
        assert_eq!(w.redis(&["ZCARD", "e2e:consumers"]), ":0\r\n");
        assert_eq!(w.redis(&["LLEN", "e2e:active"]), ":0\r\n");
    });
}

/// Retry: a job that fails twice runs a third time with attempt 2 and then succeeds.
#[test]
fn retries_a_failing_job_until_it_succeeds() {
    matrix_test(|w| async move {
        let id = w
            .producer("retry")
            .perform(Job::new("flaky"))
            .await
            .unwrap();
        let runs = Runs::default();
        let consumer = w
            .builder("retry")
            .job_max_backoff(Duration::from_millis(50))
            .scheduler_poll_interval(Duration::from_millis(50))
            .build(w.backend.clone())
            .unwrap();
        let r = runs.clone();
        let running = w.start(consumer, move |job: Job| {
            r.add(&job);
            let attempt = job.attempt;
            async move {
                if attempt < 2 {
                    fail("not yet")
                } else {
                    Ok(())
                }
            }
        });
        w.until("third run", |_| runs.len() >= 3).await;
        w.until("acked", |w| w.redis(&["HLEN", "retry:data"]) == ":0\r\n")
            .await;
        // Counters are read once the consumer has stopped: the ack lands in Redis a
        // moment before the consumer counts it.
        let consumer = running.consumer.clone();
        running.stop(&w).await.unwrap();
        let stats = consumer.stats();
        assert_eq!(runs.per_job(), BTreeMap::from([(id, vec![0, 1, 2])]));
        assert_eq!(stats.retried, 2);
        assert_eq!(stats.succeeded, 1);
        assert_eq!(w.redis(&["ZCARD", "retry:scheduled"]), ":0\r\n");
    });
}

/// Kill: past its max attempts a failing job goes to the dead set, with its attempt
/// count and a reason, and is not run again.
#[test]
fn kills_a_job_past_its_max_attempts() {
    matrix_test(|w| async move {
        let id = w
            .producer("kill")
            .perform(Job::new("doomed"))
            .await
            .unwrap();
        let runs = Runs::default();
        let consumer = w
            .builder("kill")
            .job_max_attempts(1)
            .job_max_backoff(Duration::from_millis(50))
            .scheduler_poll_interval(Duration::from_millis(50))
            .build(w.backend.clone())
            .unwrap();
        let r = runs.clone();
        let running = w.start(consumer, move |job: Job| {
            r.add(&job);
            async { fail("always") }
        });
        w.until("dead", |w| w.redis(&["ZCARD", "kill:dead"]) == ":1\r\n")
            .await;
        running.stop(&w).await.unwrap();
        assert_eq!(runs.per_job(), BTreeMap::from([(id.clone(), vec![0, 1])]));
        let snap = w
            .backend
            .snapshot(&QueueName::new("kill").unwrap())
            .await
            .unwrap();
        let stored = Job::decode(&snap.data[&id]).unwrap();
        assert_eq!(stored.attempt, 2, "the dead job keeps its attempt count");
        assert!(snap.reasons.contains_key(&id), "{snap:?}");
        assert!(snap.scheduled.is_empty() && snap.active.is_empty());
    });
}

/// Orphan recovery: the jobs a crashed consumer (an old heartbeat) held are run by a live
/// consumer's custodian, exactly once, and the crashed consumer is removed.
#[test]
fn recovers_the_jobs_of_a_crashed_consumer() {
    matrix_test(|w| async move {
        let queue = QueueName::new("orph").unwrap();
        let producer = w.producer("orph");
        let mut ids = BTreeSet::new();
        for i in 0..3 {
            ids.insert(
                producer
                    .perform(Job::new(format!("held {i}")))
                    .await
                    .unwrap(),
            );
        }
        // A consumer that took the jobs and died an hour ago.
        let crashed = ConsumerId::random();
        let an_hour_ago = curlyq::runtime::unix_seconds(SystemTime::now()) - 3600.0;
        w.backend
            .register(&queue, &crashed, an_hour_ago, Registration::Join)
            .await
            .unwrap();
        assert_eq!(
            w.backend
                .take(&queue, &crashed, 10, 1_700_000_000.0)
                .await
                .unwrap()
                .len(),
            3
        );
        let runs = Runs::default();
        let consumer = w
            .builder("orph")
            .custodian_poll_interval(Duration::from_millis(100))
            .build(w.backend.clone())
            .unwrap();
        let r = runs.clone();
        let running = w.start(consumer, move |job: Job| {
            r.add(&job);
            async { Ok(()) }
        });
        w.until("three recovered runs", |_| runs.len() >= 3).await;
        w.until("acked", |w| w.redis(&["HLEN", "orph:data"]) == ":0\r\n")
            .await;
        running.stop(&w).await.unwrap();
        let per_job = runs.per_job();
        assert_eq!(per_job.keys().cloned().collect::<BTreeSet<_>>(), ids);
        assert!(
            per_job.values().all(|a| a == &[0]),
            "each ran once: {per_job:?}"
        );
        let snap = w.backend.snapshot(&queue).await.unwrap();
        assert!(
            snap.consumers.is_empty(),
            "the crashed consumer is gone: {snap:?}"
        );
        assert!(
            snap.inflight.is_empty() && snap.orphaned.is_empty(),
            "{snap:?}"
        );
    });
}

/// Graceful shutdown: the running job finishes and is acked, jobs taken but not started
/// go back to the active list, nothing is lost, and the consumer unregisters.
#[test]
fn shuts_down_gracefully_without_losing_jobs() {
    matrix_test(|w| async move {
        let queue = QueueName::new("stop").unwrap();
        let producer = w.producer("stop");
        let mut ids = Vec::new();
        for i in 0..6 {
            ids.push(
                producer
                    .perform(Job::new(format!("job {i}")))
                    .await
                    .unwrap(),
            );
        }
        let (started_tx, started) = async_channel::unbounded::<String>();
        let (release, gate) = async_channel::bounded::<()>(1);
        let consumer = w
            .builder("stop")
            .concurrency(1)
            .poller_buffer_size(3)
            .build(w.backend.clone())
            .unwrap();
        let running = w.start(consumer, move |job: Job| {
            let (started_tx, gate) = (started_tx.clone(), gate.clone());
            async move {
                let _ = started_tx.send(job.id.clone()).await;
                let _ = gate.recv().await;
                Ok(())
            }
        });
        let first = w.within("first start", started.recv()).await.unwrap();
        // Stop while the first job runs, then let it finish.
        let _ = running.stop.try_send(());
        w.clock.sleep(Duration::from_millis(100)).await;
        release.send(()).await.unwrap();
        let result = w
            .within("graceful shutdown", running.done.recv())
            .await
            .unwrap();
        result.unwrap();
        assert!(started.try_recv().is_err(), "no job started after the stop");
        let snap = w.backend.snapshot(&queue).await.unwrap();
        assert!(!snap.data.contains_key(&first), "the running job was acked");
        let left: BTreeSet<String> = ids.iter().filter(|id| **id != first).cloned().collect();
        assert_eq!(
            snap.data.keys().cloned().collect::<BTreeSet<_>>(),
            left,
            "nothing lost"
        );
        assert_eq!(
            snap.active.iter().cloned().collect::<BTreeSet<_>>(),
            left,
            "every other job is back in the active list"
        );
        assert!(
            snap.inflight.is_empty() && snap.consumers.is_empty(),
            "{snap:?}"
        );
    });
}
