//! The dashboard in a real headless Chromium (the testkit's `browser` harness), served on
//! a loopback port over a throwaway `redis-server` seeded with the demo's jobs: every page
//! loads with no console error (CSP violations and script errors included; over the
//! in-memory demo too), a retry clicked on a dead job moves it to active, read-only mode
//! (global and per queue) shows no action and the server refuses a forged POST with 403,
//! a POST from another origin is refused even with the real token, the `<script>`
//! payload stays inert, the overview refreshes itself without a reload, and the two
//! screenshots of the README are taken (under `target/screenshots`; copied to
//! `docs/screenshots` when `CURLYQ_UPDATE_SCREENSHOTS` is set).
//!
//! Without Chromium these tests print "skipped" and pass, unless `CI` is set (see
//! `curlyq_testkit::browser`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use curlyq_core::admin::JobState;
use curlyq_core::{Job, QueueBackend, QueueName};
use curlyq_redis_rs::RedisBackend;
use curlyq_testkit::browser::Browser;
use curlyq_testkit::RedisServer;
use curlyq_web::{demo, Dashboard};

/// Longest a page may take to show what a test waits for (a browser is an external
/// process: the wait polls with this bound, it does not sleep for a fixed time).
const WAIT: Duration = Duration::from_secs(15);

fn now() -> f64 {
    curlyq_core::unix_seconds(SystemTime::now())
}

/// The path segment of a queue name or job ID.
fn seg(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A dashboard served on a free loopback port; its base URL ends with `/`.
async fn serve(dashboard: Dashboard) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(curlyq_web::serve(
        listener,
        dashboard.router(),
        std::future::pending(),
    ));
    format!("http://{addr}/")
}

/// A throwaway `redis-server` seeded with the demo's jobs (it stops on drop).
struct Store {
    backend: Arc<RedisBackend>,
    _server: RedisServer,
}

async fn redis_store() -> Store {
    let server = RedisServer::start().expect("redis-server starts");
    let backend = Arc::new(
        RedisBackend::connect(&server.url())
            .await
            .expect("the throwaway Redis answers"),
    );
    demo::seed_demo(backend.as_ref(), now())
        .await
        .expect("the demo seeds into Redis");
    Store {
        backend,
        _server: server,
    }
}

/// The pages of the demo: the overview, the queue's tabs and consumers, the paused
/// queue, and a job page of every kind of job.
fn demo_pages(base: &str) -> Vec<String> {
    let q = seg(demo::QUEUE);
    let mut pages = vec![base.to_owned(), format!("{base}queues/{q}/consumers")];
    for state in ["active", "scheduled", "dead", "inflight"] {
        pages.push(format!("{base}queues/{q}?state={state}"));
    }
    pages.push(format!("{base}queues/{}", seg(demo::PAUSED_QUEUE)));
    for id in [
        demo::JSON_JOB,
        demo::BINARY_JOB,
        demo::LARGE_JOB,
        demo::XSS_JOB,
        demo::ODD_ID_JOB,
        demo::DEAD_JOB,
        demo::SCHEDULED_JOB,
        demo::LIVE_JOB,
    ] {
        pages.push(job_page(base, id));
    }
    pages
}

/// Number of POST forms in the page (every action is one; the search is a GET).
async fn actions_in_page(browser: &Browser) -> serde_json::Value {
    browser
        .execute("return document.querySelectorAll('form[method=post i]').length;")
        .await
        .unwrap()
}

/// A POST sent from the open page with `fetch` (the browser adds its Origin and the
/// cookie): its status and the text of the answer.
async fn post_from_page(browser: &Browser, path: &str, body: &str) -> (u64, String) {
    let answer = browser
        .execute(&format!(
            "return fetch('{path}', {{method: 'POST', headers: \
             {{'Content-Type': 'application/x-www-form-urlencoded'}}, body: '{body}'}})\
             .then(r => r.text().then(t => [r.status, t]));"
        ))
        .await
        .unwrap();
    let status = answer[0].as_u64().expect("a status");
    let text = answer[1].as_str().unwrap_or_default().to_owned();
    (status, text)
}

/// Opens `url` and fails the test on any console error of the page.
async fn open_clean(browser: &Browser, url: &str) {
    browser.goto(url).await.unwrap();
    browser.wait_for("body", WAIT).await.unwrap();
    let errors = browser.console_errors().await.unwrap();
    assert!(errors.is_empty(), "{url}: console errors {errors:?}");
}

async fn state_of(backend: &dyn QueueBackend, queue: &str, id: &str) -> Option<JobState> {
    let q = QueueName::new(queue).unwrap();
    backend
        .find_job(&q, id)
        .await
        .unwrap()
        .and_then(|d| d.summary.state)
}

