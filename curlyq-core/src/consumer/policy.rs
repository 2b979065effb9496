//! The consumer's decisions as pure functions: retry or kill and the delay, when the
//! scheduler wakes, how many jobs the poller may take, when the consumer may have been
//! reaped, how outcomes are grouped into calls, and what becomes of a buffered job.
//! Nothing here reads a clock or draws a random number: both come in as arguments.

use std::time::{Duration, SystemTime};

use rand::Rng;
use tracing::warn;

use crate::backend::{ConsumerId, DueReport};
use crate::backoff::backoff_with_jitter;
use crate::error::{BackendError, ConsumeError, LoopName};
use crate::options::ConsumerOptions;

/// What to do with a job whose run failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    /// Run it again after this delay (its attempt count goes up by one).
    Retry(Duration),
    /// Move it to the dead set.
    Kill,
}

/// A failed job at `attempt` (0 on its first run) is retried while `attempt` is below
/// `max_attempts`: after `asked` when the handler chose a delay (capped at
/// `max_backoff`), else after Go CurlyQ's exponential backoff with `jitter` in `[0, 1)`.
pub(crate) fn after_failure(
    attempt: u32,
    max_attempts: u32,
    max_backoff: Duration,
    jitter: f64,
    asked: Option<Duration>,
) -> AfterFailure {
    if attempt >= max_attempts {
        return AfterFailure::Kill;
    }
    AfterFailure::Retry(match asked {
        Some(delay) => delay.min(max_backoff),
        None => backoff_with_jitter(attempt, max_backoff, jitter),
    })
}

/// How long the scheduler sleeps after a step that moved `report.moved` jobs at `now`
/// (Unix seconds): not at all when it hit its limit (more may be due), until the
/// earliest due job when that is sooner than the poll interval (at least 1 ms), else
/// the poll interval.
pub(crate) fn scheduler_sleep(
    report: DueReport,
    now: f64,
    max_jobs: usize,
    poll_interval: Duration,
) -> Duration {
    if report.moved >= max_jobs {
        return Duration::ZERO;
    }
    match report.next_due {
        Some(next) if next - now < poll_interval.as_secs_f64() => {
            Duration::from_secs_f64((next - now).max(0.001))
        }
        _ => poll_interval,
    }
}

/// When the scheduler should step, given its next step at `next_at` and a take's look at
/// the scheduled set (`earliest` due at that Unix time, `now_unix` being `now`): at the
/// earliest due time when that is sooner (at once when it has passed), else unchanged.
/// A scheduler with no step planned (in flight, or stopped) stays as it is.
pub(crate) fn scheduler_wake_for(
    next_at: Option<SystemTime>,
    now: SystemTime,
    now_unix: f64,
    earliest: f64,
) -> Option<SystemTime> {
    let next = next_at?;
    // A score too far ahead to represent is never sooner; NaN cannot come from a backend
    // (scores are parsed), and is treated as due now.
    let Ok(delay) = Duration::try_from_secs_f64((earliest - now_unix).max(0.0)) else {
        return Some(next);
    };
    Some(match now.checked_add(delay) {
        Some(at) if at < next => at,
        _ => next,
    })
}

/// How many jobs the poller may take: the consumer holds at most `buffer + concurrency`
/// taken jobs (those waiting in the buffer plus one per busy handler slot), so one take
/// fills every idle slot and the buffer at once.
pub(crate) fn poller_room(
    buffer: usize,
    concurrency: usize,
    busy_slots: usize,
    buffered: usize,
) -> usize {
    (buffer + concurrency).saturating_sub(busy_slots + buffered)
}

/// Whether the poller should take now: always when a handler slot would otherwise stay
/// idle (fewer jobs buffered than idle slots), else only once the buffer has drained to
/// half, so that takes come in batches and stay off the path of the outcomes being
/// recorded (a take and an ack on one connection are answered in order).
pub(crate) fn poller_should_take(
    buffer: usize,
    concurrency: usize,
    busy_slots: usize,
    buffered: usize,
) -> bool {
    let idle_slots = concurrency.saturating_sub(busy_slots);
    buffered < idle_slots + buffer.div_ceil(2)
}

/// How long after its last heartbeat a consumer counts as expired (a custodian may then
/// hand its jobs on): heartbeat interval plus consumer timeout.
pub(crate) fn consumer_expiry(opts: &ConsumerOptions) -> Duration {
    opts.heartbeat_interval + opts.custodian_consumer_timeout
}

/// Whether a consumer whose registration was last confirmed at `last_beat` may have been
/// reaped by `now` (Unix seconds): longer ago than `expiry`.
pub(crate) fn may_be_reaped(now: f64, last_beat: f64, expiry: Duration) -> bool {
    now - last_beat > expiry.as_secs_f64()
}

/// What becomes of a job taken earlier and waiting in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BufferedFate {
    /// Start it.
    Run,
    /// Drop it: it was taken under an ID that was reaped since, so a custodian handed
    /// it on (running it here would only run it twice).
    Skip,
}

