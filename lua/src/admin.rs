//! The admin operations' script calls and the parsing of their replies (see
//! [`curlyq_core::admin`]). [`ScriptBackend`](crate::ScriptBackend) sends them.
//!
//! Operations that read a consumer's in-flight set go in two phases, as the orphan sweep
//! does: [`list_consumers`] (a plain `ZRANGE`) names the in-flight keys, then one script
//! call declares each of them in `KEYS` and re-checks, atomically, that it is still
//! registered.

use std::collections::BTreeSet;

use curlyq_core::admin::{
    ActionReport, ConsumerInfo, Counts, DeleteReport, JobDetail, JobPage, JobState, JobSummary,
    MinuteCounts, PageRequest, Problem, ProblemKind, QueueStats, RemoveReport, Selection,
    COUNTER_MINUTES, FIND_ACTIVE_SCAN, HEAD_EXTRA, MAX_PAGE, MAX_PREVIEW, TAIL_BYTES,
};
use curlyq_core::{BackendError, QueueName, MAX_BATCH};

use crate::calls::{
    array, count, hash, int, invalid, optional_bytes, optional_score, score, text, texts, Reply,
    ScriptCall, ScriptId,
};
use crate::transport::Command;
use crate::Keys;

/// The largest page cursor sent to a script (Lua 5.1 prints larger integers in exponent
/// form, which Redis refuses): a cursor beyond it reads an empty page.
pub const MAX_CURSOR: u64 = 1_000_000_000_000;

/// Suffixes of the keys that make a queue, with their types, for
/// [`list_queues`](curlyq_core::QueueBackend::list_queues).
pub const QUEUE_KEYS: [(&str, &str); 5] = [
    (":data", "hash"),
    (":active", "list"),
    (":scheduled", "zset"),
    (":dead", "zset"),
    (":consumers", "zset"),
];

/// How many candidate keys one `admin_stray` call examines.
pub const STRAY_PER_CALL: usize = 100;

/// Phase 1 of the operations that read in-flight sets: the consumer set's members.
pub fn list_consumers(keys: &Keys) -> Command {
    Command::new("ZRANGE")
        .arg(&keys.consumers)
        .arg("0")
        .arg("-1")
}

/// The in-flight keys a [`list_consumers`] reply names: only members under the queue's
/// `Q:inflight:` prefix (a script declares only keys of its queue).
pub fn members(keys: &Keys, listed: &Reply) -> Result<Vec<Vec<u8>>, BackendError> {
    if *listed == Reply::Nil {
        return Ok(Vec::new());
    }
    let prefix = keys.inflight_prefix().as_bytes();
    let mut out = Vec::new();
    for member in array("consumers", listed)? {
        let member =
            optional_bytes("consumers", member)?.ok_or_else(|| invalid("consumers: a nil"))?;
        if member.starts_with(prefix) {
            out.push(member);
        }
    }
    Ok(out)
}

/// A consumer ID from its in-flight key (lossy for bytes that are not UTF-8).
pub fn consumer_of(keys: &Keys, member: &[u8]) -> String {
    let prefix = keys.inflight_prefix().as_bytes();
    let id = member.strip_prefix(prefix).unwrap_or(member);
    String::from_utf8_lossy(id).into_owned()
}

fn with_members(mut call: ScriptCall, members: &[Vec<u8>]) -> ScriptCall {
    call.keys.extend(members.iter().cloned());
    call
}

fn u64_of(op: &str, reply: &Reply) -> Result<u64, BackendError> {
    let n = int(op, reply)?;
    u64::try_from(n).map_err(|_| invalid(format!("{op}: negative count {n}")))
}

fn optional_text(op: &str, reply: &Reply) -> Result<Option<String>, BackendError> {
    Ok(optional_bytes(op, reply)?.map(|b| String::from_utf8_lossy(&b).into_owned()))
}

fn orphaned(op: &str, reply: &Reply) -> Result<u32, BackendError> {
    match optional_text(op, reply)? {
        None => Ok(0),
        Some(n) => n
            .trim()
            .parse()
            .map_err(|_| invalid(format!("{op}: an orphan count that is not a number"))),
    }
}

