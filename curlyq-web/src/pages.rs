//! The handlers: the overview, a queue's tabs, a job, a queue's consumers, the payload
//! download, and the one POST route of the actions.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::rejection::{FormRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use curlyq_core::admin::{
    JobState, JobSummary, PageRequest, QueueStats, Selection, COUNTER_MINUTES,
};
use curlyq_core::{Job, QueueBackend, QueueName, MAX_BATCH};
use maud::{html, Markup};
use serde::Deserialize;

use crate::chart;
use crate::guard::Verdict;
use crate::links::Links;
use crate::payload::{self, View};
use crate::render::{self, csrf_field, PageError};
use crate::{Access, Dashboard};

/// Payload bytes a page's job list shows per job.
const LIST_PREVIEW: usize = 64;

/// What every handler knows about its request.
pub(crate) struct Ctx {
    dash: Arc<Dashboard>,
    links: Links,
    verdict: Verdict,
    now: f64,
}

impl FromRequestParts<Arc<Dashboard>> for Ctx {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<Dashboard>,
    ) -> Result<Self, Self::Rejection> {
        // The guard always sets the verdict; without one (never), nothing may change.
        let verdict = parts
            .extensions
            .get::<Verdict>()
            .cloned()
            .unwrap_or(Verdict {
                access: Access::ReadOnly,
                token: String::new(),
            });
        Ok(Ctx {
            dash: state.clone(),
            links: Links::of(parts),
            verdict,
            now: (state.clock)(),
        })
    }
}

impl Ctx {
    fn backend(&self) -> &dyn QueueBackend {
        self.dash.backend.as_ref()
    }

    /// Whether actions on `queue` are allowed (and so rendered).
    fn can_write(&self, queue: &str) -> bool {
        self.verdict.access == Access::ReadWrite
            && !self.dash.read_only
            && !self.dash.read_only_queues.contains(queue)
    }

    fn page(&self, status: StatusCode, title: &str, body: Markup) -> Response {
        render::respond(status, render::page(&self.links, title, body))
    }

    fn fail(&self, err: PageError) -> Response {
        err.respond(&self.links)
    }

    /// A handler's answer: its page, or the error page of what went wrong.
    fn answer(&self, result: Result<Response, PageError>) -> Response {
        result.unwrap_or_else(|e| self.fail(e))
    }

    /// A `303 See Other` to `location` (a dashboard URL, already encoded).
    fn redirect(&self, location: String) -> Response {
        match HeaderValue::from_str(&location) {
            Ok(value) => (StatusCode::SEE_OTHER, [(header::LOCATION, value)]).into_response(),
            Err(_) => self.fail(PageError::BadRequest(
                "the page to go back to has an invalid address".into(),
            )),
        }
    }

    /// A form posting `action` (and hidden `fields`) to the queue's action route.
    fn action_form(
        &self,
        queue: &str,
        action: &str,
        fields: &[(&str, &str)],
        label: &str,
        confirm: Option<&str>,
    ) -> Markup {
        html! {
            form.inline method="post" action=(self.links.actions(queue)) data-confirm=[confirm] {
                (csrf_field(&self.verdict.token))
                input type="hidden" name="action" value=(action);
                @for (name, value) in fields {
                    input type="hidden" name=(name) value=(value);
                }
                button type="submit" { (label) }
            }
        }
    }
}

fn queue_name(name: &str) -> Result<QueueName, PageError> {
    QueueName::new(name)
        .map_err(|_| PageError::NotFound("There is no queue with an empty name.".into()))
}

/// Whether a queue has any key (its stats show sizes or counters, or it holds data).
async fn exists(backend: &dyn QueueBackend, queue: &QueueName, s: &QueueStats) -> bool {
    if s.active + s.scheduled + s.dead + s.consumers + s.inflight > 0
        || s.paused
        || s.total.processed > 0
    {
        return true;
    }
    matches!(backend.data_ids(queue, 0, 10).await, Ok((ids, _)) if !ids.is_empty())
}

