//! What the two scale tools (`curlyq-admin-scale`, `curlyq-web-scale`) share: filling a
//! queue, the clock, and the p50 / p99 / max summary. Included by each with `#[path]`.

use std::time::{Duration, SystemTime};

use curlyq::backend::{
    ConsumerId, EncodedJob, KillJob, QueueBackend, QueueName, Registration, ScheduledJob,
};
use curlyq::Job;

pub(crate) type Error = Box<dyn std::error::Error>;

/// The options both tools take: `--jobs N` (active jobs, default 1,000,000), `--dead N`
/// (default 100,000) and `--calls N` (requests per measurement).
pub(crate) struct Options {
    pub(crate) jobs: usize,
    pub(crate) dead: usize,
    pub(crate) calls: usize,
}

impl Options {
    /// The options of this process's command line for the tool `name`.
    pub(crate) fn parse(name: &str, calls: usize) -> Result<Options, Error> {
        let mut o = Options {
            jobs: 1_000_000,
            dead: 100_000,
            calls,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || -> Result<usize, Error> {
                let v = args.next().ok_or(format!("{arg} needs a value"))?;
                Ok(v.parse()
                    .map_err(|_| format!("{arg}: {v:?} is not a count"))?)
            };
            match arg.as_str() {
                "--jobs" => o.jobs = value()?,
                "--dead" => o.dead = value()?,
                "--calls" => o.calls = value()?.max(1),
                "-h" | "--help" => {
                    println!("usage: {name} [--jobs N] [--dead N] [--calls N]");
                    std::process::exit(0);
                }
                other => return Err(format!("unknown option {other:?} (see --help)").into()),
            }
        }
        Ok(o)
    }
}

pub(crate) fn now() -> f64 {
    curlyq::runtime::unix_seconds(SystemTime::now())
}

/// A job of 100 payload bytes that became ready at `ready`.
pub(crate) fn encoded(id: String, ready: f64) -> EncodedJob {
    let data = Job::new(vec![b'p'; 100])
        .with_id(id.clone())
        .with_ready_at(ready)
        .encode();
    EncodedJob { id, data }
}

/// Pushes `ids` in calls of 1,000, eight calls in flight.
pub(crate) async fn push_all(
    b: &dyn QueueBackend,
    q: &QueueName,
    ids: Vec<String>,
) -> Result<(), Error> {
    let ready = now();
    let chunks: Vec<Vec<EncodedJob>> = ids
        .chunks(1000)
        .map(|c| c.iter().map(|id| encoded(id.clone(), ready)).collect())
        .collect();
    for group in chunks.chunks(8) {
        let pushes = group.iter().map(|jobs| b.push(q, jobs));
        for result in futures::future::join_all(pushes).await {
            result?;
        }
    }
    Ok(())
}

/// The ID of the `i`-th job of a kind (`job`, `dead`, `later`).
pub(crate) fn id(prefix: &str, i: usize) -> String {
    format!("{prefix}-{i:07}")
}

/// Fills `q` with `dead` dead jobs (pushed, taken and killed, 1,000 at a time), then `jobs`
/// active ones, 10,000 scheduled far in the future and 100 held by a registered consumer;
/// returns the IDs of the held ones.
pub(crate) async fn fill(
    b: &dyn QueueBackend,
    q: &QueueName,
    jobs: usize,
    dead: usize,
) -> Result<Vec<String>, Error> {
    let filler = ConsumerId::from_string("filler");
    b.register(q, &filler, now(), Registration::Join).await?;
    push_all(b, q, (0..dead).map(|i| id("dead", i)).collect()).await?;
    let mut killed = 0;
    while killed < dead {
        let taken = b.take(q, &filler, 1000, now()).await?;
        if taken.is_empty() {
            break;
        }
        let kills: Vec<KillJob> = taken
            .iter()
            .map(|t| KillJob {
                id: t.id.clone(),
                data: None,
                reason: "failed for the benchmark".into(),
            })
            .collect();
        killed += kills.len();
        b.kill(q, &filler, &kills, now()).await?;
    }
    push_all(b, q, (0..jobs).map(|i| id("job", i)).collect()).await?;
    let later: Vec<_> = (0..10_000)
        .map(|i| ScheduledJob {
            job: encoded(id("later", i), 0.0),
            at: 4e9 + i as f64,
        })
        .collect();
    for chunk in later.chunks(1000) {
        b.schedule(q, chunk).await?;
    }
    let holder = ConsumerId::from_string("holder");
    b.register(q, &holder, now(), Registration::Join).await?;
    let held = b.take(q, &holder, 100, now()).await?;
    Ok(held.into_iter().map(|t| t.id).collect())
}

/// p50, p99 and max of `samples` in milliseconds, as three Markdown cells.
pub(crate) fn summary(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let at = |p: f64| {
        let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
        samples.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    format!("{:.2} | {:.2} | {:.2}", at(0.5), at(0.99), at(1.0))
}

/// A small deterministic generator (xorshift) for the IDs looked up.
pub(crate) struct Picks(u64);

impl Picks {
    pub(crate) fn new() -> Self {
        Picks(0x9e37_79b9_7f4a_7c15)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}
