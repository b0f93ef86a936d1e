//! Job steps from SLURM's cgroup v2 hierarchy (SLURM 22.05+ `cgroup/v2` plugin).
//!
//! SLURM 22.05+ puts every step of a node under its slurmstepd scope:
//! `<root>/system.slice/[<node>_]slurmstepd.scope/job_<id>/step_<step>/{slurm,user/task_<n>}`
//! (the `<node>_` prefix when several slurmds share a host). The job owner is not in the path;
//! the server takes ownership from SLURM, not from the report, so `uid` is left unknown here.
//! Most production clusters run this layout; the dev cluster runs v1, so this reader is proved
//! on a tree laid out as SLURM makes it (`tests/fixtures/cgroup/v2/`). CPU time and faults come
//! from the step's own `cpu.stat` and `memory.stat` (see `cgroup_stat`).

use super::cgroup_stat::{parse_cpu_stat_v2, parse_memory_stat_faults, parse_memory_stat_split, CgroupCounters};
use super::cgroup_v1::subdirs;
use super::{count_cpu_list, read_small, read_u64, CgroupStep, SampleError};
use crate::job::{JobId, StepId};
use std::path::{Path, PathBuf};

/// The slurmstepd scope of one node in a cgroup v2 tree.
#[derive(Debug, Clone)]
pub struct CgroupV2 {
    scope: PathBuf,
}

impl CgroupV2 {
    /// The node's scope under `root` (a cgroup2 mount), or `root` itself when it already is one.
    pub fn detect(root: &Path, node: &str) -> Option<CgroupV2> {
        let candidates = [
            root.join("system.slice").join(format!("{node}_slurmstepd.scope")),
            root.join("system.slice").join("slurmstepd.scope"),
            root.to_path_buf(),
        ];
        candidates
            .into_iter()
            .find(|dir| dir.join("cgroup.controllers").is_file() && (dir != root || has_job_dirs(dir)))
            .map(|scope| CgroupV2 { scope })
    }

    /// The step directories present now, processes listed.
    pub fn steps(&self) -> Result<Vec<CgroupStep>, SampleError> {
        let mut steps = self.find_steps()?;
        for step in &mut steps {
            step.list_pids();
        }
        Ok(steps)
    }

    /// The step directories present now with their cgroup figures, processes not yet listed.
    pub fn find_steps(&self) -> Result<Vec<CgroupStep>, SampleError> {
        let mut out = Vec::new();
        for job_dir in subdirs(&self.scope)? {
            let Some(job) = job_dir
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("job_"))
                .and_then(|n| n.parse().ok())
            else {
                continue;
            };
            for step_dir in subdirs(&job_dir)? {
                let Some(step) = step_dir
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_prefix("step_"))
                    .and_then(StepId::parse)
                else {
                    continue;
                };
                let cpus = read_small(&step_dir.join("cpuset.cpus.effective"))
                    .or_else(|| read_small(&job_dir.join("cpuset.cpus.effective")))
                    .map(|t| count_cpu_list(&t))
                    .unwrap_or(0);
                // cpu.stat is in every v2 cgroup; memory.stat where the memory controller is on.
                let cpu = read_small(&step_dir.join("cpu.stat")).and_then(|t| parse_cpu_stat_v2(&t));
                let mem_stat = read_small(&step_dir.join("memory.stat"));
                let faults = mem_stat.as_deref().and_then(parse_memory_stat_faults);
                out.push(CgroupStep {
                    job: JobId(job),
                    step,
                    uid: None,
                    pids: Vec::new(),
                    pids_dir: Some(step_dir.clone()),
                    cpus,
                    mem_current_kib: read_u64(&step_dir.join("memory.current")).map(|b| b / 1024),
                    mem_peak_kib: read_u64(&step_dir.join("memory.peak")).map(|b| b / 1024),
                    mem_split: mem_stat.as_deref().and_then(parse_memory_stat_split),
                    counters: CgroupCounters::from_parts(cpu, faults),
                });
            }
        }
        Ok(out)
    }
}

fn has_job_dirs(dir: &Path) -> bool {
    subdirs(dir)
        .is_ok_and(|d| d.iter().any(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("job_"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/cgroup/v2")
    }

    #[test]
    fn reads_steps_as_slurm_22_05_lays_them_out() {
        let v2 = CgroupV2::detect(&fixture(), "gpu01").unwrap();
        let steps = v2.steps().unwrap();
        let ids: Vec<String> = steps.iter().map(|s| format!("{}.{}", s.job, s.step)).collect();
        // system.slice/slurmstepd.scope/job_4242/{step_0,step_batch,step_extern}
        assert_eq!(ids, ["4242.0", "4242.batch", "4242.extern"]);
        let step0 = &steps[0];
        // step_0/slurm/cgroup.procs 5100; step_0/user/task_0/cgroup.procs 5120 5121; task_1: 5130
        assert_eq!(step0.pids, [5100, 5120, 5121, 5130]);
        // step_0/cpuset.cpus.effective "0-3,8"
        assert_eq!(step0.cpus, 5);
        // step_0/memory.current 1073741824, memory.peak 2147483648
        assert_eq!(step0.mem_current_kib, Some(1_048_576));
        assert_eq!(step0.mem_peak_kib, Some(2_097_152));
        assert_eq!(step0.uid, None);
        // step_0/cpu.stat user_usec 12000000, system_usec 500000; memory.stat pgfault 2048, pgmajfault 48
        assert_eq!(step0.counters.cpu_us(), Some((12_000_000, 500_000)));
        assert_eq!(step0.counters.faults(), Some((2_000, 48)));
        // memory.stat anon 768 MiB, file 256 MiB of which 8 MiB mapped: a quarter is cache.
        let split = step0.mem_split.unwrap();
        assert_eq!((split.resident_kib, split.cache_kib), ((768 + 8) << 10, (256 - 8) << 10));
        // step_batch has neither file: nothing is made up.
        assert_eq!(steps[1].counters, CgroupCounters::default());
    }
}
