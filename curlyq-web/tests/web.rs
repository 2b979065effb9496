//! The dashboard over HTTP (the router as a tower service), on the in-memory demo store
//! and on a throwaway Redis: every page, the actions, CSRF, read-only, authorization,
//! escaping, the security headers, large payloads, and a mount under a prefix.

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Router;
use common::*;
use curlyq_core::admin::JobState;
use curlyq_core::{EncodedJob, Job, MemoryBackend, QueueBackend, QueueName};
use curlyq_redis_rs::RedisBackend;
use curlyq_testkit::RedisServer;
use curlyq_web::{basic_auth, demo, Access, Dashboard};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

async fn demo_store() -> Arc<MemoryBackend> {
    Arc::new(demo::demo_backend(NOW).await.expect("the demo seeds"))
}

fn dashboard(backend: Arc<dyn QueueBackend>) -> Dashboard {
    Dashboard::new(backend).clock(|| NOW)
}

fn queue() -> QueueName {
    QueueName::new(demo::QUEUE).unwrap()
}

async fn state_of(backend: &dyn QueueBackend, id: &str) -> Option<JobState> {
    backend
        .find_job(&queue(), id)
        .await
        .unwrap()
        .and_then(|d| d.summary.state)
}

/// The job page's path of a demo job (IDs percent-encoded).
fn job_path(id: &str) -> String {
    let encoded: String = id
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("/queues/emails/jobs/{encoded}")
}

/// Every page of the demo answers 200 with what it is about.
async fn every_page_shows_the_demo(backend: Arc<dyn QueueBackend>) {
    let app = dashboard(backend).router();

    let overview = get(&app, "/").await.expect(StatusCode::OK).text();
    assert!(overview.contains("href=\"/queues/emails\""), "{overview}");
    assert!(overview.contains("href=\"/queues/%7Breports%7D\""));
    assert!(overview.contains("paused"));
    assert!(overview.contains("<svg"), "the charts are drawn");
    assert!(overview.contains("data-refresh-src=\"/fragments/overview\""));
    // A day of counters: both charts count outcomes, and failures among them.
    for caption in [
        "Last hour, per minute — ",
        "Last 24 hours, per 15 minutes — ",
    ] {
        let counted = |what: &str| -> u64 {
            let after = &overview[overview.find(caption).expect(caption)..];
            let marker = format!("<span class=\"{what}\">");
            let rest = &after[after.find(&marker).unwrap() + marker.len()..];
            rest.split(' ').next().unwrap().parse().unwrap()
        };
        assert!(
            counted("processed") > counted("failed") && counted("failed") > 0,
            "{caption}"
        );
    }

    let fragment = get(&app, "/fragments/overview")
        .await
        .expect(StatusCode::OK)
        .text();
    assert!(fragment.contains("href=\"/queues/emails\"") && !fragment.contains("<html"));

    for (state, id) in [
        ("active", demo::JSON_JOB),
        ("scheduled", demo::SCHEDULED_JOB),
        ("dead", demo::DEAD_JOB),
        ("inflight", demo::LIVE_JOB),
    ] {
        let page = get(&app, &format!("/queues/emails?state={state}"))
            .await
            .expect(StatusCode::OK)
            .text();
        assert!(page.contains(id), "{state} tab lists {id}");
    }
    let dead = get(&app, "/queues/emails?state=dead").await.text();
    assert!(
        dead.contains("550 5.1.1 mailbox unavailable"),
        "the reason is listed"
    );

    let json = get(&app, &job_path(demo::JSON_JOB))
        .await
        .expect(StatusCode::OK)
        .text();
    assert!(
        json.contains("&quot;template&quot;: &quot;welcome&quot;"),
        "pretty JSON: {json}"
    );
    assert!(json.contains("active"));
    assert!(json.contains(&format!("href=\"{}/payload\"", job_path(demo::JSON_JOB))));

    let binary = get(&app, &job_path(demo::BINARY_JOB))
        .await
        .expect(StatusCode::OK)
        .text();
    assert!(binary.contains("binary (hex)") && binary.contains("00000000  ff fe fd fc"));

    let odd = get(&app, &job_path(demo::ODD_ID_JOB))
        .await
        .expect(StatusCode::OK)
        .text();
    assert!(odd.contains("invoice 2024/07 {emails}"));

    let dead_job = get(&app, &job_path(demo::DEAD_JOB))
        .await
        .expect(StatusCode::OK)
        .text();
    assert!(dead_job.contains("Dead reason") && dead_job.contains("mailbox unavailable"));
    // The time of death, as ISO 8601 in UTC.
    assert!(dead_job.contains("2025-06-15T14:26:40.000Z"), "{dead_job}");

    let retry = get(&app, &job_path(demo::RETRY_JOB))
        .await
        .expect(StatusCode::OK)
        .text();
    assert!(retry.contains("Last error") && retry.contains("greylisted"));

    let consumers = get(&app, "/queues/emails/consumers")
        .await
        .expect(StatusCode::OK)
        .text();
    assert!(consumers.contains(demo::LIVE_CONSUMER) && consumers.contains(demo::EXPIRED_CONSUMER));
    assert!(consumers.contains("expired") && consumers.contains("live"));

    let download = get(&app, &format!("{}/payload", job_path(demo::BINARY_JOB)))
        .await
        .expect(StatusCode::OK);
    assert_eq!(download.body, (0u8..=255).rev().collect::<Vec<u8>>());
    assert_eq!(
        download.header("content-type"),
        Some("application/octet-stream")
    );
    assert!(download
        .header("content-disposition")
        .unwrap()
        .starts_with("attachment"));

    let found = get(
        &app,
        "/queues/emails/find?id=invoice+2024%2F07+%7Bemails%7D",
    )
    .await;
    assert_eq!(found.status, StatusCode::SEE_OTHER);
    assert_eq!(
        found.header("location"),
        Some(job_path(demo::ODD_ID_JOB).as_str())
    );
}

