//! Failure modes of FredBackend on a real redis-server (the testkit's robustness checks,
//! one test each): a flushed script cache, wrong key types, an unreachable or stopped
//! server, passwords, and the blocking wait beside other work.

use std::time::Duration;

use curlyq_fred::{FredBackend, FredConfig};
use curlyq_testkit::robustness::Client;

fn client() -> Client<FredBackend> {
    Client::new(|url| async move { FredBackend::connect(&url).await })
        .with_response_timeout(|url, timeout: Duration| async move {
            let config = FredConfig::default()
                .with_response_timeout(timeout)
                .with_reconnect_max_delay(Duration::from_millis(100));
            FredBackend::connect_with(&url, config).await
        })
        .load_scripts(|backend: FredBackend| async move { backend.load_scripts().await })
}

curlyq_testkit::redis_backend_tests!(client());