/// Counters from a hash reply (`processed`, `failed`, `retried`, `killed`; other fields
/// ignored).
pub fn counts(op: &str, reply: &Reply) -> Result<Counts, BackendError> {
    let mut c = Counts::default();
    if *reply == Reply::Nil {
        return Ok(c);
    }
    for (field, value) in hash(op, reply)? {
        let n: u64 = String::from_utf8_lossy(&value)
            .trim()
            .parse()
            .map_err(|_| invalid(format!("{op}: counter {field} is not a number")))?;
        match field.as_str() {
            "processed" => c.processed = n,
            "failed" => c.failed = n,
            "retried" => c.retried = n,
            "killed" => c.killed = n,
            _ => {}
        }
    }
    Ok(c)
}

/// The minutes a stats call reads: the last `min(minutes, COUNTER_MINUTES)` up to `now`'s,
/// oldest first.
pub fn stat_minutes(now: f64, minutes: usize) -> Vec<i64> {
    let last = curlyq_core::admin::minute_of(now);
    let n = minutes.min(COUNTER_MINUTES) as i64;
    (last - n + 1..=last).collect()
}

/// The `admin_stats` call over the in-flight keys `members`, reading `minutes` (from
/// [`stat_minutes`]).
pub fn stats_call(keys: &Keys, members: &[Vec<u8>], minutes: &[i64]) -> ScriptCall {
    let mut call = ScriptCall::new(
        ScriptId::AdminStats,
        &[
            &keys.active,
            &keys.scheduled,
            &keys.dead,
            &keys.consumers,
            &keys.paused,
            &keys.counts,
            &keys.data,
        ],
    );
    call.keys
        .extend(minutes.iter().map(|m| keys.counts_minute(*m).into_bytes()));
    call.num(minutes.len()).num(HEAD_EXTRA);
    with_members(call, members)
}

/// The reply of [`stats_call`].
pub fn parse_stats(reply: &Reply, minutes: &[i64]) -> Result<QueueStats, BackendError> {
    const OP: &str = "stats";
    let parts = array(OP, reply)?;
    let [active, scheduled, dead, consumers, paused, inflight, head, head_len, next_due, total, per_minute] =
        parts
    else {
        return Err(invalid(format!(
            "{OP}: expected 11 elements, got {}",
            parts.len()
        )));
    };
    let mut stats = QueueStats {
        active: u64_of(OP, active)?,
        scheduled: u64_of(OP, scheduled)?,
        dead: u64_of(OP, dead)?,
        consumers: u64_of(OP, consumers)?,
        paused: int(OP, paused)? != 0,
        inflight: u64_of(OP, inflight)?,
        next_due: optional_score(OP, next_due)?,
        total: counts(OP, total)?,
        ..QueueStats::default()
    };
    if let Some(head) = optional_bytes(OP, head)? {
        let len = u64_of(OP, head_len)?;
        let mut s = JobSummary::default();
        curlyq_core::admin::describe(&mut s, &head, &[], len, 0);
        stats.oldest_ready_at = s.ready_at;
    }
    let per_minute = array(OP, per_minute)?;
    if per_minute.len() != minutes.len() {
        return Err(invalid(format!(
            "{OP}: {} minutes for {} asked",
            per_minute.len(),
            minutes.len()
        )));
    }
    stats.minutes = minutes
        .iter()
        .zip(per_minute)
        .map(|(minute, reply)| {
            Ok(MinuteCounts {
                minute: *minute,
                counts: counts(OP, reply)?,
            })
        })
        .collect::<Result<_, BackendError>>()?;
    Ok(stats)
}

/// The `admin_consumers` call over the in-flight keys `members`.
pub fn consumers_call(keys: &Keys, members: &[Vec<u8>]) -> ScriptCall {
    with_members(
        ScriptCall::new(ScriptId::AdminConsumers, &[&keys.consumers]),
        members,
    )
}

