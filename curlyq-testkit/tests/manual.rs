//! `ManualRuntime`: virtual time, timer order, dropped sleeps, spawning.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use curlyq_core::Runtime;
use curlyq_testkit::ManualRuntime;

fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

type Log = Arc<Mutex<Vec<(&'static str, Duration)>>>;

/// Spawns a task that sleeps `d` and then logs its name with the elapsed virtual time.
fn sleeper(rt: &Arc<ManualRuntime>, log: &Log, name: &'static str, d: Duration) {
    let (rt2, log) = (rt.clone(), log.clone());
    let sleep = rt.sleep(d);
    rt.spawn(Box::pin(async move {
        sleep.await;
        log.lock().unwrap().push((name, rt2.elapsed()));
    }));
}

#[tokio::test(flavor = "current_thread")]
async fn timers_fire_in_deadline_order() {
    let rt = Arc::new(ManualRuntime::new(start()));
    let log: Log = Arc::default();
    sleeper(&rt, &log, "c", secs(30));
    sleeper(&rt, &log, "a", secs(10));
    sleeper(&rt, &log, "b", secs(20));
    sleeper(&rt, &log, "a2", secs(10));
    assert_eq!(rt.pending_timers(), 4);
    assert_eq!(rt.next_deadline(), Some(start() + secs(10)));
    ManualRuntime::settle().await;
    assert!(
        log.lock().unwrap().is_empty(),
        "nothing fires before the clock moves"
    );

    rt.advance_and_settle(secs(25)).await;
    assert_eq!(
        *log.lock().unwrap(),
        vec![("a", secs(10)), ("a2", secs(10)), ("b", secs(20))]
    );
    assert_eq!(rt.now(), start() + secs(25));
    assert_eq!(rt.pending_timers(), 1);
    rt.advance_and_settle(secs(5)).await;
    assert_eq!(log.lock().unwrap().last(), Some(&("c", secs(30))));
    assert_eq!(rt.pending_timers(), 0);
    assert_eq!(rt.next_deadline(), None);
}

#[tokio::test(flavor = "current_thread")]
async fn advance_jumps_and_wakes_every_due_timer_in_order() {
    let rt = Arc::new(ManualRuntime::new(start()));
    let log: Log = Arc::default();
    sleeper(&rt, &log, "late", secs(3));
    sleeper(&rt, &log, "early", secs(1));
    sleeper(&rt, &log, "never", secs(100));
    ManualRuntime::settle().await;
    rt.advance(secs(5));
    ManualRuntime::settle().await;
    // One jump: both see the new time, woken earliest deadline first.
    assert_eq!(
        *log.lock().unwrap(),
        vec![("early", secs(5)), ("late", secs(5))]
    );
    assert_eq!(rt.pending_timers(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn advance_and_settle_runs_timers_made_by_woken_tasks() {
    let rt = Arc::new(ManualRuntime::new(start()));
    let ticks: Arc<Mutex<Vec<Duration>>> = Arc::default();
    {
        let (rt2, ticks) = (rt.clone(), ticks.clone());
        rt.spawn(Box::pin(async move {
            for _ in 0..5 {
                rt2.sleep(secs(2)).await;
                ticks.lock().unwrap().push(rt2.elapsed());
            }
        }));
    }
    ManualRuntime::settle().await;
    rt.advance_and_settle(secs(7)).await;
    assert_eq!(*ticks.lock().unwrap(), vec![secs(2), secs(4), secs(6)]);
    assert_eq!(rt.next_deadline(), Some(start() + secs(8)));
    rt.advance_and_settle(secs(60)).await;
    assert_eq!(ticks.lock().unwrap().len(), 5);
    assert_eq!(rt.pending_timers(), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn sleep_zero_completes_at_once() {
    let rt = ManualRuntime::new(start());
    rt.sleep(Duration::ZERO).await;
    assert_eq!(rt.pending_timers(), 0);
    assert_eq!(rt.now(), start());
}

#[tokio::test(flavor = "current_thread")]
async fn dropped_sleeps_do_not_leak_or_fire() {
    let rt = Arc::new(ManualRuntime::new(start()));
    let polled = rt.sleep(secs(5));
    let task = tokio::spawn(polled);
    ManualRuntime::settle().await;
    let unpolled = rt.sleep(secs(1));
    assert_eq!(rt.pending_timers(), 2);
    task.abort();
    let _ = task.await;
    drop(unpolled);
    assert_eq!(rt.pending_timers(), 0);
    rt.advance_and_settle(secs(10)).await;
    assert_eq!(rt.pending_timers(), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn a_sleep_racing_another_future_can_lose() {
    let rt = Arc::new(ManualRuntime::new(start()));
    let sleep = rt.sleep(secs(5));
    let quick = async { 7 };
    let out = tokio::select! {
        () = sleep => 0,
        v = quick => v,
    };
    assert_eq!(out, 7);
    assert_eq!(rt.pending_timers(), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn sleep_awaited_after_its_deadline_completes() {
    let rt = ManualRuntime::new(start());
    let sleep = rt.sleep(secs(2));
    rt.advance(secs(3));
    assert_eq!(rt.pending_timers(), 0);
    sleep.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_on_a_multi_thread_runtime() {
    let rt = Arc::new(ManualRuntime::new(start()));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let rt2 = rt.clone();
    rt.spawn(Box::pin(async move {
        rt2.sleep(secs(60)).await;
        let _ = tx.send(rt2.now());
    }));
    while rt.pending_timers() == 0 {
        tokio::task::yield_now().await;
    }
    rt.advance(secs(60));
    assert_eq!(rx.await.unwrap(), start() + secs(60));
}
