//! `curlyq web`: the dashboard of `curlyq-web`, served until Ctrl-C (or SIGTERM).

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use curlyq_core::{ConsumerId, QueueBackend, QueueName, Registration};
use curlyq_web::{basic_auth, demo, Access, Dashboard};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};

use crate::cli::WebArgs;
use crate::Failure;

/// The environment variable that holds the `--user`'s password.
pub const PASSWORD_ENV: &str = "CURLYQ_WEB_PASSWORD";

/// How often the demo's live consumer heartbeats, so that it stays live.
const DEMO_HEARTBEAT: Duration = Duration::from_secs(20);

/// What the options ask for, checked before anything is started (no `Debug`: it holds
/// the password).
pub(crate) struct Plan {
    /// `(user, password)` for Basic authentication.
    credentials: Option<(String, String)>,
    /// A warning to print before serving.
    warning: Option<String>,
}

/// Checks the options: the password comes from [`PASSWORD_ENV`] (`password_env` is its
/// value), a non-loopback address needs a user or `--insecure-no-auth`.
pub(crate) fn plan(args: &WebArgs, password_env: Option<String>) -> Result<Plan, Failure> {
    let credentials = match &args.user {
        Some(user) => match password_env {
            Some(password) if !password.is_empty() => Some((user.clone(), password)),
            _ => {
                return Err(Failure::Usage(format!(
                    "--user {user} needs a password in the environment variable {PASSWORD_ENV} \
                     (it is never taken from an argument)"
                )))
            }
        },
        None => None,
    };
    let loopback = args.listen.ip().is_loopback();
    let warning = if loopback {
        None
    } else if credentials.is_none() && !args.insecure_no_auth {
        return Err(Failure::Usage(format!(
            "--listen {} is not a loopback address: give --user (with {PASSWORD_ENV}) so that \
             the dashboard asks for a password, or --insecure-no-auth to serve it to anyone \
             who can reach the address",
            args.listen
        )));
    } else if credentials.is_none() {
        Some(format!(
            "serving on {} without authentication: anyone who can reach it can change the queues",
            args.listen
        ))
    } else {
        Some(format!(
            "serving on {} over plain HTTP: the password crosses the network readable; put a \
             TLS proxy in front",
            args.listen
        ))
    };
    Ok(Plan {
        credentials,
        warning,
    })
}

/// The dashboard the options describe.
pub(crate) fn dashboard(args: &WebArgs, plan: &Plan, backend: Arc<dyn QueueBackend>) -> Dashboard {
    let mut dashboard = Dashboard::new(backend)
        .read_only(args.read_only)
        .consumer_timeout(args.consumer_timeout);
    for queue in &args.read_only_queue {
        dashboard = dashboard.read_only_queue(queue.clone());
    }
    if let Some((user, password)) = &plan.credentials {
        dashboard = dashboard.authorize(basic_auth(user.clone(), password.clone()));
    }
    dashboard
}

/// Who may read `/metrics`: everyone, or the `--user` of Basic authentication.
type MetricsAuth =
    Arc<dyn Fn(&axum::http::request::Parts) -> Result<Access, Response> + Send + Sync>;

/// What `/metrics` serves from: the store and a Prometheus recorder of its own (not the
/// process-wide one, so that several servers can live in one process, as in tests).
struct MetricsRoute {
    backend: Arc<dyn QueueBackend>,
    recorder: PrometheusRecorder,
    auth: Option<MetricsAuth>,
}

/// Every route the server answers: the dashboard's, and `/metrics` (the queue gauges of
/// `curlyq_core::telemetry`, read fresh from the admin stats at each scrape, in
/// Prometheus text), behind the same Basic authentication when there is a user.
pub(crate) fn app(dashboard: Dashboard, plan: &Plan, backend: Arc<dyn QueueBackend>) -> Router {
    let auth = plan.credentials.as_ref().map(|(user, password)| {
        Arc::new(basic_auth(user.clone(), password.clone())) as MetricsAuth
    });
    let route = Arc::new(MetricsRoute {
        backend,
        recorder: PrometheusBuilder::new().build_recorder(),
        auth,
    });
    Router::new()
        .route("/metrics", get(metrics_text).with_state(route))
        .merge(dashboard.router())
}

