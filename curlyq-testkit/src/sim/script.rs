//! What a simulated handler does ([`HandlerScript`]), which calls fail
//! ([`Faults`], [`FaultKind`]), and what the simulation recorded ([`RunRecord`],
//! [`CallRecord`]).

use std::time::{Duration, SystemTime};

use curlyq_core::consumer::{BackendCall, HandlerResult};

use crate::Operation;

/// Names a consumer of a [`Simulation`](super::Simulation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub usize);

/// What a simulated handler run does.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandlerScript {
    /// Ends with `result` after `after` of simulated time.
    End {
        /// How long the run takes.
        after: Duration,
        /// How it ends.
        result: HandlerResult,
    },
    /// Never ends by itself (see [`Simulation::complete`](super::Simulation::complete)).
    Hang,
}

impl HandlerScript {
    /// Succeeds after `after`.
    pub fn succeed_after(after: Duration) -> Self {
        HandlerScript::End {
            after,
            result: HandlerResult::Succeeded,
        }
    }

    /// Returns an error with `message` after `after`.
    pub fn fail_after(after: Duration, message: &str) -> Self {
        HandlerScript::End {
            after,
            result: HandlerResult::Failed(message.to_string()),
        }
    }

    /// Panics with `message` after `after`.
    pub fn panic_after(after: Duration, message: &str) -> Self {
        HandlerScript::End {
            after,
            result: HandlerResult::Panicked(message.to_string()),
        }
    }

    /// Returns a permanent failure (`curlyq_core::Permanent`) with `message` after
    /// `after`: the job is killed at once.
    pub fn fail_permanently_after(after: Duration, message: &str) -> Self {
        HandlerScript::End {
            after,
            result: HandlerResult::Permanent(message.to_string()),
        }
    }

    /// Returns a failure asking for a retry after `delay` (`curlyq_core::RetryAfter`)
    /// with `message`, after `after`.
    pub fn retry_after(after: Duration, delay: Duration, message: &str) -> Self {
        HandlerScript::End {
            after,
            result: HandlerResult::RetryAfter {
                error: message.to_string(),
                delay,
            },
        }
    }
}

/// How an injected fault hits a backend call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultKind {
    /// The call is not carried out and fails (the store was unreachable).
    Fail,
    /// The call is carried out but its reply is lost (reported as failed).
    LoseReply,
}

/// Random faults: each backend call (the blocking wait included) fails with
/// probability `fail` and loses its reply with probability `lose_reply`; each leg of a
/// call (there, and back) takes a uniformly random time up to `latency`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// Probability that a call fails without being carried out.
    pub fail: f64,
    /// Probability that a call is carried out and its reply lost.
    pub lose_reply: f64,
    /// The longest one-way delay of a call.
    pub latency: Duration,
}

impl Default for Faults {
    /// No faults, up to 1 ms each way.
    fn default() -> Self {
        Faults {
            fail: 0.0,
            lose_reply: 0.0,
            latency: Duration::from_millis(1),
        }
    }
}

/// One handler run the simulation started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    /// The consumer that ran it.
    pub node: NodeId,
    /// The job's ID.
    pub job_id: String,
    /// The job's attempt count at this run.
    pub attempt: u32,
    /// The job's payload.
    pub data: Vec<u8>,
    /// When it started.
    pub at: SystemTime,
}

/// One backend call the simulation carried out (or failed).
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
    /// The consumer that made it.
    pub node: NodeId,
    /// The operation.
    pub operation: Operation,
    /// When it landed (or failed).
    pub at: SystemTime,
    /// How many jobs it carried (IDs, or the `max` of a take), 0 for the others.
    pub jobs: usize,
    /// The fault that hit it, if any.
    pub fault: Option<FaultKind>,
}

/// The testkit's name for the operation of a call.
pub(super) fn operation(call: &BackendCall) -> Operation {
    match call {
        BackendCall::Register { .. } => Operation::Register,
        BackendCall::EnqueueDue { .. } => Operation::EnqueueDue,
        BackendCall::Take { .. } => Operation::Take,
        BackendCall::Wait { .. } => Operation::Wait,
        BackendCall::Ack { .. } => Operation::Ack,
        BackendCall::Retry { .. } => Operation::Retry,
        BackendCall::Kill { .. } => Operation::Kill,
        BackendCall::GiveBack { .. } => Operation::GiveBack,
        BackendCall::RequeueOrphans(_) => Operation::RequeueOrphans,
        BackendCall::TrimDead(_) => Operation::TrimDead,
        BackendCall::Unregister { .. } => Operation::Unregister,
        _ => Operation::SettingsWarnings,
    }
}

/// The job IDs a call settles for its consumer (an outcome or a give-back), and how
/// many jobs it carries.
pub(super) fn settled_ids(call: &BackendCall) -> (Vec<String>, usize) {
    let ids: Vec<String> = match call {
        BackendCall::Ack { ids, .. } | BackendCall::GiveBack { ids, .. } => ids.clone(),
        BackendCall::Retry { jobs, .. } => jobs.iter().map(|j| j.id.clone()).collect(),
        BackendCall::Kill { jobs, .. } => jobs.iter().map(|j| j.id.clone()).collect(),
        BackendCall::Take { max, .. } => return (Vec::new(), *max),
        _ => Vec::new(),
    };
    let n = ids.len();
    (ids, n)
}
