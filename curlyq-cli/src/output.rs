//! The JSON output: one `Serialize` struct per command (documented in the README; field
//! names are snake_case and stable).

use std::collections::BTreeMap;

use curlyq_core::admin::{Counts, JobSummary, Problem, QueueStats};
use serde::Serialize;

use crate::render::{Bytes, Timestamp};

/// `queues`.
#[derive(Debug, Serialize)]
pub(crate) struct QueuesOut {
    pub(crate) queues: Vec<String>,
}

/// Outcome counters.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct CountsOut {
    pub(crate) processed: u64,
    pub(crate) failed: u64,
    pub(crate) retried: u64,
    pub(crate) killed: u64,
}

impl From<Counts> for CountsOut {
    fn from(c: Counts) -> Self {
        CountsOut {
            processed: c.processed,
            failed: c.failed,
            retried: c.retried,
            killed: c.killed,
        }
    }
}

/// One minute of counters.
#[derive(Debug, Serialize)]
pub(crate) struct MinuteOut {
    /// Unix seconds / 60.
    pub(crate) minute: i64,
    /// The minute's first second.
    pub(crate) start: Timestamp,
    #[serde(flatten)]
    pub(crate) counts: CountsOut,
}

/// One queue of `stats`.
#[derive(Debug, Serialize)]
pub(crate) struct QueueStatsOut {
    pub(crate) queue: String,
    /// Whether the queue has any key (a queue with none prints zeros).
    pub(crate) exists: bool,
    pub(crate) active: u64,
    pub(crate) scheduled: u64,
    pub(crate) inflight: u64,
    pub(crate) dead: u64,
    pub(crate) consumers: u64,
    pub(crate) paused: bool,
    pub(crate) oldest_ready_at: Option<Timestamp>,
    /// `now - oldest_ready_at`, seconds.
    pub(crate) latency_seconds: Option<f64>,
    pub(crate) next_due: Option<Timestamp>,
    pub(crate) total: CountsOut,
    /// The sums of `minutes`.
    pub(crate) recent: CountsOut,
    pub(crate) minutes: Vec<MinuteOut>,
}

impl QueueStatsOut {
    pub(crate) fn new(queue: &str, exists: bool, s: &QueueStats, now: f64) -> Self {
        let mut recent = Counts::default();
        for m in &s.minutes {
            recent.add(m.counts);
        }
        QueueStatsOut {
            queue: queue.to_owned(),
            exists,
            active: s.active,
            scheduled: s.scheduled,
            inflight: s.inflight,
            dead: s.dead,
            consumers: s.consumers,
            paused: s.paused,
            oldest_ready_at: s.oldest_ready_at.map(Timestamp::new),
            latency_seconds: s.oldest_ready_at.map(|t| (now - t).max(0.0)),
            next_due: s.next_due.map(Timestamp::new),
            total: s.total.into(),
            recent: recent.into(),
            minutes: s
                .minutes
                .iter()
                .map(|m| MinuteOut {
                    minute: m.minute,
                    start: Timestamp::new(m.minute as f64 * 60.0),
                    counts: m.counts.into(),
                })
                .collect(),
        }
    }
}

/// `stats` (one per refresh with `--watch`).
#[derive(Debug, Serialize)]
pub(crate) struct StatsOut {
    pub(crate) now: Timestamp,
    /// How many minutes `minutes` covers.
    pub(crate) window_minutes: usize,
    pub(crate) queues: Vec<QueueStatsOut>,
}

/// A job as `jobs` and `job` show it.
#[derive(Debug, Serialize)]
pub(crate) struct JobOut {
    pub(crate) id: String,
    pub(crate) state: Option<&'static str>,
    /// Due time (scheduled) or time of death (dead).
    pub(crate) score: Option<Timestamp>,
    /// The consumer holding it (inflight).
    pub(crate) consumer: Option<String>,
    /// Position from the head of the active list (0: next).
    pub(crate) position: Option<u64>,
    pub(crate) attempt: Option<u32>,
    pub(crate) ready_at: Option<Timestamp>,
    /// Bytes stored in `Q:data`; `null`: the job has no data.
    pub(crate) stored_bytes: Option<u64>,
    pub(crate) payload_bytes: Option<u64>,
    pub(crate) reason: Option<String>,
    pub(crate) last_error: Option<String>,
    pub(crate) orphaned: u32,
    /// The payload's first bytes (`jobs` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) preview: Option<Bytes>,
}

impl JobOut {
    pub(crate) fn new(s: &JobSummary, with_preview: bool) -> Self {
        JobOut {
            id: s.id.clone(),
            state: s.state.map(|st| st.as_str()),
            score: s.score.map(Timestamp::new),
            consumer: s.consumer.clone(),
            position: s.position,
            attempt: s.attempt,
            ready_at: s.ready_at.map(Timestamp::new),
            stored_bytes: s.stored_bytes,
            payload_bytes: s.payload_bytes,
            reason: s.reason.clone(),
            last_error: s.last_error.clone(),
            orphaned: s.orphaned,
            preview: with_preview.then(|| Bytes::of(&s.preview)),
        }
    }
}

/// `jobs`.
#[derive(Debug, Serialize)]
pub(crate) struct JobsOut {
    pub(crate) queue: String,
    pub(crate) state: &'static str,
    /// Jobs in the state in all.
    pub(crate) total: u64,
    pub(crate) cursor: u64,
    /// The `--cursor` of the next page; `null` on the last page.
    pub(crate) next_cursor: Option<u64>,
    pub(crate) jobs: Vec<JobOut>,
}

