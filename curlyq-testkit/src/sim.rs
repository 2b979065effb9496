//! [`Simulation`]: consumer cores and a [`MemoryBackend`](crate::MemoryBackend) on
//! simulated time, with no async runtime at all.
//!
//! The simulation owns one or more [`ConsumerCore`]s (the consumer's five loops as a pure
//! state machine), carries out their backend calls on a
//! [`MemoryBackend`](crate::MemoryBackend), runs their handlers as scripted outcomes, and
//! moves time straight to the next thing that happens: a call landing, a reply arriving, a
//! handler ending, a core's timer. Each call lands after a random delay and its reply comes
//! back after another; either can be failed (not carried out) or lost (carried out,
//! reported as failed) at random or on purpose. Everything random comes from one seed, so a
//! run is exactly reproducible. Consumers can crash, pause (past the orphan timeout), and
//! shut down.
//!
//! [`ConsumerCore`]: curlyq_core::consumer::ConsumerCore
//!
//! ```
//! use std::time::Duration;
//! use curlyq_core::{ConsumerOptions, Job};
//! use curlyq_testkit::sim::{HandlerScript, Simulation};
//!
//! let mut sim = Simulation::new("emails", 7);
//! let id = sim.push(Job::new("hello"));
//! let node = sim.start_consumer(ConsumerOptions::default(), |_job: &Job| {
//!     HandlerScript::succeed_after(Duration::from_secs(3))
//! });
//! assert!(sim.run_until(Duration::from_secs(60), |s| s.snapshot().data.is_empty()));
//! assert_eq!(sim.runs_of(&id).len(), 1);
//! sim.shutdown(node);
//! assert!(sim.run_until(Duration::from_secs(60), |s| s.is_finished(node)));
//! assert!(matches!(sim.result(node), Some(Ok(()))));
//! ```

mod events;
mod script;
mod world;

pub use script::{CallRecord, FaultKind, Faults, HandlerScript, NodeId, RunRecord};
pub use world::Simulation;