/// The stats of a queue that exists (404 otherwise).
async fn existing(ctx: &Ctx, queue: &QueueName, minutes: usize) -> Result<QueueStats, PageError> {
    let stats = ctx.backend().stats(queue, ctx.now, minutes).await?;
    if !exists(ctx.backend(), queue, &stats).await {
        return Err(PageError::NotFound(format!(
            "There is no queue named {:?} in this store.",
            queue.as_str()
        )));
    }
    Ok(stats)
}

fn bad_path(err: PathRejection) -> PageError {
    PageError::BadRequest(format!("The address is not valid: {err}"))
}

fn bad_query(err: QueryRejection) -> PageError {
    PageError::BadRequest(format!("The query is not valid: {err}"))
}

// ----- overview

pub(crate) async fn overview(ctx: Ctx) -> Response {
    match live_overview(&ctx).await {
        Ok(live) => {
            let every = ctx.dash.refresh.as_millis().to_string();
            let body = html! {
                h1 { "Queues" }
                div #live data-refresh-src=(ctx.links.fragment()) data-refresh-ms=(every) {
                    (live)
                }
                p.muted { "Times are UTC. The page refreshes itself every "
                    (render::human_seconds(ctx.dash.refresh.as_secs_f64())) " when JavaScript runs; reload it otherwise." }
            };
            ctx.page(StatusCode::OK, "Queues", body)
        }
        Err(e) => ctx.fail(e),
    }
}

/// The overview's live part alone (what the script fetches).
pub(crate) async fn overview_fragment(ctx: Ctx) -> Response {
    match live_overview(&ctx).await {
        Ok(live) => render::respond(StatusCode::OK, live),
        Err(e) => (e.status(), e.to_string()).into_response(),
    }
}

async fn live_overview(ctx: &Ctx) -> Result<Markup, PageError> {
    let names = ctx.backend().list_queues().await?;
    let mut rows = Vec::with_capacity(names.len());
    for name in &names {
        let stats = ctx.backend().stats(name, ctx.now, COUNTER_MINUTES).await?;
        rows.push((name, stats));
    }
    let all: Vec<&[_]> = rows.iter().map(|(_, s)| s.minutes.as_slice()).collect();
    let minutes = chart::sum_minutes(&all);
    Ok(html! {
        p.muted { "As of " (render::iso(ctx.now)) "." }
        @if rows.is_empty() {
            p.empty { "No queues found in this store." }
        } @else {
            table.queues {
                thead { tr {
                    th { "Queue" } th { "State" } th.num { "Active" } th.num { "Scheduled" }
                    th.num { "In flight" } th.num { "Dead" } th.num { "Latency" }
                    th.num { "Consumers" } th.num { "Processed (1h)" } th.num { "Failed (1h)" }
                } }
                tbody {
                    @for (name, s) in &rows {
                        @let hour = &s.minutes[s.minutes.len().saturating_sub(60)..];
                        @let processed: u64 = hour.iter().map(|m| m.counts.processed).sum();
                        @let failed: u64 = hour.iter().map(|m| m.counts.failed).sum();
                        tr {
                            td { a href=(ctx.links.queue(name.as_str())) { (name.as_str()) } }
                            td { (paused_badge(s.paused)) }
                            td.num { a href=(ctx.links.tab(name.as_str(), "active", 0)) { (s.active) } }
                            td.num { a href=(ctx.links.tab(name.as_str(), "scheduled", 0)) { (s.scheduled) } }
                            td.num { a href=(ctx.links.tab(name.as_str(), "inflight", 0)) { (s.inflight) } }
                            td.num { a href=(ctx.links.tab(name.as_str(), "dead", 0)) { (s.dead) } }
                            td.num { (latency(s, ctx.now)) }
                            td.num { a href=(ctx.links.consumers(name.as_str())) { (s.consumers) } }
                            td.num { (processed) }
                            td.num { (failed) }
                        }
                    }
                }
            }
        }
        (chart::charts(&minutes))
    })
}

fn paused_badge(paused: bool) -> Markup {
    html! {
        @if paused { span.badge.paused { "paused" } } @else { span.badge.running { "running" } }
    }
}

