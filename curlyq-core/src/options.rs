//! Consumer options: Go CurlyQ's, with its defaults and minimums, and a few new ones.

use std::time::Duration;

use crate::backend::MAX_BATCH;
use crate::error::ConfigError;

/// Every option of a consumer. [`Default`] gives Go CurlyQ's defaults; set options
/// through [`ConsumerBuilder`](crate::ConsumerBuilder), which checks them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerOptions {
    /// A failed job whose attempt count is below this is retried, otherwise killed.
    /// Default 20 (so up to 21 runs, as in Go). 0 is refused (Go reads it as 20); to
    /// kill a job at its first failure set [`no_retries`](Self::no_retries).
    pub job_max_attempts: u32,
    /// Kill a failed job at its first failure, whatever `job_max_attempts` says. Default
    /// false. (New: Go CurlyQ cannot express this.)
    pub no_retries: bool,
    /// The longest delay between two runs of a failing job. Default 1 week.
    pub job_max_backoff: Duration,
    /// How long shutdown waits for running handlers; 0 waits forever. Default 0.
    pub shutdown_grace_period: Duration,
    /// How long after a missed heartbeat a consumer counts as dead. Default 1 min, min 5 s.
    pub custodian_consumer_timeout: Duration,
    /// Consecutive failures before the custodian aborts the consumer; 0 = never. Default 0.
    pub custodian_max_attempts: u32,
    /// The custodian's longest delay between failed attempts. Default 30 s.
    pub custodian_max_backoff: Duration,
    /// Most orphaned jobs recovered per sweep. Default 50, max 1000.
    pub custodian_max_jobs: usize,
    /// How often the custodian sweeps. Default 1 min.
    pub custodian_poll_interval: Duration,
    /// Consecutive failures before the heartbeat aborts the consumer; 0 = never. Default 0.
    pub heartbeat_max_attempts: u32,
    /// The heartbeat's longest delay between failed attempts. Default 30 s.
    pub heartbeat_max_backoff: Duration,
    /// How often the consumer heartbeats. Default 1 min, min 15 s.
    pub heartbeat_interval: Duration,
    /// How many taken jobs wait locally for a free handler. Default 10, max 1000.
    pub poller_buffer_size: usize,
    /// Consecutive failures before the poller aborts the consumer; 0 = never. Default 0.
    pub poller_max_attempts: u32,
    /// The poller's longest delay between failed attempts. Default 30 s.
    pub poller_max_backoff: Duration,
    /// How long one blocking wait for new jobs lasts. Default 5 s, min 1 s.
    pub poller_poll_duration: Duration,
    /// How many handlers run at once. Default 5.
    pub processor_concurrency: usize,
    /// Consecutive failures to record one job's outcome (ack, retry, kill) before the
    /// consumer aborts; 0 = keep trying. Default 0. (New: Go aborts at the first failure.)
    pub processor_max_attempts: u32,
    /// The longest delay between attempts to record an outcome. Default 30 s.
    pub processor_max_backoff: Duration,
    /// Consecutive failures before the scheduler aborts the consumer; 0 = never. Default 0.
    pub scheduler_max_attempts: u32,
    /// The scheduler's longest delay between failed attempts. Default 30 s.
    pub scheduler_max_backoff: Duration,
    /// Most due jobs moved per step. Default 50, max 1000.
    pub scheduler_max_jobs: usize,
    /// The scheduler's longest sleep; it wakes earlier when a job is due. Default 5 s.
    pub scheduler_poll_interval: Duration,
    /// A job whose consumer was reaped this many times while holding it is killed (it
    /// probably crashes its process); 0 = never. Default 3. (New.)
    pub max_orphan_requeues: u32,
    /// At most this many jobs are kept in the dead set. Default 10,000. (New.)
    pub dead_max_jobs: usize,
    /// Dead jobs older than this are removed. Default 180 days. (New.)
    pub dead_max_age: Duration,
    /// How long one run of a job may take: at its end the handler's
    /// [cancellation signal](crate::JobContext::cancelled) fires, and a run that has not
    /// returned `Ok` within [`cancel_grace_period`](Self::cancel_grace_period) more counts
    /// as failed ("timed out after …"; retried or killed as usual). `None`, the default,
    /// lets a run take as long as it takes; a handler can set its own run's bound with
    /// [`JobContext::set_timeout`](crate::JobContext::set_timeout). (New.)
    pub job_timeout: Option<Duration>,
    /// After a run's cancellation signal fired (its timeout or the shutdown grace period
    /// ran out), how long its handler has to return before it is dropped. Default 1 s; 0
    /// drops it at once. (New.)
    pub cancel_grace_period: Duration,
}

