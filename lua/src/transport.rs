//! What a Redis client must provide for [`ScriptBackend`](crate::ScriptBackend) to be a
//! complete curlyq backend on it: the [`Transport`] trait (and [`Connect`] to build one
//! from a URL).
//!
//! A transport only moves commands and replies. It knows nothing of queues, scripts or
//! jobs: `EVALSHA` and its `NOSCRIPT` reload, reply parsing, the orphan sweep, the
//! error codes and the waiter's reconnection are written once, in the backend.

use std::time::Duration;

use async_trait::async_trait;
use curlyq_core::BackendError;

use crate::calls::Reply;
use crate::redact::Secrets;

/// One command: its name and its arguments, as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The command's name (`EVALSHA`, `ZRANGEBYSCORE`, ...).
    pub name: &'static str,
    /// Its arguments.
    pub args: Vec<Vec<u8>>,
}

impl Command {
    /// `name` with no arguments yet.
    pub fn new(name: &'static str) -> Self {
        Command {
            name,
            args: Vec::new(),
        }
    }

    /// Appends an argument.
    pub fn arg(mut self, arg: impl AsRef<[u8]>) -> Self {
        self.args.push(arg.as_ref().to_vec());
        self
    }

    /// The index of the first key among the arguments, for clients that route by key
    /// (`EVAL`/`EVALSHA`: after the script and the key count; other commands: the first
    /// argument). `None` when the command has no key.
    pub fn first_key(&self) -> Option<usize> {
        let at = match self.name {
            "EVAL" | "EVALSHA" => 2,
            "INFO" | "SCRIPT" | "PING" => return None,
            _ => 0,
        };
        (at < self.args.len()).then_some(at)
    }
}

/// A Redis client, as the backend needs it.
///
/// # Behavior
/// Every method bounds its wait by the client's response timeout and maps the client's
/// own failures (connection refused or lost, a timeout, an authentication failure) to
/// [`BackendError::Unavailable`], a reply it cannot read to
/// [`BackendError::InvalidReply`], and anything else to [`BackendError::Other`], with
/// [`secrets`](Self::secrets) scrubbed from every message. An error *reply* of the
/// server is not a failure: it comes back as [`Reply::Error`] in its place, and the
/// backend decides what it means (`NOSCRIPT`, `NOTREG`, `WRONGTYPE`, `LOADING`...).
///
/// A transport never sends a command twice on its own (a reply lost with the connection
/// is an error for the caller, who knows whether a retry is safe).
///
/// Implementors: `curlyq-redis-rs` (on the `redis` crate, about 540 lines with its
/// settings and docs) and `curlyq-fred` (on `fred`, about 800, with its pool and the
/// async-compat bridge) are complete examples.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// A connection of its own for the poller's blocking wait.
    type Dedicated: DedicatedConnection;

    /// Sends `commands` as one pipeline (one round trip where the client can) and
    /// returns one reply per command, in order.
    ///
    /// # Errors
    /// Only when the pipeline as a whole produced no usable replies (the connection
    /// failed, the client timed out).
    async fn pipeline(&self, commands: &[Command]) -> Result<Vec<Reply>, BackendError>;

    /// Runs `commands` inside `MULTI`/`EXEC` (all at one instant) and returns the reply of
    /// each, in order.
    async fn transaction(&self, commands: &[Command]) -> Result<Vec<Reply>, BackendError>;

    /// Loads `source` into the script cache of every server this transport sends
    /// commands to (every primary of a cluster).
    async fn load_script(&self, source: &str) -> Result<(), BackendError>;

    /// Opens a dedicated connection (for a blocking wait, which would stall every other
    /// command sharing a multiplexed connection).
    async fn dedicated(&self) -> Result<Self::Dedicated, BackendError>;

    /// The passwords of the connection, scrubbed from the error replies the backend
    /// reports.
    fn secrets(&self) -> &Secrets;

    /// Sends one command.
    async fn command(&self, command: Command) -> Result<Reply, BackendError> {
        let mut replies = self.pipeline(std::slice::from_ref(&command)).await?;
        replies
            .pop()
            .ok_or_else(|| BackendError::InvalidReply(format!("{}: no reply", command.name)))
    }
}

/// A connection of a [`Transport`]'s own, used for one blocking command at a time.
#[async_trait]
pub trait DedicatedConnection: Send + Sync + 'static {
    /// Sends `command`, which the server may hold for up to `block` (a `BRPOPLPUSH`
    /// timeout); the client waits `block` plus its response timeout before it fails
    /// with [`BackendError::Unavailable`]. Error replies come back as
    /// [`Reply::Error`]. After an error the backend drops the connection and opens a
    /// new one.
    async fn send(&mut self, command: &Command, block: Duration) -> Result<Reply, BackendError>;
}

/// A [`Transport`] that can be built from a URL, which gives
/// [`ScriptBackend::connect`](crate::ScriptBackend::connect).
#[async_trait]
pub trait Connect: Transport + Sized {
    /// Its timeouts and connection settings.
    type Config: Default + Send + 'static;

    /// Connects to the server (or servers) of `url` and checks it answers `PING`.
    ///
    /// # Errors
    /// [`BackendError::Unavailable`] when the server cannot be reached, does not answer
    /// or refuses the credentials; [`BackendError::Other`] for a URL that does not
    /// parse. No message contains the password.
    async fn connect(url: &str, config: Self::Config) -> Result<Self, BackendError>;
}
