//! Failure modes every Redis backend must survive, as checks shared by the Redis clients:
//! a flushed script cache, wrong key types, large batches, an unreachable or restarted
//! server, passwords in URLs, the blocking wait beside other operations, an evicting
//! memory policy, and IDs that are not UTF-8.
//!
//! Each check is an `async fn(Env<B>)` that panics (with `assert!`) when the backend gets
//! it wrong. It gets a [`RedisServer`] of its own (for raw commands: `SCRIPT FLUSH`,
//! `CONFIG SET`, `DUMP`, restarts) and a backend on it, made by the [`Client`] the test
//! crate describes. [`redis_backend_tests!`](crate::redis_backend_tests) makes one
//! `#[test]` per check:
//!
//! ```ignore
//! // tests/robustness.rs of a Redis backend crate:
//! use std::time::Duration;
//! use curlyq_redis_rs::{RedisBackend, RedisConfig};
//! use curlyq_testkit::robustness::Client;
//!
//! fn client() -> Client<RedisBackend> {
//!     Client::new(|url| async move { RedisBackend::connect(&url).await })
//!         .with_response_timeout(|url, timeout| async move {
//!             RedisBackend::connect_with(&url, RedisConfig::default().with_response_timeout(timeout))
//!                 .await
//!         })
//!         .load_scripts(|backend| async move { backend.load_scripts().await })
//! }
//!
//! curlyq_testkit::redis_backend_tests!(client());
//! ```
//!
//! The checks that mean something without Redis take only a backend and a queue
//! ([`cancelled_wait_on`], [`push_ten_thousand_on`]); the memory backend's tests run them
//! too.

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use curlyq_core::{BackendError, ConsumerId, EncodedJob, QueueBackend, QueueName, Registration};
use curlyq_lua::Keys;
use futures::future::LocalBoxFuture;

use crate::{RedisServer, Resp};

/// What a robustness check needs of a backend: the trait, cheap clones, and `Debug` and
/// `Display` (which must never show a password).
pub trait Backend: QueueBackend + Clone + fmt::Debug + fmt::Display {}

impl<B: QueueBackend + Clone + fmt::Debug + fmt::Display> Backend for B {}

type Connect<B> = Box<dyn Fn(String) -> LocalBoxFuture<'static, Result<B, BackendError>>>;
type ConnectWithTimeout<B> =
    Box<dyn Fn(String, Duration) -> LocalBoxFuture<'static, Result<B, BackendError>>>;
type LoadScripts<B> = Box<dyn Fn(B) -> LocalBoxFuture<'static, Result<(), BackendError>>>;

/// How the checks make and drive the backend of one Redis client: a connect function
/// (from a URL) and the client-specific hooks some checks need.
pub struct Client<B> {
    connect: Connect<B>,
    with_response_timeout: Option<ConnectWithTimeout<B>>,
    load_scripts: Option<LoadScripts<B>>,
}

impl<B> fmt::Debug for Client<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field(
                "with_response_timeout",
                &self.with_response_timeout.is_some(),
            )
            .field("load_scripts", &self.load_scripts.is_some())
            .finish_non_exhaustive()
    }
}

impl<B: Backend> Client<B> {
    /// A client whose backends are made by `connect(url)`.
    pub fn new<F, Fut>(connect: F) -> Self
    where
        F: Fn(String) -> Fut + 'static,
        Fut: Future<Output = Result<B, BackendError>> + 'static,
    {
        Client {
            connect: Box::new(move |url| Box::pin(connect(url))),
            with_response_timeout: None,
            load_scripts: None,
        }
    }

    /// How to make a backend whose replies time out after the given time, and which
    /// reconnects promptly (within about 100 ms) after the server comes back. Needed by
    /// [`waiter_blocks_on_its_own_connection`] and
    /// [`stopped_server_is_unavailable_then_recovers`].
    pub fn with_response_timeout<F, Fut>(mut self, connect: F) -> Self
    where
        F: Fn(String, Duration) -> Fut + 'static,
        Fut: Future<Output = Result<B, BackendError>> + 'static,
    {
        self.with_response_timeout = Some(Box::new(move |url, timeout| {
            Box::pin(connect(url, timeout))
        }));
        self
    }

