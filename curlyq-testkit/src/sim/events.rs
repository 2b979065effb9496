//! How a [`Simulation`] moves: picking the next thing that happens, delivering replies
//! and handler ends to consumers (later, when paused), carrying out their commands, and
//! landing their calls on the backend with latency and faults.

use std::time::{Duration, SystemTime};

use curlyq_core::consumer::{BackendCall, CallId, Command, HandlerResult, Input, Reply, RunId};
use curlyq_core::{BackendError, CancelReason, Job};
use futures::executor::block_on;
use rand::Rng;

use super::script::{operation, settled_ids};
use super::world::{Event, MAX_STEPS_AT_ONE_TIME};
use super::{CallRecord, FaultKind, HandlerScript, NodeId, RunRecord, Simulation};
use crate::{InjectedFailure, Operation};

impl Simulation {
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
    pub(super) fn deliver(&mut self, node: NodeId, input: Input) {
        let n = &mut self.nodes[node.0];
        if n.crashed || n.result.is_some() {
            return;
        }
        n.core.handle(self.now, input);
        self.drain(node);
    }

    /// Carries out `node`'s commands.
    pub(super) fn drain(&mut self, node: NodeId) {
        while let Some(command) = self.nodes[node.0].core.poll_command() {
            match command {
                Command::Call { id, call } => self.send(node, id, call),
                Command::CancelWait { id } => {
                    self.parked.retain(|p| *p != (node, id));
                    self.cancelled_waits.insert((node, id));
                }
                Command::StartHandler { run, job, .. } => self.start_run(node, run, job),
                // A handler that stops on the shutdown signal has its job given back
                // (it may run again, as after a grace-period drop); scripted handlers
                // do not watch the signal, but their scripted end may come before the
                // drop.
                Command::SignalCancel {
                    run,
                    reason: CancelReason::Shutdown,
                } => {
                    if let Some(job_id) = self.nodes[node.0].runs.get(&run) {
                        self.exposed.insert(job_id.clone());
                    }
                }
                Command::SignalCancel { .. } => {}
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
                if self.backend.inner().signal(&self.queue) {
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
            for job in &taken.jobs {
                n.held.insert(job.id.clone());
                if exposed {
                    self.exposed.insert(job.id.clone());
                }
            }
        }
    }

    /// A fault hit `node`: every job it holds may run again, and so may those it takes
    /// within the exposure window.
    pub(super) fn fault_hit(&mut self, node: NodeId) {
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
    pub(super) fn wake_parked(&mut self) {
        if self.parked.is_empty() || !self.backend.inner().signal(&self.queue) {
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

    pub(super) fn at(&mut self, at: SystemTime, event: Event) {
        self.seq += 1;
        self.events.insert((at, self.seq), event);
    }
}

fn injected(operation: Operation, applied: bool) -> BackendError {
    InjectedFailure { operation, applied }.into_error()
}
