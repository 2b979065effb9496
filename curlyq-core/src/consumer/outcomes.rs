//! The processor's recording side: finished jobs' outcomes (ack, retry, kill) written in
//! batches, one call per kind and consumer ID. Up to [`FLUSHES`] batches are in flight at
//! once; whatever finishes while they are being written goes in the next one (a group
//! commit). Nothing waits for a timer, so a lone outcome is written at once, and the jobs
//! that finish just after it do not wait for its reply. A failed batch is retried with
//! backoff (every outcome acts only on jobs still owned, so a resend is harmless); while
//! one waits to be resent no new batch starts.

use std::time::SystemTime;

use tracing::{info, warn};

use crate::backend::{ConsumerId, KillJob, RetryJob};
use crate::error::{BackendError, LoopName};
use crate::options::ConsumerOptions;

use super::calls::unexpected;
use super::calls::Purpose;
use super::machine::ConsumerCore;
use super::policy::{group_by, LoopBackoff};
use super::protocol::{BackendCall, Reply, RunId};

/// At most this many outcomes go into one flush (one call per kind and consumer ID).
pub(super) const OUTCOME_BATCH: usize = 512;

/// At most this many flushes are in flight at once. With one, the outcomes that finish
/// just after a lone one wait a whole round trip for its reply before they are sent, with
/// their handler slots taken meanwhile; two let them go at once while still grouping
/// whatever finishes during a round trip.
pub(super) const FLUSHES: usize = 2;

/// What to record when a job's run ended.
#[derive(Debug)]
pub(super) enum Outcome {
    Ack(String),
    Retry(RetryJob),
    Kill(KillJob),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ack,
    Retry,
    Kill,
}

impl Outcome {
    fn kind(&self) -> Kind {
        match self {
            Outcome::Ack(_) => Kind::Ack,
            Outcome::Retry(_) => Kind::Retry,
            Outcome::Kill(_) => Kind::Kill,
        }
    }
}

/// An outcome waiting to be recorded, and the slot it frees once recorded.
#[derive(Debug)]
pub(super) struct Submitted {
    run: RunId,
    consumer: ConsumerId,
    outcome: Outcome,
}

/// Outcomes of one kind for one consumer ID: one backend call.
#[derive(Debug)]
struct Group {
    consumer: ConsumerId,
    kind: Kind,
    members: Vec<Submitted>,
    /// An earlier attempt failed: it may have landed with its reply lost.
    resent: bool,
}

/// One batch being written.
#[derive(Debug)]
struct Flush {
    id: u64,
    /// By call index; taken out as replies come.
    groups: Vec<Option<Group>>,
    outstanding: usize,
    failed: Vec<Group>,
    error: Option<BackendError>,
}

/// The processor's outcome recording state.
#[derive(Debug)]
pub(super) struct Outcomes {
    queue: Vec<Submitted>,
    /// The flushes in flight (at most [`FLUSHES`]).
    flushes: Vec<Flush>,
    /// Groups whose write failed, to resend at `retry_at` (one backoff for them all).
    failed: Vec<Group>,
    /// When to resend the failed groups.
    pub(super) retry_at: Option<SystemTime>,
    next_flush: u64,
    backoff: LoopBackoff,
}

impl Outcomes {
    pub(super) fn new(o: &ConsumerOptions) -> Self {
        Outcomes {
            queue: Vec::new(),
            flushes: Vec::new(),
            failed: Vec::new(),
            retry_at: None,
            next_flush: 0,
            backoff: LoopBackoff::new(
                LoopName::Processor,
                o.processor_max_attempts,
                o.processor_max_backoff,
            ),
        }
    }

    /// Whether anything waits to be recorded or is being recorded.
    pub(super) fn is_busy(&self) -> bool {
        !self.queue.is_empty() || !self.flushes.is_empty() || !self.failed.is_empty()
    }
}

/// `batch` as one group per kind and consumer ID, in first-seen order.
fn groups_of(batch: Vec<Submitted>, resent: bool) -> Vec<Group> {
    group_by(batch, |s| (s.outcome.kind(), &s.consumer))
        .into_iter()
        .map(|members| Group {
            consumer: members[0].consumer.clone(),
            kind: members[0].outcome.kind(),
            members,
            resent,
        })
        .collect()
}

impl ConsumerCore {
    /// Queues the outcome of `run` (its slot stays taken until it is recorded).
    pub(super) fn submit(&mut self, run: RunId, consumer: ConsumerId, outcome: Outcome) {
        self.outcomes.queue.push(Submitted {
            run,
            consumer,
            outcome,
        });
    }

    pub(super) fn drive_outcomes(&mut self) {
        if !self.outcomes.failed.is_empty() {
            if self.fatal.is_some() {
                // The consumer is going away after a fatal error: stop retrying.
                return self.give_up_failed();
            }
            if !self.due(self.outcomes.retry_at) {
                return;
            }
            self.outcomes.retry_at = None;
            // Groups of several failed flushes go together again (one call per kind and
            // consumer ID).
            let failed = std::mem::take(&mut self.outcomes.failed);
            let members = failed.into_iter().flat_map(|g| g.members).collect();
            self.send_groups(groups_of(members, true));
        }
        while self.outcomes.flushes.len() < FLUSHES && !self.outcomes.queue.is_empty() {
            let n = self.outcomes.queue.len().min(OUTCOME_BATCH);
            let batch: Vec<Submitted> = self.outcomes.queue.drain(..n).collect();
            self.send_groups(groups_of(batch, false));
        }
    }

