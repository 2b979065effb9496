//! [`RedisBackend`]: the [`QueueBackend`] on a `redis` connection manager.

use std::fmt;
use std::sync::LazyLock;

use curlyq_core::{
    async_trait, BackendError, ConsumerId, DeadTrim, DueReport, EncodedJob, KillJob, OrphanReport,
    OrphanSweep, QueueBackend, QueueName, QueueSnapshot, Registration, RetryJob, ScheduledJob,
    TakenJob, Waiter,
};
use curlyq_lua::calls::{self, OrphanSweeper, Reply, ScriptCall, ScriptId};
use curlyq_lua::Keys;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, Cmd, ConnectionAddr, Script, Value};

use crate::config::RedisConfig;
use crate::error::{self, invalid, Secrets};
use crate::reply;
use crate::waiter::RedisWaiter;

/// The scripts, hashed once, indexed by [`ScriptId`].
static SCRIPTS: LazyLock<Vec<Script>> = LazyLock::new(|| {
    ScriptId::ALL
        .iter()
        .map(|id| Script::new(id.source()))
        .collect()
});

/// The hashed script of `id`.
fn script(id: ScriptId) -> &'static Script {
    &SCRIPTS[id as usize]
}

/// curlyq's [`QueueBackend`] on Redis (or Valkey, Dragonfly, ...), through the `redis`
/// crate.
///
/// Ordinary operations share one auto-reconnecting multiplexed connection
/// ([`ConnectionManager`]); each [`waiter`](QueueBackend::waiter) opens its own
/// connection for the blocking wait. Cloning is cheap and shares the connection.
///
/// Each operation is one Lua script call (`EVALSHA`, loading the script again after
/// `NOSCRIPT`). Batches larger than [`MAX_BATCH`](curlyq_core::MAX_BATCH) are split into chunks that are sent as
/// one pipeline, in one round trip, and run in order, each chunk atomically.
#[derive(Clone)]
pub struct RedisBackend {
    client: Client,
    conn: ConnectionManager,
    config: RedisConfig,
    secrets: Secrets,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let info = self.client.get_connection_info();
        let settings = info.redis_settings();
        f.debug_struct("RedisBackend")
            .field("addr", &address(info.addr()))
            .field("db", &settings.db())
            .field("username", &settings.username())
            .field(
                "password",
                &if settings.password().is_some() {
                    "<hidden>"
                } else {
                    "<none>"
                },
            )
            .field("config", &self.config)
            .finish()
    }
}

impl fmt::Display for RedisBackend {
    /// The server's URL with the password replaced by `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let info = self.client.get_connection_info();
        let settings = info.redis_settings();
        let scheme = match info.addr() {
            ConnectionAddr::TcpTls { .. } => "rediss",
            ConnectionAddr::Unix(_) => "redis+unix",
            _ => "redis",
        };
        write!(f, "{scheme}://")?;
        match (settings.username(), settings.password().is_some()) {
            (Some(user), true) => write!(f, "{user}:***@")?,
            (None, true) => f.write_str(":***@")?,
            (Some(user), false) => write!(f, "{user}@")?,
            (None, false) => {}
        }
        write!(f, "{}/{}", address(info.addr()), settings.db())
    }
}

fn address(addr: &ConnectionAddr) -> String {
    match addr {
        ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
        ConnectionAddr::TcpTls { host, port, .. } => format!("{host}:{port}"),
        ConnectionAddr::Unix(path) => path.display().to_string(),
        _ => "<unknown address>".to_owned(),
    }
}

impl RedisBackend {
    /// Connects to the Redis server of `url` with the default [`RedisConfig`] and checks
    /// it answers `PING`.
    ///
    /// The URL carries everything about the connection: `redis://[user][:password@]host[:port][/db]`,
    /// `rediss://...` for TLS (with this crate's `tls` feature), `redis+unix:///path`.
    ///
    /// # Errors
    /// [`BackendError::Unavailable`] when the server cannot be reached, does not answer or
    /// refuses the credentials; [`BackendError::Other`] for a URL that does not parse.
    /// No error message contains the password.
    pub async fn connect(url: &str) -> Result<Self, BackendError> {
        Self::connect_with(url, RedisConfig::default()).await
    }

