//! The dashboard in a real headless Chromium (the testkit's `browser` harness): every page
//! loads with no console error (CSP violations and script errors included), a retry
//! clicked on a job page moves the job, read-only mode shows no action and refuses a POST,
//! a POST from another origin is refused, the `<script>` payload stays inert, the overview
//! refreshes itself, and the two screenshots of the README are taken.
//!
//! Without Chromium these tests print "skipped" and pass, unless `CI` is set (see
//! `curlyq_testkit::browser`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use curlyq_core::admin::JobState;
use curlyq_core::{Job, MemoryBackend, QueueBackend, QueueName};
use curlyq_testkit::browser::Browser;
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

async fn demo_store() -> Arc<MemoryBackend> {
    Arc::new(demo::demo_backend(now()).await.expect("the demo seeds"))
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

/// The workspace's target directory (where `cargo test` builds).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_loads_without_a_console_error() {
    let Some(browser) = Browser::launch_or_skip().await else {
        return;
    };
    let base = serve(Dashboard::new(demo_store().await)).await;
    let q = seg(demo::QUEUE);
    let mut pages = vec![base.clone(), format!("{base}queues/{q}/consumers")];
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
        pages.push(format!("{base}queues/{q}/jobs/{}", seg(id)));
    }
    for page in &pages {
        open_clean(&browser, page).await;
    }
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_clicked_on_a_dead_job_moves_it_to_active() {
    let Some(browser) = Browser::launch_or_skip().await else {
        return;
    };
    let store = demo_store().await;
    let base = serve(Dashboard::new(store.clone())).await;
    let page = format!(
        "{base}queues/{}/jobs/{}",
        seg(demo::QUEUE),
        seg(demo::DEAD_JOB)
    );
    open_clean(&browser, &page).await;
    assert_eq!(
        state_of(store.as_ref(), demo::QUEUE, demo::DEAD_JOB).await,
        Some(JobState::Dead)
    );
    browser
        .click("form[method=post] input[value=retry] ~ button")
        .await
        .unwrap();
    browser.wait_for_text("active", WAIT).await.unwrap();
    assert_eq!(
        state_of(store.as_ref(), demo::QUEUE, demo::DEAD_JOB).await,
        Some(JobState::Active),
        "the click moved the job"
    );
    let errors = browser.console_errors().await.unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_shows_no_action_and_refuses_a_forged_post() {
    let Some(browser) = Browser::launch_or_skip().await else {
        return;
    };
    let store = demo_store().await;
    let base = serve(Dashboard::new(store.clone()).read_only(true)).await;
    let q = seg(demo::QUEUE);
    let page = format!("{base}queues/{q}/jobs/{}", seg(demo::DEAD_JOB));
    open_clean(&browser, &page).await;
    let forms = browser
        .execute(
            "return document.querySelectorAll('form[method=post], button[type=submit]').length;",
        )
        .await
        .unwrap();
    assert_eq!(
        forms,
        serde_json::json!(0),
        "a read-only page offers no action"
    );
    // A POST from the page itself, as a forged form would send it.
    let status = browser
        .execute(&format!(
            "return fetch('/queues/{q}/actions', {{method: 'POST', headers: \
             {{'Content-Type': 'application/x-www-form-urlencoded'}}, body: \
             'action=retry&id={}'}}).then(r => r.status);",
            seg(demo::DEAD_JOB)
        ))
        .await
        .unwrap();
    assert_eq!(status, serde_json::json!(403));
    assert_eq!(
        state_of(store.as_ref(), demo::QUEUE, demo::DEAD_JOB).await,
        Some(JobState::Dead)
    );
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_from_another_origin_is_refused() {
    let Some(browser) = Browser::launch_or_skip().await else {
        return;
    };
    let store = demo_store().await;
    let base = serve(Dashboard::new(store.clone())).await;
    // Another origin (another port): a page whose form posts a retry to the dashboard.
    let action = format!("{base}queues/{}/actions", seg(demo::QUEUE));
    let evil = format!(
        "<!doctype html><form id=f method=post action=\"{action}\">\
         <input type=hidden name=action value=retry>\
         <input type=hidden name=id value=\"{}\">\
         <input type=hidden name=_csrf value=\"{}\">\
         <button id=go type=submit>go</button></form>",
        demo::DEAD_JOB,
        "0".repeat(64)
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
    browser.wait_for_text("403", WAIT).await.ok();
    let page = browser.html().await.unwrap();
    assert!(
        page.contains("403")
            || page.to_lowercase().contains("forbidden")
            || page.contains("refused"),
        "the dashboard's answer to the cross-origin POST: {page}"
    );
    assert_eq!(
        state_of(store.as_ref(), demo::QUEUE, demo::DEAD_JOB).await,
        Some(JobState::Dead),
        "the job did not move"
    );
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_script_payload_stays_inert() {
    let Some(browser) = Browser::launch_or_skip().await else {
        return;
    };
    let base = serve(Dashboard::new(demo_store().await)).await;
    let page = format!(
        "{base}queues/{}/jobs/{}",
        seg(demo::QUEUE),
        seg(demo::XSS_JOB)
    );
    // alert() would block the page, and chromedriver would report an open dialog.
    open_clean(&browser, &page).await;
    let scripts = browser
        .execute("return Array.from(document.scripts).filter(s => !s.src).length;")
        .await
        .unwrap();
    assert_eq!(
        scripts,
        serde_json::json!(0),
        "no inline script in the page"
    );
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
    let store = demo_store().await;
    let base = serve(Dashboard::new(store.clone()).refresh(Duration::from_secs(1))).await;
    let shots = target_dir().join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    open_clean(&browser, &base).await;
    browser.set_viewport(1280, 900).await.unwrap();
    browser
        .screenshot(shots.join("overview.png"))
        .await
        .unwrap();
    // A queue that appears after the page loaded shows up without a reload.
    let fresh = QueueName::new("newsletters").unwrap();
    let job = Job::new(b"{}".to_vec()).with_id("n-1").encode();
    store
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
    let errors = browser.console_errors().await.unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    let page = format!(
        "{base}queues/{}/jobs/{}",
        seg(demo::QUEUE),
        seg(demo::JSON_JOB)
    );
    open_clean(&browser, &page).await;
    browser.screenshot(shots.join("job.png")).await.unwrap();
    for name in ["overview.png", "job.png"] {
        let png = std::fs::read(shots.join(name)).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
    }
    browser.close().await.unwrap();
}
