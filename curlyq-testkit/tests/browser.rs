//! Self-tests of `curlyq_testkit::browser` against tiny pages that a server in this file
//! serves on 127.0.0.1. Without Chromium they are skipped, or fail where `CI` is set (see
//! the module docs).

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use curlyq_testkit::browser::{Browser, BrowserError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The longest any one test may take, launch included.
const TEST_LIMIT: Duration = Duration::from_secs(120);

/// How long a test waits for something the page does.
const WAIT: Duration = Duration::from_secs(10);

const CSP_SELF: &str = "script-src 'self'";

/// One response of the test server.
struct Reply {
    status: &'static str,
    content_type: &'static str,
    csp: Option<&'static str>,
    body: String,
}

fn html(csp: Option<&'static str>, body: &str) -> Reply {
    Reply {
        status: "200 OK",
        content_type: "text/html; charset=utf-8",
        csp,
        // An empty icon, so that the browser does not ask for /favicon.ico.
        body: format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>t</title>\
             <link rel=\"icon\" href=\"data:,\"></head><body>{body}</body></html>"
        ),
    }
}

fn script(body: &str) -> Reply {
    Reply {
        status: "200 OK",
        content_type: "text/javascript",
        csp: None,
        body: body.to_owned(),
    }
}

/// The pages, by method and path. `form` is the decoded body of a POST.
fn route(method: &str, path: &str, form: &HashMap<String, String>) -> Reply {
    match (method, path) {
        ("GET", "/clean") => html(
            Some(CSP_SELF),
            "<h1 id=\"title\">All quiet</h1><p>Nothing here.</p>",
        ),
        ("GET", "/console-error") => html(
            Some(CSP_SELF),
            "<p id=\"p\">logging</p><script src=\"/console-error.js\"></script>",
        ),
        ("GET", "/console-error.js") => script("console.error('boom from console.error');"),
        ("GET", "/exception") => html(
            Some(CSP_SELF),
            "<p>throwing</p><script src=\"/throw.js\"></script>",
        ),
        ("GET", "/throw.js") => script("throw new Error('boom uncaught');"),
        ("GET", "/inline") => html(
            Some(CSP_SELF),
            "<p id=\"state\">inline blocked</p>\
             <script>document.getElementById('state').textContent = 'inline ran';</script>",
        ),
        ("GET", "/form") => html(
            Some(CSP_SELF),
            "<form method=\"post\" action=\"/greet\">\
             <label>Name <input id=\"name\" name=\"name\" value=\"placeholder\"></label>\
             <button id=\"send\" type=\"submit\">Send</button></form>",
        ),
        ("POST", "/greet") => {
            let name = form.get("name").map(String::as_str).unwrap_or("nobody");
            let name = name.replace('&', "&amp;").replace('<', "&lt;");
            html(
                Some(CSP_SELF),
                &format!("<p id=\"greeting\">Hello, {name}!</p>"),
            )
        }
        ("GET", "/scripted-form") => html(
            Some(CSP_SELF),
            "<form id=\"f\"><input id=\"q\" name=\"q\"></form>\
             <p id=\"result\">waiting</p><script src=\"/scripted-form.js\"></script>",
        ),
        ("GET", "/scripted-form.js") => script(
            "document.getElementById('f').addEventListener('submit', (event) => {\n\
               event.preventDefault();\n\
               const result = document.getElementById('result');\n\
               result.textContent = 'searched for ' + document.getElementById('q').value;\n\
               result.className = 'done';\n\
             });",
        ),
        _ => Reply {
            status: "404 Not Found",
            content_type: "text/plain",
            csp: None,
            body: format!("no page at {method} {path}"),
        },
    }
}

/// Serves `route` on a free loopback port until the test's runtime ends; returns the
/// base URL (`http://127.0.0.1:<port>`).
async fn serve() -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let base = format!("http://{}", listener.local_addr().expect("local address"));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(answer(stream));
        }
    });
    base
}