    /// How to make the backend load its scripts into the server's cache (`SCRIPT LOAD`
    /// of each). Needed by [`reloads_scripts_after_script_flush`].
    pub fn load_scripts<F, Fut>(mut self, load: F) -> Self
    where
        F: Fn(B) -> Fut + 'static,
        Fut: Future<Output = Result<(), BackendError>> + 'static,
    {
        self.load_scripts = Some(Box::new(move |backend| Box::pin(load(backend))));
        self
    }
}

/// What a check runs on: its own server, a backend connected to it, the queue `{q}` and
/// its keys.
pub struct Env<B> {
    /// The check's own `redis-server`.
    pub server: RedisServer,
    /// A backend connected to it (by [`Client::new`]'s function).
    pub backend: B,
    /// The queue `{q}`.
    pub queue: QueueName,
    /// The Redis keys of `{q}`.
    pub keys: Keys,
    client: Client<B>,
}

impl<B: Backend> Env<B> {
    /// Connects another backend (by [`Client::new`]'s function).
    pub async fn connect(&self, url: &str) -> Result<B, BackendError> {
        (self.client.connect)(url.to_owned()).await
    }

    /// Connects a backend whose replies time out after `timeout`.
    ///
    /// # Panics
    /// If the client has no [`Client::with_response_timeout`].
    pub async fn connect_with_response_timeout(
        &self,
        url: &str,
        timeout: Duration,
    ) -> Result<B, BackendError> {
        let connect = self
            .client
            .with_response_timeout
            .as_ref()
            .expect("this check needs Client::with_response_timeout");
        connect(url.to_owned(), timeout).await
    }

    /// Makes the backend load its scripts.
    ///
    /// # Panics
    /// If the client has no [`Client::load_scripts`].
    pub async fn load_scripts(&self) -> Result<(), BackendError> {
        let load = self
            .client
            .load_scripts
            .as_ref()
            .expect("this check needs Client::load_scripts");
        load(self.backend.clone()).await
    }

