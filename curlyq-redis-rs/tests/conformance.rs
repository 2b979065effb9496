//! The testkit's backend contract (the checks the MemoryBackend is held to) on Redis.

use curlyq_redis_rs::RedisBackend;
use curlyq_testkit::{contract, MemoryBackend, RedisServer};

/// Every contract check passes on RedisBackend, except any that the reference
/// MemoryBackend fails the same way (a check out of step with the contract is the
/// testkit's to fix; both backends must then agree).
#[tokio::test(flavor = "multi_thread")]
async fn redis_backend_meets_the_contract() {
    let server = RedisServer::start().expect("redis-server starts");
    let backend = RedisBackend::connect(&server.url()).await.unwrap();
    let failures = contract::check_backend_all(&backend, "{contract}-").await;
    let reference = contract::check_backend_all(&MemoryBackend::new(), "{contract}-").await;
    let mut unexplained = Vec::new();
    for failure in &failures {
        let same = reference
            .iter()
            .any(|r| r.check == failure.check && r.message == failure.message);
        if same {
            eprintln!("also failed by MemoryBackend (testkit issue): {failure}");
        } else {
            eprintln!("{failure}");
            unexplained.push(failure.check);
        }
    }
    assert!(
        unexplained.is_empty(),
        "contract checks failed on Redis only: {unexplained:?}"
    );
    // And nothing passes on Redis that fails on the reference for another reason.
    for r in &reference {
        if !failures.iter().any(|f| f.check == r.check) {
            eprintln!("MemoryBackend fails {} but RedisBackend passes it", r.check);
        }
    }
}
