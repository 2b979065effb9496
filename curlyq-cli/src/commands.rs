//! The commands, each on the [`QueueBackend`] of a [`Ctx`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use curlyq_core::admin::{
    self, JobState, PageRequest, ProblemKind, QueueStats, Selection, MAX_PAGE,
};
use curlyq_core::{Job, ProduceError, Producer, QueueBackend, QueueName, MAX_BATCH};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::cli::{Command, Confirm, Format, ListState, PurgeState};
use crate::output::*;
use crate::render::{cut, human_seconds, opt, short_time, Bytes, Table, Timestamp};
use crate::{backend_failure, Ctx, Failure, EXIT_ERROR, EXIT_PROBLEMS};

type Result<T, E = Failure> = std::result::Result<T, E>;

fn now() -> f64 {
    curlyq_core::unix_seconds(SystemTime::now())
}

fn refusal(what: &str) -> Failure {
    Failure::Usage(format!(
        "{what} changes or deletes jobs: add --yes to do it, or --dry-run to see what it would do"
    ))
}

fn needs(confirm: Confirm, what: &str) -> Result<()> {
    if confirm.yes || confirm.dry_run {
        Ok(())
    } else {
        Err(refusal(what))
    }
}

/// Checks what clap cannot: the `--yes` / `--dry-run` rule, and values that only make
/// sense together. Runs before connecting.
pub(crate) fn validate(command: &Command) -> Result<()> {
    match command {
        Command::Retry {
            all,
            oldest,
            confirm,
            ..
        } => {
            if *oldest == Some(0) {
                return Err(Failure::Usage("--oldest needs at least 1".into()));
            }
            if *all {
                needs(*confirm, "retry --all")?;
            }
            if oldest.is_some() {
                needs(*confirm, "retry --oldest")?;
            }
            Ok(())
        }
        Command::RunNow { all, confirm, .. } if *all => needs(*confirm, "run-now --all"),
        Command::Delete { confirm, .. } => needs(*confirm, "delete"),
        Command::Purge { confirm, .. } => needs(*confirm, "purge"),
        Command::Consumers {
            remove: Some(_),
            confirm,
            ..
        } => needs(*confirm, "consumers --remove"),
        Command::Check {
            repair: true,
            confirm,
            ..
        } => needs(*confirm, "check --repair"),
        _ => Ok(()),
    }
}

fn queue_name(name: &str) -> Result<QueueName> {
    QueueName::new(name).map_err(|e| Failure::Usage(format!("{e}")))
}

impl Ctx<'_> {
    fn backend(&self) -> &dyn QueueBackend {
        &*self.backend
    }

    fn fail(&self, err: curlyq_core::BackendError) -> Failure {
        backend_failure(err, &self.url)
    }

    /// Prints `value` as JSON, or `table()` in table mode.
    fn emit<T: Serialize>(&mut self, value: &T, table: impl FnOnce() -> String) -> Result<()> {
        let text = match self.format {
            Format::Table => table(),
            Format::Json => json_pretty(value)? + "\n",
            Format::Jsonl => json_line(value)? + "\n",
        };
        self.out
            .write_all(text.as_bytes())
            .and_then(|()| self.out.flush())
            .map_err(|e| Failure::Error(format!("cannot write the output: {e}")))
    }

    /// A note on stderr (table mode only: JSON readers get the facts in the document).
    fn note(&mut self, text: &str) {
        if self.format == Format::Table {
            let _ = writeln!(self.err, "note: {text}");
        }
    }

    /// A warning on stderr (every mode).
    fn warn(&mut self, text: &str) {
        let _ = writeln!(self.err, "warning: {text}");
    }

    fn bar(&self, len: Option<u64>, message: &str) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let bar = match len {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::new_spinner(),
        };
        let template = if len.is_some() {
            "{msg} [{bar:30}] {pos}/{len} {elapsed}"
        } else {
            "{msg} {spinner} {pos} {elapsed}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(message.to_owned());
        bar
    }
}

fn json_pretty<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string_pretty(value)
        .map_err(|e| Failure::Error(format!("cannot encode the output as JSON: {e}")))
}

fn json_line<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| Failure::Error(format!("cannot encode the output as JSON: {e}")))
}

