//! [`ScriptBackend`]: curlyq's [`QueueBackend`] written once over any [`Transport`].

use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use curlyq_core::admin::{
    ActionReport, ConsumerInfo, DeleteReport, JobDetail, JobPage, JobState, PageRequest, Problem,
    QueueStats, RemoveReport, Selection,
};
use curlyq_core::{
    BackendError, ConsumerId, DeadTrim, DueReport, EncodedJob, KillJob, OrphanReport, OrphanSweep,
    QueueBackend, QueueName, QueueSnapshot, Registration, RetryJob, ScheduledJob, TakeReport,
    TakenJob, Waiter,
};

use crate::admin::{self, ProblemAction};
use crate::calls::{self, OrphanSweeper, Reply, ScriptCall, ScriptId};
use crate::redact::{RedisFailure, Secrets};
use crate::transport::{Command, Connect, DedicatedConnection, Transport};
use crate::Keys;

/// The SHA1 of each script, in [`ScriptId::ALL`] order.
static SHAS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ScriptId::ALL
        .iter()
        .map(|id| sha1_smol::Sha1::from(id.source()).digest().to_string())
        .collect()
});

/// The SHA1 (hex) by which `EVALSHA` names the script `id`.
pub fn script_sha(id: ScriptId) -> &'static str {
    SHAS.get(id as usize).map_or("", String::as_str)
}

/// Error codes of replies that mean "the server cannot serve this now" rather than "the
/// operation is refused".
const TRANSIENT_CODES: &[&str] = &[
    "LOADING",
    "BUSY",
    "MASTERDOWN",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "READONLY",
];

/// The [`BackendError`] of an error reply (other than `NOSCRIPT` and `NOTREG`, which the
/// backend handles): [`BackendError::Unavailable`] for the transient codes (`LOADING`,
/// `BUSY`, `MASTERDOWN`, `TRYAGAIN`, `CLUSTERDOWN`, `READONLY`), else
/// [`BackendError::Rejected`] with the reply's text, secrets scrubbed.
pub fn error_reply(secrets: &Secrets, code: &str, message: &str) -> BackendError {
    let text = if message.is_empty() {
        code.to_owned()
    } else {
        format!("{code} {message}")
    };
    let text = secrets.scrub(&text);
    if TRANSIENT_CODES.contains(&code) {
        BackendError::Unavailable(Box::new(RedisFailure::new(text)))
    } else {
        BackendError::Rejected(text)
    }
}

fn invalid(what: impl Into<String>) -> BackendError {
    BackendError::InvalidReply(what.into())
}

/// curlyq's [`QueueBackend`] on Redis (or Valkey, Dragonfly...) through any client that
/// provides a [`Transport`].
///
/// Every operation is one Lua script call of this crate, sent with `EVALSHA`; the calls
/// that find their script missing from the server's cache (`NOSCRIPT`, after a restart,
/// a failover or `SCRIPT FLUSH`) are sent again after loading it, and with `EVAL` (the
/// source itself) if the cache was flushed once more in between. Batches larger than
/// [`MAX_BATCH`](curlyq_core::MAX_BATCH) are split into chunks sent as one pipeline, in
/// one round trip, each chunk atomic. Each [`waiter`](QueueBackend::waiter) blocks on a
/// [dedicated connection](Transport::dedicated) of its own, opened again after a
/// failure. Cloning is cheap and shares the transport.
///
/// `curlyq-redis-rs` (`RedisBackend`) and `curlyq-fred` (`FredBackend`) are this type
/// on their transports.
pub struct ScriptBackend<T> {
    transport: Arc<T>,
}

impl<T> Clone for ScriptBackend<T> {
    fn clone(&self) -> Self {
        ScriptBackend {
            transport: Arc::clone(&self.transport),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for ScriptBackend<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.transport, f)
    }
}

