//! curlyq's Redis backend, written once: the Lua scripts (one per atomic operation), the
//! Redis key layout, and [`ScriptBackend`], the `QueueBackend` on any client that
//! provides a [`Transport`].
//!
//! `curlyq-redis-rs` and `curlyq-fred` are a transport each (connection set-up, sending
//! a pipeline, a dedicated connection for the blocking wait, their client's errors);
//! everything else (`EVALSHA` with its `NOSCRIPT` reload, reply parsing, `NOTREG`, the
//! orphan sweep, the kill of non-UTF-8 IDs, the snapshot, the waiter's reconnection,
//! password redaction) is here. A new client gets a complete backend by implementing
//! [`Transport`] (and [`Connect`] for `ScriptBackend::connect(url)`).
//!
//! Every key of a queue `Q` starts with `Q:`, so a hash-tagged queue name such as
//! `{emails}` keeps the whole queue in one Redis Cluster slot. Every key a script touches
//! is passed in `KEYS`.
//!
//! # Scripts
//!
//! Each constant is a complete script: the shared [`PRELUDE`] (key type checks and small
//! helpers) followed by the operation's body from `scripts/<name>.lua`. Every script
//! reads and type-checks all its keys before its first write and answers
//! `WRONGTYPE curlyq: ...` without writing anything when a key holds the wrong type
//! (Redis keeps the writes a script made before a runtime error). No script uses more
//! than 500 elements in one `unpack`; callers send at most
//! [`MAX_JOBS_PER_CALL`] jobs per call. No script carries a `#!lua` shebang, so they run
//! unchanged on Redis 6 and 7, Valkey and Dragonfly.
//!
//! Scores (times) are passed as decimal strings of Unix seconds with fractions (Rust's
//! `{}` formatting of an `f64` gives the shortest string that round-trips) and handed to
//! Redis as given, never through a Lua number.

// docs.rs (`--cfg docsrs`, nightly): badge each feature-gated item with its feature.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod admin;
mod backend;
pub mod calls;
mod redact;
pub mod transport;

pub use backend::{error_reply, script_sha, ScriptBackend};
pub use redact::{redact_url, url_password, RedisFailure, Secrets};
pub use transport::{Command, Connect, DedicatedConnection, Transport};

/// Most jobs (or IDs) a caller passes to one script call: the core's batch size, which
/// the builders in [`calls`] chunk by.
pub const MAX_JOBS_PER_CALL: usize = curlyq_core::MAX_BATCH;

/// The helpers every script starts with: `curlyq_check` (type checks before any write),
/// `curlyq_chunked` (a command over a long list in slices of 500) and `curlyq_signal`
/// (set the wake-up flag). Already part of each script constant below.
pub const PRELUDE: &str = include_str!("../scripts/prelude.lua");