const MINUTE: Duration = Duration::from_secs(60);
const BACKOFF: Duration = Duration::from_secs(30);

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions {
            job_max_attempts: 20,
            no_retries: false,
            job_max_backoff: Duration::from_secs(7 * 24 * 3600),
            shutdown_grace_period: Duration::ZERO,
            custodian_consumer_timeout: MINUTE,
            custodian_max_attempts: 0,
            custodian_max_backoff: BACKOFF,
            custodian_max_jobs: 50,
            custodian_poll_interval: MINUTE,
            heartbeat_max_attempts: 0,
            heartbeat_max_backoff: BACKOFF,
            heartbeat_interval: MINUTE,
            poller_buffer_size: 10,
            poller_max_attempts: 0,
            poller_max_backoff: BACKOFF,
            poller_poll_duration: Duration::from_secs(5),
            processor_concurrency: 5,
            processor_max_attempts: 0,
            processor_max_backoff: BACKOFF,
            scheduler_max_attempts: 0,
            scheduler_max_backoff: BACKOFF,
            scheduler_max_jobs: 50,
            scheduler_poll_interval: Duration::from_secs(5),
            max_orphan_requeues: 3,
            dead_max_jobs: 10_000,
            dead_max_age: Duration::from_secs(180 * 24 * 3600),
            job_timeout: None,
            cancel_grace_period: Duration::from_secs(1),
        }
    }
}

impl ConsumerOptions {
    /// Checks every option, returning the first one out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let min = |option, given: Duration, min: Duration| {
            if given.is_zero() {
                Err(ConfigError::Zero { option })
            } else if given < min {
                Err(ConfigError::BelowMinimum { option, given, min })
            } else {
                Ok(())
            }
        };
        let nonzero = |option, given: Duration| min(option, given, Duration::from_millis(1));
        let count = |option, given: usize, max: usize| {
            if given == 0 {
                Err(ConfigError::Zero { option })
            } else if given > max {
                Err(ConfigError::TooLarge { option, given, max })
            } else {
                Ok(())
            }
        };
        if self.job_max_attempts == 0 {
            return Err(ConfigError::Zero {
                option: "job_max_attempts",
            });
        }
        nonzero("job_max_backoff", self.job_max_backoff)?;
        min(
            "custodian_consumer_timeout",
            self.custodian_consumer_timeout,
            Duration::from_secs(5),
        )?;
        nonzero("custodian_max_backoff", self.custodian_max_backoff)?;
        count("custodian_max_jobs", self.custodian_max_jobs, MAX_BATCH)?;
        nonzero("custodian_poll_interval", self.custodian_poll_interval)?;
        nonzero("heartbeat_max_backoff", self.heartbeat_max_backoff)?;
        min(
            "heartbeat_interval",
            self.heartbeat_interval,
            Duration::from_secs(15),
        )?;
        count("poller_buffer_size", self.poller_buffer_size, MAX_BATCH)?;
        nonzero("poller_max_backoff", self.poller_max_backoff)?;
        min(
            "poller_poll_duration",
            self.poller_poll_duration,
            Duration::from_secs(1),
        )?;
        count("processor_concurrency", self.processor_concurrency, 100_000)?;
        nonzero("processor_max_backoff", self.processor_max_backoff)?;
        nonzero("scheduler_max_backoff", self.scheduler_max_backoff)?;
        count("scheduler_max_jobs", self.scheduler_max_jobs, MAX_BATCH)?;
        nonzero("scheduler_poll_interval", self.scheduler_poll_interval)?;
        count("dead_max_jobs", self.dead_max_jobs, usize::MAX)?;
        nonzero("dead_max_age", self.dead_max_age)?;
        if let Some(timeout) = self.job_timeout {
            nonzero("job_timeout", timeout)?;
        }
        Ok(())
    }
}

/// What Go CurlyQ makes of 0 in `option` (for error messages).
pub(crate) fn go_reads_zero_as(option: &str) -> &'static str {
    match option {
        "job_max_attempts" => "its default of 20 retries (up to 21 runs)",
        "job_max_backoff" => "its default of 1 week",
        "custodian_consumer_timeout" | "custodian_poll_interval" | "heartbeat_interval" => {
            "its default of 1 minute"
        }
        "custodian_max_backoff"
        | "heartbeat_max_backoff"
        | "poller_max_backoff"
        | "scheduler_max_backoff" => "its default of 30 seconds",
        "custodian_max_jobs" | "scheduler_max_jobs" => "its default of 50",
        "poller_buffer_size" => "its default of 10",
        "poller_poll_duration" | "scheduler_poll_interval" => "its default of 5 seconds",
        "processor_concurrency" => "its default of 5",
        _ => "nothing (the option is curlyq's own)",
    }
}

