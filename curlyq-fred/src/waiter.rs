//! The poller's blocking wait, on a client and connection of its own.

use std::time::Duration;

use curlyq_core::{async_trait, BackendError, Waiter};
use fred::clients::Client;
use fred::interfaces::ClientLike;
use fred::types::config::{Blocking, Options};
use fred::types::{Builder, ClusterHash, ConnectHandle, CustomCommand, Value};

use crate::backend::bridged;
use crate::config::FredConfig;
use crate::error::{self, Redactor};
use crate::FredFailure;

/// A connected client of the waiter's own and the task that drives its connection.
struct Dedicated {
    client: Client,
    task: ConnectHandle,
}

impl Drop for Dedicated {
    fn drop(&mut self) {
        // Ends the connection task (and closes its socket) even while a blocking
        // command is pending, which `QUIT` would wait for.
        self.task.abort();
    }
}

/// Blocks on `BRPOPLPUSH signal signal <timeout>` (the signal rotated onto itself, so it
/// stays set) on a client of its own: fred queues every command behind a blocking one on
/// the same connection.
pub(crate) struct FredWaiter {
    template: Client,
    config: FredConfig,
    redactor: Redactor,
    signal: String,
    conn: Option<Dedicated>,
    /// Set while a wait is in flight: if the wait's future is dropped before the reply,
    /// the connection still blocks, and the next wait opens a new one.
    busy: bool,
}

impl FredWaiter {
    pub(crate) async fn open(
        template: Client,
        config: FredConfig,
        redactor: Redactor,
        signal: String,
    ) -> Result<Self, BackendError> {
        let mut waiter = FredWaiter {
            template,
            config,
            redactor,
            signal,
            conn: None,
            busy: false,
        };
        waiter.conn = Some(waiter.dedicated().await?);
        Ok(waiter)
    }

    async fn dedicated(&self) -> Result<Dedicated, BackendError> {
        // The template's server, credentials and timeouts; failing fast, without
        // reconnection (a waiter whose connection failed opens a new one) and without
        // sending a command twice.
        let mut config = self.template.client_config();
        config.fail_fast = true;
        config.blocking = Blocking::Block;
        let mut connection = self.template.connection_config().clone();
        connection.max_command_attempts = 1;
        let client = Builder::from_config(config)
            .set_performance_config(self.template.perf_config())
            .set_connection_config(connection)
            .build()
            .map_err(|e| {
                BackendError::Other(Box::new(self.redactor.failure("invalid config", &e)))
            })?;
        let limit = self
            .config
            .get_connection_timeout()
            .saturating_add(self.config.get_response_timeout());
        let context = "could not open the waiter's connection to Redis";
        match tokio::time::timeout(limit, client.init()).await {
            Ok(Ok(task)) => Ok(Dedicated { client, task }),
            Ok(Err(e)) => Err(self.redactor.unavailable(context, &e)),
            // The connection attempt goes on in fred's task until fred's own connection
            // timeout, then ends (fail fast, no reconnection).
            Err(_) => Err(BackendError::Unavailable(Box::new(FredFailure::new(
                format!("{context}: no connection within {limit:?}"),
            )))),
        }
    }

    async fn wait_inner(&mut self, timeout: Duration) -> Result<bool, BackendError> {
        if self.busy {
            self.conn = None;
            self.busy = false;
        }
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => self.dedicated().await?,
        };
        let (name, args): (&'static str, Vec<Value>) = if timeout.is_zero() {
            ("LLEN", vec![self.signal.as_str().into()])
        } else {
            (
                "BRPOPLPUSH",
                vec![
                    self.signal.as_str().into(),
                    self.signal.as_str().into(),
                    block_seconds(timeout).into(),
                ],
            )
        };
        let cmd = CustomCommand::new_static(name, ClusterHash::FirstKey, !timeout.is_zero());
        // The client waits longer than the server blocks.
        let limit = timeout.saturating_add(self.config.get_response_timeout());
        let options = Options {
            timeout: Some(limit),
            max_attempts: Some(1),
            ..Options::default()
        };
        self.busy = true;
        let client = conn.client.with_options(&options);
        let sent = client.custom::<Value, Value>(cmd, args);
        let result = tokio::time::timeout(limit, sent).await;
        self.busy = false;
        let value = match result {
            Ok(Ok(value)) => value,
            // The connection is dropped; the next wait opens a new one.
            Ok(Err(e)) => return Err(error::from_fred(&self.redactor, &e)),
            Err(_) => {
                return Err(BackendError::Unavailable(Box::new(FredFailure::new(
                    format!("Redis did not answer a wait within {limit:?}"),
                ))))
            }
        };
        self.conn = Some(conn);
        match value {
            Value::Null => Ok(false),
            Value::Integer(n) => Ok(n > 0),
            Value::String(_) | Value::Bytes(_) => Ok(true),
            Value::Array(items) => Ok(!items.is_empty()),
            _ => Err(error::invalid("wait: an unexpected reply to BRPOPLPUSH")),
        }
    }
}

/// The block timeout in seconds as Redis reads it, rounded up to whole milliseconds
/// (never 0, which would block forever).
fn block_seconds(timeout: Duration) -> String {
    let millis = timeout.as_micros().div_ceil(1000).max(1);
    format!("{}", millis as f64 / 1000.0)
}

#[async_trait]
impl Waiter for FredWaiter {
    async fn wait(&mut self, timeout: Duration) -> Result<bool, BackendError> {
        bridged(self.wait_inner(timeout)).await
    }
}
