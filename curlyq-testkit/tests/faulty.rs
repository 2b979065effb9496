//! `Faulty`'s hooks around the reference model: failed calls, lost replies, counters.

use std::sync::Arc;
use std::time::Duration;

use curlyq_core::{BackendError, ConsumerId, EncodedJob, QueueBackend, QueueName, Registration};
use curlyq_testkit::{Faulty, InjectedFailure, MemoryBackend, Operation};

fn queue(name: &str) -> QueueName {
    QueueName::new(name).unwrap()
}

fn job(id: &str, data: &str) -> EncodedJob {
    EncodedJob {
        id: id.into(),
        data: data.as_bytes().to_vec(),
    }
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn c(name: &str) -> ConsumerId {
    ConsumerId::from_string(name)
}

#[tokio::test]
async fn fail_next_fails_without_applying() {
    let b = Faulty::new(MemoryBackend::new());
    let q = queue("q");
    b.fail_next(2);
    for _ in 0..2 {
        match b.push(&q, &[job("a", "a")]).await {
            Err(BackendError::Unavailable(source)) => {
                let injected = source.downcast_ref::<InjectedFailure>().unwrap();
                assert_eq!(injected.operation, Operation::Push);
                assert!(!injected.applied);
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
    assert!(b.inner().snapshot(&q).data.is_empty());
    assert_eq!(b.push(&q, &[job("a", "a")]).await.unwrap(), vec![true]);
    assert_eq!(b.calls(Operation::Push), 3);
}

#[tokio::test]
async fn fail_next_applied_loses_the_reply() {
    let b = Faulty::new(MemoryBackend::new());
    let q = queue("q");
    b.fail_next_applied(1);
    match b.push(&q, &[job("a", "a")]).await {
        Err(BackendError::Unavailable(source)) => {
            assert!(source.downcast_ref::<InjectedFailure>().unwrap().applied);
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(b.inner().snapshot(&q).active, ids(&["a"]));
    assert_eq!(b.push(&q, &[job("a", "a")]).await.unwrap(), vec![false]);
}

#[tokio::test]
async fn set_failing_selects_operations() {
    let b = Faulty::new(MemoryBackend::new());
    let q = queue("q");
    b.set_failing(Some(Arc::new(|op, _| op == Operation::Register)));
    assert!(b.push(&q, &[job("a", "a")]).await.is_ok());
    assert!(matches!(
        b.register(&q, &c("x"), 1.0, Registration::Join).await,
        Err(BackendError::Unavailable(_))
    ));
    b.set_failing(None);
    assert!(b
        .register(&q, &c("x"), 1.0, Registration::Join)
        .await
        .is_ok());
    b.set_unavailable(true);
    assert!(b.enqueue_due(&q, 1.0, 1).await.is_err());
    assert!(b.waiter(&q).await.is_err());
    b.set_unavailable(false);
    let mut waiter = b.waiter(&q).await.unwrap();
    b.fail_next(1);
    assert!(waiter.wait(Duration::from_secs(1)).await.is_err());
    assert!(waiter.wait(Duration::from_secs(1)).await.unwrap());
}
