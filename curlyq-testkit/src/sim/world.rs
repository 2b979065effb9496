//! [`Simulation`]: the event queue, the consumers, and the backend they share.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use curlyq_core::consumer::{
    BackendCall, CallId, Command, ConsumerCore, ConsumerStats, HandlerResult, Input, Reply, RunId,
};
use curlyq_core::{
    BackendError, ConsumeError, ConsumerId, ConsumerOptions, EncodedJob, Job, QueueBackend,
    QueueName, QueueSnapshot, ScheduledJob,
};
use futures::executor::block_on;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::script::{operation, settled_ids};
use super::{CallRecord, FaultKind, Faults, HandlerScript, NodeId, RunRecord};
use crate::{InjectedFailure, MemoryBackend, Operation};

/// The simulation's start: 2027-01-15, Unix seconds 1,800,000,000.
const START: Duration = Duration::from_secs(1_800_000_000);

/// Most steps at one instant before the simulation calls it a livelock.
const MAX_STEPS_AT_ONE_TIME: u32 = 100_000;

type Script = Arc<dyn Fn(&Job) -> HandlerScript + Send + Sync>;

/// Something that happens at a time.
enum Event {
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
    fn recipient(&self) -> Option<NodeId> {
        match self {
            Event::Reply { node, .. }
            | Event::HandlerDone { node, .. }
            | Event::Shutdown { node } => Some(*node),
            Event::Land { .. } | Event::WaitTimeout { .. } => None,
        }
    }
}

struct Node {
    core: ConsumerCore,
    script: Script,
    crashed: bool,
    paused_until: Option<SystemTime>,
    result: Option<Result<(), ConsumeError>>,
    /// Hanging runs (job ID, run), oldest first.
    hanging: Vec<(String, RunId)>,
    /// Runs in progress: run -> job ID.
    runs: HashMap<RunId, String>,
    /// Jobs taken by this consumer and not yet settled by it.
    held: HashSet<String>,
    /// Jobs it takes until then may run twice because of a fault.
    exposed_until: Option<SystemTime>,
}

/// Consumer cores and a [`MemoryBackend`] on simulated time (see the [module
/// docs](super)).
pub struct Simulation {
    backend: MemoryBackend,
    queue: QueueName,
    now: SystemTime,
    rng: StdRng,
    faults: Faults,
    planned: Vec<(Option<NodeId>, Operation, FaultKind)>,
    nodes: Vec<Node>,
    events: BTreeMap<(SystemTime, u64), Event>,
    seq: u64,
    /// Blocking waits that have landed and wait for the signal: (node, call).
    parked: Vec<(NodeId, CallId)>,
    cancelled_waits: HashSet<(NodeId, CallId)>,
    runs: Vec<RunRecord>,
    calls: Vec<CallRecord>,
    successes: HashMap<String, usize>,
    exposed: HashSet<String>,
    exposure_window: Duration,
    steps_at_now: u32,
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
            backend: MemoryBackend::new(),
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

