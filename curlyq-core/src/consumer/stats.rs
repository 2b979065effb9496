//! [`ConsumerStats`], the counters of what a consumer did, and the shared copy that a
//! running consumer publishes for [`Consumer::stats`](crate::Consumer::stats) and
//! [`Consumer::consumer_id`](crate::Consumer::consumer_id).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::backend::ConsumerId;

/// Counters of what a consumer did, since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerStats {
    /// Jobs whose handler succeeded and whose ack was recorded.
    pub succeeded: u64,
    /// Failed jobs scheduled for another run.
    pub retried: u64,
    /// Jobs moved to the dead set (failures past max attempts, undecodable or missing
    /// data).
    pub killed: u64,
    /// Outcomes (ack, retry, kill) that found the job no longer owned by this consumer
    /// (it had been reaped; the job may run again elsewhere), and buffered jobs skipped
    /// because they were handed on. They changed nothing.
    pub not_owned: u64,
    /// Taken jobs given back to the queue unstarted (at shutdown) or cancelled.
    pub given_back: u64,
    /// Times the consumer found itself reaped and rejoined under a fresh ID.
    pub rejoined: u64,
}

/// What a running consumer publishes: the counters of earlier runs plus the current
/// run's, and its consumer ID.
#[derive(Debug, Default)]
pub(super) struct Published {
    counters: [AtomicU64; 6],
    current: Mutex<Option<ConsumerId>>,
}

impl ConsumerStats {
    fn as_array(&self) -> [u64; 6] {
        [
            self.succeeded,
            self.retried,
            self.killed,
            self.not_owned,
            self.given_back,
            self.rejoined,
        ]
    }
}

impl Published {
    /// The counters of earlier runs (a run's own start from zero).
    pub(super) fn base(&self) -> [u64; 6] {
        std::array::from_fn(|i| self.counters[i].load(Ordering::Relaxed))
    }

    /// Publishes `run` (a run's counters) on top of `base`.
    pub(super) fn set_stats(&self, base: &[u64; 6], run: &ConsumerStats) {
        for (i, v) in run.as_array().into_iter().enumerate() {
            self.counters[i].store(base[i] + v, Ordering::Relaxed);
        }
    }

    pub(super) fn stats(&self) -> ConsumerStats {
        let [succeeded, retried, killed, not_owned, given_back, rejoined] = self.base();
        ConsumerStats {
            succeeded,
            retried,
            killed,
            not_owned,
            given_back,
            rejoined,
        }
    }

    pub(super) fn set_current(&self, id: Option<ConsumerId>) {
        *self.lock() = id;
    }

    pub(super) fn current(&self) -> Option<ConsumerId> {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, Option<ConsumerId>> {
        crate::lock(&self.current)
    }
}
