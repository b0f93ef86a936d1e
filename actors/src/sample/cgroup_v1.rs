//! Job steps from SLURM's cgroup v1 hierarchy (`task/cgroup` + `proctrack/cgroup`).
//!
//! SLURM 22.05 lays a node's steps out as
//! `<root>/<controller>/slurm_<node>/uid_<uid>/job_<id>/step_<step>[/task_<n>]` (plain `slurm`
//! on hosts that run one slurmd). The node's own directory is chosen by name, so a scraper never
//! reports another node's steps even when several emulated nodes share one kernel (the
//! original's user-mode scraper leaked other users' data that way). Processes are listed from
//! the cpuset controller (every process of a step is in it), memory figures come from the memory
//! controller, and the CPU count from `cpuset.effective_cpus`. CPU time comes from the cpuacct
//! controller where SLURM made the step a cpuacct cgroup (`jobacct_gather/cgroup`), faults from
//! the memory controller's `memory.stat` (see `cgroup_stat`).

use super::cgroup_stat::{parse_cpuacct_stat, parse_memory_stat_faults, parse_memory_stat_split, CgroupCounters};
use super::procfs::host_clk_tck;
use super::{count_cpu_list, read_small, read_u64, CgroupStep, SampleError};
use crate::job::{JobId, StepId};
use std::path::{Path, PathBuf};

/// The cgroup v1 hierarchy of one node.
#[derive(Debug, Clone)]
pub struct CgroupV1 {
    root: PathBuf,
    slurm_dir: String,
    /// USER_HZ, the unit of `cpuacct.stat`.
    clk_tck: u64,
}

impl CgroupV1 {
    /// The node's hierarchy under `root` (e.g. `/sys/fs/cgroup`), if SLURM made one for it.
    pub fn detect(root: &Path, node: &str) -> Option<CgroupV1> {
        [format!("slurm_{node}"), "slurm".to_string()].into_iter().find_map(|dir| {
            ["cpuset", "memory", "freezer"].iter().any(|c| root.join(c).join(&dir).is_dir()).then(|| CgroupV1 {
                root: root.to_path_buf(),
                slurm_dir: dir,
                clk_tck: host_clk_tck(),
            })
        })
    }

    /// The step directories present now, with their processes, memory and CPU count.
    pub fn steps(&self) -> Result<Vec<CgroupStep>, SampleError> {
        let mut steps = self.find_steps()?;
        for step in &mut steps {
            step.list_pids();
        }
        Ok(steps)
    }

    /// The step directories present now with their cgroup figures, processes not yet listed
    /// (listing a large step costs more than all its counters: the sampler lists on a cadence).
    pub fn find_steps(&self) -> Result<Vec<CgroupStep>, SampleError> {
        let controller = ["cpuset", "freezer", "memory"]
            .into_iter()
            .find(|c| self.root.join(c).join(&self.slurm_dir).is_dir())
            .unwrap_or("cpuset");
        let base = self.root.join(controller).join(&self.slurm_dir);
        let mut out = Vec::new();
        for (uid_dir, uid) in numbered_dirs(&base, "uid_")? {
            for (job_dir, job) in numbered_dirs(&uid_dir, "job_")? {
                for step_entry in subdirs(&job_dir)? {
                    let Some(step) = step_entry
                        .file_name()
                        .and_then(|n| n.to_str())
                        .and_then(|n| n.strip_prefix("step_"))
                        .and_then(StepId::parse)
                    else {
                        continue;
                    };
                    let rel = step_entry.strip_prefix(self.root.join(controller)).unwrap_or(&step_entry).to_path_buf();
                    out.push(self.read_step(JobId(job), step, u32::try_from(uid).ok(), controller, &rel));
                }
            }
        }
        Ok(out)
    }