/// The fate of a buffered job taken under an ID that was (or not) reaped since. (At
/// shutdown every buffered job is given back; the give-back acts only on jobs still
/// owned, so those of a reaped ID stay where the custodian put them.)
pub(crate) fn buffered_fate(taken_under_reaped_id: bool) -> BufferedFate {
    if taken_under_reaped_id {
        BufferedFate::Skip
    } else {
        BufferedFate::Run
    }
}

/// Splits a batch of outcomes into groups of one kind and one consumer ID (one backend
/// call each), in the order each group first appears, keeping the order within groups.
pub(crate) fn group_by<T, K: PartialEq>(
    items: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> (K, &ConsumerId),
) -> Vec<Vec<T>> {
    let mut groups: Vec<Vec<T>> = Vec::new();
    for item in items {
        let slot = groups.iter().position(|g| {
            let (kind, consumer) = key(&g[0]);
            let (k, c) = key(&item);
            kind == k && consumer == c
        });
        match slot {
            Some(i) => groups[i].push(item),
            None => groups.push(vec![item]),
        }
    }
    groups
}

/// Consecutive-failure accounting of one loop: the delay after each failure, and the
/// error that stops the consumer when the loop reaches its max attempts (0 = never).
#[derive(Debug, Clone)]
pub(crate) struct LoopBackoff {
    name: LoopName,
    max_attempts: u32,
    max_backoff: Duration,
    attempts: u32,
}

impl LoopBackoff {
    pub(crate) fn new(name: LoopName, max_attempts: u32, max_backoff: Duration) -> Self {
        LoopBackoff {
            name,
            max_attempts,
            max_backoff,
            attempts: 0,
        }
    }

    /// A step succeeded: the count starts again.
    pub(crate) fn ok(&mut self) {
        self.attempts = 0;
    }