/// Reads one HTTP/1.1 request from `stream` and writes the reply (then closes).
async fn answer(mut stream: tokio::net::TcpStream) {
    let mut request = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&request[..head_end]).into_owned();
    let mut words = head.split_whitespace();
    let method = words.next().unwrap_or("").to_owned();
    let path = words.next().unwrap_or("").to_owned();
    let length: usize = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0);
    while request.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&chunk[..n]),
        }
    }
    let form = decode_form(&String::from_utf8_lossy(
        &request[head_end..head_end + length],
    ));
    let reply = route(&method, &path, &form);
    let csp = reply
        .csp
        .map(|policy| format!("Content-Security-Policy: {policy}\r\n"))
        .unwrap_or_default();
    let response = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{csp}Connection: close\r\n\r\n{}",
        reply.status,
        reply.content_type,
        reply.body.len(),
        reply.body
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Decodes `application/x-www-form-urlencoded` (`a=1&b=x+y%21`).
fn decode_form(body: &str) -> HashMap<String, String> {
    let decode = |text: &str| {
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                    match u8::from_str_radix(hex, 16) {
                        Ok(byte) => {
                            out.push(byte);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                byte => out.push(byte),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    body.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

/// Runs one test's body with a browser and the server, at most [`TEST_LIMIT`]; returns
/// early (skipped) without Chromium unless `CI` is set.
async fn with_browser<F, Fut>(body: F)
where
    F: FnOnce(Browser, String) -> Fut,
    Fut: Future<Output = Result<(), BrowserError>>,
{
    let run = async {
        let Some(browser) = Browser::launch_or_skip().await else {
            return Ok(());
        };
        let base = serve().await;
        body(browser, base).await
    };
    match tokio::time::timeout(TEST_LIMIT, run).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{e}"),
        Err(_) => panic!("the test took longer than {TEST_LIMIT:?}"),
    }
}

/// A page with no script problem has no console errors; text, HTML and URL read back.
#[tokio::test]
async fn clean_page_has_no_console_errors() {
    with_browser(|browser, base| async move {
        browser.goto(&format!("{base}/clean")).await?;
        assert_eq!(browser.console_errors().await?, Vec::<String>::new());
        assert_eq!(browser.text("#title").await?, "All quiet");
        assert!(browser.html().await?.contains("<p>Nothing here.</p>"));
        assert_eq!(browser.current_url().await?, format!("{base}/clean"));
        Ok(())
    })
    .await;
}

/// `console.error` from a script the CSP allows is collected.
#[tokio::test]
async fn console_error_is_collected() {
    with_browser(|browser, base| async move {
        browser.goto(&format!("{base}/console-error")).await?;
        let errors = browser.console_errors().await?;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("[console-api] "), "{errors:?}");
        assert!(errors[0].contains("boom from console.error"), "{errors:?}");
        Ok(())
    })
    .await;
}

/// An uncaught exception is collected.
#[tokio::test]
async fn uncaught_exception_is_collected() {
    with_browser(|browser, base| async move {
        browser.goto(&format!("{base}/exception")).await?;
        let errors = browser.console_errors().await?;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("[javascript] "), "{errors:?}");
        assert!(
            errors[0].contains("Uncaught Error: boom uncaught"),
            "{errors:?}"
        );
        Ok(())
    })
    .await;
}

/// An inline script under `script-src 'self'` is blocked and the violation collected.
#[tokio::test]
async fn inline_script_under_csp_is_a_collected_violation() {
    with_browser(|browser, base| async move {
        browser.goto(&format!("{base}/inline")).await?;
        assert_eq!(browser.text("#state").await?, "inline blocked");
        let errors = browser.console_errors().await?;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("[security] "), "{errors:?}");
        assert!(errors[0].contains("Content Security Policy"), "{errors:?}");
        Ok(())
    })
    .await;
}

/// `goto` starts a fresh list of errors: the previous page's are gone.
#[tokio::test]
async fn goto_clears_the_console_errors() {
    with_browser(|browser, base| async move {
        browser.goto(&format!("{base}/exception")).await?;
        assert_eq!(browser.console_errors().await?.len(), 1);
        browser.goto(&format!("{base}/clean")).await?;
        assert_eq!(browser.console_errors().await?, Vec::<String>::new());
        Ok(())
    })
    .await;
}

/// Fill a field, click the submit button, wait for the server's answer page.
#[tokio::test]
async fn fill_and_click_post_a_form() {
    with_browser(|browser, base| async move {
        browser.goto(&format!("{base}/form")).await?;
        browser.fill("#name", "Ada & <Lovelace>").await?;
        browser.click("#send").await?;
        browser
            .wait_for_text("Hello, Ada & <Lovelace>!", WAIT)
            .await?;
        assert_eq!(browser.current_url().await?, format!("{base}/greet"));
        assert_eq!(browser.text("#greeting").await?, "Hello, Ada & <Lovelace>!");
        assert_eq!(browser.console_errors().await?, Vec::<String>::new());
        Ok(())
    })
    .await;
}

/// `submit` runs the page's own submit handler (a script the CSP allows).
#[tokio::test]
async fn submit_runs_the_pages_handler() {
    with_browser(|browser, base| async move {
        browser.goto(&format!("{base}/scripted-form")).await?;
        browser.fill("#q", "emails").await?;
        browser.submit("#f").await?;
        browser.wait_for("#result.done", WAIT).await?;
        assert_eq!(browser.text("#result").await?, "searched for emails");
        assert_eq!(
            browser.current_url().await?,
            format!("{base}/scripted-form")
        );
        assert_eq!(browser.console_errors().await?, Vec::<String>::new());
        Ok(())
    })
    .await;
}

