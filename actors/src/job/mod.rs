//! SLURM's nouns as typed records: job and step ids, jobs, steps and TRES lists.
//!
//! These are what the accounting import produces and what the store, analysis and reports
//! consume. Ids keep SLURM's own encodings (the special step ids `batch`, `extern`,
//! `interactive` are SLURM's `0xffff_fffb…` values) so they round-trip with SLURM's tools.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

mod flat;

/// A job's unique numeric id (sacct `JobIDRaw`). Array tasks and het components have their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A step id in SLURM's encoding: numbered steps are `0..`, special steps use reserved values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StepId(pub u32);

impl StepId {
    /// SLURM's `SLURM_PENDING_STEP` (`TBD` in slurmstepd titles).
    pub const PENDING: StepId = StepId(0xffff_fffd);
    /// SLURM's `SLURM_EXTERN_CONT`: the `extern` step.
    pub const EXTERN: StepId = StepId(0xffff_fffc);
    /// SLURM's `SLURM_BATCH_SCRIPT`: the `batch` step.
    pub const BATCH: StepId = StepId(0xffff_fffb);
    /// SLURM's `SLURM_INTERACTIVE_STEP`: the `interactive` step.
    pub const INTERACTIVE: StepId = StepId(0xffff_fffa);
    /// Stands for "the job as a whole" where a step key is needed (never a real step).
    pub const JOB: StepId = StepId(0xffff_ffff);

    /// Parses `batch`, `extern`, `interactive`, `TBD` or a step number.
    pub fn parse(text: &str) -> Option<StepId> {
        match text {
            "batch" => Some(StepId::BATCH),
            "extern" => Some(StepId::EXTERN),
            "interactive" => Some(StepId::INTERACTIVE),
            "TBD" | "pending" => Some(StepId::PENDING),
            _ => text.parse::<u32>().ok().filter(|n| *n < 0xffff_fff0).map(StepId),
        }
    }

    /// Whether this is a numbered (`srun`) step.
    pub fn is_numbered(self) -> bool {
        self.0 < 0xffff_fff0
    }
}

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            StepId::BATCH => f.write_str("batch"),
            StepId::EXTERN => f.write_str("extern"),
            StepId::INTERACTIVE => f.write_str("interactive"),
            StepId::PENDING => f.write_str("TBD"),
            StepId::JOB => f.write_str("job"),
            StepId(n) => write!(f, "{n}"),
        }
    }
}

/// A TRES list such as `cpu=4,mem=8G,node=1,billing=4,gres/gpu=1`, normalised:
/// counts as counts, memory in bytes, times in milliseconds, energy in joules. Common names
/// (`cpu`, `mem`…) are shared static strings: every step carries a dozen of them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Tres(pub Vec<(Cow<'static, str>, u64)>);

/// TRES names SLURM prints on nearly every line. The parser shares these instead of allocating
/// a copy per value, and the store writes a name's position here instead of the name, so this
/// list is append-only: positions are stored on disk.
pub const COMMON_TRES: [&str; 13] = [
    "billing",
    "cpu",
    "energy",
    "fs/disk",
    "fs/lustre",
    "gres/gpu",
    "gres/gpumem",
    "gres/gpuutil",
    "ic/ofed",
    "mem",
    "node",
    "pages",
    "vmem",
];

/// The position of `name` in [`COMMON_TRES`].
pub fn common_tres_index(name: &str) -> Option<usize> {
    Some(match name {
        "billing" => 0,
        "cpu" => 1,
        "energy" => 2,
        "fs/disk" => 3,
        "fs/lustre" => 4,
        "gres/gpu" => 5,
        "gres/gpumem" => 6,
        "gres/gpuutil" => 7,
        "ic/ofed" => 8,
        "mem" => 9,
        "node" => 10,
        "pages" => 11,
        "vmem" => 12,
        _ => return None,
    })
}

impl Tres {
    /// The value of one TRES, e.g. `get("gres/gpu")`.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
    }
}

/// The memory a job asked for, as SLURM states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemRequest {
    /// Bytes per node (`--mem`, `4Gn`).
    PerNode(u64),
    /// Bytes per allocated CPU (`--mem-per-cpu`, `4Gc`).
    PerCpu(u64),
}

