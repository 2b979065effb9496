//! Test kit for curlyq: [`MemoryBackend`] (the in-memory reference model of the wire
//! contract), [`ManualRuntime`] (a clock that moves only when the test says so),
//! [`contract`] (backend-agnostic checks of the `QueueBackend` behaviour docs), and
//! [`RedisServer`] (a throwaway `redis-server` on a free loopback port).

pub mod contract;
mod manual;
mod memory;
mod redis_server;

pub use manual::{ManualRuntime, SETTLE_YIELDS};
pub use memory::{orphan_kill_reason, FailWhen, InjectedFailure, MemoryBackend, Operation};
pub use redis_server::RedisServer;

/// The plain-data picture of a queue (defined in `curlyq-core`).
pub use curlyq_core::QueueSnapshot;
