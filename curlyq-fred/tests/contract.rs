//! The testkit's backend contract on FredBackend, against a real redis-server: one test
//! per check (`push::push_sets_signal`, ..., and the `faults` group, which runs
//! FredBackend inside `curlyq_testkit::Faulty` to lose replies and fail calls), each on a
//! server of its own; then the whole contract on a user-built pool and under smol.

use curlyq_fred::FredBackend;
use curlyq_testkit::{contract, RedisServer};

curlyq_testkit::backend_tests!(redis: |url: String| async move {
    FredBackend::connect(&url).await
});

/// Prints every failed check, then fails if there was one.
fn assert_no_failures(failures: Vec<contract::ContractFailure>) {
    for failure in &failures {
        eprintln!("{failure}");
    }
    assert!(
        failures.is_empty(),
        "{} contract checks failed",
        failures.len()
    );
}

/// The contract holds on a pool of three clients the application built itself.
#[tokio::test(flavor = "multi_thread")]
async fn fred_backend_on_a_user_pool_meets_the_contract() {
    use curlyq_fred::fred::prelude::*;
    let server = RedisServer::start().expect("redis-server starts");
    let config = Config::from_url(&server.url()).unwrap();
    let pool = Builder::from_config(config)
        .with_performance_config(|p| p.default_command_timeout = std::time::Duration::from_secs(10))
        .build_pool(3)
        .unwrap();
    pool.init().await.unwrap();
    let backend = FredBackend::new(curlyq_fred::FredTransport::from_pool(&pool));
    assert_no_failures(contract::check_backend_all(&backend, "{pool}-").await);
    pool.quit().await.unwrap();
}

/// The contract holds when the backend is driven by smol, fred running through the
/// async-compat bridge.
#[test]
fn fred_backend_meets_the_contract_under_smol() {
    let server = RedisServer::start().expect("redis-server starts");
    smol::block_on(async {
        assert!(
            tokio::runtime::Handle::try_current().is_err(),
            "no tokio here"
        );
        let backend = FredBackend::connect(&server.url()).await.unwrap();
        assert_no_failures(contract::check_backend_all(&backend, "{smol}-").await);
    });
}
