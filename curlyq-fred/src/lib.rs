//! curlyq's [`QueueBackend`](curlyq_core::QueueBackend) on Redis through the
//! [`fred`] crate (Redis 6.0 or later, Valkey, Dragonfly).
//!
//! The same queue layout, job encoding and Lua scripts ([`curlyq_lua`]) as the redis-rs
//! backend, so both backends, and Go CurlyQ, can share one queue. [`FredBackend`] is
//! curlyq-lua's [`ScriptBackend`](curlyq_lua::ScriptBackend) on [`FredTransport`]: this
//! crate holds only the transport.
//!
//! - Every operation is one script call with `EVALSHA`; a script missing from the
//!   server's cache is loaded and the call sent again (for every client of a pool).
//!   Batches beyond `MAX_BATCH` are chunked and pipelined in one round trip.
//! - Build it from a URL (`FredBackend::connect`) or from a fred [`Client`] or
//!   [`Pool`] the application already has ([`FredTransport::from_client`],
//!   [`FredTransport::from_pool`]).
//! - Each [`waiter`](curlyq_core::QueueBackend::waiter) has its own client: fred queues
//!   every command behind a blocking one on the same connection.
//! - Errors: an unreachable or silent server is `BackendError::Unavailable`, an error
//!   reply is `BackendError::Rejected`, a `take` by a reaped consumer is
//!   `BackendError::NotRegistered`. No message, `Debug` or `Display` output contains the
//!   password.
//! - fred runs on tokio. Under async-std or smol every operation is wrapped in
//!   `async_compat::Compat`, which runs fred's connection tasks on a tokio runtime of its
//!   own (one background thread); inside a tokio runtime the wrapper does nothing.
//!
//! ```no_run
//! use curlyq_core::{EncodedJob, QueueBackend, QueueName};
//! use curlyq_fred::FredBackend;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let backend = FredBackend::connect("redis://127.0.0.1:6379/0").await?;
//! let queue = QueueName::new("{emails}")?;
//! let new = backend
//!     .push(&queue, &[EncodedJob { id: "job-1".into(), data: b"hi".to_vec() }])
//!     .await?;
//! assert_eq!(new, [true]);
//! # Ok(()) }
//! ```
//!
//! [`Client`]: fred::clients::Client
//! [`Pool`]: fred::clients::Pool

// docs.rs (`--cfg docsrs`, nightly): badge each feature-gated item with its feature.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod error;
mod transport;

pub use config::FredConfig;
pub use curlyq_lua::RedisFailure;
pub use fred;
pub use transport::{FredDedicated, FredTransport};

/// curlyq's [`QueueBackend`](curlyq_core::QueueBackend) on Redis (or Valkey,
/// Dragonfly...) through the `fred` crate: [`ScriptBackend`](curlyq_lua::ScriptBackend)
/// on [`FredTransport`].
///
/// Build it with `FredBackend::connect(url)`, `FredBackend::connect_with(url, config)`
/// ([`FredConfig`]), or `FredBackend::new(FredTransport::from_pool(&pool))`. Cloning is
/// cheap and shares the clients.
pub type FredBackend = curlyq_lua::ScriptBackend<FredTransport>;
