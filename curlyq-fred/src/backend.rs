//! [`FredBackend`]: the [`QueueBackend`] on fred clients.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_compat::Compat;
use curlyq_core::{
    async_trait, BackendError, ConsumerId, DeadTrim, DueReport, EncodedJob, KillJob, OrphanReport,
    OrphanSweep, QueueBackend, QueueName, QueueSnapshot, Registration, RetryJob, ScheduledJob,
    TakenJob, Waiter, MAX_BATCH,
};
use curlyq_lua::Keys;
use fred::bytes::Bytes;
use fred::clients::{Client, Pool};
use fred::interfaces::{ClientLike, LuaInterface, TransactionInterface};

use fred::types::config::{Config, ReconnectPolicy, ServerConfig};
use fred::types::scripts::Script;
use fred::types::{Builder, ClusterHash, ConnectHandle, CustomCommand, Value};

use crate::config::FredConfig;
use crate::error::{self, invalid, Redactor};
use crate::reply;
use crate::waiter::FredWaiter;

/// Runs a fred future from any executor: inside a tokio runtime it runs as is; elsewhere
/// (async-std, smol) `async-compat` enters a tokio runtime of its own (one background
/// thread) for the time of each poll, which fred needs to spawn its connection tasks and
/// to set timers.
pub(crate) fn bridged<F: Future>(future: F) -> Compat<F> {
    Compat::new(future)
}

/// The scripts of `curlyq-lua`, hashed once.
struct Scripts {
    push: Script,
    schedule: Script,
    register: Script,
    enqueue_due: Script,
    take: Script,
    ack: Script,
    retry: Script,
    kill: Script,
    give_back: Script,
    requeue_orphans: Script,
    trim_dead: Script,
    unregister: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    push: Script::from_lua(curlyq_lua::PUSH),
    schedule: Script::from_lua(curlyq_lua::SCHEDULE),
    register: Script::from_lua(curlyq_lua::REGISTER),
    enqueue_due: Script::from_lua(curlyq_lua::ENQUEUE_DUE),
    take: Script::from_lua(curlyq_lua::TAKE),
    ack: Script::from_lua(curlyq_lua::ACK),
    retry: Script::from_lua(curlyq_lua::RETRY),
    kill: Script::from_lua(curlyq_lua::KILL),
    give_back: Script::from_lua(curlyq_lua::GIVE_BACK),
    requeue_orphans: Script::from_lua(curlyq_lua::REQUEUE_ORPHANS),
    trim_dead: Script::from_lua(curlyq_lua::TRIM_DEAD),
    unregister: Script::from_lua(curlyq_lua::UNREGISTER),
});

/// Expired consumers visited per orphan-sweep script call.
const SWEEP_CONSUMERS: usize = 100;

/// A guard on the rounds of one orphan sweep (each moves a job or removes a consumer).
const SWEEP_ROUNDS: usize = 10_000;

/// One script call: its keys and arguments.
struct Call {
    keys: Vec<String>,
    args: Vec<Value>,
}

impl Call {
    fn new(keys: &[&str]) -> Self {
        Call {
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
            args: Vec::new(),
        }
    }

    fn arg(&mut self, value: impl Into<Value>) -> &mut Self {
        self.args.push(value.into());
        self
    }

    fn bytes(&mut self, data: &[u8]) -> &mut Self {
        self.args.push(Value::Bytes(Bytes::copy_from_slice(data)));
        self
    }
}

/// curlyq's [`QueueBackend`] on Redis (or Valkey, Dragonfly...) through the `fred` crate.
///
/// Ordinary operations go to the clients given (one client, or the clients of a
/// [`Pool`], round robin, connected ones first); each [`waiter`](QueueBackend::waiter)
/// has a client and connection of its own for the blocking wait. Cloning is cheap and
/// shares the clients.
///
/// Every operation is one script call of `curlyq-lua` sent with `EVALSHA`; scripts
/// missing from the server's cache (`NOSCRIPT`, after a restart, a failover or `SCRIPT
/// FLUSH`) are loaded and the calls that missed are sent again. Batches beyond
/// [`MAX_BATCH`] jobs are split into chunks sent as one pipeline, in one round trip.
///
/// It runs on tokio, and under async-std or smol too: each operation is wrapped in
/// `async_compat::Compat`, which gives fred a tokio context when there is none.
#[derive(Clone)]
pub struct FredBackend {
    shared: Arc<Shared>,
}