/// The reply of [`consumers_call`], oldest heartbeat first ((score, member) order).
pub fn parse_consumers(keys: &Keys, reply: &Reply) -> Result<Vec<ConsumerInfo>, BackendError> {
    const OP: &str = "consumers";
    let items = array(OP, reply)?;
    if items.len() % 3 != 0 {
        return Err(invalid(format!("{OP}: expected triples")));
    }
    let mut rows = Vec::new();
    for triple in items.chunks_exact(3) {
        let [member, heartbeat, n] = triple else {
            return Err(invalid(format!("{OP}: expected triples")));
        };
        let member = optional_bytes(OP, member)?.ok_or_else(|| invalid("consumers: a nil"))?;
        let heartbeat =
            optional_score(OP, heartbeat)?.ok_or_else(|| invalid("consumers: a nil score"))?;
        rows.push((heartbeat, member, u64_of(OP, n)?));
    }
    rows.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    Ok(rows
        .into_iter()
        .map(|(heartbeat, member, inflight)| ConsumerInfo {
            id: consumer_of(keys, &member),
            heartbeat,
            inflight,
        })
        .collect())
}

/// The `admin_jobs` call of a page (`None` for a state that lists nothing); `members` are
/// the in-flight keys (only read for [`JobState::InFlight`]).
pub fn jobs_call(keys: &Keys, page: &PageRequest, members: &[Vec<u8>]) -> Option<ScriptCall> {
    let (mode, source) = match page.state {
        JobState::Active => ("list", &keys.active),
        JobState::Scheduled => ("zset", &keys.scheduled),
        JobState::Dead => ("zset", &keys.dead),
        JobState::InFlight => ("inflight", &keys.consumers),
        _ => return None,
    };
    let mut call = ScriptCall::new(
        ScriptId::AdminJobs,
        &[
            &keys.data,
            &keys.reasons,
            &keys.errors,
            &keys.orphaned,
            source,
        ],
    );
    if page.state == JobState::InFlight {
        call.keys.extend(members.iter().cloned());
    }
    call.arg(mode)
        .num(page.cursor.min(MAX_CURSOR))
        .num(page.limit.clamp(1, MAX_PAGE))
        .num(page.preview.min(MAX_PREVIEW) + HEAD_EXTRA)
        .num(TAIL_BYTES);
    Some(call)
}

/// The reply of [`jobs_call`].
pub fn parse_jobs(keys: &Keys, page: &PageRequest, reply: &Reply) -> Result<JobPage, BackendError> {
    const OP: &str = "jobs";
    let items = array(OP, reply)?;
    let (total, entries) = items
        .split_first()
        .ok_or_else(|| invalid(format!("{OP}: an empty reply")))?;
    let total = u64_of(OP, total)?;
    let preview = page.preview.min(MAX_PREVIEW);
    let cursor = page.cursor.min(MAX_CURSOR);
    let mut jobs = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let fields = array(OP, entry)?;
        let [id, extra, has, len, head, tail, reason, error, orphan] = fields else {
            return Err(invalid(format!(
                "{OP}: an entry of {} fields",
                fields.len()
            )));
        };
        let mut s = JobSummary {
            id: text(OP, id)?,
            state: Some(page.state),
            reason: optional_text(OP, reason)?,
            last_error: optional_text(OP, error)?,
            orphaned: orphaned(OP, orphan)?,
            ..JobSummary::default()
        };
        match page.state {
            JobState::Active => s.position = Some(cursor + i as u64),
            JobState::InFlight => {
                let member = optional_bytes(OP, extra)?
                    .ok_or_else(|| invalid(format!("{OP}: an in-flight job with no consumer")))?;
                s.consumer = Some(consumer_of(keys, &member));
            }
            _ => s.score = optional_score(OP, extra)?,
        }
        if int(OP, has)? != 0 {
            let head = optional_bytes(OP, head)?.unwrap_or_default();
            let tail = optional_bytes(OP, tail)?.unwrap_or_default();
            curlyq_core::admin::describe(&mut s, &head, &tail, u64_of(OP, len)?, preview);
        }
        jobs.push(s);
    }
    let end = cursor + jobs.len() as u64;
    Ok(JobPage {
        next: (end < total).then_some(end),
        jobs,
        total,
    })
}

/// The `admin_find` call of job `id` over the in-flight keys `members`; with `head`, the
/// script replies with at most that many bytes of the job's data (see
/// [`parse_find`] and `find_job_head`).
pub fn find_call(keys: &Keys, id: &str, members: &[Vec<u8>], head: Option<usize>) -> ScriptCall {
    let mut call = ScriptCall::new(
        ScriptId::AdminFind,
        &[
            &keys.data,
            &keys.scheduled,
            &keys.dead,
            &keys.active,
            &keys.reasons,
            &keys.errors,
            &keys.orphaned,
            &keys.consumers,
        ],
    );
    call.arg(id).num(FIND_ACTIVE_SCAN);
    if let Some(head) = head {
        call.num(head);
    }
    with_members(call, members)
}

