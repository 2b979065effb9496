//! Typed jobs, the job context and the handler outcomes on the matrix cell: JSON and
//! MessagePack round trips, a payload that does not decode, a permanent failure, a
//! chosen retry delay with its last error, a timeout then retry then kill, the context's
//! cancellation at the end of the shutdown grace period, and SIGTERM to a real child
//! process.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use curlyq::backend::QueueName;
#[cfg(feature = "msgpack")]
use curlyq::MessagePack;
use curlyq::{
    BoxError, CancelReason, ConsumeError, Consumer, Job, JobContext, Permanent, RetryAfter,
};
use serde::{Deserialize, Serialize};

use super::{matrix_test, Running, World};

type Stop = Pin<Box<dyn Future<Output = ()> + Send>>;

impl World {
    /// Starts `run(consumer, shutdown)` as a task of the cell's runtime (any of the
    /// `run_*` methods; [`World::start`] is this with `run`).
    pub(super) fn start_run<R, Fut>(&self, consumer: Consumer, run: R) -> Running
    where
        R: FnOnce(Consumer, Stop) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), ConsumeError>> + Send + 'static,
    {
        let (stop, stopped) = async_channel::bounded::<()>(1);
        let (done_tx, done) = async_channel::bounded(1);
        let c = consumer.clone();
        self.clock.spawn(Box::pin(async move {
            let shutdown: Stop = Box::pin(async move {
                let _ = stopped.recv().await;
            });
            let result = run(c, shutdown).await;
            let _ = done_tx.send(result).await;
        }));
        Running {
            consumer,
            stop,
            done,
        }
    }

    async fn snapshot(&self, queue: &str) -> curlyq::backend::QueueSnapshot {
        let queue = QueueName::new(queue).unwrap();
        self.backend.snapshot(&queue).await.unwrap()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Email {
    to: String,
    subject: String,
    retries: u8,
}

fn email(i: u8) -> Email {
    Email {
        to: format!("user{i}@example.com"),
        subject: format!("hello #{i}"),
        retries: i,
    }
}

/// Typed jobs round trip with JSON: what the handler gets is what was pushed, and the
/// stored payload is plain JSON.
#[test]
fn typed_jobs_round_trip_with_json() {
    matrix_test(|w| async move {
        let producer = w.producer("typed-json");
        for i in 0..3 {
            producer.perform_json(&email(i)).await.unwrap();
        }
        let id = producer
            .perform(Job::json(&email(9)).unwrap().with_id("nine"))
            .await
            .unwrap();
        let stored = w.snapshot("typed-json").await.data[&id].clone();
        let stored = Job::decode(&stored).unwrap();
        assert_eq!(
            stored.data,
            serde_json::to_vec(&email(9)).unwrap(),
            "the payload is plain JSON"
        );
        let seen = Arc::new(Mutex::new(BTreeMap::new()));
        let s = seen.clone();
        let consumer = w.builder("typed-json").build(w.backend.clone()).unwrap();
        let running = w.start_run(consumer, move |c, stop| async move {
            c.run_typed(
                move |e: Email, ctx: JobContext| {
                    s.lock().unwrap().insert(ctx.job_id().to_string(), e);
                    async { Ok::<(), BoxError>(()) }
                },
                stop,
            )
            .await
        });
        w.until("4 typed runs", |_| seen.lock().unwrap().len() == 4)
            .await;
        running.stop(&w).await.unwrap();
        assert_eq!(seen.lock().unwrap()["nine"], email(9));
    });
}

/// Typed jobs round trip with MessagePack (feature `msgpack`).
#[cfg(feature = "msgpack")]
#[test]
fn typed_jobs_round_trip_with_messagepack() {
    matrix_test(|w| async move {
        let producer = w.producer("typed-mp");
        let job = Job::from_value(&MessagePack, &email(5)).unwrap();
        assert_eq!(job.data[0], 0x83, "a MessagePack map of three fields");
        producer.perform(job).await.unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let consumer = w.builder("typed-mp").build(w.backend.clone()).unwrap();
        let running = w.start_run(consumer, move |c, stop| async move {
            c.run_typed_with(
                MessagePack,
                move |e: Email, _ctx: JobContext| {
                    s.lock().unwrap().push(e);
                    async { Ok::<(), BoxError>(()) }
                },
                stop,
            )
            .await
        });
        w.until("the MessagePack run", |_| !seen.lock().unwrap().is_empty())
            .await;
        running.stop(&w).await.unwrap();
        assert_eq!(seen.lock().unwrap().as_slice(), &[email(5)]);
    });
}

/// A payload that does not decode into the handler's type goes to the dead set at once
/// (one run, no retry), with a reason naming the type and serde's message; the other
/// jobs of the batch run.
#[test]
fn an_undecodable_payload_dies_at_once_and_the_batch_runs() {
    matrix_test(|w| async move {
        let producer = w.producer("undecodable");
        producer.perform_json(&email(1)).await.unwrap();
        let bad = producer
            .perform(Job::new(r#"{"to":"x@example.com"}"#))
            .await
            .unwrap();
        producer.perform_json(&email(2)).await.unwrap();
        let ran = Arc::new(Mutex::new(Vec::new()));
        let r = ran.clone();
        let consumer = w
            .builder("undecodable")
            .concurrency(3)
            .build(w.backend.clone())
            .unwrap();
        let running = w.start_run(consumer, move |c, stop| async move {
            c.run_typed(
                move |e: Email, _ctx: JobContext| {
                    r.lock().unwrap().push(e.retries);
                    async { Ok::<(), BoxError>(()) }
                },
                stop,
            )
            .await
        });
        w.until("dead", |w| {
            w.redis(&["ZCARD", "undecodable:dead"]) == ":1\r\n"
        })
        .await;
        w.until("two acked", |w| {
            w.redis(&["HLEN", "undecodable:data"]) == ":1\r\n"
        })
        .await;
        running.stop(&w).await.unwrap();
        let mut ran = ran.lock().unwrap().clone();
        ran.sort();
        assert_eq!(ran, vec![1, 2], "the good jobs ran, the bad one never did");
        let snap = w.snapshot("undecodable").await;
        let reason = &snap.reasons[&bad];
        assert!(
            reason.starts_with("permanent failure: cannot decode ")
                && reason.contains("Email as JSON: missing field `subject`"),
            "{reason}"
        );
        assert_eq!(Job::decode(&snap.data[&bad]).unwrap().attempt, 1);
        assert!(snap.scheduled.is_empty());
    });
}

/// A permanent failure is killed at its first run whatever attempts are left; a chosen
/// retry delay schedules the retry at that delay, with the message kept as the job's
/// last error until it is acked.
#[test]
fn permanent_failures_die_at_once_and_retry_after_keeps_its_delay() {
    matrix_test(|w| async move {
        let producer = w.producer("outcomes");
        let permanent = producer.perform(Job::new("permanent")).await.unwrap();
        let later = producer.perform(Job::new("later")).await.unwrap();
        let runs = Arc::new(Mutex::new(Vec::new()));
        let r = runs.clone();
        let consumer = w
            .builder("outcomes")
            .concurrency(2)
            .build(w.backend.clone())
            .unwrap();
        let running = w.start(consumer, move |job: Job| {
            r.lock().unwrap().push((job.id.clone(), job.attempt));
            async move {
                match (job.data.as_slice(), job.attempt) {
                    (b"permanent", _) => Err(Permanent::new("no such mailbox").into()),
                    (b"later", 0) => {
                        Err(RetryAfter::new(Duration::from_secs(3600), "rate limited").into())
                    }
                    _ => Ok::<(), BoxError>(()),
                }
            }
        });
        w.until("one dead, one scheduled", |w| {
            w.redis(&["ZCARD", "outcomes:dead"]) == ":1\r\n"
                && w.redis(&["ZCARD", "outcomes:scheduled"]) == ":1\r\n"
        })
        .await;
        running.stop(&w).await.unwrap();
        let snap = w.snapshot("outcomes").await;
        assert_eq!(
            snap.reasons[&permanent],
            "permanent failure: no such mailbox"
        );
        let (id, due) = &snap.scheduled[0];
        assert_eq!(id, &later);
        let delay = due - super::unix_now();
        assert!(
            (3590.0..=3600.0).contains(&delay),
            "retried in an hour, not after the backoff: {delay}"
        );
        assert_eq!(
            snap.errors.get(&later).map(String::as_str),
            Some("handler error: rate limited")
        );
        assert_eq!(runs.lock().unwrap().len(), 2, "each ran once");
    });
}

/// A run past `job_timeout` is cancelled (its context fires), fails with "timed out
/// after", is retried, and is killed once out of attempts.
#[test]
fn a_timed_out_job_is_retried_then_killed() {
    matrix_test(|w| async move {
        let id = w
            .producer("timeout")
            .perform(Job::new("slow"))
            .await
            .unwrap();
        let reasons = Arc::new(Mutex::new(Vec::new()));
        let r = reasons.clone();
        let consumer = w
            .builder("timeout")
            .job_timeout(Duration::from_millis(200))
            .cancel_grace_period(Duration::from_millis(100))
            .job_max_attempts(1)
            .job_max_backoff(Duration::from_millis(50))
            .scheduler_poll_interval(Duration::from_millis(50))
            .build(w.backend.clone())
            .unwrap();
        let running = w.start_run(consumer, move |c, stop| async move {
            c.run_with_context(
                move |_job: Job, ctx: JobContext| {
                    let r = r.clone();
                    async move {
                        // The first run ignores its signal and is dropped; the second
                        // stops on it.
                        if ctx.attempt() == 0 {
                            std::future::pending::<()>().await;
                        }
                        let reason = ctx.cancelled().await;
                        r.lock()
                            .unwrap()
                            .push((ctx.attempt(), reason, ctx.timeout()));
                        Err::<(), BoxError>("stopped".into())
                    }
                },
                stop,
            )
            .await
        });
        w.until("dead", |w| w.redis(&["ZCARD", "timeout:dead"]) == ":1\r\n")
            .await;
        running.stop(&w).await.unwrap();
        let snap = w.snapshot("timeout").await;
        assert_eq!(
            snap.reasons[&id],
            "timed out after 200ms, then handler error: stopped"
        );
        assert_eq!(Job::decode(&snap.data[&id]).unwrap().attempt, 2);
        assert_eq!(
            reasons.lock().unwrap().as_slice(),
            &[(1, CancelReason::TimedOut, Some(Duration::from_millis(200)))]
        );
        assert!(
            snap.errors.is_empty(),
            "the dead reason took over: {snap:?}"
        );
    });
}

/// The context tells the job, the queue and the consumer; at the end of the shutdown
/// grace period its signal fires, and a handler that stops on it has its job given back
/// without an attempt counted.
#[test]
fn the_context_is_cancelled_at_the_end_of_the_grace_period() {
    matrix_test(|w| async move {
        let id = w
            .producer("grace")
            .perform(Job::new("long").with_id("long-1"))
            .await
            .unwrap();
        let (started_tx, started) = async_channel::bounded::<(String, u32, String, String)>(1);
        let (stopped_tx, stopped) = async_channel::bounded::<CancelReason>(1);
        let consumer = w
            .builder("grace")
            .shutdown_grace_period(Duration::from_millis(200))
            .cancel_grace_period(Duration::from_secs(10))
            .build(w.backend.clone())
            .unwrap();
        let running = w.start_run(consumer, move |c, stop| async move {
            c.run_with_context(
                move |_job: Job, ctx: JobContext| {
                    let (started_tx, stopped_tx) = (started_tx.clone(), stopped_tx.clone());
                    async move {
                        let seen = (
                            ctx.job_id().to_string(),
                            ctx.attempt(),
                            ctx.queue().to_string(),
                            ctx.consumer_id().to_string(),
                        );
                        let _ = started_tx.send(seen).await;
                        let reason = ctx.cancelled().await;
                        let _ = stopped_tx.send(reason).await;
                        Err::<(), BoxError>("interrupted by shutdown".into())
                    }
                },
                stop,
            )
            .await
        });
        let (job_id, attempt, queue, consumer_id) =
            w.within("start", started.recv()).await.unwrap();
        assert_eq!(
            (job_id.as_str(), attempt, queue.as_str()),
            (id.as_str(), 0, "grace")
        );
        let inflight = w.redis(&["SMEMBERS", &format!("grace:inflight:{consumer_id}")]);
        assert!(
            inflight.contains(&id),
            "the context names the holder: {inflight}"
        );
        let _ = running.stop.try_send(());
        let reason = w.within("the signal", stopped.recv()).await.unwrap();
        assert_eq!(reason, CancelReason::Shutdown);
        let result = w.within("shutdown", running.done.recv()).await.unwrap();
        assert!(
            matches!(
                result,
                Err(ConsumeError::ShutdownTimeout { cancelled: 1, .. })
            ),
            "{result:?}"
        );
        let snap = w.snapshot("grace").await;
        assert_eq!(snap.active, vec![id.clone()], "given back");
        assert_eq!(
            Job::decode(&snap.data[&id]).unwrap().attempt,
            0,
            "no attempt counted"
        );
        assert!(
            snap.inflight.is_empty() && snap.consumers.is_empty(),
            "{snap:?}"
        );
    });
}

/// The child half of the SIGTERM test: a consumer process stopped by a signal.
#[test]
#[ignore = "run by sigterm_stops_a_consumer_process_gracefully in a child process"]
fn sigterm_child() {
    let Ok(url) = std::env::var("CURLYQ_SIGTERM_URL") else {
        return;
    };
    super::block_on(super::cell().1, async move {
        let backend = match super::cell().0 {
            #[cfg(feature = "redis-rs")]
            super::Backend::RedisRs => curlyq::connect_redis_rs(&url).await.unwrap(),
            #[cfg(feature = "fred")]
            super::Backend::Fred => curlyq::connect_fred(&url).await.unwrap(),
            #[allow(unreachable_patterns)]
            other => panic!("backend {other:?} is not enabled"),
        };
        let consumer = Consumer::builder("sigterm")
            .concurrency(1)
            .poller_buffer_size(4)
            .shutdown_grace_period(Duration::from_millis(300))
            .cancel_grace_period(Duration::ZERO)
            .build(backend)
            .unwrap();
        // Runs until a signal; the one running job never ends by itself.
        let result = consumer
            .run_until_signal(|job: Job| async move {
                println!("started {}", job.id);
                std::future::pending::<()>().await;
                Ok::<(), BoxError>(())
            })
            .await;
        println!("stopped: {result:?}");
    });
}

/// SIGTERM to a real consumer process: it stops gracefully (the running job cancelled
/// after the grace period, the buffered ones given back), unregisters and exits.
#[test]
fn sigterm_stops_a_consumer_process_gracefully() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    matrix_test(|w| async move {
        let producer = w.producer("sigterm");
        for i in 0..10 {
            producer
                .perform(Job::new(format!("job {i}")))
                .await
                .unwrap();
        }
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "handlers::sigterm_child",
                "--ignored",
                "--nocapture",
            ])
            .env("CURLYQ_SIGTERM_URL", w.server.url())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the child test process starts");
        let stdout = child.stdout.take().unwrap();
        let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
        });
        let mut output = Vec::new();
        let started = loop {
            match lines.recv_timeout(super::LIMIT) {
                Ok(line) if line.starts_with("started ") => break line,
                Ok(line) => output.push(line),
                Err(e) => {
                    let _ = child.kill();
                    panic!("the child never started a job ({e}): {output:?}");
                }
            }
        };
        w.until("the buffer filled", |w| {
            w.redis(&["LLEN", "sigterm:active"]) == ":5\r\n"
        })
        .await;
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = std::time::Instant::now() + super::LIMIT;
        let exit = loop {
            if let Some(exit) = child.try_wait().unwrap() {
                break exit;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "the child did not exit within {:?} of SIGTERM",
                    super::LIMIT
                );
            }
            w.clock.sleep(Duration::from_millis(20)).await;
        };
        let rest: Vec<String> = lines.try_iter().collect();
        assert!(exit.success(), "{exit:?}: {started} {rest:?}");
        assert!(
            rest.iter()
                .any(|l| l.starts_with("stopped: Err(ShutdownTimeout")),
            "the run reported the cancelled job: {rest:?}"
        );
        let snap = w.snapshot("sigterm").await;
        assert_eq!(
            snap.active.len(),
            10,
            "every job is back in the active list: {snap:?}"
        );
        assert_eq!(snap.data.len(), 10);
        assert!(
            snap.inflight.is_empty() && snap.consumers.is_empty(),
            "{snap:?}"
        );
        assert!(
            snap.data
                .values()
                .all(|d| Job::decode(d).unwrap().attempt == 0),
            "no attempt counted"
        );
    });
}