struct Shared {
    clients: Vec<Client>,
    next: AtomicUsize,
    config: FredConfig,
    redactor: Redactor,
    /// Connection tasks of clients this backend made (stopped when it is dropped).
    owned: Vec<ConnectHandle>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        for task in &self.owned {
            task.abort();
        }
    }
}

impl fmt::Debug for FredBackend {
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

impl fmt::Display for FredBackend {
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

impl FredBackend {
    /// Connects to the Redis server of `url` with the default [`FredConfig`] and checks
    /// it answers `PING`.
    ///
    /// `url` is `redis://[user][:password@]host[:port][/db]` (`rediss://` for TLS, with
    /// this crate's `tls` feature); fred's other URL forms (cluster, sentinel) work too.
    ///
    /// # Errors
    /// [`BackendError::Unavailable`] when the server cannot be reached, does not answer or
    /// refuses the credentials; [`BackendError::Other`] for a URL fred does not accept.
    /// No message contains the password.
    pub async fn connect(url: &str) -> Result<Self, BackendError> {
        Self::connect_with(url, FredConfig::default()).await
    }

    /// [`connect`](Self::connect) with explicit settings.
    pub async fn connect_with(url: &str, config: FredConfig) -> Result<Self, BackendError> {
        bridged(Self::open(url, config)).await
    }

    async fn open(url: &str, config: FredConfig) -> Result<Self, BackendError> {
        let raw = Redactor::new(error::password_in_url(url));
        let mut fred_config = Config::from_url(url)
            .map_err(|e| BackendError::Other(Box::new(raw.failure("invalid Redis URL", &e))))?;
        fred_config.fail_fast = true;
        let redactor = Redactor::new(
            error::password_in_url(url)
                .into_iter()
                .chain(fred_config.password.clone()),
        );
        let at = servers(&fred_config).join(",");
        let mut builder = Builder::from_config(fred_config);
        builder
            .with_connection_config(|c| {
                c.connection_timeout = config.get_connection_timeout();
                c.internal_command_timeout = config.get_response_timeout();
                // Never send a script call twice: a reply lost with the connection is
                // an error for the caller, who knows whether a retry is safe.
                c.max_command_attempts = 1;
            })
            .with_performance_config(|p| {
                p.default_command_timeout = config.get_response_timeout();
            })
            .set_policy(ReconnectPolicy::new_exponential(
                0,
                50,
                millis(config.get_reconnect_max_delay()).max(50),
                2,
            ));
        let pool = builder
            .build_pool(config.get_pool_size())
            .map_err(|e| BackendError::Other(Box::new(redactor.failure("invalid config", &e))))?;
        let clients = pool.clients().to_vec();
        let mut owned = Vec::with_capacity(clients.len());
        let limit = config
            .get_connection_timeout()
            .saturating_add(config.get_response_timeout());
        let context = format!("could not connect to Redis at {at}");
        for client in &clients {
            match tokio::time::timeout(limit, client.init()).await {
                Ok(Ok(task)) => owned.push(task),
                failed => {
                    for task in &owned {
                        task.abort();
                    }
                    return Err(match failed {
                        Ok(Err(e)) => redactor.unavailable(&context, &e),
                        _ => BackendError::Unavailable(Box::new(crate::FredFailure::new(format!(
                            "{context}: no connection within {limit:?}"
                        )))),
                    });
                }
            }
        }
        let backend = FredBackend {
            shared: Arc::new(Shared {
                clients,
                next: AtomicUsize::new(0),
                config,
                redactor,
                owned,
            }),
        };
        // `init` connected (and authenticated); the server must also answer.
        backend.bounded(backend.first().ping::<Value>(None)).await?;
        Ok(backend)
    }