/// The reply of [`find_call`]; `preview` is the payload bytes a cut job's summary keeps
/// (with a head of `preview` + `HEAD_EXTRA` in the call).
pub fn parse_find(
    keys: &Keys,
    id: &str,
    reply: &Reply,
    preview: usize,
) -> Result<Option<JobDetail>, BackendError> {
    const OP: &str = "find_job";
    let parts = array(OP, reply)?;
    // With a head in the call, two more elements: the tail and the length of cut data.
    let (fields, cut) = match parts {
        [fields @ .., tail, stored] if parts.len() == 10 => (fields, Some((tail, stored))),
        fields => (fields, None),
    };
    let [data, scheduled, dead, holder, position, reason, error, orphan] = fields else {
        return Err(invalid(format!(
            "{OP}: expected 8 or 10 elements, got {}",
            parts.len()
        )));
    };
    let data = optional_bytes(OP, data)?;
    let cut = match cut {
        Some((tail, stored)) if !matches!(stored, Reply::Nil | Reply::Bool(false)) => Some((
            optional_bytes(OP, tail)?.unwrap_or_default(),
            u64_of(OP, stored)?,
        )),
        _ => None,
    };
    let scheduled = optional_score(OP, scheduled)?;
    let dead = optional_score(OP, dead)?;
    let holder = optional_bytes(OP, holder)?;
    let position = match position {
        Reply::Nil | Reply::Bool(false) => None,
        other => Some(u64_of(OP, other)?),
    };
    let mut s = JobSummary {
        id: id.to_owned(),
        reason: optional_text(OP, reason)?,
        last_error: optional_text(OP, error)?,
        orphaned: orphaned(OP, orphan)?,
        ..JobSummary::default()
    };
    s.state = if let Some(holder) = holder {
        s.consumer = Some(consumer_of(keys, &holder));
        Some(JobState::InFlight)
    } else if scheduled.is_some() {
        s.score = scheduled;
        Some(JobState::Scheduled)
    } else if position.is_some() {
        s.position = position;
        Some(JobState::Active)
    } else if dead.is_some() {
        s.score = dead;
        Some(JobState::Dead)
    } else if data.is_some() {
        Some(JobState::Unplaced)
    } else {
        return Ok(None);
    };
    if let Some((tail, stored)) = cut {
        let head = data.unwrap_or_default();
        curlyq_core::admin::describe(&mut s, &head, &tail, stored, preview);
        return Ok(Some(JobDetail {
            summary: s,
            data: None,
        }));
    }
    if let Some(bytes) = &data {
        curlyq_core::admin::describe(&mut s, bytes, &[], bytes.len() as u64, 0);
    }
    Ok(Some(JobDetail { summary: s, data }))
}

/// The `admin_move` calls moving jobs of `from` ([`JobState::Dead`], whose reasons go, or
/// [`JobState::Scheduled`]) to the active list; IDs in chunks of [`MAX_BATCH`] (none for
/// no IDs). Parse with [`parse_move`].
pub fn move_calls(keys: &Keys, from: JobState, selection: &Selection) -> Vec<ScriptCall> {
    let (source, clear) = if from == JobState::Dead {
        (&keys.dead, "1")
    } else {
        (&keys.scheduled, "0")
    };
    let base = || {
        let mut call = ScriptCall::new(
            ScriptId::AdminMove,
            &[source, &keys.active, &keys.signal, &keys.reasons],
        );
        call.arg(clear);
        call
    };
    match selection {
        Selection::Oldest(n) => {
            let mut call = base();
            call.arg("oldest").num((*n).min(MAX_BATCH));
            vec![call]
        }
        Selection::Ids(ids) => ids
            .chunks(MAX_BATCH)
            .map(|chunk| {
                let mut call = base();
                call.arg("ids");
                for id in chunk {
                    call.arg(id);
                }
                call
            })
            .collect(),
    }
}