macro_rules! script {
    ($(#[$doc:meta])* $name:ident, $file:literal) => {
        $(#[$doc])*
        pub const $name: &str = concat!(
            include_str!("../scripts/prelude.lua"),
            include_str!(concat!("../scripts/", $file))
        );
    };
}

script!(
    /// Stores new jobs and appends them to the active list; sets the signal if any was new.
    ///
    /// - KEYS: `data`, `active`, `signal`
    /// - ARGV: `id1, bytes1, id2, bytes2, ...`
    /// - Returns: an array of integers, per job 1 if new, 0 if its ID existed (the stored
    ///   job is untouched; within one call the first of two equal IDs wins).
    PUSH,
    "push.lua"
);

script!(
    /// Stores new jobs and adds them to the scheduled set; sets the signal if any was new
    /// (so idle consumers see the new due time).
    ///
    /// - KEYS: `data`, `scheduled`, `signal`
    /// - ARGV: `id1, at1, bytes1, id2, at2, bytes2, ...` (`at` in Unix seconds)
    /// - Returns: an array of integers, per job 1 if new, 0 if its ID existed.
    SCHEDULE,
    "schedule.lua"
);

script!(
    /// Sets a consumer's heartbeat score.
    ///
    /// - KEYS: `consumers`
    /// - ARGV: `now`, mode (`join` or `heartbeat`), member (the consumer's in-flight key
    ///   name, [`Keys::inflight`])
    /// - Returns: 1 if the score was set; 0 for a `heartbeat` of a consumer that is no
    ///   longer registered (nothing is added).
    REGISTER,
    "register.lua"
);

script!(
    /// Moves due scheduled jobs (score <= `now`, lowest first, negative scores included)
    /// to the tail of the active list, removing exactly the members moved; sets the signal
    /// if any moved.
    ///
    /// - KEYS: `scheduled`, `active`, `signal`
    /// - ARGV: `now`, `max`
    /// - Returns: `{moved, next}`: the count moved and the earliest score still scheduled
    ///   as a bulk string (nil when nothing is scheduled).
    ENQUEUE_DUE,
    "enqueue_due.lua"
);

script!(
    /// Moves up to `max` IDs from the head of the active list into a consumer's in-flight
    /// set and returns them with their data; clears the signal if fewer than `max` were
    /// there.
    ///
    /// - KEYS: `active`, `inflight` (also the consumer's member in `consumers`), `data`,
    ///   `signal`, `consumers`, `paused`, and optionally `scheduled` (to peek at)
    /// - ARGV: `max`
    /// - While `paused` exists (checked after `NOTREG`), nothing is taken and the signal
    ///   is cleared; the peek is still answered.
    /// - Returns: `{id1, data1, id2, data2, ...}` with nil data for a job whose data field
    ///   is missing; or an error reply starting with `NOTREG` (nothing taken) when the
    ///   consumer is not in `consumers`.
    TAKE,
    "take.lua"
);

script!(
    /// Acknowledges owned jobs: removes each from the in-flight set, deletes its data, its
    /// orphan count and its last error; counts the owned jobs as processed.
    ///
    /// - KEYS: `inflight`, `data`, `orphaned`, `errors`, `counts`, `counts_minute`
    /// - ARGV: `ttl` (of `counts_minute`), `id1, id2, ...`
    /// - Returns: an array of integers, per ID 1 if it was owned, else 0 (untouched).
    ACK,
    "ack.lua"
);

script!(
    /// Schedules owned failed jobs for another run: removes each from in-flight, adds it
    /// to the scheduled set, overwrites its data, clears its orphan count and stores why
    /// the run failed as its last error (or removes the last error when none is given);
    /// counts the owned jobs as processed, failed and retried.
    ///
    /// - KEYS: `inflight`, `scheduled`, `data`, `orphaned`, `errors`, `counts`,
    ///   `counts_minute`
    /// - ARGV: `ttl`, then per job `id, at, bytes, has_error ("1" or "0"), error`
    /// - Returns: an array of integers, per job 1 if it was owned, else 0 (untouched).
    RETRY,
    "retry.lua"
);

script!(
    /// Moves owned failed jobs to the dead set: removes each from in-flight, adds it to
    /// `dead` with score `now`, overwrites its data when given, records the reason and
    /// clears its orphan count and its last error; counts the owned jobs as processed,
    /// failed and killed.
    ///
    /// - KEYS: `inflight`, `dead`, `data`, `reasons`, `orphaned`, `errors`, `counts`,
    ///   `counts_minute`
    /// - ARGV: `now`, `ttl`, then per job `id, has_data ("1" or "0"), bytes, reason`
    /// - Returns: an array of integers, per job 1 if it was owned, else 0 (untouched).
    KILL,
    "kill.lua"
);

script!(
    /// Gives owned jobs back: each ID still in the in-flight set moves to the tail of the
    /// active list; sets the signal if any moved.
    ///
    /// - KEYS: `inflight`, `active`, `signal`
    /// - ARGV: `id1, id2, ...`
    /// - Returns: the number of jobs moved.
    GIVE_BACK,
    "give_back.lua"
);

script!(
    /// Recovers the jobs of expired consumers. The caller first reads the candidates
    /// (`ZRANGEBYSCORE consumers -inf expired_before LIMIT 0 n`, oldest first) and passes
    /// their in-flight keys; the script re-checks each one's score and skips any consumer
    /// that heartbeated meanwhile or is gone. Each job taken (up to `max_jobs` in all) has
    /// its count in `orphaned` incremented and is appended to `active` (keeping its last
    /// error), or, once the count reaches `max_orphan_requeues` (when non-zero), moved to
    /// `dead` with a reason (its last error removed). The jobs of one consumer are taken
    /// in ascending ID order (byte order). An expired consumer whose in-flight set is
    /// empty is removed from `consumers`. Sets the signal if any job was requeued. The
    /// jobs killed are counted as processed, failed and killed.
    ///
    /// - KEYS: `consumers`, `active`, `dead`, `reasons`, `orphaned`, `signal`, `errors`,
    ///   `counts`, `counts_minute` (of `now`'s minute), then the in-flight keys of the
    ///   consumers to visit, in order
    /// - ARGV: `expired_before`, `max_jobs`, `max_orphan_requeues`, `now`, `ttl`
    /// - Returns: `{requeued, killed, consumers_removed}`.
    REQUEUE_ORPHANS,
    "requeue_orphans.lua"
);

script!(
    /// Removes dead jobs killed strictly before `killed_before`, then, with what is left
    /// of `max_jobs`, the oldest beyond `keep_at_most`; each with its data, reason,
    /// orphan count and last error. Then, when `sweep` is not 0 and `errors` holds more
    /// than `keep_at_most` fields, removes the last errors whose job has no data (a Go
    /// CurlyQ ack deletes the data only): all fields are examined when there are at most
    /// `sweep`, else one `HSCAN` page of about `sweep` fields from the cursor kept in
    /// `errors_cursor`.
    ///
    /// - KEYS: `dead`, `data`, `reasons`, `orphaned`, `errors`, `errors_cursor`
    /// - ARGV: `killed_before`, `keep_at_most`, `max_jobs`, `sweep`
    /// - Returns: the number of dead jobs removed.
    TRIM_DEAD,
    "trim_dead.lua"
);

script!(
    /// Removes a consumer whose in-flight set is empty from `consumers` (clean shutdown).
    ///
    /// - KEYS: `consumers`, `inflight` (also the consumer's member in `consumers`)
    /// - ARGV: none
    /// - Returns: 0 if it still holds jobs (nothing changes); else 1 (also when it was not
    ///   registered).
    UNREGISTER,
    "unregister.lua"
);

script!(
    /// Admin: a queue's sizes, pause state, head job, earliest due time and counters
    /// ([`QueueBackend::stats`](curlyq_core::QueueBackend::stats)).
    ///
    /// - KEYS: `active`, `scheduled`, `dead`, `consumers`, `paused`, `counts`, `data`,
    ///   then `m` per-minute counter keys (oldest first), then in-flight keys
    /// - ARGV: `m`, `head_bytes`
    /// - Returns: `{active, scheduled, dead, consumers, paused, inflight, head, head_len,
    ///   next_due, counts, {minute counts...}}`.
    ADMIN_STATS,
    "admin_stats.lua"
);

script!(
    /// Admin: the registered consumers with their heartbeats and in-flight counts.
    ///
    /// - KEYS: `consumers`, then in-flight keys
    /// - Returns: `{member, score, count, ...}` for those still registered.
    ADMIN_CONSUMERS,
    "admin_consumers.lua"
);

script!(
    /// Admin: one page of the jobs in one state, with bounded views of their data.
    ///
    /// - KEYS: `data`, `reasons`, `errors`, `orphaned`, the source (`active`, `scheduled`,
    ///   `dead`, or `consumers` followed by in-flight keys)
    /// - ARGV: mode (`list`, `zset`, `inflight`), `cursor`, `limit`, `head_bytes`,
    ///   `tail_bytes`
    /// - Returns: `{total, {id, extra, has_data, length, head, tail, reason, error,
    ///   orphaned}, ...}`.
    ADMIN_JOBS,
    "admin_jobs.lua"
);

script!(
    /// Admin: where a job is, and its data.
    ///
    /// - KEYS: `data`, `scheduled`, `dead`, `active`, `reasons`, `errors`, `orphaned`,
    ///   `consumers`, then in-flight keys
    /// - ARGV: `id`, how far into `active` to look
    /// - Returns: `{data, scheduled score, dead score, in-flight key, active position,
    ///   reason, error, orphaned}`.
    ADMIN_FIND,
    "admin_find.lua"
);

script!(
    /// Admin: moves jobs from `dead` or `scheduled` to the tail of `active` (by ID or the
    /// lowest scores), optionally clearing their dead reasons; sets the signal if any
    /// moved.
    ///
    /// - KEYS: source, `active`, `signal`, `reasons`
    /// - ARGV: clear_reason (`1`/`0`), mode (`ids`/`oldest`), then IDs or a count
    /// - Returns: `{moved, skipped}`.
    ADMIN_MOVE,
    "admin_move.lua"
);

script!(
    /// Admin: deletes jobs by ID in any state but in flight.
    ///
    /// - KEYS: `data`, `active`, `scheduled`, `dead`, `reasons`, `errors`, `orphaned`,
    ///   `consumers`, then in-flight keys
    /// - ARGV: IDs
    /// - Returns: per ID `inflight`, `scheduled`, `active`, `dead`, `unplaced` or
    ///   `missing`.
    ADMIN_DELETE,
    "admin_delete.lua"
);

script!(
    /// Admin: deletes the first jobs of `active`, or the lowest-scored of a sorted set,
    /// with their side fields.
    ///
    /// - KEYS: source, `data`, `reasons`, `errors`, `orphaned`
    /// - ARGV: mode (`list`/`zset`), `n`
    /// - Returns: the count deleted.
    ADMIN_PURGE,
    "admin_purge.lua"
);

script!(
    /// Admin: removes an expired consumer, its jobs appended to `active` in ascending ID
    /// order.
    ///
    /// - KEYS: `consumers`, `inflight`, `active`, `signal`
    /// - ARGV: `expired_before`
    /// - Returns: `{removed, requeued, heartbeat}`.
    ADMIN_REMOVE_CONSUMER,
    "admin_remove_consumer.lua"
);

script!(
    /// Admin: pauses or resumes a queue (`paused`); resuming sets the signal.
    ///
    /// - KEYS: `paused`, `signal`
    /// - ARGV: `1` (pause) or `0` (resume)
    /// - Returns: 1 if it was paused before.
    ADMIN_PAUSE,
    "admin_pause.lua"
);

script!(
    /// Admin: one `HSCAN` page of the IDs in `data` (names only).
    ///
    /// - KEYS: `data`
    /// - ARGV: `cursor`, `count`
    /// - Returns: `{next cursor, {ids}}`.
    ADMIN_DATA_IDS,
    "admin_data_ids.lua"
);

script!(
    /// Admin: the members of in-flight sets whose consumer is not registered.
    ///
    /// - KEYS: `consumers`, then candidate in-flight keys
    /// - Returns: per candidate its members, or nil when registered or gone.
    ADMIN_STRAY,
    "admin_stray.lua"
);

script!(
    /// Admin: confirms or repairs one consistency problem
    /// ([`ProblemKind`](curlyq_core::admin::ProblemKind)).
    ///
    /// - KEYS: `data`, `active`, `scheduled`, `dead`, `reasons`, `errors`, `orphaned`,
    ///   `consumers`, `signal`, then in-flight keys (the consumers', or the stray one)
    /// - ARGV: action (`confirm`/`repair`), kind, ID
    /// - Returns: confirm `{holds, active, scheduled, dead, inflight}`; repair 1 if
    ///   anything changed.
    ADMIN_PROBLEM,
    "admin_problem.lua"
);

/// Every script with its name, for tools that preload them (`SCRIPT LOAD`).
pub const ALL: &[(&str, &str)] = &[
    ("push", PUSH),
    ("schedule", SCHEDULE),
    ("register", REGISTER),
    ("enqueue_due", ENQUEUE_DUE),
    ("take", TAKE),
    ("ack", ACK),
    ("retry", RETRY),
    ("kill", KILL),
    ("give_back", GIVE_BACK),
    ("requeue_orphans", REQUEUE_ORPHANS),
    ("trim_dead", TRIM_DEAD),
    ("unregister", UNREGISTER),
    ("admin_stats", ADMIN_STATS),
    ("admin_consumers", ADMIN_CONSUMERS),
    ("admin_jobs", ADMIN_JOBS),
    ("admin_find", ADMIN_FIND),
    ("admin_move", ADMIN_MOVE),
    ("admin_delete", ADMIN_DELETE),
    ("admin_purge", ADMIN_PURGE),
    ("admin_remove_consumer", ADMIN_REMOVE_CONSUMER),
    ("admin_pause", ADMIN_PAUSE),
    ("admin_data_ids", ADMIN_DATA_IDS),
    ("admin_stray", ADMIN_STRAY),
    ("admin_problem", ADMIN_PROBLEM),
];

/// The Redis keys of one queue (see `spec/wire.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// `Q:data`: hash, job ID -> encoded job.
    pub data: String,
    /// `Q:active`: list of job IDs ready to run.
    pub active: String,
    /// `Q:scheduled`: sorted set, score = due time.
    pub scheduled: String,
    /// `Q:dead`: sorted set, score = time of death.
    pub dead: String,
    /// `Q:consumers`: sorted set of in-flight key names, score = last heartbeat.
    pub consumers: String,
    /// `Q:signal`: list holding one element while jobs may be waiting.
    pub signal: String,
    /// `Q:dead:reasons` (new in curlyq): hash, dead job ID -> why it died.
    pub reasons: String,
    /// `Q:orphaned` (new in curlyq): hash, job ID -> times its consumer was reaped while
    /// holding it.
    pub orphaned: String,
    /// `Q:errors` (new in curlyq): hash, job ID -> the last error of a job waiting for a
    /// retry.
    pub errors: String,
    /// `Q:errors:cursor` (new in curlyq): string, the `HSCAN` cursor of a sweep of
    /// `Q:errors` under way.
    pub errors_cursor: String,
    /// `Q:trace` (new in curlyq): hash, job ID -> the trace context its producer stored
    /// (a JSON object of W3C trace-context headers), feature `opentelemetry` of the
    /// producer.
    pub trace: String,
    /// `Q:trace:cursor` (new in curlyq): string, the `HSCAN` cursor of a sweep of
    /// `Q:trace` under way.
    pub trace_cursor: String,
    /// `Q:paused` (new in curlyq): string `1` while the queue is paused (takes take
    /// nothing).
    pub paused: String,
    /// `Q:counts` (new in curlyq): hash of outcome totals (`processed`, `failed`,
    /// `retried`, `killed`).
    pub counts: String,
    inflight_prefix: String,
}

impl Keys {
    /// The keys of queue `queue`.
    pub fn new(queue: &str) -> Self {
        Keys {
            data: format!("{queue}:data"),
            active: format!("{queue}:active"),
            scheduled: format!("{queue}:scheduled"),
            dead: format!("{queue}:dead"),
            consumers: format!("{queue}:consumers"),
            signal: format!("{queue}:signal"),
            reasons: format!("{queue}:dead:reasons"),
            orphaned: format!("{queue}:orphaned"),
            errors: format!("{queue}:errors"),
            errors_cursor: format!("{queue}:errors:cursor"),
            trace: format!("{queue}:trace"),
            trace_cursor: format!("{queue}:trace:cursor"),
            paused: format!("{queue}:paused"),
            counts: format!("{queue}:counts"),
            inflight_prefix: format!("{queue}:inflight:"),
        }
    }

    /// `Q:inflight:<consumer>`: the consumer's in-flight set (also its member name in
    /// `Q:consumers`).
    pub fn inflight(&self, consumer: &str) -> String {
        format!("{}{consumer}", self.inflight_prefix)
    }

    /// `Q:inflight:`: the prefix of every in-flight key (a consumer's ID follows it).
    pub fn inflight_prefix(&self) -> &str {
        &self.inflight_prefix
    }

    /// `Q:counts:<minute>` (new in curlyq): hash of the outcome counters of one minute
    /// ([`minute_of`](curlyq_core::admin::minute_of)), expiring
    /// [`COUNTER_TTL_SECONDS`](curlyq_core::admin::COUNTER_TTL_SECONDS) after its last
    /// write.
    pub fn counts_minute(&self, minute: i64) -> String {
        format!("{}:{minute}", self.counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_are_plain_lua_with_the_prelude() {
        for (name, source) in ALL {
            assert!(!source.starts_with("#!"), "{name} has a shebang");
            assert!(source.starts_with(PRELUDE), "{name} lacks the prelude");
            assert!(source.contains("curlyq_check("), "{name} checks no types");
        }
    }

    #[test]
    fn keys_layout() {
        let keys = Keys::new("{q}");
        assert_eq!(keys.data, "{q}:data");
        assert_eq!(keys.reasons, "{q}:dead:reasons");
        assert_eq!(keys.errors, "{q}:errors");
        assert_eq!(keys.errors_cursor, "{q}:errors:cursor");
        assert_eq!(keys.inflight("c1"), "{q}:inflight:c1");
        assert_eq!(keys.paused, "{q}:paused");
        assert_eq!(keys.counts, "{q}:counts");
        assert_eq!(keys.counts_minute(28_333_333), "{q}:counts:28333333");
    }
}