    fn read_step(&self, job: JobId, step: StepId, uid: Option<u32>, controller: &str, rel: &Path) -> CgroupStep {
        let cpuset = self.root.join("cpuset").join(rel);
        let cpus = read_small(&cpuset.join("cpuset.effective_cpus"))
            .or_else(|| read_small(&cpuset.join("cpuset.cpus")))
            .map(|t| count_cpu_list(&t))
            .unwrap_or(0);
        let memory = self.root.join("memory").join(rel);
        let cpu = read_small(&self.root.join("cpuacct").join(rel).join("cpuacct.stat"))
            .and_then(|t| parse_cpuacct_stat(&t, self.clk_tck));
        let mem_stat = read_small(&memory.join("memory.stat"));
        let faults = mem_stat.as_deref().and_then(parse_memory_stat_faults);
        CgroupStep {
            job,
            step,
            uid,
            pids: Vec::new(),
            pids_dir: Some(self.root.join(controller).join(rel)),
            cpus,
            mem_current_kib: read_u64(&memory.join("memory.usage_in_bytes")).map(|b| b / 1024),
            mem_peak_kib: read_u64(&memory.join("memory.max_usage_in_bytes")).map(|b| b / 1024),
            mem_split: mem_stat.as_deref().and_then(parse_memory_stat_split),
            counters: CgroupCounters::from_parts(cpu, faults),
        }
    }
}

/// Subdirectories of `dir` named `<prefix><number>`, with the number. A missing `dir` (the job
/// ended between two reads) is empty, not an error.
fn numbered_dirs(dir: &Path, prefix: &str) -> Result<Vec<(PathBuf, u64)>, SampleError> {
    Ok(subdirs(dir)?
        .into_iter()
        .filter_map(|p| {
            let n = p.file_name()?.to_str()?.strip_prefix(prefix)?.parse().ok()?;
            Some((p, n))
        })
        .collect())
}

/// Subdirectories of `dir`; empty when `dir` has gone.
pub(super) fn subdirs(dir: &Path) -> Result<Vec<PathBuf>, SampleError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(SampleError::Read { path: dir.to_path_buf(), source }),
    };
    let mut out: Vec<PathBuf> =
        entries.filter_map(|e| e.ok()).filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()).collect();
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/cgroup/v1")
    }

    #[test]
    fn finds_only_the_steps_of_its_own_node() {
        let v1 = CgroupV1::detect(&fixture(), "n2").unwrap();
        let steps = v1.steps().unwrap();
        let ids: Vec<String> = steps.iter().map(|s| format!("{}.{}", s.job, s.step)).collect();
        // tests/fixtures/cgroup/v1/cpuset/slurm_n2/uid_1001/job_14/{step_batch,step_extern,step_0};
        // slurm_n3 holds job_15, which must not appear.
        assert_eq!(ids, ["14.0", "14.batch", "14.extern"]);
        let batch = &steps[1];
        assert_eq!(batch.uid, Some(1001));
        // cpuset/.../step_batch/cgroup.procs: 31511 31515 31516
        assert_eq!(batch.pids, [31511, 31515, 31516]);
        // cpuset/.../step_batch/cpuset.effective_cpus: "0-1"
        assert_eq!(batch.cpus, 2);
        // memory/.../step_batch/memory.usage_in_bytes 314572800, memory.max_usage_in_bytes 330301440
        assert_eq!(batch.mem_current_kib, Some(307_200));
        assert_eq!(batch.mem_peak_kib, Some(322_560));
        // step_batch has no cpuacct cgroup and no memory.stat; step_0 has both:
        // cpuacct.stat user 250, system 50 ticks; memory.stat total_pgfault 5000, total_pgmajfault 7.
        assert_eq!(batch.counters, CgroupCounters::default());
        let step0 = &steps[0];
        let tck = host_clk_tck();
        assert_eq!(step0.counters.cpu_us(), Some((250 * 1_000_000 / tck, 50 * 1_000_000 / tck)));
        assert_eq!(step0.counters.faults(), Some((4_993, 7)));
    }

    #[test]
    fn a_node_without_a_slurm_directory_is_not_v1() {
        assert!(CgroupV1::detect(&fixture(), "n9").is_none());
    }
}
