//! Shared harness of the consumer tests: a consumer on a backend, its handler's events,
//! and waiting helpers that move a manual clock (never the wall clock).

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use curlyq::backend::{QueueBackend, QueueName};
use curlyq::{BoxError, ConsumeError, Consumer, ConsumerBuilder, Job, Producer};
use curlyq_testkit::{Faulty, ManualRuntime, MemoryBackend, QueueSnapshot};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// What the handler saw: a job run starting at a (virtual or real) time.
#[derive(Debug, Clone)]
pub struct Started {
    pub id: String,
    pub data: Vec<u8>,
    pub attempt: u32,
    pub at: SystemTime,
}

/// A running consumer.
pub struct Running {
    pub consumer: Consumer,
    shutdown: Option<oneshot::Sender<()>>,
    pub join: JoinHandle<Result<(), ConsumeError>>,
}

impl Running {
    pub fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Shows curlyq's logs when `CURLYQ_TEST_LOG` is set (e.g. `CURLYQ_TEST_LOG=debug`).
pub fn logs() {
    if let Ok(level) = std::env::var("CURLYQ_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(level))
            .with_test_writer()
            .try_init();
    }
}

/// Starts `consumer.run` in a task; `handler` gets each job and the start time.
pub fn start<H, Fut>(consumer: Consumer, handler: H) -> Running
where
    H: Fn(Job) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    logs();
    let (tx, rx) = oneshot::channel::<()>();
    let c = consumer.clone();
    let join = tokio::spawn(async move {
        c.run(handler, async move {
            let _ = rx.await;
        })
        .await
    });
    Running {
        consumer,
        shutdown: Some(tx),
        join,
    }
}

/// The future of a test handler.
pub type HandlerFuture = std::pin::Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

/// A handler that reports each start on a channel, then behaves as `behave` says.
pub fn reporting<F, Fut>(
    clock: Arc<dyn curlyq::runtime::Runtime>,
    behave: F,
) -> (
    impl Fn(Job) -> HandlerFuture + Send + Sync + 'static,
    mpsc::UnboundedReceiver<Started>,
)
where
    F: Fn(Job) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let behave = Arc::new(behave);
    let handler = move |job: Job| {
        let _ = tx.send(Started {
            id: job.id.clone(),
            data: job.data.clone(),
            attempt: job.attempt,
            at: clock.now(),
        });
        let fut = behave(job);
        Box::pin(fut) as HandlerFuture
    };
    (handler, rx)
}

/// A handler that reports each start (as [`reporting`] does) and then waits for a permit
/// of the returned gate: `gate.add_permits(k)` lets k running jobs succeed.
pub fn gated(
    clock: Arc<dyn curlyq::runtime::Runtime>,
) -> (
    Arc<tokio::sync::Semaphore>,
    impl Fn(Job) -> HandlerFuture + Send + Sync + 'static,
    mpsc::UnboundedReceiver<Started>,
) {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let g = gate.clone();
    let (handler, rx) = reporting(clock, move |_| {
        let g = g.clone();
        async move {
            g.acquire().await.expect("open").forget();
            Ok(())
        }
    });
    (gate, handler, rx)
}

/// A simulated world: a manual clock and an in-memory backend on it.
pub struct Sim {
    pub rt: Arc<ManualRuntime>,
    /// The model itself (for raw edits and snapshots).
    pub backend: MemoryBackend,
    /// The same backend behind the fault hooks: the consumers and the producer use this.
    pub faults: Faulty<MemoryBackend>,
    pub queue: QueueName,
    pub producer: Producer,
}

pub const START: Duration = Duration::from_secs(1_800_000_000);

impl Sim {
    pub fn new() -> Self {
        let rt = Arc::new(ManualRuntime::new(UNIX_EPOCH + START));
        let backend = MemoryBackend::with_runtime(rt.clone());
        let queue = QueueName::new("sim").unwrap();
        let faults = Faulty::new(backend.clone());
        let dyn_backend: Arc<dyn QueueBackend> = Arc::new(faults.clone());
        let producer = Producer::new(dyn_backend, "sim")
            .unwrap()
            .with_clock(rt.clone());
        Sim {
            rt,
            backend,
            faults,
            queue,
            producer,
        }
    }

    /// Pushes `n` jobs whose payloads are "0", "1", ...; returns their IDs in order.
    pub async fn push_numbered(&self, n: usize) -> Vec<String> {
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            let job = Job::new(format!("{i}"));
            ids.push(self.producer.perform(job).await.unwrap());
        }
        ids
    }

    pub fn builder(&self) -> ConsumerBuilder {
        Consumer::builder("sim").runtime(self.rt.clone())
    }

    pub fn backend_arc(&self) -> Arc<dyn QueueBackend> {
        Arc::new(self.faults.clone())
    }

    pub fn clock(&self) -> Arc<dyn curlyq::runtime::Runtime> {
        self.rt.clone()
    }

    pub fn snapshot(&self) -> QueueSnapshot {
        self.backend.snapshot(&self.queue)
    }

    pub fn now(&self) -> SystemTime {
        curlyq::runtime::Runtime::now(&*self.rt)
    }

    /// Moves the clock in `step`s (at most `max` in all) until `rx` yields an event.
    pub async fn next_event(
        &self,
        rx: &mut mpsc::UnboundedReceiver<Started>,
        step: Duration,
        max: Duration,
    ) -> Started {
        let mut moved = Duration::ZERO;
        loop {
            ManualRuntime::settle().await;
            if let Ok(ev) = rx.try_recv() {
                return ev;
            }
            assert!(
                moved <= max,
                "no handler start within {max:?} of simulated time"
            );
            self.rt.advance_and_settle(step).await;
            moved += step;
        }
    }

    /// Moves the clock in `step`s (at most `max`) until `cond` holds on the queue state.
    pub async fn until(
        &self,
        what: &str,
        step: Duration,
        max: Duration,
        cond: impl Fn(&QueueSnapshot) -> bool,
    ) {
        let mut moved = Duration::ZERO;
        loop {
            ManualRuntime::settle().await;
            if cond(&self.snapshot()) {
                return;
            }
            assert!(
                moved <= max,
                "{what}: not reached within {max:?} of simulated time; state: {:#?}",
                self.snapshot()
            );
            self.rt.advance_and_settle(step).await;
            moved += step;
        }
    }

    /// Moves the clock in `step`s until the consumer's run returns.
    pub async fn finish(
        &self,
        running: Running,
        step: Duration,
        max: Duration,
    ) -> Result<(), ConsumeError> {
        let mut moved = Duration::ZERO;
        loop {
            ManualRuntime::settle().await;
            if running.join.is_finished() {
                return running.join.await.expect("consumer task panicked");
            }
            assert!(
                moved <= max,
                "consumer did not stop within {max:?} of simulated time"
            );
            self.rt.advance_and_settle(step).await;
            moved += step;
        }
    }
}

pub async fn ok() -> Result<(), BoxError> {
    Ok(())
}

pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

pub fn unix(t: SystemTime) -> f64 {
    curlyq::runtime::unix_seconds(t)
}