/// The `{done, skipped}` replies of [`move_calls`], concatenated.
pub fn parse_move(op: &str, replies: &[Reply]) -> Result<ActionReport, BackendError> {
    let mut report = ActionReport::default();
    for reply in replies {
        let parts = array(op, reply)?;
        let [done, skipped] = parts else {
            return Err(invalid(format!("{op}: expected two lists")));
        };
        report.done.extend(list_texts(op, done)?);
        report.skipped.extend(list_texts(op, skipped)?);
    }
    Ok(report)
}

/// Texts of an array, where Redis may answer an empty Lua table as nil.
fn list_texts(op: &str, reply: &Reply) -> Result<Vec<String>, BackendError> {
    match reply {
        Reply::Nil => Ok(Vec::new()),
        other => texts(op, other),
    }
}

/// The keys that place a job and hold its side fields, in the order `admin_delete` and
/// `admin_problem` declare them first: data, active, scheduled, dead, reasons, errors,
/// orphaned, consumers.
fn placement_keys(keys: &Keys) -> [&str; 8] {
    [
        &keys.data,
        &keys.active,
        &keys.scheduled,
        &keys.dead,
        &keys.reasons,
        &keys.errors,
        &keys.orphaned,
        &keys.consumers,
    ]
}

/// The `admin_delete` calls (chunks of [`MAX_BATCH`]) over the in-flight keys `members`.
pub fn delete_calls(keys: &Keys, ids: &[String], members: &[Vec<u8>]) -> Vec<ScriptCall> {
    ids.chunks(MAX_BATCH)
        .map(|chunk| {
            let [data, active, scheduled, dead, reasons, errors, orphaned, consumers] =
                placement_keys(keys);
            let declared = [
                data,
                active,
                scheduled,
                dead,
                reasons,
                errors,
                orphaned,
                consumers,
                &keys.trace,
            ];
            let mut call = ScriptCall::new(ScriptId::AdminDelete, &declared);
            for id in chunk {
                call.arg(id);
            }
            with_members(call, members)
        })
        .collect()
}

/// The replies of [`delete_calls`] for `ids`.
pub fn parse_delete(ids: &[String], replies: &[Reply]) -> Result<DeleteReport, BackendError> {
    const OP: &str = "delete_jobs";
    let mut outcomes = Vec::with_capacity(ids.len());
    for reply in replies {
        outcomes.extend(list_texts(OP, reply)?);
    }
    if outcomes.len() != ids.len() {
        return Err(invalid(format!(
            "{OP}: {} outcomes for {} IDs",
            outcomes.len(),
            ids.len()
        )));
    }
    let mut report = DeleteReport::default();
    for (id, outcome) in ids.iter().zip(outcomes) {
        let id = id.clone();
        match outcome.as_str() {
            "inflight" => report.in_flight.push(id),
            "missing" => report.missing.push(id),
            "scheduled" => report.deleted.push((id, JobState::Scheduled)),
            "active" => report.deleted.push((id, JobState::Active)),
            "dead" => report.deleted.push((id, JobState::Dead)),
            "unplaced" => report.deleted.push((id, JobState::Unplaced)),
            other => return Err(invalid(format!("{OP}: unknown outcome {other:?}"))),
        }
    }
    Ok(report)
}

/// The `admin_purge` call of up to `max` jobs (at most [`MAX_BATCH`]) of `state`; `None`
/// when `max` is 0; [`BackendError::Rejected`] for a state other than active, scheduled or
/// dead.
pub fn purge_call(
    keys: &Keys,
    state: JobState,
    max: usize,
) -> Result<Option<ScriptCall>, BackendError> {
    let (mode, source) = match state {
        JobState::Active => ("list", &keys.active),
        JobState::Scheduled => ("zset", &keys.scheduled),
        JobState::Dead => ("zset", &keys.dead),
        other => {
            return Err(BackendError::Rejected(format!(
                "purge: only active, scheduled or dead jobs can be purged, not {other} \
                 (in-flight jobs belong to their consumers)"
            )))
        }
    };
    if max == 0 {
        return Ok(None);
    }
    let mut call = ScriptCall::new(
        ScriptId::AdminPurge,
        &[
            source,
            &keys.data,
            &keys.reasons,
            &keys.errors,
            &keys.orphaned,
            &keys.trace,
        ],
    );
    call.arg(mode).num(max.min(MAX_BATCH));
    Ok(Some(call))
}

