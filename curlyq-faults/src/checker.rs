//! The checker: lost, unexpected and duplicated jobs from the ledger (Jepsen-style), and
//! an audit of the queue's keys in Redis after the drain.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use redis::aio::MultiplexedConnection;

use crate::ledger::{Exec, LedgerSummary};

/// What the ledger says about delivery.
#[derive(Debug, Default, Clone)]
pub struct Verdict {
    /// Confirmed pushes (ok, or reported as already existing: either way the job was in
    /// Redis), not planned to die, that never ran to success.
    pub lost: Vec<Vec<u8>>,
    /// Jobs that ran but whose push was never attempted.
    pub unexpected: Vec<Vec<u8>>,
    /// Jobs that ran to success more than once, with their runs.
    pub duplicated: BTreeMap<Vec<u8>, Vec<Exec>>,
    /// Pushes in doubt that ran (they were in Redis after all).
    pub doubt_present: usize,
    /// Pushes in doubt that never ran (absent).
    pub doubt_absent: usize,
    /// Jobs that ran to success.
    pub executed: usize,
}

impl Verdict {
    /// Computes the verdict; `planned_dead` are jobs expected never to succeed.
    pub fn of(ledger: &LedgerSummary, planned_dead: &BTreeSet<Vec<u8>>) -> Self {
        let mut v = Verdict {
            executed: ledger.execs.len(),
            ..Verdict::default()
        };
        for id in ledger.ok.union(&ledger.exists) {
            if !planned_dead.contains(id) && !ledger.execs.contains_key(id) {
                v.lost.push(id.clone());
            }
        }
        for (id, runs) in &ledger.execs {
            if !ledger.attempted.contains(id) {
                v.unexpected.push(id.clone());
            }
            if runs.len() > 1 {
                v.duplicated.insert(id.clone(), runs.clone());
            }
        }
        for id in &ledger.doubt {
            if ledger.execs.contains_key(id) {
                v.doubt_present += 1;
            } else {
                v.doubt_absent += 1;
            }
        }
        v
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "executed {}, lost {}, unexpected {}, duplicated {}, in doubt present {} / absent {}",
            self.executed,
            self.lost.len(),
            self.unexpected.len(),
            self.duplicated.len(),
            self.doubt_present,
            self.doubt_absent
        )?;
        for id in self.lost.iter().take(5) {
            write!(f, "\n  lost {}", show(id))?;
        }
        for (id, runs) in self.duplicated.iter().take(5) {
            write!(f, "\n  duplicated {} {:?}", show(id), runs)?;
        }
        Ok(())
    }
}

/// A job ID for messages: as text when printable UTF-8, else hex.
pub fn show(id: &[u8]) -> String {
    match std::str::from_utf8(id) {
        Ok(s) if s.len() <= 80 && !s.chars().any(char::is_control) => s.to_owned(),
        _ if id.len() > 80 => format!("<{} bytes>", id.len()),
        _ => format!("0x{}", hex::encode(id)),
    }
}

/// The state of a queue's keys after the drain.
#[derive(Debug, Default, Clone)]
pub struct Audit {
    /// IDs still in the active list.
    pub active: Vec<Vec<u8>>,
    /// IDs still scheduled.
    pub scheduled: Vec<Vec<u8>>,
    /// IDs in the dead set.
    pub dead: BTreeSet<Vec<u8>>,
    /// Reasons of dead jobs.
    pub reasons: BTreeMap<Vec<u8>, String>,
    /// Non-empty in-flight sets, by key.
    pub inflight: BTreeMap<String, Vec<Vec<u8>>>,
    /// Members of the consumers set.
    pub consumers: Vec<String>,
    /// Data fields referenced by no structure, or by more than one (field, references).
    pub bad_references: Vec<(Vec<u8>, usize)>,
    /// IDs referenced by a structure but without data.
    pub without_data: Vec<Vec<u8>>,
    /// Orphan counts left for jobs that no longer exist.
    pub stray_orphan_counts: usize,
    /// Reasons left for jobs not in the dead set.
    pub stray_reasons: usize,
}

async fn bytes_list(
    conn: &mut MultiplexedConnection,
    cmd: &mut redis::Cmd,
) -> redis::RedisResult<Vec<Vec<u8>>> {
    cmd.query_async(conn).await
}