/// Runs one (validated) command.
pub(crate) async fn execute(ctx: &mut Ctx<'_>, command: Command) -> Result<()> {
    match command {
        Command::Queues => queues(ctx).await,
        Command::Stats {
            queue,
            watch,
            interval,
            minutes,
        } => stats(ctx, queue, watch, interval, minutes as usize).await,
        Command::Jobs {
            queue,
            state,
            limit,
            cursor,
            preview,
        } => {
            let request = PageRequest {
                state: list_state(state),
                cursor,
                limit: limit as usize,
                preview: preview as usize,
            };
            jobs(ctx, &queue, request).await
        }
        Command::Job {
            queue,
            id,
            max_bytes,
        } => job(ctx, &queue, &id, max_bytes).await,
        Command::Retry {
            queue,
            ids,
            all,
            oldest,
            confirm,
        } => {
            let which = if all {
                Which::All
            } else if let Some(n) = oldest {
                Which::Oldest(n)
            } else {
                Which::Ids(ids)
            };
            move_jobs(ctx, &queue, Move::Retry, which, confirm.dry_run).await
        }
        Command::RunNow {
            queue,
            ids,
            all,
            confirm,
        } => {
            let which = if all { Which::All } else { Which::Ids(ids) };
            move_jobs(ctx, &queue, Move::RunNow, which, confirm.dry_run).await
        }
        Command::Delete {
            queue,
            ids,
            confirm,
        } => delete(ctx, &queue, ids, confirm.dry_run).await,
        Command::Purge {
            queue,
            state,
            confirm,
        } => purge(ctx, &queue, state, confirm.dry_run).await,
        Command::Pause { queue } => pause(ctx, &queue, true).await,
        Command::Resume { queue } => pause(ctx, &queue, false).await,
        Command::Consumers {
            queue,
            timeout,
            remove,
            confirm,
        } => match remove {
            Some(id) => remove_consumer(ctx, &queue, &id, timeout, confirm.dry_run).await,
            None => consumers(ctx, &queue, timeout).await,
        },
        Command::Check {
            queue,
            repair,
            confirm,
        } => check(ctx, &queue, repair, confirm.dry_run).await,
        Command::Enqueue {
            queue,
            data,
            id,
            delay,
            at,
        } => enqueue(ctx, &queue, &data, id, delay, at).await,
        // `run` serves it before connecting: it may need no Redis at all (--demo).
        Command::Web(_) => Err(Failure::Error(
            "curlyq web is served by curlyq_cli::run, not by a command context".into(),
        )),
    }
}

fn list_state(s: ListState) -> JobState {
    match s {
        ListState::Active => JobState::Active,
        ListState::Scheduled => JobState::Scheduled,
        ListState::Dead => JobState::Dead,
        ListState::Inflight => JobState::InFlight,
    }
}

fn purge_state(s: PurgeState) -> JobState {
    match s {
        PurgeState::Active => JobState::Active,
        PurgeState::Scheduled => JobState::Scheduled,
        PurgeState::Dead => JobState::Dead,
    }
}

// ----- queues

async fn queues(ctx: &mut Ctx<'_>) -> Result<()> {
    let names = ctx.backend().list_queues().await.map_err(|e| ctx.fail(e))?;
    let out = QueuesOut {
        queues: names.iter().map(|q| q.as_str().to_owned()).collect(),
    };
    if out.queues.is_empty() {
        ctx.note("no queues found on this server");
    }
    ctx.emit(&out, || {
        out.queues.iter().map(|q| format!("{q}\n")).collect()
    })
}

// ----- stats

/// Whether a queue has any key: stats show sizes; a queue with only data (unreferenced
/// jobs) or only counters still exists.
async fn exists(backend: &dyn QueueBackend, queue: &QueueName, s: &QueueStats) -> bool {
    if s.active + s.scheduled + s.dead + s.consumers + s.inflight > 0
        || s.paused
        || s.total.processed > 0
    {
        return true;
    }
    matches!(backend.data_ids(queue, 0, 10).await, Ok((ids, _)) if !ids.is_empty())
}

async fn read_stats(ctx: &Ctx<'_>, queue: Option<&str>, minutes: usize) -> Result<StatsOut> {
    let names = match queue {
        Some(q) => vec![queue_name(q)?],
        None => ctx.backend().list_queues().await.map_err(|e| ctx.fail(e))?,
    };
    let now = now();
    let mut queues = Vec::new();
    for name in names {
        let s = ctx
            .backend()
            .stats(&name, now, minutes)
            .await
            .map_err(|e| ctx.fail(e))?;
        let found = exists(ctx.backend(), &name, &s).await;
        queues.push(QueueStatsOut::new(name.as_str(), found, &s, now));
    }
    Ok(StatsOut {
        now: Timestamp::new(now),
        window_minutes: minutes,
        queues,
    })
}

fn stats_table(s: &StatsOut) -> String {
    let now = s.now.unix;
    let mut sizes = Table::new(&[
        "QUEUE",
        "ACTIVE",
        "SCHEDULED",
        "INFLIGHT",
        "DEAD",
        "CONSUMERS",
        "PAUSED",
        "LATENCY",
        "NEXT DUE",
    ]);
    let mut counts = Table::new(&[
        "QUEUE",
        "PROCESSED",
        "FAILED",
        "RETRIED",
        "KILLED",
        &format!("PROCESSED/{}M", s.window_minutes),
        &format!("FAILED/{}M", s.window_minutes),
    ]);
    for q in &s.queues {
        sizes.row(vec![
            cut(&q.queue, 24),
            q.active.to_string(),
            q.scheduled.to_string(),
            q.inflight.to_string(),
            q.dead.to_string(),
            q.consumers.to_string(),
            if q.paused { "yes" } else { "no" }.into(),
            opt(q.latency_seconds.map(human_seconds)),
            opt(q.next_due.as_ref().map(|t| {
                if t.unix <= now {
                    "due now".to_owned()
                } else {
                    format!("in {}", human_seconds(t.unix - now))
                }
            })),
        ]);
        counts.row(vec![
            cut(&q.queue, 24),
            q.total.processed.to_string(),
            q.total.failed.to_string(),
            q.total.retried.to_string(),
            q.total.killed.to_string(),
            q.recent.processed.to_string(),
            q.recent.failed.to_string(),
        ]);
    }
    if s.queues.is_empty() {
        return "no queues\n".into();
    }
    format!("{}\n{}", sizes.render(), counts.render())
}