impl<T: fmt::Display> fmt::Display for ScriptBackend<T> {
    /// The transport's description (its URL, password hidden).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.transport, f)
    }
}

impl<T> From<T> for ScriptBackend<T> {
    fn from(transport: T) -> Self {
        ScriptBackend {
            transport: Arc::new(transport),
        }
    }
}

impl<T: Connect> ScriptBackend<T> {
    /// Connects to the Redis server of `url` with the transport's default settings and
    /// checks it answers `PING`.
    ///
    /// # Errors
    /// See [`Connect::connect`]: [`BackendError::Unavailable`] when the server cannot be
    /// reached, does not answer or refuses the credentials; [`BackendError::Other`] for a
    /// URL that does not parse. No message contains the password.
    pub async fn connect(url: &str) -> Result<Self, BackendError> {
        Self::connect_with(url, T::Config::default()).await
    }

    /// [`connect`](Self::connect) with explicit settings.
    pub async fn connect_with(url: &str, config: T::Config) -> Result<Self, BackendError> {
        Ok(Self::new(T::connect(url, config).await?))
    }
}

impl<T: Transport> ScriptBackend<T> {
    /// The backend on `transport`.
    pub fn new(transport: T) -> Self {
        Self::from(transport)
    }

    /// The transport (for its client and settings).
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Loads every curlyq script into the server's script cache (`SCRIPT LOAD`, on every
    /// server the transport talks to). Optional: operations load a missing script on
    /// first use.
    pub async fn load_scripts(&self) -> Result<(), BackendError> {
        for id in ScriptId::ALL {
            self.transport.load_script(id.source()).await?;
        }
        Ok(())
    }

