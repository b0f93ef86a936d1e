//! Job steps from process trees, for clusters without job cgroups (`proctrack/linuxproc`).
//!
//! Every step has a `slurmstepd: [<job>.<step>]` daemon; the step's processes are its
//! descendants. This is the original scraper's way; it costs a read of every process's `stat`
//! per sample, which is why cgroups are preferred where SLURM made them.

use super::procfs::{ProcRoot, ProcessReading};
use super::{CgroupStep, SampleError};
use crate::job::{JobId, StepId};
use std::collections::HashMap;

/// Parses a slurmstepd title: `slurmstepd: [123.batch]`, `[123.0]`, `[123.extern]`,
/// `[123.interactive]`, `[123.TBD]`; a het component suffix (`[123.0+1]`) is ignored.
pub fn parse_stepd_title(cmdline: &str) -> Option<(JobId, StepId)> {
    let inner = cmdline.trim().strip_prefix("slurmstepd: [")?.strip_suffix(']')?;
    let (job, step) = inner.split_once('.')?;
    let step = step.split('+').next()?;
    Some((JobId(job.parse().ok()?), StepId::parse(step)?))
}

/// Steps found from the process tree: each slurmstepd with all its descendants, reading every
/// process once (the sampler keeps readings between samples and uses [`steps_from_readings`]).
pub fn steps_from_tree(proc_root: &mut ProcRoot) -> Result<Vec<CgroupStep>, SampleError> {
    let mut readings = Vec::new();
    for pid in proc_root.pids()? {
        if let Some(reading) = proc_root.read_process(pid, false) {
            readings.push(reading);
        }
    }
    Ok(steps_from_readings(readings.iter(), |r| proc_root.cmdline(r.pid).as_deref().and_then(parse_stepd_title)))
}

/// Steps from readings of every process: each process named `slurmstepd` whose title
/// (`title(reading)`, the parsed command line) names a step, with all its descendants.
pub fn steps_from_readings<'a>(
    readings: impl Iterator<Item = &'a ProcessReading>,
    mut title: impl FnMut(&ProcessReading) -> Option<(JobId, StepId)>,
) -> Vec<CgroupStep> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    let mut stepds = Vec::new();
    for reading in readings {
        children.entry(reading.ppid).or_default().push(reading.pid);
        if reading.comm == "slurmstepd" {
            if let Some((job, step)) = title(reading) {
                stepds.push((reading.pid, job, step));
            }
        }
    }
    let mut out = Vec::new();
    for (stepd, job, step) in stepds {
        let mut pids = vec![stepd];
        let mut next = 0;
        while next < pids.len() {
            if let Some(kids) = children.get(&pids[next]) {
                pids.extend(kids);
            }
            next += 1;
        }
        pids.sort_unstable();
        out.push(CgroupStep {
            job,
            step,
            uid: None,
            pids,
            pids_dir: None,
            cpus: 0,
            mem_current_kib: None,
            mem_peak_kib: None,
            mem_split: None,
            counters: Default::default(),
        });
    }
    out.sort_by_key(|s| (s.job, s.step));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stepd_titles_of_every_step_kind_are_parsed() {
        assert_eq!(parse_stepd_title("slurmstepd: [14.batch]"), Some((JobId(14), StepId::BATCH)));
        assert_eq!(parse_stepd_title("slurmstepd: [14.extern]"), Some((JobId(14), StepId::EXTERN)));
        assert_eq!(parse_stepd_title("slurmstepd: [14.interactive]"), Some((JobId(14), StepId::INTERACTIVE)));
        assert_eq!(parse_stepd_title("slurmstepd: [14.3]"), Some((JobId(14), StepId(3))));
        assert_eq!(parse_stepd_title("slurmstepd: [20.0+1]"), Some((JobId(20), StepId(0))));
        assert_eq!(parse_stepd_title("slurmstepd: [14]"), None);
        assert_eq!(parse_stepd_title("/usr/sbin/slurmstepd"), None);
    }

    #[test]
    fn a_step_is_its_stepd_and_all_descendants() {
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/proc");
        let mut proc_root = ProcRoot::with_units(root, 100, 4);
        let steps = steps_from_tree(&mut proc_root).unwrap();
        let ids: Vec<(String, Vec<u32>)> =
            steps.iter().map(|s| (format!("{}.{}", s.job, s.step), s.pids.clone())).collect();
        // tests/fixtures/proc: 31504 "slurmstepd: [14.extern]"; 31511 "slurmstepd: [14.batch]"
        // → 31515 (slurm_script) → 31516 (python3) and 31517 (sleep); 1 is unrelated.
        assert_eq!(
            ids,
            [("14.batch".to_string(), vec![31511, 31515, 31516, 31517]), ("14.extern".to_string(), vec![31504])]
        );
    }
}
