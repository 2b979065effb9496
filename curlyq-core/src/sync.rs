//! Small runtime-agnostic synchronisation helpers for the consumer's tasks.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use event_listener::Event;
use futures::future::{select, Either};

/// A flag that can be awaited: set once, never cleared.
#[derive(Default)]
pub(crate) struct Flag {
    set: AtomicBool,
    event: Event,
}

impl Flag {
    pub(crate) fn set(&self) {
        self.set.store(true, Ordering::SeqCst);
        self.event.notify(usize::MAX);
    }

    pub(crate) fn is_set(&self) -> bool {
        self.set.load(Ordering::SeqCst)
    }

    /// Completes once the flag is set.
    pub(crate) async fn wait(&self) {
        loop {
            if self.is_set() {
                return;
            }
            let listener = self.event.listen();
            if self.is_set() {
                return;
            }
            listener.await;
        }
    }
}

/// Counts running tasks; awaitable until none runs.
#[derive(Default)]
pub(crate) struct TaskCount {
    running: AtomicUsize,
    event: Event,
}

impl TaskCount {
    pub(crate) fn start(&self) {
        self.running.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn finish(&self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.event.notify(usize::MAX);
    }

    pub(crate) fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// Completes once no task runs.
    pub(crate) async fn idle(&self) {
        loop {
            if self.running() == 0 {
                return;
            }
            let listener = self.event.listen();
            if self.running() == 0 {
                return;
            }
            listener.await;
        }
    }
}

/// Runs `fut` until it completes or `stop` completes first (then `None`).
pub(crate) async fn until<T>(
    stop: impl Future<Output = ()>,
    fut: impl Future<Output = T>,
) -> Option<T> {
    let stop = std::pin::pin!(stop);
    let fut = std::pin::pin!(fut);
    match select(fut, stop).await {
        Either::Left((value, _)) => Some(value),
        Either::Right(((), _)) => None,
    }
}
