//! The client-independent half of a Redis backend: for each `QueueBackend` operation,
//! the script calls to send (keys and arguments, split into chunks of at most
//! [`MAX_BATCH`]) and the parsing of their replies.
//!
//! [`ScriptBackend`](crate::ScriptBackend) sends these calls through a
//! [`Transport`](crate::Transport), which converts its client's reply values into
//! [`Reply`].

use curlyq_core::{
    BackendError, DeadTrim, DueReport, EncodedJob, KillJob, OrphanReport, OrphanSweep,
    Registration, RetryJob, ScheduledJob, ScheduledPeek, TakenJob, ERRORS_SWEEP, MAX_BATCH,
};

use curlyq_core::admin::COUNTER_TTL_SECONDS;

use crate::transport::Command;
use crate::Keys;

/// A reply from the server in a client-neutral form.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Reply {
    /// Nil (a null bulk string or array).
    Nil,
    /// An integer.
    Int(i64),
    /// A bulk string.
    Bulk(Vec<u8>),
    /// A simple string (status), such as `OK`.
    Status(String),
    /// A RESP3 double.
    Double(f64),
    /// A RESP3 boolean.
    Bool(bool),
    /// An array (or a RESP3 set).
    Array(Vec<Reply>),
    /// A RESP3 map, as its pairs in the order sent.
    Map(Vec<(Reply, Reply)>),
    /// An error reply found inside another reply.
    Error {
        /// The error's code (its first word, such as `WRONGTYPE`).
        code: String,
        /// The rest of the message.
        message: String,
    },
    /// A reply of a kind no script answers (a RESP3 map, ...), by its description.
    Other(&'static str),
}

impl Reply {
    /// A short description of the reply's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Reply::Nil => "nil",
            Reply::Int(_) => "an integer",
            Reply::Bulk(_) => "a bulk string",
            Reply::Status(_) => "a status",
            Reply::Double(_) => "a double",
            Reply::Bool(_) => "a boolean",
            Reply::Array(_) => "an array",
            Reply::Map(_) => "a map",
            Reply::Error { .. } => "an error",
            Reply::Other(kind) => kind,
        }
    }
}

/// One of the scripts of this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ScriptId {
    /// [`PUSH`](crate::PUSH).
    Push,
    /// [`SCHEDULE`](crate::SCHEDULE).
    Schedule,
    /// [`REGISTER`](crate::REGISTER).
    Register,
    /// [`ENQUEUE_DUE`](crate::ENQUEUE_DUE).
    EnqueueDue,
    /// [`TAKE`](crate::TAKE).
    Take,
    /// [`ACK`](crate::ACK).
    Ack,
    /// [`RETRY`](crate::RETRY).
    Retry,
    /// [`KILL`](crate::KILL).
    Kill,
    /// [`GIVE_BACK`](crate::GIVE_BACK).
    GiveBack,
    /// [`REQUEUE_ORPHANS`](crate::REQUEUE_ORPHANS).
    RequeueOrphans,
    /// [`TRIM_DEAD`](crate::TRIM_DEAD).
    TrimDead,
    /// [`UNREGISTER`](crate::UNREGISTER).
    Unregister,
    /// [`ADMIN_STATS`](crate::ADMIN_STATS).
    AdminStats,
    /// [`ADMIN_CONSUMERS`](crate::ADMIN_CONSUMERS).
    AdminConsumers,
    /// [`ADMIN_JOBS`](crate::ADMIN_JOBS).
    AdminJobs,
    /// [`ADMIN_FIND`](crate::ADMIN_FIND).
    AdminFind,
    /// [`ADMIN_MOVE`](crate::ADMIN_MOVE).
    AdminMove,
    /// [`ADMIN_DELETE`](crate::ADMIN_DELETE).
    AdminDelete,
    /// [`ADMIN_PURGE`](crate::ADMIN_PURGE).
    AdminPurge,
    /// [`ADMIN_REMOVE_CONSUMER`](crate::ADMIN_REMOVE_CONSUMER).
    AdminRemoveConsumer,
    /// [`ADMIN_PAUSE`](crate::ADMIN_PAUSE).
    AdminPause,
    /// [`ADMIN_DATA_IDS`](crate::ADMIN_DATA_IDS).
    AdminDataIds,
    /// [`ADMIN_STRAY`](crate::ADMIN_STRAY).
    AdminStray,
    /// [`ADMIN_PROBLEM`](crate::ADMIN_PROBLEM).
    AdminProblem,
}

impl ScriptId {
    /// Every script, in the order of [`ALL`](crate::ALL) (`id as usize` is its index).
    pub const ALL: [ScriptId; 24] = [
        ScriptId::Push,
        ScriptId::Schedule,
        ScriptId::Register,
        ScriptId::EnqueueDue,
        ScriptId::Take,
        ScriptId::Ack,
        ScriptId::Retry,
        ScriptId::Kill,
        ScriptId::GiveBack,
        ScriptId::RequeueOrphans,
        ScriptId::TrimDead,
        ScriptId::Unregister,
        ScriptId::AdminStats,
        ScriptId::AdminConsumers,
        ScriptId::AdminJobs,
        ScriptId::AdminFind,
        ScriptId::AdminMove,
        ScriptId::AdminDelete,
        ScriptId::AdminPurge,
        ScriptId::AdminRemoveConsumer,
        ScriptId::AdminPause,
        ScriptId::AdminDataIds,
        ScriptId::AdminStray,
        ScriptId::AdminProblem,
    ];

