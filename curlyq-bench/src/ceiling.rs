//! The ceiling: what Redis itself does with curlyq's push script, measured with
//! `redis-benchmark` running `EVALSHA <push> 3 <q>:data <q>:active <q>:signal
//! __rand_int__ <job bytes>`.

use std::process::Command;
use std::time::Duration;

use crate::admin::Endpoint;
use crate::error::{BenchError, Result};
use crate::process::run_bounded;

/// One redis-benchmark measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Load {
    /// Parallel connections (`-c`).
    pub(crate) clients: usize,
    /// Requests per pipeline (`-P`); 1 is unpipelined.
    pub(crate) pipeline: usize,
    /// Requests in total (`-n`).
    pub(crate) requests: usize,
}

/// Runs redis-benchmark once; returns its requests per second.
///
/// `keys` are the push script's three keys, `value` the stored bytes (each call stores
/// them under a fresh random ID, `-r 1000000000`).
pub(crate) async fn measure(
    endpoint: &Endpoint,
    sha: &str,
    keys: [&str; 3],
    value: &str,
    load: Load,
) -> Result<f64> {
    let mut command = Command::new("redis-benchmark");
    command
        .args(["-h", &endpoint.host])
        .args(["-p", &endpoint.port.to_string()])
        .args(["-n", &load.requests.to_string()])
        .args(["-c", &load.clients.to_string()])
        .args(["-P", &load.pipeline.to_string()])
        .args(["-r", "1000000000"])
        .arg("--csv");
    if endpoint.db != 0 {
        command.args(["--dbnum", &endpoint.db.to_string()]);
    }
    if let Some(user) = &endpoint.user {
        command.args(["--user", user]);
    }
    if let Some(password) = &endpoint.password {
        command.args(["-a", password]);
    }
    command
        .args(["EVALSHA", sha, "3"])
        .args(keys)
        .args(["__rand_int__", value]);
    // Far more than redis-benchmark needs at 1,000 requests/s.
    let limit = Duration::from_secs(30 + load.requests as u64 / 1000);
    let output = run_bounded(command, "redis-benchmark", limit).await?;
    if !output.status.success() {
        return Err(BenchError::new(format!(
            "redis-benchmark failed ({}): {}",
            output.status,
            output.stderr.trim()
        )));
    }
    requests_per_second(&output.stdout).ok_or_else(|| {
        BenchError::new(format!(
            "no requests per second in redis-benchmark's output: {:?} {:?}",
            output.stdout.trim(),
            output.stderr.trim()
        ))
    })
}

/// Reads requests per second from `redis-benchmark --csv` output: the rows after the
/// header are `"<test>","<rps>","<avg>","<min>","<p50>","<p95>","<p99>","<max>"`; the
/// figure is read from the right, so a test name with commas cannot shift it. `None`
/// when no row has a positive figure there.
pub(crate) fn requests_per_second(csv: &str) -> Option<f64> {
    csv.lines().rev().find_map(|line| {
        let fields: Vec<&str> = line.trim().rsplitn(8, ',').collect();
        if fields.len() < 8 {
            return None;
        }
        let rps: f64 = fields[6].trim_matches('"').parse().ok()?;
        (rps.is_finite() && rps > 0.0).then_some(rps)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_output_is_read_and_anything_else_is_none() {
        let csv = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
                   \"EVALSHA abc 3 q:data,x q:active q:signal __rand_int__ xxxx\",\"43383.95\",\"0.022\",\"0.008\",\"0.023\",\"0.031\",\"0.063\",\"4.111\"\n";
        assert_eq!(requests_per_second(csv), Some(43383.95));
        assert_eq!(requests_per_second(""), None);
        assert_eq!(requests_per_second("ERR unknown command\n"), None);
        assert_eq!(
            requests_per_second("\"t\",\"nan\",\"1\",\"1\",\"1\",\"1\",\"1\",\"1\"\n"),
            None
        );
        assert_eq!(
            requests_per_second("\"t\",\"-5\",\"1\",\"1\",\"1\",\"1\",\"1\",\"1\"\n"),
            None
        );
    }
}
