//! The command line: clap's derive structs and the value parsers they use.

use std::time::Duration;

use clap::builder::NonEmptyStringValueParser;
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

/// Inspect and operate curlyq (and Go CurlyQ) queues on Redis.
#[derive(Debug, Parser)]
#[command(name = "curlyq", version, about, long_about = None)]
#[command(
    after_help = "Exit codes: 0 ok, 1 error, 2 usage (also a destructive command \
without --yes or --dry-run), 3 `check` found problems."
)]
pub struct Cli {
    /// The Redis server: redis://host:port/db, with user:password@ before the host for
    /// ACL users, rediss:// for TLS.
    #[arg(
        long,
        env = "REDIS_URL",
        hide_env_values = true,
        default_value = "redis://127.0.0.1:6379",
        global = true
    )]
    pub url: String,

    /// How to print results: aligned columns, one JSON document, or JSON on one line.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Table, global = true)]
    pub output: Format,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The output format (`--output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Plain aligned columns for people.
    Table,
    /// One pretty-printed JSON document.
    Json,
    /// One JSON document on one line (`stats --watch`: one line per refresh).
    Jsonl,
}

/// A state that `jobs` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListState {
    /// The active list (waiting for a consumer).
    Active,
    /// The scheduled set (due later: new scheduled jobs and retries).
    Scheduled,
    /// The dead set.
    Dead,
    /// Taken by a consumer, not finished.
    #[value(alias = "in-flight")]
    Inflight,
}

/// A state that `purge` empties.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PurgeState {
    /// The active list.
    Active,
    /// The scheduled set.
    Scheduled,
    /// The dead set.
    Dead,
}

/// `--yes` / `--dry-run`, for commands that change or delete many jobs.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct Confirm {
    /// Do it (required for bulk and destructive actions).
    #[arg(long, conflicts_with = "dry_run")]
    pub yes: bool,
    /// Change nothing; report what would happen.
    #[arg(long)]
    pub dry_run: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Lists the queues of the server (found with SCAN).
    Queues,
    /// Sizes, latency and outcome counters of one queue, or of every queue.
    Stats {
        /// The queue (default: every queue of the server).
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        queue: Option<String>,
        /// Redraw until Ctrl-C (JSON: one line per refresh).
        #[arg(long)]
        watch: bool,
        /// Time between refreshes with --watch.
        #[arg(long, default_value = "2s", value_parser = parse_duration)]
        interval: Duration,
        /// Minutes of per-minute counters to read (at most 1440).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(0..=1440))]
        minutes: u16,
    },
    /// One page of the jobs in a state, with the cursor of the next page.
    Jobs {
        /// The queue.
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        queue: String,
        /// Which jobs.
        #[arg(long, value_enum)]
        state: ListState,
        /// Most jobs on the page (at most 1000).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..=1000))]
        limit: u16,
        /// Where to start: 0, or the next cursor a previous page printed.
        #[arg(long, default_value_t = 0)]
        cursor: u64,
        /// Payload bytes to show per job (at most 4096).
        #[arg(long, default_value_t = 48, value_parser = clap::value_parser!(u16).range(0..=4096))]
        preview: u16,
    },
    /// One job: where it is, its attempt, times, reason, last error and payload.
    Job {
        /// The queue.
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        queue: String,
        /// The job's ID.
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        id: String,
        /// Most payload bytes to print.
        #[arg(long, default_value_t = 4096)]
        max_bytes: usize,
    },
    /// Moves dead jobs back to the active list.
    #[command(group(ArgGroup::new("which").required(true).args(["ids", "all", "oldest"])))]
    Retry {
        /// The queue.
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        queue: String,
        /// These dead jobs.
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        ids: Vec<String>,
        /// Every dead job (needs --yes or --dry-run).
        #[arg(long)]
        all: bool,
        /// The N oldest dead jobs (needs --yes or --dry-run).
        #[arg(long, value_name = "N")]
        oldest: Option<usize>,
        /// --yes or --dry-run.
        #[command(flatten)]
        confirm: Confirm,
    },
    /// Moves scheduled jobs to the active list now, whatever their due time.
    #[command(group(ArgGroup::new("which").required(true).args(["ids", "all"])))]
    RunNow {
        /// The queue.
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        queue: String,
        /// These scheduled jobs.
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        ids: Vec<String>,
        /// Every scheduled job (needs --yes or --dry-run).
        #[arg(long)]
        all: bool,
        /// --yes or --dry-run.
        #[command(flatten)]
        confirm: Confirm,
    },
    /// Deletes jobs (not in flight) with their data (needs --yes or --dry-run).
    Delete {
        /// The queue.
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        queue: String,
        /// The jobs.
        #[arg(required = true, value_parser = NonEmptyStringValueParser::new())]
        ids: Vec<String>,
        /// --yes or --dry-run.
        #[command(flatten)]
        confirm: Confirm,
    },
    /// Deletes every job of a state with its data (needs --yes or --dry-run).
    Purge {
        /// The queue.
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        queue: String,
        /// Which jobs.
        #[arg(long, value_enum)]
        state: PurgeState,
        /// --yes or --dry-run.
        #[command(flatten)]
        confirm: Confirm,
    },
    /// Pauses a queue: curlyq consumers take nothing until it is resumed (Go CurlyQ's
    /// consumers do not know pauses).
    Pause {
        /// The queue.
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        queue: String,
    },
    /// Resumes a paused queue.
    Resume {
        /// The queue.
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        queue: String,
    },
    /// Lists the registered consumers, or removes an expired one (--remove).
    Consumers {
        /// The queue.
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        queue: String,
        /// A consumer whose heartbeat is older than this is expired (Go CurlyQ: heartbeat
        /// 1 min + consumer timeout 1 min).
        #[arg(long, default_value = "120s", value_parser = parse_duration)]
        timeout: Duration,
        /// Removes this expired consumer and requeues its jobs (needs --yes or --dry-run).
        #[arg(long, value_name = "ID", value_parser = NonEmptyStringValueParser::new())]
        remove: Option<String>,
        /// --yes or --dry-run.
        #[command(flatten)]
        confirm: Confirm,
    },
    /// Checks a queue's invariants (dry run), or repairs what it finds (--repair).
    Check {
        /// The queue.
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        queue: String,
        /// Repairs each problem found (needs --yes or --dry-run).
        #[arg(long)]
        repair: bool,
        /// --yes or --dry-run.
        #[command(flatten)]
        confirm: Confirm,
    },
    /// Serves the web dashboard (loopback only by default; Ctrl-C stops it).
    Web(WebArgs),
    /// Adds a job (now, after a delay, or at a time).
    Enqueue {
        /// The queue.
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        queue: String,
        /// The payload: @FILE, - (standard input), or the text itself.
        #[arg(long)]
        data: String,
        /// The job's ID (default: a fresh UUID); an existing ID is refused.
        #[arg(long, value_parser = NonEmptyStringValueParser::new())]
        id: Option<String>,
        /// Run after this delay (5m, 1h 30m, 90s).
        #[arg(long = "in", value_name = "DELAY", value_parser = parse_duration, conflicts_with = "at")]
        delay: Option<Duration>,
        /// Run at this time (RFC 3339, e.g. 2030-01-02T03:04:05Z, or Unix seconds).
        #[arg(long, value_parser = parse_time)]
        at: Option<f64>,
    },
}

/// The options of `curlyq web`.
#[derive(Debug, Clone, Args)]
pub struct WebArgs {
    /// Where to listen. A non-loopback address needs --user (or --insecure-no-auth);
    /// port 0 picks a free port (the first line printed names it).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Shows no action and refuses every change.
    #[arg(long)]
    pub read_only: bool,
    /// Makes this queue read-only (repeatable).
    #[arg(long, value_name = "QUEUE", value_parser = NonEmptyStringValueParser::new())]
    pub read_only_queue: Vec<String>,
    /// Asks for HTTP Basic authentication as this user; the password is read from the
    /// environment variable CURLYQ_WEB_PASSWORD (never from an argument).
    #[arg(long, value_name = "NAME", value_parser = NonEmptyStringValueParser::new())]
    pub user: Option<String>,
    /// Allows a non-loopback --listen without --user: anyone who reaches the address
    /// can then change the queues.
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// Serves an in-memory demo store (jobs in every state, a day of counters) instead
    /// of connecting to Redis.
    #[arg(long)]
    pub demo: bool,
    /// A consumer whose heartbeat is older than this is shown expired and may be
    /// removed (Go CurlyQ: heartbeat 1 min + consumer timeout 1 min).
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub consumer_timeout: Duration,
}

/// Parses a duration: humantime's syntax (`2s`, `5m`, `1h 30m`, `250ms`) or a bare
/// number of seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| {
            format!(
                "{s:?} is not a duration: give a non-negative number of seconds or e.g. 2s, 5m, 1h"
            )
        });
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration ({e}): write e.g. 2s, 5m, 1h 30m"))
}

/// Parses a time as Unix seconds: RFC 3339 (`2030-01-02T03:04:05Z`, fractions and
/// `+02:00` style offsets allowed) or a bare number of Unix seconds.
pub(crate) fn parse_time(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let bad = || {
        format!("{s:?} is not a time: write RFC 3339 (2030-01-02T03:04:05Z, or with an offset like +02:00) or Unix seconds")
    };
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok(secs);
        }
        return Err(bad());
    }
    // Split off a numeric offset (`+HH:MM` / `-HH:MM`) after the time part.
    let (base, offset) = match s
        .len()
        .checked_sub(6)
        .and_then(|i| s.get(i..).map(|t| (i, t)))
    {
        Some((i, tail))
            if (tail.starts_with('+') || tail.starts_with('-'))
                && tail.as_bytes().get(3) == Some(&b':')
                && s.get(..i)
                    .is_some_and(|b| b.contains('T') || b.contains('t')) =>
        {
            let sign = if tail.starts_with('-') { -1.0 } else { 1.0 };
            let hours: f64 = tail[1..3].parse().map_err(|_| bad())?;
            let minutes: f64 = tail[4..6].parse().map_err(|_| bad())?;
            (
                format!("{}Z", &s[..i]),
                sign * (hours * 3600.0 + minutes * 60.0),
            )
        }
        _ => (s.to_owned(), 0.0),
    };
    let when =
        humantime::parse_rfc3339_weak(base.trim_end_matches(['Z', 'z'])).map_err(|_| bad())?;
    let unix = curlyq_core::unix_seconds(when) - offset;
    if unix < 0.0 {
        return Err(bad());
    }
    Ok(unix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("120"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn times_parse() {
        assert_eq!(parse_time("1970-01-01T00:01:00Z"), Ok(60.0));
        assert_eq!(parse_time("2030-01-02T03:04:05Z"), Ok(1_893_553_445.0));
        assert_eq!(parse_time("2030-01-02T03:04:05.5Z"), Ok(1_893_553_445.5));
        assert_eq!(parse_time("2030-01-02T05:04:05+02:00"), Ok(1_893_553_445.0));
        assert_eq!(parse_time("2030-01-02T01:04:05-02:00"), Ok(1_893_553_445.0));
        assert_eq!(parse_time("1893553445"), Ok(1_893_553_445.0));
        assert!(parse_time("tomorrow").is_err());
        assert!(parse_time("-5").is_err());
        assert!(parse_time("2030-13-02T03:04:05Z").is_err());
    }

    #[test]
    fn commands_parse() {
        let cli = Cli::try_parse_from(["curlyq", "jobs", "q", "--state", "in-flight"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Jobs {
                state: ListState::Inflight,
                limit: 50,
                cursor: 0,
                ..
            }
        ));
        let cli =
            Cli::try_parse_from(["curlyq", "-o", "json", "retry", "q", "--all", "--yes"]).unwrap();
        assert_eq!(cli.output, Format::Json);
        assert!(matches!(
            cli.command,
            Command::Retry {
                all: true,
                confirm: Confirm {
                    yes: true,
                    dry_run: false
                },
                ..
            }
        ));
        let cli = Cli::try_parse_from(["curlyq", "stats", "--output", "jsonl"]).unwrap();
        assert_eq!(cli.output, Format::Jsonl);
    }

    #[test]
    fn web_parses() {
        let cli = Cli::try_parse_from([
            "curlyq",
            "web",
            "--demo",
            "--listen",
            "127.0.0.1:0",
            "--read-only-queue",
            "a",
            "--read-only-queue",
            "{b}",
        ])
        .unwrap();
        match cli.command {
            Command::Web(args) => {
                assert!(args.demo && !args.read_only && args.user.is_none());
                assert_eq!(args.listen.port(), 0);
                assert_eq!(args.read_only_queue, vec!["a", "{b}"]);
                assert_eq!(args.consumer_timeout, Duration::from_secs(120));
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["curlyq", "web"]).unwrap();
        assert!(
            matches!(cli.command, Command::Web(WebArgs { listen, .. }) if listen.to_string() == "127.0.0.1:8080")
        );
        assert!(Cli::try_parse_from(["curlyq", "web", "--listen", "nowhere"]).is_err());
        assert!(Cli::try_parse_from(["curlyq", "web", "--password", "x"]).is_err());
    }

    #[test]
    fn bad_input_is_a_usage_error() {
        use clap::error::ErrorKind;
        let bad: &[&[&str]] = &[
            &["curlyq", "jobs", "q", "--state", "nope"],
            &["curlyq", "job", "q", ""],
            &["curlyq", "job", ""],
            &["curlyq", "retry", "q"],
            &["curlyq", "retry", "q", "a", "--all"],
            &["curlyq", "purge", "q", "--state", "inflight"],
            &["curlyq", "delete", "q"],
            &["curlyq", "delete", "q", "a", "--yes", "--dry-run"],
            &[
                "curlyq", "enqueue", "q", "--data", "x", "--in", "5m", "--at", "1",
            ],
            &["curlyq", "stats", "--interval", "soon"],
            &["curlyq", "jobs", "q", "--state", "dead", "--limit", "0"],
        ];
        for args in bad {
            let err = Cli::try_parse_from(*args).expect_err(&format!("{args:?} is refused"));
            assert_ne!(err.kind(), ErrorKind::DisplayHelp, "{args:?}");
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }
}
