//! What a scraper measures about a job step on one node, one timestamped sample at a time.
//!
//! The readers of /proc, cgroups and NVML fill these records; the wire format carries them to
//! the server; the store encodes them compactly. Counters are cumulative (as the kernel keeps
//! them) so a lost sample loses no CPU time: rates come from differences.
//!
//! Submodules: `procfs` (per-process counters), `cgroup_v1`/`cgroup_v2` (which processes form a
//! step, its memory and cpuset), `cgroup_stat` (CPU time and faults the step's cgroup counts),
//! `process_cache` (per-process readings kept between samples, refreshed on a budget),
//! `rapl` (node energy split between steps), `proctree` (steps from `slurmstepd: [job.step]` process trees on `proctrack/linuxproc`
//! clusters), `gpu` (NVML behind a trait, and a recorded source), `collect` (one sample of every
//! step of the node).

pub mod cgroup_stat;
pub mod cgroup_v1;
pub mod cgroup_v2;
pub mod collect;
pub mod gpu;
pub mod plausible;
pub mod process_cache;
pub mod procfs;
pub mod proctree;
pub mod rapl;
mod record;

pub use record::{GpuReading, StepSample};

pub use cgroup_stat::{CgroupCounters, MemSplit};

use crate::job::{JobId, StepId};
use std::path::{Path, PathBuf};

/// Why a sample could not be taken at all (single vanished processes are not errors).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SampleError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
}

/// A step as its cgroup shows it: who is in it and what the cgroup itself counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupStep {
    pub job: JobId,
    pub step: StepId,
    /// Owner from the path (`uid_<u>`, v1 only).
    pub uid: Option<u32>,
    /// Processes in the step's cgroup and its sub-cgroups, ascending (empty until listed).
    pub pids: Vec<u32>,
    /// The cgroup directory whose `cgroup.procs` (and sub-cgroups') list the step's processes;
    /// `None` in process-tree mode, where `pids` come with the step.
    pub pids_dir: Option<PathBuf>,
    /// CPUs in the step's cpuset; 0 when unknown.
    pub cpus: u32,
    pub mem_current_kib: Option<u64>,
    pub mem_peak_kib: Option<u64>,
    /// `memory.stat` split into resident memory and page cache (absent without it).
    pub mem_split: Option<MemSplit>,
    /// CPU time and faults as the cgroup counts them (absent in process-tree mode).
    pub counters: CgroupCounters,
}

impl CgroupStep {
    /// Lists the step's processes from its cgroup (a no-op in process-tree mode).
    pub fn list_pids(&mut self) {
        if let Some(dir) = &self.pids_dir {
            self.pids = step_dir_pids(dir);
        }
    }
}

/// Counts the CPUs of a list such as `0-3,8,10-11` (7). Malformed parts count nothing.
pub fn count_cpu_list(text: &str) -> u32 {
    text.trim()
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|part| match part.split_once('-') {
            Some((a, b)) => match (a.trim().parse::<u32>(), b.trim().parse::<u32>()) {
                (Ok(a), Ok(b)) if b >= a => b - a + 1,
                _ => 0,
            },
            None => u32::from(part.trim().parse::<u32>().is_ok()),
        })
        .sum()
}

/// Reads a small file as text; `None` when absent or unreadable.
pub(crate) fn read_small(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Reads a file holding one number.
pub(crate) fn read_u64(path: &Path) -> Option<u64> {
    read_small(path)?.trim().parse().ok()
}

/// Every pid in `cgroup.procs` of `dir` and of its sub-cgroups (task_N, user/, slurm/), sorted.
pub(crate) fn step_dir_pids(dir: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Some(text) = read_small(&d.join("cgroup.procs")) {
            pids.extend(text.split_ascii_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
        if let Ok(entries) = std::fs::read_dir(&d) {
            stack.extend(
                entries.filter_map(|e| e.ok()).filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()),
            );
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_are_counted() {
        assert_eq!(count_cpu_list("0-3,8,10-11\n"), 7);
        assert_eq!(count_cpu_list("0"), 1);
        assert_eq!(count_cpu_list(""), 0);
        assert_eq!(count_cpu_list("3-1,x"), 0);
    }
}
