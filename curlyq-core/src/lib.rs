//! Core of [curlyq](https://crates.io/crates/curlyq): reliable background jobs, wire
//! compatible with Go CurlyQ.
//!
//! This crate holds what does not depend on a Redis client or an async runtime: the
//! [`Job`] and its encoding, the [`QueueBackend`] contract (one method per atomic
//! operation), the [`Producer`], and the [`Consumer`] with its five loops (heartbeat,
//! scheduler, custodian, poller, processor), generic over the backend and the
//! [`Runtime`]. Most applications use it through the `curlyq` facade crate.

// docs.rs (`--cfg docsrs`, nightly): badge each feature-gated item with its feature.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod admin;
mod backend;
mod backoff;
mod codec;
pub mod consumer;
mod context;
mod error;
mod failure;
mod job;
pub mod memory;
mod options;
mod producer;
pub mod runtime;
mod snapshot;
pub mod telemetry;

pub use backend::{
    ConsumerId, DeadTrim, DueReport, EncodedJob, KillJob, OrphanReport, OrphanSweep, QueueBackend,
    QueueName, Registration, RetryJob, ScheduledJob, ScheduledPeek, TakeReport, TakenJob, Waiter,
    ERRORS_SWEEP, MAX_BATCH,
};
pub use backoff::{backoff, backoff_bounds, backoff_with_jitter};
#[cfg(feature = "msgpack")]
pub use codec::MessagePack;
pub use codec::{Codec, CodecError, Json};
pub use consumer::{Consumer, ConsumerBuilder, ConsumerStats};
pub use context::{CancelReason, JobContext};
pub use error::{
    BackendError, BoxError, ConfigError, ConsumeError, DecodeError, LoopName, ProduceError,
};
pub use failure::{Permanent, RetryAfter};
pub use job::Job;
pub use memory::MemoryBackend;
pub use options::ConsumerOptions;
pub use producer::{Producer, DEFAULT_MAX_PAYLOAD};
#[cfg(feature = "async-io")]
pub use runtime::AsyncIoRuntime;
#[cfg(feature = "tokio")]
pub use runtime::TokioRuntime;
pub use runtime::{unix_seconds, Runtime};
pub use snapshot::QueueSnapshot;

/// Re-exported so that backend implementors use the same `async_trait` as the trait.
pub use async_trait::async_trait;

/// Locks a mutex, ignoring poisoning: every mutex of the crate guards plain data that a
/// panic cannot leave half-written (an assignment, an entry put or taken), so the state
/// is valid and the next user must not be stopped by someone else's panic.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