    /// Uses a fred [`Client`] the application already has (initialized with
    /// `init()`, or about to be). Its own settings (timeouts, reconnection) apply to
    /// ordinary operations; each waiter is a `clone_new()` of it. No `PING` is sent.
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
        let redactor = Redactor::new(clients.iter().filter_map(|c| c.client_config().password));
        FredBackend {
            shared: Arc::new(Shared {
                clients,
                next: AtomicUsize::new(0),
                config,
                redactor,
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

    /// Loads every curlyq script into the server's script cache. Optional: operations
    /// load a missing script on first use.
    pub async fn load_scripts(&self) -> Result<(), BackendError> {
        bridged(async {
            let client = self.pick();
            for (_, source) in curlyq_lua::ALL {
                self.load(client, source).await?;
            }
            Ok(())
        })
        .await
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

    pub(crate) fn redactor(&self) -> &Redactor {
        &self.shared.redactor
    }

    /// Awaits a fred future for at most the response timeout, mapping errors.
    async fn bounded<T>(
        &self,
        future: impl Future<Output = fred::prelude::FredResult<T>>,
    ) -> Result<T, BackendError> {
        let limit = self.shared.config.get_response_timeout();
        match tokio::time::timeout(limit, future).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(error::from_fred(self.redactor(), &e)),
            Err(_) => Err(BackendError::Unavailable(Box::new(
                crate::FredFailure::new(format!("Redis did not answer within {limit:?}")),
            ))),
        }
    }

    /// `SCRIPT LOAD` of one script (on every primary of a cluster).
    async fn load(&self, client: &Client, source: &str) -> Result<(), BackendError> {
        if client.is_clustered() {
            self.bounded(client.script_load_cluster::<Value, _>(source))
                .await?;
        } else {
            self.bounded(client.script_load::<Value, _>(source)).await?;
        }
        Ok(())
    }

    /// One plain command.
    async fn command(
        &self,
        client: &Client,
        name: &'static str,
        args: Vec<Value>,
    ) -> Result<Value, BackendError> {
        let cmd = CustomCommand::new_static(name, ClusterHash::FirstKey, false);
        self.bounded(client.custom::<Value, Value>(cmd, args)).await
    }

    /// Sends `calls` of `script` as one pipeline on one client; sends the calls that
    /// found the script missing again after loading it. One reply per call, in order.
    async fn run(
        &self,
        script: &Script,
        calls: &[Call],
        who: Option<(&QueueName, &ConsumerId)>,
    ) -> Result<Vec<Value>, BackendError> {
        let client = self.pick();
        let mut replies: Vec<Option<Result<Value, fred::error::Error>>> =
            (0..calls.len()).map(|_| None).collect();
        let mut pending: Vec<usize> = (0..calls.len()).collect();
        for attempt in 0..3 {
            let pipe = client.pipeline();
            for &i in &pending {
                let call = calls
                    .get(i)
                    .ok_or_else(|| invalid("a pipeline call is missing"))?;
                let mut args: Vec<Value> =
                    Vec::with_capacity(2 + call.keys.len() + call.args.len());
                // The third attempt follows a second NOSCRIPT right after a SCRIPT LOAD
                // (the cache flushed again under load): it sends the source itself.
                let (name, head): (&'static str, Value) = if attempt == 2 {
                    let source = script
                        .lua()
                        .ok_or_else(|| invalid("a script without its source"))?;
                    ("EVAL", source.clone().into())
                } else {
                    ("EVALSHA", script.sha1().clone().into())
                };
                args.push(head);
                args.push(count_arg(call.keys.len()));
                args.extend(call.keys.iter().map(|k| Value::from(k.as_str())));
                args.extend(call.args.iter().cloned());
                // Hash on the first key (argument 2) in a cluster.
                let command = CustomCommand::new_static(name, ClusterHash::Offset(2), false);
                let queued = pipe.custom::<Value, Value>(command, args).await;
                queued.map_err(|e| error::from_fred(self.redactor(), &e))?;
            }
            let limit = self.shared.config.get_response_timeout();
            let answers = match tokio::time::timeout(limit, pipe.try_all::<Value>()).await {
                Ok(answers) => answers,
                Err(_) => {
                    return Err(BackendError::Unavailable(Box::new(
                        crate::FredFailure::new(format!("Redis did not answer within {limit:?}")),
                    )))
                }
            };
            if answers.len() != pending.len() {
                // The pipeline as a whole failed (connection, timeout).
                return Err(match answers.into_iter().find_map(Result::err) {
                    Some(e) => error::from_fred(self.redactor(), &e),
                    None => invalid(format!(
                        "{} replies to a pipeline of {}",
                        calls.len(),
                        pending.len()
                    )),
                });
            }
            let mut missing = Vec::new();
            for (i, answer) in pending.iter().copied().zip(answers) {
                match answer {
                    Err(e) if error::code(&e) == "NOSCRIPT" => missing.push(i),
                    other => {
                        if let Some(slot) = replies.get_mut(i) {
                            *slot = Some(other);
                        }
                    }
                }
            }
            if missing.is_empty() {
                break;
            }
            if attempt == 2 {
                return Err(BackendError::Rejected(
                    "NOSCRIPT: the server answered NOSCRIPT to EVAL".into(),
                ));
            }
            if attempt == 1 {
                pending = missing;
                continue;
            }
            tracing::debug!(sha = %script.sha1(), "script not in the server's cache; loading it");
            let source = script
                .lua()
                .ok_or_else(|| invalid("a script without its source"))?;
            self.load(client, source).await?;
            pending = missing;
        }
        let mut out = Vec::with_capacity(replies.len());
        for reply in replies {
            match reply {
                Some(Ok(value)) => out.push(value),
                Some(Err(e)) => {
                    return Err(match who {
                        Some((queue, consumer)) if error::code(&e) == "NOTREG" => {
                            BackendError::NotRegistered {
                                queue: queue.to_string(),
                                consumer: consumer.to_string(),
                            }
                        }
                        _ => error::from_fred(self.redactor(), &e),
                    })
                }
                None => return Err(invalid("a pipeline reply is missing")),
            }
        }
        Ok(out)
    }
}

/// A time as Redis reads it (shortest round-trip decimal, `inf`/`-inf`); NaN is refused
/// before anything is sent.
fn score(what: &str, value: f64) -> Result<String, BackendError> {
    if value.is_nan() {
        Err(BackendError::Rejected(format!("{what} is NaN, not a time")))
    } else {
        Ok(format!("{value}"))
    }
}

/// `max` in budgets of at most [`MAX_BATCH`] (one budget of 0 when `max` is 0).
fn budgets(max: usize) -> Vec<usize> {
    if max == 0 {
        return vec![0];
    }
    (0..max.div_ceil(MAX_BATCH))
        .map(|i| (max - i * MAX_BATCH).min(MAX_BATCH))
        .collect()
}

fn count_arg(n: usize) -> Value {
    Value::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

fn all_flags(op: &str, replies: &[Value], sizes: &[usize]) -> Result<Vec<bool>, BackendError> {
    let mut out = Vec::with_capacity(sizes.iter().sum());
    for (reply, &size) in replies.iter().zip(sizes) {
        out.extend(reply::flags(op, reply, size)?);
    }
    Ok(out)
}

fn one<'a>(op: &str, replies: &'a [Value]) -> Result<&'a Value, BackendError> {
    replies
        .first()
        .ok_or_else(|| invalid(format!("{op}: no reply")))
}

#[async_trait]
impl QueueBackend for FredBackend {
    async fn push(
        &self,
        queue: &QueueName,
        jobs: &[EncodedJob],
    ) -> Result<Vec<bool>, BackendError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let keys = Keys::new(queue.as_str());
        let mut calls = Vec::new();
        let mut sizes = Vec::new();
        for chunk in jobs.chunks(MAX_BATCH) {
            let mut call = Call::new(&[&keys.data, &keys.active, &keys.signal]);
            for job in chunk {
                call.arg(job.id.as_str()).bytes(&job.data);
            }
            calls.push(call);
            sizes.push(chunk.len());
        }
        let replies = bridged(self.run(&SCRIPTS.push, &calls, None)).await?;
        all_flags("push", &replies, &sizes)
    }

    async fn schedule(
        &self,
        queue: &QueueName,
        jobs: &[ScheduledJob],
    ) -> Result<Vec<bool>, BackendError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let keys = Keys::new(queue.as_str());
        let mut calls = Vec::new();
        let mut sizes = Vec::new();
        for chunk in jobs.chunks(MAX_BATCH) {
            let mut call = Call::new(&[&keys.data, &keys.scheduled, &keys.signal]);
            for job in chunk {
                call.arg(job.job.id.as_str())
                    .arg(score("schedule time", job.at)?)
                    .bytes(&job.job.data);
            }
            calls.push(call);
            sizes.push(chunk.len());
        }
        let replies = bridged(self.run(&SCRIPTS.schedule, &calls, None)).await?;
        all_flags("schedule", &replies, &sizes)
    }

