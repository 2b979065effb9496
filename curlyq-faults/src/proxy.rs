//! A TCP proxy of the suite's own, put between workers and Redis to inject network
//! faults on command: abrupt resets, a black hole, latency, and a pause of one direction.
//!
//! Each accepted connection is forwarded to the upstream address over a connection of its
//! own. A fault applies to every connection, open or opened while it is set. Held bytes
//! are never dropped: a black hole or a pause keeps them (in the proxy, then in the
//! kernel's socket buffers once the proxy stops reading) and delivers them in order when it
//! ends, as TCP's retransmissions do after a real outage. So a request that a client timed
//! out on and gave up may still reach the server later, which is the point: the library
//! must cope with late requests.
//!
//! ```no_run
//! # async fn demo(redis: std::net::SocketAddr) -> std::io::Result<()> {
//! use std::time::Duration;
//! use curlyq_faults::proxy::{Direction, Proxy};
//!
//! let proxy = Proxy::start(redis).await?;
//! let url = proxy.redis_url(); // give this to the workers
//! proxy.set_latency(Duration::from_millis(200));
//! proxy.pause(Direction::ClientToServer, true);
//! proxy.pause(Direction::ClientToServer, false);
//! proxy.reset_all();
//! # let _ = url;
//! # Ok(())
//! # }
//! ```

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Bytes read at most at once; each read is forwarded as one chunk.
const CHUNK: usize = 16 * 1024;
/// Chunks a direction holds (during a pause, a black hole or latency) before it stops
/// reading and lets the kernel's buffers fill up.
const HELD_CHUNKS: usize = 256;

/// One direction of a proxied connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the client (a worker) to the server (Redis): the requests.
    ClientToServer,
    /// From the server to the client: the replies.
    ServerToClient,
}

/// The faults in force, shared with every task of the proxy.
#[derive(Debug, Clone, Copy, Default)]
struct Faults {
    blackhole: bool,
    paused_up: bool,
    paused_down: bool,
    latency: Duration,
    /// Raised by each [`Proxy::reset_all`]: connections accepted under an older
    /// generation close.
    generation: u64,
}

impl Faults {
    fn open(&self, direction: Direction) -> bool {
        let paused = match direction {
            Direction::ClientToServer => self.paused_up,
            Direction::ServerToClient => self.paused_down,
        };
        !self.blackhole && !paused
    }
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    live: AtomicUsize,
    reset: AtomicU64,
    upstream_failed: AtomicU64,
    forwarded_up: AtomicU64,
    forwarded_down: AtomicU64,
}

/// What a proxy did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections open now.
    pub live: usize,
    /// Connections closed by [`Proxy::reset_all`].
    pub reset: u64,
    /// Accepted connections closed at once because the upstream refused them.
    pub upstream_failed: u64,
    /// Bytes delivered to the server.
    pub forwarded_up: u64,
    /// Bytes delivered to the clients.
    pub forwarded_down: u64,
}

/// A running proxy on a free loopback port. Cheap to clone: every clone controls the same
/// proxy. When the last clone is dropped the proxy stops listening and closes every
/// connection abruptly.
#[derive(Debug, Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    addr: SocketAddr,
    upstream: SocketAddr,
    faults: watch::Sender<Faults>,
    counters: Arc<Counters>,
}

