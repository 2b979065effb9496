#![doc = include_str!("../README.md")]

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use curlyq_core::QueueBackend;

mod assets;
mod auth;
mod chart;
pub mod demo;
mod guard;
mod links;
mod pages;
mod payload;
mod render;

pub use auth::basic_auth;
pub use demo::{demo_backend, seed_demo};

/// What a request may do, as an [`authorize`](Dashboard::authorize) hook decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Read every page and use every action (unless the dashboard or the queue is
    /// read-only).
    ReadWrite,
    /// Read every page; no action is shown and every POST is answered 403.
    ReadOnly,
}

/// The type of an [`authorize`](Dashboard::authorize) hook, shared by every request.
type AuthorizeFn = dyn Fn(&Parts) -> Result<Access, Response> + Send + Sync + 'static;

/// The type of a [`clock`](Dashboard::clock): the current time in Unix seconds.
type ClockFn = dyn Fn() -> f64 + Send + Sync + 'static;

/// The default [`consumer_timeout`](Dashboard::consumer_timeout): 120 s, the age at which
/// a Go CurlyQ (or curlyq) custodian with default options takes a consumer's jobs back
/// (heartbeat interval 1 min plus consumer timeout 1 min).
pub const DEFAULT_CONSUMER_TIMEOUT: Duration = Duration::from_secs(120);

/// The default [`payload_limit`](Dashboard::payload_limit): 64 KiB of a payload shown on a
/// job page.
pub const DEFAULT_PAYLOAD_LIMIT: usize = 64 * 1024;

/// The default [`refresh`](Dashboard::refresh) interval of the overview: 5 s.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(5);

/// The default [`page_size`](Dashboard::page_size): 50 jobs per page.
pub const DEFAULT_PAGE_SIZE: usize = 50;

/// A server-rendered dashboard over any [`QueueBackend`]: build it, then mount its
/// [`router`](Dashboard::router) in an axum application (at `/` or under a prefix with
/// [`Router::nest`]).
///
/// ```
/// use std::sync::Arc;
/// use curlyq_core::MemoryBackend;
/// use curlyq_web::{basic_auth, Dashboard};
///
/// let dashboard = Dashboard::new(Arc::new(MemoryBackend::new()))
///     .read_only_queue("payments")
///     .authorize(basic_auth("ops", "correct horse battery staple"));
/// let app: axum::Router = axum::Router::new().nest("/admin/queues", dashboard.router());
/// # drop(app);
/// ```
#[derive(Clone)]
pub struct Dashboard {
    backend: Arc<dyn QueueBackend>,
    read_only: bool,
    read_only_queues: BTreeSet<String>,
    authorize: Option<Arc<AuthorizeFn>>,
    clock: Arc<ClockFn>,
    consumer_timeout: Duration,
    payload_limit: usize,
    refresh: Duration,
    page_size: usize,
    allowed_origins: Vec<String>,
}

impl fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dashboard")
            .field("read_only", &self.read_only)
            .field("read_only_queues", &self.read_only_queues)
            .field("authorize", &self.authorize.is_some())
            .field("consumer_timeout", &self.consumer_timeout)
            .field("payload_limit", &self.payload_limit)
            .field("refresh", &self.refresh)
            .field("page_size", &self.page_size)
            .field("allowed_origins", &self.allowed_origins)
            .finish_non_exhaustive()
    }
}

impl Dashboard {
    /// A dashboard over `backend`, read-write, without authorization (mount it behind
    /// your own authentication, or add [`authorize`](Self::authorize)).
    pub fn new(backend: Arc<dyn QueueBackend>) -> Dashboard {
        Dashboard {
            backend,
            read_only: false,
            read_only_queues: BTreeSet::new(),
            authorize: None,
            clock: Arc::new(|| curlyq_core::unix_seconds(std::time::SystemTime::now())),
            consumer_timeout: DEFAULT_CONSUMER_TIMEOUT,
            payload_limit: DEFAULT_PAYLOAD_LIMIT,
            refresh: DEFAULT_REFRESH,
            page_size: DEFAULT_PAGE_SIZE,
            allowed_origins: Vec::new(),
        }
    }

    /// Makes the whole dashboard read-only (`true`): no action is rendered and every
    /// POST is answered 403.
    pub fn read_only(mut self, on: bool) -> Self {
        self.read_only = on;
        self
    }

    /// Makes one queue read-only (call again for more): its pages show no action and
    /// every POST under `/queues/<queue>/` is answered 403.
    pub fn read_only_queue(mut self, queue: impl Into<String>) -> Self {
        self.read_only_queues.insert(queue.into());
        self
    }

