//! curlyq's fault-injection suite (a test crate, not published).
//!
//! - [`worker`]: the `curlyq-fault-worker` process, a consumer whose handler does what
//!   each job's payload says (succeed, sleep, abort the process, panic, fail) and records
//!   every successful run in its ledger before returning.
//! - [`ledger`]: append-only files outside Redis, one per process.
//! - [`checker`]: lost, unexpected and duplicated jobs, and an audit of the queue's keys.
//! - [`harness`]: a durable `redis-server`, worker processes (killed on drop), seeds,
//!   bounded waits, a producer that keeps the ledger.
//!
//! The scenarios are the tests of this crate: `tests/ci.rs`, `tests/bad_input.rs` and
//! `tests/security.rs` run with `cargo test --workspace`; `tests/soak.rs` is the soak,
//! run with `cargo test -p curlyq-faults --release --test soak -- --ignored
//! --test-threads 1 --nocapture`.

pub mod checker;
pub mod harness;
pub mod ledger;
pub mod worker;