    /// The backend the consumers share.
    pub fn backend(&self) -> &MemoryBackend {
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
        self.backend.snapshot(&self.queue)
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

    /// Runs until nothing more can happen or `max` of simulated time passed; returns
    /// whether `cond` came true (checked after every step).
    pub fn run_until(&mut self, max: Duration, mut cond: impl FnMut(&Self) -> bool) -> bool {
        let deadline = self.now + max;
        loop {
            if cond(self) {
                return true;
            }
            if !self.step_before(deadline) {
                self.now = self.now.max(deadline);
                return cond(self);
            }
        }
    }

    /// Runs for `duration` of simulated time.
    pub fn run_for(&mut self, duration: Duration) {
        self.run_until(duration, |_| false);
    }

    /// Does the next thing that happens, if it happens by `deadline`; returns whether
    /// anything happened.
    ///
    /// # Panics
    /// On a livelock: more than 100,000 steps without time moving.
    pub fn step_before(&mut self, deadline: SystemTime) -> bool {
        let Some(at) = self.next_time() else {
            return false;
        };
        if at > deadline {
            return false;
        }
        if at > self.now {
            self.now = at;
            self.steps_at_now = 0;
        }
        self.steps_at_now += 1;
        assert!(
            self.steps_at_now < MAX_STEPS_AT_ONE_TIME,
            "livelock: {MAX_STEPS_AT_ONE_TIME} steps at {:?} without time moving",
            self.elapsed()
        );
        let first_event = self.events.first_key_value().map(|(k, _)| *k);
        match first_event {
            Some(key) if key.0 <= self.now => {
                if let Some(event) = self.events.remove(&key) {
                    self.happen(event);
                }
            }
            _ => {
                for i in 0..self.nodes.len() {
                    if self.timer_due(NodeId(i)) {
                        self.deliver(NodeId(i), Input::Timeout);
                    }
                }
            }
        }
        true
    }

    fn next_time(&self) -> Option<SystemTime> {
        let timers = (0..self.nodes.len()).filter_map(|i| self.timer_of(NodeId(i)));
        self.events
            .keys()
            .next()
            .map(|k| k.0)
            .into_iter()
            .chain(timers)
            .min()
    }

    /// When `node` must be woken next (never before its pause ends).
    fn timer_of(&self, node: NodeId) -> Option<SystemTime> {
        let n = &self.nodes[node.0];
        if n.crashed || n.result.is_some() {
            return None;
        }
        let at = n.core.poll_timeout()?;
        Some(n.paused_until.map_or(at, |p| at.max(p)))
    }

    fn timer_due(&self, node: NodeId) -> bool {
        self.timer_of(node).is_some_and(|at| at <= self.now)
    }

    fn happen(&mut self, event: Event) {
        if let Some(node) = event.recipient() {
            if let Some(until) = self.nodes[node.0].paused_until.filter(|u| *u > self.now) {
                return self.at(until, event);
            }
        }
        match event {
            Event::Land {
                node,
                call,
                what,
                fault,
            } => self.land(node, call, what, fault),
            Event::Reply { node, call, result } => {
                self.deliver(node, Input::Reply { call, result });
            }
            Event::WaitTimeout { node, call } => {
                if let Some(i) = self.parked.iter().position(|p| *p == (node, call)) {
                    self.parked.remove(i);
                    self.reply(node, call, Ok(Reply::Signal(false)));
                }
            }
            Event::HandlerDone { node, run, result } => {
                let n = &mut self.nodes[node.0];
                let Some(job_id) = n.runs.remove(&run) else {
                    return;
                };
                if result == HandlerResult::Succeeded {
                    *self.successes.entry(job_id).or_default() += 1;
                }
                self.deliver(node, Input::HandlerFinished { run, result });
            }
            Event::Shutdown { node } => self.deliver(node, Input::Shutdown),
        }
    }

    /// Feeds `input` to `node` (never, if it crashed or stopped).
    fn deliver(&mut self, node: NodeId, input: Input) {
        let n = &mut self.nodes[node.0];
        if n.crashed || n.result.is_some() {
            return;
        }
        n.core.handle(self.now, input);
        self.drain(node);
    }

    /// Carries out `node`'s commands.
    fn drain(&mut self, node: NodeId) {
        while let Some(command) = self.nodes[node.0].core.poll_command() {
            match command {
                Command::Call { id, call } => self.send(node, id, call),
                Command::CancelWait { id } => {
                    self.parked.retain(|p| *p != (node, id));
                    self.cancelled_waits.insert((node, id));
                }
                Command::StartHandler { run, job } => self.start_run(node, run, job),
                Command::CancelHandler { run } => {
                    let n = &mut self.nodes[node.0];
                    if let Some(job_id) = n.runs.remove(&run) {
                        n.hanging.retain(|(_, r)| *r != run);
                        self.exposed.insert(job_id);
                    }
                }
                Command::Finished(result) => {
                    self.nodes[node.0].result = Some(result);
                    self.parked.retain(|(p, _)| *p != node);
                }
                _ => {}
            }
        }
    }

    fn send(&mut self, node: NodeId, call: CallId, what: BackendCall) {
        let op = operation(&what);
        let planned = self
            .planned
            .iter()
            .position(|(n, o, _)| *o == op && n.is_none_or(|n| n == node));
        let fault = match planned {
            Some(i) => Some(self.planned.remove(i).2),
            None => {
                let r: f64 = self.rng.random();
                if r < self.faults.fail {
                    Some(FaultKind::Fail)
                } else if r < self.faults.fail + self.faults.lose_reply {
                    Some(FaultKind::LoseReply)
                } else {
                    None
                }
            }
        };
        let at = self.now + self.latency();
        self.at(
            at,
            Event::Land {
                node,
                call,
                what,
                fault,
            },
        );
    }

    fn land(&mut self, node: NodeId, call: CallId, what: BackendCall, fault: Option<FaultKind>) {
        let operation = operation(&what);
        let (settled, jobs) = settled_ids(&what);
        self.calls.push(CallRecord {
            node,
            operation,
            at: self.now,
            jobs,
            fault,
        });
        if self.cancelled_waits.remove(&(node, call)) {
            return;
        }
        if fault.is_some() {
            self.fault_hit(node);
        }
        if fault == Some(FaultKind::Fail) {
            let err = injected(operation, false);
            return self.reply(node, call, Err(err));
        }
        let result = match what {
            BackendCall::Wait { timeout, .. } => {
                if self.backend.signal(&self.queue) {
                    Ok(Reply::Signal(true))
                } else {
                    self.parked.push((node, call));
                    let at = self.now + timeout;
                    return self.at(at, Event::WaitTimeout { node, call });
                }
            }
            other => block_on(other.execute(&self.backend, &self.queue)),
        };
        self.track_holdings(node, &settled, &result);
        self.wake_parked();
        let result = match fault {
            Some(_) => Err(injected(operation, true)),
            None => result,
        };
        self.reply(node, call, result);
    }

    /// Keeps `held` (and exposure) up to date with what `node` took and settled.
    fn track_holdings(
        &mut self,
        node: NodeId,
        settled: &[String],
        result: &Result<Reply, BackendError>,
    ) {
        let now = self.now;
        let n = &mut self.nodes[node.0];
        for id in settled {
            n.held.remove(id);
        }
        if let Ok(Reply::Taken(taken)) = result {
            let exposed = n.exposed_until.is_some_and(|u| now <= u);
            for job in taken {
                n.held.insert(job.id.clone());
                if exposed {
                    self.exposed.insert(job.id.clone());
                }
            }
        }
    }

    /// A fault hit `node`: every job it holds may run again, and so may those it takes
    /// within the exposure window.
    fn fault_hit(&mut self, node: NodeId) {
        let until = self.now + self.exposure_window;
        let n = &mut self.nodes[node.0];
        n.exposed_until = Some(until);
        self.exposed.extend(n.held.iter().cloned());
    }

    fn reply(&mut self, node: NodeId, call: CallId, result: Result<Reply, BackendError>) {
        let at = self.now + self.latency();
        self.at(at, Event::Reply { node, call, result });
    }

    /// Ends every parked wait if the signal is set.
    fn wake_parked(&mut self) {
        if self.parked.is_empty() || !self.backend.signal(&self.queue) {
            return;
        }
        for (node, call) in std::mem::take(&mut self.parked) {
            self.reply(node, call, Ok(Reply::Signal(true)));
        }
    }

    fn start_run(&mut self, node: NodeId, run: RunId, job: Job) {
        self.runs.push(RunRecord {
            node,
            job_id: job.id.clone(),
            attempt: job.attempt,
            data: job.data.clone(),
            at: self.now,
        });
        let n = &mut self.nodes[node.0];
        n.runs.insert(run, job.id.clone());
        match (n.script)(&job) {
            HandlerScript::End { after, result } => {
                let at = self.now + after;
                self.at(at, Event::HandlerDone { node, run, result });
            }
            HandlerScript::Hang => {
                n.hanging.push((job.id, run));
            }
        }
    }

    fn latency(&mut self) -> Duration {
        let max = self.faults.latency.as_nanos() as u64;
        if max == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.rng.random_range(0..=max))
    }

    fn at(&mut self, at: SystemTime, event: Event) {
        self.seq += 1;
        self.events.insert((at, self.seq), event);
    }
}

fn injected(operation: Operation, applied: bool) -> BackendError {
    BackendError::Unavailable(Box::new(InjectedFailure { operation, applied }))
}
