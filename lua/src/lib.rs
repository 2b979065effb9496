//! The Lua scripts and the Redis key layout shared by curlyq's Redis backends
//! (`curlyq-redis-rs`, and `curlyq-fred`), one script per atomic operation.
//!
//! Every key of a queue `Q` starts with `Q:`, so a hash-tagged queue name such as
//! `{emails}` keeps the whole queue in one Redis Cluster slot. Every key a script touches
//! is passed in `KEYS`.

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
            inflight_prefix: format!("{queue}:inflight:"),
        }
    }

    /// `Q:inflight:<consumer>`: the consumer's in-flight set (also its member name in
    /// `Q:consumers`).
    pub fn inflight(&self, consumer: &str) -> String {
        format!("{}{consumer}", self.inflight_prefix)
    }
}
