//! A smoke test of the admin operations on FredBackend, against a real redis-server:
//! stats (with a counted ack) and a page of active jobs.

use curlyq_core::admin::{minute_of, JobState, PageRequest};
use curlyq_core::{ConsumerId, EncodedJob, QueueBackend, QueueName, Registration};
use curlyq_fred::FredBackend;
use curlyq_testkit::RedisServer;

#[tokio::test(flavor = "multi_thread")]
async fn stats_and_a_page_work_on_fred() {
    let server = RedisServer::start().expect("redis-server starts");
    let backend = FredBackend::connect(&server.url()).await.unwrap();
    let queue = QueueName::new("{fred}").unwrap();
    let jobs: Vec<EncodedJob> = ["a", "b", "c"]
        .iter()
        .map(|id| EncodedJob {
            id: (*id).to_owned(),
            data: curlyq_core::Job::new(id.as_bytes().to_vec())
                .with_id(*id)
                .with_ready_at(100.0)
                .encode(),
        })
        .collect();
    backend.push(&queue, &jobs).await.unwrap();
    let c = ConsumerId::from_string("c1");
    backend
        .register(&queue, &c, 1000.0, Registration::Join)
        .await
        .unwrap();
    let taken = backend.take(&queue, &c, 1, 1000.0).await.unwrap();
    backend
        .ack(&queue, &c, &[taken[0].id.clone()], 1000.0)
        .await
        .unwrap();

    let stats = backend.stats(&queue, 1000.0, 2).await.unwrap();
    assert_eq!((stats.active, stats.total.processed), (2, 1));
    assert_eq!(stats.oldest_ready_at, Some(100.0));
    assert_eq!(stats.minutes.len(), 2);
    assert_eq!(stats.minutes[1].minute, minute_of(1000.0));
    assert_eq!(stats.minutes[1].counts.processed, 1);

    let page = backend
        .jobs(
            &queue,
            PageRequest {
                limit: 1,
                ..PageRequest::first(JobState::Active)
            },
        )
        .await
        .unwrap();
    assert_eq!((page.total, page.next), (2, Some(1)));
    assert_eq!(page.jobs[0].id, "b");
    assert_eq!(page.jobs[0].preview, b"b");
}