#[tokio::test]
async fn every_page_answers_on_the_memory_backend() {
    every_page_shows_the_demo(demo_store().await).await;
}

#[tokio::test]
async fn every_page_answers_on_redis() {
    let server = RedisServer::start().expect("redis-server starts");
    let backend = Arc::new(RedisBackend::connect(&server.url()).await.unwrap());
    demo::seed_demo(backend.as_ref(), NOW).await.unwrap();
    every_page_shows_the_demo(backend.clone()).await;
    // An action goes through Redis too.
    let app = dashboard(backend.clone()).router();
    let t = token(&app).await;
    retry_dead_job(&app, &t).await.expect(StatusCode::SEE_OTHER);
    assert_eq!(
        state_of(backend.as_ref(), demo::DEAD_JOB).await,
        Some(JobState::Active)
    );
}

#[tokio::test]
async fn unknown_queues_jobs_and_pages_are_404() {
    let app = dashboard(demo_store().await).router();
    for path in [
        "/queues/nope",
        "/queues/nope/consumers",
        "/queues/emails/jobs/nope",
        "/queues/emails/jobs/nope/payload",
        "/queues/emails/find?id=nope",
        "/nothing/here",
    ] {
        let answer = get(&app, path).await.expect(StatusCode::NOT_FOUND);
        assert!(answer.text().contains("<html"), "{path} has a page");
        assert_eq!(
            answer.header("content-security-policy"),
            Some(CSP),
            "{path}"
        );
    }
    let bad = get(&app, "/queues/emails?state=%3Cb%3E")
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert!(bad.text().contains("&lt;b&gt;") && !bad.text().contains("<b>"));
}

#[tokio::test]
async fn a_valid_post_retries_a_dead_job() {
    let store = demo_store().await;
    let app = dashboard(store.clone()).router();
    let page = get(&app, &job_path(demo::DEAD_JOB)).await;
    let t = page.token();
    assert!(
        page.text()
            .contains(&format!("name=\"_csrf\" value=\"{t}\"")),
        "forms carry the token"
    );
    let answer = retry_dead_job(&app, &t).await.expect(StatusCode::SEE_OTHER);
    let location = answer.header("location").unwrap().to_owned();
    assert!(
        location.starts_with(&job_path(demo::DEAD_JOB)),
        "{location}"
    );
    assert_eq!(
        state_of(store.as_ref(), demo::DEAD_JOB).await,
        Some(JobState::Active)
    );
    let after = get(&app, &location).await.expect(StatusCode::OK).text();
    assert!(after.contains("Retried: 1 job"));
}

