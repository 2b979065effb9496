//! The Redis under test: our own redis-server or the one given by `--redis`, and the few
//! administrative commands the benchmark sends it.

use std::time::Duration;

use curlyq_testkit::RedisServer;
use redis::{ConnectionAddr, IntoConnectionInfo};

use crate::error::{BenchError, Context, Result};

/// Where redis-benchmark finds the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// Host name or address.
    pub(crate) host: String,
    /// TCP port.
    pub(crate) port: u16,
    /// Database number.
    pub(crate) db: i64,
    /// ACL user name, if any.
    pub(crate) user: Option<String>,
    /// Password, if any.
    pub(crate) password: Option<String>,
}

/// The Redis under test, with one synchronous connection for administration.
pub(crate) struct Target {
    /// The URL the backends connect to.
    pub(crate) url: String,
    /// Where redis-benchmark connects; `None` for a TLS or Unix-socket URL.
    pub(crate) endpoint: Option<Endpoint>,
    /// Whether the server is ours (started here, stopped on drop).
    pub(crate) own: bool,
    /// Consumer processes record curlyq's metrics (`--metrics`).
    pub(crate) metrics: bool,
    connection: redis::Connection,
    // Declared last: dropped (and so stopped) after the connection.
    _server: Option<RedisServer>,
}

impl Target {
    /// Starts a redis-server of our own on a free loopback port (`url` = `None`), or
    /// connects to `url`.
    pub(crate) fn open(url: Option<&str>) -> Result<Self> {
        let (server, url) = match url {
            Some(url) => (None, url.to_owned()),
            None => {
                let server = RedisServer::start()
                    .context(|| "cannot start redis-server (is it installed?)".to_owned())?;
                let url = server.url();
                (Some(server), url)
            }
        };
        let info = url
            .as_str()
            .into_connection_info()
            .context(|| format!("bad Redis URL {:?}", redact(&url)))?;
        let endpoint = match info.addr() {
            ConnectionAddr::Tcp(host, port) => Some(Endpoint {
                host: host.clone(),
                port: *port,
                db: info.redis_settings().db(),
                user: info.redis_settings().username().map(str::to_owned),
                password: info.redis_settings().password().map(str::to_owned),
            }),
            _ => None,
        };
        let client = redis::Client::open(url.as_str())
            .context(|| format!("bad Redis URL {:?}", redact(&url)))?;
        let connection = client
            .get_connection_with_timeout(Duration::from_secs(5))
            .context(|| format!("cannot connect to {}", redact(&url)))?;
        connection
            .set_read_timeout(Some(Duration::from_secs(60)))
            .context(|| "setting a read timeout".to_owned())?;
        Ok(Target {
            url,
            endpoint,
            own: server.is_some(),
            metrics: false,
            connection,
            _server: server,
        })
    }

    /// Empties the database: FLUSHALL on our own server, FLUSHDB on a given one (only
    /// the database of its URL).
    pub(crate) fn flush(&mut self) -> Result<()> {
        let command = if self.own { "FLUSHALL" } else { "FLUSHDB" };
        redis::cmd(command)
            .query::<()>(&mut self.connection)
            .context(|| command.to_owned())
    }

    /// Redis's `used_memory`, bytes.
    pub(crate) fn used_memory(&mut self) -> Result<u64> {
        let info = self.info("memory")?;
        info_field(&info, "used_memory")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| BenchError::new("INFO memory has no used_memory"))
    }

    /// The server's CPU time so far (`used_cpu_user` + `used_cpu_sys` of INFO cpu), s.
    pub(crate) fn used_cpu(&mut self) -> Result<f64> {
        let info = self.info("cpu")?;
        let field = |name| {
            info_field(&info, name)
                .and_then(|v| v.parse::<f64>().ok())
                .ok_or_else(|| BenchError::new(format!("INFO cpu has no {name}")))
        };
        Ok(field("used_cpu_user")? + field("used_cpu_sys")?)
    }

    /// The server's `redis_version`.
    pub(crate) fn version(&mut self) -> Result<String> {
        let info = self.info("server")?;
        Ok(info_field(&info, "redis_version")
            .unwrap_or("unknown")
            .to_owned())
    }

    /// Loads `script` into the script cache; returns its SHA1.
    pub(crate) fn load_script(&mut self, script: &str) -> Result<String> {
        redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(script)
            .query(&mut self.connection)
            .context(|| "SCRIPT LOAD".to_owned())
    }

    fn info(&mut self, section: &str) -> Result<String> {
        redis::cmd("INFO")
            .arg(section)
            .query(&mut self.connection)
            .context(|| format!("INFO {section}"))
    }
}

/// `url` with its password (if any) replaced by `***`, for messages and the report.
pub(crate) use curlyq_lua::redact_url as redact;

/// The value of `field` in an INFO reply.
fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == field).then(|| value.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_are_found_exactly() {
        let info = "# Memory\r\nused_memory:1234\r\nused_memory_human:1.2K\r\n";
        assert_eq!(info_field(info, "used_memory"), Some("1234"));
        assert_eq!(info_field(info, "used_memory_rss"), None);
    }
}
