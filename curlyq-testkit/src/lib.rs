#![doc = include_str!("../README.md")]
// docs.rs (`--cfg docsrs`, nightly): badge each feature-gated item with its feature.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(all(feature = "browser", unix))]
#[cfg_attr(docsrs, doc(cfg(feature = "browser")))]
pub mod browser;
pub mod conformance;
pub mod contract;
mod faulty;
mod manual;
mod redis_server;
pub mod robustness;
pub mod sim;

pub use curlyq_core::memory::{orphan_kill_reason, MemoryBackend};
pub use faulty::{FailWhen, Faulty, InjectedFailure, Operation};
pub use manual::{ManualRuntime, SETTLE_YIELDS};
pub use redis_server::{RedisServer, Resp};

/// The plain-data picture of a queue (defined in `curlyq-core`).
pub use curlyq_core::QueueSnapshot;
