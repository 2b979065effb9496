//! The ledger: what producers and handlers did, kept outside Redis in append-only files
//! (one per process), each record synced to disk before the action it records is
//! reported as done.
//!
//! One record per line: `<kind> <hex job ID> <pid> <start µs> <end µs>`. Job IDs are
//! hex-encoded so that any byte string fits on one line.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// What a ledger line records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A producer is about to push the job.
    Attempt,
    /// The push returned: the job is in Redis.
    Ok,
    /// The push failed in a way that leaves it unknown whether the job is in Redis.
    Doubt,
    /// The push reported the ID already existed.
    Exists,
    /// A handler ran the job to success (written before the handler returns).
    Exec,
    /// A long handler started (written for `sleep:` jobs only).
    Start,
}

impl Kind {
    fn tag(self) -> &'static str {
        match self {
            Kind::Attempt => "attempt",
            Kind::Ok => "ok",
            Kind::Doubt => "doubt",
            Kind::Exists => "exists",
            Kind::Exec => "exec",
            Kind::Start => "start",
        }
    }

    fn parse(tag: &str) -> Option<Self> {
        Some(match tag {
            "attempt" => Kind::Attempt,
            "ok" => Kind::Ok,
            "doubt" => Kind::Doubt,
            "exists" => Kind::Exists,
            "exec" => Kind::Exec,
            "start" => Kind::Start,
            _ => return None,
        })
    }
}

/// Microseconds since the Unix epoch.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// An append-only ledger file of one process.
#[derive(Debug)]
pub struct LedgerWriter {
    file: Mutex<File>,
    path: PathBuf,
}

impl LedgerWriter {
    /// Creates `<dir>/<role>-<pid>-<nanos>.ledger` (a new file: each process writes its
    /// own).
    pub fn create(dir: &Path, role: &str) -> io::Result<Self> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = dir.join(format!("{role}-{}-{nanos}.ledger", std::process::id()));
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        Ok(LedgerWriter {
            file: Mutex::new(file),
            path,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record per ID (all of one kind) and syncs the file.
    pub fn record<I: AsRef<[u8]>>(
        &self,
        kind: Kind,
        ids: &[I],
        start: u64,
        end: u64,
    ) -> io::Result<()> {
        let pid = std::process::id();
        let mut text = String::new();
        for id in ids {
            text.push_str(kind.tag());
            text.push(' ');
            // An empty ID is written as "-" so that every line has five fields.
            if id.as_ref().is_empty() {
                text.push('-');
            } else {
                text.push_str(&hex::encode(id.as_ref()));
            }
            text.push_str(&format!(" {pid} {start} {end}\n"));
        }
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.write_all(text.as_bytes())?;
        file.sync_data()
    }
}

/// One successful run of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exec {
    /// The worker process.
    pub pid: u32,
    /// When the handler started (µs since the epoch).
    pub start: u64,
    /// When it ended.
    pub end: u64,
}

/// Everything the ledger files of a directory say.
#[derive(Debug, Default, Clone)]
pub struct LedgerSummary {
    /// IDs whose push was attempted.
    pub attempted: BTreeSet<Vec<u8>>,
    /// IDs whose push was confirmed.
    pub ok: BTreeSet<Vec<u8>>,
    /// IDs whose push outcome is unknown (and never resolved later: a later push of the
    /// same ID that returned ok or "already exists" settles it).
    pub doubt: BTreeSet<Vec<u8>>,
    /// IDs reported as already existing.
    pub exists: BTreeSet<Vec<u8>>,
    /// The successful runs of each job.
    pub execs: BTreeMap<Vec<u8>, Vec<Exec>>,
    /// Starts of long handlers.
    pub starts: BTreeMap<Vec<u8>, Vec<Exec>>,
    /// Lines that could not be read (a torn last line of a killed process).
    pub torn_lines: usize,
}

impl LedgerSummary {
    /// Reads every `*.ledger` file of `dir`.
    pub fn read_dir(dir: &Path) -> io::Result<Self> {
        let mut out = LedgerSummary::default();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "ledger") {
                out.read_file(&path)?;
            }
        }
        out.doubt
            .retain(|id| !out.ok.contains(id) && !out.exists.contains(id));
        Ok(out)
    }

    fn read_file(&mut self, path: &Path) -> io::Result<()> {
        for line in BufReader::new(File::open(path)?).lines() {
            let line = line?;
            if self.read_line(&line).is_none() {
                self.torn_lines += 1;
            }
        }
        Ok(())
    }

    fn read_line(&mut self, line: &str) -> Option<()> {
        let mut parts = line.split(' ');
        let kind = Kind::parse(parts.next()?)?;
        let id = match parts.next()? {
            "-" => Vec::new(),
            hex_id => hex::decode(hex_id).ok()?,
        };
        let pid = parts.next()?.parse().ok()?;
        let start = parts.next()?.parse().ok()?;
        let end = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        match kind {
            Kind::Attempt => self.attempted.insert(id),
            Kind::Ok => self.ok.insert(id),
            Kind::Doubt => self.doubt.insert(id),
            Kind::Exists => self.exists.insert(id),
            Kind::Start => {
                self.starts
                    .entry(id)
                    .or_default()
                    .push(Exec { pid, start, end });
                true
            }
            Kind::Exec => {
                self.execs
                    .entry(id)
                    .or_default()
                    .push(Exec { pid, start, end });
                true
            }
        };
        Some(())
    }
}
