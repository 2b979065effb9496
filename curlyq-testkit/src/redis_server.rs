//! A throwaway `redis-server` on a free loopback port, stopped when dropped.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` process of the test's own, on `127.0.0.1` and a free port, with no
/// persistence and a private working directory. Stopped (SIGKILL) on drop.
///
/// ```no_run
/// let server = curlyq_testkit::RedisServer::start().expect("redis-server is installed");
/// let url = server.url(); // redis://127.0.0.1:<port>/
/// # drop(url);
/// ```
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    extra_args: Vec<String>,
}

impl RedisServer {
    /// Starts a server and waits until it answers `PING` (at most 10 s).
    ///
    /// Fails if `redis-server` is not on the `PATH` (install it with
    /// `apt-get install redis-server`) or does not come up.
    pub fn start() -> io::Result<Self> {
        Self::start_with_args(&[])
    }

    /// Starts a server with extra `redis-server` arguments (such as
    /// `["--maxmemory", "5mb"]`).
    pub fn start_with_args(args: &[&str]) -> io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("curlyq-redis-").tempdir()?;
        let mut server = RedisServer {
            child: None,
            port: 0,
            dir,
            extra_args: args.iter().map(|s| s.to_string()).collect(),
        };
        // Another process may take the free port before redis-server binds it: try a few.
        let mut last = None;
        for _ in 0..5 {
            server.port = free_port()?;
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(e) => {
                    server.stop();
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("redis-server did not start")))
    }

    fn spawn(&mut self) -> io::Result<()> {
        let child = Command::new(redis_server_path())
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("could not run redis-server (is it installed and on PATH?): {e}"),
                )
            })?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(10))
    }

    fn wait_ready(&mut self, limit: Duration) -> io::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(reply) = self.command(&["PING"]) {
                // A server with a password answers NOAUTH: it is up all the same.
                if reply.starts_with("+PONG") || reply.starts_with("-NOAUTH") {
                    return Ok(());
                }
            }
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    return Err(io::Error::other(format!(
                        "redis-server exited at start ({status}); port {} may be taken",
                        self.port
                    )));
                }
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "redis-server did not answer PING within 10 s",
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The server's working directory (removed on drop).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Stops the server at once (SIGKILL), as a crash would. Restart it with
    /// [`restart`](Self::restart) on the same port.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (after [`stop`](Self::stop)).
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        self.spawn()
    }

    /// Sends one command over a plain RESP connection and returns the raw reply (for
    /// test setup and inspection without a client library: `+OK\r\n`, `:1\r\n`, ...).
    pub fn command(&self, args: &[&str]) -> io::Result<String> {
        let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.command_bytes(&bytes)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// Sends one command (binary arguments) and parses the reply.
    ///
    /// ```no_run
    /// use curlyq_testkit::{RedisServer, Resp};
    /// let server = RedisServer::start().unwrap();
    /// server.query(&[b"RPUSH", b"list", b"a", b"b"]).unwrap();
    /// let reply = server.query(&[b"LRANGE", b"list", b"0", b"-1"]).unwrap();
    /// assert_eq!(reply.strings(), Some(vec!["a".to_owned(), "b".to_owned()]));
    /// ```
    pub fn query(&self, args: &[&[u8]]) -> io::Result<Resp> {
        let bytes = self.command_bytes(args)?;
        let mut rest = &bytes[..];
        parse_reply(&mut rest)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a reply that is not RESP2"))
    }

    /// Writes a dump of keys into the server: the format of `curlyq/tests/go-queue-fixture.json`
    /// (the queue Go CurlyQ left, described in `spec/wire.md`): a JSON object whose
    /// `keys` map each key to `{"type": "list", "items": [...]}`, `{"type": "set",
    /// "members": [...]}`, `{"type": "zset", "members": [{"member", "score"}]}` or
    /// `{"type": "hash", "fields_hex": {field: hex bytes}}`. Fails, saying which key, on
    /// anything else.
    pub fn load_dump(&self, json: &str) -> Result<(), String> {
        let doc: serde_json::Value =
            serde_json::from_str(json).map_err(|e| format!("the dump is not JSON: {e}"))?;
        let keys = doc["keys"]
            .as_object()
            .ok_or("the dump has no \"keys\" object")?;
        for (key, v) in keys {
            let bad = || format!("key {key:?}: unexpected entry {v}");
            let strings = |field: &str| -> Result<Vec<&str>, String> {
                v[field]
                    .as_array()
                    .ok_or_else(bad)?
                    .iter()
                    .map(|item| item.as_str().ok_or_else(bad))
                    .collect()
            };
            let mut commands: Vec<Vec<Vec<u8>>> = Vec::new();
            let k = key.as_bytes().to_vec();
            match v["type"].as_str().ok_or_else(bad)? {
                "list" => {
                    for item in strings("items")? {
                        commands.push(vec![b"RPUSH".to_vec(), k.clone(), item.into()]);
                    }
                }
                "set" => {
                    for member in strings("members")? {
                        commands.push(vec![b"SADD".to_vec(), k.clone(), member.into()]);
                    }
                }
                "zset" => {
                    for m in v["members"].as_array().ok_or_else(bad)? {
                        let score = m["score"].as_f64().ok_or_else(bad)?.to_string();
                        let member = m["member"].as_str().ok_or_else(bad)?;
                        commands.push(vec![
                            b"ZADD".to_vec(),
                            k.clone(),
                            score.into(),
                            member.into(),
                        ]);
                    }
                }
                "hash" => {
                    for (field, value) in v["fields_hex"].as_object().ok_or_else(bad)? {
                        let bytes = hex::decode(value.as_str().ok_or_else(bad)?)
                            .map_err(|e| format!("key {key:?}, field {field:?}: {e}"))?;
                        commands.push(vec![
                            b"HSET".to_vec(),
                            k.clone(),
                            field.clone().into(),
                            bytes,
                        ]);
                    }
                }
                other => return Err(format!("key {key:?}: unknown type {other:?}")),
            }
            for command in commands {
                let args: Vec<&[u8]> = command.iter().map(Vec::as_slice).collect();
                match self.query(&args) {
                    Ok(Resp::Error(e)) => return Err(format!("key {key:?}: {e}")),
                    Ok(_) => {}
                    Err(e) => return Err(format!("key {key:?}: {e}")),
                }
            }
        }
        Ok(())
    }

    /// Like [`command`](Self::command), with binary arguments and reply.
    pub fn command_bytes(&self, args: &[&[u8]]) -> io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect_timeout(&self.addr(), Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a);
            req.extend_from_slice(b"\r\n");
        }
        stream.write_all(&req)?;
        let mut reader = BufReader::new(stream);
        let mut out = Vec::new();
        read_reply(&mut reader, &mut out)?;
        Ok(out)
    }
}

