//! curlyq's fault-injection suite (a test crate, not published).
//!
//! - [`worker`]: the `curlyq-fault-worker` process, a consumer whose handler does what
//!   each job's payload says (succeed, sleep, abort the process, panic, fail) and records
//!   every successful run in its ledger before returning.
//! - [`ledger`]: append-only files outside Redis, one per process.
//! - [`checker`]: lost, unexpected and duplicated jobs, and an audit of the queue's keys.
//! - [`harness`]: a durable `redis-server`, worker processes (killed on drop), seeds,
//!   bounded waits, a producer that keeps the ledger.
//! - [`proxy`]: a TCP proxy between workers and Redis that resets connections, black-holes
//!   traffic, adds latency and pauses one direction.
//!
//! The scenarios are the tests of this crate: `tests/ci.rs` (T1, T3, T9),
//! `tests/unknown_outcomes.rs` (T5), `tests/bad_input.rs` (T10), `tests/security.rs` and
//! the proxy's own tests in `tests/network.rs` run with `cargo test --workspace`; the
//! soak (T2, T4, T7, T8 in `tests/soak.rs`, T6 in `tests/network.rs`) runs with
//! `cargo test -p curlyq-faults --release --test soak --test network -- --ignored
//! --test-threads 1 --nocapture`.

pub mod checker;
pub mod harness;
pub mod ledger;
pub mod proxy;
pub mod worker;