    async fn register(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        now: f64,
        mode: Registration,
    ) -> Result<bool, BackendError> {
        let keys = Keys::new(queue.as_str());
        let mut call = Call::new(&[&keys.consumers]);
        call.arg(score("heartbeat time", now)?)
            .arg(match mode {
                Registration::Join => "join",
                Registration::Heartbeat => "heartbeat",
            })
            .arg(keys.inflight(consumer.as_str()));
        let replies = bridged(self.run(&SCRIPTS.register, &[call], None)).await?;
        Ok(reply::int("register", one("register", &replies)?)? == 1)
    }

    async fn enqueue_due(
        &self,
        queue: &QueueName,
        now: f64,
        max: usize,
    ) -> Result<DueReport, BackendError> {
        let keys = Keys::new(queue.as_str());
        let now = score("now", now)?;
        let calls: Vec<Call> = budgets(max)
            .into_iter()
            .map(|budget| {
                let mut call = Call::new(&[&keys.scheduled, &keys.active, &keys.signal]);
                call.arg(now.as_str()).arg(count_arg(budget));
                call
            })
            .collect();
        let replies = bridged(self.run(&SCRIPTS.enqueue_due, &calls, None)).await?;
        let mut report = DueReport::default();
        for reply in &replies {
            let parts = reply::array("enqueue_due", reply)?;
            let moved = parts
                .first()
                .ok_or_else(|| invalid("enqueue_due: an empty reply"))?;
            report.moved += reply::count("enqueue_due", moved)?;
            report.next_due = match parts.get(1) {
                Some(next) => reply::score("enqueue_due", next)?,
                None => None,
            };
        }
        Ok(report)
    }