async fn stats(
    ctx: &mut Ctx<'_>,
    queue: Option<String>,
    watch: bool,
    interval: Duration,
    minutes: usize,
) -> Result<()> {
    if !watch {
        let s = read_stats(ctx, queue.as_deref(), minutes).await?;
        for q in s.queues.iter().filter(|q| !q.exists) {
            let text = format!("queue {} has no keys (empty or unknown)", q.queue);
            ctx.note(&text);
        }
        if s.queues.is_empty() {
            ctx.note("no queues found on this server");
        }
        return ctx.emit(&s, || stats_table(&s));
    }
    let interval = interval.max(Duration::from_millis(100));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let s = read_stats(ctx, queue.as_deref(), minutes).await?;
        let text = match ctx.format {
            Format::Table => {
                let clear = if ctx.tty_out { "\x1b[2J\x1b[H" } else { "" };
                format!(
                    "{clear}{}  (every {}, Ctrl-C to stop)\n\n{}\n",
                    short_time(s.now.unix),
                    human_seconds(interval.as_secs_f64()),
                    stats_table(&s)
                )
            }
            Format::Json | Format::Jsonl => json_line(&s)? + "\n",
        };
        if let Err(e) = ctx
            .out
            .write_all(text.as_bytes())
            .and_then(|()| ctx.out.flush())
        {
            // A closed pipe (`| head`) ends the watch quietly.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(Failure::Error(format!("cannot write the output: {e}")));
        }
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            () = tokio::time::sleep(interval) => {}
        }
    }
}

// ----- jobs and job

fn job_row(j: &JobOut, state: JobState, now: f64) -> Vec<String> {
    let place = match state {
        JobState::Active => opt(j.position),
        JobState::InFlight => opt(j.consumer.as_deref().map(|c| cut(c, 20))),
        _ => opt(j.score.as_ref().map(|t| short_time(t.unix))),
    };
    let age = j
        .ready_at
        .as_ref()
        .filter(|t| t.unix <= now)
        .map(|t| human_seconds(now - t.unix));
    let note = j
        .reason
        .as_deref()
        .or(j.last_error.as_deref())
        .map(|s| cut(&s.replace('\n', " "), 30));
    vec![
        cut(&j.id, 36),
        place,
        opt(j.attempt),
        opt(age),
        opt(j.payload_bytes),
        if j.stored_bytes.is_none() {
            "(no data)".into()
        } else {
            j.preview
                .as_ref()
                .map_or_else(String::new, |p| p.one_line(24))
        },
        opt(note),
    ]
}

async fn jobs(ctx: &mut Ctx<'_>, queue: &str, request: PageRequest) -> Result<()> {
    let name = queue_name(queue)?;
    let page = ctx
        .backend()
        .jobs(&name, request)
        .await
        .map_err(|e| ctx.fail(e))?;
    if page.total == 0 && request.cursor == 0 {
        let s = ctx
            .backend()
            .stats(&name, now(), 0)
            .await
            .map_err(|e| ctx.fail(e))?;
        if !exists(ctx.backend(), &name, &s).await {
            ctx.note(&format!("queue {queue} has no keys (empty or unknown)"));
        }
    }
    let out = JobsOut {
        queue: queue.to_owned(),
        state: request.state.as_str(),
        total: page.total,
        cursor: request.cursor,
        next_cursor: page.next,
        jobs: page.jobs.iter().map(|j| JobOut::new(j, true)).collect(),
    };
    let now = now();
    ctx.emit(&out, || {
        let place = match request.state {
            JobState::Active => "POS",
            JobState::Scheduled => "DUE",
            JobState::Dead => "DIED",
            _ => "CONSUMER",
        };
        let mut t = Table::new(&[
            "ID",
            place,
            "ATT",
            "AGE",
            "BYTES",
            "PREVIEW",
            "REASON/ERROR",
        ]);
        for j in &out.jobs {
            t.row(job_row(j, request.state, now));
        }
        let mut text = if t.is_empty() {
            format!("no {} jobs on this page\n", out.state)
        } else {
            t.render()
        };
        text.push_str(&format!(
            "{} of {} {} jobs from cursor {}; {}\n",
            out.jobs.len(),
            out.total,
            out.state,
            out.cursor,
            match out.next_cursor {
                Some(c) => format!("next page: --cursor {c}"),
                None => "last page".into(),
            }
        ));
        text
    })
}

/// What `job` shows of a payload: the bytes (cut at `max`), the parsed JSON when all of
/// it fits, and how many bytes were cut.
fn payload_view(payload: &[u8], max: usize) -> (Bytes, Option<serde_json::Value>, u64) {
    let cut_bytes = payload.len().saturating_sub(max) as u64;
    let shown = &payload[..payload.len().min(max)];
    let json = if cut_bytes == 0 {
        serde_json::from_slice::<serde_json::Value>(shown).ok()
    } else {
        None
    };
    (Bytes::of(shown), json, cut_bytes)
}