    /// Runs a raw command; the raw RESP reply (`+OK\r\n`, `:1\r\n`, ...).
    pub fn raw(&self, args: &[&str]) -> String {
        self.server
            .command(args)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// Runs a raw command with binary arguments; the parsed reply.
    pub fn query(&self, args: &[&[u8]]) -> Resp {
        self.server
            .query(args)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// `DUMP` of each key (nil for a missing key), for byte-for-byte comparisons.
    pub fn dump(&self, keys: &[&str]) -> Vec<Resp> {
        keys.iter()
            .map(|k| self.query(&[b"DUMP", k.as_bytes()]))
            .collect()
    }

    /// A field of `INFO clients` as a number.
    fn info_clients(&self, field: &str) -> usize {
        let info = self.raw(&["INFO", "clients"]);
        info.lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|n| n.trim().parse::<usize>().ok())
            .unwrap_or_else(|| panic!("{field} in INFO clients"))
    }

    /// The number of client connections the server has (not counting the connection of
    /// the `INFO` command itself).
    pub fn connections(&self) -> usize {
        self.info_clients("connected_clients") - 1
    }

    /// The number of clients blocked in a command (such as the waiter's).
    pub fn blocked_clients(&self) -> usize {
        self.info_clients("blocked_clients")
    }
}

/// Runs `check` as a test: on a tokio runtime of its own (multi-threaded, time and I/O
/// enabled), with a fresh [`RedisServer`] and a backend on it made by `client`. This is the
/// body of every test that [`redis_backend_tests!`](crate::redis_backend_tests) makes.
pub fn run<B, F, Fut>(client: Client<B>, check: F)
where
    B: Backend,
    F: FnOnce(Env<B>) -> Fut,
    Fut: Future<Output = ()>,
{
    let runtime = crate::contract::test_runtime();
    runtime.block_on(async move {
        let server = RedisServer::start().expect("redis-server starts");
        let backend = (client.connect)(server.url())
            .await
            .unwrap_or_else(|e| panic!("connecting to the test server failed: {e}"));
        let env = Env {
            server,
            backend,
            queue: QueueName::new("{q}").expect("a queue name"),
            keys: Keys::new("{q}"),
            client,
        };
        check(env).await;
    });
}

/// The list of every check with its rule: the one place the checks are named.
#[doc(hidden)]
#[macro_export]
macro_rules! __robustness_list {
    ([$($callback:tt)*] $($args:tt)*) => {
        $($callback)*! {
            [$($args)*]
            reloads_scripts_after_script_flush: "after SCRIPT FLUSH, single and chunked calls load the scripts again",
            every_script_loads: "every script compiles on the server",
            wrongtype_rejects_without_writing: "a string where a hash belongs makes push, take and ack fail with Rejected, writing nothing",
            push_ten_thousand: "10,000 jobs in one push call are all stored, in order",
            unreachable_server_is_unavailable: "connecting where nothing listens fails fast with Unavailable",
            password_never_shown: "the password never shows in Debug or Display of the backend or of errors",
            waiter_blocks_on_its_own_connection: "a waiter blocks on a connection of its own: other operations go on meanwhile",
            cancelled_wait_does_not_delay_the_next: "a wait whose future is dropped mid-block does not delay the next one",
            recovers_after_a_restart: "after a server restart the backend reconnects and reloads its scripts",
            stopped_server_is_unavailable_then_recovers: "while the server is down calls fail fast with Unavailable; then they work again",
            an_evicting_policy_is_a_settings_warning: "an eviction policy other than noeviction is a settings warning",
            take_by_an_unknown_consumer_is_not_registered: "a take by a consumer that is not registered is NotRegistered and takes nothing",
            a_non_utf8_id_is_killed_when_taken: "a taken job whose ID is not UTF-8 is killed by its raw bytes; the rest are taken",
        }
    };
}

macro_rules! define_list {
    ([] $($name:ident: $rule:literal,)*) => {
        /// Every check as `(name, rule)`, in the order of the module.
        pub const CHECKS: &[(&str, &str)] = &[$((stringify!($name), $rule),)*];
    };
}

crate::__robustness_list!([define_list]);

/// One `#[test]` per robustness check, for a Redis backend: `redis_backend_tests!(client)`
/// where `client` is an expression of type [`Client<B>`] (evaluated once per test, such as
/// a call of a `fn client()` of the test file). Each test gets its own `redis-server`
/// and tokio runtime, so they run in parallel; no `#[tokio::test]` is needed. See the
/// [module docs](crate::robustness) for an example.
#[macro_export]
macro_rules! redis_backend_tests {
    ($client:expr $(,)?) => {
        $crate::__robustness_list!([$crate::__redis_backend_tests] $client);
    };
}

/// The body of [`redis_backend_tests!`](crate::redis_backend_tests).
#[doc(hidden)]
#[macro_export]
macro_rules! __redis_backend_tests {
    ([$client:expr] $($name:ident: $rule:literal,)*) => {
        $(
            #[doc = $rule]
            #[test]
            fn $name() {
                $crate::robustness::run($client, $crate::robustness::$name);
            }
        )*
    };
}

// ---- helpers --------------------------------------------------------------------------

fn job(id: &str, data: &str) -> EncodedJob {
    EncodedJob {
        id: id.to_owned(),
        data: data.as_bytes().to_vec(),
    }
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn many(n: usize) -> Vec<EncodedJob> {
    (0..n).map(|i| job(&format!("m{i}"), "x")).collect()
}

fn ten_thousand() -> Vec<EncodedJob> {
    (0..10_000)
        .map(|i| job(&format!("j{i}"), &format!("data{i}")))
        .collect()
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Every text an error shows: its `Display`, its `Debug`, and those of its sources.
fn error_texts(err: &BackendError) -> Vec<String> {
    let mut texts = vec![err.to_string(), format!("{err:?}")];
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        texts.push(s.to_string());
        texts.push(format!("{s:?}"));
        source = s.source();
    }
    texts
}

// ---- the checks that need no Redis ----------------------------------------------------

/// A wait whose future is dropped mid-block does not delay the next wait (any backend).
pub async fn cancelled_wait_on(backend: &dyn QueueBackend, queue: &QueueName) {
    let mut waiter = backend.waiter(queue).await.unwrap();
    let cancelled = tokio::time::timeout(
        Duration::from_millis(200),
        waiter.wait(Duration::from_secs(10)),
    )
    .await;
    assert!(cancelled.is_err());
    backend.push(queue, &[job("a", "A")]).await.unwrap();
    let started = Instant::now();
    assert!(waiter.wait(Duration::from_secs(10)).await.unwrap());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

/// 10,000 jobs in one push call (any backend): all new, all in the active list in
/// order with their data (read back with a snapshot); pushed again, all duplicates.
pub async fn push_ten_thousand_on(backend: &dyn QueueBackend, queue: &QueueName) {
    let jobs = ten_thousand();
    let new = backend.push(queue, &jobs).await.unwrap();
    assert_eq!(new.len(), 10_000);
    assert!(new.iter().all(|b| *b));
    let snapshot = backend.snapshot(queue).await.unwrap();
    assert_eq!(snapshot.active.len(), 10_000);
    assert!(snapshot
        .active
        .iter()
        .enumerate()
        .all(|(i, id)| *id == format!("j{i}")));
    assert_eq!(snapshot.data.len(), 10_000);
    assert_eq!(snapshot.data["j9999"], b"data9999");
    let again = backend.push(queue, &jobs).await.unwrap();
    assert!(again.iter().all(|b| !*b));
}

// ---- the checks ------------------------------------------------------------------------

/// After `SCRIPT FLUSH`, operations (single and chunked, i.e. pipelined) load the scripts
/// again, and the backend's own script loading fills the cache.
pub async fn reloads_scripts_after_script_flush<B: Backend>(env: Env<B>) {
    let (backend, queue) = (&env.backend, &env.queue);
    backend.push(queue, &[job("a", "A")]).await.unwrap();
    assert_eq!(env.raw(&["SCRIPT", "FLUSH"]), "+OK\r\n");
    assert_eq!(backend.push(queue, &[job("b", "B")]).await.unwrap(), [true]);
    assert_eq!(env.raw(&["SCRIPT", "FLUSH"]), "+OK\r\n");
    let new = backend.push(queue, &many(2500)).await.unwrap();
    assert!(new.len() == 2500 && new.iter().all(|b| *b));
    assert_eq!(env.raw(&["LLEN", &env.keys.active]), ":2502\r\n");
    let active = env.query(&[b"LRANGE", env.keys.active.as_bytes(), b"0", b"-1"]);
    assert_eq!(active.strings().map(|a| a.len()), Some(2502));
    // The SHA1 of the take script, as the server computes it.
    let sha = env
        .query(&[b"SCRIPT", b"LOAD", curlyq_lua::TAKE.as_bytes()])
        .bytes()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .expect("SCRIPT LOAD returns the SHA1");
    assert_eq!(env.raw(&["SCRIPT", "FLUSH"]), "+OK\r\n");
    env.load_scripts().await.unwrap();
    assert_eq!(env.raw(&["SCRIPT", "EXISTS", &sha]), "*1\r\n:1\r\n");
}

/// Every script compiles on the server.
pub async fn every_script_loads<B: Backend>(env: Env<B>) {
    for (name, source) in curlyq_lua::ALL {
        let sha = env
            .query(&[b"SCRIPT", b"LOAD", source.as_bytes()])
            .bytes()
            .unwrap_or_default();
        assert_eq!(sha.len(), 40, "{name}");
    }
}

/// A string in `Q:data` makes push, take and ack (and a chunked push) fail with Rejected,
/// and every key of the queue stays byte-identical.
pub async fn wrongtype_rejects_without_writing<B: Backend>(env: Env<B>) {
    let (backend, queue, keys) = (&env.backend, &env.queue, &env.keys);
    let c = ConsumerId::from_string("c1");
    backend
        .push(queue, &[job("a", "A"), job("b", "B"), job("c", "C")])
        .await
        .unwrap();
    backend
        .register(queue, &c, 1.0, Registration::Join)
        .await
        .unwrap();
    backend.take(queue, &c, 1, 1_700_000_000.0).await.unwrap();
    env.raw(&["ZADD", &keys.dead, "5", "old"]);
    env.raw(&["SET", &keys.data, "not a hash"]);
    let inflight = keys.inflight("c1");
    let names: [&str; 9] = [
        &keys.data,
        &keys.active,
        &keys.scheduled,
        &keys.dead,
        &keys.consumers,
        &keys.signal,
        &keys.reasons,
        &keys.orphaned,
        &inflight,
    ];
    let before = env.dump(&names);

    let rejected = |r: Result<(), BackendError>, op: &str| match r {
        Err(BackendError::Rejected(msg)) => {
            assert!(msg.starts_with("WRONGTYPE"), "{op}: {msg}");
            assert!(msg.contains("{q}:data"), "{op}: {msg}");
        }
        other => panic!("{op}: expected Rejected, got {other:?}"),
    };
    rejected(
        backend.push(queue, &[job("n", "N")]).await.map(drop),
        "push",
    );
    rejected(
        backend.take(queue, &c, 5, 1_700_000_000.0).await.map(drop),
        "take",
    );
    rejected(
        backend.ack(queue, &c, &ids(&["a"]), 0.0).await.map(drop),
        "ack",
    );
    rejected(
        backend.push(queue, &many(2500)).await.map(drop),
        "chunked push",
    );

    assert_eq!(before, env.dump(&names), "every key is byte-identical");
}

/// 10,000 jobs in one push call: all stored, in order (read with raw commands, and on
/// another queue through the trait with [`push_ten_thousand_on`]).
pub async fn push_ten_thousand<B: Backend>(env: Env<B>) {
    let (backend, queue, keys) = (&env.backend, &env.queue, &env.keys);
    let jobs = ten_thousand();
    let new = backend.push(queue, &jobs).await.unwrap();
    assert_eq!(new.len(), 10_000);
    assert!(new.iter().all(|b| *b));
    let active = env
        .query(&[b"LRANGE", keys.active.as_bytes(), b"0", b"-1"])
        .strings()
        .expect("LRANGE returns an array");
    assert_eq!(active.len(), 10_000);
    assert!(active
        .iter()
        .enumerate()
        .all(|(i, id)| *id == format!("j{i}")));
    assert_eq!(env.raw(&["HLEN", &keys.data]), ":10000\r\n");
    assert_eq!(
        env.query(&[b"HGET", keys.data.as_bytes(), b"j9999"])
            .bytes()
            .unwrap(),
        b"data9999"
    );
    // Again: all duplicates.
    let again = backend.push(queue, &jobs).await.unwrap();
    assert!(again.iter().all(|b| !*b));

    let other = QueueName::new("{ten-thousand}").unwrap();
    push_ten_thousand_on(backend, &other).await;
}

/// Connecting where nothing listens fails fast with Unavailable.
pub async fn unreachable_server_is_unavailable<B: Backend>(env: Env<B>) {
    let port = free_port();
    let started = Instant::now();
    let err = env
        .connect(&format!("redis://127.0.0.1:{port}/"))
        .await
        .unwrap_err();
    eprintln!("{err}");
    assert!(matches!(err, BackendError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

/// The password never shows in Debug or Display of the backend or of connect errors (with
/// a wrong password, a closed port, a bad database number, a URL that does not parse); a
/// wrong password is Unavailable (the store cannot be used), not a panic.
pub async fn password_never_shown<B: Backend>(env: Env<B>) {
    let password = "s3cr3t-Pa55word";
    // (RedisServer waits for a PONG at start, which --requirepass would refuse.)
    let set = env.raw(&["CONFIG", "SET", "requirepass", password]);
    assert!(set.starts_with("+OK"), "{set}");
    let port = env.server.port();
    let url = format!("redis://:{password}@127.0.0.1:{port}/0");
    let backend = env.connect(&url).await.unwrap();
    let queue = QueueName::new("pw").unwrap();
    assert_eq!(
        backend.push(&queue, &[job("a", "A")]).await.unwrap(),
        [true]
    );
    for text in [format!("{backend:?}"), format!("{backend}")] {
        eprintln!("{text}");
        assert!(!text.contains(password), "{text}");
        assert!(text.contains("127.0.0.1"), "{text}");
    }

    let wrong = "wr0ng-Pa55word";
    let bad_urls = [
        format!("redis://:{wrong}@127.0.0.1:{port}/0"),
        format!("redis://default:{wrong}@127.0.0.1:{port}/0"),
        format!("redis://:{wrong}@127.0.0.1:1/0"),
        format!("redis://:{wrong}@127.0.0.1:{port}/notanumber"),
        format!("redis://:{wrong}@[bad"),
    ];
    for url in &bad_urls {
        let err = env.connect(url).await.unwrap_err();
        eprintln!("connect error: {err}");
        for text in error_texts(&err) {
            assert!(!text.contains(wrong), "{text}");
        }
    }
    let err = env.connect(&bad_urls[0]).await.unwrap_err();
    assert!(matches!(err, BackendError::Unavailable(_)), "{err:?}");
}

/// A waiter blocks on its own connection: it sees a set signal at once, times out after
/// its timeout, and wakes on a push; meanwhile other operations answer at once; a wait
/// longer than the client's response timeout does not fail client-side; and dropping
/// waiters closes their connections.
pub async fn waiter_blocks_on_its_own_connection<B: Backend>(env: Env<B>) {
    let (backend, queue) = (&env.backend, &env.queue);
    let before = env.connections();
    let mut waiter = backend.waiter(queue).await.unwrap();
    assert_eq!(env.connections(), before + 1, "one connection of its own");

    let started = Instant::now();
    assert!(!waiter.wait(Duration::from_secs(1)).await.unwrap());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert!(
        !waiter.wait(Duration::ZERO).await.unwrap(),
        "zero timeout: LLEN"
    );

    // Block for up to 5 s (beyond the 500 ms default response timeout of redis-rs) while
    // other operations run.
    let task = tokio::spawn(async move {
        let started = Instant::now();
        let seen = waiter.wait(Duration::from_secs(5)).await;
        (seen, started.elapsed(), waiter)
    });
    // Until the server has the waiter's command blocked.
    let deadline = Instant::now() + Duration::from_secs(4);
    while env.blocked_clients() == 0 && Instant::now() < deadline {
        tokio::task::yield_now().await;
    }
    assert_eq!(env.blocked_clients(), 1, "the waiter blocks on the server");
    let c = ConsumerId::from_string("c");
    let mut ops = 0;
    while !task.is_finished() && ops < 20 {
        let op = Instant::now();
        backend
            .register(queue, &c, 1.0, Registration::Join)
            .await
            .unwrap();
        assert!(backend
            .take(queue, &c, 1, 1_700_000_000.0)
            .await
            .unwrap()
            .is_empty());
        assert!(
            op.elapsed() < Duration::from_millis(500),
            "{:?}",
            op.elapsed()
        );
        ops += 1;
    }
    assert_eq!(ops, 20);
    assert!(!task.is_finished(), "the waiter still blocks");
    backend.push(queue, &[job("a", "A")]).await.unwrap();
    let (seen, waited, mut waiter) = task.await.unwrap();
    assert!(seen.unwrap());
    assert!(waited < Duration::from_secs(4), "{waited:?}");
    // The signal is still set (not consumed by the wait): returns at once.
    let started = Instant::now();
    assert!(
        waiter.wait(Duration::from_secs(5)).await.unwrap(),
        "the signal stays set"
    );
    assert!(started.elapsed() < Duration::from_millis(500));
    assert!(waiter.wait(Duration::ZERO).await.unwrap());
    let signal = env.query(&[b"LRANGE", env.keys.signal.as_bytes(), b"0", b"-1"]);
    assert_eq!(signal.strings(), Some(ids(&["1"])));

    // A long wait beyond the client's response timeout does not fail client-side.
    env.raw(&["DEL", &env.keys.signal]);
    let quick = env
        .connect_with_response_timeout(&env.server.url(), Duration::from_millis(200))
        .await
        .unwrap();
    let mut long = quick.waiter(queue).await.unwrap();
    assert!(!long.wait(Duration::from_millis(1500)).await.unwrap());

    drop(waiter);
    drop(long);
    drop(quick);
    for _ in 0..100 {
        if env.connections() == before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        env.connections(),
        before,
        "dropped waiters close their connections"
    );
}

/// A wait whose future is dropped mid-block does not delay the next wait.
pub async fn cancelled_wait_does_not_delay_the_next<B: Backend>(env: Env<B>) {
    cancelled_wait_on(&env.backend, &env.queue).await;
}

/// After a server restart the backend reconnects (and reloads its scripts).
pub async fn recovers_after_a_restart<B: Backend>(mut env: Env<B>) {
    env.backend
        .push(&env.queue, &[job("a", "A")])
        .await
        .unwrap();
    env.server.restart().unwrap();
    let mut last = None;
    for _ in 0..50 {
        match env.backend.push(&env.queue, &[job("b", "B")]).await {
            Ok(new) => {
                last = Some(new);
                break;
            }
            Err(err) => {
                assert!(matches!(err, BackendError::Unavailable(_)), "{err:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert_eq!(last, Some(vec![true]));
}

/// After the server stops, operations fail with Unavailable within the response timeout;
/// after it is back, they work again.
pub async fn stopped_server_is_unavailable_then_recovers<B: Backend>(mut env: Env<B>) {
    let backend = env
        .connect_with_response_timeout(&env.server.url(), Duration::from_millis(500))
        .await
        .unwrap();
    let queue = QueueName::new("r").unwrap();
    backend.push(&queue, &[job("a", "A")]).await.unwrap();
    env.server.stop();
    let started = Instant::now();
    let err = backend.push(&queue, &[job("b", "B")]).await.unwrap_err();
    assert!(matches!(err, BackendError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    env.server.restart().unwrap();
    let mut last = None;
    for _ in 0..100 {
        match backend.push(&queue, &[job("c", "C")]).await {
            Ok(new) => {
                last = Some(new);
                break;
            }
            Err(err) => {
                assert!(matches!(err, BackendError::Unavailable(_)), "{err:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert_eq!(
        last,
        Some(vec![true]),
        "reconnected and reloaded the script"
    );
}

/// An eviction policy other than `noeviction` is reported (consumers log it at start).
pub async fn an_evicting_policy_is_a_settings_warning<B: Backend>(env: Env<B>) {
    env.raw(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    assert_eq!(
        env.backend.settings_warnings().await.unwrap(),
        Vec::<String>::new()
    );
    for policy in ["volatile-lru", "allkeys-lru"] {
        env.raw(&["CONFIG", "SET", "maxmemory-policy", policy]);
        let warnings = env.backend.settings_warnings().await.unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains(policy) && warnings[0].contains("noeviction"));
    }
}

/// A take by a consumer that is not registered is NotRegistered, taking nothing.
pub async fn take_by_an_unknown_consumer_is_not_registered<B: Backend>(env: Env<B>) {
    env.backend
        .push(&env.queue, &[job("a", "A")])
        .await
        .unwrap();
    let err = env
        .backend
        .take(
            &env.queue,
            &ConsumerId::from_string("ghost"),
            1,
            1_700_000_000.0,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::NotRegistered { .. }), "{err:?}");
    assert_eq!(env.raw(&["LLEN", &env.keys.active]), ":1\r\n");
}

/// A taken job whose ID is not UTF-8 is killed by its raw bytes (it could never be acked
/// under a string ID); the other jobs of the batch are taken as usual.
pub async fn a_non_utf8_id_is_killed_when_taken<B: Backend>(env: Env<B>) {
    let (backend, queue, keys) = (&env.backend, &env.queue, &env.keys);
    backend.push(queue, &[job("good", "G")]).await.unwrap();
    env.query(&[b"RPUSH", keys.active.as_bytes(), b"bad\xff"]);
    env.query(&[b"HSET", keys.data.as_bytes(), b"bad\xff", b"raw"]);
    let c = ConsumerId::from_string("c");
    backend
        .register(queue, &c, 1.0, Registration::Join)
        .await
        .unwrap();
    let taken = backend.take(queue, &c, 10, 1_700_000_000.0).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].id, "good");
    assert_eq!(env.raw(&["ZCARD", &keys.dead]), ":1\r\n");
    assert_eq!(env.raw(&["SCARD", &keys.inflight("c")]), ":1\r\n");
    let reason = env
        .query(&[b"HGET", keys.reasons.as_bytes(), b"bad\xff"])
        .bytes()
        .unwrap_or_default();
    assert!(String::from_utf8_lossy(&reason).contains("UTF-8"));
}
