//! Errors, one enum per concern.

use std::time::Duration;

/// A boxed error from a handler or a backend's client library.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a stored job could not be decoded. The job goes to the dead set with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// No bytes at all.
    #[error("the stored job is empty (zero bytes)")]
    Empty,
    /// The bytes end in the middle of a value.
    #[error("the stored job is truncated MessagePack")]
    Truncated,
    /// The top-level value is not a map.
    #[error("the stored job is not a MessagePack map (found {found})")]
    NotAMap {
        /// The marker found instead.
        found: String,
    },
    /// A value has the wrong MessagePack type.
    #[error("expected {expected} in the stored job, found {found}")]
    UnexpectedType {
        /// What was expected.
        expected: &'static str,
        /// The marker found.
        found: String,
    },
    /// A required key is absent.
    #[error("the stored job has no {0} key")]
    MissingField(&'static str),
    /// The ID is not UTF-8.
    #[error("the stored job's ID is not valid UTF-8")]
    IdNotUtf8,
    /// `Attempt` is negative or does not fit in 32 bits.
    #[error("the stored job's Attempt {0} is out of range (0 to 4294967295)")]
    AttemptOutOfRange(i128),
    /// Nested deeper than any job should be.
    #[error("the stored job nests values more than 64 levels deep")]
    TooDeep,
}

/// An error from a [`QueueBackend`](crate::QueueBackend) operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// `take` was called by a consumer that is not in the queue's consumer set (it was
    /// never registered, or a custodian reaped it after missed heartbeats).
    #[error(
        "consumer {consumer} is not registered in queue {queue}; it must rejoin under a new ID"
    )]
    NotRegistered {
        /// The queue.
        queue: String,
        /// The consumer ID that was not found.
        consumer: String,
    },
    /// The server could not be reached or did not answer in time; the operation may or may
    /// not have happened. Retrying an idempotent operation is safe.
    #[error("queue store unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// The server answered with an error (a key holding the wrong type, out of memory, a
    /// script error). Nothing was written by the failing operation.
    #[error("queue store refused the operation: {0}")]
    Rejected(String),
    /// The server answered something this backend does not understand.
    #[error("unexpected reply from the queue store: {0}")]
    InvalidReply(String),
    /// Anything else, from a custom backend.
    #[error(transparent)]
    Other(BoxError),
    /// The backend does not implement this (admin) operation.
    #[error("this queue backend does not support the {0} operation")]
    Unsupported(&'static str),
}

impl BackendError {
    /// Wraps any error as [`BackendError::Other`] (for custom backends).
    pub fn other(err: impl Into<BoxError>) -> Self {
        BackendError::Other(err.into())
    }
}