impl Proxy {
    /// Listens on `127.0.0.1:0` and forwards each connection to `upstream`. Must be called
    /// inside a tokio runtime (the proxy's tasks run there).
    pub async fn start(upstream: SocketAddr) -> io::Result<Proxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (faults, watcher) = watch::channel(Faults::default());
        let counters = Arc::new(Counters::default());
        tokio::spawn(accept_loop(listener, upstream, watcher, counters.clone()));
        Ok(Proxy {
            inner: Arc::new(Inner {
                addr,
                upstream,
                faults,
                counters,
            }),
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The address connections are forwarded to.
    pub fn upstream(&self) -> SocketAddr {
        self.inner.upstream
    }

    /// `redis://<addr>`: the URL to give clients.
    pub fn redis_url(&self) -> String {
        format!("redis://{}", self.inner.addr)
    }

    /// Closes every open connection abruptly, on both sides (a TCP reset; bytes held for
    /// them are dropped). Connections accepted afterwards work. Returns how many
    /// connections were open.
    pub fn reset_all(&self) -> usize {
        let live = self.inner.counters.live.load(Ordering::Relaxed);
        self.inner.faults.send_modify(|f| f.generation += 1);
        live
    }

    /// Starts (`true`) or ends a black hole: connections are accepted and kept, nothing is
    /// forwarded in either direction and nothing is closed; both sides see silence. The
    /// held bytes are delivered when it ends.
    pub fn set_blackhole(&self, on: bool) {
        self.inner.faults.send_modify(|f| f.blackhole = on);
    }

    /// Delays every chunk read from now on by `latency` before it is forwarded, in each
    /// direction (so a round trip takes twice as long more), keeping the order.
    pub fn set_latency(&self, latency: Duration) {
        self.inner.faults.send_modify(|f| f.latency = latency);
    }

    /// Stops (`true`) or resumes forwarding in one `direction`. Bytes are held while it is
    /// paused and delivered in order when it resumes; the other direction keeps flowing.
    pub fn pause(&self, direction: Direction, paused: bool) {
        self.inner.faults.send_modify(|f| match direction {
            Direction::ClientToServer => f.paused_up = paused,
            Direction::ServerToClient => f.paused_down = paused,
        });
    }

    /// Clears every fault (latency 0, no black hole, nothing paused).
    pub fn heal(&self) {
        self.inner.faults.send_modify(|f| {
            *f = Faults {
                generation: f.generation,
                ..Faults::default()
            }
        });
    }

    /// What the proxy did so far.
    pub fn stats(&self) -> ProxyStats {
        let c = &self.inner.counters;
        ProxyStats {
            accepted: c.accepted.load(Ordering::Relaxed),
            live: c.live.load(Ordering::Relaxed),
            reset: c.reset.load(Ordering::Relaxed),
            upstream_failed: c.upstream_failed.load(Ordering::Relaxed),
            forwarded_up: c.forwarded_up.load(Ordering::Relaxed),
            forwarded_down: c.forwarded_down.load(Ordering::Relaxed),
        }
    }
}

/// Resolves when the proxy's control handle is gone.
async fn dropped(faults: &mut watch::Receiver<Faults>) {
    while faults.changed().await.is_ok() {}
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    mut faults: watch::Receiver<Faults>,
    counters: Arc<Counters>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = dropped(&mut faults) => return,
        };
        match accepted {
            Ok((client, _)) => {
                counters.accepted.fetch_add(1, Ordering::Relaxed);
                let generation = faults.borrow().generation;
                tokio::spawn(serve(
                    client,
                    upstream,
                    generation,
                    faults.clone(),
                    counters.clone(),
                ));
            }
            // Out of file descriptors and the like: let it pass rather than spin.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Counts a connection as live while it exists.
struct LiveGuard(Arc<Counters>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Forwards one connection until both directions ended, either side failed, or a reset.
async fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    generation: u64,
    mut faults: watch::Receiver<Faults>,
    counters: Arc<Counters>,
) {
    counters.live.fetch_add(1, Ordering::Relaxed);
    let _live = LiveGuard(counters.clone());
    let mut server = match TcpStream::connect(upstream).await {
        Ok(server) => server,
        Err(_) => {
            counters.upstream_failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let abort = {
        let (client_rd, client_wr) = client.split();
        let (server_rd, server_wr) = server.split();
        let up = pump(
            client_rd,
            server_wr,
            Direction::ClientToServer,
            faults.clone(),
            &counters.forwarded_up,
        );
        let down = pump(
            server_rd,
            client_wr,
            Direction::ServerToClient,
            faults.clone(),
            &counters.forwarded_down,
        );
        let reset = async {
            loop {
                if faults.borrow_and_update().generation != generation {
                    return true;
                }
                if faults.changed().await.is_err() {
                    // The proxy was dropped.
                    return false;
                }
            }
        };
        tokio::select! {
            _ = async { tokio::try_join!(up, down) } => None,
            by_reset = reset => Some(by_reset),
        }
    };
    if let Some(by_reset) = abort {
        // An abortive close: the peers get a reset, not an end of stream.
        let _ = client.set_zero_linger();
        let _ = server.set_zero_linger();
        if by_reset {
            counters.reset.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Forwards one direction: a reader that stamps each chunk with its due time, and a
/// writer that waits for that time and for the direction to be open. An end of stream is
/// passed on (after the held bytes) as a write shutdown.
async fn pump(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    direction: Direction,
    faults: watch::Receiver<Faults>,
    forwarded: &AtomicU64,
) -> io::Result<()> {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(HELD_CHUNKS);
    let clock = faults.clone();
    let read = async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = from.read(&mut buf).await?;
            if n == 0 {
                // Dropping `tx` (with this future) ends the writer after the held chunks.
                return Ok::<(), io::Error>(());
            }
            let due = Instant::now() + clock.borrow().latency;
            if tx.send((due, buf[..n].to_vec())).await.is_err() {
                return Ok(());
            }
        }
    };
    let mut gate = faults;
    let write = async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if gate.wait_for(|f| f.open(direction)).await.is_err() {
                return Ok(());
            }
            to.write_all(&bytes).await?;
            forwarded.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        to.shutdown().await
    };
    tokio::try_join!(read, write).map(|_| ())
}
