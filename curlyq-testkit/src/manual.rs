//! [`ManualRuntime`]: a [`Runtime`] whose clock moves only when the test advances it.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use curlyq_core::runtime::BoxFuture;
use curlyq_core::Runtime;

/// How many times [`ManualRuntime::settle`] yields to the executor.
pub const SETTLE_YIELDS: usize = 64;

/// A timer's key: its deadline, then its creation order (so timers with one deadline
/// fire in the order they were made).
type TimerKey = (SystemTime, u64);

struct Clock {
    start: SystemTime,
    now: SystemTime,
    next_seq: u64,
    /// Timers not yet fired, with the waker of the task polling each (if polled yet).
    timers: BTreeMap<TimerKey, Option<Waker>>,
}

struct Inner {
    clock: Mutex<Clock>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Clock> {
        self.clock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A [`Runtime`] on a virtual clock, for deterministic simulated-time tests.
///
/// No real sleeping happens: [`now`](Runtime::now) returns the virtual time, and a
/// [`sleep`](Runtime::sleep) completes only when a call to [`advance`](Self::advance) (or
/// [`advance_and_settle`](Self::advance_and_settle)) moves the clock to or past its
/// deadline. Hours of consumer life thus run in milliseconds. Tasks are spawned with
/// `tokio::spawn`, so the runtime must be used inside a tokio runtime; a current-thread
/// tokio runtime makes runs fully deterministic.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use std::time::{Duration, UNIX_EPOCH};
/// use curlyq_core::Runtime;
/// use curlyq_testkit::ManualRuntime;
///
/// let rt = ManualRuntime::new(UNIX_EPOCH + Duration::from_secs(1_000));
/// let sleep = rt.sleep(Duration::from_secs(5));
/// assert_eq!(rt.pending_timers(), 1);
/// rt.advance(Duration::from_secs(5));
/// sleep.await; // completes at once: the clock reached its deadline
/// assert_eq!(rt.now(), UNIX_EPOCH + Duration::from_secs(1_005));
/// # });
/// ```
#[derive(Clone)]
pub struct ManualRuntime {
    inner: Arc<Inner>,
}

impl fmt::Debug for ManualRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let clock = self.inner.lock();
        f.debug_struct("ManualRuntime")
            .field("now", &clock.now)
            .field("pending_timers", &clock.timers.len())
            .finish()
    }
}

impl ManualRuntime {
    /// A clock reading `start` until it is advanced.
    pub fn new(start: SystemTime) -> Self {
        ManualRuntime {
            inner: Arc::new(Inner {
                clock: Mutex::new(Clock {
                    start,
                    now: start,
                    next_seq: 0,
                    timers: BTreeMap::new(),
                }),
            }),
        }
    }

    /// How far the clock has moved since it was made.
    pub fn elapsed(&self) -> Duration {
        let clock = self.inner.lock();
        clock
            .now
            .duration_since(clock.start)
            .unwrap_or(Duration::ZERO)
    }

    /// How many sleeps are waiting for their deadline (dropped sleeps are not counted).
    pub fn pending_timers(&self) -> usize {
        self.inner.lock().timers.len()
    }

    /// The earliest deadline of a pending sleep.
    pub fn next_deadline(&self) -> Option<SystemTime> {
        self.inner.lock().timers.keys().next().map(|(at, _)| *at)
    }

    /// Moves the clock forward by `duration` in one jump and wakes every sleep that is
    /// now due, in deadline order. Woken tasks run when the executor next gets control
    /// (see [`advance_and_settle`](Self::advance_and_settle)) and all see the new time.
    ///
    /// # Panics
    /// If the clock would overflow `SystemTime`.
    pub fn advance(&self, duration: Duration) {
        let target = self.target(duration);
        self.set_time(target);
    }

    /// Moves the clock forward by `duration` one deadline at a time: for each pending
    /// deadline up to the target (including those of sleeps made by the tasks it wakes),
    /// sets the clock to that deadline, wakes the due sleeps and lets woken tasks run
    /// ([`settle`](Self::settle)); then sets the clock to the target and settles once more.
    /// Each task thus sees the time at which its sleep ended.
    ///
    /// # Panics
    /// If the clock would overflow `SystemTime`.
    pub async fn advance_and_settle(&self, duration: Duration) {
        let target = self.target(duration);
        while let Some(deadline) = self.next_deadline() {
            if deadline > target {
                break;
            }
            self.set_time(deadline);
            Self::settle().await;
        }
        self.set_time(target);
        Self::settle().await;
    }

