//! Reliable background jobs on Redis, wire compatible with Go
//! [CurlyQ](https://github.com/mcmathja/curlyq): a Go producer and a Rust consumer (or the
//! reverse) can share one queue.
//!
//! Choose the backend and the runtime with features: `redis-rs` and `tokio` are on by
//! default. Everything users name is re-exported here: [`Producer`], [`Consumer`],
//! [`Job`], the errors, and [`connect`].
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
//!         .run_until_ctrl_c(|job: Job| async move {
//!             println!("{}", String::from_utf8_lossy(&job.data));
//!             Ok::<(), std::io::Error>(())
//!         })
//!         .await?;
//!     Ok(())
//! }
//! ```

#[cfg(not(any(feature = "tokio")))]
compile_error!(
    "curlyq needs an async runtime: enable the `tokio` feature (on by default), e.g. \
     `curlyq = { version = \"0.1\", features = [\"tokio\"] }`"
);

#[cfg(not(any(feature = "redis-rs")))]
compile_error!(
    "curlyq needs a backend: enable the `redis-rs` feature (on by default); to use a backend \
     of your own, depend on `curlyq-core` instead"
);

use std::sync::Arc;

pub use curlyq_core::*;

/// The Redis backend chosen by features (`redis-rs`: [`curlyq_redis_rs::RedisBackend`]).
#[cfg(feature = "redis-rs")]
pub use curlyq_redis_rs::RedisBackend;

/// Connects to the Redis at `url` with the backend chosen by features.
///
/// `url` is `redis://[user:password@]host[:port][/db]`, or `rediss://` for TLS (feature
/// `tls`). Fails with [`BackendError::Unavailable`] when Redis cannot be reached.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let backend = curlyq::connect("redis://127.0.0.1:6379/0").await?;
/// let producer = curlyq::Producer::new(backend.clone(), "emails")?;
/// let consumer = curlyq::Consumer::builder("emails").build(backend)?;
/// # Ok(()) }
/// ```
#[cfg(feature = "redis-rs")]
pub async fn connect(url: &str) -> Result<Arc<dyn QueueBackend>, BackendError> {
    Ok(Arc::new(RedisBackend::connect(url).await?))
}
