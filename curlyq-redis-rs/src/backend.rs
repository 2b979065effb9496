//! [`RedisBackend`]: the [`QueueBackend`] on a `redis` connection manager.

use std::fmt;
use std::sync::LazyLock;

use curlyq_core::{
    async_trait, BackendError, ConsumerId, DeadTrim, DueReport, EncodedJob, KillJob, OrphanReport,
    OrphanSweep, QueueBackend, QueueName, QueueSnapshot, Registration, RetryJob, ScheduledJob,
    TakenJob, Waiter, MAX_BATCH,
};
use curlyq_lua::Keys;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, Cmd, ConnectionAddr, Script, Value};

use crate::config::RedisConfig;
use crate::error::{self, invalid, Secrets};
use crate::reply;
use crate::waiter::RedisWaiter;

/// The scripts, hashed once.
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
    push: Script::new(curlyq_lua::PUSH),
    schedule: Script::new(curlyq_lua::SCHEDULE),
    register: Script::new(curlyq_lua::REGISTER),
    enqueue_due: Script::new(curlyq_lua::ENQUEUE_DUE),
    take: Script::new(curlyq_lua::TAKE),
    ack: Script::new(curlyq_lua::ACK),
    retry: Script::new(curlyq_lua::RETRY),
    kill: Script::new(curlyq_lua::KILL),
    give_back: Script::new(curlyq_lua::GIVE_BACK),
    requeue_orphans: Script::new(curlyq_lua::REQUEUE_ORPHANS),
    trim_dead: Script::new(curlyq_lua::TRIM_DEAD),
    unregister: Script::new(curlyq_lua::UNREGISTER),
});

/// How many expired consumers one orphan-sweep script call visits.
const CONSUMERS_PER_SWEEP_CALL: usize = 100;

/// A bound on the rounds of one orphan sweep (each round moves a job or removes a
/// consumer, so this is only a guard against a store that changes under us forever).
const MAX_SWEEP_ROUNDS: usize = 10_000;

/// curlyq's [`QueueBackend`] on Redis (or Valkey, Dragonfly, ...), through the `redis`
/// crate.
///
/// Ordinary operations share one auto-reconnecting multiplexed connection
/// ([`ConnectionManager`]); each [`waiter`](QueueBackend::waiter) opens its own
/// connection for the blocking wait. Cloning is cheap and shares the connection.
///
/// Each operation is one Lua script call (`EVALSHA`, loading the script again after
/// `NOSCRIPT`). Batches larger than [`MAX_BATCH`] are split into chunks that are sent as
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

    /// Runs `calls` (EVALSHA commands of `script`) as one pipeline; resends the calls that
    /// found the script missing after loading it. Returns one reply per call, in order.
    async fn run(
        &self,
        script: &Script,
        calls: Vec<Cmd>,
        who: Option<(&QueueName, &ConsumerId)>,
    ) -> Result<Vec<Value>, BackendError> {
        let mut conn = self.conn.clone();
        let mut replies: Vec<Option<Value>> = vec![None; calls.len()];
        let mut pending: Vec<usize> = (0..calls.len()).collect();
        for attempt in 0..3 {
            let mut pipe = redis::pipe();
            for &i in &pending {
                if let Some(call) = calls.get(i) {
                    if attempt == 2 {
                        // The cache was flushed again between our SCRIPT LOAD and the
                        // call (SCRIPT FLUSH under load): send the source itself.
                        pipe.add_command(with_source(call, script)?);
                    } else {
                        pipe.add_command(call.clone());
                    }
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
            if attempt == 1 {
                pending = missing;
                continue;
            }
            tracing::debug!(
                sha = script.get_hash(),
                "script not cached on the server; loading it"
            );
            script
                .load_async(&mut conn)
                .await
                .map_err(|e| error::from_redis(&self.secrets, &e))?;
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
                Some(value) => out.push(value),
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
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let script = &SCRIPTS.kill;
        let mut cmd = evalsha(
            script,
            &[
                inflight,
                &keys.dead,
                &keys.data,
                &keys.reasons,
                &keys.orphaned,
            ],
        );
        cmd.arg(format!("{now}"));
        for id in ids {
            cmd.arg(id.as_slice()).arg("0").arg("").arg(
                "job ID is not valid UTF-8 (curlyq job IDs are strings); killed when taken, data kept as stored",
            );
        }
        match self.run(script, vec![cmd], None).await {
            Ok(_) => tracing::warn!(
                jobs = ids.len(),
                "curlyq killed taken jobs whose IDs are not UTF-8"
            ),
            Err(e) => tracing::warn!(jobs = ids.len(), error = %e,
                "curlyq could not kill taken jobs whose IDs are not UTF-8; they stay in flight"),
        }
    }
}

/// The sources of the scripts, by SHA1.
static SOURCES: LazyLock<std::collections::HashMap<String, &'static str>> = LazyLock::new(|| {
    curlyq_lua::ALL
        .iter()
        .map(|(_, source)| (Script::new(source).get_hash().to_owned(), *source))
        .collect()
});

