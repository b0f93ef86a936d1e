//! Counters a step's cgroup keeps for all its processes, living and exited.
//!
//! Why: reading every process's `stat` and `io` costs ~10 µs each, so a step of 1 000 processes
//! would cost 10 ms per sample. The kernel already sums CPU time and page faults per cgroup
//! (v2 `cpu.stat` and `memory.stat` in every step; v1 `cpuacct.stat` where SLURM made a cpuacct
//! cgroup, i.e. `jobacct_gather/cgroup`, and `memory.stat` under `task/cgroup`), and those sums
//! also keep what exited processes used, which per-process sums lose. So the scraper takes CPU
//! and faults from here when present and reads processes only on a budget (see `process_cache`).
//! Parsing is pure; the readers of the two layouts call it.

/// What the cgroup itself counts; `None` where the controller or file is absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupCounters {
    /// CPU time in user mode, microseconds, cumulative since the cgroup was made.
    pub cpu_user_us: Option<u64>,
    /// CPU time in kernel mode, microseconds.
    pub cpu_sys_us: Option<u64>,
    /// Minor page faults (all faults minus major ones).
    pub minor_faults: Option<u64>,
    /// Major page faults.
    pub major_faults: Option<u64>,
}

impl CgroupCounters {
    /// From (user, system) CPU microseconds and (minor, major) faults, each where the cgroup has them.
    pub fn from_parts(cpu_us: Option<(u64, u64)>, faults: Option<(u64, u64)>) -> Self {
        CgroupCounters {
            cpu_user_us: cpu_us.map(|c| c.0),
            cpu_sys_us: cpu_us.map(|c| c.1),
            minor_faults: faults.map(|f| f.0),
            major_faults: faults.map(|f| f.1),
        }
    }

    /// Both CPU counters, when the cgroup has them.
    pub fn cpu_us(&self) -> Option<(u64, u64)> {
        Some((self.cpu_user_us?, self.cpu_sys_us?))
    }

    /// Both fault counters, when the cgroup has them.
    pub fn faults(&self) -> Option<(u64, u64)> {
        Some((self.minor_faults?, self.major_faults?))
    }
}

/// Value of `key` in a flat `key value` file (`cpu.stat`, `memory.stat`, `cpuacct.stat`).
fn flat_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// v2 `cpu.stat`: `user_usec` and `system_usec`.
pub fn parse_cpu_stat_v2(text: &str) -> Option<(u64, u64)> {
    Some((flat_value(text, "user_usec")?, flat_value(text, "system_usec")?))
}

/// v1 `cpuacct.stat`: `user` and `system` in USER_HZ ticks, returned in microseconds.
pub fn parse_cpuacct_stat(text: &str, clk_tck: u64) -> Option<(u64, u64)> {
    let to_us = |ticks: u64| ticks.saturating_mul(1_000_000) / clk_tck.max(1);
    Some((to_us(flat_value(text, "user")?), to_us(flat_value(text, "system")?)))
}

/// `memory.stat` faults as (minor, major). v1 keeps the hierarchical sums (the step's task
/// sub-cgroups included) under `total_pgfault`/`total_pgmajfault`; v2's `pgfault`/`pgmajfault`
/// are hierarchical already. `pgfault` counts major faults too, so minor = pgfault − pgmajfault.
pub fn parse_memory_stat_faults(text: &str) -> Option<(u64, u64)> {
    let all = flat_value(text, "total_pgfault").or_else(|| flat_value(text, "pgfault"))?;
    let major = flat_value(text, "total_pgmajfault").or_else(|| flat_value(text, "pgmajfault"))?;
    Some((all.saturating_sub(major), major))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_cpu_stat_gives_user_and_system_microseconds() {
        let text = "usage_usec 9000123\nuser_usec 8000100\nsystem_usec 1000023\nnr_periods 0\n";
        assert_eq!(parse_cpu_stat_v2(text), Some((8_000_100, 1_000_023)));
        assert_eq!(parse_cpu_stat_v2("usage_usec 5\n"), None);
    }

    #[test]
    fn v1_cpuacct_stat_ticks_become_microseconds() {
        assert_eq!(parse_cpuacct_stat("user 1506\nsystem 23\n", 100), Some((15_060_000, 230_000)));
        assert_eq!(parse_cpuacct_stat("user x\nsystem 1\n", 100), None);
    }

    #[test]
    fn memory_stat_faults_prefer_the_hierarchical_v1_sums() {
        let v1 = "cache 0\npgfault 10\npgmajfault 1\ntotal_cache 0\ntotal_pgfault 80039\ntotal_pgmajfault 4\n";
        assert_eq!(parse_memory_stat_faults(v1), Some((80_035, 4)));
        let v2 = "anon 4096\nfile 0\npgfault 120\npgmajfault 20\n";
        assert_eq!(parse_memory_stat_faults(v2), Some((100, 20)));
        assert_eq!(parse_memory_stat_faults("anon 1\n"), None);
    }

    #[test]
    fn counters_are_used_only_when_complete() {
        let half = CgroupCounters { cpu_user_us: Some(1), ..Default::default() };
        assert_eq!(half.cpu_us(), None);
        let full =
            CgroupCounters { cpu_user_us: Some(1), cpu_sys_us: Some(2), minor_faults: Some(3), major_faults: Some(4) };
        assert_eq!((full.cpu_us(), full.faults()), (Some((1, 2)), Some((3, 4))));
    }
}