    async fn take(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        max: usize,
    ) -> Result<Vec<TakenJob>, BackendError> {
        let keys = Keys::new(queue.as_str());
        let inflight = keys.inflight(consumer.as_str());
        let calls: Vec<Call> = budgets(max)
            .into_iter()
            .map(|budget| {
                let mut call = Call::new(&[
                    &keys.active,
                    &inflight,
                    &keys.data,
                    &keys.signal,
                    &keys.consumers,
                ]);
                call.arg(count_arg(budget));
                call
            })
            .collect();
        let replies = bridged(self.run(&SCRIPTS.take, &calls, Some((queue, consumer)))).await?;
        let mut taken = Vec::new();
        let mut not_utf8 = Vec::new();
        for reply in &replies {
            let items = reply::array("take", reply)?;
            if items.len() % 2 != 0 {
                return Err(invalid("take: an odd number of elements"));
            }
            for pair in items.chunks_exact(2) {
                let id =
                    reply::bytes("take", &pair[0])?.ok_or_else(|| invalid("take: a nil job ID"))?;
                match String::from_utf8(id) {
                    Ok(id) => taken.push(TakenJob {
                        id,
                        data: reply::bytes("take", &pair[1])?,
                    }),
                    Err(e) => not_utf8.push(e.into_bytes()),
                }
            }
        }
        if !not_utf8.is_empty() {
            bridged(self.kill_not_utf8(&keys, &inflight, &not_utf8)).await;
        }
        Ok(taken)
    }

    async fn waiter(&self, queue: &QueueName) -> Result<Box<dyn Waiter>, BackendError> {
        let signal = Keys::new(queue.as_str()).signal;
        let waiter = bridged(FredWaiter::open(
            self.first().clone(),
            self.shared.config.clone(),
            self.shared.redactor.clone(),
            signal,
        ))
        .await?;
        Ok(Box::new(waiter))
    }

