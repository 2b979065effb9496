//! The async driver: the one place a consumer awaits. It owns a [`ConsumerCore`], makes
//! the backend calls the core asks for (concurrently), runs the blocking wait on its own
//! [`Waiter`], spawns handlers on the [`Runtime`] (they report back on a channel),
//! sleeps until the core's next timer, and feeds every result back to the core.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, SystemTime};

use futures::channel::mpsc;
use futures::future::{AbortHandle, Abortable};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tracing::{field, info_span, Instrument};

use crate::backend::{ConsumerId, QueueBackend, QueueName, Waiter};
use crate::context::{CancelHandle, CancelReason, ContextParts, HandlerRequest, JobContext};
use crate::error::{BackendError, ConsumeError};
use crate::failure::{classify, Asked};
use crate::job::Job;
use crate::runtime::{unix_seconds, BoxFuture, Runtime};
use crate::telemetry::{ConsumerMetrics, RunEnd};

use super::machine::ConsumerCore;
use super::protocol::{BackendCall, CallId, Command, HandlerResult, Input, Reply, RunId};
use super::stats::{ConsumerStats, Published};
use super::DynHandler;

type CallFuture = BoxFuture<(CallId, Result<Reply, BackendError>)>;
type WaitFuture = BoxFuture<(Result<bool, BackendError>, Option<Box<dyn Waiter>>)>;

/// A handler run in progress.
struct Running {
    abort: AbortHandle,
    cancel: CancelHandle,
    /// When it started (the core's time), for its duration.
    started: SystemTime,
    /// Its cancellation signal fired, and why.
    signalled: Option<CancelReason>,
}

/// Drives one core until it finishes.
pub(super) struct Driver {
    core: ConsumerCore,
    backend: Arc<dyn QueueBackend>,
    runtime: Arc<dyn Runtime>,
    queue: QueueName,
    handler: DynHandler,
    calls: FuturesUnordered<CallFuture>,
    /// The dedicated waiter, while no wait uses it.
    waiter: Option<Box<dyn Waiter>>,
    wait: Option<(CallId, WaitFuture)>,
    handlers: HashMap<RunId, Running>,
    done_tx: mpsc::UnboundedSender<(RunId, HandlerResult)>,
    done_rx: mpsc::UnboundedReceiver<(RunId, HandlerResult)>,
    /// Requests from running handlers (through their [`JobContext`]).
    requests_tx: mpsc::UnboundedSender<(RunId, HandlerRequest)>,
    requests_rx: mpsc::UnboundedReceiver<(RunId, HandlerRequest)>,
    /// The core's next timer and the sleep for it.
    timer: Option<(SystemTime, BoxFuture<()>)>,
    /// The metric handles of this run (nothing without the `metrics` feature).
    metrics: ConsumerMetrics,
    /// The core's counters as last turned into metrics.
    counted: ConsumerStats,
    /// The `process` span's `otel.name`: `process {queue}`.
    process_name: String,
}