/// `now - oldest_ready_at`, or a dash when the head job does not say (or none waits).
fn latency(s: &QueueStats, now: f64) -> String {
    match s.oldest_ready_at {
        Some(at) => render::human_seconds((now - at).max(0.0)),
        None if s.active == 0 => "0ms".into(),
        None => "–".into(),
    }
}

// ----- a queue

#[derive(Debug, Default, Deserialize)]
pub(crate) struct TabQuery {
    state: Option<String>,
    cursor: Option<String>,
    notice: Option<String>,
    n: Option<u64>,
}

fn parse_state(s: Option<&str>) -> Result<JobState, PageError> {
    match s.unwrap_or("active") {
        "" => Ok(JobState::Active),
        other => match other.parse::<JobState>() {
            Ok(state) if JobState::LISTED.contains(&state) => Ok(state),
            _ => Err(PageError::BadRequest(format!(
                "Unknown state {other:?}: the tabs are active, scheduled, dead and inflight."
            ))),
        },
    }
}

fn parse_cursor(s: Option<&str>) -> Result<u64, PageError> {
    match s {
        None | Some("") => Ok(0),
        Some(c) => c.parse().map_err(|_| {
            PageError::BadRequest(format!("The cursor {c:?} is not a page position."))
        }),
    }
}

pub(crate) async fn queue(
    ctx: Ctx,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<TabQuery>, QueryRejection>,
) -> Response {
    let result = async {
        let Path(queue) = path.map_err(bad_path)?;
        let Query(query) = query.map_err(bad_query)?;
        queue_page(&ctx, &queue, &query).await
    };
    ctx.answer(result.await)
}

async fn queue_page(ctx: &Ctx, queue: &str, query: &TabQuery) -> Result<Response, PageError> {
    let name = queue_name(queue)?;
    let state = parse_state(query.state.as_deref())?;
    let cursor = parse_cursor(query.cursor.as_deref())?;
    let stats = existing(ctx, &name, COUNTER_MINUTES).await?;
    let page = ctx
        .backend()
        .jobs(
            &name,
            PageRequest {
                state,
                cursor,
                limit: ctx.dash.page_size,
                preview: LIST_PREVIEW,
            },
        )
        .await?;
    let writable = ctx.can_write(queue);
    let notice = render::notice(query.notice.as_deref(), query.n);
    let tabs = [
        (JobState::Active, "Active"),
        (JobState::Scheduled, "Scheduled"),
        (JobState::Dead, "Dead"),
        (JobState::InFlight, "In flight"),
    ];
    let body = html! {
        p.crumbs { a href=(ctx.links.home()) { "Queues" } " / " (queue) }
        h1 { (queue) " " (paused_badge(stats.paused)) }
        @if let Some(notice) = notice { p.notice role="status" { (notice) } }
        p.summary {
            (stats.active) " active · " (stats.scheduled) " scheduled · " (stats.inflight) " in flight · "
            (stats.dead) " dead · latency " (latency(&stats, ctx.now)) " · "
            a href=(ctx.links.consumers(queue)) { (stats.consumers) " consumers" }
            @if let Some(due) = stats.next_due { " · next due " (render::time(due, ctx.now)) }
        }
        div.controls {
            form.search method="get" action=(ctx.links.find(queue)) {
                label for="job-id" { "Job ID" }
                input #job-id type="search" name="id" required placeholder="find a job by its ID";
                button type="submit" { "Find" }
            }
            @if writable {
                @if stats.paused {
                    (ctx.action_form(queue, "resume", &[], "Resume the queue", None))
                } @else {
                    (ctx.action_form(queue, "pause", &[], "Pause the queue", None))
                }
            }
        }
        nav.tabs {
            @for (s, label) in tabs {
                a.tab.current[s == state] href=(ctx.links.tab(queue, s.as_str(), 0))
                    aria-current=[(s == state).then_some("page")] {
                    (label) " " span.count { (stats.size(s)) }
                }
            }
        }
        @if writable {
            @if state == JobState::Dead && stats.dead > 0 {
                (bulk_form(ctx, queue, "retry-all", stats.dead, "Retry every dead job"))
            }
            @if state == JobState::Scheduled && stats.scheduled > 0 {
                (bulk_form(ctx, queue, "run-all", stats.scheduled, "Run every scheduled job now"))
            }
        }
        (job_table(ctx, queue, state, &page.jobs))
        nav.pager {
            @if cursor != 0 { a href=(ctx.links.tab(queue, state.as_str(), 0)) { "« First page" } }
            @if let Some(next) = page.next { a href=(ctx.links.tab(queue, state.as_str(), next)) { "Next page »" } }
            span.muted { (page.jobs.len()) " shown of " (page.total) }
        }
        (chart::charts(&stats.minutes))
    };
    Ok(ctx.page(StatusCode::OK, queue, body))
}