/// What a job or a step used, as SLURM accounts it: CPU times, memory peaks and disk I/O.
/// [`JobRecord`] and [`StepRecord`] both carry one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    pub total_cpu_ms: u64,
    pub user_cpu_ms: u64,
    pub system_cpu_ms: u64,
    /// Largest resident set of any task, with where it peaked (node, task number).
    pub max_rss_bytes: Option<u64>,
    pub max_rss_node: String,
    pub max_rss_task: Option<u32>,
    pub ave_rss_bytes: Option<u64>,
    pub max_vmsize_bytes: Option<u64>,
    pub max_disk_read_bytes: Option<u64>,
    pub max_disk_write_bytes: Option<u64>,
    /// Memory as SLURM's tools count it (see [`step_memory`]): for a step, the sum over its
    /// tasks of each task's peak; for a job, the largest of its steps'. Derived, so it is not
    /// part of the serialised record (the store keeps a job's, a step's is derived again).
    #[serde(skip)]
    pub mem_used_bytes: Option<u64>,
    /// The largest use on one node, as [`mem_used_bytes`](Usage::mem_used_bytes): what a
    /// per-node request (`--mem`) must hold.
    #[serde(skip)]
    pub mem_node_peak_bytes: Option<u64>,
}

impl Usage {
    /// The memory the job or step used as SLURM counts it; the largest task's MaxRSS where only
    /// that is known (records stored before the figure was kept).
    pub fn mem_used(&self) -> Option<u64> {
        self.mem_used_bytes.or(self.max_rss_bytes)
    }

    /// The largest use on one node ([`Usage::mem_node_peak_bytes`], else as [`Usage::mem_used`]).
    pub fn mem_node_peak(&self) -> Option<u64> {
        self.mem_node_peak_bytes.or(self.mem_used())
    }
}

/// A step's memory as SLURM's tools count it: `(used, largest on one node)`.
///
/// `used` is the sum over the step's tasks of each task's peak resident set: sacct's
/// `TRESUsageInTot` mem, which seff reads. On one node that figure is exact. On several nodes
/// 22.05's total misses tasks (on the dev cluster `-N2 -n2` with two 300 MB tasks shows 300 MB
/// in total while MaxRSS is 300 MB), so seff under-reports there; reportseff takes MaxRSS ×
/// NTasks instead, which is the physical sum for equal tasks (the usual MPI job) and bounds it
/// otherwise. On several nodes we take the larger of the two, i.e. reportseff's figure.
///
/// `largest on one node` is the total on one node, and on several nodes the largest task times
/// the most tasks a node holds under SLURM's balanced distribution (⌈tasks / nodes⌉), at most
/// `used`.
pub fn step_memory(
    node_count: u32,
    task_count: u32,
    max_rss: Option<u64>,
    tot_mem: Option<u64>,
) -> (Option<u64>, Option<u64>) {
    let tasks = u64::from(task_count.max(1));
    let nodes = u64::from(node_count.max(1));
    if nodes <= 1 {
        let used = match (tot_mem, max_rss) {
            (Some(t), Some(m)) => Some(t.max(m)),
            (t, m) => t.or(m),
        };
        return (used, used);
    }
    let by_tasks = max_rss.map(|m| m.saturating_mul(tasks));
    let used = match (tot_mem, by_tasks) {
        (Some(t), Some(b)) => Some(t.max(b)),
        (t, b) => t.or(b),
    };
    let per_node = max_rss.map(|m| m.saturating_mul(tasks.div_ceil(nodes)));
    let node_peak = match (per_node, used) {
        (Some(p), Some(u)) => Some(p.min(u)),
        (p, u) => p.or(u),
    };
    (used, node_peak)
}

/// One job as imported from SLURM accounting (the job line of sacct).
///
/// Serialised flat, the [`Usage`] fields inline (see `flat.rs`): the JSON of `accounting
/// --dry-run --json` and `debug store-jobs`, and the store's format-1 values, keep the shape they
/// had before the usage figures were grouped.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct JobRecord {
    pub id: JobId,
    /// As SLURM prints it: `123`, `123_4` (array task), `123+1` (het component).
    pub display_id: String,
    pub array_job_id: Option<u64>,
    pub array_task_id: Option<u32>,
    pub het_job_id: Option<u64>,
    pub het_offset: Option<u32>,
    pub name: String,
    pub user: String,
    pub uid: Option<u32>,
    pub account: String,
    pub partition: String,
    pub qos: String,
    /// First word of SLURM's state (`COMPLETED`, `CANCELLED`, `OUT_OF_MEMORY`…).
    pub state: String,
    /// The state as printed, e.g. `CANCELLED by 0`.
    pub state_detail: String,
    pub exit_code: u32,
    pub exit_signal: u32,
    pub submit_at: Option<u64>,
    pub eligible_at: Option<u64>,
    pub start_at: Option<u64>,
    pub end_at: Option<u64>,
    /// `None` for `UNLIMITED`/`Partition_Limit`.
    pub time_limit_secs: Option<u64>,
    pub elapsed_secs: u64,
    pub node_list: String,
    pub node_count: u32,
    pub alloc_cpus: u32,
    pub req_mem: Option<MemRequest>,
    /// Requested memory normalised to bytes for the whole job.
    pub req_mem_bytes: Option<u64>,
    pub alloc_tres: Tres,
    pub req_tres: Tres,
    /// CPU times from the job line; memory and disk maxima folded in from its steps (22.05
    /// leaves them empty on the job line; see `sacct_parse::fold_steps_into_job`).
    pub usage: Usage,
    pub submit_line: String,
    pub work_dir: String,
    /// Unix time this record was last refreshed from SLURM.
    pub imported_at: u64,
}