impl Driver {
    pub(super) fn new(
        core: ConsumerCore,
        backend: Arc<dyn QueueBackend>,
        runtime: Arc<dyn Runtime>,
        queue: QueueName,
        handler: DynHandler,
    ) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded();
        let (requests_tx, requests_rx) = mpsc::unbounded();
        Driver {
            metrics: ConsumerMetrics::new(&queue),
            counted: ConsumerStats::default(),
            process_name: format!("process {queue}"),
            core,
            backend,
            runtime,
            queue,
            handler,
            calls: FuturesUnordered::new(),
            waiter: None,
            wait: None,
            handlers: HashMap::new(),
            done_tx,
            done_rx,
            requests_tx,
            requests_rx,
            timer: None,
        }
    }

    /// Runs until the core finishes; `shutdown` completing asks for a graceful stop.
    pub(super) async fn run(
        mut self,
        shutdown: impl Future<Output = ()> + Send,
        published: &Published,
    ) -> Result<(), ConsumeError> {
        let mut shutdown = std::pin::pin!(shutdown.fuse());
        let mut shutdown_seen = false;
        let base = published.base();
        let mut current = None;
        loop {
            while let Some(command) = self.core.poll_command() {
                if let Some(result) = self.carry_out(command) {
                    self.publish(published, &base);
                    for (_, running) in self.handlers.drain() {
                        running.abort.abort();
                    }
                    return result;
                }
            }
            self.publish(published, &base);
            if current.as_ref() != self.core.consumer_id() {
                current = self.core.consumer_id().cloned();
                published.set_current(current.clone());
            }
            self.arm_timer();
            // Everything ready now goes to the core in one round, so that what happened
            // together is acted on together (one outcome call for handlers that ended
            // together).
            let (fired, mut inputs) = std::future::poll_fn(|cx| {
                let mut inputs = Vec::new();
                let mut fired = None;
                while let Poll::Ready(Some((run, result))) = self.done_rx.poll_next_unpin(cx) {
                    inputs.push(Input::HandlerFinished { run, result });
                }
                while let Poll::Ready(Some((run, request))) = self.requests_rx.poll_next_unpin(cx) {
                    let HandlerRequest::SetTimeout(timeout) = request;
                    inputs.push(Input::SetTimeout { run, timeout });
                }
                while let Poll::Ready(Some((call, result))) = self.calls.poll_next_unpin(cx) {
                    inputs.push(Input::Reply { call, result });
                }
                if let Some((call, wait)) = self.wait.as_mut() {
                    if let Poll::Ready((result, waiter)) = wait.poll_unpin(cx) {
                        let call = *call;
                        self.wait = None;
                        self.waiter = waiter;
                        let result = result.map(Reply::Signal);
                        inputs.push(Input::Reply { call, result });
                    }
                }
                if !shutdown_seen && shutdown.as_mut().poll(cx).is_ready() {
                    shutdown_seen = true;
                    inputs.push(Input::Shutdown);
                }
                if let Some((at, sleep)) = self.timer.as_mut() {
                    if sleep.poll_unpin(cx).is_ready() {
                        fired = Some(*at);
                        self.timer = None;
                        inputs.push(Input::Timeout);
                    }
                }
                if inputs.is_empty() {
                    Poll::Pending
                } else {
                    Poll::Ready((fired, inputs))
                }
            })
            .await;
            let ended = inputs
                .iter()
                .filter(|i| matches!(i, Input::HandlerFinished { .. }))
                .count();
            if ended > 0 && self.handlers.len() > ended {
                // Other handlers still run: let those about to end do so first (one turn
                // of the runtime), so that their outcomes join this round's call rather
                // than wait for the next.
                YieldOnce(false).await;
                while let Ok((run, result)) = self.done_rx.try_recv() {
                    inputs.push(Input::HandlerFinished { run, result });
                }
            }
            let clock = self.runtime.now();
            for input in &inputs {
                self.observe(input, clock);
            }
            // A timer that fired counts as its deadline at least, so that the core sees
            // it due even on a clock a little behind the runtime's timers.
            let now = fired.map_or(clock, |at| at.max(clock));
            self.core.handle_all(now, inputs);
        }
    }

    /// Publishes the core's counters, and turns the outcomes recorded since the last
    /// call into metrics.
    fn publish(&mut self, published: &Published, base: &[u64; 6]) {
        let stats = self.core.stats();
        published.set_stats(base, &stats);
        let seen = &self.counted;
        if stats != *seen {
            self.metrics.recorded(
                stats.succeeded.saturating_sub(seen.succeeded),
                stats.retried.saturating_sub(seen.retried),
                stats.killed.saturating_sub(seen.killed),
            );
            self.counted = stats;
        }
    }

    /// Counts what an input tells before the core gets it: jobs taken, orphans
    /// requeued, a handler run's end (its handle goes too: kept, one per job, they
    /// would pile up).
    fn observe(&mut self, input: &Input, now: SystemTime) {
        match input {
            Input::HandlerFinished { run, result } => {
                if let Some(running) = self.handlers.remove(run) {
                    let end = RunEnd::of(result, running.signalled);
                    self.ended(end, &running, now);
                }
            }
            Input::Reply {
                result: Ok(Reply::Taken(report)),
                ..
            } => self.metrics.taken(report.jobs.len()),
            Input::Reply {
                result: Ok(Reply::Orphans(report)),
                ..
            } => self.metrics.orphans(report.requeued, report.killed),
            _ => {}
        }
    }

    fn ended(&self, end: RunEnd, running: &Running, now: SystemTime) {
        let took = now
            .duration_since(running.started)
            .unwrap_or(Duration::ZERO);
        self.metrics.ended(end, took);
    }

    /// Carries out one command; `Some` when the core finished.
    fn carry_out(&mut self, command: Command) -> Option<Result<(), ConsumeError>> {
        match command {
            Command::Call { id, call } => self.call(id, call),
            // Dropping the wait drops its waiter (its connection) too.
            Command::CancelWait { id } if self.wait.as_ref().is_some_and(|(w, _)| *w == id) => {
                self.wait = None;
            }
            Command::CancelWait { .. } => {}
            Command::StartHandler {
                run,
                job,
                consumer,
                started,
                timeout,
                trace,
            } => self.start_handler(run, job, consumer, started, timeout, trace.as_deref()),
            Command::SignalCancel { run, reason } => {
                if let Some(running) = self.handlers.get_mut(&run) {
                    running.signalled = Some(reason);
                    running.cancel.fire(reason);
                }
            }
            Command::CancelHandler { run } => {
                if let Some(running) = self.handlers.remove(&run) {
                    running.abort.abort();
                    let end = RunEnd::dropped(running.signalled);
                    self.ended(end, &running, self.runtime.now());
                }
            }
            Command::Finished(result) => return Some(result),
        }
        None
    }

    fn call(&mut self, id: CallId, call: BackendCall) {
        if let BackendCall::Wait {
            timeout,
            fresh_waiter,
        } = call
        {
            let waiter = if fresh_waiter {
                None
            } else {
                self.waiter.take()
            };
            self.waiter = None;
            let (backend, queue) = (self.backend.clone(), self.queue.clone());
            let wait: WaitFuture = Box::pin(wait_on(backend, queue, waiter, timeout));
            self.wait = Some((id, wait));
            return;
        }
        let (backend, queue) = (self.backend.clone(), self.queue.clone());
        // With traces on, takes read each job's trace context too.
        #[cfg(feature = "opentelemetry")]
        if let BackendCall::Take { consumer, max, now } = call {
            self.calls.push(Box::pin(async move {
                let taken = backend.take_traced(&queue, &consumer, max, now).await;
                (id, taken.map(Reply::Taken))
            }));
            return;
        }
        self.calls.push(Box::pin(async move {
            (id, call.execute(&*backend, &queue).await)
        }));
    }

    fn start_handler(
        &mut self,
        run: RunId,
        job: Job,
        consumer: ConsumerId,
        started: SystemTime,
        timeout: Option<Duration>,
        trace: Option<&str>,
    ) {
        let span = info_span!(
            "process",
            otel.name = self.process_name.as_str(),
            otel.kind = "consumer",
            messaging.system = crate::telemetry::SYSTEM,
            messaging.destination.name = self.queue.as_str(),
            messaging.operation.type = "process",
            messaging.operation.name = "process",
            messaging.message.id = job.id.as_str(),
            messaging.client.id = consumer.as_str(),
            curlyq.job.attempt = job.attempt,
            queue = self.queue.as_str(),
            job_id = job.id.as_str(),
            attempt = job.attempt,
            error.type = field::Empty,
            otel.status_code = field::Empty,
        );
        crate::telemetry::set_parent(&span, trace);
        let latency = job.ready_at().map(|at| unix_seconds(started) - at);
        self.metrics.started(latency);
        let (handle, registration) = AbortHandle::new_pair();
        let (ctx, cancel) = JobContext::new(ContextParts {
            job_id: job.id.clone(),
            attempt: job.attempt,
            queue: self.queue.clone(),
            consumer,
            started,
            timeout,
            run,
            requests: Some(self.requests_tx.clone()),
        });
        let handler = self.handler.clone();
        let done = self.done_tx.clone();
        let task = async move {
            let watch = ctx.clone();
            let result = run_handler(&handler, job, ctx).await;
            if let Some(kind) = RunEnd::of(&result, watch.cancel_reason()).error_type() {
                let span = tracing::Span::current();
                span.record("error.type", kind);
                span.record("otel.status_code", "error");
            }
            // The receiver lives as long as the driver; after it, nobody needs this.
            let _ = done.unbounded_send((run, result));
        }
        .instrument(span);
        self.handlers.insert(
            run,
            Running {
                abort: handle,
                cancel,
                started,
                signalled: None,
            },
        );
        self.runtime
            .spawn(Box::pin(Abortable::new(task, registration).map(|_| ())));
    }

    /// Points the timer at the core's next deadline (a new sleep only when it moved).
    fn arm_timer(&mut self) {
        let deadline = self.core.poll_timeout();
        if self.timer.as_ref().map(|(at, _)| *at) == deadline {
            return;
        }
        self.timer = deadline.map(|at| {
            let delay = at
                .duration_since(self.runtime.now())
                .unwrap_or(Duration::ZERO);
            (at, self.runtime.sleep(delay))
        });
    }
}

