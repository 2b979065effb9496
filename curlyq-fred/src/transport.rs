//! [`FredTransport`]: fred clients as a curlyq [`Transport`].

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_compat::Compat;
use curlyq_core::{async_trait, BackendError};
use curlyq_lua::calls::Reply;
use curlyq_lua::{
    url_password, Command, Connect, DedicatedConnection, RedisFailure, Secrets, Transport,
};
use fred::bytes::Bytes;
use fred::clients::{Client, Pool};
use fred::interfaces::{ClientLike, LuaInterface, TransactionInterface};
use fred::types::config::{Blocking, Config, Options, ReconnectPolicy, ServerConfig};
use fred::types::{Builder, ClusterHash, ConnectHandle, CustomCommand, Value};

use crate::config::FredConfig;
use crate::error::{self, from_fred};

/// Runs a fred future from any executor: inside a tokio runtime it runs as is; elsewhere
/// (async-std, smol) `async-compat` enters a tokio runtime of its own (one background
/// thread) for the time of each poll, which fred needs to spawn its connection tasks and
/// to set timers.
fn bridged<F: Future>(future: F) -> Compat<F> {
    Compat::new(future)
}

/// fred clients as a [`Transport`]: ordinary operations go to the clients given (one
/// client, or the clients of a [`Pool`], round robin, connected ones first); each
/// dedicated connection (for a waiter) is a client and connection of its own, since fred
/// queues every command behind a blocking one on the same connection. Cloning is cheap
/// and shares the clients.
///
/// It runs on tokio, and under async-std or smol too: each call is wrapped in
/// `async_compat::Compat`, which gives fred a tokio context when there is none.
///
/// ```no_run
/// use curlyq_fred::fred::prelude::*;
/// use curlyq_fred::{FredBackend, FredTransport};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = Builder::from_config(Config::from_url("redis://127.0.0.1:6379")?).build_pool(4)?;
/// pool.init().await?;
/// let backend = FredBackend::new(FredTransport::from_pool(&pool));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct FredTransport {
    shared: Arc<Shared>,
}

struct Shared {
    clients: Vec<Client>,
    next: AtomicUsize,
    config: FredConfig,
    secrets: Secrets,
    /// Connection tasks of clients this transport made (stopped when it is dropped).
    owned: Vec<ConnectHandle>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        for task in &self.owned {
            task.abort();
        }
    }
}

impl fmt::Debug for FredTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = self.first().client_config();
        f.debug_struct("FredBackend")
            .field("servers", &servers(&config))
            .field("db", &config.database.unwrap_or(0))
            .field("username", &config.username)
            .field(
                "password",
                &if config.password.is_some() {
                    "<hidden>"
                } else {
                    "<none>"
                },
            )
            .field("clients", &self.shared.clients.len())
            .field("config", &self.shared.config)
            .finish()
    }
}

impl fmt::Display for FredTransport {
    /// The server's URL with the password replaced by `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = self.first().client_config();
        let scheme = if tls_of(&config) { "rediss" } else { "redis" };
        write!(f, "{scheme}://")?;
        match (&config.username, config.password.is_some()) {
            (Some(user), true) => write!(f, "{user}:***@")?,
            (None, true) => f.write_str(":***@")?,
            (Some(user), false) => write!(f, "{user}@")?,
            (None, false) => {}
        }
        write!(
            f,
            "{}/{}",
            servers(&config).join(","),
            config.database.unwrap_or(0)
        )
    }
}

#[cfg(feature = "tls")]
fn tls_of(config: &Config) -> bool {
    config.tls.is_some()
}

#[cfg(not(feature = "tls"))]
fn tls_of(_: &Config) -> bool {
    false
}