async fn job(ctx: &mut Ctx<'_>, queue: &str, id: &str, max_bytes: usize) -> Result<()> {
    let name = queue_name(queue)?;
    let detail = ctx
        .backend()
        .find_job(&name, id)
        .await
        .map_err(|e| ctx.fail(e))?
        .ok_or_else(|| Failure::Error(format!("no job {id} in {queue}")))?;
    let mut job = JobOut::new(&detail.summary, false);
    let (mut payload, mut payload_json, mut payload_cut_bytes, mut decode_error) =
        (None, None, 0, None);
    if let Some(data) = &detail.data {
        match Job::decode(data) {
            Ok(decoded) => {
                job.attempt = job.attempt.or(Some(decoded.attempt));
                job.ready_at = job.ready_at.or(decoded.ready_at().map(Timestamp::new));
                job.payload_bytes = Some(decoded.data.len() as u64);
                let (p, j, c) = payload_view(&decoded.data, max_bytes);
                (payload, payload_json, payload_cut_bytes) = (Some(p), j, c);
            }
            Err(e) => {
                decode_error = Some(e.to_string());
                let (p, _, c) = payload_view(data, max_bytes);
                (payload, payload_cut_bytes) = (Some(p), c);
            }
        }
    }
    let out = JobDetailOut {
        queue: queue.to_owned(),
        job,
        payload,
        payload_json,
        payload_cut_bytes,
        decode_error,
    };
    let now = now();
    ctx.emit(&out, || job_text(&out, now))
}

fn time_line(t: &Timestamp, now: f64) -> String {
    let rel = if t.unix <= now {
        format!("{} ago", human_seconds(now - t.unix))
    } else {
        format!("in {}", human_seconds(t.unix - now))
    };
    format!(
        "{} (unix {}, {rel})",
        t.rfc3339.as_deref().unwrap_or("?"),
        t.unix
    )
}

fn job_text(out: &JobDetailOut, now: f64) -> String {
    let j = &out.job;
    let mut lines: Vec<(String, String)> = Vec::new();
    let mut add = |k: &str, v: String| lines.push((k.to_owned(), v));
    add("id", j.id.clone());
    add("queue", out.queue.clone());
    let state = j.state.unwrap_or("?");
    let state_text = match state {
        "active" => format!("active (position {} from the head)", opt(j.position)),
        "inflight" => format!("inflight (held by consumer {})", opt(j.consumer.clone())),
        "unplaced" => {
            "unplaced (data stored, in no list or set: `curlyq check` reports it)".to_owned()
        }
        other => other.to_owned(),
    };
    add("state", state_text);
    if let Some(score) = &j.score {
        let key = if state == "dead" { "died" } else { "due" };
        add(key, time_line(score, now));
    }
    add("attempt", opt(j.attempt));
    add(
        "ready at",
        j.ready_at.as_ref().map_or_else(
            || "- (not recorded; Go CurlyQ jobs carry none)".into(),
            |t| time_line(t, now),
        ),
    );
    add("stored", opt(j.stored_bytes.map(|b| format!("{b} bytes"))));
    if j.orphaned > 0 {
        add("orphaned", format!("{} times", j.orphaned));
    }
    if let Some(r) = &j.reason {
        add("reason", r.clone());
    }
    if let Some(e) = &j.last_error {
        add("last error", e.clone());
    }
    if let Some(e) = &out.decode_error {
        add("decode error", format!("{e} (the stored bytes follow)"));
    }
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut text: String = lines
        .iter()
        .map(|(k, v)| format!("{k:width$}  {v}\n"))
        .collect();
    match (&out.payload, &out.payload_json) {
        (None, _) => text.push_str("payload: none (the job has no data)\n"),
        (Some(_), Some(json)) if !json.is_string() => {
            text.push_str(&format!(
                "payload ({} bytes, JSON):\n{}\n",
                opt(j.payload_bytes),
                serde_json::to_string_pretty(json).unwrap_or_default()
            ));
        }
        (Some(Bytes::Text(t)), _) => {
            text.push_str(&format!(
                "payload ({} bytes, text):\n{t}\n",
                opt(j.payload_bytes)
            ));
        }
        (Some(Bytes::Hex(h)), _) => {
            text.push_str(&format!(
                "payload ({} bytes, hex):\n{h}\n",
                opt(j.payload_bytes)
            ));
        }
    }
    if out.payload_cut_bytes > 0 {
        text.push_str(&format!(
            "({} more bytes not shown; --max-bytes raises the limit)\n",
            out.payload_cut_bytes
        ));
    }
    text
}

// ----- retry, run-now

#[derive(Clone, Copy, PartialEq)]
enum Move {
    Retry,
    RunNow,
}

impl Move {
    fn state(self) -> JobState {
        match self {
            Move::Retry => JobState::Dead,
            Move::RunNow => JobState::Scheduled,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Move::Retry => "retry",
            Move::RunNow => "run-now",
        }
    }
}

enum Which {
    Ids(Vec<String>),
    All,
    Oldest(usize),
}

/// The IDs of the first `max` jobs of a state (all of them with `usize::MAX`), read in
/// pages.
async fn first_ids(
    ctx: &Ctx<'_>,
    queue: &QueueName,
    state: JobState,
    max: usize,
) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut request = PageRequest {
        state,
        cursor: 0,
        limit: MAX_PAGE,
        preview: 0,
    };
    while ids.len() < max {
        request.limit = (max - ids.len()).min(MAX_PAGE);
        let page = ctx
            .backend()
            .jobs(queue, request)
            .await
            .map_err(|e| ctx.fail(e))?;
        ids.extend(page.jobs.into_iter().map(|j| j.id));
        match page.next {
            Some(next) => request.cursor = next,
            None => break,
        }
    }
    ids.truncate(max);
    Ok(ids)
}

