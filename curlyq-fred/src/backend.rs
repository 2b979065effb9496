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
    TakenJob, Waiter,
};
use curlyq_lua::calls::{self, OrphanSweeper, Reply, ScriptCall, ScriptId};
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

/// The scripts of `curlyq-lua`, hashed once, indexed by [`ScriptId`].
static SCRIPTS: LazyLock<Vec<Script>> = LazyLock::new(|| {
    ScriptId::ALL
        .iter()
        .map(|id| Script::from_lua(id.source()))
        .collect()
});

/// The hashed script of `id`.
fn script(id: ScriptId) -> &'static Script {
    &SCRIPTS[id as usize]
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
/// [`MAX_BATCH`](curlyq_core::MAX_BATCH) jobs are split into chunks sent as one pipeline, in one round trip.
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

    /// [`pipeline`](Self::pipeline), runnable from any executor.
    async fn run(
        &self,
        calls: &[ScriptCall],
        who: Option<(&QueueName, &ConsumerId)>,
    ) -> Result<Vec<Reply>, BackendError> {
        bridged(self.pipeline(calls, who)).await
    }

    /// Sends `calls` as one pipeline on one client; sends the calls that found their
    /// script missing again after loading it. One reply per call, in order.
    async fn pipeline(
        &self,
        calls: &[ScriptCall],
        who: Option<(&QueueName, &ConsumerId)>,
    ) -> Result<Vec<Reply>, BackendError> {
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.pick();
        let mut replies: Vec<Option<Result<Value, fred::error::Error>>> =
            (0..calls.len()).map(|_| None).collect();
        let mut pending: Vec<usize> = (0..calls.len()).collect();
        let limit = self.shared.config.get_response_timeout();
        let timed_out = || {
            BackendError::Unavailable(Box::new(crate::FredFailure::new(format!(
                "Redis did not answer within {limit:?}"
            ))))
        };
        for attempt in 0..3 {
            let pipe = client.pipeline();
            // A lone call (the common case: one job pushed, one batch acked) goes
            // straight to the client, without a pipeline's buffering.
            let mut lone = None;
            for &i in &pending {
                let call = calls
                    .get(i)
                    .ok_or_else(|| invalid("a pipeline call is missing"))?;
                let mut args: Vec<Value> =
                    Vec::with_capacity(2 + call.keys.len() + call.args.len());
                // The third attempt follows a second NOSCRIPT right after a SCRIPT LOAD
                // (the cache flushed again under load): it sends the source itself.
                let (name, head): (&'static str, Value) = if attempt == 2 {
                    ("EVAL", call.script.source().into())
                } else {
                    ("EVALSHA", script(call.script).sha1().clone().into())
                };
                args.push(head);
                args.push(Value::Integer(
                    i64::try_from(call.keys.len()).unwrap_or(i64::MAX),
                ));
                args.extend(
                    call.keys
                        .iter()
                        .chain(&call.args)
                        .map(|arg| Value::Bytes(Bytes::copy_from_slice(arg))),
                );
                // Hash on the first key (argument 2) in a cluster.
                let command = CustomCommand::new_static(name, ClusterHash::Offset(2), false);
                if pending.len() == 1 {
                    lone = Some((command, args));
                    break;
                }
                let queued = pipe.custom::<Value, Value>(command, args).await;
                queued.map_err(|e| error::from_fred(self.redactor(), &e))?;
            }
            let answers = match lone {
                Some((command, args)) => {
                    let sent = client.custom::<Value, Value>(command, args);
                    vec![tokio::time::timeout(limit, sent)
                        .await
                        .map_err(|_| timed_out())?]
                }
                None => tokio::time::timeout(limit, pipe.try_all::<Value>())
                    .await
                    .map_err(|_| timed_out())?,
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
            if attempt == 0 {
                let mut ids: Vec<ScriptId> = missing
                    .iter()
                    .filter_map(|&i| calls.get(i).map(|call| call.script))
                    .collect();
                ids.dedup();
                for id in ids {
                    tracing::debug!(sha = %script(id).sha1(), "script not in the server's cache; loading it");
                    self.load(client, id.source()).await?;
                }
            }
            pending = missing;
        }
        let mut out = Vec::with_capacity(replies.len());
        for reply in replies {
            match reply {
                Some(Ok(value)) => out.push(reply::to_reply(value)),
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

#[async_trait]
impl QueueBackend for FredBackend {
    async fn push(
        &self,
        queue: &QueueName,
        jobs: &[EncodedJob],
    ) -> Result<Vec<bool>, BackendError> {
        let keys = Keys::new(queue.as_str());
        let replies = self.run(&calls::push_calls(&keys, jobs), None).await?;
        calls::parse_flags("push", &replies, jobs.len())
    }

    async fn schedule(
        &self,
        queue: &QueueName,
        jobs: &[ScheduledJob],
    ) -> Result<Vec<bool>, BackendError> {
        let keys = Keys::new(queue.as_str());
        let replies = self.run(&calls::schedule_calls(&keys, jobs)?, None).await?;
        calls::parse_flags("schedule", &replies, jobs.len())
    }

    async fn register(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        now: f64,
        mode: Registration,
    ) -> Result<bool, BackendError> {
        let keys = Keys::new(queue.as_str());
        let call = calls::register_calls(&keys, consumer.as_str(), now, mode)?;
        let replies = self.run(&call, None).await?;
        calls::parse_one_flag("register", &replies)
    }

    async fn enqueue_due(
        &self,
        queue: &QueueName,
        now: f64,
        max: usize,
    ) -> Result<DueReport, BackendError> {
        let keys = Keys::new(queue.as_str());
        let replies = self
            .run(&calls::enqueue_due_calls(&keys, now, max)?, None)
            .await?;
        calls::parse_enqueue_due(&replies)
    }

    async fn take(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        max: usize,
    ) -> Result<Vec<TakenJob>, BackendError> {
        let keys = Keys::new(queue.as_str());
        let inflight = keys.inflight(consumer.as_str());
        let take = calls::take_calls(&keys, &inflight, max);
        let replies = self.run(&take, Some((queue, consumer))).await?;
        let taken = calls::parse_take(&replies)?;
        if !taken.not_utf8.is_empty() {
            self.kill_not_utf8(&keys, &inflight, &taken.not_utf8).await;
        }
        Ok(taken.jobs)
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
        let keys = Keys::new(queue.as_str());
        let inflight = keys.inflight(consumer.as_str());
        let replies = self
            .run(&calls::ack_calls(&keys, &inflight, ids), None)
            .await?;
        calls::parse_flags("ack", &replies, ids.len())
    }

    async fn retry(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        jobs: &[RetryJob],
    ) -> Result<Vec<bool>, BackendError> {
        let keys = Keys::new(queue.as_str());
        let inflight = keys.inflight(consumer.as_str());
        let replies = self
            .run(&calls::retry_calls(&keys, &inflight, jobs)?, None)
            .await?;
        calls::parse_flags("retry", &replies, jobs.len())
    }

    async fn kill(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        jobs: &[KillJob],
        now: f64,
    ) -> Result<Vec<bool>, BackendError> {
        let keys = Keys::new(queue.as_str());
        let inflight = keys.inflight(consumer.as_str());
        let replies = self
            .run(&calls::kill_calls(&keys, &inflight, jobs, now)?, None)
            .await?;
        calls::parse_flags("kill", &replies, jobs.len())
    }

    async fn give_back(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        ids: &[String],
    ) -> Result<usize, BackendError> {
        let keys = Keys::new(queue.as_str());
        let inflight = keys.inflight(consumer.as_str());
        let replies = self
            .run(&calls::give_back_calls(&keys, &inflight, ids), None)
            .await?;
        calls::parse_sum("give_back", &replies)
    }

    async fn requeue_orphans(
        &self,
        queue: &QueueName,
        sweep: OrphanSweep,
    ) -> Result<OrphanReport, BackendError> {
        bridged(self.sweep(queue, sweep)).await
    }

    async fn snapshot(&self, queue: &QueueName) -> Result<QueueSnapshot, BackendError> {
        bridged(self.read_all(queue)).await
    }

    async fn settings_warnings(&self) -> Result<Vec<String>, BackendError> {
        bridged(self.read_settings()).await
    }

    async fn trim_dead(&self, queue: &QueueName, trim: DeadTrim) -> Result<usize, BackendError> {
        let keys = Keys::new(queue.as_str());
        let replies = self
            .run(&calls::trim_dead_calls(&keys, trim)?, None)
            .await?;
        calls::parse_sum("trim_dead", &replies)
    }

    async fn unregister(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
    ) -> Result<bool, BackendError> {
        let keys = Keys::new(queue.as_str());
        let inflight = keys.inflight(consumer.as_str());
        let replies = self
            .run(&calls::unregister_calls(&keys, &inflight), None)
            .await?;
        calls::parse_one_flag("unregister", &replies)
    }
}

impl FredBackend {
    /// Kills taken jobs whose IDs are not UTF-8 (written by a foreign producer): job IDs
    /// are strings in curlyq, so such a job could neither run under its ID nor be acked.
    /// They die by their raw bytes with their data as stored; if that fails they stay in
    /// flight, and the custodian hands them on once this consumer is gone.
    async fn kill_not_utf8(&self, keys: &Keys, inflight: &str, ids: &[Vec<u8>]) {
        let now = curlyq_core::unix_seconds(std::time::SystemTime::now());
        let kill = calls::kill_not_utf8_calls(keys, inflight, ids, now);
        match self.run(&kill, None).await {
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
        let mut sweeper = OrphanSweeper::new(Keys::new(queue.as_str()), sweep)?;
        let client = self.pick();
        for _ in 0..calls::MAX_SWEEP_ROUNDS {
            let list = sweeper.list();
            let args = list
                .args
                .iter()
                .map(|arg| Value::Bytes(Bytes::copy_from_slice(arg)))
                .collect();
            let listed = self.command(client, list.name, args).await?;
            let members = OrphanSweeper::members(&reply::to_reply(listed))?;
            if members.is_empty() {
                break;
            }
            let replies = self.run(&[sweeper.call(members)], None).await?;
            if !sweeper.record(&replies)? {
                break;
            }
        }
        Ok(sweeper.report())
    }

    /// The snapshot: the consumers name the in-flight sets to read, then one `MULTI`
    /// reads everything (the consumers again included) at one instant. A consumer that
    /// joined between the two reads is listed with an empty in-flight set.
    /// Reads `INFO memory` for [`QueueBackend::settings_warnings`].
    async fn read_settings(&self) -> Result<Vec<String>, BackendError> {
        let info = self
            .command(self.pick(), "INFO", vec!["memory".into()])
            .await?;
        let text = match info {
            Value::String(text) => text.to_string(),
            Value::Bytes(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            other => return Err(invalid(format!("INFO memory replied {other:?}"))),
        };
        Ok(calls::settings_warnings(&text))
    }

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