    async fn ack(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        ids: &[String],
    ) -> Result<Vec<bool>, BackendError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys = Keys::new(queue.as_str());
        let inflight = keys.inflight(consumer.as_str());
        let mut calls = Vec::new();
        let mut sizes = Vec::new();
        for chunk in ids.chunks(MAX_BATCH) {
            let mut call = Call::new(&[&inflight, &keys.data, &keys.orphaned]);
            for id in chunk {
                call.arg(id.as_str());
            }
            calls.push(call);
            sizes.push(chunk.len());
        }
        let replies = bridged(self.run(&SCRIPTS.ack, &calls, None)).await?;
        all_flags("ack", &replies, &sizes)
    }

    async fn retry(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        jobs: &[RetryJob],
    ) -> Result<Vec<bool>, BackendError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let keys = Keys::new(queue.as_str());
        let inflight = keys.inflight(consumer.as_str());
        let mut calls = Vec::new();
        let mut sizes = Vec::new();
        for chunk in jobs.chunks(MAX_BATCH) {
            let mut call = Call::new(&[&inflight, &keys.scheduled, &keys.data, &keys.orphaned]);
            for job in chunk {
                call.arg(job.id.as_str())
                    .arg(score("retry time", job.at)?)
                    .bytes(&job.data);
            }
            calls.push(call);
            sizes.push(chunk.len());
        }
        let replies = bridged(self.run(&SCRIPTS.retry, &calls, None)).await?;
        all_flags("retry", &replies, &sizes)
    }

    async fn kill(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        jobs: &[KillJob],
        now: f64,
    ) -> Result<Vec<bool>, BackendError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let keys = Keys::new(queue.as_str());
        let inflight = keys.inflight(consumer.as_str());
        let now = score("kill time", now)?;
        let mut calls = Vec::new();
        let mut sizes = Vec::new();
        for chunk in jobs.chunks(MAX_BATCH) {
            let mut call = Call::new(&[
                &inflight,
                &keys.dead,
                &keys.data,
                &keys.reasons,
                &keys.orphaned,
            ]);
            call.arg(now.as_str());
            for job in chunk {
                call.arg(job.id.as_str());
                match &job.data {
                    Some(data) => call.arg("1").bytes(data),
                    None => call.arg("0").arg(""),
                };
                call.arg(job.reason.as_str());
            }
            calls.push(call);
            sizes.push(chunk.len());
        }
        let replies = bridged(self.run(&SCRIPTS.kill, &calls, None)).await?;
        all_flags("kill", &replies, &sizes)
    }

    async fn give_back(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        ids: &[String],
    ) -> Result<usize, BackendError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let keys = Keys::new(queue.as_str());
        let inflight = keys.inflight(consumer.as_str());
        let calls: Vec<Call> = ids
            .chunks(MAX_BATCH)
            .map(|chunk| {
                let mut call = Call::new(&[&inflight, &keys.active, &keys.signal]);
                for id in chunk {
                    call.arg(id.as_str());
                }
                call
            })
            .collect();
        let replies = bridged(self.run(&SCRIPTS.give_back, &calls, None)).await?;
        replies
            .iter()
            .try_fold(0, |sum, reply| Ok(sum + reply::count("give_back", reply)?))
    }

    async fn requeue_orphans(
        &self,
        queue: &QueueName,
        sweep: OrphanSweep,
    ) -> Result<OrphanReport, BackendError> {
        bridged(self.sweep(queue, sweep)).await
    }

    async fn trim_dead(&self, queue: &QueueName, trim: DeadTrim) -> Result<usize, BackendError> {
        if trim.max_jobs == 0 {
            return Ok(0);
        }
        let keys = Keys::new(queue.as_str());
        let killed_before = score("killed_before", trim.killed_before)?;
        let calls: Vec<Call> = budgets(trim.max_jobs)
            .into_iter()
            .map(|budget| {
                let mut call = Call::new(&[&keys.dead, &keys.data, &keys.reasons, &keys.orphaned]);
                call.arg(killed_before.as_str())
                    .arg(count_arg(trim.keep_at_most))
                    .arg(count_arg(budget));
                call
            })
            .collect();
        let replies = bridged(self.run(&SCRIPTS.trim_dead, &calls, None)).await?;
        replies
            .iter()
            .try_fold(0, |sum, reply| Ok(sum + reply::count("trim_dead", reply)?))
    }

    async fn snapshot(&self, queue: &QueueName) -> Result<QueueSnapshot, BackendError> {
        bridged(self.read_all(queue)).await
    }

    async fn unregister(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
    ) -> Result<bool, BackendError> {
        let keys = Keys::new(queue.as_str());
        let inflight = keys.inflight(consumer.as_str());
        let call = Call::new(&[&keys.consumers, &inflight]);
        let replies = bridged(self.run(&SCRIPTS.unregister, &[call], None)).await?;
        Ok(reply::int("unregister", one("unregister", &replies)?)? == 1)
    }
}