    /// [`connect`](Self::connect) with explicit timeouts.
    pub async fn connect_with(url: &str, config: RedisConfig) -> Result<Self, BackendError> {
        let raw_secrets = Secrets::new(error::url_password(url));
        let client = Client::open(url).map_err(|e| {
            BackendError::Other(Box::new(raw_secrets.failure("invalid Redis URL", &e)))
        })?;
        Self::connect_client(client, config, error::url_password(url)).await
    }

    /// Connects with an existing [`Client`] (default [`RedisConfig`]) and checks the server
    /// answers `PING`.
    pub async fn from_client(client: Client) -> Result<Self, BackendError> {
        Self::from_client_with(client, RedisConfig::default()).await
    }

    /// [`from_client`](Self::from_client) with explicit timeouts.
    pub async fn from_client_with(
        client: Client,
        config: RedisConfig,
    ) -> Result<Self, BackendError> {
        Self::connect_client(client, config, None).await
    }

    /// Wraps a [`ConnectionManager`] the application already has. `client` must point to
    /// the same server: waiters open their own connections from it.
    ///
    /// The manager keeps its own timeouts; note that `redis` defaults to a 500 ms response
    /// timeout, which suits these operations. No `PING` is sent.
    pub fn from_connection_manager(client: Client, manager: ConnectionManager) -> Self {
        let secrets = secrets_of(&client, None);
        RedisBackend {
            client,
            conn: manager,
            config: RedisConfig::default(),
            secrets,
        }
    }