    /// The script's source.
    pub fn source(self) -> &'static str {
        match self {
            ScriptId::Push => crate::PUSH,
            ScriptId::Schedule => crate::SCHEDULE,
            ScriptId::Register => crate::REGISTER,
            ScriptId::EnqueueDue => crate::ENQUEUE_DUE,
            ScriptId::Take => crate::TAKE,
            ScriptId::Ack => crate::ACK,
            ScriptId::Retry => crate::RETRY,
            ScriptId::Kill => crate::KILL,
            ScriptId::GiveBack => crate::GIVE_BACK,
            ScriptId::RequeueOrphans => crate::REQUEUE_ORPHANS,
            ScriptId::TrimDead => crate::TRIM_DEAD,
            ScriptId::Unregister => crate::UNREGISTER,
            ScriptId::AdminStats => crate::ADMIN_STATS,
            ScriptId::AdminConsumers => crate::ADMIN_CONSUMERS,
            ScriptId::AdminJobs => crate::ADMIN_JOBS,
            ScriptId::AdminFind => crate::ADMIN_FIND,
            ScriptId::AdminMove => crate::ADMIN_MOVE,
            ScriptId::AdminDelete => crate::ADMIN_DELETE,
            ScriptId::AdminPurge => crate::ADMIN_PURGE,
            ScriptId::AdminRemoveConsumer => crate::ADMIN_REMOVE_CONSUMER,
            ScriptId::AdminPause => crate::ADMIN_PAUSE,
            ScriptId::AdminDataIds => crate::ADMIN_DATA_IDS,
            ScriptId::AdminStray => crate::ADMIN_STRAY,
            ScriptId::AdminProblem => crate::ADMIN_PROBLEM,
        }
    }
}

/// One script call: the script, its `KEYS` and its `ARGV`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptCall {
    /// The script to run.
    pub script: ScriptId,
    /// `KEYS` (bytes: an in-flight key read back from the server may not be UTF-8).
    pub keys: Vec<Vec<u8>>,
    /// `ARGV`.
    pub args: Vec<Vec<u8>>,
}

impl ScriptCall {
    pub(crate) fn new(script: ScriptId, keys: &[&str]) -> Self {
        ScriptCall {
            script,
            keys: keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
            args: Vec::new(),
        }
    }

    pub(crate) fn arg(&mut self, value: impl AsRef<[u8]>) -> &mut Self {
        self.args.push(value.as_ref().to_vec());
        self
    }

    pub(crate) fn num(&mut self, n: impl std::fmt::Display) -> &mut Self {
        self.arg(n.to_string())
    }
}

/// An invalid-reply error.
pub(crate) fn invalid(what: impl Into<String>) -> BackendError {
    BackendError::InvalidReply(what.into())
}

/// A time or score as Redis reads it: shortest round-trip decimal, `inf`/`-inf` for
/// infinities. NaN is refused before anything is sent.
pub fn score(what: &str, value: f64) -> Result<String, BackendError> {
    if value.is_nan() {
        return Err(BackendError::Rejected(format!("{what} is NaN, not a time")));
    }
    Ok(format!("{value}"))
}

/// `max` split into budgets of at most [`MAX_BATCH`] (one budget of 0 when `max` is 0).
pub fn budgets(max: usize) -> Vec<usize> {
    if max == 0 {
        return vec![0];
    }
    (0..max.div_ceil(MAX_BATCH))
        .map(|i| (max - i * MAX_BATCH).min(MAX_BATCH))
        .collect()
}

/// An integer reply (also a numeric bulk string or a boolean).
pub fn int(op: &str, reply: &Reply) -> Result<i64, BackendError> {
    match reply {
        Reply::Int(n) => Ok(*n),
        Reply::Bool(b) => Ok(i64::from(*b)),
        Reply::Bulk(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| invalid(format!("{op}: expected an integer, got a string"))),
        other => Err(invalid(format!(
            "{op}: expected an integer, got {}",
            other.kind()
        ))),
    }
}

/// A non-negative count.
pub fn count(op: &str, reply: &Reply) -> Result<usize, BackendError> {
    let n = int(op, reply)?;
    usize::try_from(n).map_err(|_| invalid(format!("{op}: negative count {n}")))
}

/// The elements of an array reply.
pub fn array<'a>(op: &str, reply: &'a Reply) -> Result<&'a [Reply], BackendError> {
    match reply {
        Reply::Array(items) => Ok(items),
        other => Err(invalid(format!(
            "{op}: expected an array, got {}",
            other.kind()
        ))),
    }
}

/// An array of 0/1 flags, of exactly `expected` elements.
pub fn flags(op: &str, reply: &Reply, expected: usize) -> Result<Vec<bool>, BackendError> {
    let items = array(op, reply)?;
    if items.len() != expected {
        return Err(invalid(format!(
            "{op}: expected {expected} results, got {}",
            items.len()
        )));
    }
    items
        .iter()
        .map(|item| match int(op, item)? {
            0 => Ok(false),
            1 => Ok(true),
            n => Err(invalid(format!("{op}: expected 0 or 1, got {n}"))),
        })
        .collect()
}

