//! [`Simulation`]: the event queue, the consumers, and the backend they share.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use curlyq_core::consumer::{
    BackendCall, CallId, ConsumerCore, ConsumerStats, HandlerResult, Reply, RunId,
};
use curlyq_core::{
    BackendError, ConsumeError, ConsumerId, ConsumerOptions, EncodedJob, Job, QueueBackend,
    QueueName, QueueSnapshot, ScheduledJob,
};
use futures::executor::block_on;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{CallRecord, FaultKind, Faults, HandlerScript, NodeId, RunRecord};
use crate::{Faulty, MemoryBackend, Operation};

/// The simulation's start: 2027-01-15, Unix seconds 1,800,000,000.
pub(super) const START: Duration = Duration::from_secs(1_800_000_000);

/// Most steps at one instant before the simulation calls it a livelock.
pub(super) const MAX_STEPS_AT_ONE_TIME: u32 = 100_000;

type Script = Arc<dyn Fn(&Job) -> HandlerScript + Send + Sync>;

/// Something that happens at a time.
pub(super) enum Event {
    /// A call reaches the store: carried out (or failed) now.
    Land {
        node: NodeId,
        call: CallId,
        what: BackendCall,
        fault: Option<FaultKind>,
    },
    /// A reply reaches its consumer.
    Reply {
        node: NodeId,
        call: CallId,
        result: Result<Reply, BackendError>,
    },
    /// A blocking wait times out (ignored if it ended earlier).
    WaitTimeout { node: NodeId, call: CallId },
    /// A handler run ends.
    HandlerDone {
        node: NodeId,
        run: RunId,
        result: HandlerResult,
    },
    /// The application asks a consumer to shut down.
    Shutdown { node: NodeId },
}

impl Event {
    /// The consumer this event reaches (a paused one gets it once the pause ends);
    /// `None` for what happens in the store.
    pub(super) fn recipient(&self) -> Option<NodeId> {
        match self {
            Event::Reply { node, .. }
            | Event::HandlerDone { node, .. }
            | Event::Shutdown { node } => Some(*node),
            Event::Land { .. } | Event::WaitTimeout { .. } => None,
        }
    }
}

pub(super) struct Node {
    pub(super) core: ConsumerCore,
    pub(super) script: Script,
    pub(super) crashed: bool,
    pub(super) paused_until: Option<SystemTime>,
    pub(super) result: Option<Result<(), ConsumeError>>,
    /// Hanging runs (job ID, run), oldest first.
    pub(super) hanging: Vec<(String, RunId)>,
    /// Runs in progress: run -> job ID.
    pub(super) runs: HashMap<RunId, String>,
    /// Jobs taken by this consumer and not yet settled by it.
    pub(super) held: HashSet<String>,
    /// Jobs it takes until then may run twice because of a fault.
    pub(super) exposed_until: Option<SystemTime>,
}

/// Consumer cores and a [`MemoryBackend`] on simulated time (see the [module
/// docs](super)).
pub struct Simulation {
    pub(super) backend: Faulty<MemoryBackend>,
    pub(super) queue: QueueName,
    pub(super) now: SystemTime,
    pub(super) rng: StdRng,
    pub(super) faults: Faults,
    pub(super) planned: Vec<(Option<NodeId>, Operation, FaultKind)>,
    pub(super) nodes: Vec<Node>,
    pub(super) events: BTreeMap<(SystemTime, u64), Event>,
    pub(super) seq: u64,
    /// Blocking waits that have landed and wait for the signal: (node, call).
    pub(super) parked: Vec<(NodeId, CallId)>,
    pub(super) cancelled_waits: HashSet<(NodeId, CallId)>,
    pub(super) runs: Vec<RunRecord>,
    pub(super) calls: Vec<CallRecord>,
    pub(super) successes: HashMap<String, usize>,
    pub(super) exposed: HashSet<String>,
    pub(super) exposure_window: Duration,
    pub(super) steps_at_now: u32,
}

impl std::fmt::Debug for Simulation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulation")
            .field("queue", &self.queue)
            .field("elapsed", &self.elapsed())
            .field("nodes", &self.nodes.len())
            .field("events", &self.events.len())
            .finish_non_exhaustive()
    }
}