impl FredBackend {
    /// Kills taken jobs whose IDs are not UTF-8 (written by a foreign producer): job IDs
    /// are strings in curlyq, so such a job could neither run under its ID nor be acked.
    /// They die by their raw bytes with their data as stored; if that fails they stay in
    /// flight, and the custodian hands them on once this consumer is gone.
    async fn kill_not_utf8(&self, keys: &Keys, inflight: &str, ids: &[Vec<u8>]) {
        let now = curlyq_core::unix_seconds(std::time::SystemTime::now());
        let mut call = Call::new(&[
            inflight,
            &keys.dead,
            &keys.data,
            &keys.reasons,
            &keys.orphaned,
        ]);
        call.arg(format!("{now}"));
        for id in ids {
            call.bytes(id).arg("0").arg("").arg(
                "job ID is not valid UTF-8 (curlyq job IDs are strings); killed when taken, \
                 data kept as stored",
            );
        }
        match self.run(&SCRIPTS.kill, &[call], None).await {
            Ok(_) => tracing::warn!(
                jobs = ids.len(),
                "killed taken jobs whose IDs are not UTF-8"
            ),
            Err(e) => tracing::warn!(
                jobs = ids.len(),
                error = %e,
                "could not kill taken jobs whose IDs are not UTF-8; they stay in flight"
            ),
        }
    }

    /// The orphan sweep in two steps per round: read the expired consumers (oldest
    /// first), then one script call that declares their in-flight keys and re-checks
    /// each one's score.
    async fn sweep(
        &self,
        queue: &QueueName,
        sweep: OrphanSweep,
    ) -> Result<OrphanReport, BackendError> {
        let keys = Keys::new(queue.as_str());
        let expired_before = score("expired_before", sweep.expired_before)?;
        let now = score("now", sweep.now)?;
        let client = self.pick();
        let mut report = OrphanReport::default();
        let mut left = sweep.max_jobs;
        for _ in 0..SWEEP_ROUNDS {
            let listed = self
                .command(
                    client,
                    "ZRANGEBYSCORE",
                    vec![
                        keys.consumers.as_str().into(),
                        "-inf".into(),
                        expired_before.as_str().into(),
                        "LIMIT".into(),
                        0.into(),
                        count_arg(SWEEP_CONSUMERS),
                    ],
                )
                .await?;
            let members = match listed {
                Value::Null => Vec::new(),
                other => reply::texts("requeue_orphans", &other)?,
            };
            if members.is_empty() {
                break;
            }
            let mut key_list: Vec<&str> = vec![
                &keys.consumers,
                &keys.active,
                &keys.dead,
                &keys.reasons,
                &keys.orphaned,
                &keys.signal,
            ];
            key_list.extend(members.iter().map(String::as_str));
            let mut call = Call::new(&key_list);
            call.arg(expired_before.as_str())
                .arg(count_arg(left.min(MAX_BATCH)))
                .arg(Value::Integer(i64::from(sweep.max_orphan_requeues)))
                .arg(now.as_str());
            let replies = self.run(&SCRIPTS.requeue_orphans, &[call], None).await?;
            let parts = reply::array("requeue_orphans", one("requeue_orphans", &replies)?)?;
            let [requeued, killed, removed] = parts else {
                return Err(invalid("requeue_orphans: expected three counts"));
            };
            let requeued = reply::count("requeue_orphans", requeued)?;
            let killed = reply::count("requeue_orphans", killed)?;
            let removed = reply::count("requeue_orphans", removed)?;
            report.requeued += requeued;
            report.killed += killed;
            report.consumers_removed += removed;
            let moved = requeued + killed;
            left = left.saturating_sub(moved);
            if removed == 0 && (moved == 0 || left == 0) {
                break;
            }
        }
        Ok(report)
    }