/// A missing element fails at once with its selector; a wait for one ends at its limit.
#[tokio::test]
async fn missing_elements_fail_with_the_selector() {
    with_browser(|browser, base| async move {
        browser.goto(&format!("{base}/clean")).await?;
        let missing = browser.click("#nowhere").await.unwrap_err();
        assert!(
            matches!(missing, BrowserError::NoSuchElement { .. }),
            "{missing}"
        );
        assert!(missing.to_string().contains("`#nowhere`"), "{missing}");
        let limit = Duration::from_millis(300);
        let started = std::time::Instant::now();
        let late = browser.wait_for("#nowhere", limit).await.unwrap_err();
        assert!(matches!(late, BrowserError::Timeout { .. }), "{late}");
        assert!(
            started.elapsed() >= limit,
            "gave up early: {:?}",
            started.elapsed()
        );
        let late = browser
            .wait_for_text("never shown", limit)
            .await
            .unwrap_err();
        assert!(late.to_string().contains("\"never shown\""), "{late}");
        Ok(())
    })
    .await;
}

/// A screenshot is a PNG of exactly the viewport: the default one, then a set one.
#[tokio::test]
async fn screenshot_is_a_png_of_the_viewport() {
    with_browser(|browser, base| async move {
        let dir = tempfile::tempdir().expect("a temporary directory");
        browser.goto(&format!("{base}/clean")).await?;
        let path = dir.path().join("default.png");
        browser.screenshot(&path).await?;
        assert_eq!(
            png_size(&std::fs::read(&path).expect("the PNG")),
            (1280, 900)
        );
        browser.set_viewport(800, 600).await?;
        let path = dir.path().join("small.png");
        browser.screenshot(&path).await?;
        assert_eq!(
            png_size(&std::fs::read(&path).expect("the PNG")),
            (800, 600)
        );
        Ok(())
    })
    .await;
}

/// Dropping the browser stops chromedriver and every Chromium process.
#[tokio::test]
async fn drop_leaves_no_process_behind() {
    with_browser(|browser, base| async move {
        browser.goto(&format!("{base}/clean")).await?;
        let dir = browser.profile_dir().to_owned();
        let group = browser.driver_pid();
        assert!(
            !processes_naming(&dir).is_empty(),
            "Chromium should be running"
        );
        drop(browser);
        assert_eq!(processes_naming(&dir), Vec::<u32>::new(), "left running");
        assert_eq!(
            processes_in_group(group),
            Vec::<u32>::new(),
            "left in the group"
        );
        assert!(!dir.exists(), "{} was not removed", dir.display());
        Ok(())
    })
    .await;
}

/// `close` ends the session and, like dropping, leaves nothing running.
#[tokio::test]
async fn close_ends_the_session() {
    with_browser(|browser, base| async move {
        browser.goto(&format!("{base}/clean")).await?;
        let dir = browser.profile_dir().to_owned();
        let group = browser.driver_pid();
        browser.close().await?;
        assert_eq!(processes_naming(&dir), Vec::<u32>::new(), "left running");
        assert_eq!(
            processes_in_group(group),
            Vec::<u32>::new(),
            "left in the group"
        );
        Ok(())
    })
    .await;
}

/// The width and height in a PNG's IHDR chunk; panics if `bytes` is no PNG.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(
        bytes.len() > 24,
        "too short for a PNG: {} bytes",
        bytes.len()
    );
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "no PNG signature");
    assert_eq!(&bytes[12..16], b"IHDR", "no IHDR chunk first");
    let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    (word(16), word(20))
}

/// Live processes (per `/proc`) whose command line contains `dir`.
fn processes_naming(dir: &std::path::Path) -> Vec<u32> {
    let needle = dir.to_str().expect("a UTF-8 temporary path");
    live_processes()
        .into_iter()
        .filter(|(pid, _)| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|line| String::from_utf8_lossy(&line).contains(needle))
        })
        .map(|(pid, _)| pid)
        .collect()
}

/// Processes (per `/proc`) in process group `group`, but for those dead already (zombies
/// waiting for init to reap them, `Z`, and the dying, `X`).
fn processes_in_group(group: u32) -> Vec<u32> {
    live_processes()
        .into_iter()
        .filter(|(_, stat)| {
            // `pid (comm) state ppid pgrp …`; comm may hold spaces and parentheses.
            let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
            let fields: Vec<&str> = after.split_whitespace().collect();
            !matches!(fields.first(), Some(&"Z") | Some(&"X"))
                && fields.get(2) == Some(&group.to_string().as_str())
        })
        .map(|(pid, _)| pid)
        .collect()
}

/// Every process in `/proc` with its `stat` line.
fn live_processes() -> Vec<(u32, String)> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            Some((pid, stat))
        })
        .collect()
}
