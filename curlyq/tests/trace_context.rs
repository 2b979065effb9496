//! The trace context from producer to consumer (feature `opentelemetry`): with the W3C
//! propagator installed and tracing-opentelemetry's layer, a job's `process` span is a
//! child of the `send` span that pushed it, across the queue (the in-memory backend
//! here; the contract checks prove each backend stores and returns the context).
//!
//! The propagator is process-global, so this file holds the tests that set it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use curlyq::{BoxError, Consumer, Job, MemoryBackend, Producer};
use curlyq_testkit::ManualRuntime;
use opentelemetry::trace::{SpanKind, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt;

fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|s| s.name == name).collect()
}

/// A pushed job's run, and its retry, are children of the push's `send` span.
#[tokio::test]
async fn process_spans_are_children_of_the_send_span() -> Result<(), BoxError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("curlyq-test"));
    let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));

    let q = "traced-e2e";
    let clock = Arc::new(ManualRuntime::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    ));
    let backend = Arc::new(MemoryBackend::with_runtime(clock.clone()));
    let producer = Producer::new(backend.clone(), q)?.with_clock(clock.clone());
    producer
        .perform(Job::new("fail-once").with_id("j1"))
        .await?;

    let consumer = Consumer::builder(q)
        .runtime(clock.clone())
        .build(backend.clone())?;
    let watcher = consumer.clone();
    let stepper = clock.clone();
    let until_done = async move {
        for _ in 0..1_000 {
            if watcher.stats().succeeded == 1 {
                return;
            }
            stepper.advance_and_settle(Duration::from_millis(100)).await;
        }
        panic!("not done: {:?}", watcher.stats());
    };
    consumer
        .run_with_context(
            |_job: Job, ctx: curlyq::JobContext| async move {
                if ctx.attempt() == 0 {
                    return Err(BoxError::from("planned"));
                }
                Ok(())
            },
            until_done,
        )
        .await?;
    provider.force_flush()?;
    let spans = exporter.get_finished_spans()?;

    let sends = named(&spans, "send traced-e2e");
    assert_eq!(
        sends.len(),
        1,
        "spans: {:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let send = sends[0];
    assert_eq!(send.span_kind, SpanKind::Producer);
    let runs = named(&spans, "process traced-e2e");
    assert_eq!(runs.len(), 2, "the failed run and its retry");
    for run in runs {
        assert_eq!(run.span_kind, SpanKind::Consumer);
        assert_eq!(
            run.span_context.trace_id(),
            send.span_context.trace_id(),
            "one trace from push to run"
        );
        assert_eq!(run.parent_span_id, send.span_context.span_id());
    }
    Ok(())
}