#[tokio::test]
async fn forged_posts_are_refused_and_change_nothing() {
    let store = demo_store().await;
    let app = dashboard(store.clone()).router();
    let t = token(&app).await;
    let retry = [("action", "retry"), ("id", demo::DEAD_JOB)];
    let other = "ab".repeat(32);

    let mut no_token = Post::new("/queues/emails/actions", &t, &retry);
    no_token.form_token = None;
    let mut no_cookie = Post::new("/queues/emails/actions", &t, &retry);
    no_cookie.cookie = None;
    let mut wrong_token = Post::new("/queues/emails/actions", &t, &retry);
    wrong_token.form_token = Some(other.clone());
    let mut wrong_origin = Post::new("/queues/emails/actions", &t, &retry);
    wrong_origin.origin = Some("http://evil.example");
    let mut null_origin = Post::new("/queues/emails/actions", &t, &retry);
    null_origin.origin = Some("null");
    let mut no_origin = Post::new("/queues/emails/actions", &t, &retry);
    no_origin.origin = None;
    let mut cross_site = Post::new("/queues/emails/actions", &t, &retry);
    cross_site.origin = None;
    cross_site.extra = vec![("sec-fetch-site", "cross-site")];
    for (what, post) in [
        ("no token", no_token),
        ("no cookie", no_cookie),
        ("wrong token", wrong_token),
        ("wrong origin", wrong_origin),
        ("null origin", null_origin),
        ("no origin", no_origin),
        ("cross-site", cross_site),
    ] {
        let answer = post.send(&app).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{what}");
        assert_eq!(
            answer.header("content-security-policy"),
            Some(CSP),
            "{what}"
        );
    }
    assert_eq!(
        state_of(store.as_ref(), demo::DEAD_JOB).await,
        Some(JobState::Dead)
    );

    // A browser that sends no Origin but says same-origin is let through.
    let mut same_site = Post::new("/queues/emails/actions", &t, &retry);
    same_site.origin = None;
    same_site.extra = vec![("sec-fetch-site", "same-origin")];
    same_site.send(&app).await.expect(StatusCode::SEE_OTHER);
    assert_eq!(
        state_of(store.as_ref(), demo::DEAD_JOB).await,
        Some(JobState::Active)
    );
}

#[tokio::test]
async fn get_never_changes_anything() {
    let store = demo_store().await;
    let app = dashboard(store.clone()).router();
    let answer = get(
        &app,
        &format!("/queues/emails/actions?action=retry&id={}", demo::DEAD_JOB),
    )
    .await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        state_of(store.as_ref(), demo::DEAD_JOB).await,
        Some(JobState::Dead)
    );
}

#[tokio::test]
async fn a_read_only_dashboard_shows_no_action_and_refuses_posts() {
    let store = demo_store().await;
    let app = dashboard(store.clone()).read_only(true).router();
    for path in [
        "/queues/emails?state=dead".to_owned(),
        "/queues/emails?state=scheduled".to_owned(),
        job_path(demo::DEAD_JOB),
        "/queues/emails/consumers".to_owned(),
    ] {
        let page = get(&app, &path).await.expect(StatusCode::OK).text();
        assert!(!has_actions(&page), "{path} shows no action");
    }
    let t = token(&app).await;
    retry_dead_job(&app, &t).await.expect(StatusCode::FORBIDDEN);
    Post::new("/queues/emails/actions", &t, &[("action", "pause")])
        .send(&app)
        .await
        .expect(StatusCode::FORBIDDEN);
    assert_eq!(
        state_of(store.as_ref(), demo::DEAD_JOB).await,
        Some(JobState::Dead)
    );
    assert!(!store.stats(&queue(), NOW, 0).await.unwrap().paused);
}

