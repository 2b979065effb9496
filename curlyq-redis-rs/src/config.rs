//! Connection settings.

use std::time::Duration;

/// Timeouts and reconnection settings of a [`RedisBackend`](crate::RedisBackend).
///
/// ```
/// use std::time::Duration;
/// use curlyq_redis_rs::RedisConfig;
///
/// let config = RedisConfig::default()
///     .with_connection_timeout(Duration::from_secs(2))
///     .with_response_timeout(Duration::from_secs(5));
/// assert_eq!(config.response_timeout(), Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    connection_timeout: Duration,
    response_timeout: Duration,
    reconnect_retries: usize,
    reconnect_max_delay: Duration,
}

impl Default for RedisConfig {
    /// Connection timeout 5 s, response timeout 10 s, 4 reconnection attempts at most 2 s
    /// apart.
    fn default() -> Self {
        RedisConfig {
            connection_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(10),
            reconnect_retries: 4,
            reconnect_max_delay: Duration::from_secs(2),
        }
    }
}

impl RedisConfig {
    /// How long to wait for a TCP (and TLS) connection to be set up.
    pub fn with_connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// How long to wait for the reply to one operation (one pipeline of script calls).
    /// The poller's blocking wait adds this margin to its own block timeout, so it never
    /// fails on the client side before the server answers.
    pub fn with_response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// How many times the shared connection retries to reconnect (with exponential
    /// backoff) after it was lost, before operations fail with `Unavailable` until the
    /// next attempt.
    pub fn with_reconnect_retries(mut self, retries: usize) -> Self {
        self.reconnect_retries = retries;
        self
    }

    /// The longest pause between two reconnection attempts.
    pub fn with_reconnect_max_delay(mut self, delay: Duration) -> Self {
        self.reconnect_max_delay = delay;
        self
    }

    /// The connection timeout.
    pub fn connection_timeout(&self) -> Duration {
        self.connection_timeout
    }

    /// The response timeout.
    pub fn response_timeout(&self) -> Duration {
        self.response_timeout
    }

    /// The number of reconnection attempts.
    pub fn reconnect_retries(&self) -> usize {
        self.reconnect_retries
    }

    /// The longest pause between reconnection attempts.
    pub fn reconnect_max_delay(&self) -> Duration {
        self.reconnect_max_delay
    }
}
