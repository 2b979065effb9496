//! What the machine and the server did during one measurement: the share of CPU time
//! the hypervisor stole, the load average, and Redis's own CPU time per job. A figure
//! measured while another tenant or another program took the cores is marked noisy, so a
//! reader can tell a slow run from a slow build.

use crate::admin::Target;

/// Steal above this share of the machine's CPU time (over the measurement) marks it
/// noisy: the cores were given to another virtual machine.
pub(crate) const STEAL_BOUND: f64 = 0.02;

/// A 1-minute load average above this many times the core count (at the end of the
/// measurement) marks it noisy. The benchmark itself keeps about one runnable thread per
/// core busy (producer or consumer, and redis-server), so the bound is twice the cores.
pub(crate) const LOAD_PER_CORE_BOUND: f64 = 2.0;

/// The machine's CPU time counters (all cores, in clock ticks) from `/proc/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CpuTimes {
    /// Every state summed (user, nice, system, idle, iowait, irq, softirq, steal).
    pub(crate) total: u64,
    /// Time stolen by the hypervisor.
    pub(crate) steal: u64,
}

impl CpuTimes {
    /// Reads the aggregate `cpu` line of `/proc/stat`, if there is one.
    pub(crate) fn read() -> Option<Self> {
        Self::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// Parses the aggregate `cpu` line of a `/proc/stat` text. Guest time is left out of
    /// the total: the kernel already counts it in user and nice.
    pub(crate) fn parse(stat: &str) -> Option<Self> {
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let fields: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        let steal = fields.get(7).copied().unwrap_or(0);
        let total = fields.iter().take(8).sum();
        Some(CpuTimes { total, steal })
    }

    /// The share of CPU time stolen between `self` and `later`.
    pub(crate) fn steal_since(self, later: CpuTimes) -> Option<f64> {
        let total = later.total.checked_sub(self.total)?;
        let steal = later.steal.checked_sub(self.steal)?;
        (total > 0).then(|| steal as f64 / total as f64)
    }
}

/// The conditions of one measurement.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Conditions {
    /// Share of CPU time stolen during the measurement.
    pub(crate) steal: Option<f64>,
    /// The 1-minute load average at its end.
    pub(crate) load: Option<f64>,
    /// Redis's CPU time (user + system) per job, µs.
    pub(crate) redis_us_per_job: Option<f64>,
    /// The consumer process's CPU time per job, µs (drains only).
    pub(crate) client_us_per_job: Option<f64>,
}

impl Conditions {
    /// Whether steal or load passed its bound on a machine of `cores` cores.
    pub(crate) fn noisy(&self, cores: usize) -> bool {
        self.steal.is_some_and(|s| s > STEAL_BOUND)
            || self
                .load
                .is_some_and(|l| l > LOAD_PER_CORE_BOUND * cores as f64)
    }

    /// One set of conditions for several drains that make one figure: the worst steal
    /// and load, and the median Redis CPU per job.
    pub(crate) fn merge(all: &[Conditions]) -> Conditions {
        let worst = |f: fn(&Conditions) -> Option<f64>| {
            all.iter()
                .filter_map(f)
                .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
        };
        let middle = |f: fn(&Conditions) -> Option<f64>| {
            crate::report::median(&all.iter().filter_map(f).collect::<Vec<_>>())
        };
        Conditions {
            steal: worst(|c| c.steal),
            load: worst(|c| c.load),
            redis_us_per_job: middle(|c| c.redis_us_per_job),
            client_us_per_job: middle(|c| c.client_us_per_job),
        }
    }
}

/// Watches one measurement: started just before the timed work, stopped just after.
#[derive(Debug)]
pub(crate) struct Watch {
    cpu: Option<CpuTimes>,
    redis_cpu: Option<f64>,
}

impl Watch {
    /// Reads the counters at the start of the timed work. A server that does not answer
    /// INFO only leaves the Redis figure out.
    pub(crate) fn start(target: &mut Target) -> Self {
        Watch {
            cpu: CpuTimes::read(),
            redis_cpu: target.used_cpu().ok(),
        }
    }

    /// Reads them again at its end, for a measurement that handled `jobs` jobs.
    pub(crate) fn stop(self, target: &mut Target, jobs: usize) -> Conditions {
        let steal = match (self.cpu, CpuTimes::read()) {
            (Some(before), Some(after)) => before.steal_since(after),
            _ => None,
        };
        let redis_us_per_job = match (self.redis_cpu, target.used_cpu().ok()) {
            (Some(before), Some(after)) if jobs > 0 && after >= before => {
                Some((after - before) * 1e6 / jobs as f64)
            }
            _ => None,
        };
        Conditions {
            steal,
            load: crate::report::load_average(),
            redis_us_per_job,
            client_us_per_job: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  100 5 50 800 10 1 2 32 7 0\ncpu0 50 2 25 400 5 0 1 16 3 0\n";

    #[test]
    fn the_aggregate_line_gives_total_and_steal() {
        let t = CpuTimes::parse(STAT).unwrap();
        assert_eq!(t.total, 100 + 5 + 50 + 800 + 10 + 1 + 2 + 32);
        assert_eq!(t.steal, 32);
        assert_eq!(CpuTimes::parse("intr 1 2 3\n"), None);
        assert_eq!(CpuTimes::parse("cpu  1 x 3\n"), None);
    }

    #[test]
    fn steal_is_a_share_of_the_interval() {
        let a = CpuTimes {
            total: 1000,
            steal: 10,
        };
        let b = CpuTimes {
            total: 2000,
            steal: 60,
        };
        assert_eq!(a.steal_since(b), Some(0.05));
        assert_eq!(a.steal_since(a), None, "no time passed");
        assert_eq!(b.steal_since(a), None, "counters went back");
    }

    #[test]
    fn noisy_when_steal_or_load_passes_its_bound() {
        let quiet = Conditions {
            steal: Some(0.01),
            load: Some(3.9),
            ..Conditions::default()
        };
        assert!(!quiet.noisy(2));
        assert!(Conditions {
            steal: Some(0.03),
            ..quiet
        }
        .noisy(2));
        assert!(Conditions {
            load: Some(4.1),
            ..quiet
        }
        .noisy(2));
        assert!(!Conditions::default().noisy(2), "unknown is not noisy");
    }

    #[test]
    fn merged_conditions_keep_the_worst_and_the_median() {
        let c = |steal, load, us: f64| Conditions {
            steal: Some(steal),
            load: Some(load),
            redis_us_per_job: Some(us),
            client_us_per_job: Some(us * 2.0),
        };
        let merged =
            Conditions::merge(&[c(0.01, 1.0, 10.0), c(0.04, 0.5, 30.0), c(0.0, 2.0, 20.0)]);
        assert_eq!(merged, c(0.04, 2.0, 20.0));
        assert_eq!(Conditions::merge(&[]), Conditions::default());
    }
}