async fn move_jobs(
    ctx: &mut Ctx<'_>,
    queue: &str,
    action: Move,
    which: Which,
    dry_run: bool,
) -> Result<()> {
    let name = queue_name(queue)?;
    let state = action.state();
    let mut out = ActionOut {
        queue: queue.to_owned(),
        action: action.name(),
        dry_run,
        done: Vec::new(),
        skipped: Vec::new(),
    };
    let call = |ctx: &Ctx<'_>, selection: Selection| {
        let backend = ctx.backend.clone();
        let name = name.clone();
        async move {
            match action {
                Move::Retry => backend.retry_dead(&name, &selection).await,
                Move::RunNow => backend.run_scheduled(&name, &selection).await,
            }
        }
    };
    match which {
        Which::Ids(ids) => {
            if dry_run {
                for id in ids {
                    let found = ctx
                        .backend()
                        .find_job(&name, &id)
                        .await
                        .map_err(|e| ctx.fail(e))?;
                    if found.and_then(|d| d.summary.state) == Some(state) {
                        out.done.push(id);
                    } else {
                        out.skipped.push(id);
                    }
                }
            } else {
                for chunk in ids.chunks(MAX_BATCH) {
                    let report = call(ctx, Selection::Ids(chunk.to_vec()))
                        .await
                        .map_err(|e| ctx.fail(e))?;
                    out.done.extend(report.done);
                    out.skipped.extend(report.skipped);
                }
            }
        }
        Which::All | Which::Oldest(_) => {
            let limit = match which {
                Which::Oldest(n) => n,
                _ => usize::MAX,
            };
            if dry_run {
                out.done = first_ids(ctx, &name, state, limit).await?;
            } else {
                let in_state = state_size(ctx, &name, state).await?;
                let bar = ctx.bar(
                    Some(in_state.min(limit as u64)),
                    &format!("{} {}", action.name(), state),
                );
                while out.done.len() < limit {
                    let n = (limit - out.done.len()).min(MAX_BATCH);
                    let report = match call(ctx, Selection::Oldest(n)).await {
                        Ok(r) => r,
                        Err(e) => {
                            bar.abandon();
                            // Say what was done before the failure.
                            if !out.done.is_empty() {
                                let moved = out.done.len();
                                ctx.warn(&format!("{moved} jobs were moved before the error"));
                            }
                            return Err(ctx.fail(e));
                        }
                    };
                    if report.done.is_empty() {
                        break;
                    }
                    bar.inc(report.done.len() as u64);
                    out.done.extend(report.done);
                }
                bar.finish_and_clear();
            }
        }
    }
    let skipped = out.skipped.len();
    ctx.emit(&out, || {
        let verb = if dry_run { "would move" } else { "moved" };
        let mut text = format!(
            "{verb} {} {} jobs of {} to the active list\n",
            out.done.len(),
            state,
            out.queue
        );
        for id in &out.done {
            text.push_str(&format!("  {id}\n"));
        }
        if !out.skipped.is_empty() {
            text.push_str(&format!(
                "skipped (not {state}): {}\n",
                out.skipped.join(", ")
            ));
        }
        text
    })?;
    if skipped > 0 {
        let _ = writeln!(ctx.err, "error: {skipped} of the IDs given are not {state} jobs of {queue}; nothing was done to them");
        return Err(Failure::Reported(EXIT_ERROR));
    }
    Ok(())
}

// ----- delete, purge

async fn delete(ctx: &mut Ctx<'_>, queue: &str, ids: Vec<String>, dry_run: bool) -> Result<()> {
    let name = queue_name(queue)?;
    let mut out = DeleteOut {
        queue: queue.to_owned(),
        dry_run,
        deleted: Vec::new(),
        in_flight: Vec::new(),
        missing: Vec::new(),
    };
    if dry_run {
        for id in ids {
            let found = ctx
                .backend()
                .find_job(&name, &id)
                .await
                .map_err(|e| ctx.fail(e))?;
            match found.and_then(|d| d.summary.state) {
                None => out.missing.push(id),
                Some(JobState::InFlight) => out.in_flight.push(id),
                Some(state) => out.deleted.push(DeletedOut {
                    id,
                    state: state.as_str(),
                }),
            }
        }
    } else {
        for chunk in ids.chunks(MAX_BATCH) {
            let report = ctx
                .backend()
                .delete_jobs(&name, chunk)
                .await
                .map_err(|e| ctx.fail(e))?;
            out.deleted
                .extend(report.deleted.into_iter().map(|(id, state)| DeletedOut {
                    id,
                    state: state.as_str(),
                }));
            out.in_flight.extend(report.in_flight);
            out.missing.extend(report.missing);
        }
    }
    let not_done = out.in_flight.len() + out.missing.len();
    ctx.emit(&out, || {
        let verb = if dry_run { "would delete" } else { "deleted" };
        let mut text = format!("{verb} {} jobs of {}\n", out.deleted.len(), out.queue);
        for d in &out.deleted {
            text.push_str(&format!("  {}  ({})\n", d.id, d.state));
        }
        if !out.in_flight.is_empty() {
            text.push_str(&format!(
                "left alone (in flight): {}\n",
                out.in_flight.join(", ")
            ));
        }
        if !out.missing.is_empty() {
            text.push_str(&format!("no such job: {}\n", out.missing.join(", ")));
        }
        text
    })?;
    if not_done > 0 {
        let _ = writeln!(
            ctx.err,
            "error: {not_done} of the IDs given were not deleted (in flight or missing)"
        );
        return Err(Failure::Reported(EXIT_ERROR));
    }
    Ok(())
}