/// Bytes of a string reply, `None` for nil (or RESP3 false). An integer is read as its
/// digits (a Lua string of digits can come back as one in some client modes).
pub fn optional_bytes(op: &str, reply: &Reply) -> Result<Option<Vec<u8>>, BackendError> {
    match reply {
        Reply::Nil | Reply::Bool(false) => Ok(None),
        Reply::Bulk(bytes) => Ok(Some(bytes.clone())),
        Reply::Status(s) => Ok(Some(s.clone().into_bytes())),
        Reply::Int(n) => Ok(Some(n.to_string().into_bytes())),
        other => Err(invalid(format!(
            "{op}: expected a string or nil, got {}",
            other.kind()
        ))),
    }
}

/// A float sent as a string (a sorted-set score), `None` for nil.
pub fn optional_score(op: &str, reply: &Reply) -> Result<Option<f64>, BackendError> {
    if let Reply::Double(d) = reply {
        return Ok(Some(*d));
    }
    match optional_bytes(op, reply)? {
        None => Ok(None),
        Some(bytes) => std::str::from_utf8(&bytes)
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .map(Some)
            .ok_or_else(|| invalid(format!("{op}: a score that is not a number"))),
    }
}

/// A text (an ID, a consumer name): invalid UTF-8 is replaced, never refused.
pub fn text(op: &str, reply: &Reply) -> Result<String, BackendError> {
    let raw =
        optional_bytes(op, reply)?.ok_or_else(|| invalid(format!("{op}: an unexpected nil")))?;
    Ok(String::from_utf8_lossy(&raw).into_owned())
}

/// The elements of an array (or RESP3 set) reply as texts.
pub fn texts(op: &str, reply: &Reply) -> Result<Vec<String>, BackendError> {
    array(op, reply)?
        .iter()
        .map(|item| text(op, item))
        .collect()
}

/// `(member, score)` pairs of a `WITHSCORES` reply: flat in RESP2, pairs in RESP3.
pub fn scored(op: &str, reply: &Reply) -> Result<Vec<(String, f64)>, BackendError> {
    let items = array(op, reply)?;
    let score = |item: &Reply| {
        optional_score(op, item)?.ok_or_else(|| invalid(format!("{op}: a nil score")))
    };
    if !items.is_empty() && items.iter().all(|item| matches!(item, Reply::Array(_))) {
        return items
            .iter()
            .map(|item| match array(op, item)? {
                [member, at] => Ok((text(op, member)?, score(at)?)),
                _ => Err(invalid(format!("{op}: a malformed scored member"))),
            })
            .collect();
    }
    if items.len() % 2 != 0 {
        return Err(invalid(format!("{op}: an odd number of elements")));
    }
    items
        .chunks_exact(2)
        .map(|pair| match pair {
            [member, at] => Ok((text(op, member)?, score(at)?)),
            _ => Err(invalid(format!("{op}: an odd number of elements"))),
        })
        .collect()
}

/// Field/value pairs of a hash reply (flat in RESP2, a map in RESP3), values as bytes.
pub fn hash(op: &str, reply: &Reply) -> Result<Vec<(String, Vec<u8>)>, BackendError> {
    let value = |item: &Reply| {
        optional_bytes(op, item)?.ok_or_else(|| invalid(format!("{op}: a nil value")))
    };
    if let Reply::Map(pairs) = reply {
        return pairs
            .iter()
            .map(|(field, v)| Ok((text(op, field)?, value(v)?)))
            .collect();
    }
    let items = array(op, reply)?;
    if items.len() % 2 != 0 {
        return Err(invalid(format!("{op}: an odd number of elements")));
    }
    items
        .chunks_exact(2)
        .map(|pair| match pair {
            [field, v] => Ok((text(op, field)?, value(v)?)),
            _ => Err(invalid(format!("{op}: an odd number of elements"))),
        })
        .collect()
}

/// The only reply of a single call.
pub fn one<'a>(op: &str, replies: &'a [Reply]) -> Result<&'a Reply, BackendError> {
    replies
        .first()
        .ok_or_else(|| invalid(format!("{op}: no reply")))
}

/// The flags of the chunks of a batch of `total` items (chunks of [`MAX_BATCH`]), in
/// order.
pub fn parse_flags(op: &str, replies: &[Reply], total: usize) -> Result<Vec<bool>, BackendError> {
    let sizes = (0..total.div_ceil(MAX_BATCH)).map(|i| (total - i * MAX_BATCH).min(MAX_BATCH));
    if replies.len() != sizes.len() {
        return Err(invalid(format!(
            "{op}: {} replies for {} calls",
            replies.len(),
            sizes.len()
        )));
    }
    let mut out = Vec::with_capacity(total);
    for (reply, size) in replies.iter().zip(sizes) {
        out.extend(flags(op, reply, size)?);
    }
    Ok(out)
}

/// The sum of the counts the calls answered.
pub fn parse_sum(op: &str, replies: &[Reply]) -> Result<usize, BackendError> {
    replies
        .iter()
        .try_fold(0, |sum, reply| Ok(sum + count(op, reply)?))
}

/// Whether a single call answered 1.
pub fn parse_one_flag(op: &str, replies: &[Reply]) -> Result<bool, BackendError> {
    Ok(int(op, one(op, replies)?)? == 1)
}

/// The calls of `push` (none for no jobs); parse with [`parse_flags`].
pub fn push_calls(keys: &Keys, jobs: &[EncodedJob]) -> Vec<ScriptCall> {
    push_calls_with(keys, jobs, None)
}