fn servers(config: &Config) -> Vec<String> {
    match &config.server {
        ServerConfig::Centralized { server } => vec![format!("{}:{}", server.host, server.port)],
        ServerConfig::Clustered { hosts, .. } | ServerConfig::Sentinel { hosts, .. } => hosts
            .iter()
            .map(|s| format!("{}:{}", s.host, s.port))
            .collect(),
        #[allow(unreachable_patterns)]
        _ => vec!["<unknown>".to_owned()],
    }
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

fn timed_out(what: &str, limit: Duration) -> BackendError {
    BackendError::Unavailable(Box::new(RedisFailure::new(format!(
        "Redis did not answer {what}within {limit:?}"
    ))))
}

impl FredTransport {
    async fn open(url: &str, config: FredConfig) -> Result<Self, BackendError> {
        let raw = Secrets::new(url_password(url));
        let mut fred_config = Config::from_url(url)
            .map_err(|e| BackendError::Other(Box::new(raw.failure("invalid Redis URL", &e))))?;
        fred_config.fail_fast = true;
        let secrets = raw.with(fred_config.password.clone());
        let at = servers(&fred_config).join(",");
        let mut builder = Builder::from_config(fred_config);
        builder
            .with_connection_config(|c| {
                c.connection_timeout = config.connection_timeout();
                c.internal_command_timeout = config.response_timeout();
                // Never send a script call twice: a reply lost with the connection is
                // an error for the caller, who knows whether a retry is safe.
                c.max_command_attempts = 1;
            })
            .with_performance_config(|p| {
                p.default_command_timeout = config.response_timeout();
            })
            .set_policy(ReconnectPolicy::new_exponential(
                0,
                50,
                millis(config.reconnect_max_delay()).max(50),
                2,
            ));
        let pool = builder
            .build_pool(config.pool_size())
            .map_err(|e| BackendError::Other(Box::new(secrets.failure("invalid config", &e))))?;
        let clients = pool.clients().to_vec();
        let mut owned = Vec::with_capacity(clients.len());
        let limit = config
            .connection_timeout()
            .saturating_add(config.response_timeout());
        let context = format!("could not connect to Redis at {at}");
        for client in &clients {
            match tokio::time::timeout(limit, client.init()).await {
                Ok(Ok(task)) => owned.push(task),
                failed => {
                    for task in &owned {
                        task.abort();
                    }
                    return Err(match failed {
                        Ok(Err(e)) => unavailable(&secrets, &context, &e),
                        _ => BackendError::Unavailable(Box::new(RedisFailure::new(format!(
                            "{context}: no connection within {limit:?}"
                        )))),
                    });
                }
            }
        }
        let transport = FredTransport {
            shared: Arc::new(Shared {
                clients,
                next: AtomicUsize::new(0),
                config,
                secrets,
                owned,
            }),
        };
        // `init` connected (and authenticated); the server must also answer.
        transport
            .bounded(transport.first().ping::<Value>(None))
            .await?;
        Ok(transport)
    }

    /// Uses a fred [`Client`] the application already has (initialized with `init()`, or
    /// about to be). Its own settings (timeouts, reconnection) apply to ordinary
    /// operations; each waiter is a `clone_new()` of it. No `PING` is sent.
    pub fn from_client(client: Client) -> Self {
        Self::from_clients(vec![client], FredConfig::default())
    }

    /// Uses the clients of a fred [`Pool`] the application already has, round robin
    /// (connected clients first). Waiters are `clone_new()`s of its first client.
    pub fn from_pool(pool: &Pool) -> Self {
        Self::from_clients(pool.clients().to_vec(), FredConfig::default())
    }

    /// [`from_client`](Self::from_client) or [`from_pool`](Self::from_pool) with explicit
    /// settings (the response timeout bounds each operation and is added to the block
    /// time of waits). An empty list is given one default client.
    pub fn from_clients(clients: Vec<Client>, config: FredConfig) -> Self {
        let clients = if clients.is_empty() {
            vec![Client::default()]
        } else {
            clients
        };
        let secrets = Secrets::new(clients.iter().filter_map(|c| c.client_config().password));
        FredTransport {
            shared: Arc::new(Shared {
                clients,
                next: AtomicUsize::new(0),
                config,
                secrets,
                owned: Vec::new(),
            }),
        }
    }

    /// The clients ordinary operations use.
    pub fn clients(&self) -> &[Client] {
        &self.shared.clients
    }

    /// The settings.
    pub fn config(&self) -> &FredConfig {
        &self.shared.config
    }

    fn first(&self) -> &Client {
        // `from_clients` never leaves the list empty.
        &self.shared.clients[0]
    }

    /// The next client, round robin, preferring connected ones.
    fn pick(&self) -> &Client {
        let clients = &self.shared.clients;
        let start = self.shared.next.fetch_add(1, Ordering::Relaxed);
        (0..clients.len())
            .map(|i| &clients[(start + i) % clients.len()])
            .find(|c| c.is_connected())
            .unwrap_or(&clients[start % clients.len()])
    }

    /// Awaits a fred future for at most the response timeout, mapping errors.
    async fn bounded<T>(
        &self,
        future: impl Future<Output = fred::prelude::FredResult<T>>,
    ) -> Result<T, BackendError> {
        let limit = self.shared.config.response_timeout();
        match tokio::time::timeout(limit, future).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(from_fred(&self.shared.secrets, &e)),
            Err(_) => Err(timed_out("", limit)),
        }
    }

    /// One pipeline on one client; a lone command (the common case: one job pushed, one
    /// batch acked) goes straight to the client, without a pipeline's buffering.
    async fn send_all(&self, commands: &[Command]) -> Result<Vec<Reply>, BackendError> {
        let client = self.pick();
        let limit = self.shared.config.response_timeout();
        let secrets = &self.shared.secrets;
        let answers = if let [command] = commands {
            let (cmd, args) = custom(command);
            let sent = client.custom::<Value, Value>(cmd, args);
            vec![tokio::time::timeout(limit, sent)
                .await
                .map_err(|_| timed_out("", limit))?]
        } else {
            let pipe = client.pipeline();
            for command in commands {
                let (cmd, args) = custom(command);
                let queued = pipe.custom::<Value, Value>(cmd, args).await;
                queued.map_err(|e| from_fred(secrets, &e))?;
            }
            tokio::time::timeout(limit, pipe.try_all::<Value>())
                .await
                .map_err(|_| timed_out("", limit))?
        };
        let got = answers.len();
        if got != commands.len() {
            // The pipeline as a whole failed (connection, timeout).
            return Err(match answers.into_iter().find_map(Result::err) {
                Some(e) => from_fred(secrets, &e),
                None => BackendError::InvalidReply(format!(
                    "{got} replies to a pipeline of {}",
                    commands.len()
                )),
            });
        }
        answers
            .into_iter()
            .map(|answer| error::to_reply(secrets, answer))
            .collect()
    }

    async fn exec(&self, commands: &[Command]) -> Result<Vec<Reply>, BackendError> {
        let tx = self.pick().multi();
        for command in commands {
            let (cmd, args) = custom(command);
            self.bounded(tx.custom::<Value, Value>(cmd, args)).await?;
        }
        match self.bounded(tx.exec::<Value>(true)).await? {
            Value::Array(items) => Ok(items.into_iter().map(error::value_reply).collect()),
            other => Err(BackendError::InvalidReply(format!(
                "EXEC answered {:?}",
                other.kind()
            ))),
        }
    }

    /// `SCRIPT LOAD` of one script (on every primary of a cluster).
    async fn load(&self, source: &str) -> Result<(), BackendError> {
        let client = self.pick();
        if client.is_clustered() {
            self.bounded(client.script_load_cluster::<Value, _>(source))
                .await?;
        } else {
            self.bounded(client.script_load::<Value, _>(source)).await?;
        }
        Ok(())
    }

    async fn open_dedicated(&self) -> Result<FredDedicated, BackendError> {
        // The first client's server, credentials and timeouts; failing fast, without
        // reconnection (a waiter whose connection failed opens a new one) and without
        // sending a command twice.
        let template = self.first();
        let secrets = &self.shared.secrets;
        let mut config = template.client_config();
        config.fail_fast = true;
        config.blocking = Blocking::Block;
        let mut connection = template.connection_config().clone();
        connection.max_command_attempts = 1;
        let client = Builder::from_config(config)
            .set_performance_config(template.perf_config())
            .set_connection_config(connection)
            .build()
            .map_err(|e| BackendError::Other(Box::new(secrets.failure("invalid config", &e))))?;
        let response_timeout = self.shared.config.response_timeout();
        let limit = self
            .shared
            .config
            .connection_timeout()
            .saturating_add(response_timeout);
        let context = "could not open the waiter's connection to Redis";
        match tokio::time::timeout(limit, client.init()).await {
            Ok(Ok(task)) => Ok(FredDedicated {
                client,
                task,
                response_timeout,
                secrets: secrets.clone(),
            }),
            Ok(Err(e)) => Err(unavailable(secrets, context, &e)),
            // The connection attempt goes on in fred's task until fred's own connection
            // timeout, then ends (fail fast, no reconnection).
            Err(_) => Err(BackendError::Unavailable(Box::new(RedisFailure::new(
                format!("{context}: no connection within {limit:?}"),
            )))),
        }
    }
}

