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

/// A step's memory split into what its processes hold and what is page cache, KiB.
///
/// Why: `memory.current` / `memory.peak` (v2) and `memory.usage_in_bytes` /
/// `memory.max_usage_in_bytes` (v1) count the page cache of every file the step read or wrote,
/// so a job that streams files looks as if it needed far more memory than it does (and the
/// kernel reclaims that cache before it would kill the job). Findings use the resident part.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemSplit {
    /// Anonymous memory, plus file pages the processes have mapped and shared memory (tmpfs,
    /// `/dev/shm`), which cannot be dropped either; never more than anonymous + file.
    pub resident_kib: u64,
    /// The rest of the file pages: cache the kernel may reclaim.
    pub cache_kib: u64,
}

/// `memory.stat` as (resident, cache). v1 keeps hierarchical sums (`total_rss`,
/// `total_cache`, `total_mapped_file`, `total_shmem`); v2's `anon`, `file`, `file_mapped` and
/// `shmem` are hierarchical already. Mapped shared memory is counted in both `mapped_file` and
/// `shmem`, so the resident figure is capped at anonymous + file memory.
pub fn parse_memory_stat_split(text: &str) -> Option<MemSplit> {
    let v1 = |k: &str| flat_value(text, &format!("total_{k}"));
    let (anon, file, mapped, shmem) = match v1("rss") {
        Some(rss) => (rss, v1("cache")?, v1("mapped_file").unwrap_or(0), v1("shmem").unwrap_or(0)),
        None => (
            flat_value(text, "anon")?,
            flat_value(text, "file")?,
            flat_value(text, "file_mapped").unwrap_or(0),
            flat_value(text, "shmem").unwrap_or(0),
        ),
    };
    let kept_file = mapped.saturating_add(shmem).min(file);
    Some(MemSplit { resident_kib: anon.saturating_add(kept_file) / 1024, cache_kib: (file - kept_file) / 1024 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_stat_splits_resident_from_page_cache() {
        // v1, recorded on the dev cluster: a step that wrote 300 MiB and then held 100 MiB.
        let v1 = include_str!("../../../tests/fixtures/cgroup/memory-stat/v1-step-wrote-300MiB-holds-100MiB.stat");
        assert_eq!(
            parse_memory_stat_split(v1),
            Some(MemSplit {
                resident_kib: (108_015_616 + 2_928_640) / 1024,
                cache_kib: (321_318_912 - 2_928_640) / 1024
            })
        );
        // v2: shared memory stays resident; mapped shmem is not counted twice past `file`.
        let v2 = "anon 1048576\nfile 4194304\nkernel 0\nshmem 3145728\nfile_mapped 2097152\n";
        assert_eq!(parse_memory_stat_split(v2), Some(MemSplit { resident_kib: 5_120, cache_kib: 0 }));
        let v2_cache = "anon 1048576\nfile 4194304\nshmem 0\nfile_mapped 1048576\n";
        assert_eq!(parse_memory_stat_split(v2_cache), Some(MemSplit { resident_kib: 2_048, cache_kib: 3_072 }));
        assert_eq!(parse_memory_stat_split("pgfault 1\n"), None);
    }

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