/// The calls of `push` with the trace key: each new job's `Q:trace` field is set to
/// `trace` (removed for `None`). Parse with [`parse_flags`].
pub fn push_traced_calls(keys: &Keys, jobs: &[EncodedJob], trace: Option<&str>) -> Vec<ScriptCall> {
    push_calls_with(keys, jobs, Some(trace))
}

/// The script's optional trace key and first argument: nothing without `trace`, else
/// the key and the context (`""` for none).
fn with_trace(call: &mut ScriptCall, keys: &Keys, trace: Option<Option<&str>>) {
    if let Some(trace) = trace {
        call.keys.push(keys.trace.clone().into_bytes());
        call.arg(trace.unwrap_or(""));
    }
}

fn push_calls_with(
    keys: &Keys,
    jobs: &[EncodedJob],
    trace: Option<Option<&str>>,
) -> Vec<ScriptCall> {
    jobs.chunks(MAX_BATCH)
        .map(|chunk| {
            let mut call =
                ScriptCall::new(ScriptId::Push, &[&keys.data, &keys.active, &keys.signal]);
            with_trace(&mut call, keys, trace);
            for job in chunk {
                call.arg(&job.id).arg(&job.data);
            }
            call
        })
        .collect()
}

/// The calls of `schedule` (none for no jobs); parse with [`parse_flags`].
pub fn schedule_calls(keys: &Keys, jobs: &[ScheduledJob]) -> Result<Vec<ScriptCall>, BackendError> {
    schedule_calls_with(keys, jobs, None)
}

/// The calls of `schedule` with the trace key, as [`push_traced_calls`].
pub fn schedule_traced_calls(
    keys: &Keys,
    jobs: &[ScheduledJob],
    trace: Option<&str>,
) -> Result<Vec<ScriptCall>, BackendError> {
    schedule_calls_with(keys, jobs, Some(trace))
}

fn schedule_calls_with(
    keys: &Keys,
    jobs: &[ScheduledJob],
    trace: Option<Option<&str>>,
) -> Result<Vec<ScriptCall>, BackendError> {
    jobs.chunks(MAX_BATCH)
        .map(|chunk| {
            let mut call = ScriptCall::new(
                ScriptId::Schedule,
                &[&keys.data, &keys.scheduled, &keys.signal],
            );
            with_trace(&mut call, keys, trace);
            for job in chunk {
                call.arg(&job.job.id)
                    .arg(score("schedule time", job.at)?)
                    .arg(&job.job.data);
            }
            Ok(call)
        })
        .collect()
}

/// The call of `register`; parse with [`parse_one_flag`].
pub fn register_calls(
    keys: &Keys,
    consumer: &str,
    now: f64,
    mode: Registration,
) -> Result<Vec<ScriptCall>, BackendError> {
    let mode = match mode {
        Registration::Join => "join",
        Registration::Heartbeat => "heartbeat",
        other => {
            return Err(BackendError::Rejected(format!(
                "register: {other:?} is not supported by this backend version"
            )))
        }
    };
    let mut call = ScriptCall::new(ScriptId::Register, &[&keys.consumers]);
    call.arg(score("heartbeat time", now)?)
        .arg(mode)
        .arg(keys.inflight(consumer));
    Ok(vec![call])
}

/// The calls of `enqueue_due` (one per budget); parse with [`parse_enqueue_due`].
pub fn enqueue_due_calls(
    keys: &Keys,
    now: f64,
    max: usize,
) -> Result<Vec<ScriptCall>, BackendError> {
    let now = score("now", now)?;
    Ok(budgets(max)
        .into_iter()
        .map(|budget| {
            let mut call = ScriptCall::new(
                ScriptId::EnqueueDue,
                &[&keys.scheduled, &keys.active, &keys.signal],
            );
            call.arg(&now).num(budget);
            call
        })
        .collect())
}

/// The `{moved, next}` replies of `enqueue_due`: moved summed, next of the last call.
pub fn parse_enqueue_due(replies: &[Reply]) -> Result<DueReport, BackendError> {
    let mut report = DueReport::default();
    for reply in replies {
        let parts = array("enqueue_due", reply)?;
        let moved = parts
            .first()
            .ok_or_else(|| invalid("enqueue_due: empty reply"))?;
        report.moved += count("enqueue_due", moved)?;
        report.next_due = match parts.get(1) {
            Some(next) => optional_score("enqueue_due", next)?,
            None => None,
        };
    }
    Ok(report)
}

/// The calls of `take` by the consumer of in-flight key `inflight` (one per budget);
/// with `peek`, the last one also reads the scheduled set's earliest score; with `traced`,
/// each one reads the taken jobs' `Q:trace` fields. Parse with [`parse_take`] (given the
/// same `peek` and `traced`).
pub fn take_calls(
    keys: &Keys,
    inflight: &str,
    max: usize,
    peek: bool,
    traced: bool,
) -> Vec<ScriptCall> {
    let budgets = budgets(max);
    let last = budgets.len() - 1;
    budgets
        .into_iter()
        .enumerate()
        .map(|(i, budget)| {
            let mut declared = vec![
                keys.active.as_str(),
                inflight,
                &keys.data,
                &keys.signal,
                &keys.consumers,
                &keys.paused,
            ];
            if peek && i == last {
                declared.push(&keys.scheduled);
            }
            if traced {
                declared.push(&keys.trace);
            }
            let mut call = ScriptCall::new(ScriptId::Take, &declared);
            call.num(budget);
            if traced {
                call.arg("trace");
            }
            call
        })
        .collect()
}

