//! The testkit's backend contract (the checks the MemoryBackend is held to) on Redis: one
//! test per check (`push::push_sets_signal`, ..., and the `faults` group, which runs
//! RedisBackend inside `curlyq_testkit::Faulty` to lose replies and fail calls), each on
//! a redis-server of its own.

use curlyq_redis_rs::RedisBackend;

curlyq_testkit::backend_tests!(redis: |url: String| async move {
    RedisBackend::connect(&url).await
});

/// The scripts' per-call limit is the batch size the core chunks by.
#[test]
fn script_limit_matches_the_core_batch_size() {
    assert_eq!(curlyq_lua::MAX_JOBS_PER_CALL, curlyq_core::MAX_BATCH);
}