/// The `admin_remove_consumer` call.
pub fn remove_consumer_call(
    keys: &Keys,
    consumer: &str,
    expired_before: f64,
) -> Result<ScriptCall, BackendError> {
    let inflight = keys.inflight(consumer);
    let mut call = ScriptCall::new(
        ScriptId::AdminRemoveConsumer,
        &[&keys.consumers, &inflight, &keys.active, &keys.signal],
    );
    call.arg(score("expired_before", expired_before)?);
    Ok(call)
}

/// The `{removed, requeued, heartbeat}` reply of [`remove_consumer_call`].
pub fn parse_remove_consumer(reply: &Reply) -> Result<RemoveReport, BackendError> {
    const OP: &str = "remove_consumer";
    let parts = array(OP, reply)?;
    let (removed, requeued, heartbeat) = match parts {
        [removed, requeued, heartbeat] => (removed, requeued, Some(heartbeat)),
        // A trailing nil may be dropped from a Lua table.
        [removed, requeued] => (removed, requeued, None),
        _ => return Err(invalid(format!("{OP}: expected three elements"))),
    };
    Ok(RemoveReport {
        removed: int(OP, removed)? == 1,
        requeued: count(OP, requeued)?,
        heartbeat: match heartbeat {
            Some(h) => optional_score(OP, h)?,
            None => None,
        },
    })
}

/// The `admin_pause` call.
pub fn pause_call(keys: &Keys, paused: bool) -> ScriptCall {
    let mut call = ScriptCall::new(ScriptId::AdminPause, &[&keys.paused, &keys.signal]);
    call.arg(if paused { "1" } else { "0" });
    call
}

/// The `admin_data_ids` call.
pub fn data_ids_call(keys: &Keys, cursor: u64, count: usize) -> ScriptCall {
    let mut call = ScriptCall::new(ScriptId::AdminDataIds, &[&keys.data]);
    call.num(cursor).num(count.max(1));
    call
}

/// The `{cursor, ids}` reply of [`data_ids_call`].
pub fn parse_data_ids(reply: &Reply) -> Result<(Vec<String>, Option<u64>), BackendError> {
    const OP: &str = "data_ids";
    let parts = array(OP, reply)?;
    let [cursor, ids] = parts else {
        return Err(invalid(format!("{OP}: expected a cursor and IDs")));
    };
    let cursor = cursor_of(OP, cursor)?;
    Ok((list_texts(OP, ids)?, (cursor != 0).then_some(cursor)))
}

fn cursor_of(op: &str, reply: &Reply) -> Result<u64, BackendError> {
    let raw = optional_bytes(op, reply)?.ok_or_else(|| invalid(format!("{op}: a nil cursor")))?;
    std::str::from_utf8(&raw)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(format!("{op}: a cursor that is not a number")))
}

