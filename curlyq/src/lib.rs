//! Reliable background jobs on Redis, wire compatible with Go
//! [CurlyQ](https://github.com/mcmathja/curlyq): a Go producer and a Rust consumer (or the
//! reverse) can share one queue.
//!
//! Choose the backend (`redis-rs`, `fred`) and the runtime (`tokio`, `async-std`,
//! `smol`) with features: `redis-rs` and `tokio` are on by default. Features are
//! additive: with several runtimes on, a consumer built inside a tokio runtime runs on
//! tokio, any other on the async-io reactor that async-std and smol share.
//!
//! What an application names is at the root: [`Producer`], [`Consumer`] with its
//! [builder](ConsumerBuilder) and [options](ConsumerOptions), [`Job`], the errors,
//! [`connect`], and the backends with their settings (`RedisBackend` / `RedisConfig`,
//! `FredBackend` / `FredConfig`) and their clients' crates (`curlyq::redis`,
//! `curlyq::fred`), so that a client you build yourself has the version curlyq uses.
//! The contract for backend authors is under [`backend`], the runtimes under
//! [`runtime`].
//!
//! ```no_run
//! use curlyq::{Consumer, Job, Producer};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let backend = curlyq::connect("redis://127.0.0.1:6379").await?;
//!     let producer = Producer::new(backend.clone(), "emails")?;
//!     producer.perform(Job::new("welcome 42")).await?;
//!
//!     let consumer = Consumer::builder("emails").concurrency(10).build(backend)?;
//!     consumer
//!         .run_until_signal(|job: Job| async move {
//!             println!("{}", String::from_utf8_lossy(&job.data));
//!             Ok::<(), std::io::Error>(())
//!         })
//!         .await?;
//!     Ok(())
//! }
//! ```

// docs.rs (`--cfg docsrs`, nightly): badge each feature-gated item with its feature.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(not(any(feature = "tokio", feature = "async-std", feature = "smol")))]
compile_error!(
    "curlyq needs an async runtime: enable one of the features `tokio` (on by default), \
     `async-std` or `smol`, e.g. `curlyq = { version = \"0.1\", features = [\"smol\"] }`"
);

#[cfg(not(any(feature = "redis-rs", feature = "fred")))]
compile_error!(
    "curlyq needs a backend: enable the feature `redis-rs` (on by default) or `fred`; to use \
     a backend of your own, depend on `curlyq-core` instead"
);

use std::sync::Arc;

// crates.io shows this crate's README: its example must compile (run as a doctest).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use curlyq_core::{
    backoff, backoff_bounds, backoff_with_jitter, BackendError, BoxError, CancelReason, Codec,
    CodecError, ConfigError, ConsumeError, Consumer, ConsumerBuilder, ConsumerOptions,
    ConsumerStats, DecodeError, Job, JobContext, Json, LoopName, MemoryBackend, Permanent,
    ProduceError, Producer, RetryAfter, DEFAULT_MAX_PAYLOAD,
};

#[cfg(feature = "msgpack")]
pub use curlyq_core::MessagePack;

pub use curlyq_core::runtime::shutdown_signal;

#[cfg(feature = "redis-rs")]
pub use curlyq_redis_rs::{redis, RedisBackend, RedisConfig, RedisTransport};

#[cfg(feature = "fred")]
pub use curlyq_fred::{fred, FredBackend, FredConfig, FredTransport};

use backend::QueueBackend;

/// For authors of backends and tools: the [`QueueBackend`] contract and its data types,
/// and the Redis backend written once over a [`Transport`](backend::Transport) (which
/// `RedisBackend` and `FredBackend` are).
///
/// Applications rarely name these: they give a backend to [`Producer`] and
/// [`Consumer`]. To test a backend of your own against the contract, see the
/// `curlyq-testkit` crate.
pub mod backend {
    pub use curlyq_core::{
        async_trait, ConsumerId, DeadTrim, DueReport, EncodedJob, KillJob, OrphanReport,
        OrphanSweep, QueueBackend, QueueName, QueueSnapshot, Registration, RetryJob, ScheduledJob,
        TakenJob, Waiter, MAX_BATCH,
    };
    pub use curlyq_lua::calls::Reply;
    pub use curlyq_lua::{
        Command, Connect, DedicatedConnection, RedisFailure, ScriptBackend, Secrets, Transport,
    };
}

