//! The scheduler loop: moves due scheduled jobs to the active list, then sleeps until
//! the earliest due job or its poll interval; woken early when the signal is seen or a
//! retry was recorded (a new job may be due sooner), and at the earliest due time a take
//! saw (a job scheduled with no signal, as Go CurlyQ's producer does, is then on time).

use std::time::{Duration, SystemTime};

use tracing::debug;

use crate::backend::ScheduledPeek;
use crate::error::{BackendError, LoopName};
use crate::options::ConsumerOptions;

use super::calls::unexpected;
use super::calls::Purpose;
use super::machine::ConsumerCore;
use super::policy::{scheduler_sleep, scheduler_wake_for, LoopBackoff};
use super::protocol::{BackendCall, Reply};

/// The scheduler loop's state.
#[derive(Debug)]
pub(super) struct Scheduler {
    /// When the next step is due (`None` while one is in flight, or stopped).
    pub(super) next_at: Option<SystemTime>,
    pub(super) busy: bool,
    /// Woken while a step was in flight: step again at once.
    woken: bool,
    max_jobs: usize,
    poll_interval: Duration,
    backoff: LoopBackoff,
}

impl Scheduler {
    pub(super) fn new(o: &ConsumerOptions) -> Self {
        Scheduler {
            next_at: None,
            busy: false,
            woken: false,
            max_jobs: o.scheduler_max_jobs,
            poll_interval: o.scheduler_poll_interval,
            backoff: LoopBackoff::new(
                LoopName::Scheduler,
                o.scheduler_max_attempts,
                o.scheduler_max_backoff,
            ),
        }
    }
}

impl ConsumerCore {
    pub(super) fn drive_scheduler(&mut self) {
        let s = &self.scheduler;
        if self.is_stopping() || s.busy || !self.due(s.next_at) {
            return;
        }
        self.scheduler.next_at = None;
        self.scheduler.busy = true;
        self.scheduler.woken = false;
        let now = self.unix_now();
        let max = self.scheduler.max_jobs;
        self.call(BackendCall::EnqueueDue { now, max }, Purpose::Due { now });
    }

    /// A job may be due before the scheduler's next wake-up: step at once.
    pub(super) fn wake_scheduler(&mut self) {
        if self.is_stopping() {
            return;
        }
        if self.scheduler.busy {
            self.scheduler.woken = true;
        } else {
            self.scheduler.next_at = Some(self.now);
        }
    }

    /// A take saw the scheduled set: step at its earliest due time when that comes
    /// before the next step.
    pub(super) fn scheduled_seen(&mut self, peek: ScheduledPeek) {
        let ScheduledPeek::Earliest(earliest) = peek else {
            return;
        };
        if self.is_stopping() || self.scheduler.busy {
            // A step in flight reports the earliest due time itself.
            return;
        }
        let (now, unix) = (self.now, self.unix_now());
        self.scheduler.next_at = scheduler_wake_for(self.scheduler.next_at, now, unix, earliest);
    }

    pub(super) fn on_due(&mut self, sent: f64, result: Result<Reply, BackendError>) {
        self.scheduler.busy = false;
        let result = match result {
            Ok(Reply::Due(report)) => Ok(report),
            Ok(other) => Err(unexpected(&other)),
            Err(e) => Err(e),
        };
        let sleep = match result {
            Ok(report) => {
                self.scheduler.backoff.ok();
                if report.moved > 0 {
                    debug!(queue = %self.queue, moved = report.moved, "curlyq scheduled jobs due");
                }
                let s = &self.scheduler;
                if s.woken {
                    Duration::ZERO
                } else {
                    scheduler_sleep(report, sent, s.max_jobs, s.poll_interval)
                }
            }
            Err(e) => match self.scheduler.backoff.failed(e, &mut self.rng) {
                Ok(delay) => delay,
                Err(fatal) => return self.abort(fatal),
            },
        };
        if !self.is_stopping() {
            self.scheduler.next_at = self.after(sleep);
        }
    }
}
