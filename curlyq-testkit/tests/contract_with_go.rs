//! `backend_tests!(factory, go: ...)`: the contract on a backend that is not a
//! `MemoryBackend` (the model inside `Faulty`, with no fault set), whose `go` checks get
//! their Go consumer from the closure (the model inside).

use curlyq_testkit::contract::GoConsumer;
use curlyq_testkit::{Faulty, MemoryBackend};

curlyq_testkit::backend_tests!(
    || async { Faulty::new(MemoryBackend::new()) },
    go: |b: &Faulty<MemoryBackend>| Box::new(b.inner().clone()) as Box<dyn GoConsumer>,
);