    async fn connect_client(
        client: Client,
        config: RedisConfig,
        raw_password: Option<String>,
    ) -> Result<Self, BackendError> {
        let secrets = secrets_of(&client, raw_password);
        let at = address(client.get_connection_info().addr());
        let connect_failed = format!("could not connect to Redis at {at}");
        // A first connection with a bounded connect time, to fail fast (the manager
        // below retries with backoff before giving up).
        let mut probe = client
            .get_multiplexed_async_connection_with_config(&connection_config(&config))
            .await
            .map_err(|e| unavailable(&secrets, &connect_failed, &e))?;
        let pong = probe
            .send_packed_command(&redis::cmd("PING"))
            .await
            .map_err(|e| {
                unavailable(&secrets, &format!("Redis at {at} did not answer PING"), &e)
            })?;
        if let Value::ServerError(e) = &pong {
            return Err(error::from_reply(&secrets, e));
        }
        drop(probe);

        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.get_connection_timeout()))
            .set_response_timeout(Some(config.get_response_timeout()))
            .set_number_of_retries(config.get_reconnect_retries())
            .set_max_delay(config.get_reconnect_max_delay());
        let conn = ConnectionManager::new_with_config(client.clone(), manager_config)
            .await
            .map_err(|e| unavailable(&secrets, &connect_failed, &e))?;
        Ok(RedisBackend {
            client,
            conn,
            config,
            secrets,
        })
    }

    /// The client this backend was made from.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The connection settings.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// Loads every curlyq script into the server's script cache (`SCRIPT LOAD`). Optional:
    /// operations load a missing script on first use.
    pub async fn load_scripts(&self) -> Result<(), BackendError> {
        let mut conn = self.conn.clone();
        for (_, source) in curlyq_lua::ALL {
            let mut cmd = redis::cmd("SCRIPT");
            cmd.arg("LOAD").arg(*source);
            self.command(&mut conn, &cmd).await?;
        }
        Ok(())
    }

    /// Sends one plain command and returns its reply, mapping error replies.
    async fn command(
        &self,
        conn: &mut ConnectionManager,
        cmd: &Cmd,
    ) -> Result<Value, BackendError> {
        match conn.send_packed_command(cmd).await {
            Ok(Value::ServerError(e)) => Err(error::from_reply(&self.secrets, &e)),
            Ok(value) => Ok(value),
            Err(e) => Err(error::from_redis(&self.secrets, &e)),
        }
    }

    /// Runs `calls` as one pipeline of EVALSHA commands; resends the calls that found
    /// their script missing after loading it. Returns one reply per call, in order.
    async fn run(
        &self,
        calls: &[ScriptCall],
        who: Option<(&QueueName, &ConsumerId)>,
    ) -> Result<Vec<Reply>, BackendError> {
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let mut replies: Vec<Option<Value>> = vec![None; calls.len()];
        let mut pending: Vec<usize> = (0..calls.len()).collect();
        for attempt in 0..3 {
            let mut pipe = redis::pipe();
            for &i in &pending {
                if let Some(call) = calls.get(i) {
                    // The third attempt follows a NOSCRIPT right after our SCRIPT LOAD
                    // (SCRIPT FLUSH under load): it sends the source itself.
                    pipe.add_command(script_cmd(call, attempt == 2));
                }
            }
            let answers = conn
                .send_packed_commands(&pipe, 0, pending.len())
                .await
                .map_err(|e| error::from_redis(&self.secrets, &e))?;
            if answers.len() != pending.len() {
                return Err(invalid(format!(
                    "expected {} replies to a pipeline, got {}",
                    pending.len(),
                    answers.len()
                )));
            }
            let mut missing = Vec::new();
            for (i, answer) in pending.iter().copied().zip(answers) {
                match &answer {
                    Value::ServerError(e) if e.code() == "NOSCRIPT" => missing.push(i),
                    _ => {
                        if let Some(slot) = replies.get_mut(i) {
                            *slot = Some(answer);
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
                    let script = script(id);
                    tracing::debug!(
                        sha = script.get_hash(),
                        "script not cached on the server; loading it"
                    );
                    script
                        .load_async(&mut conn)
                        .await
                        .map_err(|e| error::from_redis(&self.secrets, &e))?;
                }
            }
            pending = missing;
        }
        let mut out = Vec::with_capacity(replies.len());
        for reply in replies {
            match reply {
                Some(Value::ServerError(e)) => {
                    return Err(match (e.code(), who) {
                        ("NOTREG", Some((queue, consumer))) => BackendError::NotRegistered {
                            queue: queue.to_string(),
                            consumer: consumer.to_string(),
                        },
                        _ => error::from_reply(&self.secrets, &e),
                    })
                }
                Some(value) => out.push(reply::to_reply(value)),
                None => return Err(invalid("a pipeline reply is missing")),
            }
        }
        Ok(out)
    }
}

impl RedisBackend {
    /// Kills taken jobs whose IDs are not UTF-8 (a foreign producer wrote them): job IDs
    /// are strings here, so such a job could be neither run under its ID nor acked.
    /// Killed by their raw bytes, data kept as stored. On failure they stay in flight
    /// and come back through the custodian once this consumer is gone.
    async fn kill_not_utf8(&self, keys: &Keys, inflight: &str, ids: &[Vec<u8>]) {
        let now = curlyq_core::unix_seconds(std::time::SystemTime::now());
        let kill = calls::kill_not_utf8_calls(keys, inflight, ids, now);
        match self.run(&kill, None).await {
            Ok(_) => tracing::warn!(
                jobs = ids.len(),
                "curlyq killed taken jobs whose IDs are not UTF-8"
            ),
            Err(e) => tracing::warn!(jobs = ids.len(), error = %e,
                "curlyq could not kill taken jobs whose IDs are not UTF-8; they stay in flight"),
        }
    }
}

/// `call` as `EVALSHA sha n keys... args...`, or `EVAL source n ...` `with_source`.
fn script_cmd(call: &ScriptCall, with_source: bool) -> Cmd {
    let mut cmd = if with_source {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(call.script.source());
        cmd
    } else {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(script(call.script).get_hash());
        cmd
    };
    cmd.arg(call.keys.len());
    for arg in call.keys.iter().chain(&call.args) {
        cmd.arg(arg.as_slice());
    }
    cmd
}

fn secrets_of(client: &Client, raw_password: Option<String>) -> Secrets {
    let decoded = client
        .get_connection_info()
        .redis_settings()
        .password()
        .map(str::to_owned);
    Secrets::new(decoded.into_iter().chain(raw_password))
}

fn unavailable(secrets: &Secrets, context: &str, err: &redis::RedisError) -> BackendError {
    BackendError::Unavailable(Box::new(secrets.failure(context, err)))
}

pub(crate) fn connection_config(config: &RedisConfig) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(config.get_connection_timeout()))
        .set_response_timeout(Some(config.get_response_timeout()))
}

/// Opens a dedicated connection (for a waiter).
pub(crate) async fn dedicated_connection(
    client: &Client,
    config: &RedisConfig,
    secrets: &Secrets,
) -> Result<MultiplexedConnection, BackendError> {
    client
        .get_multiplexed_async_connection_with_config(&connection_config(config))
        .await
        .map_err(|e| {
            let at = address(client.get_connection_info().addr());
            unavailable(secrets, &format!("could not connect to Redis at {at}"), &e)
        })
}

