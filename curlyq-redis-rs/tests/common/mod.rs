//! Shared setup for the tests against a real redis-server (included with `mod common`).

#![allow(dead_code, unreachable_pub)]

use curlyq_core::{ConsumerId, EncodedJob, QueueName};
use curlyq_redis_rs::RedisBackend;
use curlyq_testkit::RedisServer;
use redis::aio::MultiplexedConnection;
use redis::FromRedisValue;

pub struct Env {
    pub server: RedisServer,
    pub backend: RedisBackend,
    pub raw: MultiplexedConnection,
    pub queue: QueueName,
    pub keys: curlyq_lua::Keys,
}

pub async fn env() -> Env {
    let server = RedisServer::start().expect("redis-server starts");
    let backend = RedisBackend::connect(&server.url())
        .await
        .expect("connect to the test server");
    // The backend's own reply budget (10 s), not redis-rs's default of 0.5 s, which a
    // loaded CI machine can exceed.
    let config = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(std::time::Duration::from_secs(10)));
    let raw = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap();
    let queue = QueueName::new("{q}").unwrap();
    let keys = curlyq_lua::Keys::new("{q}");
    Env {
        server,
        backend,
        raw,
        queue,
        keys,
    }
}

impl Env {
    /// Runs a raw command and converts its reply.
    pub async fn q<T: FromRedisValue>(&self, args: &[&str]) -> T {
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        let mut conn = self.raw.clone();
        cmd.query_async(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    pub async fn list(&self, key: &str) -> Vec<String> {
        self.q(&["LRANGE", key, "0", "-1"]).await
    }

    pub async fn members(&self, key: &str) -> Vec<String> {
        let mut m: Vec<String> = self.q(&["SMEMBERS", key]).await;
        m.sort();
        m
    }

    pub async fn zscore(&self, key: &str, member: &str) -> Option<f64> {
        self.q(&["ZSCORE", key, member]).await
    }

    pub async fn hget(&self, key: &str, field: &str) -> Option<Vec<u8>> {
        self.q(&["HGET", key, field]).await
    }

    pub async fn signal_set(&self) -> bool {
        let n: usize = self.q(&["LLEN", &self.keys.signal]).await;
        n > 0
    }

    pub fn inflight(&self, consumer: &ConsumerId) -> String {
        self.keys.inflight(consumer.as_str())
    }

    /// Every key of the queue, for byte-for-byte comparisons with DUMP.
    pub async fn dump_all(&self, extra: &[&str]) -> Vec<(String, Option<Vec<u8>>)> {
        let k = &self.keys;
        let mut names = vec![
            k.data.clone(),
            k.active.clone(),
            k.scheduled.clone(),
            k.dead.clone(),
            k.consumers.clone(),
            k.signal.clone(),
            k.reasons.clone(),
            k.orphaned.clone(),
        ];
        names.extend(extra.iter().map(|s| s.to_string()));
        let mut out = Vec::new();
        for name in names {
            let dump: Option<Vec<u8>> = self.q(&["DUMP", &name]).await;
            out.push((name, dump));
        }
        out
    }
}

pub fn job(id: &str, data: &str) -> EncodedJob {
    EncodedJob {
        id: id.to_owned(),
        data: data.as_bytes().to_vec(),
    }
}

pub fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}