    /// Yields to the executor [`SETTLE_YIELDS`] times so that woken tasks can run (on a
    /// current-thread runtime, every ready task runs between two yields).
    pub async fn settle() {
        for _ in 0..SETTLE_YIELDS {
            tokio::task::yield_now().await;
        }
    }

    fn target(&self, duration: Duration) -> SystemTime {
        let now = self.inner.lock().now;
        now.checked_add(duration)
            .expect("ManualRuntime: advancing the clock overflowed SystemTime")
    }

    /// Sets the clock to `time` (never backwards) and wakes the due sleeps in order.
    fn set_time(&self, time: SystemTime) {
        let due = {
            let mut clock = self.inner.lock();
            if time > clock.now {
                clock.now = time;
            }
            let now = clock.now;
            let later = clock.timers.split_off(&(now, u64::MAX));
            std::mem::replace(&mut clock.timers, later)
        };
        for waker in due.into_values().flatten() {
            waker.wake();
        }
    }
}

impl Runtime for ManualRuntime {
    fn now(&self) -> SystemTime {
        self.inner.lock().now
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        let mut clock = self.inner.lock();
        let key = match clock.now.checked_add(duration) {
            // Overflow: a deadline no clock reaches.
            None => SleepState::Never,
            Some(deadline) if deadline <= clock.now => SleepState::Done,
            Some(deadline) => {
                let key = (deadline, clock.next_seq);
                clock.next_seq += 1;
                clock.timers.insert(key, None);
                SleepState::Waiting(key)
            }
        };
        drop(clock);
        Box::pin(ManualSleep {
            inner: Arc::clone(&self.inner),
            state: key,
        })
    }

    fn spawn(&self, task: BoxFuture<()>) {
        drop(tokio::spawn(task));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SleepState {
    /// Registered in the timer list.
    Waiting(TimerKey),
    /// Completed (or zero-length).
    Done,
    /// The deadline is past the end of `SystemTime`: never completes.
    Never,
}

/// The future of [`ManualRuntime::sleep`]. Dropping it before it fires removes its timer.
struct ManualSleep {
    inner: Arc<Inner>,
    state: SleepState,
}

impl Future for ManualSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let key = match self.state {
            SleepState::Done => return Poll::Ready(()),
            SleepState::Never => return Poll::Pending,
            SleepState::Waiting(key) => key,
        };
        let mut clock = self.inner.lock();
        if clock.now >= key.0 {
            clock.timers.remove(&key);
            drop(clock);
            self.state = SleepState::Done;
            return Poll::Ready(());
        }
        // Still pending: the entry is there (only `set_time` removes entries early, and
        // only once the clock has reached them).
        match clock.timers.get_mut(&key) {
            Some(slot) => match slot {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => *slot = Some(cx.waker().clone()),
            },
            None => {
                clock.timers.insert(key, Some(cx.waker().clone()));
            }
        }
        Poll::Pending
    }
}

impl Drop for ManualSleep {
    fn drop(&mut self) {
        if let SleepState::Waiting(key) = self.state {
            self.inner.lock().timers.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn zero_sleep_registers_no_timer() {
        let rt = ManualRuntime::new(t(10));
        let sleep = rt.sleep(Duration::ZERO);
        assert_eq!(rt.pending_timers(), 0);
        futures::executor::block_on(sleep);
    }

    #[test]
    fn dropped_sleep_removes_its_timer() {
        let rt = ManualRuntime::new(t(10));
        let a = rt.sleep(Duration::from_secs(1));
        let b = rt.sleep(Duration::from_secs(2));
        assert_eq!(rt.pending_timers(), 2);
        assert_eq!(rt.next_deadline(), Some(t(11)));
        drop(a);
        assert_eq!(rt.pending_timers(), 1);
        assert_eq!(rt.next_deadline(), Some(t(12)));
        rt.advance(Duration::from_secs(5));
        assert_eq!(rt.pending_timers(), 0);
        drop(b);
        assert_eq!(rt.pending_timers(), 0);
    }

    #[test]
    fn overflowing_sleep_never_fires() {
        let rt = ManualRuntime::new(t(10));
        let mut sleep = rt.sleep(Duration::MAX);
        assert_eq!(rt.pending_timers(), 0);
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(sleep.as_mut().poll(&mut cx).is_pending());
        rt.advance(Duration::from_secs(1_000_000));
        assert!(sleep.as_mut().poll(&mut cx).is_pending());
    }

    #[test]
    fn elapsed_tracks_advances() {
        let rt = ManualRuntime::new(t(10));
        rt.advance(Duration::from_millis(1500));
        rt.advance(Duration::from_millis(500));
        assert_eq!(rt.elapsed(), Duration::from_secs(2));
        assert_eq!(rt.now(), t(12));
    }
}