/// `GET /metrics`: every queue's gauges (sizes by state, latency, consumers, paused).
async fn metrics_text(State(route): State<Arc<MetricsRoute>>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    if let Some(auth) = &route.auth {
        if let Err(refused) = auth(&parts) {
            return refused;
        }
    }
    let now = curlyq_core::unix_seconds(std::time::SystemTime::now());
    let failed = |e: curlyq_core::BackendError| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("curlyq web: cannot read the queues' stats: {e}\n"),
        )
            .into_response()
    };
    let queues = match route.backend.list_queues().await {
        Ok(queues) => queues,
        Err(e) => return failed(e),
    };
    let mut all = Vec::with_capacity(queues.len());
    for queue in queues {
        match route.backend.stats(&queue, now, 0).await {
            Ok(stats) => all.push((queue, stats)),
            Err(e) => return failed(e),
        }
    }
    metrics::with_local_recorder(&route.recorder, || {
        for (queue, stats) in &all {
            curlyq_core::telemetry::record_queue_stats(queue, stats, now);
        }
    });
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        route.recorder.handle().render(),
    )
        .into_response()
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Keeps the demo's live consumer heartbeating, so that it does not expire while the
/// demo runs.
fn keep_demo_consumer_live(backend: Arc<dyn QueueBackend>) {
    tokio::spawn(async move {
        let Ok(queue) = QueueName::new(demo::QUEUE) else {
            return;
        };
        let consumer = ConsumerId::from_string(demo::LIVE_CONSUMER);
        loop {
            tokio::time::sleep(DEMO_HEARTBEAT).await;
            let now = curlyq_core::unix_seconds(std::time::SystemTime::now());
            // A removed consumer stays removed (the heartbeat does not rejoin).
            if !matches!(
                backend
                    .register(&queue, &consumer, now, Registration::Heartbeat)
                    .await,
                Ok(true)
            ) {
                return;
            }
        }
    });
}

/// Serves until a signal; prints `curlyq web: serving on http://ADDR/` first.
pub(crate) async fn run(
    args: WebArgs,
    url: &str,
    redacted: &str,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    let plan = plan(&args, std::env::var(PASSWORD_ENV).ok())?;
    let backend: Arc<dyn QueueBackend> = if args.demo {
        let now = curlyq_core::unix_seconds(std::time::SystemTime::now());
        let store = demo::demo_backend(now)
            .await
            .map_err(|e| Failure::Error(format!("cannot seed the demo store: {e}")))?;
        let backend: Arc<dyn QueueBackend> = Arc::new(store);
        keep_demo_consumer_live(backend.clone());
        backend
    } else {
        crate::connect(url, redacted).await?
    };
    let listener = bind(args.listen).await?;
    let addr = listener
        .local_addr()
        .map_err(|e| Failure::Error(format!("cannot read the address listened on: {e}")))?;
    if let Some(warning) = &plan.warning {
        let _ = writeln!(err, "warning: {warning}");
    }
    let _ = writeln!(out, "curlyq web: serving on http://{addr}/");
    if args.demo {
        let _ = writeln!(
            out,
            "curlyq web: demo data in memory (no Redis); Ctrl-C stops"
        );
    } else {
        let _ = writeln!(out, "curlyq web: queues of {redacted}; Ctrl-C stops");
    }
    let _ = out.flush();
    let app = app(dashboard(&args, &plan, backend.clone()), &plan, backend);
    curlyq_web::serve(listener, app, shutdown_signal())
        .await
        .map_err(|e| Failure::Error(format!("the web server failed: {e}")))?;
    let _ = writeln!(err, "curlyq web: stopped");
    Ok(())
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, Failure> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        Failure::Error(format!(
            "cannot listen on {addr}: {e} (is another server on that port? --listen picks another)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(line: &[&str]) -> WebArgs {
        let mut all = vec!["curlyq", "web"];
        all.extend_from_slice(line);
        match crate::Cli::try_parse_from(all).unwrap().command {
            crate::Command::Web(args) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn loopback_needs_nothing() {
        let plan = plan(&args(&[]), None).unwrap();
        assert!(plan.credentials.is_none() && plan.warning.is_none());
        let v6 = plan_of(&["--listen", "[::1]:9000"], None);
        assert!(v6.unwrap().warning.is_none());
    }

    fn plan_of(line: &[&str], env: Option<&str>) -> Result<Plan, Failure> {
        plan(&args(line), env.map(str::to_owned))
    }

    #[test]
    fn a_user_needs_the_password_variable() {
        assert!(
            matches!(plan_of(&["--user", "ops"], None), Err(Failure::Usage(m)) if m.contains(PASSWORD_ENV))
        );
        assert!(matches!(
            plan_of(&["--user", "ops"], Some("")),
            Err(Failure::Usage(_))
        ));
        let plan = plan_of(&["--user", "ops"], Some("pw")).unwrap();
        assert_eq!(plan.credentials, Some(("ops".into(), "pw".into())));
    }

    #[test]
    fn a_public_address_needs_a_user_or_the_insecure_flag() {
        let open = ["--listen", "0.0.0.0:8080"];
        assert!(
            matches!(plan_of(&open, None), Err(Failure::Usage(m)) if m.contains("--insecure-no-auth"))
        );
        let insecure = plan_of(&["--listen", "0.0.0.0:8080", "--insecure-no-auth"], None).unwrap();
        assert!(insecure.warning.unwrap().contains("without authentication"));
        let with_user =
            plan_of(&["--listen", "0.0.0.0:8080", "--user", "ops"], Some("pw")).unwrap();
        assert!(with_user.warning.unwrap().contains("TLS"));
    }
}
