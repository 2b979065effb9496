//! The poller's blocking wait, on a connection of its own.

use std::time::Duration;

use curlyq_core::{async_trait, BackendError, Waiter};
use redis::aio::MultiplexedConnection;
use redis::{Client, Value};

use crate::backend::dedicated_connection;
use crate::config::RedisConfig;
use crate::error::{self, Secrets};

/// Blocks on `BRPOPLPUSH signal signal <timeout>` (the signal list rotated onto itself,
/// so the flag stays set), on a dedicated connection: a blocking command would stall
/// every other operation sharing a multiplexed connection.
pub(crate) struct RedisWaiter {
    client: Client,
    config: RedisConfig,
    secrets: Secrets,
    signal: String,
    conn: Option<MultiplexedConnection>,
    /// Set while a wait is in flight. If a wait future is dropped before its reply came,
    /// the connection still has a blocking command pending: the next wait opens a new
    /// connection rather than queue behind it.
    busy: bool,
}

impl RedisWaiter {
    pub(crate) async fn connect(
        client: Client,
        config: RedisConfig,
        secrets: Secrets,
        signal: String,
    ) -> Result<Self, BackendError> {
        let conn = dedicated_connection(&client, &config, &secrets).await?;
        Ok(RedisWaiter {
            client,
            config,
            secrets,
            signal,
            conn: Some(conn),
            busy: false,
        })
    }
}

/// The block timeout in seconds as Redis reads it, rounded up to whole milliseconds
/// (never 0, which would block forever).
fn block_seconds(timeout: Duration) -> String {
    let millis = timeout.as_micros().div_ceil(1000).max(1);
    format!("{}", millis as f64 / 1000.0)
}

#[async_trait]
impl Waiter for RedisWaiter {
    async fn wait(&mut self, timeout: Duration) -> Result<bool, BackendError> {
        if self.busy {
            self.conn = None;
        }
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => dedicated_connection(&self.client, &self.config, &self.secrets).await?,
        };
        let cmd = if timeout.is_zero() {
            let mut cmd = redis::cmd("LLEN");
            cmd.arg(&self.signal);
            cmd
        } else {
            let mut cmd = redis::cmd("BRPOPLPUSH");
            cmd.arg(&self.signal)
                .arg(&self.signal)
                .arg(block_seconds(timeout));
            cmd
        };
        // The client must wait longer than the server blocks.
        conn.set_response_timeout(timeout.saturating_add(self.config.get_response_timeout()));
        self.busy = true;
        let result = conn.send_packed_command(&cmd).await;
        self.busy = false;
        let value = match result {
            Ok(value) => value,
            // Drop the connection; the next wait opens a new one.
            Err(e) => return Err(error::from_redis(&self.secrets, &e)),
        };
        self.conn = Some(conn);
        match value {
            Value::Nil => Ok(false),
            Value::Int(n) => Ok(n > 0),
            Value::BulkString(_) | Value::SimpleString(_) => Ok(true),
            Value::Array(items) => Ok(!items.is_empty()),
            Value::ServerError(e) => Err(error::from_reply(&self.secrets, &e)),
            _ => Err(error::invalid("wait: unexpected reply to BRPOPLPUSH")),
        }
    }
}