#[tokio::test]
async fn a_read_only_queue_refuses_posts_and_others_do_not() {
    let store = demo_store().await;
    let app = dashboard(store.clone())
        .read_only_queue(demo::QUEUE)
        .router();
    let page = get(&app, "/queues/emails?state=dead")
        .await
        .expect(StatusCode::OK)
        .text();
    assert!(!has_actions(&page));
    assert!(!has_actions(
        &get(&app, &job_path(demo::DEAD_JOB)).await.text()
    ));
    let t = token(&app).await;
    retry_dead_job(&app, &t).await.expect(StatusCode::FORBIDDEN);
    assert_eq!(
        state_of(store.as_ref(), demo::DEAD_JOB).await,
        Some(JobState::Dead)
    );

    // The other queue keeps its actions (its name arrives percent-encoded).
    let other = get(&app, "/queues/%7Breports%7D")
        .await
        .expect(StatusCode::OK)
        .text();
    assert!(has_actions(&other) && other.contains("Resume the queue"));
    Post::new("/queues/%7Breports%7D/actions", &t, &[("action", "resume")])
        .send(&app)
        .await
        .expect(StatusCode::SEE_OTHER);
    let paused = QueueName::new(demo::PAUSED_QUEUE).unwrap();
    assert!(!store.stats(&paused, NOW, 0).await.unwrap().paused);
}

#[tokio::test]
async fn the_authorize_hook_refuses_or_limits() {
    let store = demo_store().await;
    let app = dashboard(store.clone())
        .authorize(
            |parts| match parts.headers.get("x-role").and_then(|v| v.to_str().ok()) {
                Some("admin") => Ok(Access::ReadWrite),
                Some("viewer") => Ok(Access::ReadOnly),
                _ => Err((StatusCode::IM_A_TEAPOT, "go away").into_response()),
            },
        )
        .router();
    let refused = get(&app, "/").await.expect(StatusCode::IM_A_TEAPOT);
    assert_eq!(refused.text(), "go away");
    assert_eq!(refused.header("content-security-policy"), Some(CSP));

    let viewer = get_with(&app, "/queues/emails?state=dead", &[("x-role", "viewer")])
        .await
        .expect(StatusCode::OK);
    assert!(!has_actions(&viewer.text()));
    let t = viewer.token();
    let mut post = Post::new(
        "/queues/emails/actions",
        &t,
        &[("action", "retry"), ("id", demo::DEAD_JOB)],
    );
    post.extra = vec![("x-role", "viewer")];
    post.send(&app).await.expect(StatusCode::FORBIDDEN);
    assert_eq!(
        state_of(store.as_ref(), demo::DEAD_JOB).await,
        Some(JobState::Dead)
    );

    let admin = get_with(&app, "/queues/emails?state=dead", &[("x-role", "admin")]).await;
    assert!(has_actions(&admin.text()));
    let mut post = Post::new(
        "/queues/emails/actions",
        &t,
        &[("action", "retry"), ("id", demo::DEAD_JOB)],
    );
    post.extra = vec![("x-role", "admin")];
    post.send(&app).await.expect(StatusCode::SEE_OTHER);
    assert_eq!(
        state_of(store.as_ref(), demo::DEAD_JOB).await,
        Some(JobState::Active)
    );
}

#[tokio::test]
async fn basic_auth_asks_for_and_checks_credentials() {
    let app = dashboard(demo_store().await)
        .authorize(basic_auth("ops", "s3cret: pass"))
        .router();
    // "ops:s3cret: pass" and two wrong ones, in base64.
    let right = "Basic b3BzOnMzY3JldDogcGFzcw==";
    for (what, auth) in [
        ("missing", None),
        ("wrong password", Some("Basic b3BzOnMzY3JldA==")),
        ("wrong user", Some("Basic b3A6czNjcmV0OiBwYXNz")),
        ("another scheme", Some("Bearer b3BzOnMzY3JldDogcGFzcw==")),
        ("garbage", Some("Basic %%%")),
    ] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
        let answer = get_with(&app, "/", &headers).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(
            answer.header("www-authenticate"),
            Some("Basic realm=\"curlyq\", charset=\"UTF-8\""),
            "{what}"
        );
        assert!(!answer.text().contains("emails"), "{what}: nothing leaks");
    }
    let ok = get_with(&app, "/", &[("authorization", right)])
        .await
        .expect(StatusCode::OK);
    assert!(ok.text().contains("emails"));
    let lower = get_with(
        &app,
        "/",
        &[("authorization", "basic b3BzOnMzY3JldDogcGFzcw==")],
    )
    .await;
    assert_eq!(
        lower.status,
        StatusCode::OK,
        "the scheme is case-insensitive"
    );
}