/// `call` (an `EVALSHA sha n keys... args...`) as `EVAL source n keys... args...`.
fn with_source(call: &Cmd, script: &Script) -> Result<Cmd, BackendError> {
    let source = SOURCES
        .get(script.get_hash())
        .ok_or_else(|| invalid("NOSCRIPT for a script curlyq does not know"))?;
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(*source);
    for arg in call.args_iter().skip(2) {
        match arg {
            redis::Arg::Simple(bytes) => cmd.arg(bytes),
            _ => return Err(invalid("a script call with a cursor argument")),
        };
    }
    Ok(cmd)
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

/// A time or score as Redis reads it: shortest round-trip decimal, `inf`/`-inf` for
/// infinities. NaN is refused before anything is sent.
fn score(what: &str, value: f64) -> Result<String, BackendError> {
    if value.is_nan() {
        return Err(BackendError::Rejected(format!("{what} is NaN, not a time")));
    }
    Ok(format!("{value}"))
}

/// An EVALSHA of `script` with `keys`.
fn evalsha(script: &Script, keys: &[&str]) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys.len()).arg(keys);
    cmd
}

/// `max` split into budgets of at most [`MAX_BATCH`] (one budget of 0 when `max` is 0).
fn budgets(max: usize) -> Vec<usize> {
    if max == 0 {
        return vec![0];
    }
    let mut out = Vec::with_capacity(max.div_ceil(MAX_BATCH));
    let mut left = max;
    while left > 0 {
        let n = left.min(MAX_BATCH);
        out.push(n);
        left -= n;
    }
    out
}

fn flags_of(op: &str, replies: &[Value], sizes: &[usize]) -> Result<Vec<bool>, BackendError> {
    let mut out = Vec::with_capacity(sizes.iter().sum());
    for (reply, &size) in replies.iter().zip(sizes) {
        out.extend(reply::flags(op, reply, size)?);
    }
    Ok(out)
}

