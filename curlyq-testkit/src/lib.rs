//! Test kit for curlyq: [`MemoryBackend`] (the in-memory reference model of the wire
//! contract), [`ManualRuntime`] (a clock that moves only when the test says so), and
//! [`RedisServer`] (a throwaway `redis-server` on a free loopback port).

mod redis_server;

pub use redis_server::RedisServer;