#[tokio::test]
async fn a_script_payload_is_shown_as_text() {
    let app = dashboard(demo_store().await).router();
    let job = get(&app, &job_path(demo::XSS_JOB))
        .await
        .expect(StatusCode::OK)
        .text();
    assert!(
        job.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{job}"
    );
    assert!(!job.contains("<script>alert"));
    let list = get(&app, "/queues/emails")
        .await
        .expect(StatusCode::OK)
        .text();
    assert!(list.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!list.contains("<script>alert"));

    // Names and IDs are escaped too.
    let store = Arc::new(MemoryBackend::new());
    let evil = QueueName::new("<img src=x>").unwrap();
    let data = Job::new(&b"x"[..]).with_id("<b>id</b>").encode();
    store
        .push(
            &evil,
            &[EncodedJob {
                id: "<b>id</b>".into(),
                data,
            }],
        )
        .await
        .unwrap();
    let app = dashboard(store).router();
    for path in [
        "/",
        "/queues/%3Cimg%20src%3Dx%3E",
        "/queues/%3Cimg%20src%3Dx%3E/jobs/%3Cb%3Eid%3C%2Fb%3E",
    ] {
        let page = get(&app, path).await.expect(StatusCode::OK).text();
        assert!(
            !page.contains("<img src=x>") && !page.contains("<b>id</b>"),
            "{path}: {page}"
        );
        assert!(page.contains("&lt;img src=x&gt;"), "{path}");
    }
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = dashboard(demo_store().await).router();
    let overview = get(&app, "/").await.text();
    let assets: Vec<String> = overview
        .split('"')
        .filter(|s| s.starts_with("/assets/"))
        .map(str::to_owned)
        .collect();
    assert_eq!(assets.len(), 2, "{assets:?}");
    let mut paths = vec![
        "/".to_owned(),
        "/fragments/overview".to_owned(),
        "/queues/emails".to_owned(),
        "/queues/emails?state=inflight".to_owned(),
        job_path(demo::JSON_JOB),
        format!("{}/payload", job_path(demo::JSON_JOB)),
        "/queues/emails/consumers".to_owned(),
        "/missing".to_owned(),
    ];
    paths.extend(assets.iter().cloned());
    for path in &paths {
        let answer = get(&app, path).await;
        assert_eq!(
            answer.header("content-security-policy"),
            Some(CSP),
            "{path}"
        );
        assert_eq!(
            answer.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(
            answer.header("referrer-policy"),
            Some("same-origin"),
            "{path}"
        );
        let cache = answer.header("cache-control").unwrap_or_default();
        if path.starts_with("/assets/") {
            assert!(cache.contains("immutable"), "{path}: {cache}");
        } else {
            assert_eq!(cache, "no-store", "{path}");
        }
        let cookie = answer.header("set-cookie").unwrap_or_default();
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
            "{path}"
        );
    }
    // No inline script or style anywhere.
    for path in &paths[..7] {
        let page = get(&app, path).await.text();
        assert!(!page.contains("style="), "{path}");
        assert!(
            !page.contains("<script>") && !page.contains("onclick"),
            "{path}"
        );
    }
    let script = assets
        .iter()
        .find(|a| a.ends_with(".js"))
        .expect("a script");
    let js = get(&app, script).await;
    assert!(js
        .header("content-type")
        .unwrap()
        .starts_with("text/javascript"));
}

#[tokio::test]
async fn a_16_mib_payload_makes_a_small_page_and_downloads_whole() {
    let store = Arc::new(MemoryBackend::new());
    let q = queue();
    let big: Vec<u8> = (0..16 * 1024 * 1024)
        .map(|i| b"{\"k\": [1, 2, 3]}"[i % 16])
        .collect();
    let data = Job::new(big.clone()).with_id("huge").encode();
    store
        .push(
            &q,
            &[EncodedJob {
                id: "huge".into(),
                data,
            }],
        )
        .await
        .unwrap();
    let app = dashboard(store).router();

    let page = get(&app, "/queues/emails/jobs/huge")
        .await
        .expect(StatusCode::OK);
    assert!(
        page.body.len() < 200 * 1024,
        "the page is {} bytes",
        page.body.len()
    );
    let text = page.text();
    assert!(text.contains("href=\"/queues/emails/jobs/huge/payload\""));
    assert!(text.contains("16.0 MiB") && text.contains("the first 64.0 KiB shown"));

    let list = get(&app, "/queues/emails").await.expect(StatusCode::OK);
    assert!(list.body.len() < 64 * 1024);

    let download = get(&app, "/queues/emails/jobs/huge/payload")
        .await
        .expect(StatusCode::OK);
    assert_eq!(download.body.len(), big.len());
    assert!(download.body == big, "the exact bytes");
}