/// The page of the demo queue's job `id`.
fn job_page(base: &str, id: &str) -> String {
    format!("{base}queues/{}/jobs/{}", seg(demo::QUEUE), seg(id))
}

/// Asserts the state of the demo's dead job (the one the actions are tried on).
async fn assert_dead_job_is(backend: &dyn QueueBackend, expected: JobState, why: &str) {
    assert_eq!(
        state_of(backend, demo::QUEUE, demo::DEAD_JOB).await,
        Some(expected),
        "{why}"
    );
}

/// The workspace's target directory (where `cargo test` builds).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_loads_without_a_console_error_over_redis() {
    let Some(browser) = Browser::launch_or_skip().await else {
        return;
    };
    let store = redis_store().await;
    let base = serve(Dashboard::new(store.backend.clone())).await;
    for page in demo_pages(&base) {
        open_clean(&browser, &page).await;
    }
    // The job page names the job it shows (the page is not an empty shell).
    let page = job_page(&base, demo::JSON_JOB);
    open_clean(&browser, &page).await;
    browser.wait_for_text(demo::JSON_JOB, WAIT).await.unwrap();
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_of_the_in_memory_demo_loads_without_a_console_error() {
    let Some(browser) = Browser::launch_or_skip().await else {
        return;
    };
    let store = Arc::new(demo::demo_backend(now()).await.expect("the demo seeds"));
    let base = serve(Dashboard::new(store)).await;
    for page in demo_pages(&base) {
        open_clean(&browser, &page).await;
    }
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_clicked_on_a_dead_job_moves_it_to_active() {
    let Some(browser) = Browser::launch_or_skip().await else {
        return;
    };
    let store = redis_store().await;
    let backend = store.backend.as_ref();
    let base = serve(Dashboard::new(store.backend.clone())).await;
    let page = job_page(&base, demo::DEAD_JOB);
    open_clean(&browser, &page).await;
    assert_dead_job_is(backend, JobState::Dead, "").await;
    browser
        .click("form[method=post] input[value=retry] ~ button")
        .await
        .unwrap();
    // The page the action leads to shows the job as active.
    browser.wait_for_text("active", WAIT).await.unwrap();
    assert_dead_job_is(
        backend,
        JobState::Active,
        "the click moved the job in Redis",
    )
    .await;
    // Its own page, opened afresh, says so too, and offers no retry any more.
    open_clean(&browser, &page).await;
    let retry = browser
        .execute("return document.querySelectorAll('input[value=retry]').length;")
        .await
        .unwrap();
    assert_eq!(retry, serde_json::json!(0), "an active job has no retry");
    let errors = browser.console_errors().await.unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_shows_no_action_and_refuses_a_forged_post() {
    let Some(browser) = Browser::launch_or_skip().await else {
        return;
    };
    let store = redis_store().await;
    let backend = store.backend.as_ref();
    let q = seg(demo::QUEUE);
    let dead = seg(demo::DEAD_JOB);

    // Read-only as a whole: no page offers an action, and the server refuses one.
    let base = serve(Dashboard::new(store.backend.clone()).read_only(true)).await;
    for page in demo_pages(&base) {
        open_clean(&browser, &page).await;
        assert_eq!(
            actions_in_page(&browser).await,
            serde_json::json!(0),
            "{page}: a read-only page offers no action"
        );
    }
    open_clean(&browser, &job_page(&base, demo::DEAD_JOB)).await;
    let (status, text) = post_from_page(
        &browser,
        &format!("/queues/{q}/actions"),
        &format!("action=retry&id={dead}"),
    )
    .await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("read-only"), "the refusal says why: {text}");
    assert_dead_job_is(backend, JobState::Dead, "the forged POST changed nothing").await;

    // Read-only for one queue: that queue's pages offer nothing, the others still do.
    let base = serve(Dashboard::new(store.backend.clone()).read_only_queue(demo::QUEUE)).await;
    open_clean(&browser, &job_page(&base, demo::DEAD_JOB)).await;
    assert_eq!(actions_in_page(&browser).await, serde_json::json!(0));
    let (status, text) = post_from_page(
        &browser,
        &format!("/queues/{q}/actions"),
        &format!("action=retry&id={dead}"),
    )
    .await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("read-only"), "the refusal says why: {text}");
    open_clean(
        &browser,
        &format!("{base}queues/{}", seg(demo::PAUSED_QUEUE)),
    )
    .await;
    assert_ne!(
        actions_in_page(&browser).await,
        serde_json::json!(0),
        "another queue keeps its actions"
    );
    assert_dead_job_is(backend, JobState::Dead, "").await;
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_from_another_origin_is_refused_even_with_the_real_token() {
    let Some(browser) = Browser::launch_or_skip().await else {
        return;
    };
    let store = redis_store().await;
    let backend = store.backend.as_ref();
    let base = serve(Dashboard::new(store.backend.clone())).await;
    // The browser visits the dashboard: it now holds the CSRF cookie, and the page's
    // forms carry the same token.
    let page = job_page(&base, demo::DEAD_JOB);
    open_clean(&browser, &page).await;
    let token = browser
        .execute("return document.querySelector('input[name=_csrf]').value;")
        .await
        .unwrap();
    let token = token
        .as_str()
        .expect("the page's forms carry a token")
        .to_owned();
    assert_eq!(token.len(), 64, "a token of 32 random bytes: {token}");

    // Another origin (same host, another port, so the browser still sends the cookie:
    // ports do not make another site) whose form posts a retry with that very token.
    let action = format!("{base}queues/{}/actions", seg(demo::QUEUE));
    let evil = format!(
        "<!doctype html><form id=f method=post action=\"{action}\">\
         <input type=hidden name=action value=retry>\
         <input type=hidden name=id value=\"{}\">\
         <input type=hidden name=_csrf value=\"{token}\">\
         <button id=go type=submit>go</button></form>",
        demo::DEAD_JOB,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let evil = evil.clone();
            async move { axum::response::Html(evil) }
        }),
    );
    tokio::spawn(curlyq_web::serve(listener, app, std::future::pending()));
    browser.goto(&format!("http://{other}/")).await.unwrap();
    browser.click("#go").await.unwrap();
    browser
        .wait_for_text("did not come from this dashboard", WAIT)
        .await
        .unwrap();
    assert_dead_job_is(backend, JobState::Dead, "the job did not move").await;

    // The same form served by the dashboard's own origin would pass: the token is
    // real, so the refusal above was the Origin check.
    open_clean(&browser, &page).await;
    let (status, _) = post_from_page(
        &browser,
        &format!("/queues/{}/actions", seg(demo::QUEUE)),
        &format!("action=retry&id={}&_csrf={token}", seg(demo::DEAD_JOB)),
    )
    .await;
    assert_eq!(status, 200, "the redirect is followed to the page");
    assert_dead_job_is(backend, JobState::Active, "").await;
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_script_payload_stays_inert() {
    let Some(browser) = Browser::launch_or_skip().await else {
        return;
    };
    let store = redis_store().await;
    let base = serve(Dashboard::new(store.backend.clone())).await;
    let q = seg(demo::QUEUE);
    // alert() would block the page, and chromedriver would report an open dialog; the
    // job page and the list it is in both show the data.
    for page in [
        job_page(&base, demo::XSS_JOB),
        format!("{base}queues/{q}?state=active"),
    ] {
        open_clean(&browser, &page).await;
        let scripts = browser
            .execute("return Array.from(document.scripts).filter(s => !s.src).length;")
            .await
            .unwrap();
        assert_eq!(scripts, serde_json::json!(0), "{page}: no inline script");
    }
    open_clean(&browser, &job_page(&base, demo::XSS_JOB)).await;
    browser
        .wait_for_text("<script>alert(1)</script>", WAIT)
        .await
        .unwrap();
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_refreshes_itself_and_screenshots_are_taken() {
    let Some(browser) = Browser::launch_or_skip().await else {
        return;
    };
    let store = redis_store().await;
    let base = serve(Dashboard::new(store.backend.clone()).refresh(Duration::from_secs(1))).await;
    let shots = target_dir().join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    open_clean(&browser, &base).await;
    browser.set_viewport(1280, 900).await.unwrap();
    browser
        .screenshot(shots.join("overview.png"))
        .await
        .unwrap();
    // A mark on the loaded document: a reload would lose it, a refresh keeps it.
    browser
        .execute("window.curlyqMark = 'kept'; return null;")
        .await
        .unwrap();
    // A queue that appears after the page loaded shows up without a reload.
    let fresh = QueueName::new("newsletters").unwrap();
    let job = Job::new(b"{}".to_vec()).with_id("n-1").encode();
    store
        .backend
        .push(
            &fresh,
            &[curlyq_core::EncodedJob {
                id: "n-1".into(),
                data: job,
            }],
        )
        .await
        .unwrap();
    browser.wait_for_text("newsletters", WAIT).await.unwrap();
    let mark = browser
        .execute("return window.curlyqMark || null;")
        .await
        .unwrap();
    assert_eq!(mark, serde_json::json!("kept"), "the page was not reloaded");
    let errors = browser.console_errors().await.unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    let page = job_page(&base, demo::JSON_JOB);
    open_clean(&browser, &page).await;
    browser.screenshot(shots.join("job.png")).await.unwrap();
    for name in ["overview.png", "job.png"] {
        let png = std::fs::read(shots.join(name)).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
        if std::env::var_os("CURLYQ_UPDATE_SCREENSHOTS").is_some() {
            let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
            std::fs::copy(shots.join(name), docs.join(name)).unwrap();
        }
    }
    browser.close().await.unwrap();
}
