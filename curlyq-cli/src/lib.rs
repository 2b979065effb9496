//! The `curlyq` command: inspect and operate curlyq (and Go CurlyQ) queues on Redis.
//!
//! Every command runs on a [`QueueBackend`] through its admin
//! operations, so the same code serves any backend; the binary connects to Redis with
//! `curlyq-redis-rs`. See the crate's README for each command, its table and JSON
//! output, and the exit codes.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use curlyq_core::{BackendError, QueueBackend};
use curlyq_redis_rs::{RedisBackend, RedisConfig};

mod cli;
mod commands;
mod output;
mod render;
mod web;

pub use cli::{Cli, Command, Confirm, Format, ListState, PurgeState, WebArgs};
/// The demo store of `curlyq web --demo` (a `MemoryBackend` with jobs in every state and
/// a day of counters), for tests; see [`curlyq_web::demo`].
pub use curlyq_web::demo::demo_backend;
pub use web::PASSWORD_ENV;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: an error (Redis unreachable, an unknown job, a key of the wrong type...).
pub const EXIT_ERROR: u8 = 1;
/// Exit code: a usage error (bad arguments, or a destructive command without `--yes` or
/// `--dry-run`).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: `check` found problems (after `--repair`: problems remain).
pub const EXIT_PROBLEMS: u8 = 3;

/// Why a command did not succeed.
#[derive(Debug)]
pub enum Failure {
    /// Bad arguments (exit 2).
    Usage(String),
    /// The command failed (exit 1).
    Error(String),
    /// The command ran and printed its report, which says something is wrong (exit code
    /// given: 1 for IDs not acted on, 3 for check problems).
    Reported(u8),
}

impl Failure {
    /// The exit code.
    pub fn code(&self) -> u8 {
        match self {
            Failure::Usage(_) => EXIT_USAGE,
            Failure::Error(_) => EXIT_ERROR,
            Failure::Reported(code) => *code,
        }
    }
}

/// The message for a backend error, telling the operator what to do; `url` is already
/// redacted.
pub(crate) fn backend_failure(err: BackendError, url: &str) -> Failure {
    let message = match &err {
        BackendError::Unavailable(e) => format!(
            "cannot reach Redis at {url}: {e}; check --url (or REDIS_URL) and that the server is running"
        ),
        BackendError::Rejected(e) if e.contains("WRONGTYPE") => format!(
            "Redis refused the operation: {e}; a key of this queue holds the wrong type (is it a curlyq/CurlyQ queue? `redis-cli TYPE <key>` shows which)"
        ),
        BackendError::Rejected(e) => format!("Redis refused the operation: {e}"),
        BackendError::Unsupported(op) => format!(
            "this backend does not support the {op} operation yet; use a curlyq-redis-rs with the admin API"
        ),
        other => format!("{other}"),
    };
    Failure::Error(message)
}

/// Where a command writes, and how.
pub(crate) struct Ctx<'a> {
    pub(crate) backend: Arc<dyn QueueBackend>,
    pub(crate) format: Format,
    pub(crate) out: &'a mut dyn Write,
    pub(crate) err: &'a mut dyn Write,
    /// Whether stderr is a terminal (progress bars).
    pub(crate) progress: bool,
    /// Whether stdout is a terminal (`stats --watch` clears the screen).
    pub(crate) tty_out: bool,
    /// The URL, password hidden.
    pub(crate) url: String,
}

/// Runs the command line of this process and returns its exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with 0; errors to stderr with 2.
            let _ = e.print();
            return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let code = runtime.block_on(run(cli));
    ExitCode::from(code)
}

/// Checks the arguments, connects, runs the command; prints errors to stderr and returns
/// the exit code.
pub async fn run(cli: Cli) -> u8 {
    let url = curlyq_lua::redact_url(&cli.url);
    let mut stderr = std::io::stderr();
    if let Err(f) = commands::validate(&cli.command) {
        report(&mut stderr, &f);
        return f.code();
    }
    // The dashboard connects by itself, or not at all (--demo).
    if let Command::Web(args) = cli.command {
        let mut stdout = std::io::stdout();
        return match web::run(args, &cli.url, &url, &mut stdout, &mut stderr).await {
            Ok(()) => EXIT_OK,
            Err(f) => {
                report(&mut stderr, &f);
                f.code()
            }
        };
    }
    let backend = match connect(&cli.url, &url).await {
        Ok(backend) => backend,
        Err(f) => {
            report(&mut stderr, &f);
            return f.code();
        }
    };
    let mut stdout = std::io::stdout().lock();
    let tty_out = stdout.is_terminal();
    let mut err_out = std::io::stderr();
    // A bar only for a person at a terminal: not when stdout goes to a file or a pipe
    // (a script), nor when stderr does.
    let progress = tty_out && err_out.is_terminal();
    let mut ctx = Ctx {
        backend,
        format: cli.output,
        out: &mut stdout,
        err: &mut err_out,
        progress,
        tty_out,
        url,
    };
    let result = commands::execute(&mut ctx, cli.command).await;
    let _ = ctx.out.flush();
    match result {
        Ok(()) => EXIT_OK,
        Err(f) => {
            report(&mut stderr, &f);
            f.code()
        }
    }
}

/// Connects to the Redis server of `url` (`redacted`: the same without its password).
pub(crate) async fn connect(url: &str, redacted: &str) -> Result<Arc<dyn QueueBackend>, Failure> {
    let config = RedisConfig::default()
        .with_connection_timeout(Duration::from_secs(5))
        .with_response_timeout(Duration::from_secs(30))
        .with_reconnect_retries(1);
    match RedisBackend::connect_with(url, config).await {
        Ok(b) => Ok(Arc::new(b)),
        Err(e) => Err(backend_failure(e, redacted)),
    }
}

fn report(err: &mut dyn Write, f: &Failure) {
    match f {
        Failure::Usage(m) => {
            let _ = writeln!(err, "error: {m}");
        }
        Failure::Error(m) => {
            let _ = writeln!(err, "error: {m}");
        }
        Failure::Reported(_) => {}
    }
}