/// What to write instead of 0 in `option` (for error messages).
pub(crate) fn zero_hint(option: &str) -> &'static str {
    match option {
        "job_max_attempts" => {
            "Write 20 (or leave it unset) for Go's meaning; to kill a job at its first failure, use ConsumerBuilder::no_retries()"
        }
        "shutdown_grace_period" => "0 waits forever, as in Go",
        "dead_max_jobs" => "Write the largest dead set to keep (default 10,000)",
        "dead_max_age" | "job_timeout" | "processor_max_backoff" => {
            "Write a positive duration, or leave the option unset for its default"
        }
        _ => "Write Go's default shown here, or leave the option unset",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_go_curlyq_defaults_and_valid() {
        let o = ConsumerOptions::default();
        assert_eq!(o.job_max_attempts, 20);
        assert_eq!(o.job_max_backoff, Duration::from_secs(168 * 3600));
        assert_eq!(o.heartbeat_interval, MINUTE);
        assert_eq!(o.custodian_consumer_timeout, MINUTE);
        assert_eq!(o.poller_poll_duration, Duration::from_secs(5));
        assert_eq!((o.poller_buffer_size, o.processor_concurrency), (10, 5));
        assert_eq!((o.scheduler_max_jobs, o.custodian_max_jobs), (50, 50));
        assert_eq!(o.validate(), Ok(()));
    }

    /// Every option where Go CurlyQ reads 0 as its default is refused with a message
    /// that says so and what to write instead; durations below a minimum (which Go
    /// silently raises) too.
    #[test]
    fn zero_and_below_minimum_values_are_refused_with_what_go_would_do() {
        let zero = |set: fn(&mut ConsumerOptions)| {
            let mut o = ConsumerOptions::default();
            set(&mut o);
            o.validate().unwrap_err()
        };
        let e = zero(|o| o.job_max_attempts = 0);
        assert_eq!(
            e,
            ConfigError::Zero {
                option: "job_max_attempts"
            }
        );
        let text = e.to_string();
        assert!(
            text.contains("Go CurlyQ would silently use its default of 20 retries"),
            "{text}"
        );
        assert!(text.contains("no_retries()"), "{text}");
        type Case = (fn(&mut ConsumerOptions), &'static str, &'static str);
        let cases: [Case; 13] = [
            (
                |o| o.job_max_backoff = Duration::ZERO,
                "job_max_backoff",
                "1 week",
            ),
            (
                |o| o.custodian_consumer_timeout = Duration::ZERO,
                "custodian_consumer_timeout",
                "1 minute",
            ),
            (
                |o| o.custodian_max_backoff = Duration::ZERO,
                "custodian_max_backoff",
                "30 seconds",
            ),
            (|o| o.custodian_max_jobs = 0, "custodian_max_jobs", "50"),
            (
                |o| o.custodian_poll_interval = Duration::ZERO,
                "custodian_poll_interval",
                "1 minute",
            ),
            (
                |o| o.heartbeat_max_backoff = Duration::ZERO,
                "heartbeat_max_backoff",
                "30 seconds",
            ),
            (
                |o| o.heartbeat_interval = Duration::ZERO,
                "heartbeat_interval",
                "1 minute",
            ),
            (|o| o.poller_buffer_size = 0, "poller_buffer_size", "10"),
            (
                |o| o.poller_max_backoff = Duration::ZERO,
                "poller_max_backoff",
                "30 seconds",
            ),
            (
                |o| o.poller_poll_duration = Duration::ZERO,
                "poller_poll_duration",
                "5 seconds",
            ),
            (
                |o| o.processor_concurrency = 0,
                "processor_concurrency",
                "5",
            ),
            (|o| o.scheduler_max_jobs = 0, "scheduler_max_jobs", "50"),
            (
                |o| o.scheduler_poll_interval = Duration::ZERO,
                "scheduler_poll_interval",
                "5 seconds",
            ),
        ];
        for (set, option, go) in cases {
            let e = zero(set);
            assert_eq!(e, ConfigError::Zero { option }, "{option}");
            let text = e.to_string();
            assert!(text.contains(&format!("its default of {go}")), "{text}");
        }
        let e = zero(|o| o.heartbeat_interval = Duration::from_secs(10));
        assert!(
            e.to_string()
                .contains("Go CurlyQ would silently raise it to 15s"),
            "{e}"
        );
        let o = ConsumerOptions {
            no_retries: true,
            ..ConsumerOptions::default()
        };
        assert_eq!(o.validate(), Ok(()));
    }

    #[test]
    fn out_of_range_options_are_errors() {
        let o = ConsumerOptions {
            heartbeat_interval: Duration::from_secs(14),
            ..Default::default()
        };
        assert!(matches!(
            o.validate(),
            Err(ConfigError::BelowMinimum {
                option: "heartbeat_interval",
                ..
            })
        ));
        let o = ConsumerOptions {
            processor_concurrency: 0,
            ..Default::default()
        };
        assert_eq!(
            o.validate(),
            Err(ConfigError::Zero {
                option: "processor_concurrency"
            })
        );
        for n in [1001, 7999, 8000, 50_000] {
            let o = ConsumerOptions {
                scheduler_max_jobs: n,
                ..Default::default()
            };
            assert!(
                matches!(o.validate(), Err(ConfigError::TooLarge { .. })),
                "{n}"
            );
        }
    }
}
