//! `curlyq web` as a process: it prints its address, serves the dashboard, asks for the
//! password it was given, stops on SIGINT, and refuses unsafe option sets.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Longest the server may take to start, answer or stop.
const LIMIT: Duration = Duration::from_secs(30);

/// A running `curlyq web`, killed if the test ends first.
struct Server {
    child: Option<Child>,
    url: String,
    stderr: mpsc::Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn start(args: &[&str], password: Option<&str>) -> Server {
    let mut command = Command::new(env!("CARGO_BIN_EXE_curlyq"));
    command
        .arg("web")
        .args(args)
        .env_remove("REDIS_URL")
        .env_remove("CURLYQ_WEB_PASSWORD")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(p) = password {
        command.env("CURLYQ_WEB_PASSWORD", p);
    }
    let mut child = command.spawn().expect("the binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let (line_tx, line_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let _ = line_tx.send(first);
        for _ in lines {}
    });
    let (err_tx, err_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        let _ = err_tx.send(s);
    });
    let first = line_rx
        .recv_timeout(LIMIT)
        .expect("a first line within the limit");
    let url = first
        .strip_prefix("curlyq web: serving on ")
        .unwrap_or_else(|| panic!("the first line names the address: {first:?}"))
        .to_owned();
    Server {
        child: Some(child),
        url,
        stderr: err_rx,
    }
}

impl Server {
    /// `GET path` over a plain TCP connection; the status line and the whole answer.
    fn get(&self, path: &str, headers: &[(&str, &str)]) -> (String, String) {
        let authority = self
            .url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let mut stream = TcpStream::connect(&authority).expect("the server accepts");
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        let mut request =
            format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("a whole answer");
        let status = answer.lines().next().unwrap_or_default().to_owned();
        (status, answer)
    }

    /// Sends SIGINT (as Ctrl-C does) and waits for the exit.
    fn interrupt(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        let sent = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        let status = rx
            .recv_timeout(LIMIT)
            .expect("the server stops within the limit")
            .expect("wait");
        let stderr = self.stderr.recv_timeout(LIMIT).unwrap_or_default();
        (status, stderr)
    }
}

/// Runs `curlyq web ...` that must refuse to start; its exit code and stderr.
fn refused(args: &[&str], password: Option<&str>) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_curlyq"));
    command
        .arg("web")
        .args(args)
        .env_remove("REDIS_URL")
        .env_remove("CURLYQ_WEB_PASSWORD")
        .stdin(Stdio::null());
    if let Some(p) = password {
        command.env("CURLYQ_WEB_PASSWORD", p);
    }
    let out = command.output().expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_demo_serves_on_a_free_port_and_stops_on_sigint() {
    let server = start(&["--demo", "--listen", "127.0.0.1:0"], None);
    assert!(server.url.starts_with("http://127.0.0.1:") && server.url.ends_with('/'));
    assert!(
        !server.url.ends_with(":0/"),
        "the real port is printed: {}",
        server.url
    );
    let (status, page) = server.get("/", &[]);
    assert_eq!(status, "HTTP/1.1 200 OK", "{page}");
    assert!(page.contains("href=\"/queues/emails\""), "{page}");
    assert!(page
        .to_ascii_lowercase()
        .contains("content-security-policy: default-src 'none'"));
    let (status, job) = server.get("/queues/emails/jobs/xss-probe", &[]);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(job.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let (code, stderr) = server.interrupt();
    assert!(code.success(), "a graceful stop: {code:?} {stderr}");
    assert!(stderr.contains("stopped"), "{stderr}");
}

#[test]
fn a_user_gets_basic_auth_with_the_password_of_the_environment() {
    let server = start(
        &["--demo", "--listen", "127.0.0.1:0", "--user", "ops"],
        Some("pw"),
    );
    let (status, answer) = server.get("/", &[]);
    assert_eq!(status, "HTTP/1.1 401 Unauthorized");
    assert!(answer
        .to_ascii_lowercase()
        .contains("www-authenticate: basic realm=\"curlyq\""));
    // "ops:pw"
    let (status, _) = server.get("/", &[("Authorization", "Basic b3BzOnB3")]);
    assert_eq!(status, "HTTP/1.1 200 OK");
    let (status, _) = server.get("/", &[("Authorization", "Basic b3BzOnB4")]);
    assert_eq!(status, "HTTP/1.1 401 Unauthorized");
}

#[test]
fn metrics_serve_the_queue_gauges_in_prometheus_text() {
    let server = start(&["--demo", "--listen", "127.0.0.1:0"], None);
    let (status, answer) = server.get("/metrics", &[]);
    assert_eq!(status, "HTTP/1.1 200 OK");
    let gauge = |name: &str, state: Option<&str>| {
        answer
            .lines()
            .find(|l| {
                l.starts_with(&format!("{name}{{"))
                    && l.contains("messaging_destination_name=\"emails\"")
                    && l.contains("messaging_system=\"curlyq\"")
                    && state.is_none_or(|s| l.contains(&format!("state=\"{s}\"")))
            })
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or_else(|| panic!("no {name} {state:?} for emails in {answer}"))
            .to_owned()
    };
    // The demo's queue `emails`: two dead jobs, three in flight, two consumers, not paused.
    assert_eq!(gauge("curlyq_queue_jobs", Some("dead")), "2");
    assert_eq!(gauge("curlyq_queue_jobs", Some("inflight")), "3");
    assert_eq!(gauge("curlyq_queue_consumers", None), "2");
    assert_eq!(gauge("curlyq_queue_paused", None), "0");
    assert!(answer.contains("messaging_destination_name=\"{reports}\""));
}

#[test]
fn metrics_ask_for_the_user_too() {
    let server = start(
        &["--demo", "--listen", "127.0.0.1:0", "--user", "ops"],
        Some("pw"),
    );
    let (status, _) = server.get("/metrics", &[]);
    assert_eq!(status, "HTTP/1.1 401 Unauthorized");
    let (status, answer) = server.get("/metrics", &[("Authorization", "Basic b3BzOnB3")]);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(answer.contains("curlyq_queue_jobs{"));
}

#[test]
fn a_read_only_server_offers_no_action() {
    let server = start(&["--demo", "--listen", "127.0.0.1:0", "--read-only"], None);
    let (status, page) = server.get("/queues/emails?state=dead", &[]);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(page.contains("bounce-ada") && !page.contains("method=\"post\""));
}

#[test]
fn unsafe_or_incomplete_options_are_refused() {
    let (code, stderr) = refused(&["--demo", "--listen", "0.0.0.0:0"], None);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--insecure-no-auth") && stderr.contains("--user"),
        "{stderr}"
    );

    let (code, stderr) = refused(
        &["--demo", "--listen", "127.0.0.1:0", "--user", "ops"],
        None,
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("CURLYQ_WEB_PASSWORD"), "{stderr}");

    let (code, stderr) = refused(&["--password", "x"], None);
    assert_eq!(code, 2, "no password argument exists: {stderr}");

    // Without --demo it needs Redis: an unreachable one is an error (exit 1).
    let (code, stderr) = refused(
        &["--listen", "127.0.0.1:0", "--url", "redis://127.0.0.1:1/"],
        None,
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("cannot reach Redis"), "{stderr}");
    assert!(!stderr.contains("panicked"));
}