/// What `take` answered.
#[derive(Debug, Default)]
pub struct Taken {
    /// The jobs taken, in order.
    pub jobs: Vec<TakenJob>,
    /// The raw IDs of taken jobs that are not UTF-8 (kill them with [`kill_not_utf8_calls`]).
    pub not_utf8: Vec<Vec<u8>>,
    /// What the peek saw ([`ScheduledPeek::Unknown`] without one).
    pub scheduled: ScheduledPeek,
}

/// The `{id1, data1, ...}` replies of `take` (`{id1, data1, trace1, ...}` when made with
/// `traced`; the last one ending with the earliest scheduled score when made with
/// `peek`).
pub fn parse_take(replies: &[Reply], peek: bool, traced: bool) -> Result<Taken, BackendError> {
    let width = if traced { 3 } else { 2 };
    let mut taken = Taken::default();
    let last = replies.len().saturating_sub(1);
    for (i, reply) in replies.iter().enumerate() {
        let mut items = array("take", reply)?;
        if peek && i == last {
            let (score, rest) = items
                .split_last()
                .ok_or_else(|| invalid("take: no earliest scheduled score"))?;
            taken.scheduled = optional_score("take", score)?.into();
            items = rest;
        }
        if items.len() % width != 0 {
            return Err(invalid("take: a partial job in the reply"));
        }
        for job in items.chunks_exact(width) {
            let (id, data, trace) = match job {
                [id, data] => (id, data, None),
                [id, data, trace] => (id, data, Some(trace)),
                _ => return Err(invalid("take: a partial job in the reply")),
            };
            let id = optional_bytes("take", id)?.ok_or_else(|| invalid("take: a nil job ID"))?;
            // A trace field that is not text is no context: the job runs without one.
            let trace = match trace {
                Some(t) => optional_bytes("take", t)?.and_then(|b| String::from_utf8(b).ok()),
                None => None,
            };
            match String::from_utf8(id) {
                Ok(id) => taken.jobs.push(TakenJob {
                    id,
                    data: optional_bytes("take", data)?,
                    trace,
                }),
                Err(e) => taken.not_utf8.push(e.into_bytes()),
            }
        }
    }
    Ok(taken)
}

/// The call that kills taken jobs whose IDs are not UTF-8 (job IDs are strings, so such a
/// job could be neither run under its ID nor acked): by their raw bytes, data kept as
/// stored, at time `now`.
pub fn kill_not_utf8_calls(
    keys: &Keys,
    inflight: &str,
    ids: &[Vec<u8>],
    now: f64,
) -> Vec<ScriptCall> {
    let [counts, minute] = counter_keys(keys, now);
    let mut call = ScriptCall::new(ScriptId::Kill, &kill_keys(keys, inflight, &counts, &minute));
    call.arg(format!("{now}")).num(COUNTER_TTL_SECONDS);
    for id in ids {
        call.arg(id).arg("0").arg("").arg(
            "job ID is not valid UTF-8 (curlyq job IDs are strings); killed when taken, \
             data kept as stored",
        );
    }
    vec![call]
}

/// The counter keys of an outcome at `now`: `Q:counts` and `now`'s `Q:counts:<minute>`.
pub fn counter_keys(keys: &Keys, now: f64) -> [String; 2] {
    [
        keys.counts.clone(),
        keys.counts_minute(curlyq_core::admin::minute_of(now)),
    ]
}

/// The calls of `ack` (none for no IDs), counting at `now`; parse with [`parse_flags`].
pub fn ack_calls(keys: &Keys, inflight: &str, ids: &[String], now: f64) -> Vec<ScriptCall> {
    let [counts, minute] = counter_keys(keys, now);
    ids.chunks(MAX_BATCH)
        .map(|chunk| {
            let mut call = ScriptCall::new(
                ScriptId::Ack,
                &[
                    inflight,
                    &keys.data,
                    &keys.orphaned,
                    &keys.errors,
                    &counts,
                    &minute,
                    &keys.trace,
                ],
            );
            call.num(COUNTER_TTL_SECONDS);
            for id in chunk {
                call.arg(id);
            }
            call
        })
        .collect()
}

/// The calls of `retry` (none for no jobs), counting at `now`; parse with
/// [`parse_flags`].
pub fn retry_calls(
    keys: &Keys,
    inflight: &str,
    jobs: &[RetryJob],
    now: f64,
) -> Result<Vec<ScriptCall>, BackendError> {
    score("retry outcome time", now)?;
    let [counts, minute] = counter_keys(keys, now);
    jobs.chunks(MAX_BATCH)
        .map(|chunk| {
            let mut call = ScriptCall::new(
                ScriptId::Retry,
                &[
                    inflight,
                    &keys.scheduled,
                    &keys.data,
                    &keys.orphaned,
                    &keys.errors,
                    &counts,
                    &minute,
                ],
            );
            call.num(COUNTER_TTL_SECONDS);
            for job in chunk {
                call.arg(&job.id)
                    .arg(score("retry time", job.at)?)
                    .arg(&job.data);
                match &job.error {
                    Some(error) => call.arg("1").arg(error),
                    None => call.arg("0").arg(""),
                };
            }
            Ok(call)
        })
        .collect()
}