    fn send_groups(&mut self, groups: Vec<Group>) {
        let id = self.outcomes.next_flush;
        self.outcomes.next_flush += 1;
        let mut flush = Flush {
            id,
            groups: Vec::with_capacity(groups.len()),
            outstanding: groups.len(),
            failed: Vec::new(),
            error: None,
        };
        for (index, group) in groups.into_iter().enumerate() {
            let call = self.record_call(&group);
            self.call(
                call,
                Purpose::Outcome {
                    flush: id,
                    group: index,
                },
            );
            flush.groups.push(Some(group));
        }
        self.outcomes.flushes.push(flush);
    }

    fn record_call(&self, g: &Group) -> BackendCall {
        let consumer = g.consumer.clone();
        let (mut ids, mut retries, mut kills) = (Vec::new(), Vec::new(), Vec::new());
        // A group holds one kind, so only one of these fills.
        for m in &g.members {
            match &m.outcome {
                Outcome::Ack(id) => ids.push(id.clone()),
                Outcome::Retry(job) => retries.push(job.clone()),
                Outcome::Kill(job) => kills.push(job.clone()),
            }
        }
        let now = self.unix_now();
        match g.kind {
            Kind::Ack => BackendCall::Ack { consumer, ids, now },
            Kind::Retry => BackendCall::Retry {
                consumer,
                jobs: retries,
                now,
            },
            Kind::Kill => BackendCall::Kill {
                consumer,
                jobs: kills,
                now,
            },
        }
    }

    pub(super) fn on_recorded(
        &mut self,
        flush: u64,
        index: usize,
        result: Result<Reply, BackendError>,
    ) {
        let Some(at) = self.outcomes.flushes.iter().position(|f| f.id == flush) else {
            return;
        };
        let Some(group) = self.outcomes.flushes[at]
            .groups
            .get_mut(index)
            .and_then(Option::take)
        else {
            return;
        };
        self.outcomes.flushes[at].outstanding -= 1;
        match result {
            Ok(Reply::Owned(owned)) => self.recorded(group, &owned),
            other => {
                let err = match other {
                    Ok(reply) => unexpected(&reply),
                    Err(e) => e,
                };
                let f = &mut self.outcomes.flushes[at];
                f.failed.push(Group {
                    resent: true,
                    ..group
                });
                f.error = Some(err);
            }
        }
        // `recorded` changes no flush, so `at` still points at this one.
        if self.outcomes.flushes[at].outstanding > 0 {
            return;
        }
        let done = self.outcomes.flushes.swap_remove(at);
        let Some(err) = done.error else {
            if self.outcomes.failed.is_empty() {
                self.outcomes.backoff.ok();
            }
            return;
        };
        // A failure while another waits to be resent joins it: one outage, one backoff.
        let waiting = !self.outcomes.failed.is_empty();
        self.outcomes.failed.extend(done.failed);
        if waiting {
            return;
        }
        match self.outcomes.backoff.failed(err, &mut self.rng) {
            Ok(delay) => self.outcomes.retry_at = self.after(delay),
            Err(fatal) => {
                self.give_up_failed();
                self.abort(fatal);
            }
        }
    }

    /// Counts a recorded group and frees its slots.
    fn recorded(&mut self, group: Group, owned: &[bool]) {
        let n = group.members.len();
        let mine = owned.iter().take(n).filter(|o| **o).count() as u64;
        let stats = &mut self.stats;
        match group.kind {
            Kind::Ack => stats.succeeded += mine,
            Kind::Retry => stats.retried += mine,
            Kind::Kill => stats.killed += mine,
        }
        let lost = n as u64 - mine;
        if lost > 0 {
            stats.not_owned += lost;
            if group.resent {
                info!(queue = %self.queue, consumer = %group.consumer, jobs = lost,
                    "curlyq job outcome found already settled: most likely an earlier attempt landed and only its reply was lost (else the consumer was reaped and the job may run again)");
            } else {
                warn!(queue = %self.queue, consumer = %group.consumer, jobs = lost,
                    "curlyq job outcome ignored: the job is no longer owned by this consumer (it was reaped; the job may run again)");
            }
        }
        if group.kind == Kind::Retry && mine > 0 {
            // A retry may be due before the scheduler's next wake-up.
            self.wake_scheduler();
        }
        for m in group.members {
            self.free_slot(m.run);
        }
    }

    /// Leaves the failed outcomes unrecorded and frees their slots. The jobs are not
    /// lost: once this consumer's heartbeat expires a custodian requeues them.
    fn give_up_failed(&mut self) {
        self.outcomes.retry_at = None;
        let failed = std::mem::take(&mut self.outcomes.failed);
        let jobs: usize = failed.iter().map(|g| g.members.len()).sum();
        warn!(queue = %self.queue, jobs,
            "curlyq consumer stopping after a fatal error; job outcomes were not recorded and the jobs will run again");
        for group in failed {
            for m in group.members {
                self.free_slot(m.run);
            }
        }
    }
}