impl Simulation {
    /// An empty queue named `queue`, no consumers, no faults; everything random drawn
    /// from `seed`.
    ///
    /// # Panics
    /// If `queue` is empty.
    pub fn new(queue: &str, seed: u64) -> Self {
        Simulation {
            backend: Faulty::new(MemoryBackend::new()),
            queue: QueueName::new(queue).expect("a queue name"),
            now: UNIX_EPOCH + START,
            rng: StdRng::seed_from_u64(seed),
            faults: Faults::default(),
            planned: Vec::new(),
            nodes: Vec::new(),
            events: BTreeMap::new(),
            seq: 0,
            parked: Vec::new(),
            cancelled_waits: HashSet::new(),
            runs: Vec::new(),
            calls: Vec::new(),
            successes: HashMap::new(),
            exposed: HashSet::new(),
            exposure_window: Duration::from_secs(600),
            steps_at_now: 0,
        }
    }

    /// Sets the random faults and latency of every later call.
    pub fn set_faults(&mut self, faults: Faults) {
        self.faults = faults;
    }

    /// Makes the next `operation` call (of `node`, or of any consumer) hit by `kind`.
    pub fn inject(&mut self, node: Option<NodeId>, operation: Operation, kind: FaultKind) {
        self.planned.push((node, operation, kind));
    }

    /// How long after a fault hits a consumer the jobs it takes count as exposed to it
    /// (see [`is_exposed`](Self::is_exposed)). Default 10 minutes.
    pub fn set_exposure_window(&mut self, window: Duration) {
        self.exposure_window = window;
    }

    /// The backend the consumers share (the model itself: calls on it bypass the fault
    /// hooks).
    pub fn backend(&self) -> &MemoryBackend {
        self.backend.inner()
    }

    /// The consumers' backend behind its fault hooks: every call of a consumer (and of
    /// [`push`](Self::push) and [`schedule`](Self::schedule)) goes through them, so
    /// [`Faulty::set_failing`] and friends act on the consumers, and
    /// [`Faulty::calls`] counts their calls.
    pub fn faulty(&self) -> &Faulty<MemoryBackend> {
        &self.backend
    }

    /// The queue.
    pub fn queue(&self) -> &QueueName {
        &self.queue
    }

    /// The simulated time.
    pub fn now(&self) -> SystemTime {
        self.now
    }

