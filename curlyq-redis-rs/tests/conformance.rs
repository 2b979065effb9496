//! The testkit's model-based conformance suite on a real Redis: random sequences of
//! operations on RedisBackend and on the reference MemoryBackend must agree step by step
//! (`PROPTEST_CASES` cases, default 256; each case on a fresh queue name). Failing cases are saved in
//! `proptest-regressions/conformance.txt` and replayed first by every later run.

use curlyq_redis_rs::RedisBackend;
use curlyq_testkit::{conformance, RedisServer};

#[test]
fn redis_backend_conforms_to_the_model() {
    let server = RedisServer::start().expect("redis-server starts");
    let url = server.url();
    let report = conformance::assert_conforms(|| {
        let url = url.clone();
        async move {
            RedisBackend::connect(&url)
                .await
                .expect("connect to the test server")
        }
    });
    eprintln!("{report}");
}

/// The hand-written sequence through every path of the last errors (which random
/// sequences rarely take) agrees with the model step by step.
#[test]
fn redis_backend_replays_the_last_error_paths() {
    let server = RedisServer::start().expect("redis-server starts");
    let url = server.url();
    conformance::assert_replays(
        || {
            let url = url.clone();
            async move {
                RedisBackend::connect(&url)
                    .await
                    .expect("connect to the test server")
            }
        },
        &conformance::last_error_paths(),
    );
}
