//! curlyq's [`QueueBackend`](curlyq_core::QueueBackend) on Redis through the
//! [`redis`] crate (Redis 6.0 or later, Valkey, Dragonfly).
//!
//! The queue's data layout and job encoding are those of Go CurlyQ, so a Go program and a
//! Rust program can share one queue. Every operation is one Lua script from
//! [`curlyq_lua`], called with `EVALSHA` (the script is loaded again when the server
//! answers `NOSCRIPT`, after a restart or failover). Every key a script touches is
//! declared, so a queue whose name carries a hash tag (`{emails}`) lives in one Redis
//! Cluster slot.
//!
//! [`RedisBackend`] is curlyq-lua's [`ScriptBackend`](curlyq_lua::ScriptBackend) on
//! [`RedisTransport`]: this crate holds only the transport (connection set-up, sending
//! pipelines, the waiter's dedicated connection, the client's errors).
//!
//! - Ordinary operations share one auto-reconnecting multiplexed connection
//!   ([`redis::aio::ConnectionManager`]) with a bounded response timeout
//!   ([`RedisConfig`]).
//! - Each [`waiter`](curlyq_core::QueueBackend::waiter) (the poller's blocking wait on
//!   the queue's signal) has a connection of its own, whose response timeout always
//!   exceeds the block time.
//! - Errors: an unreachable or silent server is [`BackendError::Unavailable`], an error
//!   reply (a key of the wrong type, out of memory) is [`BackendError::Rejected`] and a
//!   `take` by a consumer that is no longer registered is
//!   [`BackendError::NotRegistered`]. No error message and no `Debug` or `Display` output
//!   contains the connection's password.
//!
//! # Example
//!
//! ```no_run
//! use curlyq_core::{ConsumerId, EncodedJob, QueueBackend, QueueName, Registration};
//! use curlyq_redis_rs::RedisBackend;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! // User, password, database and TLS (`rediss://`, feature `tls`) come from the URL.
//! let backend = RedisBackend::connect("redis://127.0.0.1:6379/0").await?;
//! let queue = QueueName::new("{emails}")?;
//!
//! let new = backend
//!     .push(&queue, &[EncodedJob { id: "job-1".into(), data: b"...".to_vec() }])
//!     .await?;
//! assert_eq!(new, [true]);
//!
//! let consumer = ConsumerId::random();
//! backend.register(&queue, &consumer, 1_700_000_000.0, Registration::Join).await?;
//! let jobs = backend.take(&queue, &consumer, 10, 1_700_000_000.0).await?;
//! let ids: Vec<String> = jobs.into_iter().map(|job| job.id).collect();
//! backend.ack(&queue, &consumer, &ids, 0.0).await?;
//! # Ok(())
//! # }
//! ```
//!
//! Most applications do not call these operations themselves: they give the backend to
//! curlyq's producer and consumer.
//!
//! [`BackendError::Unavailable`]: curlyq_core::BackendError::Unavailable
//! [`BackendError::Rejected`]: curlyq_core::BackendError::Rejected
//! [`BackendError::NotRegistered`]: curlyq_core::BackendError::NotRegistered

// docs.rs (`--cfg docsrs`, nightly): badge each feature-gated item with its feature.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod error;
mod transport;

pub use config::RedisConfig;
pub use curlyq_lua::RedisFailure;
pub use redis;
pub use transport::{RedisDedicated, RedisTransport};

/// curlyq's [`QueueBackend`](curlyq_core::QueueBackend) on Redis (or Valkey,
/// Dragonfly...) through the `redis` crate: [`ScriptBackend`](curlyq_lua::ScriptBackend)
/// on [`RedisTransport`].
///
/// Build it with [`RedisBackend::connect`](curlyq_lua::ScriptBackend::connect) (a URL),
/// [`connect_with`](curlyq_lua::ScriptBackend::connect_with) (a URL and a
/// [`RedisConfig`]), or `RedisBackend::new(RedisTransport::from_client(client).await?)`.
/// Cloning is cheap and shares the connection.
pub type RedisBackend = curlyq_lua::ScriptBackend<RedisTransport>;