/// How many jobs `queue` holds in `state` (for a progress bar's length, or a dry run).
async fn state_size(ctx: &mut Ctx<'_>, name: &QueueName, state: JobState) -> Result<u64> {
    let stats = ctx
        .backend()
        .stats(name, now(), 0)
        .await
        .map_err(|e| ctx.fail(e))?;
    Ok(stats.size(state))
}

async fn purge(ctx: &mut Ctx<'_>, queue: &str, state: PurgeState, dry_run: bool) -> Result<()> {
    let name = queue_name(queue)?;
    let state = purge_state(state);
    let in_state = state_size(ctx, &name, state).await?;
    let mut purged = 0u64;
    if dry_run {
        purged = in_state;
    } else {
        let bar = ctx.bar(Some(in_state), &format!("purge {state}"));
        loop {
            let n = match ctx.backend().purge(&name, state, MAX_BATCH).await {
                Ok(n) => n,
                Err(e) => {
                    bar.abandon();
                    if purged > 0 {
                        ctx.warn(&format!("{purged} jobs were deleted before the error"));
                    }
                    return Err(ctx.fail(e));
                }
            };
            if n == 0 {
                break;
            }
            purged += n as u64;
            bar.inc(n as u64);
        }
        bar.finish_and_clear();
    }
    let out = PurgeOut {
        queue: queue.to_owned(),
        state: state.as_str(),
        dry_run,
        purged,
    };
    ctx.emit(&out, || {
        let verb = if dry_run { "would delete" } else { "deleted" };
        format!(
            "{verb} {} {} jobs of {}\n",
            out.purged, out.state, out.queue
        )
    })
}

// ----- pause

async fn pause(ctx: &mut Ctx<'_>, queue: &str, paused: bool) -> Result<()> {
    let name = queue_name(queue)?;
    let was = ctx
        .backend()
        .set_paused(&name, paused)
        .await
        .map_err(|e| ctx.fail(e))?;
    let out = PauseOut {
        queue: queue.to_owned(),
        paused,
        was_paused: was,
    };
    if paused {
        ctx.note("Go CurlyQ consumers do not know pauses: they go on taking jobs");
    }
    ctx.emit(&out, || match (paused, was) {
        (true, false) => format!("paused {queue}\n"),
        (true, true) => format!("{queue} was already paused\n"),
        (false, true) => format!("resumed {queue}\n"),
        (false, false) => format!("{queue} was not paused\n"),
    })
}

// ----- consumers

async fn consumers(ctx: &mut Ctx<'_>, queue: &str, timeout: Duration) -> Result<()> {
    let name = queue_name(queue)?;
    let list = ctx
        .backend()
        .consumers(&name)
        .await
        .map_err(|e| ctx.fail(e))?;
    let now = now();
    let limit = timeout.as_secs_f64();
    let out = ConsumersOut {
        queue: queue.to_owned(),
        now: Timestamp::new(now),
        timeout_seconds: limit,
        consumers: list
            .iter()
            .map(|c| ConsumerOut {
                id: c.id.clone(),
                heartbeat: Timestamp::new(c.heartbeat),
                age_seconds: now - c.heartbeat,
                inflight: c.inflight,
                expired: now - c.heartbeat > limit,
            })
            .collect(),
    };
    ctx.emit(&out, || {
        if out.consumers.is_empty() {
            return format!("no consumers registered in {queue}\n");
        }
        let mut t = Table::new(&["CONSUMER", "HEARTBEAT", "AGE", "INFLIGHT", "STATUS"]);
        for c in &out.consumers {
            t.row(vec![
                cut(&c.id, 52),
                short_time(c.heartbeat.unix),
                human_seconds(c.age_seconds),
                c.inflight.to_string(),
                if c.expired { "expired" } else { "alive" }.into(),
            ]);
        }
        t.render()
    })
}

async fn remove_consumer(
    ctx: &mut Ctx<'_>,
    queue: &str,
    id: &str,
    timeout: Duration,
    dry_run: bool,
) -> Result<()> {
    let name = queue_name(queue)?;
    let now = now();
    let expired_before = now - timeout.as_secs_f64();
    let report = if dry_run {
        let list = ctx
            .backend()
            .consumers(&name)
            .await
            .map_err(|e| ctx.fail(e))?;
        let found = list.iter().find(|c| c.id == id);
        admin::RemoveReport {
            removed: found.is_some_and(|c| c.heartbeat <= expired_before),
            requeued: found
                .filter(|c| c.heartbeat <= expired_before)
                .map_or(0, |c| c.inflight as usize),
            heartbeat: found.map(|c| c.heartbeat),
        }
    } else {
        ctx.backend()
            .remove_consumer(&name, id, expired_before)
            .await
            .map_err(|e| ctx.fail(e))?
    };
    let out = RemoveOut {
        queue: queue.to_owned(),
        consumer: id.to_owned(),
        dry_run,
        removed: report.removed,
        requeued: report.requeued as u64,
        heartbeat: report.heartbeat.map(Timestamp::new),
    };
    ctx.emit(&out, || {
        if out.removed {
            let verb = if dry_run { "would remove" } else { "removed" };
            let moved = if dry_run { "would move" } else { "moved" };
            format!(
                "{verb} consumer {id}; {moved} its {} jobs back to the active list\n",
                out.requeued
            )
        } else {
            String::new()
        }
    })?;
    match report.heartbeat {
        _ if report.removed => Ok(()),
        None => Err(Failure::Error(format!(
            "no consumer {id} in {queue}; `curlyq consumers {queue}` lists them"
        ))),
        Some(hb) => Err(Failure::Error(format!(
            "consumer {id} is alive (heartbeat {} ago, within --timeout {}); not removed",
            human_seconds(now - hb),
            human_seconds(timeout.as_secs_f64())
        ))),
    }
}