#[async_trait]
impl QueueBackend for RedisBackend {
    async fn push(
        &self,
        queue: &QueueName,
        jobs: &[EncodedJob],
    ) -> Result<Vec<bool>, BackendError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let keys = Keys::new(queue.as_str());
        let script = &SCRIPTS.push;
        let mut calls = Vec::new();
        let mut sizes = Vec::new();
        for chunk in jobs.chunks(MAX_BATCH) {
            let mut cmd = evalsha(script, &[&keys.data, &keys.active, &keys.signal]);
            for job in chunk {
                cmd.arg(&job.id).arg(&job.data);
            }
            calls.push(cmd);
            sizes.push(chunk.len());
        }
        let replies = self.run(script, calls, None).await?;
        flags_of("push", &replies, &sizes)
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
        let script = &SCRIPTS.schedule;
        let mut calls = Vec::new();
        let mut sizes = Vec::new();
        for chunk in jobs.chunks(MAX_BATCH) {
            let mut cmd = evalsha(script, &[&keys.data, &keys.scheduled, &keys.signal]);
            for job in chunk {
                cmd.arg(&job.job.id)
                    .arg(score("schedule time", job.at)?)
                    .arg(&job.job.data);
            }
            calls.push(cmd);
            sizes.push(chunk.len());
        }
        let replies = self.run(script, calls, None).await?;
        flags_of("schedule", &replies, &sizes)
    }

    async fn register(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        now: f64,
        mode: Registration,
    ) -> Result<bool, BackendError> {
        let keys = Keys::new(queue.as_str());
        let script = &SCRIPTS.register;
        let mut cmd = evalsha(script, &[&keys.consumers]);
        cmd.arg(score("heartbeat time", now)?)
            .arg(match mode {
                Registration::Join => "join",
                Registration::Heartbeat => "heartbeat",
            })
            .arg(keys.inflight(consumer.as_str()));
        let replies = self.run(script, vec![cmd], None).await?;
        let reply = replies
            .first()
            .ok_or_else(|| invalid("register: no reply"))?;
        Ok(reply::int("register", reply)? == 1)
    }

    async fn enqueue_due(
        &self,
        queue: &QueueName,
        now: f64,
        max: usize,
    ) -> Result<DueReport, BackendError> {
        let keys = Keys::new(queue.as_str());
        let script = &SCRIPTS.enqueue_due;
        let now = score("now", now)?;
        let calls = budgets(max)
            .into_iter()
            .map(|budget| {
                let mut cmd = evalsha(script, &[&keys.scheduled, &keys.active, &keys.signal]);
                cmd.arg(&now).arg(budget);
                cmd
            })
            .collect();
        let replies = self.run(script, calls, None).await?;
        let mut report = DueReport::default();
        for reply in &replies {
            let parts = reply::array("enqueue_due", reply)?;
            let moved = parts
                .first()
                .ok_or_else(|| invalid("enqueue_due: empty reply"))?;
            report.moved += reply::count("enqueue_due", moved)?;
            report.next_due = match parts.get(1) {
                Some(next) => reply::optional_score("enqueue_due", next)?,
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
        let script = &SCRIPTS.take;
        let calls = budgets(max)
            .into_iter()
            .map(|budget| {
                let mut cmd = evalsha(
                    script,
                    &[
                        &keys.active,
                        &inflight,
                        &keys.data,
                        &keys.signal,
                        &keys.consumers,
                    ],
                );
                cmd.arg(budget);
                cmd
            })
            .collect();
        let replies = self.run(script, calls, Some((queue, consumer))).await?;
        let mut taken = Vec::new();
        let mut not_utf8 = Vec::new();
        for reply in &replies {
            let items = reply::array("take", reply)?;
            if items.len() % 2 != 0 {
                return Err(invalid("take: an odd number of elements"));
            }
            for pair in items.chunks(2) {
                let (id, data) = match pair {
                    [id, data] => (id, data),
                    _ => return Err(invalid("take: an odd number of elements")),
                };
                let id = reply::optional_bytes("take", id)?
                    .ok_or_else(|| invalid("take: a nil job ID"))?;
                match String::from_utf8(id) {
                    Ok(id) => taken.push(TakenJob {
                        id,
                        data: reply::optional_bytes("take", data)?,
                    }),
                    Err(e) => not_utf8.push(e.into_bytes()),
                }
            }
        }
        if !not_utf8.is_empty() {
            self.kill_not_utf8(&keys, &inflight, &not_utf8).await;
        }
        Ok(taken)
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
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys = Keys::new(queue.as_str());
        let inflight = keys.inflight(consumer.as_str());
        let script = &SCRIPTS.ack;
        let mut calls = Vec::new();
        let mut sizes = Vec::new();
        for chunk in ids.chunks(MAX_BATCH) {
            let mut cmd = evalsha(script, &[&inflight, &keys.data, &keys.orphaned]);
            cmd.arg(chunk);
            calls.push(cmd);
            sizes.push(chunk.len());
        }
        let replies = self.run(script, calls, None).await?;
        flags_of("ack", &replies, &sizes)
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
        let script = &SCRIPTS.retry;
        let mut calls = Vec::new();
        let mut sizes = Vec::new();
        for chunk in jobs.chunks(MAX_BATCH) {
            let mut cmd = evalsha(
                script,
                &[&inflight, &keys.scheduled, &keys.data, &keys.orphaned],
            );
            for job in chunk {
                cmd.arg(&job.id)
                    .arg(score("retry time", job.at)?)
                    .arg(&job.data);
            }
            calls.push(cmd);
            sizes.push(chunk.len());
        }
        let replies = self.run(script, calls, None).await?;
        flags_of("retry", &replies, &sizes)
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
        let script = &SCRIPTS.kill;
        let now = score("kill time", now)?;
        let mut calls = Vec::new();
        let mut sizes = Vec::new();
        for chunk in jobs.chunks(MAX_BATCH) {
            let mut cmd = evalsha(
                script,
                &[
                    &inflight,
                    &keys.dead,
                    &keys.data,
                    &keys.reasons,
                    &keys.orphaned,
                ],
            );
            cmd.arg(&now);
            for job in chunk {
                cmd.arg(&job.id);
                match &job.data {
                    Some(data) => cmd.arg("1").arg(data),
                    None => cmd.arg("0").arg(""),
                };
                cmd.arg(&job.reason);
            }
            calls.push(cmd);
            sizes.push(chunk.len());
        }
        let replies = self.run(script, calls, None).await?;
        flags_of("kill", &replies, &sizes)
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
        let script = &SCRIPTS.give_back;
        let calls = ids
            .chunks(MAX_BATCH)
            .map(|chunk| {
                let mut cmd = evalsha(script, &[&inflight, &keys.active, &keys.signal]);
                cmd.arg(chunk);
                cmd
            })
            .collect();
        let replies = self.run(script, calls, None).await?;
        replies
            .iter()
            .try_fold(0, |sum, reply| Ok(sum + reply::count("give_back", reply)?))
    }

    async fn requeue_orphans(
        &self,
        queue: &QueueName,
        sweep: OrphanSweep,
    ) -> Result<OrphanReport, BackendError> {
        let keys = Keys::new(queue.as_str());
        let script = &SCRIPTS.requeue_orphans;
        let expired_before = score("expired_before", sweep.expired_before)?;
        let now = score("now", sweep.now)?;
        let mut conn = self.conn.clone();
        let mut report = OrphanReport::default();
        let mut left = sweep.max_jobs;
        for _ in 0..MAX_SWEEP_ROUNDS {
            // Step 1: the expired consumers, oldest first (the script re-checks each).
            let mut list = redis::cmd("ZRANGEBYSCORE");
            list.arg(&keys.consumers)
                .arg("-inf")
                .arg(&expired_before)
                .arg("LIMIT")
                .arg(0)
                .arg(CONSUMERS_PER_SWEEP_CALL);
            let listed = self.command(&mut conn, &list).await?;
            let mut members = Vec::new();
            for member in reply::array("requeue_orphans", &listed)? {
                let member = reply::optional_bytes("requeue_orphans", member)?
                    .ok_or_else(|| invalid("requeue_orphans: a nil consumer"))?;
                members.push(member);
            }
            if members.is_empty() {
                break;
            }
            // Step 2: the script, with every in-flight key declared.
            let budget = left.min(MAX_BATCH);
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(script.get_hash())
                .arg(6 + members.len())
                .arg(&keys.consumers)
                .arg(&keys.active)
                .arg(&keys.dead)
                .arg(&keys.reasons)
                .arg(&keys.orphaned)
                .arg(&keys.signal);
            for member in &members {
                cmd.arg(member.as_slice());
            }
            cmd.arg(&expired_before)
                .arg(budget)
                .arg(sweep.max_orphan_requeues)
                .arg(&now);
            let replies = self.run(script, vec![cmd], None).await?;
            let reply = replies
                .first()
                .ok_or_else(|| invalid("requeue_orphans: no reply"))?;
            let parts = reply::array("requeue_orphans", reply)?;
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

    async fn trim_dead(&self, queue: &QueueName, trim: DeadTrim) -> Result<usize, BackendError> {
        if trim.max_jobs == 0 {
            return Ok(0);
        }
        let keys = Keys::new(queue.as_str());
        let script = &SCRIPTS.trim_dead;
        let killed_before = score("killed_before", trim.killed_before)?;
        let calls = budgets(trim.max_jobs)
            .into_iter()
            .map(|budget| {
                let mut cmd = evalsha(
                    script,
                    &[&keys.dead, &keys.data, &keys.reasons, &keys.orphaned],
                );
                cmd.arg(&killed_before).arg(trim.keep_at_most).arg(budget);
                cmd
            })
            .collect();
        let replies = self.run(script, calls, None).await?;
        replies
            .iter()
            .try_fold(0, |sum, reply| Ok(sum + reply::count("trim_dead", reply)?))
    }

    async fn unregister(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
    ) -> Result<bool, BackendError> {
        let keys = Keys::new(queue.as_str());
        let inflight = keys.inflight(consumer.as_str());
        let script = &SCRIPTS.unregister;
        let cmd = evalsha(script, &[&keys.consumers, &inflight]);
        let replies = self.run(script, vec![cmd], None).await?;
        let reply = replies
            .first()
            .ok_or_else(|| invalid("unregister: no reply"))?;
        Ok(reply::int("unregister", reply)? == 1)
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
