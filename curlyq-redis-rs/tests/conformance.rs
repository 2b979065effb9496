//! The testkit's backend contract (the checks the MemoryBackend is held to) on Redis.

use curlyq_redis_rs::RedisBackend;
use curlyq_testkit::{contract, RedisServer};

/// Every contract check passes on RedisBackend, as on the reference MemoryBackend.
#[tokio::test(flavor = "multi_thread")]
async fn redis_backend_meets_the_contract() {
    let server = RedisServer::start().expect("redis-server starts");
    let backend = RedisBackend::connect(&server.url()).await.unwrap();
    let failures = contract::check_backend_all(&backend, "{contract}-").await;
    for failure in &failures {
        eprintln!("{failure}");
    }
    assert!(
        failures.is_empty(),
        "{} contract checks failed on Redis",
        failures.len()
    );
}

/// The scripts' per-call limit is the batch size the core chunks by.
#[test]
fn script_limit_matches_the_core_batch_size() {
    assert_eq!(curlyq_lua::MAX_JOBS_PER_CALL, curlyq_core::MAX_BATCH);
}