#[tokio::test]
async fn under_a_prefix_every_link_carries_it() {
    let store = demo_store().await;
    let app = Router::new().nest("/admin/q", dashboard(store.clone()).router());
    let overview = get(&app, "/admin/q").await.expect(StatusCode::OK).text();
    assert!(
        overview.contains("href=\"/admin/q/queues/emails\""),
        "{overview}"
    );
    assert!(overview.contains("data-refresh-src=\"/admin/q/fragments/overview\""));
    assert!(overview.contains("href=\"/admin/q/assets/app-"));
    assert!(overview.contains("src=\"/admin/q/assets/app-"));
    assert!(!overview.contains("href=\"/queues/"));
    let fragment = get(&app, "/admin/q/fragments/overview")
        .await
        .expect(StatusCode::OK)
        .text();
    assert!(fragment.contains("href=\"/admin/q/queues/emails\""));
    let job = get(&app, &format!("/admin/q{}", job_path(demo::DEAD_JOB)))
        .await
        .expect(StatusCode::OK);
    let text = job.text();
    assert!(text.contains("action=\"/admin/q/queues/emails/actions\""));
    assert!(text.contains("href=\"/admin/q\""), "the home link");
    let t = job.token();
    let done = Post::new(
        "/admin/q/queues/emails/actions",
        &t,
        &[("action", "retry"), ("id", demo::DEAD_JOB)],
    )
    .send(&app)
    .await
    .expect(StatusCode::SEE_OTHER);
    assert!(done
        .header("location")
        .unwrap()
        .starts_with("/admin/q/queues/emails/jobs/"));
    let missing = get(&app, "/admin/q/queues/nope")
        .await
        .expect(StatusCode::NOT_FOUND);
    assert!(missing.text().contains("href=\"/admin/q\""));
    let nowhere = get(&app, "/admin/q/no/such/page")
        .await
        .expect(StatusCode::NOT_FOUND);
    assert!(
        nowhere.text().contains("href=\"/admin/q\""),
        "{}",
        nowhere.text()
    );

    // Read-only queues are recognised under the prefix too.
    let guarded = Router::new().nest(
        "/admin/q",
        dashboard(store.clone())
            .read_only_queue(demo::QUEUE)
            .router(),
    );
    Post::new("/admin/q/queues/emails/actions", &t, &[("action", "pause")])
        .send(&guarded)
        .await
        .expect(StatusCode::FORBIDDEN);
    assert!(!store.stats(&queue(), NOW, 0).await.unwrap().paused);
}

#[tokio::test]
async fn bulk_actions_need_their_confirmation() {
    let store = demo_store().await;
    let app = dashboard(store.clone()).router();
    let t = token(&app).await;
    let dead_before = store.stats(&queue(), NOW, 0).await.unwrap().dead;
    assert_eq!(dead_before, 2);

    let confirm = Post::new("/queues/emails/actions", &t, &[("action", "retry-all")])
        .send(&app)
        .await
        .expect(StatusCode::OK)
        .text();
    assert!(confirm.contains("type=\"checkbox\"") && confirm.contains("Confirm"));
    assert_eq!(
        store.stats(&queue(), NOW, 0).await.unwrap().dead,
        2,
        "nothing moved yet"
    );

    let done = Post::new(
        "/queues/emails/actions",
        &t,
        &[("action", "retry-all"), ("confirm", "yes")],
    )
    .send(&app)
    .await
    .expect(StatusCode::SEE_OTHER);
    assert!(done
        .header("location")
        .unwrap()
        .contains("notice=retried&n=2"));
    assert_eq!(store.stats(&queue(), NOW, 0).await.unwrap().dead, 0);

    Post::new(
        "/queues/emails/actions",
        &t,
        &[("action", "run-all"), ("confirm", "yes")],
    )
    .send(&app)
    .await
    .expect(StatusCode::SEE_OTHER);
    assert_eq!(store.stats(&queue(), NOW, 0).await.unwrap().scheduled, 0);
}

