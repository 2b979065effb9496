//! The processor's recording side: finished jobs' outcomes (ack, retry, kill) written in
//! batches. Whatever finished while the previous batch was being written goes in the
//! next one (a group commit), one call per kind and consumer ID; nothing waits for a
//! timer, so a lone outcome is written at once. A failed batch is retried with backoff
//! (every outcome acts only on jobs still owned, so a resend is harmless).

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
#[derive(Debug, Default)]
struct Flush {
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
    flush: Option<Flush>,
    /// When to resend the failed groups of the current flush.
    pub(super) retry_at: Option<SystemTime>,
    backoff: LoopBackoff,
}

impl Outcomes {
    pub(super) fn new(o: &ConsumerOptions) -> Self {
        Outcomes {
            queue: Vec::new(),
            flush: None,
            retry_at: None,
            backoff: LoopBackoff::new(
                LoopName::Processor,
                o.processor_max_attempts,
                o.processor_max_backoff,
            ),
        }
    }

    /// Whether anything waits to be recorded or is being recorded.
    pub(super) fn is_busy(&self) -> bool {
        !self.queue.is_empty() || self.flush.is_some()
    }
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
        if let Some(flush) = &self.outcomes.flush {
            if flush.outstanding > 0 {
                return;
            }
            if self.fatal.is_some() {
                // The consumer is going away after a fatal error: stop retrying.
                return self.give_up_flush();
            }
            if self.due(self.outcomes.retry_at) {
                self.outcomes.retry_at = None;
                let failed = self.outcomes.flush.take().map(|f| f.failed);
                self.send_groups(failed.unwrap_or_default());
            }
            return;
        }
        if self.outcomes.queue.is_empty() {
            return;
        }
        let n = self.outcomes.queue.len().min(OUTCOME_BATCH);
        let batch: Vec<Submitted> = self.outcomes.queue.drain(..n).collect();
        let groups = group_by(batch, |s| (s.outcome.kind(), &s.consumer))
            .into_iter()
            .map(|members| Group {
                consumer: members[0].consumer.clone(),
                kind: members[0].outcome.kind(),
                members,
                resent: false,
            })
            .collect();
        self.send_groups(groups);
    }

    fn send_groups(&mut self, groups: Vec<Group>) {
        let mut flush = Flush {
            outstanding: groups.len(),
            ..Flush::default()
        };
        for (index, group) in groups.into_iter().enumerate() {
            let call = self.record_call(&group);
            self.call(call, Purpose::Outcome { group: index });
            flush.groups.push(Some(group));
        }
        self.outcomes.flush = Some(flush);
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
        match g.kind {
            Kind::Ack => BackendCall::Ack { consumer, ids },
            Kind::Retry => BackendCall::Retry {
                consumer,
                jobs: retries,
            },
            Kind::Kill => BackendCall::Kill {
                consumer,
                jobs: kills,
                now: self.unix_now(),
            },
        }
    }

    pub(super) fn on_recorded(&mut self, index: usize, result: Result<Reply, BackendError>) {
        let Some(flush) = self.outcomes.flush.as_mut() else {
            return;
        };
        let Some(group) = flush.groups.get_mut(index).and_then(Option::take) else {
            return;
        };
        flush.outstanding -= 1;
        match result {
            Ok(Reply::Owned(owned)) => self.recorded(group, &owned),
            other => {
                let err = match other {
                    Ok(reply) => unexpected(&reply),
                    Err(e) => e,
                };
                flush.failed.push(Group {
                    resent: true,
                    ..group
                });
                flush.error = Some(err);
            }
        }
        let Some(flush) = self.outcomes.flush.as_mut() else {
            return;
        };
        if flush.outstanding > 0 {
            return;
        }
        let Some(err) = flush.error.take() else {
            self.outcomes.backoff.ok();
            self.outcomes.flush = None;
            return;
        };
        match self.outcomes.backoff.failed(err, &mut self.rng) {
            Ok(delay) => self.outcomes.retry_at = self.after(delay),
            Err(fatal) => {
                self.give_up_flush();
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
    fn give_up_flush(&mut self) {
        self.outcomes.retry_at = None;
        let Some(flush) = self.outcomes.flush.take() else {
            return;
        };
        let jobs: usize = flush.failed.iter().map(|g| g.members.len()).sum();
        warn!(queue = %self.queue, jobs,
            "curlyq consumer stopping after a fatal error; job outcomes were not recorded and the jobs will run again");
        for group in flush.failed {
            for m in group.members {
                self.free_slot(m.run);
            }
        }
    }
}