/// A parsed RESP2 reply (of [`RedisServer::query`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    /// `+OK`.
    Simple(String),
    /// `-ERR ...` (the text after the `-`).
    Error(String),
    /// `:1`.
    Integer(i64),
    /// A bulk string; `None` is the nil reply.
    Bulk(Option<Vec<u8>>),
    /// An array; `None` is the nil array.
    Array(Option<Vec<Resp>>),
}

impl Resp {
    /// The integer, if this is one.
    pub fn integer(&self) -> Option<i64> {
        match self {
            Resp::Integer(n) => Some(*n),
            _ => None,
        }
    }

    /// The bytes of a (non-nil) bulk or simple string.
    pub fn bytes(&self) -> Option<Vec<u8>> {
        match self {
            Resp::Bulk(Some(bytes)) => Some(bytes.clone()),
            Resp::Simple(text) => Some(text.clone().into_bytes()),
            _ => None,
        }
    }

    /// The items of an array of strings, as (lossy) UTF-8.
    pub fn strings(&self) -> Option<Vec<String>> {
        match self {
            Resp::Array(Some(items)) => items
                .iter()
                .map(|item| {
                    item.bytes()
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                })
                .collect(),
            _ => None,
        }
    }
}

fn parse_line<'a>(input: &mut &'a [u8]) -> Option<&'a [u8]> {
    let end = input.windows(2).position(|w| w == b"\r\n")?;
    let line = &input[..end];
    *input = &input[end + 2..];
    Some(line)
}

fn parse_reply(input: &mut &[u8]) -> Option<Resp> {
    let line = parse_line(input)?;
    let (&head, body) = line.split_first()?;
    let text = String::from_utf8_lossy(body).into_owned();
    Some(match head {
        b'+' => Resp::Simple(text),
        b'-' => Resp::Error(text),
        b':' => Resp::Integer(text.parse().ok()?),
        b'$' => {
            let len: i64 = text.parse().ok()?;
            if len < 0 {
                Resp::Bulk(None)
            } else {
                let len = usize::try_from(len).ok()?;
                if input.len() < len + 2 {
                    return None;
                }
                let bytes = input[..len].to_vec();
                *input = &input[len + 2..];
                Resp::Bulk(Some(bytes))
            }
        }
        b'*' => {
            let len: i64 = text.parse().ok()?;
            if len < 0 {
                Resp::Array(None)
            } else {
                let mut items = Vec::new();
                for _ in 0..len {
                    items.push(parse_reply(input)?);
                }
                Resp::Array(Some(items))
            }
        }
        _ => return None,
    })
}

fn read_reply(reader: &mut impl BufRead, out: &mut Vec<u8>) -> io::Result<()> {
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    out.extend_from_slice(&line);
    let head = line.first().copied().unwrap_or(b'-');
    let num: i64 = String::from_utf8_lossy(&line[1..])
        .trim()
        .parse()
        .unwrap_or(-1);
    match head {
        b'$' if num >= 0 => {
            let mut buf = vec![0u8; num as usize + 2];
            reader.read_exact(&mut buf)?;
            out.extend_from_slice(&buf);
        }
        b'*' if num > 0 => {
            for _ in 0..num {
                read_reply(reader, out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// `redis-server` by its absolute path when it is on the `PATH` (so that `DEBUG RESTART`,
/// which re-executes the server by the path it was started with, works whatever the
/// working directory), else the bare name.
fn redis_server_path() -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| "redis-server".into())
}