/// A [`Command`] as a fred custom command, routed by its first key in a cluster.
fn custom(command: &Command) -> (CustomCommand, Vec<Value>) {
    let hash = match command.first_key() {
        Some(at) => ClusterHash::Offset(at),
        None => ClusterHash::Random,
    };
    let blocking = command.name == "BRPOPLPUSH";
    let args = command
        .args
        .iter()
        .map(|arg| Value::Bytes(Bytes::copy_from_slice(arg)))
        .collect();
    (
        CustomCommand::new_static(command.name, hash, blocking),
        args,
    )
}

fn unavailable(secrets: &Secrets, context: &str, err: &fred::error::Error) -> BackendError {
    BackendError::Unavailable(Box::new(secrets.failure(context, err)))
}

#[async_trait]
impl Connect for FredTransport {
    type Config = FredConfig;

    /// `url` is `redis://[user][:password@]host[:port][/db]` (`rediss://` for TLS, with
    /// this crate's `tls` feature); fred's other URL forms (cluster, sentinel) work too.
    async fn connect(url: &str, config: FredConfig) -> Result<Self, BackendError> {
        bridged(Self::open(url, config)).await
    }
}

#[async_trait]
impl Transport for FredTransport {
    type Dedicated = FredDedicated;

    async fn pipeline(&self, commands: &[Command]) -> Result<Vec<Reply>, BackendError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        bridged(self.send_all(commands)).await
    }

    async fn transaction(&self, commands: &[Command]) -> Result<Vec<Reply>, BackendError> {
        bridged(self.exec(commands)).await
    }

    async fn load_script(&self, source: &str) -> Result<(), BackendError> {
        bridged(self.load(source)).await
    }

    async fn dedicated(&self) -> Result<FredDedicated, BackendError> {
        bridged(self.open_dedicated()).await
    }

    fn secrets(&self) -> &Secrets {
        &self.shared.secrets
    }
}