/// An error from the [`Producer`](crate::Producer).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProduceError {
    /// A job with this ID already exists in the queue; the stored job was left untouched.
    #[error("a job with ID {id:?} already exists in the queue (deduplicated; the stored job is unchanged)")]
    AlreadyExists {
        /// The ID.
        id: String,
    },
    /// The time given to `perform_at` is negative, NaN, infinite or before the Unix epoch.
    #[error("invalid run time for job {id:?}: {reason}")]
    InvalidTime {
        /// The job's ID.
        id: String,
        /// What is wrong with the time.
        reason: String,
    },
    /// The payload is larger than the producer's limit; nothing was written.
    #[error("job {id:?} has a payload of {size} bytes, above the limit of {max}; store large payloads elsewhere and enqueue a reference, or raise the limit with Producer::with_max_payload")]
    PayloadTooLarge {
        /// The job's ID.
        id: String,
        /// The payload's size in bytes.
        size: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// A typed job's value could not be encoded; nothing was written.
    #[error(transparent)]
    Encode(#[from] crate::codec::CodecError),
    /// The backend failed. The jobs may or may not have been written: push them again
    /// with the same IDs (the ones in this error) to be sure, which cannot create a
    /// second job.
    #[error("could not push job(s) {ids:?}: {source}")]
    Backend {
        /// The IDs the jobs were given (retry with them).
        ids: Vec<String>,
        /// The backend's error.
        #[source]
        source: BackendError,
    },
}

/// A consumer option that is out of range, found when the consumer is built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The queue name is empty.
    #[error("the queue name is empty; give the queue a name such as \"emails\" (or \"{{emails}}\" for Redis Cluster)")]
    EmptyQueueName,
    /// An option that must not be 0 is 0. Go CurlyQ reads 0 as "use the default"; curlyq
    /// refuses it, so that a setting copied from a Go service never silently means
    /// something else. The message says what Go would have done and what to write.
    #[error("{option} is 0, which curlyq refuses: Go CurlyQ would silently use {go} instead. {hint}",
        go = crate::options::go_reads_zero_as(.option), hint = crate::options::zero_hint(.option))]
    Zero {
        /// The option's name.
        option: &'static str,
    },
    /// A duration below its minimum. Go CurlyQ raises such a value to the minimum
    /// silently; curlyq refuses it.
    #[error("{option} is {given:?}, below its minimum of {min:?}: Go CurlyQ would silently raise it to {min:?}, curlyq refuses it. Write {min:?} or more")]
    BelowMinimum {
        /// The option's name.
        option: &'static str,
        /// The value given.
        given: Duration,
        /// The minimum.
        min: Duration,
    },
    /// A batch size above the maximum one script call handles.
    #[error("{option} is {given}, above the maximum of {max} (one script call handles at most {max} jobs)")]
    TooLarge {
        /// The option's name.
        option: &'static str,
        /// The value given.
        given: usize,
        /// The maximum.
        max: usize,
    },
    /// No async runtime was given and none is enabled by a feature.
    #[error("no async runtime: enable the `tokio`, `async-std` or `smol` feature, or pass one with `.runtime(...)`")]
    NoRuntime,
}

/// One of the consumer's five loops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LoopName {
    /// Registers the consumer periodically.
    Heartbeat,
    /// Moves due scheduled jobs to the active list.
    Scheduler,
    /// Requeues the jobs of expired consumers and trims the dead set.
    Custodian,
    /// Takes jobs from the active list into the local buffer.
    Poller,
    /// Runs handlers and records their outcome (ack, retry, kill).
    Processor,
}

impl std::fmt::Display for LoopName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LoopName::Heartbeat => "heartbeat",
            LoopName::Scheduler => "scheduler",
            LoopName::Custodian => "custodian",
            LoopName::Poller => "poller",
            LoopName::Processor => "processor",
        })
    }
}

/// Why [`Consumer::run`](crate::Consumer::run) returned an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumeError {
    /// The first registration failed, so the consumer never started.
    #[error("consumer could not start: {0}")]
    Startup(#[source] BackendError),
    /// A loop failed `attempts` times in a row, reaching its max attempts; the consumer
    /// shut down (gracefully) because of it.
    #[error(
        "the {name} loop failed {attempts} times in a row and the consumer stopped: {last_error}"
    )]
    LoopAborted {
        /// The loop.
        name: LoopName,
        /// Consecutive failures.
        attempts: u32,
        /// The last error.
        #[source]
        last_error: BackendError,
    },
    /// The consumer's task was dropped before it finished (its runtime shut down
    /// first). Jobs it held come back once its heartbeat expires.
    #[error("the consumer's task was dropped before it finished (was its runtime shut down?); the jobs it held come back once its heartbeat expires")]
    Abandoned,
    /// The grace period passed with handlers still running; they were cancelled and their
    /// jobs given back to the queue without counting an attempt.
    #[error("shutdown grace period of {grace:?} passed with {cancelled} handler(s) still running; they were cancelled and their jobs given back")]
    ShutdownTimeout {
        /// The grace period.
        grace: Duration,
        /// How many handlers were cancelled.
        cancelled: usize,
    },
}