/// The calls of `kill` (none for no jobs); parse with [`parse_flags`].
pub fn kill_calls(
    keys: &Keys,
    inflight: &str,
    jobs: &[KillJob],
    now: f64,
) -> Result<Vec<ScriptCall>, BackendError> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let [counts, minute] = counter_keys(keys, now);
    let now = score("kill time", now)?;
    Ok(jobs
        .chunks(MAX_BATCH)
        .map(|chunk| {
            let mut call =
                ScriptCall::new(ScriptId::Kill, &kill_keys(keys, inflight, &counts, &minute));
            call.arg(&now).num(COUNTER_TTL_SECONDS);
            for job in chunk {
                call.arg(&job.id);
                match &job.data {
                    Some(data) => call.arg("1").arg(data),
                    None => call.arg("0").arg(""),
                };
                call.arg(&job.reason);
            }
            call
        })
        .collect())
}

/// The `KEYS` of `kill` by the consumer of in-flight key `inflight`, counting in
/// `counts` and `minute`.
fn kill_keys<'a>(
    keys: &'a Keys,
    inflight: &'a str,
    counts: &'a str,
    minute: &'a str,
) -> [&'a str; 8] {
    [
        inflight,
        &keys.dead,
        &keys.data,
        &keys.reasons,
        &keys.orphaned,
        &keys.errors,
        counts,
        minute,
    ]
}

/// The calls of `give_back` (none for no IDs); parse with [`parse_sum`].
pub fn give_back_calls(keys: &Keys, inflight: &str, ids: &[String]) -> Vec<ScriptCall> {
    ids.chunks(MAX_BATCH)
        .map(|chunk| {
            let mut call =
                ScriptCall::new(ScriptId::GiveBack, &[inflight, &keys.active, &keys.signal]);
            for id in chunk {
                call.arg(id);
            }
            call
        })
        .collect()
}

/// The calls of `trim_dead` (none when `max_jobs` is 0); parse with [`parse_sum`]. Only
/// the last call sweeps `Q:errors` (up to [`ERRORS_SWEEP`] fields), once every dead job
/// to trim is gone, as the model does it after its whole trim.
pub fn trim_dead_calls(keys: &Keys, trim: DeadTrim) -> Result<Vec<ScriptCall>, BackendError> {
    if trim.max_jobs == 0 {
        return Ok(Vec::new());
    }
    let killed_before = score("killed_before", trim.killed_before)?;
    let budgets = budgets(trim.max_jobs);
    let last = budgets.len().saturating_sub(1);
    Ok(budgets
        .into_iter()
        .enumerate()
        .map(|(i, budget)| {
            let mut call = ScriptCall::new(
                ScriptId::TrimDead,
                &[
                    &keys.dead,
                    &keys.data,
                    &keys.reasons,
                    &keys.orphaned,
                    &keys.errors,
                    &keys.errors_cursor,
                    &keys.trace,
                    &keys.trace_cursor,
                ],
            );
            let sweep = if i == last { ERRORS_SWEEP } else { 0 };
            call.arg(&killed_before)
                .num(trim.keep_at_most)
                .num(budget)
                .num(sweep);
            call
        })
        .collect())
}

/// The call of `unregister`; parse with [`parse_one_flag`].
pub fn unregister_calls(keys: &Keys, inflight: &str) -> Vec<ScriptCall> {
    vec![ScriptCall::new(
        ScriptId::Unregister,
        &[&keys.consumers, inflight],
    )]
}

/// How many expired consumers one orphan-sweep script call visits.
pub const CONSUMERS_PER_SWEEP_CALL: usize = 100;

/// A bound on the rounds of one orphan sweep (each round moves a job or removes a
/// consumer, so this is only a guard against a store that changes under us forever).
pub const MAX_SWEEP_ROUNDS: usize = 10_000;

/// The orphan sweep, in two steps per round: [`list`](Self::list) the expired consumers
/// (oldest first), then send [`call`](Self::call) with their in-flight keys (the script
/// re-checks each one's score), and [`record`](Self::record) its reply. At most
/// [`MAX_SWEEP_ROUNDS`] rounds.
#[derive(Debug)]
pub struct OrphanSweeper {
    keys: Keys,
    expired_before: String,
    now: String,
    minute: String,
    max_orphan_requeues: u32,
    left: usize,
    report: OrphanReport,
}

impl OrphanSweeper {
    /// A sweep of the queue of `keys`.
    pub fn new(keys: Keys, sweep: OrphanSweep) -> Result<Self, BackendError> {
        Ok(OrphanSweeper {
            expired_before: score("expired_before", sweep.expired_before)?,
            now: score("now", sweep.now)?,
            minute: keys.counts_minute(curlyq_core::admin::minute_of(sweep.now)),
            keys,
            max_orphan_requeues: sweep.max_orphan_requeues,
            left: sweep.max_jobs,
            report: OrphanReport::default(),
        })
    }

    /// Step 1: the command listing the expired consumers, oldest first.
    pub fn list(&self) -> Command {
        Command::new("ZRANGEBYSCORE")
            .arg(&self.keys.consumers)
            .arg("-inf")
            .arg(&self.expired_before)
            .arg("LIMIT")
            .arg("0")
            .arg(CONSUMERS_PER_SWEEP_CALL.to_string())
    }

