//! curlyq's `QueueBackend` on the `redis` crate.