/// A bulk action's form, with the checkbox that confirms it (the server checks it too).
fn bulk_form(ctx: &Ctx, queue: &str, action: &str, count: u64, label: &str) -> Markup {
    html! {
        form.bulk method="post" action=(ctx.links.actions(queue)) {
            (csrf_field(&ctx.verdict.token))
            input type="hidden" name="action" value=(action);
            label {
                input type="checkbox" name="confirm" value="yes" required;
                " Yes, move all " (count) " jobs to the active list"
            }
            button type="submit" { (label) }
        }
    }
}

fn job_table(ctx: &Ctx, queue: &str, state: JobState, jobs: &[JobSummary]) -> Markup {
    let (when, detail) = match state {
        JobState::Active => ("Ready since", "Position"),
        JobState::Scheduled => ("Due", "Last error"),
        JobState::Dead => ("Died", "Reason"),
        _ => ("Ready since", "Consumer"),
    };
    html! {
        @if jobs.is_empty() {
            p.empty { "No " (state.as_str()) " jobs." }
        } @else {
            table.jobs {
                thead { tr {
                    th { "ID" } th { (when) } th.num { "Attempt" } th { (detail) }
                    th.num { "Size" } th { "Payload" }
                } }
                tbody {
                    @for job in jobs {
                        @let at = match state {
                            JobState::Scheduled | JobState::Dead => job.score,
                            _ => job.ready_at,
                        };
                        tr {
                            td.id { a href=(ctx.links.job(queue, &job.id)) { (job.id) } }
                            td { @if let Some(at) = at { (render::time(at, ctx.now)) } @else { "–" } }
                            td.num { @if let Some(a) = job.attempt { (a) } @else { "–" } }
                            td.detail {
                                @match state {
                                    JobState::Active => { @if let Some(p) = job.position { (p) } }
                                    JobState::Scheduled => { @if let Some(e) = &job.last_error { (render::cut(e, 120)) } }
                                    JobState::Dead => { @if let Some(r) = &job.reason { (render::cut(r, 120)) } }
                                    _ => { @if let Some(c) = &job.consumer { (c) } }
                                }
                            }
                            td.num { @if let Some(b) = job.stored_bytes { (render::bytes(b)) } @else { "no data" } }
                            td.preview { code { (render::preview(&job.preview, LIST_PREVIEW)) } }
                        }
                    }
                }
            }
        }
    }
}

// ----- a job

#[derive(Debug, Default, Deserialize)]
pub(crate) struct JobQuery {
    id: Option<String>,
    notice: Option<String>,
    n: Option<u64>,
}

pub(crate) async fn job(
    ctx: Ctx,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<JobQuery>, QueryRejection>,
) -> Response {
    let result = async {
        let Path((queue, id)) = path.map_err(bad_path)?;
        let Query(query) = query.map_err(bad_query)?;
        job_page(&ctx, &queue, &id, &query).await
    };
    ctx.answer(result.await)
}