#[tokio::test]
async fn single_job_actions_pause_and_consumers() {
    let store = demo_store().await;
    let app = dashboard(store.clone()).router();
    let t = token(&app).await;
    let post = |fields: Vec<(&'static str, &'static str)>| {
        let app = app.clone();
        let t = t.clone();
        async move {
            Post::new("/queues/emails/actions", &t, &fields)
                .send(&app)
                .await
        }
    };

    post(vec![("action", "run"), ("id", demo::SCHEDULED_JOB)])
        .await
        .expect(StatusCode::SEE_OTHER);
    assert_eq!(
        state_of(store.as_ref(), demo::SCHEDULED_JOB).await,
        Some(JobState::Active)
    );

    post(vec![("action", "delete"), ("id", demo::JSON_JOB)])
        .await
        .expect(StatusCode::SEE_OTHER);
    assert_eq!(state_of(store.as_ref(), demo::JSON_JOB).await, None);

    // In flight: no delete button, and a forged delete leaves it.
    let live = get(&app, &job_path(demo::LIVE_JOB)).await.text();
    assert!(!live.contains("value=\"delete\""));
    let kept = post(vec![("action", "delete"), ("id", demo::LIVE_JOB)])
        .await
        .expect(StatusCode::SEE_OTHER);
    assert!(kept
        .header("location")
        .unwrap()
        .contains("notice=in-flight"));
    assert_eq!(
        state_of(store.as_ref(), demo::LIVE_JOB).await,
        Some(JobState::InFlight)
    );

    post(vec![("action", "pause")])
        .await
        .expect(StatusCode::SEE_OTHER);
    assert!(store.stats(&queue(), NOW, 0).await.unwrap().paused);
    post(vec![("action", "resume")])
        .await
        .expect(StatusCode::SEE_OTHER);
    assert!(!store.stats(&queue(), NOW, 0).await.unwrap().paused);

    // Only the expired consumer is offered for removal; removing it requeues its jobs.
    let page = get(&app, "/queues/emails/consumers").await.text();
    assert!(page.contains(&format!(
        "name=\"consumer\" value=\"{}\"",
        demo::EXPIRED_CONSUMER
    )));
    assert!(!page.contains(&format!(
        "name=\"consumer\" value=\"{}\"",
        demo::LIVE_CONSUMER
    )));
    let live_removal = post(vec![
        ("action", "remove-consumer"),
        ("consumer", demo::LIVE_CONSUMER),
    ])
    .await;
    assert!(live_removal
        .header("location")
        .unwrap()
        .contains("notice=kept"));
    let removed = post(vec![
        ("action", "remove-consumer"),
        ("consumer", demo::EXPIRED_CONSUMER),
    ])
    .await
    .expect(StatusCode::SEE_OTHER);
    assert!(removed
        .header("location")
        .unwrap()
        .contains("notice=removed&n=2"));
    assert_eq!(
        state_of(store.as_ref(), "stuck-erin").await,
        Some(JobState::Active)
    );
    let ids: Vec<String> = store
        .consumers(&queue())
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, vec![demo::LIVE_CONSUMER.to_owned()]);

    post(vec![("action", "explode")])
        .await
        .expect(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_failing_store_gets_an_error_page() {
    let server = RedisServer::start().expect("redis-server starts");
    let backend = Arc::new(RedisBackend::connect(&server.url()).await.unwrap());
    // A key of the wrong type: Redis answers WRONGTYPE.
    server.command(&["SET", "broken:active", "x"]).unwrap();
    let app = dashboard(backend).router();
    let answer = get(&app, "/queues/broken")
        .await
        .expect(StatusCode::BAD_GATEWAY);
    assert!(answer.text().contains("WRONGTYPE"), "{}", answer.text());
    drop(server);
    let answer = get(&app, "/").await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.text()
    );
    assert!(answer.text().contains("unavailable"));
}
