//! Core of [curlyq](https://crates.io/crates/curlyq): reliable background jobs, wire
//! compatible with Go CurlyQ.
//!
//! This crate holds what does not depend on a Redis client or an async runtime: the
//! [`Job`] and its encoding, the [`QueueBackend`] contract (one method per atomic
//! operation), the [`Producer`], and the [`Consumer`] with its five loops (heartbeat,
//! scheduler, custodian, poller, processor), generic over the backend and the
//! [`Runtime`]. Most applications use it through the `curlyq` facade crate.

mod backend;
mod error;
mod job;
pub mod runtime;

pub use backend::{
    ConsumerId, DeadTrim, DueReport, EncodedJob, KillJob, OrphanReport, OrphanSweep, QueueBackend,
    QueueName, Registration, RetryJob, ScheduledJob, TakenJob, Waiter, MAX_BATCH,
};
pub use error::{
    BackendError, BoxError, ConfigError, ConsumeError, DecodeError, LoopName, ProduceError,
};
pub use job::Job;
pub use runtime::{unix_seconds, Runtime};
#[cfg(feature = "tokio")]
pub use runtime::TokioRuntime;

/// Re-exported so that backend implementors use the same `async_trait` as the trait.
pub use async_trait::async_trait;
