//! Security: an ACL user with a password, TLS with a certificate made by the test; a
//! wrong password and an untrusted certificate are clear errors; the password never
//! shows in logs, `Debug` output or error messages.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use curlyq::backend::QueueBackend;
use curlyq::{BackendError, Consumer, Job, Producer};
use curlyq_redis_rs::RedisBackend;
use curlyq_testkit::RedisServer;

const PASSWORD: &str = "Acl-S3cret-pa55w0rd";
const LIMIT: Duration = Duration::from_secs(20);

/// Everything `tracing` writes, kept in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// Display and Debug of an error and of all its sources.
fn all_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = format!("{err}\n{err:?}\n");
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(&format!("{s}\n{s:?}\n"));
        source = s.source();
    }
    out
}

/// Runs one job through a consumer on `backend`; returns when it was handled.
async fn one_job(backend: Arc<dyn QueueBackend>, queue: &str, fault: impl FnOnce()) {
    let producer = Producer::new(backend.clone(), queue).unwrap();
    producer.perform(Job::new("hello")).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let done = Arc::new(tokio::sync::Notify::new());
    let d = done.clone();
    let consumer = Consumer::builder(queue)
        .poller_poll_duration(Duration::from_secs(1))
        .build(backend)
        .unwrap();
    let run = tokio::spawn(async move {
        consumer
            .run(
                move |_job: Job| {
                    d.notify_one();
                    async { Ok::<(), std::io::Error>(()) }
                },
                async move {
                    let _ = rx.await;
                },
            )
            .await
    });
    tokio::time::timeout(LIMIT, done.notified()).await.unwrap();
    fault();
    // The fault may break the producer's connection mid-push: push again with the same
    // ID (the documented way; it cannot create a second job).
    let again = Job::new("again").with_id("again");
    let mut pushed = false;
    for _ in 0..20 {
        match producer.perform(again.clone()).await {
            Ok(_) | Err(curlyq::ProduceError::AlreadyExists { .. }) => {
                pushed = true;
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert!(pushed, "the producer reconnected");
    tokio::time::timeout(LIMIT, done.notified()).await.unwrap();
    let _ = tx.send(());
    tokio::time::timeout(LIMIT, run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// An ACL user with a password runs jobs; its connections being killed mid-run makes
/// the client reconnect (and log); a wrong password and a queue outside the user's keys
/// are clear errors. The password appears in no log line, no Debug or Display output and
/// no error message. (Current-thread runtime: every task logs into the captured writer.)
#[tokio::test]
async fn acl_user_and_password_never_shown() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = RedisServer::start().unwrap();
    let set = server
        .command(&[
            "ACL",
            "SETUSER",
            "worker",
            "on",
            &format!(">{PASSWORD}"),
            "~acl:*",
            "&*",
            "+@all",
        ])
        .unwrap();
    assert!(set.starts_with("+OK"), "{set}");
    let url = format!("redis://worker:{PASSWORD}@127.0.0.1:{}/0", server.port());
    let backend = Arc::new(RedisBackend::connect(&url).await.unwrap());
    let mut shown = format!("{backend}\n{backend:?}\n");
    one_job(backend.clone(), "acl", || {
        let killed = server
            .command(&["CLIENT", "KILL", "USER", "worker"])
            .unwrap();
        assert!(killed.starts_with(':'), "{killed}");
    })
    .await;

    // A queue outside the user's key pattern: refused, clearly.
    let producer = Producer::new(backend.clone(), "other").unwrap();
    let err = producer.perform(Job::new("x")).await.unwrap_err();
    let text = all_text(&err);
    assert!(text.contains("NOPERM"), "{text}");
    shown.push_str(&text);

    // A wrong password: Unavailable, saying the credentials were refused.
    let wrong = format!(
        "redis://worker:not-{PASSWORD}@127.0.0.1:{}/0",
        server.port()
    );
    let err = RedisBackend::connect(&wrong).await.unwrap_err();
    let text = all_text(&err);
    assert!(matches!(err, BackendError::Unavailable(_)), "{text}");
    assert!(
        text.contains("WRONGPASS") || text.to_lowercase().contains("auth"),
        "a clear error: {text}"
    );
    eprintln!("wrong password: {err}");
    shown.push_str(&text);
    let Err(err) = curlyq::connect(&wrong).await else {
        panic!("a wrong password connected")
    };
    shown.push_str(&all_text(&err));

    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(logs.contains("curlyq"), "the logs were captured: {logs}");
    for (what, text) in [("logs", &logs), ("output and errors", &shown)] {
        assert!(
            !text.contains(PASSWORD),
            "the password shows in the {what}:\n{text}"
        );
    }
    eprintln!(
        "{} bytes of logs and {} of output checked",
        logs.len(),
        shown.len()
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 signed by it, in `dir`.
fn make_certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=curlyq test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
}

/// TLS: `rediss://` with the test's CA as the root runs jobs (with an ACL password);
/// the same server with the default (public) roots is refused with a clear certificate
/// error, and the password does not show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_generated_certificate() {
    let certs = tempfile::tempdir().unwrap();
    make_certificates(certs.path());
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = |f: &str| certs.path().join(f).display().to_string();
    let server = RedisServer::start_with_args(&[
        "--tls-port",
        &tls_port.to_string(),
        "--tls-cert-file",
        &p("server.crt"),
        "--tls-key-file",
        &p("server.key"),
        "--tls-ca-cert-file",
        &p("ca.crt"),
        "--tls-auth-clients",
        "no",
    ])
    .unwrap();
    let set = server
        .command(&[
            "ACL",
            "SETUSER",
            "tls",
            "on",
            &format!(">{PASSWORD}"),
            "~*",
            "&*",
            "+@all",
        ])
        .unwrap();
    assert!(set.starts_with("+OK"), "{set}");
    let url = format!("rediss://tls:{PASSWORD}@127.0.0.1:{tls_port}/0");
    let ca = std::fs::read(certs.path().join("ca.crt")).unwrap();
    let client = redis::Client::build_with_tls(
        url.as_str(),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(ca),
        },
    )
    .unwrap();
    let backend = Arc::new(RedisBackend::new(
        curlyq_redis_rs::RedisTransport::from_client(client)
            .await
            .unwrap(),
    ));
    let shown = format!("{backend}\n{backend:?}");
    assert!(shown.starts_with("rediss://tls:***@127.0.0.1"), "{shown}");
    assert!(!shown.contains(PASSWORD), "{shown}");
    one_job(backend, "tls", || {}).await;

    // Not trusted: the public roots do not include the test's CA.
    let Err(err) = curlyq::connect(&url).await else {
        panic!("an untrusted certificate was accepted")
    };
    let text = all_text(&err);
    eprintln!("untrusted certificate: {err}");
    assert!(matches!(err, BackendError::Unavailable(_)), "{text}");
    assert!(
        text.to_lowercase().contains("certificate"),
        "a clear error: {text}"
    );
    assert!(!text.contains(PASSWORD), "{text}");
    // And a plain connection to the TLS port is an error, not a hang.
    let plain = format!("redis://127.0.0.1:{tls_port}/0");
    let cfg = curlyq_redis_rs::RedisConfig::default().with_response_timeout(Duration::from_secs(2));
    let started = std::time::Instant::now();
    assert!(RedisBackend::connect_with(&plain, cfg).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(10));
}
