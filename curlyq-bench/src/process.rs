//! Child processes with bounded waits, killed when dropped: the consumer processes and
//! redis-benchmark.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::cli::ConsumeOptions;
use crate::consume::ConsumeReport;
use crate::error::{BenchError, Context, Result};

/// A child process that is killed (SIGKILL) and reaped when dropped, whatever happened.
#[derive(Debug)]
struct Guard {
    child: Child,
    name: String,
}

impl Guard {
    fn spawn(mut command: Command, name: &str) -> Result<Self> {
        let child = command.spawn().context(|| format!("cannot start {name}"))?;
        Ok(Guard {
            child,
            name: name.to_owned(),
        })
    }

    /// Waits for the process to exit, at most `limit`.
    async fn wait(&mut self, limit: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .context(|| format!("waiting for {}", self.name))?
            {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(BenchError::new(format!(
                    "{} did not exit within {limit:?}; killed",
                    self.name
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A consumer process (this binary's `consume` subcommand) and the lines it prints.
#[derive(Debug)]
pub(crate) struct ConsumerProcess {
    guard: Guard,
    lines: mpsc::UnboundedReceiver<String>,
}

impl ConsumerProcess {
    /// Starts `consume` with `options` (its stderr goes to ours).
    pub(crate) fn spawn(options: &ConsumeOptions) -> Result<Self> {
        let exe = std::env::current_exe().context(|| "cannot find this program".to_owned())?;
        let mut command = Command::new(exe);
        command
            .args(options.to_args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut guard = Guard::spawn(command, "the consumer process")?;
        let stdout = guard
            .child
            .stdout
            .take()
            .ok_or_else(|| BenchError::new("the consumer process has no stdout"))?;
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(ConsumerProcess { guard, lines })
    }

    /// The next line starting with one of `prefixes`, within `limit`. An `ERROR` line or
    /// the end of the output is an error.
    async fn line(&mut self, prefixes: &[&str], limit: Duration) -> Result<String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let line = match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Err(_) => {
                    return Err(BenchError::new(format!(
                        "the consumer process printed no {prefixes:?} within {limit:?}"
                    )))
                }
                Ok(None) => {
                    let status = self.guard.wait(Duration::from_secs(5)).await?;
                    return Err(BenchError::new(format!(
                        "the consumer process ended ({status}) before printing {prefixes:?}"
                    )));
                }
                Ok(Some(line)) => line,
            };
            if let Some(message) = line.strip_prefix("ERROR ") {
                return Err(BenchError::new(format!("the consumer process: {message}")));
            }
            if prefixes.iter().any(|p| line.starts_with(p)) {
                return Ok(line);
            }
        }
    }

    /// Waits until the consumer runs (it printed `READY`, after handling the warm-up
    /// job), at most `limit`.
    pub(crate) async fn ready(&mut self, limit: Duration) -> Result<()> {
        self.line(&["READY"], limit).await.map(drop)
    }

    /// Waits for the consumer's report and its exit, at most `limit`.
    pub(crate) async fn finish(mut self, limit: Duration) -> Result<ConsumeReport> {
        let line = self.line(&["RESULT "], limit).await?;
        let report = ConsumeReport::parse(&line)?;
        let status = self.guard.wait(Duration::from_secs(30)).await?;
        if !status.success() {
            return Err(BenchError::new(format!(
                "the consumer process reported but exited with {status}"
            )));
        }
        Ok(report)
    }
}

/// What a finished command printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Output {
    /// Its exit status.
    pub(crate) status: ExitStatus,
    /// Its standard output, lossily decoded.
    pub(crate) stdout: String,
    /// Its standard error, lossily decoded.
    pub(crate) stderr: String,
}

/// Runs `command` to its end, at most `limit` (then it is killed and this fails).
pub(crate) async fn run_bounded(
    mut command: Command,
    name: &str,
    limit: Duration,
) -> Result<Output> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut guard = Guard::spawn(command, name)?;
    // Read both pipes while the process runs, so that it never blocks on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(
        guard
            .child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        guard
            .child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = guard.wait(limit).await?;
    drop(guard);
    let join = |handle: std::thread::JoinHandle<String>| handle.join().unwrap_or_default();
    Ok(Output {
        status,
        stdout: join(stdout),
        stderr: join(stderr),
    })
}