impl JobRecord {
    /// A finished one-CPU job of `user` without names, limits or memory figures: the base that
    /// tests, benchmarks and seeding complete with struct-update syntax.
    pub fn finished(id: u64, user: &str, start: u64, elapsed_secs: u64) -> JobRecord {
        JobRecord {
            id: JobId(id),
            display_id: id.to_string(),
            array_job_id: None,
            array_task_id: None,
            het_job_id: None,
            het_offset: None,
            name: String::new(),
            user: user.to_string(),
            uid: None,
            account: String::new(),
            partition: String::new(),
            qos: String::new(),
            state: "COMPLETED".into(),
            state_detail: "COMPLETED".into(),
            exit_code: 0,
            exit_signal: 0,
            submit_at: Some(start),
            eligible_at: Some(start),
            start_at: Some(start),
            end_at: Some(start + elapsed_secs),
            time_limit_secs: None,
            elapsed_secs,
            node_list: String::new(),
            node_count: 1,
            alloc_cpus: 1,
            req_mem: None,
            req_mem_bytes: None,
            alloc_tres: Tres::default(),
            req_tres: Tres::default(),
            usage: Usage::default(),
            submit_line: String::new(),
            work_dir: String::new(),
            imported_at: start + elapsed_secs,
        }
    }

    /// The analysis groups jobs into families by name and submit line, as the original did.
    pub fn family_key(&self) -> String {
        format!("{}\u{1f}{}", self.name, self.submit_line)
    }

    /// GPUs allocated (`gres/gpu` in AllocTRES).
    pub fn alloc_gpus(&self) -> u64 {
        self.alloc_tres.get("gres/gpu").unwrap_or(0)
    }

    /// Whether SLURM may still change this record (the job has not ended).
    pub fn is_running(&self) -> bool {
        self.end_at.is_none()
    }
}

/// One job step as imported from SLURM accounting. Serialised flat, like [`JobRecord`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StepRecord {
    pub job: JobId,
    pub step: StepId,
    pub name: String,
    pub state: String,
    pub exit_code: u32,
    pub exit_signal: u32,
    pub start_at: Option<u64>,
    pub end_at: Option<u64>,
    pub elapsed_secs: u64,
    pub node_list: String,
    pub node_count: u32,
    pub task_count: u32,
    pub alloc_cpus: u32,
    pub usage: Usage,
    pub tres_usage_in_tot: Tres,
    pub tres_usage_in_max: Tres,
    pub submit_line: String,
}

impl StepRecord {
    /// Fills the step's derived memory figures ([`step_memory`]) from what sacct reported.
    pub fn derive_memory(&mut self) {
        let (used, node) =
            step_memory(self.node_count, self.task_count, self.usage.max_rss_bytes, self.tres_usage_in_tot.get("mem"));
        self.usage.mem_used_bytes = used;
        self.usage.mem_node_peak_bytes = node;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_tres_positions_match_the_list() {
        for (i, name) in COMMON_TRES.iter().enumerate() {
            assert_eq!(common_tres_index(name), Some(i));
        }
        assert_eq!(common_tres_index("gres/fpga"), None);
    }

    #[test]
    fn special_step_ids_round_trip_through_text() {
        for text in ["batch", "extern", "interactive", "TBD", "0", "17"] {
            assert_eq!(StepId::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(StepId::parse("batch"), Some(StepId(0xffff_fffb)));
        assert!(StepId::parse("x").is_none());
        assert!(StepId::parse("4294967292").is_none());
    }
}