    /// A hook that sees every request before it is handled: `Ok(access)` lets it
    /// through with that access, `Err(response)` answers it with `response` (a 401 with
    /// `WWW-Authenticate`, a redirect to a login page...). [`basic_auth`] is one.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use axum::http::StatusCode;
    /// use axum::response::IntoResponse;
    /// use curlyq_web::{Access, Dashboard};
    ///
    /// // Behind a proxy that authenticates and names the user in a header.
    /// let dashboard = Dashboard::new(Arc::new(curlyq_core::MemoryBackend::new()))
    ///     .authorize(|parts| match parts.headers.get("x-user").and_then(|v| v.to_str().ok()) {
    ///         Some("admin") => Ok(Access::ReadWrite),
    ///         Some(_) => Ok(Access::ReadOnly),
    ///         None => Err(StatusCode::FORBIDDEN.into_response()),
    ///     });
    /// # drop(dashboard);
    /// ```
    pub fn authorize<F>(mut self, f: F) -> Self
    where
        F: Fn(&Parts) -> Result<Access, Response> + Send + Sync + 'static,
    {
        self.authorize = Some(Arc::new(f));
        self
    }

    /// The clock the pages read "now" from, in Unix seconds (latency, ages, which
    /// consumers are expired, the chart's minutes). Default: the system clock. Tests
    /// pass a fixed time.
    pub fn clock<F>(mut self, now: F) -> Self
    where
        F: Fn() -> f64 + Send + Sync + 'static,
    {
        self.clock = Arc::new(now);
        self
    }

    /// The heartbeat age after which a consumer is shown expired and may be removed
    /// (default [`DEFAULT_CONSUMER_TIMEOUT`]): set it to your consumers'
    /// heartbeat interval plus custodian consumer timeout, so that a live consumer is
    /// never offered for removal.
    pub fn consumer_timeout(mut self, timeout: Duration) -> Self {
        self.consumer_timeout = timeout;
        self
    }

    /// Most payload bytes a job page shows (default [`DEFAULT_PAYLOAD_LIMIT`]); the
    /// whole payload is always available from the download link.
    pub fn payload_limit(mut self, bytes: usize) -> Self {
        self.payload_limit = bytes.max(1);
        self
    }

    /// How often the overview refreshes itself, when JavaScript runs (default
    /// [`DEFAULT_REFRESH`], at least 1 s).
    pub fn refresh(mut self, every: Duration) -> Self {
        self.refresh = every.max(Duration::from_secs(1));
        self
    }

    /// Jobs per page on a queue's tabs (default [`DEFAULT_PAGE_SIZE`], 1 to
    /// [`MAX_PAGE`](curlyq_core::admin::MAX_PAGE)).
    pub fn page_size(mut self, jobs: usize) -> Self {
        self.page_size = jobs.clamp(1, curlyq_core::admin::MAX_PAGE);
        self
    }

    /// Accepts POSTs whose `Origin` is `origin` (such as `https://ops.example.com`) even
    /// when it differs from the request's `Host`: for a reverse proxy that rewrites
    /// `Host`. Repeatable. The CSRF token is still required.
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        self.allowed_origins
            .push(origin.into().trim_end_matches('/').to_ascii_lowercase());
        self
    }

    /// The dashboard's routes, at `/` (see the crate's README for the list), with its
    /// guard (authorization, read-only, CSRF checks and security headers) around every
    /// one of them. Mount it with [`Router::nest`] to serve it under a prefix: links
    /// follow.
    pub fn router(self) -> Router {
        let state = Arc::new(self);
        Router::new()
            .route("/", get(pages::overview))
            .route("/fragments/overview", get(pages::overview_fragment))
            .route(&assets::script_path(), get(assets::script))
            .route(&assets::style_path(), get(assets::style))
            .route("/queues/{queue}", get(pages::queue))
            .route("/queues/{queue}/find", get(pages::find))
            .route("/queues/{queue}/download", get(pages::download_by_query))
            .route("/queues/{queue}/jobs/{id}", get(pages::job))
            .route("/queues/{queue}/jobs/{id}/payload", get(pages::download))
            .route("/queues/{queue}/consumers", get(pages::consumers))
            .route("/queues/{queue}/actions", post(pages::action))
            .fallback(pages::not_found)
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                guard::guard,
            ))
            .with_state(state)
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then finishes the requests
/// under way (axum's graceful shutdown). The CLI's `curlyq web` runs through it; tests
/// bind port 0 and read the address from the listener.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// use std::sync::Arc;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// println!("serving on http://{}/", listener.local_addr()?);
/// let dashboard = curlyq_web::Dashboard::new(Arc::new(curlyq_core::MemoryBackend::new()));
/// curlyq_web::serve(listener, dashboard.router(), async {
///     let _ = tokio::signal::ctrl_c().await;
/// })
/// .await
/// # }
/// ```
pub async fn serve<F>(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
