//! The robustness checks that mean something without Redis, on the reference model.

use curlyq_core::QueueName;
use curlyq_testkit::{robustness, MemoryBackend};

#[tokio::test(flavor = "multi_thread")]
async fn cancelled_wait_does_not_delay_the_next() {
    let backend = MemoryBackend::new();
    robustness::cancelled_wait_on(&backend, &QueueName::new("q").unwrap()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn push_ten_thousand() {
    let backend = MemoryBackend::new();
    robustness::push_ten_thousand_on(&backend, &QueueName::new("q").unwrap()).await;
}

/// Every robustness check has a unique name and a rule.
#[test]
fn checks_are_named_and_described() {
    let mut names: Vec<&str> = robustness::CHECKS.iter().map(|(name, _)| *name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), robustness::CHECKS.len());
    assert!(robustness::CHECKS.iter().all(|(_, rule)| !rule.is_empty()));
}
