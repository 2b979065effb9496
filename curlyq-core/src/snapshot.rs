//! A plain-data picture of one queue, for tests, tools and the conformance suite.

use std::collections::{BTreeMap, BTreeSet};

/// The state of one queue as plain data, in the shape of its Redis keys.
///
/// Sorted sets are listed by `(score, member)` as Redis orders them; in-flight sets that
/// are empty are absent (Redis deletes empty sets).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueueSnapshot {
    /// `Q:data`: job ID -> stored bytes.
    pub data: BTreeMap<String, Vec<u8>>,
    /// `Q:active`: IDs from head to tail.
    pub active: Vec<String>,
    /// `Q:scheduled`: `(ID, due time)`, sorted by (score, member).
    pub scheduled: Vec<(String, f64)>,
    /// `Q:dead`: `(ID, time of death)`, sorted by (score, member).
    pub dead: Vec<(String, f64)>,
    /// `Q:consumers`: `(consumer ID, last heartbeat)`, sorted by (score, member).
    pub consumers: Vec<(String, f64)>,
    /// `Q:inflight:<consumer>`: consumer ID -> taken job IDs (non-empty sets only).
    pub inflight: BTreeMap<String, BTreeSet<String>>,
    /// `Q:signal`: whether the wake-up flag is set.
    pub signal: bool,
    /// `Q:dead:reasons`: dead job ID -> why it died.
    pub reasons: BTreeMap<String, String>,
    /// `Q:orphaned`: job ID -> times its consumer was reaped while holding it.
    pub orphaned: BTreeMap<String, u32>,
    /// `Q:errors`: job ID -> why its last run failed, for jobs waiting for a retry.
    pub errors: BTreeMap<String, String>,
}

impl QueueSnapshot {
    /// All job IDs in the in-flight sets of every consumer.
    pub fn all_inflight(&self) -> BTreeSet<String> {
        self.inflight.values().flatten().cloned().collect()
    }
}