    /// Runs `calls` as one pipeline of `EVALSHA` commands; resends the calls that found
    /// their script missing after loading it. One reply per call, in order; an error
    /// reply fails the whole operation (`NOTREG` as [`BackendError::NotRegistered`] of
    /// `who`).
    async fn run(
        &self,
        calls: &[ScriptCall],
        who: Option<(&QueueName, &ConsumerId)>,
    ) -> Result<Vec<Reply>, BackendError> {
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        let mut replies: Vec<Option<Reply>> = vec![None; calls.len()];
        let mut pending: Vec<usize> = (0..calls.len()).collect();
        for attempt in 0..3 {
            // The third attempt follows a NOSCRIPT right after our SCRIPT LOAD (the
            // cache flushed again under load): it sends the source itself.
            let commands: Vec<Command> = pending
                .iter()
                .filter_map(|&i| calls.get(i))
                .map(|call| script_command(call, attempt == 2))
                .collect();
            let answers = self.transport.pipeline(&commands).await?;
            if answers.len() != pending.len() {
                return Err(invalid(format!(
                    "expected {} replies to a pipeline, got {}",
                    pending.len(),
                    answers.len()
                )));
            }
            let mut missing = Vec::new();
            for (i, answer) in pending.iter().copied().zip(answers) {
                match answer {
                    Reply::Error { code, .. } if code == "NOSCRIPT" => missing.push(i),
                    answer => {
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
                let mut ids: Vec<ScriptId> = Vec::new();
                for id in missing
                    .iter()
                    .filter_map(|&i| calls.get(i).map(|c| c.script))
                {
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
                for id in ids {
                    tracing::debug!(
                        sha = script_sha(id),
                        "script not in the server's cache; loading it"
                    );
                    self.transport.load_script(id.source()).await?;
                }
            }
            pending = missing;
        }
        replies
            .into_iter()
            .map(|reply| match reply {
                Some(Reply::Error { code, message }) => Err(match who {
                    Some((queue, consumer)) if code == "NOTREG" => BackendError::NotRegistered {
                        queue: queue.to_string(),
                        consumer: consumer.to_string(),
                    },
                    _ => error_reply(self.transport.secrets(), &code, &message),
                }),
                Some(reply) => Ok(reply),
                None => Err(invalid("a pipeline reply is missing")),
            })
            .collect()
    }

    /// One plain command; an error reply is an error.
    async fn command(&self, command: Command) -> Result<Reply, BackendError> {
        match self.transport.command(command).await? {
            Reply::Error { code, message } => {
                Err(error_reply(self.transport.secrets(), &code, &message))
            }
            reply => Ok(reply),
        }
    }

    /// `take`, and with `peek` the scheduled set's earliest score in the same script,
    /// with `traced` the jobs' trace contexts.
    async fn take_from(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        max: usize,
        now: f64,
        peek: bool,
        traced: bool,
    ) -> Result<TakeReport, BackendError> {
        let keys = Keys::new(queue.as_str());
        let inflight = keys.inflight(consumer.as_str());
        let take = calls::take_calls(&keys, &inflight, max, peek, traced);
        let replies = self.run(&take, Some((queue, consumer))).await?;
        let taken = calls::parse_take(&replies, peek, traced)?;
        if !taken.not_utf8.is_empty() {
            self.kill_not_utf8(&keys, &inflight, &taken.not_utf8, now)
                .await;
        }
        Ok(TakeReport {
            jobs: taken.jobs,
            scheduled: taken.scheduled,
        })
    }

    /// Kills taken jobs whose IDs are not UTF-8 (a foreign producer wrote them): job IDs
    /// are strings in curlyq, so such a job could be neither run under its ID nor acked.
    /// Killed by their raw bytes, data kept as stored. If that fails they stay in flight
    /// and come back through the custodian once this consumer is gone.
    async fn kill_not_utf8(&self, keys: &Keys, inflight: &str, ids: &[Vec<u8>], now: f64) {
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

    /// Phase 1 of the admin operations that read in-flight sets: the in-flight keys of
    /// the consumer set's members.
    async fn consumer_keys(&self, keys: &Keys) -> Result<Vec<Vec<u8>>, BackendError> {
        let listed = self.command(admin::list_consumers(keys)).await?;
        admin::members(keys, &listed)
    }

    /// Runs one script call and returns its reply.
    async fn run_one(&self, op: &str, call: ScriptCall) -> Result<Reply, BackendError> {
        let mut replies = self.run(std::slice::from_ref(&call), None).await?;
        replies
            .pop()
            .ok_or_else(|| invalid(format!("{op}: no reply")))
    }

    /// Every key `SCAN … MATCH pattern [TYPE key_type]` finds (not atomic: a pass in
    /// pages of about 1,000).
    async fn scan_all(
        &self,
        pattern: &str,
        key_type: Option<&str>,
    ) -> Result<Vec<Vec<u8>>, BackendError> {
        let mut cursor = b"0".to_vec();
        let mut found = Vec::new();
        for _ in 0..calls::MAX_SWEEP_ROUNDS * 100 {
            let reply = self
                .command(admin::scan_command(&cursor, pattern, key_type))
                .await?;
            let (next, keys) = admin::parse_scan(&reply)?;
            found.extend(keys);
            if admin::scan_done(&next) {
                return Ok(found);
            }
            cursor = next;
        }
        Err(invalid("SCAN: the pass did not end"))
    }

    /// Runs the calls for `op` and parses their per-item flags.
    async fn flags(
        &self,
        op: &str,
        calls: Result<Vec<ScriptCall>, BackendError>,
        total: usize,
    ) -> Result<Vec<bool>, BackendError> {
        let replies = self.run(&calls?, None).await?;
        calls::parse_flags(op, &replies, total)
    }
}

/// `call` as `EVALSHA sha n keys... args...`, or `EVAL source n ...` `with_source`.
fn script_command(call: &ScriptCall, with_source: bool) -> Command {
    let (name, head) = if with_source {
        ("EVAL", call.script.source().as_bytes().to_vec())
    } else {
        ("EVALSHA", script_sha(call.script).as_bytes().to_vec())
    };
    let mut args = Vec::with_capacity(2 + call.keys.len() + call.args.len());
    args.push(head);
    args.push(call.keys.len().to_string().into_bytes());
    args.extend(call.keys.iter().chain(&call.args).cloned());
    Command { name, args }
}

#[async_trait]
impl<T: Transport> QueueBackend for ScriptBackend<T> {
    async fn push(
        &self,
        queue: &QueueName,
        jobs: &[EncodedJob],
    ) -> Result<Vec<bool>, BackendError> {
        let keys = Keys::new(queue.as_str());
        self.flags("push", Ok(calls::push_calls(&keys, jobs)), jobs.len())
            .await
    }

    async fn schedule(
        &self,
        queue: &QueueName,
        jobs: &[ScheduledJob],
    ) -> Result<Vec<bool>, BackendError> {
        let keys = Keys::new(queue.as_str());
        self.flags("schedule", calls::schedule_calls(&keys, jobs), jobs.len())
            .await
    }

    async fn push_traced(
        &self,
        queue: &QueueName,
        jobs: &[EncodedJob],
        trace: Option<&str>,
    ) -> Result<Vec<bool>, BackendError> {
        let keys = Keys::new(queue.as_str());
        let calls = calls::push_traced_calls(&keys, jobs, trace);
        self.flags("push", Ok(calls), jobs.len()).await
    }

    async fn schedule_traced(
        &self,
        queue: &QueueName,
        jobs: &[ScheduledJob],
        trace: Option<&str>,
    ) -> Result<Vec<bool>, BackendError> {
        let keys = Keys::new(queue.as_str());
        let calls = calls::schedule_traced_calls(&keys, jobs, trace);
        self.flags("schedule", calls, jobs.len()).await
    }

    async fn take_traced(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        max: usize,
        now: f64,
    ) -> Result<TakeReport, BackendError> {
        self.take_from(queue, consumer, max, now, true, true).await
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
        now: f64,
    ) -> Result<Vec<TakenJob>, BackendError> {
        Ok(self
            .take_from(queue, consumer, max, now, false, false)
            .await?
            .jobs)
    }

    async fn take_and_peek(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        max: usize,
        now: f64,
    ) -> Result<TakeReport, BackendError> {
        self.take_from(queue, consumer, max, now, true, false).await
    }

    async fn waiter(&self, queue: &QueueName) -> Result<Box<dyn Waiter>, BackendError> {
        let signal = Keys::new(queue.as_str()).signal;
        let conn = self.transport.dedicated().await?;
        Ok(Box::new(ScriptWaiter {
            transport: Arc::clone(&self.transport),
            signal,
            conn: Some(conn),
            busy: false,
        }))
    }

    async fn ack(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        ids: &[String],
        now: f64,
    ) -> Result<Vec<bool>, BackendError> {
        let keys = Keys::new(queue.as_str());
        let inflight = keys.inflight(consumer.as_str());
        let calls = calls::ack_calls(&keys, &inflight, ids, now);
        self.flags("ack", Ok(calls), ids.len()).await
    }

    async fn retry(
        &self,
        queue: &QueueName,
        consumer: &ConsumerId,
        jobs: &[RetryJob],
        now: f64,
    ) -> Result<Vec<bool>, BackendError> {
        let keys = Keys::new(queue.as_str());
        let inflight = keys.inflight(consumer.as_str());
        let calls = calls::retry_calls(&keys, &inflight, jobs, now);
        self.flags("retry", calls, jobs.len()).await
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
        let calls = calls::kill_calls(&keys, &inflight, jobs, now);
        self.flags("kill", calls, jobs.len()).await
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
        for _ in 0..calls::MAX_SWEEP_ROUNDS {
            let listed = self.command(sweeper.list()).await?;
            let members = OrphanSweeper::members(&listed)?;
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
        let info = self.command(Command::new("INFO").arg("memory")).await?;
        let text = calls::optional_bytes("INFO memory", &info)?
            .ok_or_else(|| invalid("INFO memory replied nil"))?;
        Ok(calls::settings_warnings(&String::from_utf8_lossy(&text)))
    }

    /// The consumers name the in-flight keys to read; one `MULTI` then reads them all
    /// (and the consumers again) at one instant. A consumer that joined between the two
    /// reads is listed with an empty in-flight set.
    async fn snapshot(&self, queue: &QueueName) -> Result<QueueSnapshot, BackendError> {
        let keys = Keys::new(queue.as_str());
        let listed = self.command(admin::list_consumers(&keys)).await?;
        let members = match listed {
            Reply::Nil => Vec::new(),
            other => calls::texts("snapshot of consumers", &other)?,
        };
        let all = |name: &'static str, key: &str| Command::new(name).arg(key).arg("0").arg("-1");
        let mut reads = vec![
            Command::new("HGETALL").arg(&keys.data),
            all("LRANGE", &keys.active),
            all("ZRANGE", &keys.scheduled).arg("WITHSCORES"),
            all("ZRANGE", &keys.dead).arg("WITHSCORES"),
            all("ZRANGE", &keys.consumers).arg("WITHSCORES"),
            Command::new("LLEN").arg(&keys.signal),
            Command::new("HGETALL").arg(&keys.reasons),
            Command::new("HGETALL").arg(&keys.orphaned),
            Command::new("HGETALL").arg(&keys.errors),
        ];
        reads.extend(members.iter().map(|m| Command::new("SMEMBERS").arg(m)));
        let mut results = self.transport.transaction(&reads).await?.into_iter();
        let secrets = self.transport.secrets();
        let mut next = |what: &str| match results.next() {
            Some(Reply::Error { code, message }) => Err(BackendError::Rejected(format!(
                "snapshot of {what}: {}",
                secrets.scrub(&format!("{code} {message}"))
            ))),
            Some(reply) => Ok(reply),
            None => Err(invalid(format!("snapshot: no reply for {what}"))),
        };
        let consumer_id = |member: &str| admin::consumer_of(&keys, member.as_bytes());
        let mut snap = QueueSnapshot {
            data: calls::hash("snapshot of data", &next("data")?)?
                .into_iter()
                .collect(),
            active: calls::texts("snapshot of active", &next("active")?)?,
            scheduled: calls::scored("snapshot of scheduled", &next("scheduled")?)?,
            dead: calls::scored("snapshot of dead", &next("dead")?)?,
            ..QueueSnapshot::default()
        };
        snap.consumers = calls::scored("snapshot of consumers", &next("consumers")?)?
            .into_iter()
            .map(|(member, at)| (consumer_id(&member), at))
            .collect();
        snap.signal = calls::int("snapshot of signal", &next("signal")?)? > 0;
        snap.reasons = calls::hash("snapshot of reasons", &next("reasons")?)?
            .into_iter()
            .map(|(id, why)| (id, String::from_utf8_lossy(&why).into_owned()))
            .collect();
        snap.orphaned = calls::hash("snapshot of orphaned", &next("orphaned")?)?
            .into_iter()
            .map(|(id, n)| {
                String::from_utf8_lossy(&n)
                    .trim()
                    .parse()
                    .map(|n| (id, n))
                    .map_err(|_| invalid("snapshot of orphaned: a count that is not a number"))
            })
            .collect::<Result<_, _>>()?;
        snap.errors = calls::hash("snapshot of errors", &next("errors")?)?
            .into_iter()
            .map(|(id, error)| (id, String::from_utf8_lossy(&error).into_owned()))
            .collect();
        for member in &members {
            let ids = calls::texts("snapshot of in-flight", &next(member)?)?;
            if !ids.is_empty() {
                snap.inflight
                    .insert(consumer_id(member), ids.into_iter().collect());
            }
        }
        Ok(snap)
    }

    async fn list_queues(&self) -> Result<Vec<QueueName>, BackendError> {
        let mut candidates = Vec::new();
        for key in self.scan_all("*", None).await? {
            if let Some((queue, kind)) = admin::queue_of_key(&key) {
                candidates.push((key, queue, kind));
            }
        }
        let mut queues = std::collections::BTreeSet::new();
        for chunk in candidates.chunks(calls::CONSUMERS_PER_SWEEP_CALL * 10) {
            let types: Vec<Command> = chunk
                .iter()
                .map(|(key, _, _)| Command::new("TYPE").arg(key))
                .collect();
            let replies = self.transport.pipeline(&types).await?;
            if replies.len() != chunk.len() {
                return Err(invalid("list_queues: a TYPE reply is missing"));
            }
            for ((_, queue, kind), reply) in chunk.iter().zip(replies) {
                let found = match reply {
                    Reply::Status(s) => s,
                    Reply::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
                    Reply::Error { code, message } => {
                        return Err(error_reply(self.transport.secrets(), &code, &message))
                    }
                    other => {
                        return Err(invalid(format!(
                            "list_queues: {} in reply to TYPE",
                            other.kind()
                        )))
                    }
                };
                if found == *kind {
                    queues.insert(queue.clone());
                }
            }
        }
        Ok(queues.into_iter().collect())
    }

    async fn stats(
        &self,
        queue: &QueueName,
        now: f64,
        minutes: usize,
    ) -> Result<QueueStats, BackendError> {
        calls::score("now", now)?;
        let keys = Keys::new(queue.as_str());
        let members = self.consumer_keys(&keys).await?;
        let minutes = admin::stat_minutes(now, minutes);
        let reply = self
            .run_one("stats", admin::stats_call(&keys, &members, &minutes))
            .await?;
        admin::parse_stats(&reply, &minutes)
    }

    async fn consumers(&self, queue: &QueueName) -> Result<Vec<ConsumerInfo>, BackendError> {
        let keys = Keys::new(queue.as_str());
        let members = self.consumer_keys(&keys).await?;
        let reply = self
            .run_one("consumers", admin::consumers_call(&keys, &members))
            .await?;
        admin::parse_consumers(&keys, &reply)
    }

    async fn jobs(&self, queue: &QueueName, page: PageRequest) -> Result<JobPage, BackendError> {
        let keys = Keys::new(queue.as_str());
        let members = if page.state == JobState::InFlight {
            self.consumer_keys(&keys).await?
        } else {
            Vec::new()
        };
        let Some(call) = admin::jobs_call(&keys, &page, &members) else {
            return Ok(JobPage::default());
        };
        let reply = self.run_one("jobs", call).await?;
        admin::parse_jobs(&keys, &page, &reply)
    }

    async fn find_job(
        &self,
        queue: &QueueName,
        id: &str,
    ) -> Result<Option<JobDetail>, BackendError> {
        let keys = Keys::new(queue.as_str());
        let members = self.consumer_keys(&keys).await?;
        let reply = self
            .run_one("find_job", admin::find_call(&keys, id, &members, None))
            .await?;
        admin::parse_find(&keys, id, &reply, 0)
    }

    async fn find_job_head(
        &self,
        queue: &QueueName,
        id: &str,
        preview: usize,
    ) -> Result<Option<JobDetail>, BackendError> {
        let keys = Keys::new(queue.as_str());
        let members = self.consumer_keys(&keys).await?;
        let head = preview.saturating_add(curlyq_core::admin::HEAD_EXTRA);
        let call = admin::find_call(&keys, id, &members, Some(head));
        let reply = self.run_one("find_job", call).await?;
        admin::parse_find(&keys, id, &reply, preview)
    }

    async fn retry_dead(
        &self,
        queue: &QueueName,
        selection: &Selection,
    ) -> Result<ActionReport, BackendError> {
        let keys = Keys::new(queue.as_str());
        let calls = admin::move_calls(&keys, JobState::Dead, selection);
        let replies = self.run(&calls, None).await?;
        admin::parse_move("retry_dead", &replies)
    }

    async fn run_scheduled(
        &self,
        queue: &QueueName,
        selection: &Selection,
    ) -> Result<ActionReport, BackendError> {
        let keys = Keys::new(queue.as_str());
        let calls = admin::move_calls(&keys, JobState::Scheduled, selection);
        let replies = self.run(&calls, None).await?;
        admin::parse_move("run_scheduled", &replies)
    }

    async fn delete_jobs(
        &self,
        queue: &QueueName,
        ids: &[String],
    ) -> Result<DeleteReport, BackendError> {
        if ids.is_empty() {
            return Ok(DeleteReport::default());
        }
        let keys = Keys::new(queue.as_str());
        let members = self.consumer_keys(&keys).await?;
        let replies = self
            .run(&admin::delete_calls(&keys, ids, &members), None)
            .await?;
        admin::parse_delete(ids, &replies)
    }

    async fn purge(
        &self,
        queue: &QueueName,
        state: JobState,
        max: usize,
    ) -> Result<usize, BackendError> {
        let keys = Keys::new(queue.as_str());
        let Some(call) = admin::purge_call(&keys, state, max)? else {
            return Ok(0);
        };
        let reply = self.run_one("purge", call).await?;
        calls::count("purge", &reply)
    }

    async fn remove_consumer(
        &self,
        queue: &QueueName,
        consumer: &str,
        expired_before: f64,
    ) -> Result<RemoveReport, BackendError> {
        let keys = Keys::new(queue.as_str());
        let call = admin::remove_consumer_call(&keys, consumer, expired_before)?;
        let reply = self.run_one("remove_consumer", call).await?;
        admin::parse_remove_consumer(&reply)
    }

    async fn set_paused(&self, queue: &QueueName, paused: bool) -> Result<bool, BackendError> {
        let keys = Keys::new(queue.as_str());
        let reply = self
            .run_one("set_paused", admin::pause_call(&keys, paused))
            .await?;
        Ok(calls::int("set_paused", &reply)? == 1)
    }

    async fn data_ids(
        &self,
        queue: &QueueName,
        cursor: u64,
        count: usize,
    ) -> Result<(Vec<String>, Option<u64>), BackendError> {
        let keys = Keys::new(queue.as_str());
        let reply = self
            .run_one("data_ids", admin::data_ids_call(&keys, cursor, count))
            .await?;
        admin::parse_data_ids(&reply)
    }

    async fn stray_inflight(
        &self,
        queue: &QueueName,
    ) -> Result<Vec<(String, std::collections::BTreeSet<String>)>, BackendError> {
        let keys = Keys::new(queue.as_str());
        let prefix = keys.inflight_prefix().as_bytes();
        let mut candidates = self
            .scan_all(&admin::stray_pattern(&keys), Some("set"))
            .await?;
        candidates.retain(|key| key.starts_with(prefix));
        candidates.sort();
        candidates.dedup();
        let mut out = Vec::new();
        for chunk in candidates.chunks(admin::STRAY_PER_CALL) {
            let reply = self
                .run_one("stray_inflight", admin::stray_call(&keys, chunk))
                .await?;
            out.extend(admin::parse_stray(&keys, chunk, &reply)?);
        }
        out.sort();
        Ok(out)
    }

    async fn confirm(
        &self,
        queue: &QueueName,
        problem: &Problem,
    ) -> Result<Option<Problem>, BackendError> {
        let keys = Keys::new(queue.as_str());
        let members = self.consumer_keys(&keys).await?;
        let call = admin::problem_call(&keys, ProblemAction::Confirm, problem, &members)
            .ok_or(BackendError::Unsupported("confirm of this problem kind"))?;
        let reply = self.run_one("confirm", call).await?;
        admin::parse_confirm(problem, &reply)
    }

    async fn repair(&self, queue: &QueueName, problem: &Problem) -> Result<bool, BackendError> {
        let keys = Keys::new(queue.as_str());
        let members = self.consumer_keys(&keys).await?;
        let call = admin::problem_call(&keys, ProblemAction::Repair, problem, &members)
            .ok_or(BackendError::Unsupported("repair of this problem kind"))?;
        let reply = self.run_one("repair", call).await?;
        Ok(calls::int("repair", &reply)? == 1)
    }
}

/// The poller's blocking wait: `BRPOPLPUSH signal signal <timeout>` (the signal list
/// rotated onto itself, so the flag stays set) on a dedicated connection.
struct ScriptWaiter<T: Transport> {
    transport: Arc<T>,
    signal: String,
    conn: Option<T::Dedicated>,
    /// Set while a wait is in flight. If a wait's future is dropped before its reply
    /// came, the connection still has a blocking command pending: the next wait opens a
    /// new connection rather than queue behind it.
    busy: bool,
}

/// The block timeout in seconds as Redis reads it, rounded up to whole milliseconds
/// (never 0, which would block forever).
fn block_seconds(timeout: Duration) -> String {
    let millis = timeout.as_micros().div_ceil(1000).max(1);
    format!("{}", millis as f64 / 1000.0)
}

#[async_trait]
impl<T: Transport> Waiter for ScriptWaiter<T> {
    async fn wait(&mut self, timeout: Duration) -> Result<bool, BackendError> {
        if self.busy {
            self.conn = None;
            self.busy = false;
        }
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => self.transport.dedicated().await?,
        };
        let command = if timeout.is_zero() {
            Command::new("LLEN").arg(&self.signal)
        } else {
            Command::new("BRPOPLPUSH")
                .arg(&self.signal)
                .arg(&self.signal)
                .arg(block_seconds(timeout))
        };
        self.busy = true;
        let result = conn.send(&command, timeout).await;
        self.busy = false;
        // On an error the connection is dropped; the next wait opens a new one.
        let reply = result?;
        self.conn = Some(conn);
        match reply {
            Reply::Nil => Ok(false),
            Reply::Int(n) => Ok(n > 0),
            Reply::Bulk(_) | Reply::Status(_) => Ok(true),
            Reply::Array(items) => Ok(!items.is_empty()),
            Reply::Error { code, message } => {
                Err(error_reply(self.transport.secrets(), &code, &message))
            }
            other => Err(invalid(format!(
                "wait: {} in reply to BRPOPLPUSH",
                other.kind()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_shas_are_those_redis_computes() {
        // SHA1 of the empty string, as `SCRIPT LOAD ""` answers; and each script's
        // hash is 40 hex digits.
        assert_eq!(
            sha1_smol::Sha1::from("").digest().to_string(),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
        for id in ScriptId::ALL {
            let sha = script_sha(id);
            assert_eq!(sha.len(), 40, "{id:?}");
            assert!(sha.bytes().all(|b| b.is_ascii_hexdigit()), "{id:?}");
        }
    }

    #[test]
    fn transient_codes_are_unavailable_and_the_rest_rejected() {
        let secrets = Secrets::new(["pw".to_owned()]);
        assert!(matches!(
            error_reply(&secrets, "LOADING", "dataset"),
            BackendError::Unavailable(_)
        ));
        match error_reply(&secrets, "WRONGTYPE", "curlyq: pw in the key") {
            BackendError::Rejected(text) => assert_eq!(text, "WRONGTYPE curlyq: *** in the key"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn block_time_rounds_up_and_never_reaches_zero() {
        assert_eq!(block_seconds(Duration::from_micros(1)), "0.001");
        assert_eq!(block_seconds(Duration::from_millis(1500)), "1.5");
        assert_eq!(block_seconds(Duration::from_secs(2)), "2");
    }
}