    /// The snapshot: the consumers name the in-flight sets to read, then one `MULTI`
    /// reads everything (the consumers again included) at one instant. A consumer that
    /// joined between the two reads is listed with an empty in-flight set.
    async fn read_all(&self, queue: &QueueName) -> Result<QueueSnapshot, BackendError> {
        let keys = Keys::new(queue.as_str());
        let client = self.pick();
        let listed = self
            .command(
                client,
                "ZRANGE",
                vec![keys.consumers.as_str().into(), 0.into(), (-1).into()],
            )
            .await?;
        let members = match listed {
            Value::Null => Vec::new(),
            other => reply::texts("snapshot", &other)?,
        };
        let tx = client.multi();
        let cmd =
            |name: &'static str| CustomCommand::new_static(name, ClusterHash::FirstKey, false);
        let mut queued: Vec<(&'static str, Vec<Value>)> = vec![
            ("HGETALL", vec![keys.data.as_str().into()]),
            (
                "LRANGE",
                vec![keys.active.as_str().into(), 0.into(), (-1).into()],
            ),
            (
                "ZRANGE",
                vec![
                    keys.scheduled.as_str().into(),
                    0.into(),
                    (-1).into(),
                    "WITHSCORES".into(),
                ],
            ),
            (
                "ZRANGE",
                vec![
                    keys.dead.as_str().into(),
                    0.into(),
                    (-1).into(),
                    "WITHSCORES".into(),
                ],
            ),
            (
                "ZRANGE",
                vec![
                    keys.consumers.as_str().into(),
                    0.into(),
                    (-1).into(),
                    "WITHSCORES".into(),
                ],
            ),
            ("LLEN", vec![keys.signal.as_str().into()]),
            ("HGETALL", vec![keys.reasons.as_str().into()]),
            ("HGETALL", vec![keys.orphaned.as_str().into()]),
        ];
        for member in &members {
            queued.push(("SMEMBERS", vec![member.as_str().into()]));
        }
        for (name, args) in queued {
            self.bounded(tx.custom::<Value, Value>(cmd(name), args))
                .await?;
        }
        let results = self.bounded(tx.exec::<Value>(true)).await?;
        let results = match results {
            Value::Array(items) => items,
            other => {
                return Err(invalid(format!(
                    "snapshot: EXEC answered {:?}",
                    other.kind()
                )))
            }
        };
        let mut results = results.into_iter();
        let mut next = |what: &str| {
            results
                .next()
                .ok_or_else(|| invalid(format!("snapshot: no reply for {what}")))
        };
        let prefix = keys.inflight("");
        let consumer_id = |member: &str| member.strip_prefix(&prefix).unwrap_or(member).to_owned();
        let mut snap = QueueSnapshot {
            data: reply::hash("snapshot of data", &next("data")?)?
                .into_iter()
                .collect(),
            active: reply::texts("snapshot of active", &next("active")?)?,
            scheduled: reply::scored("snapshot of scheduled", &next("scheduled")?)?,
            dead: reply::scored("snapshot of dead", &next("dead")?)?,
            ..QueueSnapshot::default()
        };
        snap.consumers = reply::scored("snapshot of consumers", &next("consumers")?)?
            .into_iter()
            .map(|(member, at)| (consumer_id(&member), at))
            .collect();
        snap.signal = reply::int("snapshot of signal", &next("signal")?)? > 0;
        snap.reasons = reply::hash("snapshot of reasons", &next("reasons")?)?
            .into_iter()
            .map(|(id, why)| (id, String::from_utf8_lossy(&why).into_owned()))
            .collect();
        snap.orphaned = reply::hash("snapshot of orphaned", &next("orphaned")?)?
            .into_iter()
            .map(|(id, n)| {
                String::from_utf8_lossy(&n)
                    .trim()
                    .parse()
                    .map(|n| (id, n))
                    .map_err(|_| invalid("snapshot of orphaned: a count that is not a number"))
            })
            .collect::<Result<_, _>>()?;
        for member in &members {
            let ids = reply::texts("snapshot of in-flight", &next(member)?)?;
            if !ids.is_empty() {
                snap.inflight
                    .insert(consumer_id(member), ids.into_iter().collect());
            }
        }
        Ok(snap)
    }
}