    /// The in-flight keys the listing answered (none for nil).
    pub fn members(listed: &Reply) -> Result<Vec<Vec<u8>>, BackendError> {
        if *listed == Reply::Nil {
            return Ok(Vec::new());
        }
        array("requeue_orphans", listed)?
            .iter()
            .map(|member| {
                optional_bytes("requeue_orphans", member)?
                    .ok_or_else(|| invalid("requeue_orphans: a nil consumer"))
            })
            .collect()
    }

    /// Step 2: the script call visiting `members`, with every in-flight key declared.
    pub fn call(&self, members: Vec<Vec<u8>>) -> ScriptCall {
        let keys = &self.keys;
        let mut call = ScriptCall::new(
            ScriptId::RequeueOrphans,
            &[
                &keys.consumers,
                &keys.active,
                &keys.dead,
                &keys.reasons,
                &keys.orphaned,
                &keys.signal,
                &keys.errors,
                &keys.counts,
                &self.minute,
            ],
        );
        call.keys.extend(members);
        call.arg(&self.expired_before)
            .num(self.left.min(MAX_BATCH))
            .num(self.max_orphan_requeues)
            .arg(&self.now)
            .num(COUNTER_TTL_SECONDS);
        call
    }

    /// Adds the `{requeued, killed, removed}` reply of a step 2 to the report; returns
    /// whether another round may find more.
    pub fn record(&mut self, replies: &[Reply]) -> Result<bool, BackendError> {
        let parts = array("requeue_orphans", one("requeue_orphans", replies)?)?;
        let [requeued, killed, removed] = parts else {
            return Err(invalid("requeue_orphans: expected three counts"));
        };
        let requeued = count("requeue_orphans", requeued)?;
        let killed = count("requeue_orphans", killed)?;
        let removed = count("requeue_orphans", removed)?;
        self.report.requeued += requeued;
        self.report.killed += killed;
        self.report.consumers_removed += removed;
        let moved = requeued + killed;
        self.left = self.left.saturating_sub(moved);
        Ok(!(removed == 0 && (moved == 0 || self.left == 0)))
    }

    /// What the sweep did so far.
    pub fn report(&self) -> OrphanReport {
        self.report
    }
}