impl Audit {
    /// Reads every key of `queue` on `conn` (the server must be idle: no worker runs).
    pub async fn read(conn: &mut MultiplexedConnection, queue: &str) -> redis::RedisResult<Self> {
        let k = |suffix: &str| format!("{queue}:{suffix}");
        let mut a = Audit {
            active: bytes_list(conn, redis::cmd("LRANGE").arg(k("active")).arg(0).arg(-1)).await?,
            scheduled: bytes_list(
                conn,
                redis::cmd("ZRANGE").arg(k("scheduled")).arg(0).arg(-1),
            )
            .await?,
            dead: bytes_list(conn, redis::cmd("ZRANGE").arg(k("dead")).arg(0).arg(-1))
                .await?
                .into_iter()
                .collect(),
            ..Audit::default()
        };
        let reasons: Vec<Vec<u8>> =
            bytes_list(conn, redis::cmd("HGETALL").arg(k("dead:reasons"))).await?;
        for pair in reasons.chunks(2) {
            if let [id, why] = pair {
                a.reasons
                    .insert(id.clone(), String::from_utf8_lossy(why).into_owned());
            }
        }
        a.consumers = redis::cmd("ZRANGE")
            .arg(k("consumers"))
            .arg(0)
            .arg(-1)
            .query_async(conn)
            .await?;
        let inflight_keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:inflight:*", glob_escape(queue)))
            .query_async(conn)
            .await?;
        for key in inflight_keys {
            let ids = bytes_list(conn, redis::cmd("SMEMBERS").arg(&key)).await?;
            if !ids.is_empty() {
                a.inflight.insert(key, ids);
            }
        }
        let fields: Vec<Vec<u8>> = bytes_list(conn, redis::cmd("HKEYS").arg(k("data"))).await?;
        let mut refs: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
        let all = a
            .active
            .iter()
            .chain(&a.scheduled)
            .chain(&a.dead)
            .chain(a.inflight.values().flatten());
        for id in all {
            *refs.entry(id.clone()).or_default() += 1;
        }
        let fields: BTreeSet<Vec<u8>> = fields.into_iter().collect();
        for field in &fields {
            let n = refs.get(field).copied().unwrap_or(0);
            if n != 1 {
                a.bad_references.push((field.clone(), n));
            }
        }
        a.without_data = refs
            .keys()
            .filter(|id| !fields.contains(*id))
            .cloned()
            .collect();
        let orphaned: Vec<Vec<u8>> =
            bytes_list(conn, redis::cmd("HKEYS").arg(k("orphaned"))).await?;
        a.stray_orphan_counts = orphaned.iter().filter(|id| !fields.contains(*id)).count();
        a.stray_reasons = a.reasons.keys().filter(|id| !a.dead.contains(*id)).count();
        Ok(a)
    }

    /// The problems found, given the IDs planned to end in the dead set (each with a
    /// reason containing one of `reason_words`, when given). Empty when the audit is
    /// clean.
    pub fn problems(
        &self,
        planned_dead: &BTreeSet<Vec<u8>>,
        reason_check: impl Fn(&[u8], &str) -> bool,
    ) -> Vec<String> {
        let mut out = Vec::new();
        if !self.active.is_empty() {
            out.push(format!("{} jobs still active", self.active.len()));
        }
        if !self.scheduled.is_empty() {
            out.push(format!("{} jobs still scheduled", self.scheduled.len()));
        }
        for (key, ids) in &self.inflight {
            out.push(format!("{key} still holds {} jobs", ids.len()));
        }
        for (id, n) in self.bad_references.iter().take(10) {
            out.push(format!("data field {} referenced {n} times", show(id)));
        }
        if self.bad_references.len() > 10 {
            out.push(format!("... {} bad references", self.bad_references.len()));
        }
        for id in self.without_data.iter().take(10) {
            out.push(format!("{} referenced without data", show(id)));
        }
        let unplanned: Vec<_> = self.dead.difference(planned_dead).collect();
        let missing: Vec<_> = planned_dead.difference(&self.dead).collect();
        if !unplanned.is_empty() {
            out.push(format!(
                "{} unplanned dead jobs, e.g. {} ({:?})",
                unplanned.len(),
                show(unplanned[0]),
                self.reasons.get(unplanned[0])
            ));
        }
        if !missing.is_empty() {
            out.push(format!(
                "{} planned failures not dead, e.g. {}",
                missing.len(),
                show(missing[0])
            ));
        }
        for id in &self.dead {
            match self.reasons.get(id) {
                None => out.push(format!("dead job {} has no reason", show(id))),
                Some(why) if !reason_check(id, why) => {
                    out.push(format!("dead job {} has reason {why:?}", show(id)))
                }
                Some(_) => {}
            }
        }
        if self.stray_orphan_counts > 0 {
            out.push(format!(
                "{} orphan counts of vanished jobs",
                self.stray_orphan_counts
            ));
        }
        if self.stray_reasons > 0 {
            out.push(format!("{} reasons of jobs not dead", self.stray_reasons));
        }
        out
    }
}

fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Order statistics of a sample of durations (µs), for the figures lines.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Spread {
    /// How many values.
    pub n: usize,
    /// The median.
    pub p50: u64,
    /// The 99th percentile (nearest rank).
    pub p99: u64,
    /// The largest value.
    pub max: u64,
}

impl Spread {
    /// The spread of `values` (any order).
    pub fn of(values: &[u64]) -> Self {
        let mut sorted = values.to_vec();
        sorted.sort_unstable();
        let rank = |p: f64| -> u64 {
            if sorted.is_empty() {
                return 0;
            }
            // Nearest rank: the smallest value with at least p of the sample at or below.
            let k = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            sorted[k - 1]
        };
        Spread {
            n: sorted.len(),
            p50: rank(0.50),
            p99: rank(0.99),
            max: sorted.last().copied().unwrap_or(0),
        }
    }
}

impl fmt::Display for Spread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |us: u64| us as f64 / 1000.0;
        write!(
            f,
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (n {})",
            ms(self.p50),
            ms(self.p99),
            ms(self.max),
            self.n
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_uses_nearest_ranks() {
        let values: Vec<u64> = (1..=200).rev().collect();
        let s = Spread::of(&values);
        assert_eq!((s.n, s.p50, s.p99, s.max), (200, 100, 198, 200));
        assert_eq!(Spread::of(&[]), Spread::default());
        assert_eq!(Spread::of(&[7]).p99, 7);
    }
}