/// The search by ID: the job's page (by a redirect to its address), or "not found".
pub(crate) async fn find(
    ctx: Ctx,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<JobQuery>, QueryRejection>,
) -> Response {
    let result = async {
        let Path(queue) = path.map_err(bad_path)?;
        let Query(query) = query.map_err(bad_query)?;
        let id = query.id.clone().unwrap_or_default();
        if id.is_empty() {
            return Err(PageError::BadRequest("Give a job ID to look for.".into()));
        }
        let target = ctx.links.job(&queue, &id);
        if !target.starts_with(&ctx.links.find(&queue)) {
            let name = queue_name(&queue)?;
            if ctx.backend().find_job(&name, &id).await?.is_some() {
                return Ok(ctx.redirect(target));
            }
        }
        job_page(&ctx, &queue, &id, &query).await
    };
    ctx.answer(result.await)
}

async fn job_page(
    ctx: &Ctx,
    queue: &str,
    id: &str,
    query: &JobQuery,
) -> Result<Response, PageError> {
    let name = queue_name(queue)?;
    let limit = ctx.dash.payload_limit;
    // At most `limit` payload bytes cross from the store, whatever the job's size.
    let Some(detail) = ctx.backend().find_job_head(&name, id, limit).await? else {
        let body = html! {
            p.crumbs { a href=(ctx.links.home()) { "Queues" } " / " a href=(ctx.links.queue(queue)) { (queue) } }
            h1 { "Job not found" }
            p.message { "No job with the ID " code { (id) } " in the queue " code { (queue) } "." }
            form.search method="get" action=(ctx.links.find(queue)) {
                label for="job-id" { "Job ID" }
                input #job-id type="search" name="id" required value=(id);
                button type="submit" { "Find" }
            }
        };
        return Ok(ctx.page(StatusCode::NOT_FOUND, "Job not found", body));
    };
    let s = &detail.summary;
    let state = s.state;
    let writable = ctx.can_write(queue);
    let decoded = detail.data.as_deref().map(Job::decode);
    let notice = render::notice(query.notice.as_deref(), query.n);
    let (shown, decode_error) = match (&decoded, &detail.data) {
        (Some(Ok(job)), _) => (Some(payload::view(&job.data, limit)), None),
        (Some(Err(e)), Some(raw)) => (Some(payload::view(raw, limit)), Some(e.to_string())),
        // Cut by the store: the summary holds the payload's first bytes and its length.
        (None, None) if s.stored_bytes.is_some() => match s.payload_bytes {
            Some(total) => (
                Some(payload::view_head(&s.preview, total as usize, limit)),
                None,
            ),
            None => (
                None,
                Some("the head of the stored bytes does not decode as a job".to_owned()),
            ),
        },
        _ => (None, None),
    };
    let score_label = match state {
        Some(JobState::Scheduled) => "Due",
        Some(JobState::Dead) => "Died",
        _ => "Score",
    };
    let body = html! {
        p.crumbs {
            a href=(ctx.links.home()) { "Queues" } " / "
            a href=(ctx.links.queue(queue)) { (queue) } " / "
            @if let Some(st) = state.filter(|s| JobState::LISTED.contains(s)) {
                a href=(ctx.links.tab(queue, st.as_str(), 0)) { (st.as_str()) } " / "
            }
            "job"
        }
        h1.id { (id) }
        @if let Some(notice) = notice { p.notice role="status" { (notice) } }
        dl.facts {
            dt { "State" } dd { span.badge { (state.map(|s| s.as_str()).unwrap_or("unknown")) } }
            dt { "Attempt" } dd { @if let Some(a) = s.attempt { (a) } @else { "unknown (the data does not say)" } }
            @if let Some(score) = s.score { dt { (score_label) } dd { (render::time(score, ctx.now)) } }
            @if let Some(ready) = s.ready_at { dt { "Ready since" } dd { (render::time(ready, ctx.now)) } }
            @if let Some(c) = &s.consumer {
                dt { "Consumer" } dd { a href=(ctx.links.consumers(queue)) { code { (c) } } }
            }
            @if let Some(p) = s.position { dt { "Position" } dd { (p) " (0 is taken next)" } }
            @if let Some(r) = &s.reason { dt { "Dead reason" } dd { pre.text { (r) } } }
            @if let Some(e) = &s.last_error { dt { "Last error" } dd { pre.text { (e) } } }
            dt { "Orphaned" } dd { (s.orphaned) " times" }
            dt { "Stored" } dd { @if let Some(b) = s.stored_bytes { (render::bytes(b)) } @else { "no data" } }
        }
        @if writable {
            div.actions {
                @if state == Some(JobState::Dead) {
                    (ctx.action_form(queue, "retry", &[("id", id)], "Retry", None))
                }
                @if state == Some(JobState::Scheduled) {
                    (ctx.action_form(queue, "run", &[("id", id)], "Run now", None))
                }
                @if state != Some(JobState::InFlight) {
                    (ctx.action_form(queue, "delete", &[("id", id)], "Delete",
                        Some("Delete this job and its data? This cannot be undone.")))
                }
            }
        }
        h2 { "Payload" }
        @if let Some(err) = &decode_error {
            p.warning { "The stored bytes do not decode as a job (" (err) "); they are shown as stored." }
        }
        @match &shown {
            None => { p.empty { "No data is stored for this job." } }
            Some(shown) => {
                p.muted {
                    (render::bytes(shown.total as u64))
                    @match shown.view {
                        View::Json(_) => " · JSON",
                        View::Text(_) => " · text",
                        View::Hex(_) => " · binary (hex)",
                        View::Empty => " · empty",
                    }
                    @if shown.is_cut() { " · the first " (render::bytes(shown.shown as u64)) " shown" }
                    " · " a href=(ctx.links.payload(queue, id)) download { "Download" }
                }
                @match &shown.view {
                    View::Json(p) | View::Text(p) => { pre.payload { (p) } }
                    View::Hex(p) => { pre.payload.hex { (p) } }
                    View::Empty => {}
                }
            }
        }
    };
    Ok(ctx.page(StatusCode::OK, id, body))
}