// ----- check

async fn check(ctx: &mut Ctx<'_>, queue: &str, repair: bool, dry_run: bool) -> Result<()> {
    let name = queue_name(queue)?;
    let report = admin::check(ctx.backend(), &name)
        .await
        .map_err(|e| ctx.fail(e))?;
    let mut repairs = Vec::new();
    let mut remaining = None;
    if repair {
        let bar = ctx.bar(Some(report.problems.len() as u64), "repair");
        for problem in &report.problems {
            let changed = if dry_run {
                false
            } else {
                match ctx.backend().repair(&name, problem).await {
                    Ok(changed) => changed,
                    Err(e) => {
                        bar.abandon();
                        return Err(ctx.fail(e));
                    }
                }
            };
            bar.inc(1);
            repairs.push(RepairOut {
                kind: problem.kind.as_str(),
                id: problem.id.clone(),
                changed,
            });
        }
        bar.finish_and_clear();
        if !dry_run {
            let after = admin::check(ctx.backend(), &name)
                .await
                .map_err(|e| ctx.fail(e))?;
            remaining = Some(
                after
                    .problems
                    .iter()
                    .map(ProblemOut::from)
                    .collect::<Vec<_>>(),
            );
        }
    }
    let counts: BTreeMap<&'static str, usize> = ProblemKind::ALL
        .iter()
        .map(|k| (count_key(*k), report.counts.get(k).copied().unwrap_or(0)))
        .collect();
    let out = CheckOut {
        queue: queue.to_owned(),
        jobs: report.jobs,
        counts,
        problems: report.problems.iter().map(ProblemOut::from).collect(),
        repair,
        dry_run: dry_run || !repair,
        repairs,
        remaining,
    };
    let bad = match &out.remaining {
        Some(left) => !left.is_empty(),
        None => !out.problems.is_empty(),
    };
    ctx.emit(&out, || check_text(&out))?;
    if bad {
        Err(Failure::Reported(EXIT_PROBLEMS))
    } else {
        Ok(())
    }
}

/// The JSON field name of a kind's count (snake_case, like every field name).
fn count_key(kind: ProblemKind) -> &'static str {
    match kind {
        ProblemKind::Unreferenced => "unreferenced",
        ProblemKind::Duplicate => "duplicate",
        ProblemKind::Dangling => "dangling",
        ProblemKind::StrayInFlight => "stray_inflight",
        _ => "other",
    }
}

fn problem_table(problems: &[ProblemOut]) -> String {
    let mut t = Table::new(&["KIND", "ID", "PLACES"]);
    for p in problems {
        t.row(vec![p.kind.into(), cut(&p.id, 50), p.places.join(",")]);
    }
    t.render()
}

fn check_text(out: &CheckOut) -> String {
    let mut text = format!("checked {} jobs of {}: ", out.jobs, out.queue);
    if out.problems.is_empty() {
        text.push_str("no problems\n");
        return text;
    }
    let counts: Vec<String> = out
        .counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    text.push_str(&format!(
        "{} problems ({})\n",
        out.problems.len(),
        counts.join(", ")
    ));
    text.push_str(&problem_table(&out.problems));
    if !out.repair {
        text.push_str(
            "nothing changed; `--repair --yes` repairs them (`--repair --dry-run` to see how)\n",
        );
        return text;
    }
    if out.dry_run {
        text.push_str("would repair each:\n");
        for p in &out.problems {
            let how = match p.kind {
                "unreferenced" => "append the job to the active list",
                "duplicate" => "keep one place (in flight, else scheduled, else active, else dead)",
                "dangling" => "remove the reference (in flight: report only)",
                _ => "move its jobs to the active list and delete the set",
            };
            text.push_str(&format!("  {} {}: {how}\n", p.kind, p.id));
        }
        return text;
    }
    let changed = out.repairs.iter().filter(|r| r.changed).count();
    text.push_str(&format!("repaired {changed} of {}\n", out.repairs.len()));
    match &out.remaining {
        Some(left) if left.is_empty() => text.push_str("a second check found no problems\n"),
        Some(left) => {
            text.push_str(&format!(
                "a second check still finds {} problems:\n",
                left.len()
            ));
            text.push_str(&problem_table(left));
        }
        None => {}
    }
    text
}

// ----- enqueue

fn read_data(data: &str) -> Result<Vec<u8>> {
    if data == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).map_err(|e| {
            Failure::Error(format!("cannot read the payload from standard input: {e}"))
        })?;
        return Ok(buf);
    }
    if let Some(path) = data.strip_prefix('@') {
        return std::fs::read(path)
            .map_err(|e| Failure::Error(format!("cannot read the payload file {path}: {e}")));
    }
    Ok(data.as_bytes().to_vec())
}