/// A connected client of a waiter's own and the task that drives its connection.
pub struct FredDedicated {
    client: Client,
    task: ConnectHandle,
    response_timeout: Duration,
    secrets: Secrets,
}

impl Drop for FredDedicated {
    fn drop(&mut self) {
        // Ends the connection task (and closes its socket) even while a blocking
        // command is pending, which `QUIT` would wait for.
        self.task.abort();
    }
}

impl FredDedicated {
    async fn send_one(&self, command: &Command, block: Duration) -> Result<Reply, BackendError> {
        // The client waits longer than the server blocks.
        let limit = block.saturating_add(self.response_timeout);
        let options = Options {
            timeout: Some(limit),
            max_attempts: Some(1),
            ..Options::default()
        };
        let (cmd, args) = custom(command);
        let client = self.client.with_options(&options);
        let sent = client.custom::<Value, Value>(cmd, args);
        match tokio::time::timeout(limit, sent).await {
            Ok(answer) => error::to_reply(&self.secrets, answer),
            Err(_) => Err(timed_out("a wait ", limit)),
        }
    }
}

#[async_trait]
impl DedicatedConnection for FredDedicated {
    async fn send(&mut self, command: &Command, block: Duration) -> Result<Reply, BackendError> {
        bridged(self.send_one(command, block)).await
    }
}