// ----- the payload download

pub(crate) async fn download(
    ctx: Ctx,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let result = async {
        let Path((queue, id)) = path.map_err(bad_path)?;
        payload_response(&ctx, &queue, &id).await
    };
    ctx.answer(result.await)
}

pub(crate) async fn download_by_query(
    ctx: Ctx,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<JobQuery>, QueryRejection>,
) -> Response {
    let result = async {
        let Path(queue) = path.map_err(bad_path)?;
        let Query(query) = query.map_err(bad_query)?;
        let id = query.id.unwrap_or_default();
        payload_response(&ctx, &queue, &id).await
    };
    ctx.answer(result.await)
}

/// The payload as an attachment: the job's data decoded with [`Job::decode`], or the
/// stored bytes as they are when they do not decode.
async fn payload_response(ctx: &Ctx, queue: &str, id: &str) -> Result<Response, PageError> {
    let name = queue_name(queue)?;
    let detail = ctx.backend().find_job(&name, id).await?.ok_or_else(|| {
        PageError::NotFound(format!("No job with the ID {id:?} in the queue {queue:?}."))
    })?;
    let stored = detail
        .data
        .ok_or_else(|| PageError::NotFound(format!("No data is stored for the job {id:?}.")))?;
    let bytes = match Job::decode(&stored) {
        Ok(job) => job.data,
        Err(_) => stored,
    };
    let file: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    let disposition = format!("attachment; filename=\"job-{file}.bin\"");
    let disposition = HeaderValue::from_str(&disposition)
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response())
}

// ----- consumers

#[derive(Debug, Default, Deserialize)]
pub(crate) struct NoticeQuery {
    notice: Option<String>,
    n: Option<u64>,
}

pub(crate) async fn consumers(
    ctx: Ctx,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<NoticeQuery>, QueryRejection>,
) -> Response {
    let result = async {
        let Path(queue) = path.map_err(bad_path)?;
        let Query(query) = query.map_err(bad_query)?;
        consumers_page(&ctx, &queue, &query).await
    };
    ctx.answer(result.await)
}