/// `pattern` with the glob characters of `SCAN … MATCH` (`*?[]\`) escaped.
pub fn glob_escape(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    for c in pattern.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One `SCAN` page: `SCAN cursor MATCH pattern COUNT 1000`, with `TYPE` when given.
pub fn scan_command(cursor: &[u8], pattern: &str, key_type: Option<&str>) -> Command {
    let command = Command::new("SCAN")
        .arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg("1000");
    match key_type {
        Some(t) => command.arg("TYPE").arg(t),
        None => command,
    }
}

/// The `{cursor, keys}` reply of a `SCAN`: the next cursor (`b"0"` at the end) and keys.
pub fn parse_scan(reply: &Reply) -> Result<(Vec<u8>, Vec<Vec<u8>>), BackendError> {
    const OP: &str = "SCAN";
    let parts = array(OP, reply)?;
    let [cursor, found] = parts else {
        return Err(invalid("SCAN: expected a cursor and keys"));
    };
    let cursor = optional_bytes(OP, cursor)?.ok_or_else(|| invalid("SCAN: a nil cursor"))?;
    let found = match found {
        Reply::Nil => Vec::new(),
        other => array(OP, other)?
            .iter()
            .map(|k| optional_bytes(OP, k)?.ok_or_else(|| invalid("SCAN: a nil key")))
            .collect::<Result<_, _>>()?,
    };
    Ok((cursor, found))
}

/// Whether a `SCAN` cursor ends the pass.
pub fn scan_done(cursor: &[u8]) -> bool {
    cursor == b"0"
}

/// The queue a key would belong to, and the type it must hold: `Q:data` (hash) ->
/// `Q`, and so on for [`QUEUE_KEYS`]. `None` for other keys, names that are not UTF-8 and
/// names [`QueueName::new`] refuses.
pub fn queue_of_key(key: &[u8]) -> Option<(QueueName, &'static str)> {
    let key = std::str::from_utf8(key).ok()?;
    QUEUE_KEYS.iter().find_map(|(suffix, kind)| {
        let name = key.strip_suffix(suffix)?;
        QueueName::new(name).ok().map(|q| (q, *kind))
    })
}

/// The `SCAN` pattern of a queue's in-flight keys.
pub fn stray_pattern(keys: &Keys) -> String {
    format!("{}*", glob_escape(keys.inflight_prefix()))
}

/// The `admin_stray` call over candidate in-flight keys (at most [`STRAY_PER_CALL`]).
pub fn stray_call(keys: &Keys, candidates: &[Vec<u8>]) -> ScriptCall {
    with_members(
        ScriptCall::new(ScriptId::AdminStray, &[&keys.consumers]),
        candidates,
    )
}

/// The reply of [`stray_call`]: consumer ID -> members, of the unregistered sets.
pub fn parse_stray(
    keys: &Keys,
    candidates: &[Vec<u8>],
    reply: &Reply,
) -> Result<Vec<(String, BTreeSet<String>)>, BackendError> {
    const OP: &str = "stray_inflight";
    let items = match reply {
        Reply::Nil => &[][..],
        other => array(OP, other)?,
    };
    if items.len() > candidates.len() {
        return Err(invalid(format!("{OP}: more answers than keys")));
    }
    let mut out = Vec::new();
    // Trailing nils may be dropped from a Lua table.
    for (key, item) in candidates.iter().zip(items) {
        if matches!(item, Reply::Nil | Reply::Bool(false)) {
            continue;
        }
        let ids: BTreeSet<String> = texts(OP, item)?.into_iter().collect();
        if !ids.is_empty() {
            out.push((consumer_of(keys, key), ids));
        }
    }
    Ok(out)
}

/// Confirm or repair, for [`problem_call`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemAction {
    /// Whether it holds, with its places as now.
    Confirm,
    /// Re-check and fix.
    Repair,
}

/// The `admin_problem` call: for [`ProblemKind::StrayInFlight`] the stray set's key is
/// declared (`members` unused), else the in-flight keys `members`. `None` for a kind this
/// version does not know.
pub fn problem_call(
    keys: &Keys,
    action: ProblemAction,
    problem: &Problem,
    members: &[Vec<u8>],
) -> Option<ScriptCall> {
    let kind = match problem.kind {
        ProblemKind::Unreferenced => "unreferenced",
        ProblemKind::Duplicate => "duplicate",
        ProblemKind::Dangling => "dangling",
        ProblemKind::StrayInFlight => "stray-inflight",
        _ => return None,
    };
    let mut call = ScriptCall::new(ScriptId::AdminProblem, &placement_keys(keys));
    call.keys.push(keys.signal.clone().into_bytes());
    if problem.kind == ProblemKind::StrayInFlight {
        call.keys.push(keys.inflight(&problem.id).into_bytes());
    } else {
        call.keys.extend(members.iter().cloned());
    }
    call.arg(match action {
        ProblemAction::Confirm => "confirm",
        ProblemAction::Repair => "repair",
    })
    .arg(kind)
    .arg(&problem.id);
    Some(call)
}

