//! Connection settings of a [`FredBackend`](crate::FredBackend) made from a URL.

use std::time::Duration;

/// Timeouts, reconnection and pool size of a [`FredBackend`](crate::FredBackend) built
/// by [`connect_with`](crate::FredBackend::connect_with).
///
/// ```
/// use std::time::Duration;
/// use curlyq_fred::FredConfig;
///
/// let config = FredConfig::default()
///     .with_pool_size(4)
///     .with_response_timeout(Duration::from_secs(5));
/// assert_eq!(config.pool_size(), 4);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FredConfig {
    connection_timeout: Duration,
    response_timeout: Duration,
    reconnect_max_delay: Duration,
    pool_size: usize,
}

impl Default for FredConfig {
    /// Connection timeout 5 s, response timeout 10 s, reconnection attempts at most 2 s
    /// apart (without end), one connection for ordinary operations.
    fn default() -> Self {
        FredConfig {
            connection_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(10),
            reconnect_max_delay: Duration::from_secs(2),
            pool_size: 1,
        }
    }
}

impl FredConfig {
    /// How long to wait for a TCP (and TLS) connection to be set up.
    pub fn with_connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// How long to wait for the reply to one operation (one pipeline of script calls).
    /// The poller's blocking wait adds it to its own block time.
    pub fn with_response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// The longest pause between two reconnection attempts after the connection was
    /// lost (the client keeps trying; operations meanwhile fail with `Unavailable` when
    /// their response timeout passes).
    pub fn with_reconnect_max_delay(mut self, delay: Duration) -> Self {
        self.reconnect_max_delay = delay;
        self
    }

    /// How many connections ordinary operations are spread over (a fred `Pool`; at
    /// least 1). Each waiter has a connection of its own besides these.
    pub fn with_pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
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

    /// The longest pause between reconnection attempts.
    pub fn reconnect_max_delay(&self) -> Duration {
        self.reconnect_max_delay
    }

    /// The number of pooled connections.
    pub fn pool_size(&self) -> usize {
        self.pool_size
    }
}