/// The settings warnings of a Redis server, read from its `INFO memory` text: an
/// eviction policy other than `noeviction` lets Redis delete queue keys (jobs, in-flight
/// sets) when it reaches `maxmemory`, losing jobs without an error.
pub fn settings_warnings(info_memory: &str) -> Vec<String> {
    let policy = info_memory
        .lines()
        .find_map(|line| line.trim().strip_prefix("maxmemory_policy:"));
    match policy {
        Some(policy) if policy != "noeviction" => vec![format!(
            "Redis maxmemory-policy is {policy}: when memory runs short Redis may evict \
             queue keys and lose jobs; set `maxmemory-policy noeviction` (pushes then \
             fail with an OOM error instead)"
        )],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_evicting_policy_is_a_warning() {
        let info = "# Memory\r\nused_memory:1\r\nmaxmemory_policy:allkeys-lru\r\n";
        let warnings = settings_warnings(info);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("allkeys-lru"), "{warnings:?}");
        assert!(warnings[0].contains("noeviction"), "{warnings:?}");
        assert!(settings_warnings("maxmemory_policy:noeviction\r\n").is_empty());
        assert!(
            settings_warnings("").is_empty(),
            "no policy line: nothing to say"
        );
    }

    #[test]
    fn budgets_split_at_max_batch() {
        assert_eq!(budgets(0), vec![0]);
        assert_eq!(budgets(1), vec![1]);
        assert_eq!(budgets(MAX_BATCH), vec![MAX_BATCH]);
        assert_eq!(budgets(2 * MAX_BATCH + 5), vec![MAX_BATCH, MAX_BATCH, 5]);
    }

    #[test]
    fn scores_round_trip_and_refuse_nan() {
        assert_eq!(score("t", 1.5).ok().as_deref(), Some("1.5"));
        assert_eq!(score("t", f64::INFINITY).ok().as_deref(), Some("inf"));
        assert!(matches!(
            score("t", f64::NAN),
            Err(BackendError::Rejected(_))
        ));
    }

    #[test]
    fn script_ids_follow_all() {
        for (i, id) in ScriptId::ALL.iter().enumerate() {
            assert_eq!(crate::ALL.get(i).map(|(_, s)| *s), Some(id.source()));
            assert_eq!(*id as usize, i);
        }
    }

    #[test]
    fn only_the_last_trim_call_sweeps_the_errors() {
        let keys = Keys::new("{q}");
        let trim = |max_jobs| DeadTrim {
            killed_before: 1.0,
            keep_at_most: 5,
            max_jobs,
        };
        let sweeps = |max_jobs| {
            trim_dead_calls(&keys, trim(max_jobs)).map(|calls| {
                calls
                    .iter()
                    .map(|call| call.args.get(3).cloned().unwrap_or_default())
                    .collect::<Vec<_>>()
            })
        };
        let sweep = ERRORS_SWEEP.to_string().into_bytes();
        assert_eq!(sweeps(0).ok(), Some(vec![]));
        assert_eq!(sweeps(10).ok(), Some(vec![sweep.clone()]));
        assert_eq!(
            sweeps(2 * MAX_BATCH + 1).ok(),
            Some(vec![b"0".to_vec(), b"0".to_vec(), sweep])
        );
        let calls = trim_dead_calls(&keys, trim(1)).unwrap_or_default();
        let declared: Vec<&[u8]> = calls
            .iter()
            .flat_map(|c| &c.keys)
            .map(Vec::as_slice)
            .collect();
        assert!(declared.contains(&&b"{q}:errors"[..]), "{declared:?}");
        assert!(
            declared.contains(&&b"{q}:errors:cursor"[..]),
            "{declared:?}"
        );
    }

    #[test]
    fn retry_sends_whether_there_is_an_error() {
        let keys = Keys::new("{q}");
        let job = |id: &str, error: Option<&str>| RetryJob {
            id: id.into(),
            data: b"d".to_vec(),
            at: 2.5,
            error: error.map(str::to_owned),
        };
        let calls = retry_calls(
            &keys,
            "{q}:inflight:c",
            &[job("a", Some("boom")), job("b", None)],
            120.0,
        )
        .unwrap_or_default();
        let args: Vec<&[u8]> = calls
            .iter()
            .flat_map(|c| &c.args)
            .map(Vec::as_slice)
            .collect();
        let expected: [&[u8]; 11] = [
            b"90000", b"a", b"2.5", b"d", b"1", b"boom", b"b", b"2.5", b"d", b"0", b"",
        ];
        assert_eq!(args, expected);
        let declared: Vec<&[u8]> = calls
            .first()
            .map(|c| c.keys.iter().map(Vec::as_slice).collect())
            .unwrap_or_default();
        assert_eq!(
            declared[4..],
            [&b"{q}:errors"[..], b"{q}:counts", b"{q}:counts:2"]
        );
    }

    #[test]
    fn take_declares_the_pause_key_and_peeks_last() {
        let keys = Keys::new("{q}");
        let names = |calls: &[ScriptCall], i: usize| -> Vec<String> {
            calls
                .get(i)
                .map(|c| {
                    c.keys
                        .iter()
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        let calls = take_calls(&keys, "{q}:inflight:c", MAX_BATCH + 1, true, false);
        let plain = [
            "{q}:active",
            "{q}:inflight:c",
            "{q}:data",
            "{q}:signal",
            "{q}:consumers",
            "{q}:paused",
        ];
        assert_eq!(names(&calls, 0), plain);
        let mut peeking = plain.to_vec();
        peeking.push("{q}:scheduled");
        assert_eq!(names(&calls, 1), peeking);
        assert_eq!(
            names(&take_calls(&keys, "{q}:inflight:c", 1, false, false), 0),
            plain
        );
    }

    #[test]
    fn outcomes_count_in_the_minute_of_now() {
        let keys = Keys::new("{q}");
        let calls = ack_calls(&keys, "{q}:inflight:c", &["a".to_owned()], 119.9);
        let call = calls.first().cloned();
        let keys_of = call.as_ref().map(|c| c.keys.clone()).unwrap_or_default();
        assert_eq!(
            keys_of.get(4..6).map(<[Vec<u8>]>::to_vec),
            Some(vec![b"{q}:counts".to_vec(), b"{q}:counts:1".to_vec()])
        );
        assert_eq!(
            call.map(|c| c.args),
            Some(vec![b"90000".to_vec(), b"a".to_vec()])
        );
        let kill = kill_not_utf8_calls(&keys, "{q}:inflight:c", &[vec![0xff]], 60.0);
        assert_eq!(
            kill.first().and_then(|c| c.keys.last()).map(Vec::as_slice),
            Some(&b"{q}:counts:1"[..])
        );
    }

    #[test]
    fn take_keeps_ids_that_are_not_utf8_apart() {
        let reply = Reply::Array(vec![
            Reply::Bulk(b"a".to_vec()),
            Reply::Bulk(b"x".to_vec()),
            Reply::Bulk(vec![0xff]),
            Reply::Nil,
        ]);
        let taken = parse_take(&[reply], false, false).map_err(|e| e.to_string());
        let taken = taken.as_ref().map(|t| (t.jobs.len(), t.not_utf8.clone()));
        assert_eq!(taken, Ok((1, vec![vec![0xff]])));
    }

    #[test]
    fn a_peeking_take_ends_with_the_earliest_scheduled_score() {
        let job = || vec![Reply::Bulk(b"a".to_vec()), Reply::Bulk(b"x".to_vec())];
        let with = |tail: Reply| {
            let mut items = job();
            items.push(tail);
            Reply::Array(items)
        };
        let peeked = |replies: &[Reply]| {
            parse_take(replies, true, false)
                .map(|t| (t.jobs.len(), t.scheduled))
                .map_err(|e| e.to_string())
        };
        let score = with(Reply::Bulk(b"1700000000".to_vec()));
        assert_eq!(
            peeked(&[score]),
            Ok((1, ScheduledPeek::Earliest(1_700_000_000.0)))
        );
        assert_eq!(peeked(&[with(Reply::Nil)]), Ok((1, ScheduledPeek::Empty)));
        // Only the last of several budgets' replies carries the score.
        let two = [Reply::Array(job()), with(Reply::Nil)];
        assert_eq!(peeked(&two), Ok((2, ScheduledPeek::Empty)));
        assert!(peeked(&[Reply::Array(Vec::new())]).is_err());
        assert!(peeked(&[with(Reply::Bulk(b"soon".to_vec()))]).is_err());
    }
}