    /// A step failed: the delay before the next, or the error that stops the consumer.
    pub(crate) fn failed(
        &mut self,
        err: BackendError,
        rng: &mut impl Rng,
    ) -> Result<Duration, ConsumeError> {
        self.attempts = self.attempts.saturating_add(1);
        warn!(loop = %self.name, attempt = self.attempts, error = %err, "curlyq loop step failed");
        if self.max_attempts > 0 && self.attempts >= self.max_attempts {
            return Err(ConsumeError::LoopAborted {
                name: self.name,
                attempts: self.attempts,
                last_error: err,
            });
        }
        Ok(backoff_with_jitter(
            self.attempts,
            self.max_backoff,
            rng.random::<f64>(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);

    #[test]
    fn a_scheduled_job_seen_by_a_take_wakes_the_scheduler_at_its_due_time() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let poll = Some(now + Duration::from_secs(5));
        let secs = Duration::from_secs_f64;
        // Due before the next poll: wake at the due time.
        assert_eq!(
            scheduler_wake_for(poll, now, 1_000.0, 1_002.5),
            Some(now + secs(2.5))
        );
        // Already due (a Go producer's whole-second score in the past): at once.
        assert_eq!(scheduler_wake_for(poll, now, 1_000.0, 999.0), Some(now));
        // Due after the next poll, or too far ahead to represent: unchanged.
        assert_eq!(scheduler_wake_for(poll, now, 1_000.0, 1_009.0), poll);
        assert_eq!(scheduler_wake_for(poll, now, 1_000.0, f64::MAX), poll);
        // No step planned (one in flight, or stopped): nothing to move.
        assert_eq!(scheduler_wake_for(None, now, 1_000.0, 999.0), None);
    }

    #[test]
    fn a_failure_below_max_attempts_retries_after_the_exact_backoff() {
        // (1 + jitter) * 2^attempt / 2 seconds.
        assert_eq!(
            after_failure(0, 20, WEEK, 0.0, None),
            AfterFailure::Retry(Duration::from_millis(500))
        );
        assert_eq!(
            after_failure(3, 20, WEEK, 0.25, None),
            AfterFailure::Retry(Duration::from_secs(5))
        );
        assert_eq!(
            after_failure(19, 20, Duration::from_secs(60), 0.0, None),
            AfterFailure::Retry(Duration::from_secs(60)),
            "capped at the max backoff"
        );
        assert_eq!(after_failure(20, 20, WEEK, 0.0, None), AfterFailure::Kill);
        assert_eq!(after_failure(0, 0, WEEK, 0.0, None), AfterFailure::Kill);
    }

    #[test]
    fn a_delay_the_handler_asked_for_is_used_capped_and_attempts_still_bound_it() {
        let minute = Duration::from_secs(60);
        assert_eq!(
            after_failure(0, 20, WEEK, 0.9, Some(Duration::from_secs(42))),
            AfterFailure::Retry(Duration::from_secs(42))
        );
        assert_eq!(
            after_failure(2, 20, minute, 0.0, Some(Duration::from_secs(3600))),
            AfterFailure::Retry(minute),
            "capped at the max backoff"
        );
        assert_eq!(
            after_failure(20, 20, WEEK, 0.0, Some(Duration::from_secs(1))),
            AfterFailure::Kill
        );
    }

    #[test]
    fn a_seeded_rng_gives_the_same_delays_every_time() {
        let delays = |seed| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            (0..5)
                .map(|a| after_failure(a, 20, WEEK, rng.random::<f64>(), None))
                .collect::<Vec<_>>()
        };
        assert_eq!(delays(7), delays(7));
        assert_ne!(delays(7), delays(8));
    }

    #[test]
    fn the_scheduler_wakes_at_the_next_due_job_or_the_poll_interval() {
        let poll = Duration::from_secs(5);
        let report = |moved, next_due| DueReport { moved, next_due };
        assert_eq!(
            scheduler_sleep(report(50, None), 100.0, 50, poll),
            Duration::ZERO
        );
        assert_eq!(scheduler_sleep(report(3, None), 100.0, 50, poll), poll);
        assert_eq!(
            scheduler_sleep(report(0, Some(102.0)), 100.0, 50, poll),
            Duration::from_secs(2)
        );
        assert_eq!(
            scheduler_sleep(report(0, Some(105.0)), 100.0, 50, poll),
            poll
        );
        assert_eq!(
            scheduler_sleep(report(0, Some(99.0)), 100.0, 50, poll),
            Duration::from_millis(1),
            "a job already due: soon, but not a busy loop"
        );
    }

    #[test]
    fn the_poller_fills_idle_slots_and_the_buffer_and_no_more() {
        assert_eq!(poller_room(1, 16, 0, 0), 17);
        assert_eq!(poller_room(10, 5, 5, 10), 0);
        assert_eq!(poller_room(10, 5, 2, 0), 13);
        assert_eq!(poller_room(10, 5, 5, 12), 0, "never negative");
    }

    #[test]
    fn the_poller_takes_at_once_for_idle_slots_else_when_the_buffer_is_half_empty() {
        // 16 idle slots, nothing buffered: take now (17 fit).
        assert!(poller_should_take(1, 16, 0, 0));
        // One busy slot, a full buffer but one: wait for the buffer to drain to half.
        assert!(!poller_should_take(10, 1, 1, 9));
        assert!(!poller_should_take(10, 1, 1, 5));
        assert!(poller_should_take(10, 1, 1, 4));
        // An idle slot that the buffer cannot fill: take now.
        assert!(poller_should_take(10, 5, 0, 4));
        assert!(poller_should_take(1, 1, 0, 0));
        assert!(!poller_should_take(1, 1, 1, 1));
    }

    #[test]
    fn expiry_is_heartbeat_interval_plus_consumer_timeout() {
        let o = ConsumerOptions::default();
        assert_eq!(consumer_expiry(&o), Duration::from_secs(120));
        assert!(!may_be_reaped(220.0, 100.0, Duration::from_secs(120)));
        assert!(may_be_reaped(220.5, 100.0, Duration::from_secs(120)));
    }

    #[test]
    fn a_buffered_job_of_a_reaped_id_is_skipped() {
        assert_eq!(buffered_fate(false), BufferedFate::Run);
        assert_eq!(buffered_fate(true), BufferedFate::Skip);
    }

    #[test]
    fn outcomes_group_by_kind_and_consumer_in_first_seen_order() {
        let (a, b) = (ConsumerId::from_string("a"), ConsumerId::from_string("b"));
        let items = vec![
            ("ack", a.clone(), 1),
            ("retry", a.clone(), 2),
            ("ack", b.clone(), 3),
            ("ack", a.clone(), 4),
            ("retry", a.clone(), 5),
        ];
        let groups = group_by(items, |(kind, c, _)| (*kind, c));
        let numbers: Vec<Vec<i32>> = groups
            .iter()
            .map(|g| g.iter().map(|(_, _, n)| *n).collect())
            .collect();
        assert_eq!(numbers, vec![vec![1, 4], vec![2, 5], vec![3]]);
    }

    #[test]
    fn a_loop_aborts_at_its_max_attempts_and_resets_on_success() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let err = || BackendError::Rejected("x".into());
        let mut bo = LoopBackoff::new(LoopName::Poller, 3, Duration::from_secs(30));
        let d1 = bo.failed(err(), &mut rng).unwrap();
        assert!(d1 >= Duration::from_secs(1) && d1 < Duration::from_secs(2));
        bo.ok();
        bo.failed(err(), &mut rng).unwrap();
        bo.failed(err(), &mut rng).unwrap();
        assert!(matches!(
            bo.failed(err(), &mut rng),
            Err(ConsumeError::LoopAborted { attempts: 3, .. })
        ));
        let mut never = LoopBackoff::new(LoopName::Poller, 0, Duration::from_secs(30));
        for _ in 0..100 {
            assert!(never.failed(err(), &mut rng).unwrap() <= Duration::from_secs(30));
        }
    }
}