/// `job`.
#[derive(Debug, Serialize)]
pub(crate) struct JobDetailOut {
    pub(crate) queue: String,
    #[serde(flatten)]
    pub(crate) job: JobOut,
    /// The payload (cut at `--max-bytes`); `null` when the job has no data.
    pub(crate) payload: Option<Bytes>,
    /// The payload parsed as JSON, when all of it is shown and it parses.
    pub(crate) payload_json: Option<serde_json::Value>,
    /// Payload bytes not shown.
    pub(crate) payload_cut_bytes: u64,
    /// Why the stored bytes do not decode as a job (`payload` then shows the stored
    /// bytes themselves).
    pub(crate) decode_error: Option<String>,
}

/// `retry` and `run-now`.
#[derive(Debug, Serialize)]
pub(crate) struct ActionOut {
    pub(crate) queue: String,
    /// `retry` or `run-now`.
    pub(crate) action: &'static str,
    pub(crate) dry_run: bool,
    /// Jobs moved to the active list (with --dry-run: that would be).
    pub(crate) done: Vec<String>,
    /// IDs asked for that were not dead (retry) or scheduled (run-now).
    pub(crate) skipped: Vec<String>,
}

/// A deleted job.
#[derive(Debug, Serialize)]
pub(crate) struct DeletedOut {
    pub(crate) id: String,
    pub(crate) state: &'static str,
}

/// `delete`.
#[derive(Debug, Serialize)]
pub(crate) struct DeleteOut {
    pub(crate) queue: String,
    pub(crate) dry_run: bool,
    pub(crate) deleted: Vec<DeletedOut>,
    /// Held by a consumer: not touched.
    pub(crate) in_flight: Vec<String>,
    /// No such job.
    pub(crate) missing: Vec<String>,
}

/// `purge`.
#[derive(Debug, Serialize)]
pub(crate) struct PurgeOut {
    pub(crate) queue: String,
    pub(crate) state: &'static str,
    pub(crate) dry_run: bool,
    /// Jobs deleted (with --dry-run: in the state now).
    pub(crate) purged: u64,
}

/// `pause` and `resume`.
#[derive(Debug, Serialize)]
pub(crate) struct PauseOut {
    pub(crate) queue: String,
    pub(crate) paused: bool,
    pub(crate) was_paused: bool,
}

/// A consumer.
#[derive(Debug, Serialize)]
pub(crate) struct ConsumerOut {
    pub(crate) id: String,
    pub(crate) heartbeat: Timestamp,
    /// `now - heartbeat`, seconds.
    pub(crate) age_seconds: f64,
    pub(crate) inflight: u64,
    /// Whether its heartbeat is older than `--timeout`.
    pub(crate) expired: bool,
}

/// `consumers`.
#[derive(Debug, Serialize)]
pub(crate) struct ConsumersOut {
    pub(crate) queue: String,
    pub(crate) now: Timestamp,
    pub(crate) timeout_seconds: f64,
    pub(crate) consumers: Vec<ConsumerOut>,
}

/// `consumers --remove`.
#[derive(Debug, Serialize)]
pub(crate) struct RemoveOut {
    pub(crate) queue: String,
    pub(crate) consumer: String,
    pub(crate) dry_run: bool,
    pub(crate) removed: bool,
    /// Its jobs moved back to the active list.
    pub(crate) requeued: u64,
    /// Its last heartbeat; `null`: not registered.
    pub(crate) heartbeat: Option<Timestamp>,
}

/// One problem of `check`.
#[derive(Debug, Serialize)]
pub(crate) struct ProblemOut {
    pub(crate) kind: &'static str,
    pub(crate) id: String,
    pub(crate) places: Vec<&'static str>,
}

impl From<&Problem> for ProblemOut {
    fn from(p: &Problem) -> Self {
        ProblemOut {
            kind: p.kind.as_str(),
            id: p.id.clone(),
            places: p.places.iter().map(|s| s.as_str()).collect(),
        }
    }
}

/// One repair of `check --repair`.
#[derive(Debug, Serialize)]
pub(crate) struct RepairOut {
    pub(crate) kind: &'static str,
    pub(crate) id: String,
    /// Whether it changed anything (false: the problem no longer held, or with
    /// --dry-run).
    pub(crate) changed: bool,
}

/// `check`.
#[derive(Debug, Serialize)]
pub(crate) struct CheckOut {
    pub(crate) queue: String,
    /// Data fields examined.
    pub(crate) jobs: usize,
    /// Problems by kind (every kind, zeros included; snake_case keys).
    pub(crate) counts: BTreeMap<&'static str, usize>,
    pub(crate) problems: Vec<ProblemOut>,
    /// Whether `--repair` was given.
    pub(crate) repair: bool,
    pub(crate) dry_run: bool,
    /// The repairs made (empty without --repair).
    pub(crate) repairs: Vec<RepairOut>,
    /// Problems a second check found after the repairs (`null` without --repair, or
    /// with --dry-run).
    pub(crate) remaining: Option<Vec<ProblemOut>>,
}

/// `enqueue`.
#[derive(Debug, Serialize)]
pub(crate) struct EnqueueOut {
    pub(crate) queue: String,
    pub(crate) id: String,
    /// `active` or `scheduled`.
    pub(crate) state: &'static str,
    /// When it is due (scheduled).
    pub(crate) at: Option<Timestamp>,
    pub(crate) payload_bytes: usize,
}