/// The confirm reply of [`problem_call`]: the problem with its places as now (sorted,
/// one entry per occurrence), or `None` when it no longer holds.
pub fn parse_confirm(problem: &Problem, reply: &Reply) -> Result<Option<Problem>, BackendError> {
    const OP: &str = "confirm";
    let parts = array(OP, reply)?;
    let [holds, active, scheduled, dead, inflight] = parts else {
        return Err(invalid(format!("{OP}: expected five counts")));
    };
    if int(OP, holds)? == 0 {
        return Ok(None);
    }
    let mut places = vec![JobState::Active; count(OP, active)?];
    places.extend(std::iter::repeat_n(
        JobState::Scheduled,
        count(OP, scheduled)?,
    ));
    places.extend(std::iter::repeat_n(JobState::Dead, count(OP, dead)?));
    places.extend(std::iter::repeat_n(
        JobState::InFlight,
        count(OP, inflight)?,
    ));
    places.sort();
    Ok(Some(Problem {
        kind: problem.kind,
        id: problem.id.clone(),
        places,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("{q}*?[a]\\"), "{q}\\*\\?\\[a\\]\\\\");
        assert_eq!(stray_pattern(&Keys::new("a*")), "a\\*:inflight:*");
    }

    #[test]
    fn queue_keys_name_their_queue() {
        let q = |k: &[u8]| queue_of_key(k).map(|(q, t)| (q.to_string(), t));
        assert_eq!(q(b"{e}:data"), Some(("{e}".to_owned(), "hash")));
        assert_eq!(q(b"x:y:dead"), Some(("x:y".to_owned(), "zset")));
        assert_eq!(q(b":active"), None, "an empty name is refused");
        assert_eq!(q(b"q:dead:reasons"), None);
        assert_eq!(q(b"\xff:data"), None);
    }

    #[test]
    fn stats_read_the_last_minutes_oldest_first() {
        assert_eq!(stat_minutes(600.0, 3), vec![8, 9, 10]);
        assert_eq!(stat_minutes(600.0, 0), Vec::<i64>::new());
        assert_eq!(stat_minutes(6e6, usize::MAX).len(), COUNTER_MINUTES);
        let keys = Keys::new("{q}");
        let call = stats_call(&keys, &[b"{q}:inflight:c".to_vec()], &[9, 10]);
        let declared: Vec<&[u8]> = call.keys.iter().map(Vec::as_slice).collect();
        assert_eq!(
            declared.get(7..),
            Some(&[&b"{q}:counts:9"[..], b"{q}:counts:10", b"{q}:inflight:c"][..])
        );
    }

    #[test]
    fn only_members_of_the_queue_are_declared() {
        let keys = Keys::new("{q}");
        let listed = Reply::Array(vec![
            Reply::Bulk(b"{q}:inflight:a".to_vec()),
            Reply::Bulk(b"other:inflight:b".to_vec()),
        ]);
        assert_eq!(
            members(&keys, &listed).ok(),
            Some(vec![b"{q}:inflight:a".to_vec()])
        );
        assert_eq!(consumer_of(&keys, b"{q}:inflight:a"), "a");
    }

    #[test]
    fn malformed_replies_are_invalid_not_panics() {
        let keys = Keys::new("{q}");
        let page = PageRequest::first(JobState::Active);
        for reply in [
            Reply::Nil,
            Reply::Array(vec![]),
            Reply::Array(vec![Reply::Int(1), Reply::Int(2)]),
            Reply::Array(vec![Reply::Int(-1)]),
        ] {
            assert!(matches!(
                parse_jobs(&keys, &page, &reply),
                Err(BackendError::InvalidReply(_))
            ));
            assert!(parse_stats(&reply, &[]).is_err());
            assert!(parse_find(&keys, "a", &reply, 0).is_err());
            assert!(parse_data_ids(&reply).is_err());
        }
        let bad_count = Reply::Array(vec![
            Reply::Bulk(b"processed".to_vec()),
            Reply::Bulk(b"many".to_vec()),
        ]);
        assert!(counts("stats", &bad_count).is_err());
    }

    #[test]
    fn purge_refuses_other_states_before_any_call() {
        let keys = Keys::new("{q}");
        assert!(matches!(
            purge_call(&keys, JobState::InFlight, 5),
            Err(BackendError::Rejected(_))
        ));
        assert!(matches!(purge_call(&keys, JobState::Dead, 0), Ok(None)));
        let call = purge_call(&keys, JobState::Active, 5000).ok().flatten();
        assert_eq!(
            call.map(|c| c.args),
            Some(vec![b"list".to_vec(), b"1000".to_vec()])
        );
    }

    #[test]
    fn ids_are_moved_in_chunks() {
        let keys = Keys::new("{q}");
        let ids: Vec<String> = (0..MAX_BATCH + 1).map(|i| i.to_string()).collect();
        let calls = move_calls(&keys, JobState::Dead, &Selection::Ids(ids));
        assert_eq!(calls.len(), 2);
        assert_eq!(
            calls.get(1).map(|c| c.args.len()),
            Some(3),
            "clear, mode, one ID"
        );
    }
}
