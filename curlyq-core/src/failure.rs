//! Handler errors that choose what happens to the job: [`Permanent`] (kill it now) and
//! [`RetryAfter`] (retry it after a delay of the handler's choosing). Any other error,
//! or a panic, is retried with the consumer's exponential backoff.

use std::time::Duration;

use crate::error::BoxError;

/// A failure that retrying cannot fix: the job goes to the dead set at once (the
/// attempt is counted; the dead reason is `permanent failure: <message>`), whatever its
/// attempts left. Like asynq's `SkipRetry` and BullMQ's `UnrecoverableError`.
///
/// Return it from a handler as the error (it converts into
/// [`BoxError`](crate::BoxError), `anyhow::Error` and the like; it is found through
/// wrappers that keep it as a `source`).
///
/// ```
/// use curlyq_core::{BoxError, Job, Permanent};
///
/// async fn handler(job: Job) -> Result<(), BoxError> {
///     if job.data.is_empty() {
///         return Err(Permanent::new("an empty payload can never be sent").into());
///     }
///     Ok(())
/// }
/// # let _ = handler;
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Permanent(#[source] BoxError);

impl Permanent {
    /// Wraps `error` (a message or any error) as a permanent failure.
    pub fn new(error: impl Into<BoxError>) -> Self {
        Permanent(error.into())
    }

    /// The wrapped error.
    pub fn error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

/// A failure to retry after `delay` rather than after the consumer's backoff: the
/// attempt is counted, and a job out of attempts is killed as usual. The delay is capped
/// at the consumer's `job_max_backoff`. Like Sidekiq's `sidekiq_retry_in`, decided where
/// the failure is known (a rate limit's `Retry-After`, say).
///
/// ```
/// use std::time::Duration;
/// use curlyq_core::{BoxError, Job, RetryAfter};
///
/// async fn handler(_job: Job) -> Result<(), BoxError> {
///     Err(RetryAfter::new(Duration::from_secs(30), "rate limited by the mail API").into())
/// }
/// # let _ = handler;
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct RetryAfter {
    delay: Duration,
    #[source]
    error: BoxError,
}

impl RetryAfter {
    /// Wraps `error` as a failure to retry after `delay`.
    pub fn new(delay: Duration, error: impl Into<BoxError>) -> Self {
        RetryAfter {
            delay,
            error: error.into(),
        }
    }

    /// The delay asked for (before the cap).
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// The wrapped error.
    pub fn error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.error
    }
}

/// What a handler's error asks for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Asked {
    /// The consumer's backoff.
    Backoff,
    /// Kill now.
    Permanent,
    /// Retry after this delay.
    RetryAfter(Duration),
}

/// Finds a [`Permanent`] or [`RetryAfter`] in `error` or its chain of sources.
pub(crate) fn classify(error: &(dyn std::error::Error + 'static)) -> Asked {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    // A chain is short; the bound guards against a cyclic `source`.
    for _ in 0..32 {
        let Some(e) = next else { break };
        if e.is::<Permanent>() {
            return Asked::Permanent;
        }
        if let Some(r) = e.downcast_ref::<RetryAfter>() {
            return Asked::RetryAfter(r.delay);
        }
        next = e.source();
    }
    Asked::Backoff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("sending failed")]
    struct Wrapper(#[source] BoxError);

    #[test]
    fn classifies_directly_and_through_sources() {
        let plain: BoxError = "boom".into();
        assert_eq!(classify(&*plain), Asked::Backoff);
        let p: BoxError = Permanent::new("bad address").into();
        assert_eq!(classify(&*p), Asked::Permanent);
        assert_eq!(p.to_string(), "bad address");
        let r: BoxError = RetryAfter::new(Duration::from_secs(7), "slow down").into();
        assert_eq!(classify(&*r), Asked::RetryAfter(Duration::from_secs(7)));
        let wrapped: BoxError = Wrapper(Permanent::new("deep").into()).into();
        assert_eq!(classify(&*wrapped), Asked::Permanent);
    }
}