async fn enqueue(
    ctx: &mut Ctx<'_>,
    queue: &str,
    data: &str,
    id: Option<String>,
    delay: Option<Duration>,
    at: Option<f64>,
) -> Result<()> {
    let payload = read_data(data)?;
    let producer = Producer::new(Arc::clone(&ctx.backend), queue)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let mut job = Job::new(payload.clone());
    if let Some(id) = &id {
        job = job.with_id(id.clone());
    }
    let start = now();
    let result = match (delay, at) {
        (Some(d), _) => producer.perform_after(d, job).await,
        (None, Some(at)) => producer.perform_at_unix(at, job).await,
        (None, None) => producer.perform(job).await,
    };
    let new_id = match result {
        Ok(id) => id,
        Err(ProduceError::AlreadyExists { id }) => {
            return Err(Failure::Error(format!(
                "a job with ID {id} already exists in {queue}; it was left unchanged"
            )))
        }
        Err(ProduceError::Backend { source, .. }) => return Err(ctx.fail(source)),
        Err(e) => return Err(Failure::Error(e.to_string())),
    };
    let due = match (delay, at) {
        (Some(d), _) => Some(start + d.as_secs_f64()),
        (None, at) => at,
    };
    let out = EnqueueOut {
        queue: queue.to_owned(),
        id: new_id,
        state: if due.is_some() { "scheduled" } else { "active" },
        at: due.map(Timestamp::new),
        payload_bytes: payload.len(),
    };
    ctx.emit(&out, || match &out.at {
        Some(t) => format!(
            "scheduled {} in {} for {}\n",
            out.id,
            out.queue,
            t.rfc3339.as_deref().unwrap_or("?")
        ),
        None => format!("enqueued {} in {}\n", out.id, out.queue),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn validated(args: &[&str]) -> Result<()> {
        let mut all = vec!["curlyq"];
        all.extend_from_slice(args);
        validate(&Cli::try_parse_from(all).unwrap().command)
    }

    #[test]
    fn destructive_commands_need_yes_or_dry_run() {
        for args in [
            &["retry", "q", "--all"][..],
            &["retry", "q", "--oldest", "5"],
            &["run-now", "q", "--all"],
            &["delete", "q", "a"],
            &["purge", "q", "--state", "dead"],
            &["consumers", "q", "--remove", "c"],
            &["check", "q", "--repair"],
        ] {
            match validated(args) {
                Err(Failure::Usage(m)) => {
                    assert!(m.contains("--yes") && m.contains("--dry-run"), "{m}")
                }
                other => panic!("{args:?}: {other:?}"),
            }
            let mut yes = args.to_vec();
            yes.push("--yes");
            assert!(validated(&yes).is_ok(), "{yes:?}");
            let mut dry = args.to_vec();
            dry.push("--dry-run");
            assert!(validated(&dry).is_ok(), "{dry:?}");
        }
        for args in [
            &["retry", "q", "a", "b"][..],
            &["run-now", "q", "a"],
            &["check", "q"],
            &["consumers", "q"],
            &["stats"],
        ] {
            assert!(validated(args).is_ok(), "{args:?}");
        }
        assert!(matches!(
            validated(&["retry", "q", "--oldest", "0", "--yes"]),
            Err(Failure::Usage(_))
        ));
    }

    #[test]
    fn payloads_are_cut_and_parsed() {
        let (b, json, cut) = payload_view(br#"{"a":1}"#, 4096);
        assert_eq!(b, Bytes::Text(r#"{"a":1}"#.into()));
        assert_eq!(json, Some(serde_json::json!({"a": 1})));
        assert_eq!(cut, 0);
        let (b, json, cut) = payload_view(br#"{"a":12345}"#, 4);
        assert_eq!((b, json, cut), (Bytes::Text(r#"{"a""#.into()), None, 7));
        let (b, _, cut) = payload_view(&[0xff; 10], 3);
        assert_eq!((b, cut), (Bytes::Hex("ffffff".into()), 7));
    }

    #[test]
    fn the_job_text_shows_times_both_ways() {
        let out = JobDetailOut {
            queue: "q".into(),
            job: JobOut {
                id: "j1".into(),
                state: Some("scheduled"),
                score: Some(Timestamp::new(1_700_000_060.0)),
                consumer: None,
                position: None,
                attempt: Some(2),
                ready_at: None,
                stored_bytes: Some(40),
                payload_bytes: Some(7),
                reason: None,
                last_error: Some("boom".into()),
                orphaned: 0,
                preview: None,
            },
            payload: Some(Bytes::Text(r#"{"a":1}"#.into())),
            payload_json: Some(serde_json::json!({"a": 1})),
            payload_cut_bytes: 0,
            decode_error: None,
        };
        let text = job_text(&out, 1_700_000_000.0);
        assert!(
            text.contains("due         2023-11-14T22:14:20.000Z (unix 1700000060, in 1m 0s)"),
            "{text}"
        );
        assert!(text.contains("last error  boom"), "{text}");
        assert!(
            text.contains("payload (7 bytes, JSON):\n{\n  \"a\": 1\n}"),
            "{text}"
        );
        let json = serde_json::to_value(&out).unwrap();
        assert_eq!(json["id"], "j1");
        assert_eq!(json["score"]["unix"], 1_700_000_060.0);
        assert_eq!(json["payload"], serde_json::json!({"text": "{\"a\":1}"}));
        assert_eq!(json["payload_json"]["a"], 1);
        assert!(json.get("preview").is_none());
    }
}
