//! [`ConsumerBuilder`]: a consumer's queue, options and runtime, checked when built.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::{QueueBackend, QueueName};
use crate::error::ConfigError;
use crate::options::ConsumerOptions;
use crate::runtime::Runtime;

use super::Consumer;
/// Builds a [`Consumer`], checking every option. Start with [`Consumer::builder`].
#[derive(Clone)]
pub struct ConsumerBuilder {
    queue: String,
    options: ConsumerOptions,
    runtime: Option<Arc<dyn Runtime>>,
}

impl std::fmt::Debug for ConsumerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerBuilder")
            .field("queue", &self.queue)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, value: $ty) -> Self {
                self.options.$name = value;
                self
            }
        )*
    };
}

impl ConsumerBuilder {
    setters! {
        /// See [`ConsumerOptions::job_max_attempts`].
        job_max_attempts: u32;
        /// See [`ConsumerOptions::job_max_backoff`].
        job_max_backoff: Duration;
        /// See [`ConsumerOptions::shutdown_grace_period`].
        shutdown_grace_period: Duration;
        /// See [`ConsumerOptions::custodian_consumer_timeout`].
        custodian_consumer_timeout: Duration;
        /// See [`ConsumerOptions::custodian_max_attempts`].
        custodian_max_attempts: u32;
        /// See [`ConsumerOptions::custodian_max_backoff`].
        custodian_max_backoff: Duration;
        /// See [`ConsumerOptions::custodian_max_jobs`].
        custodian_max_jobs: usize;
        /// See [`ConsumerOptions::custodian_poll_interval`].
        custodian_poll_interval: Duration;
        /// See [`ConsumerOptions::heartbeat_max_attempts`].
        heartbeat_max_attempts: u32;
        /// See [`ConsumerOptions::heartbeat_max_backoff`].
        heartbeat_max_backoff: Duration;
        /// See [`ConsumerOptions::heartbeat_interval`].
        heartbeat_interval: Duration;
        /// See [`ConsumerOptions::poller_buffer_size`].
        poller_buffer_size: usize;
        /// See [`ConsumerOptions::poller_max_attempts`].
        poller_max_attempts: u32;
        /// See [`ConsumerOptions::poller_max_backoff`].
        poller_max_backoff: Duration;
        /// See [`ConsumerOptions::poller_poll_duration`].
        poller_poll_duration: Duration;
        /// See [`ConsumerOptions::processor_concurrency`].
        processor_concurrency: usize;
        /// See [`ConsumerOptions::processor_max_attempts`].
        processor_max_attempts: u32;
        /// See [`ConsumerOptions::processor_max_backoff`].
        processor_max_backoff: Duration;
        /// See [`ConsumerOptions::scheduler_max_attempts`].
        scheduler_max_attempts: u32;
        /// See [`ConsumerOptions::scheduler_max_backoff`].
        scheduler_max_backoff: Duration;
        /// See [`ConsumerOptions::scheduler_max_jobs`].
        scheduler_max_jobs: usize;
        /// See [`ConsumerOptions::scheduler_poll_interval`].
        scheduler_poll_interval: Duration;
        /// See [`ConsumerOptions::max_orphan_requeues`].
        max_orphan_requeues: u32;
        /// See [`ConsumerOptions::dead_max_jobs`].
        dead_max_jobs: usize;
        /// See [`ConsumerOptions::dead_max_age`].
        dead_max_age: Duration;
        /// See [`ConsumerOptions::cancel_grace_period`].
        cancel_grace_period: Duration;
    }

    /// Kills a failed job at its first failure (no retries). Go CurlyQ cannot express
    /// this: its `JobMaxAttempts = 0` means its default, 20, and curlyq refuses 0.
    pub fn no_retries(mut self) -> Self {
        self.options.no_retries = true;
        self
    }

    /// Never trims the dead set: `dead_max_jobs` and `dead_max_age` unbounded. For queues
    /// shared with Go CurlyQ whose users keep dead jobs (Go never trims them; by default
    /// curlyq keeps at most 10,000 for 180 days, Go's dead jobs included).
    pub fn keep_dead_jobs(mut self) -> Self {
        self.options.dead_max_jobs = usize::MAX;
        self.options.dead_max_age = Duration::MAX;
        self
    }

    /// Go CurlyQ's name for [`heartbeat_interval`](Self::heartbeat_interval)
    /// (`HeartbeatPollInterval`).
    pub fn heartbeat_poll_interval(self, interval: Duration) -> Self {
        self.heartbeat_interval(interval)
    }

    /// Times every run out after `timeout` (see [`ConsumerOptions::job_timeout`]); a
    /// handler can change its own run's bound with
    /// [`JobContext::set_timeout`](crate::JobContext::set_timeout).
    pub fn job_timeout(mut self, timeout: Duration) -> Self {
        self.options.job_timeout = Some(timeout);
        self
    }

    /// Same as [`processor_concurrency`](Self::processor_concurrency).
    pub fn concurrency(self, handlers: usize) -> Self {
        self.processor_concurrency(handlers)
    }

    /// Replaces every option at once.
    pub fn options(mut self, options: ConsumerOptions) -> Self {
        self.options = options;
        self
    }

    /// Runs the loops on `runtime` (by default the runtime enabled by a feature).
    pub fn runtime(mut self, runtime: Arc<dyn Runtime>) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// Checks the options and builds the consumer on `backend`.
    pub fn build(self, backend: Arc<dyn QueueBackend>) -> Result<Consumer, ConfigError> {
        let queue = QueueName::new(self.queue)?;
        self.options.validate()?;
        let runtime = self
            .runtime
            .or_else(crate::runtime::default_runtime)
            .ok_or(ConfigError::NoRuntime)?;
        Ok(Consumer::from_parts(backend, runtime, queue, self.options))
    }
}

impl ConsumerBuilder {
    pub(super) fn new(queue: String) -> Self {
        ConsumerBuilder {
            queue,
            options: ConsumerOptions::default(),
            runtime: None,
        }
    }
}