#[async_trait]
impl QueueBackend for RedisBackend {
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
        let keys = Keys::new(queue.as_str());
        let waiter = RedisWaiter::connect(
            self.client.clone(),
            self.config.clone(),
            self.secrets.clone(),
            keys.signal,
        )
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
        let mut sweeper = OrphanSweeper::new(Keys::new(queue.as_str()), sweep)?;
        let mut conn = self.conn.clone();
        for _ in 0..calls::MAX_SWEEP_ROUNDS {
            let list = sweeper.list();
            let mut cmd = redis::cmd(list.name);
            for arg in &list.args {
                cmd.arg(arg.as_slice());
            }
            let listed = self.command(&mut conn, &cmd).await?;
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
    async fn settings_warnings(&self) -> Result<Vec<String>, BackendError> {
        let mut conn = self.conn.clone();
        let mut info = redis::cmd("INFO");
        info.arg("memory");
        let text = match self.command(&mut conn, &info).await? {
            Value::BulkString(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Value::VerbatimString { text, .. } => text,
            other => return Err(invalid(format!("INFO memory replied {other:?}"))),
        };
        Ok(calls::settings_warnings(&text))
    }

    async fn snapshot(&self, queue: &QueueName) -> Result<QueueSnapshot, BackendError> {
        let keys = Keys::new(queue.as_str());
        let mut conn = self.conn.clone();
        // The consumers name the in-flight keys to read; the transaction then reads them
        // all (and the consumers again) at one instant. A consumer that joined between
        // the two reads is listed with an empty in-flight set.
        let mut list = redis::cmd("ZRANGE");
        list.arg(&keys.consumers).arg(0).arg(-1);
        let members: Vec<String> = parse("consumers", self.command(&mut conn, &list).await?)?;
        let mut tx = redis::pipe();
        tx.atomic()
            .hgetall(&keys.data)
            .lrange(&keys.active, 0, -1)
            .zrange_withscores(&keys.scheduled, 0, -1)
            .zrange_withscores(&keys.dead, 0, -1)
            .zrange_withscores(&keys.consumers, 0, -1)
            .llen(&keys.signal)
            .hgetall(&keys.reasons)
            .hgetall(&keys.orphaned);
        for member in &members {
            tx.smembers(member);
        }
        let replies: Vec<Value> = tx
            .query_async(&mut conn)
            .await
            .map_err(|e| error::from_redis(&self.secrets, &e))?;
        let mut replies = replies.into_iter();
        let mut next = |what: &str| {
            replies
                .next()
                .ok_or_else(|| invalid(format!("snapshot: no reply for {what}")))
        };
        let prefix = keys.inflight("");
        let consumer_id = |member: &str| member.strip_prefix(&prefix).unwrap_or(member).to_owned();
        let mut snap = QueueSnapshot {
            data: parse("data", next("data")?)?,
            active: parse("active", next("active")?)?,
            scheduled: parse("scheduled", next("scheduled")?)?,
            dead: parse("dead", next("dead")?)?,
            ..QueueSnapshot::default()
        };
        let consumers: Vec<(String, f64)> = parse("consumers", next("consumers")?)?;
        snap.consumers = consumers
            .into_iter()
            .map(|(member, score)| (consumer_id(&member), score))
            .collect();
        snap.signal = parse::<i64>("signal", next("signal")?)? > 0;
        snap.reasons = parse("reasons", next("reasons")?)?;
        snap.orphaned = parse("orphaned", next("orphaned")?)?;
        for member in &members {
            let ids: std::collections::BTreeSet<String> = parse("in-flight", next(member)?)?;
            if !ids.is_empty() {
                snap.inflight.insert(consumer_id(member), ids);
            }
        }
        Ok(snap)
    }
}

/// Converts a reply, mapping error replies and unexpected shapes to typed errors.
fn parse<T: redis::FromRedisValue>(what: &str, value: Value) -> Result<T, BackendError> {
    if let Value::ServerError(e) = &value {
        return Err(BackendError::Rejected(format!("snapshot of {what}: {e:?}")));
    }
    redis::from_redis_value(value).map_err(|e| invalid(format!("snapshot of {what}: {e}")))
}