    /// Simulated time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now
            .duration_since(UNIX_EPOCH + START)
            .unwrap_or(Duration::ZERO)
    }

    /// The queue's state.
    pub fn snapshot(&self) -> QueueSnapshot {
        self.backend.inner().snapshot(&self.queue)
    }

    /// Pushes `job` now (as a producer would); returns its ID. A duplicate ID is left
    /// untouched.
    pub fn push(&mut self, job: Job) -> String {
        let encoded = EncodedJob {
            id: job.id.clone(),
            data: job.encode(),
        };
        let _ = block_on(self.backend.push(&self.queue, &[encoded]));
        self.wake_parked();
        job.id
    }

    /// Schedules `job` to run at `at`; returns its ID.
    pub fn schedule(&mut self, job: Job, at: SystemTime) -> String {
        let scheduled = ScheduledJob {
            job: EncodedJob {
                id: job.id.clone(),
                data: job.encode(),
            },
            at: curlyq_core::unix_seconds(at),
        };
        let _ = block_on(self.backend.schedule(&self.queue, &[scheduled]));
        self.wake_parked();
        job.id
    }

    /// Starts a consumer with `options` whose handler runs behave as `script` says.
    ///
    /// # Panics
    /// If an option is out of range.
    pub fn start_consumer(
        &mut self,
        options: ConsumerOptions,
        script: impl Fn(&Job) -> HandlerScript + Send + Sync + 'static,
    ) -> NodeId {
        let seed = self.rng.random();
        let core = ConsumerCore::new(self.queue.clone(), options, seed, self.now)
            .expect("valid consumer options");
        let node = NodeId(self.nodes.len());
        self.nodes.push(Node {
            core,
            script: Arc::new(script),
            crashed: false,
            paused_until: None,
            result: None,
            hanging: Vec::new(),
            runs: HashMap::new(),
            held: HashSet::new(),
            exposed_until: None,
        });
        self.drain(node);
        node
    }

    /// Asks `node` to shut down gracefully (now, or when its pause ends).
    pub fn shutdown(&mut self, node: NodeId) {
        let now = self.now;
        self.at(now, Event::Shutdown { node });
    }

    /// Kills `node` at once (SIGKILL): its calls in flight still land, nothing reaches
    /// it any more, its consumer ID stays registered until it expires.
    pub fn crash(&mut self, node: NodeId) {
        self.fault_hit(node);
        let n = &mut self.nodes[node.0];
        n.crashed = true;
        n.hanging.clear();
        n.runs.clear();
        self.parked.retain(|(p, _)| *p != node);
    }

    /// Stops `node` for `duration` (a paused process): replies, handler ends and timers
    /// reach it only afterwards.
    pub fn pause(&mut self, node: NodeId, duration: Duration) {
        self.fault_hit(node);
        let until = self.now + duration;
        let n = &mut self.nodes[node.0];
        n.paused_until = Some(n.paused_until.map_or(until, |u| u.max(until)));
    }

    /// Ends the hanging run of `job_id` on `node` with `result` (the oldest, if the job
    /// hangs there twice: a stale delivery and a newer one); whether there was one.
    pub fn complete(&mut self, node: NodeId, job_id: &str, result: HandlerResult) -> bool {
        let hanging = &mut self.nodes[node.0].hanging;
        let Some(i) = hanging.iter().position(|(id, _)| id == job_id) else {
            return false;
        };
        let (_, run) = hanging.remove(i);
        let at = self.now;
        self.at(at, Event::HandlerDone { node, run, result });
        true
    }

    /// A dump of `node`'s core state, for failure messages.
    pub fn describe(&self, node: NodeId) -> String {
        format!("{:#?}", self.nodes[node.0].core)
    }

    /// Whether `node` has stopped (by itself, or shut down).
    pub fn is_finished(&self, node: NodeId) -> bool {
        self.nodes[node.0].result.is_some()
    }

    /// What `node`'s run returned, once it stopped.
    pub fn result(&self, node: NodeId) -> Option<&Result<(), ConsumeError>> {
        self.nodes[node.0].result.as_ref()
    }

    /// `node`'s counters.
    pub fn stats(&self, node: NodeId) -> ConsumerStats {
        self.nodes[node.0].core.stats()
    }

    /// The consumer ID `node` is registered under, while it runs.
    pub fn consumer_id(&self, node: NodeId) -> Option<ConsumerId> {
        let n = &self.nodes[node.0];
        if n.crashed {
            return None;
        }
        n.core.consumer_id().cloned()
    }

    /// Whether `node`'s core is running handlers right now, and how many.
    pub fn running_handlers(&self, node: NodeId) -> usize {
        self.nodes[node.0].core.running_handlers()
    }

    /// Every handler run started so far, in order.
    pub fn runs(&self) -> &[RunRecord] {
        &self.runs
    }

    /// The runs of one job.
    pub fn runs_of(&self, job_id: &str) -> Vec<&RunRecord> {
        self.runs.iter().filter(|r| r.job_id == job_id).collect()
    }

    /// Every backend call that landed (or failed), in order.
    pub fn calls(&self) -> &[CallRecord] {
        &self.calls
    }

    /// How many `operation` calls landed (or failed).
    pub fn call_count(&self, operation: Operation) -> usize {
        self.calls
            .iter()
            .filter(|c| c.operation == operation)
            .count()
    }

    /// How many runs of `job_id` succeeded (and reached their consumer).
    pub fn successes(&self, job_id: &str) -> usize {
        self.successes.get(job_id).copied().unwrap_or(0)
    }

    /// Whether a fault (a crash, a pause, a failed call or a lost reply of the consumer
    /// holding it, or its run cancelled at the end of a grace period) may have made
    /// `job_id` run more than once.
    pub fn is_exposed(&self, job_id: &str) -> bool {
        self.exposed.contains(job_id)
    }
}
