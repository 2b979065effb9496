//! Failure modes on a real redis-server (the testkit's robustness checks, one test each):
//! wrong key types, large batches, a flushed script cache, an unreachable or restarted
//! server, passwords, and the blocking wait beside other operations.

use std::time::Duration;

use curlyq_redis_rs::{RedisBackend, RedisConfig};
use curlyq_testkit::robustness::Client;

fn client() -> Client<RedisBackend> {
    Client::new(|url| async move { RedisBackend::connect(&url).await })
        .with_response_timeout(|url, timeout: Duration| async move {
            let config = RedisConfig::default().with_response_timeout(timeout);
            RedisBackend::connect_with(&url, config).await
        })
        .load_scripts(|backend: RedisBackend| async move { backend.load_scripts().await })
}

curlyq_testkit::redis_backend_tests!(client());