async fn consumers_page(
    ctx: &Ctx,
    queue: &str,
    query: &NoticeQuery,
) -> Result<Response, PageError> {
    let name = queue_name(queue)?;
    existing(ctx, &name, 0).await?;
    let list = ctx.backend().consumers(&name).await?;
    let timeout = ctx.dash.consumer_timeout.as_secs_f64();
    let writable = ctx.can_write(queue);
    let notice = render::notice(query.notice.as_deref(), query.n);
    let body = html! {
        p.crumbs { a href=(ctx.links.home()) { "Queues" } " / " a href=(ctx.links.queue(queue)) { (queue) } " / consumers" }
        h1 { "Consumers of " (queue) }
        @if let Some(notice) = notice { p.notice role="status" { (notice) } }
        p.muted { "A consumer is expired when its last heartbeat is older than "
            (render::human_seconds(timeout)) "; a custodian then takes its jobs back. Removing an expired consumer requeues its jobs now." }
        @if list.is_empty() {
            p.empty { "No consumer is registered." }
        } @else {
            table.consumers {
                thead { tr { th { "ID" } th { "Last heartbeat" } th.num { "Age" } th.num { "In flight" } th { "Status" } @if writable { th { "" } } } }
                tbody {
                    @for c in &list {
                        @let age = ctx.now - c.heartbeat;
                        @let expired = age > timeout;
                        tr.expired[expired] {
                            td.id { code { (c.id) } }
                            td { (render::iso(c.heartbeat)) }
                            td.num { (render::human_seconds(age)) }
                            td.num { (c.inflight) }
                            td { @if expired { span.badge.paused { "expired" } } @else { span.badge.running { "live" } } }
                            @if writable {
                                td { @if expired {
                                    (ctx.action_form(queue, "remove-consumer", &[("consumer", c.id.as_str())],
                                        "Remove and requeue its jobs", Some("Remove this consumer and requeue its jobs?")))
                                } }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(ctx.page(StatusCode::OK, &format!("Consumers of {queue}"), body))
}

// ----- actions (POST)

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ActionForm {
    action: String,
    id: Option<String>,
    consumer: Option<String>,
    confirm: Option<String>,
}

pub(crate) async fn action(
    ctx: Ctx,
    path: Result<Path<String>, PathRejection>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    let result = async {
        let Path(queue) = path.map_err(bad_path)?;
        let Form(form) =
            form.map_err(|e| PageError::BadRequest(format!("The form is not valid: {e}")))?;
        // The guard refused it already; this keeps a handler from ever acting alone.
        if !ctx.can_write(&queue) {
            return Err(PageError::Forbidden("This queue is read-only.".into()));
        }
        act(&ctx, &queue, form).await
    };
    ctx.answer(result.await)
}

fn required<'a>(value: &'a Option<String>, what: &str) -> Result<&'a str, PageError> {
    match value.as_deref() {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(PageError::BadRequest(format!("The form has no {what}."))),
    }
}

fn with_notice(url: String, code: &str, n: usize) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}notice={code}&n={n}")
}

async fn act(ctx: &Ctx, queue: &str, form: ActionForm) -> Result<Response, PageError> {
    let name = queue_name(queue)?;
    let backend = ctx.backend();
    let links = &ctx.links;
    match form.action.as_str() {
        "retry" | "run" => {
            let id = required(&form.id, "job ID")?;
            let selection = Selection::Ids(vec![id.to_owned()]);
            let report = if form.action == "retry" {
                backend.retry_dead(&name, &selection).await?
            } else {
                backend.run_scheduled(&name, &selection).await?
            };
            let code = match (report.done.is_empty(), form.action.as_str()) {
                (true, _) => "skipped",
                (false, "retry") => "retried",
                (false, _) => "ran",
            };
            Ok(ctx.redirect(with_notice(links.job(queue, id), code, report.done.len())))
        }
        "delete" => {
            let id = required(&form.id, "job ID")?;
            let report = backend.delete_jobs(&name, &[id.to_owned()]).await?;
            if let Some((_, state)) = report.deleted.first() {
                let tab = links.tab(queue, state.as_str(), 0);
                Ok(ctx.redirect(with_notice(tab, "deleted", 1)))
            } else if !report.in_flight.is_empty() {
                Ok(ctx.redirect(with_notice(links.job(queue, id), "in-flight", 0)))
            } else {
                Err(PageError::NotFound(format!(
                    "No job with the ID {id:?} in the queue {queue:?}."
                )))
            }
        }
        "pause" | "resume" => {
            let paused = form.action == "pause";
            backend.set_paused(&name, paused).await?;
            let code = if paused { "paused" } else { "resumed" };
            Ok(ctx.redirect(with_notice(links.queue(queue), code, 0)))
        }
        "retry-all" | "run-all" => {
            let (state, code) = if form.action == "retry-all" {
                (JobState::Dead, "retried")
            } else {
                (JobState::Scheduled, "ran")
            };
            if form.confirm.as_deref() != Some("yes") {
                return Ok(confirm_page(ctx, queue, &form.action, state));
            }
            let stats = backend.stats(&name, ctx.now, 0).await?;
            // Enough rounds for what is there now; jobs dying meanwhile wait for the next.
            let rounds = stats.size(state) as usize / MAX_BATCH + 2;
            let mut moved = 0;
            for _ in 0..rounds {
                let selection = Selection::Oldest(MAX_BATCH);
                let report = match state {
                    JobState::Dead => backend.retry_dead(&name, &selection).await?,
                    _ => backend.run_scheduled(&name, &selection).await?,
                };
                if report.done.is_empty() {
                    break;
                }
                moved += report.done.len();
            }
            Ok(ctx.redirect(with_notice(
                links.tab(queue, state.as_str(), 0),
                code,
                moved,
            )))
        }
        "remove-consumer" => {
            let consumer = required(&form.consumer, "consumer ID")?;
            let expired_before = ctx.now - ctx.dash.consumer_timeout.as_secs_f64();
            let report = backend
                .remove_consumer(&name, consumer, expired_before)
                .await?;
            let code = if report.removed { "removed" } else { "kept" };
            Ok(ctx.redirect(with_notice(links.consumers(queue), code, report.requeued)))
        }
        other => Err(PageError::BadRequest(format!("Unknown action {other:?}."))),
    }
}

/// The confirmation step of a bulk action sent without its checkbox ticked.
fn confirm_page(ctx: &Ctx, queue: &str, action: &str, state: JobState) -> Response {
    let label = if state == JobState::Dead {
        "Retry every dead job"
    } else {
        "Run every scheduled job now"
    };
    let body = html! {
        p.crumbs { a href=(ctx.links.home()) { "Queues" } " / " a href=(ctx.links.queue(queue)) { (queue) } }
        h1 { "Confirm: " (label) }
        p.message { "Every " (state.as_str()) " job of " code { (queue) } " will move to the active list. Tick the box to confirm." }
        form.bulk method="post" action=(ctx.links.actions(queue)) {
            (csrf_field(&ctx.verdict.token))
            input type="hidden" name="action" value=(action);
            label { input type="checkbox" name="confirm" value="yes" required; " Yes, move them all" }
            button type="submit" { (label) }
        }
        p { a href=(ctx.links.tab(queue, state.as_str(), 0)) { "Cancel" } }
    };
    ctx.page(StatusCode::OK, "Confirm", body)
}

// ----- anything else

pub(crate) async fn not_found(ctx: Ctx) -> Response {
    ctx.fail(PageError::NotFound(
        "There is no such page in this dashboard.".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_cursors_parse() {
        assert_eq!(parse_state(None).unwrap(), JobState::Active);
        assert_eq!(parse_state(Some("in-flight")).unwrap(), JobState::InFlight);
        assert!(parse_state(Some("unplaced")).is_err());
        assert!(parse_state(Some("<b>")).is_err());
        assert_eq!(parse_cursor(Some("50")).unwrap(), 50);
        assert!(parse_cursor(Some("-1")).is_err());
    }

    #[test]
    fn notices_join_the_query() {
        assert_eq!(
            with_notice("/q?state=dead".into(), "retried", 2),
            "/q?state=dead&notice=retried&n=2"
        );
        assert_eq!(
            with_notice("/q".into(), "paused", 0),
            "/q?notice=paused&n=0"
        );
    }
}