/// For operators' tools: the types of the admin operations of [`QueueBackend`] (stats
/// and counters, pages of jobs, find by ID, actions, pause, check and repair); see the
/// `curlyq` command-line tool (crate `curlyq-cli`) for them at work.
pub mod admin {
    pub use curlyq_core::admin::*;
}

/// Metrics and traces following OpenTelemetry's messaging conventions: the metric and
/// label names, and (feature `metrics`) `record_queue_stats` for the queue gauges; see
/// the module for the table of metrics and spans.
pub mod telemetry {
    pub use curlyq_core::telemetry::*;
}

/// The async runtimes a [`Consumer`] runs on: [`Runtime`](runtime::Runtime) and its
/// implementations (`TokioRuntime` with the `tokio` feature, `AsyncIoRuntime` with
/// `async-std` or `smol`).
pub mod runtime {
    pub use curlyq_core::runtime::*;
}

/// Connects to the queue store at `url`: a Redis with the backend chosen by features
/// (redis-rs when the `redis-rs` feature is on, also when `fred` is on too, else fred;
/// use [`connect_redis_rs`] or [`connect_fred`] to choose), or the in-memory backend.
///
/// `url` is `redis://[user:password@]host[:port][/db]`, `rediss://` for TLS (feature
/// `tls`), or `memory://[name]` for a [`MemoryBackend`]: every `connect` of the same
/// name in one process shares one store, so a producer and a consumer meet. The memory
/// backend is for development and tests without a Redis: single-process, and not
/// durable (its jobs are lost when the process ends). Fails with
/// [`BackendError::Unavailable`] when Redis cannot be reached.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let backend = curlyq::connect("redis://127.0.0.1:6379/0").await?;
/// let producer = curlyq::Producer::new(backend.clone(), "emails")?;
/// let consumer = curlyq::Consumer::builder("emails").build(backend)?;
/// # Ok(()) }
/// ```
pub async fn connect(url: &str) -> Result<Arc<dyn QueueBackend>, BackendError> {
    if let Some(name) = memory_name(url) {
        return Ok(Arc::new(MemoryBackend::named(name)));
    }
    #[cfg(feature = "redis-rs")]
    {
        connect_redis_rs(url).await
    }
    #[cfg(all(not(feature = "redis-rs"), feature = "fred"))]
    {
        connect_fred(url).await
    }
    #[cfg(not(any(feature = "redis-rs", feature = "fred")))]
    {
        Err(BackendError::Rejected(format!(
            "{url:?} is not a memory:// URL and no Redis backend is enabled (features `redis-rs`, `fred`)"
        )))
    }
}

/// The store name of a `memory://` URL (case-insensitive scheme; the rest is the name).
fn memory_name(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    scheme.eq_ignore_ascii_case("memory").then_some(rest)
}

/// Connects to the Redis at `url` with the redis-rs backend ([`RedisBackend`]).
#[cfg(feature = "redis-rs")]
pub async fn connect_redis_rs(url: &str) -> Result<Arc<dyn QueueBackend>, BackendError> {
    Ok(Arc::new(RedisBackend::connect(url).await?))
}

/// Connects to the Redis at `url` with the fred backend ([`FredBackend`]).
#[cfg(feature = "fred")]
pub async fn connect_fred(url: &str) -> Result<Arc<dyn QueueBackend>, BackendError> {
    Ok(Arc::new(FredBackend::connect(url).await?))
}