/// One blocking wait, making the waiter first when there is none; gives the waiter back
/// unless the wait failed (its connection may be broken).
async fn wait_on(
    backend: Arc<dyn QueueBackend>,
    queue: QueueName,
    waiter: Option<Box<dyn Waiter>>,
    timeout: Duration,
) -> (Result<bool, BackendError>, Option<Box<dyn Waiter>>) {
    let mut waiter = match waiter {
        Some(w) => w,
        None => match backend.waiter(&queue).await {
            Ok(w) => w,
            Err(e) => return (Err(e), None),
        },
    };
    match waiter.wait(timeout).await {
        Ok(seen) => (Ok(seen), Some(waiter)),
        Err(e) => (Err(e), None),
    }
}

/// Runs the handler, turning an error or a panic into its message.
async fn run_handler(handler: &DynHandler, job: Job, ctx: JobContext) -> HandlerResult {
    let fut = match std::panic::catch_unwind(AssertUnwindSafe(|| handler(job, ctx))) {
        Ok(fut) => fut,
        Err(panic) => return HandlerResult::Panicked(panic_message(&*panic)),
    };
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(Ok(())) => HandlerResult::Succeeded,
        Ok(Err(e)) => match classify(&*e) {
            Asked::Backoff => HandlerResult::Failed(e.to_string()),
            Asked::Permanent => HandlerResult::Permanent(e.to_string()),
            Asked::RetryAfter(delay) => HandlerResult::RetryAfter {
                error: e.to_string(),
                delay,
            },
        },
        Err(panic) => HandlerResult::Panicked(panic_message(&*panic)),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_string()
    }
}

/// Pending once (waking itself at once), then ready: gives the runtime one turn to run
/// other tasks, on any executor.
struct YieldOnce(bool);
impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
