//! One sample of every job step of this node: the scraper's unit of work.
//!
//! Steps come from the node's cgroups (v1 or v2) where SLURM made them, else from slurmstepd
//! process trees. CPU time and page faults come from the step's cgroup when it counts them
//! (cheap, and it keeps what exited processes used); otherwise from the processes (CPU including
//! waited-for children). RSS, I/O, threads and program names are summed over the step's live
//! processes from readings kept between samples (`process_cache`): new processes are read at
//! once, known ones round-robin within a per-sample budget, all of them every sample when the
//! cgroup does not count CPU. The cgroup's memory figures and CPU count are added and GPU
//! readings attributed. Buffers live in [`Sampler`] and are reused.

use super::cgroup_v1::CgroupV1;
use super::cgroup_v2::CgroupV2;
use super::gpu::{allocated_from_environ, attribute, GpuSource};
use super::process_cache::ProcessCache;
use super::procfs::ProcRoot;
use super::proctree::steps_from_readings;
use super::rapl::RaplMeter;
use super::{CgroupStep, GpuReading, SampleError, StepSample};
use crate::job::{JobId, StepId};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

/// How steps are found on this node.
#[derive(Debug, Clone)]
pub enum StepFinder {
    CgroupV1(CgroupV1),
    CgroupV2(CgroupV2),
    /// `proctrack/linuxproc`: slurmstepd process trees.
    ProcTree,
}

impl StepFinder {
    /// Chooses by what exists: the node's v1 hierarchy, else a v2 slurmstepd scope, else trees.
    pub fn detect(cgroup_root: &Path, node: &str) -> StepFinder {
        if let Some(v1) = CgroupV1::detect(cgroup_root, node) {
            StepFinder::CgroupV1(v1)
        } else if let Some(v2) = CgroupV2::detect(cgroup_root, node) {
            StepFinder::CgroupV2(v2)
        } else {
            StepFinder::ProcTree
        }
    }

    /// A short name for logs and JSON.
    pub fn name(&self) -> &'static str {
        match self {
            StepFinder::CgroupV1(_) => "cgroup_v1",
            StepFinder::CgroupV2(_) => "cgroup_v2",
            StepFinder::ProcTree => "process_tree",
        }
    }
}

/// One step's sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepReading {
    pub job: JobId,
    pub step: StepId,
    /// Owner uid as the cgroup path shows it (v1), if known.
    pub uid: Option<u32>,
    pub sample: StepSample,
    /// Programs seen (kernel `comm`), minus the ignored ones.
    pub apps: BTreeSet<String>,
    /// Whether CPU time came from the step's cgroup (else summed over its processes).
    pub cpu_from_cgroup: bool,
    pub gpus: Vec<GpuReading>,
}

/// Decides which steps are never reported: `(job, step, pids) -> skip?`.
type SkipRule = Box<dyn Fn(JobId, StepId, &[u32]) -> bool + Send>;

/// Takes samples of the node's steps.
pub struct Sampler {
    proc_root: ProcRoot,
    finder: StepFinder,
    ignored_apps: HashSet<String>,
    gpu: Option<Box<dyn GpuSource>>,
    /// GPUs allocated per step, read once per step (environment does not change).
    allocated_gpus: HashMap<(JobId, StepId), Vec<u32>>,
    /// Steps never reported: the scraper's own step (and its own job when it is a scraper job).
    skip: SkipRule,
    gpu_failures: u64,
    /// Last readings of the steps' processes.
    cache: ProcessCache,
    /// Known processes re-read per process scan beyond those that must be; `None`: every
    /// process listed and read every sample.
    process_budget: Option<usize>,
    /// Steps whose cgroup counts CPU time are listed and their processes read every this many
    /// samples (counters are read every sample).
    scan_every: u64,
    /// Samples taken so far.
    samples_taken: u64,
    /// Each step's processes as last listed.
    last_pids: HashMap<(JobId, StepId), Vec<u32>>,
    /// (pid, must read now) of this sample, reused.
    live: Vec<(u32, bool)>,
    /// slurmstepd titles by (pid, start time), process-tree mode: a title never changes.
    stepd_titles: HashMap<(u32, u64), Option<(JobId, StepId)>>,
    /// The node's RAPL counters (root only), and per step its cumulative share (mJ) and the
    /// CPU time it had at the previous sample.
    rapl: Option<RaplMeter>,
    energy: HashMap<(JobId, StepId), (u64, u64)>,
}

/// Known processes re-read per scan when the cgroup counts CPU time (`scrape.process_rereads_per_scan`).
pub const DEFAULT_PROCESS_BUDGET: usize = 32;

/// Samples per process scan when the cgroup counts CPU time (`scrape.process_scan_every`).
pub const DEFAULT_SCAN_EVERY: u32 = 4;

impl Sampler {
    /// A sampler over `proc_root` finding steps with `finder`.
    pub fn new(
        proc_root: ProcRoot,
        finder: StepFinder,
        ignored_apps: &[String],
        gpu: Option<Box<dyn GpuSource>>,
    ) -> Self {
        Sampler {
            proc_root,
            finder,
            ignored_apps: ignored_apps.iter().cloned().collect(),
            gpu,
            allocated_gpus: HashMap::new(),
            skip: Box::new(|_, _, _| false),
            gpu_failures: 0,
            cache: ProcessCache::new(),
            process_budget: Some(DEFAULT_PROCESS_BUDGET),
            scan_every: u64::from(DEFAULT_SCAN_EVERY),
            samples_taken: 0,
            last_pids: HashMap::new(),
            live: Vec::new(),
            stepd_titles: HashMap::new(),
            rapl: None,
            energy: HashMap::new(),
        }
    }

    /// Reads the node's RAPL energy under `powercap_root` and gives each step its share
    /// (`StepSample::energy_mj`); without readable counters (no RAPL, not root) nothing.
    pub fn with_rapl(mut self, powercap_root: &std::path::Path) -> Self {
        self.rapl = RaplMeter::open(powercap_root);
        match &self.rapl {
            Some(_) => tracing::info!(root = %powercap_root.display(), "measuring energy with RAPL"),
            None => tracing::debug!(root = %powercap_root.display(), "no readable RAPL counters; energy is estimated"),
        }
        self
    }

    /// Known processes re-read per scan where the cgroup counts CPU time; `None` lists and
    /// reads every process every sample (exact, and what a one-off `--once` sample wants).
    pub fn with_process_budget(mut self, budget: Option<usize>) -> Self {
        self.process_budget = budget;
        self
    }

    /// Where the cgroup counts CPU time, list and read processes every `every` samples (≥ 1).
    pub fn with_scan_every(mut self, every: u32) -> Self {
        self.scan_every = u64::from(every.max(1));
        self
    }

    /// Steps for which `skip(job, step, pids)` holds are left out.
    pub fn skipping(mut self, skip: impl Fn(JobId, StepId, &[u32]) -> bool + Send + 'static) -> Self {
        self.skip = Box::new(skip);
        self
    }

    /// How steps are found.
    pub fn finder(&self) -> &StepFinder {
        &self.finder
    }

    /// The proc tree read.
    pub fn proc_root(&self) -> &ProcRoot {
        &self.proc_root
    }

    /// One sample of every step now, stamped `at` (unix seconds).
    pub fn sample(&mut self, at: u64) -> Result<Vec<StepReading>, SampleError> {
        let tree_mode = matches!(self.finder, StepFinder::ProcTree);
        let mut steps = match &self.finder {
            StepFinder::CgroupV1(v1) => v1.find_steps()?,
            StepFinder::CgroupV2(v2) => v2.find_steps()?,
            StepFinder::ProcTree => self.steps_from_process_tree()?,
        };
        let scan_due = self.process_budget.is_none() || self.samples_taken.is_multiple_of(self.scan_every);
        self.samples_taken += 1;
        let mut listed = Vec::with_capacity(steps.len());
        for step in &mut steps {
            let key = (step.job, step.step);
            // Process-tree steps have no counters, so they are always "listed" (they come listed).
            let list = scan_due || step.counters.cpu_us().is_none() || !self.last_pids.contains_key(&key);
            if list {
                step.list_pids();
                self.last_pids.insert(key, step.pids.clone());
            } else if let Some(pids) = self.last_pids.get(&key) {
                step.pids.clone_from(pids);
            }
            listed.push(list);
        }
        let present: HashSet<(JobId, StepId)> = steps.iter().map(|s| (s.job, s.step)).collect();
        self.last_pids.retain(|k, _| present.contains(k));
        let mut kept = Vec::with_capacity(steps.len());
        for (step, list) in steps.into_iter().zip(listed) {
            if !(self.skip)(step.job, step.step, &step.pids) {
                kept.push((step, list));
            }
        }
        if !tree_mode {
            self.live.clear();
            for (step, list) in &kept {
                let must = *list && (self.process_budget.is_none() || step.counters.cpu_us().is_none());
                self.live.extend(step.pids.iter().map(|&pid| (pid, must)));
            }
            self.live.sort_unstable();
            self.live.dedup_by_key(|entry| entry.0);
            let budget = if scan_due { self.process_budget.unwrap_or(0) } else { 0 };
            self.cache.refresh(&mut self.proc_root, &self.live, budget, true);
        }
        let steps: Vec<CgroupStep> = kept.into_iter().map(|(step, _)| step).collect();
        let devices = match self.gpu.as_mut().map(|g| g.read()) {
            Some(Ok(devices)) => devices,
            Some(Err(err)) => {
                self.gpu_failures += 1;
                if self.gpu_failures == 1 || self.gpu_failures.is_multiple_of(100) {
                    tracing::warn!(error = %err, failures = self.gpu_failures, "GPU reading failed");
                }
                Vec::new()
            }
            None => Vec::new(),
        };
        let mut out = Vec::with_capacity(steps.len());
        for step in steps {
            let mut reading = self.read_step(&step, at);
            if self.gpu.is_some() {
                let allocated = self.allocated_gpus_of(&step);
                reading.gpus = attribute(&devices, &step.pids, &allocated, at);
            }
            out.push(reading);
        }
        let live: HashSet<(JobId, StepId)> = out.iter().map(|r| (r.job, r.step)).collect();
        self.allocated_gpus.retain(|k, _| live.contains(k));
        self.attribute_energy(&mut out);
        self.energy.retain(|k, _| live.contains(k));
        Ok(out)
    }

    /// Splits the node's RAPL energy of the interval between the steps (`rapl::split`) and
    /// adds each share to the step's cumulative figure.
    fn attribute_energy(&mut self, out: &mut [StepReading]) {
        let Some(meter) = self.rapl.as_mut() else { return };
        let interval = meter.interval();
        let uses: Vec<(u64, u64)> = out
            .iter()
            .map(|r| {
                let cpu = r.sample.cpu_user_cs.saturating_add(r.sample.cpu_sys_cs);
                let before = self.energy.get(&(r.job, r.step)).map_or(cpu, |e| e.1);
                (cpu.saturating_sub(before), r.sample.resident_kib)
            })
            .collect();
        let shares = interval.map(|i| super::rapl::split(i, &uses));
        for (i, r) in out.iter_mut().enumerate() {
            let cpu = r.sample.cpu_user_cs.saturating_add(r.sample.cpu_sys_cs);
            let entry = self.energy.entry((r.job, r.step)).or_insert((0, cpu));
            entry.0 = entry.0.saturating_add(shares.as_ref().map_or(0, |s| s[i]));
            entry.1 = cpu;
            r.sample.energy_mj = entry.0;
        }
    }

    /// `proctrack/linuxproc`: every process is read (its CPU time has no other source), then
    /// steps are the slurmstepd trees among them. Titles are read once per slurmstepd.
    fn steps_from_process_tree(&mut self) -> Result<Vec<CgroupStep>, SampleError> {
        let mut pids = self.proc_root.pids()?;
        pids.sort_unstable();
        self.live.clear();
        self.live.extend(pids.iter().map(|&pid| (pid, true)));
        self.cache.refresh(&mut self.proc_root, &self.live, 0, true);
        let (proc_root, titles) = (&mut self.proc_root, &mut self.stepd_titles);
        let steps = steps_from_readings(self.cache.readings(), |r| {
            *titles
                .entry((r.pid, r.start_ticks))
                .or_insert_with(|| proc_root.cmdline(r.pid).as_deref().and_then(super::proctree::parse_stepd_title))
        });
        let stepds: HashSet<(u32, u64)> =
            self.cache.readings().filter(|r| r.comm == "slurmstepd").map(|r| (r.pid, r.start_ticks)).collect();
        self.stepd_titles.retain(|k, _| stepds.contains(k));
        Ok(steps)
    }

    fn read_step(&self, step: &CgroupStep, at: u64) -> StepReading {
        let mut ticks_user = 0u64;
        let mut ticks_sys = 0u64;
        let mut rss_pages = 0u64;
        let mut sample = StepSample { at, cpus: step.cpus, ..StepSample::default() };
        let mut read_bytes = 0u64;
        let mut write_bytes = 0u64;
        let mut apps = BTreeSet::new();
        for &pid in &step.pids {
            let Some(p) = self.cache.get(pid) else {
                continue; // ended between the listing and the read
            };
            ticks_user += p.utime_ticks + p.cutime_ticks;
            ticks_sys += p.stime_ticks + p.cstime_ticks;
            rss_pages += p.rss_pages;
            sample.minor_faults += p.minor_faults;
            sample.major_faults += p.major_faults;
            sample.threads += p.threads;
            sample.processes += 1;
            read_bytes += p.read_bytes;
            write_bytes += p.write_bytes;
            if !self.ignored_apps.contains(&p.comm) && !apps.contains(&p.comm) {
                apps.insert(p.comm.clone());
            }
        }
        match step.counters.cpu_us() {
            Some((user_us, sys_us)) => (sample.cpu_user_cs, sample.cpu_sys_cs) = (user_us / 10_000, sys_us / 10_000),
            None => {
                let tck = self.proc_root.clk_tck();
                (sample.cpu_user_cs, sample.cpu_sys_cs) = (ticks_user * 100 / tck, ticks_sys * 100 / tck);
            }
        }
        if let Some((minor, major)) = step.counters.faults() {
            (sample.minor_faults, sample.major_faults) = (minor, major);
        }
        sample.rss_kib = rss_pages * self.proc_root.page_kib();
        sample.read_kib = read_bytes / 1024;
        sample.write_kib = write_bytes / 1024;
        sample.mem_current_kib = step.mem_current_kib.unwrap_or(0);
        sample.mem_peak_kib = step.mem_peak_kib.unwrap_or(0);
        match step.mem_split {
            Some(split) => (sample.resident_kib, sample.cache_kib) = (split.resident_kib, split.cache_kib),
            None => sample.resident_kib = sample.rss_kib,
        }
        StepReading {
            job: step.job,
            step: step.step,
            uid: step.uid,
            sample,
            apps,
            cpu_from_cgroup: step.counters.cpu_us().is_some(),
            gpus: Vec::new(),
        }
    }

    fn allocated_gpus_of(&mut self, step: &CgroupStep) -> Vec<u32> {
        if let Some(known) = self.allocated_gpus.get(&(step.job, step.step)) {
            return known.clone();
        }
        // The first process with a SLURM environment (slurmstepd itself has none).
        let found = step.pids.iter().find_map(|&pid| {
            let env = self.proc_root.environ(pid)?;
            env.iter().any(|(k, _)| k == "SLURM_JOB_ID").then(|| allocated_from_environ(&env))
        });
        match found {
            Some(list) => {
                self.allocated_gpus.insert((step.job, step.step), list.clone());
                list
            }
            None => Vec::new(),
        }
    }
}

/// Cores in use between two samples of one step: CPU time used over wall time elapsed.
pub fn cores_in_use(before: &StepSample, after: &StepSample, wall_secs: f64) -> f64 {
    if wall_secs <= 0.0 {
        return 0.0;
    }
    let cs = (after.cpu_user_cs + after.cpu_sys_cs).saturating_sub(before.cpu_user_cs + before.cpu_sys_cs);
    cs as f64 / 100.0 / wall_secs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::gpu::RecordedSource;
    use std::path::PathBuf;

    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
    }

    #[test]
    fn a_step_sums_its_processes_and_names_its_applications() {
        let proc_root = ProcRoot::with_units(fixtures().join("proc"), 100, 4);
        let finder = StepFinder::detect(&fixtures().join("cgroup/v1"), "n2");
        assert_eq!(finder.name(), "cgroup_v1");
        let ignored: Vec<String> = ["slurmstepd", "slurm_script", "srun", "turingwatch"].map(String::from).to_vec();
        let mut sampler = Sampler::new(proc_root, finder, &ignored, None);
        let readings = sampler.sample(1_700_000_000).unwrap();
        let batch = readings.iter().find(|r| r.step == StepId::BATCH).unwrap();
        // cgroup v1 step_batch lists 31511 (slurmstepd), 31515 (slurm_script), 31516 (python3).
        // proc/<pid>/stat utime+cutime: 1+0, 2+3, 1500+0 → 1506 ticks at 100 Hz = 1506 cs;
        // stime+cstime: 1+0, 1+1, 20+0 → 23 cs.
        assert_eq!((batch.sample.cpu_user_cs, batch.sample.cpu_sys_cs), (1506, 23));
        // rss pages 1000 + 800 + 76800 at 4 KiB
        assert_eq!(batch.sample.rss_kib, (1000 + 800 + 76_800) * 4);
        // minflt+cminflt (+ majflt+cmajflt): 10+0, 20+5, 80000+0 | 1+0, 0+0, 3+0
        assert_eq!((batch.sample.minor_faults, batch.sample.major_faults), (80_035, 4));
        // threads 4 + 1 + 2; processes 3; rchar 6976+0+2097152 (io of 31515 unreadable → 0)
        assert_eq!((batch.sample.threads, batch.sample.processes), (7, 3));
        assert_eq!(batch.sample.read_kib, (6976 + 2_097_152) / 1024);
        assert_eq!(batch.sample.cpus, 2);
        assert_eq!(batch.sample.mem_current_kib, 307_200);
        assert_eq!(batch.apps.iter().collect::<Vec<_>>(), ["python3"]);
        assert_eq!(batch.uid, Some(1001));
        // step_0's pids 40000, 40001 are not in proc/: vanished processes are skipped, not errors.
        let step0 = readings.iter().find(|r| r.step == StepId(0)).unwrap();
        assert_eq!(step0.sample.processes, 0);
        // ...but its cgroup counted CPU time and faults, exited processes included:
        // cpuacct/.../step_0/cpuacct.stat user 250, system 50 ticks (USER_HZ of this host);
        // memory/.../step_0/memory.stat total_pgfault 5000, total_pgmajfault 7.
        let tck = crate::sample::procfs::host_clk_tck();
        assert_eq!((step0.sample.cpu_user_cs, step0.sample.cpu_sys_cs), (250 * 100 / tck, 50 * 100 / tck));
        assert_eq!((step0.sample.minor_faults, step0.sample.major_faults), (4_993, 7));
        // memory.stat total_rss 2 MiB, total_cache 0: resident from the cgroup, no cache.
        assert_eq!((step0.sample.resident_kib, step0.sample.cache_kib), (2_048, 0));
        // step_batch has no memory.stat: resident memory is the processes' RSS.
        assert_eq!(batch.sample.resident_kib, batch.sample.rss_kib);
    }

    #[test]
    fn rapl_energy_goes_to_the_steps_by_their_share_and_accumulates() {
        // A copy of the powercap fixture whose DRAM counter moves by 3 J between two samples;
        // the package counter does not, and the fixtures' CPU counters do not move either.
        let root = std::env::temp_dir().join(format!("tw-collect-rapl-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for zone in ["intel-rapl:0", "intel-rapl:0:2"] {
            let (from, to) = (fixtures().join("powercap").join(zone), root.join(zone));
            std::fs::create_dir_all(&to).unwrap();
            for f in ["name", "energy_uj", "max_energy_range_uj"] {
                std::fs::copy(from.join(f), to.join(f)).unwrap();
            }
        }
        let proc_root = ProcRoot::with_units(fixtures().join("proc"), 100, 4);
        let finder = StepFinder::detect(&fixtures().join("cgroup/v1"), "n2");
        let mut sampler = Sampler::new(proc_root, finder, &[], None).with_rapl(&root);
        let first = sampler.sample(1_700_000_000).unwrap();
        assert!(first.iter().all(|r| r.sample.energy_mj == 0), "the first reading only sets the baseline");
        let dram = root.join("intel-rapl:0:2/energy_uj");
        let before: u64 = std::fs::read_to_string(&dram).unwrap().trim().parse().unwrap();
        std::fs::write(&dram, (before + 3_000_000).to_string()).unwrap();
        let second = sampler.sample(1_700_000_020).unwrap();
        let total: u64 = second.iter().map(|r| r.sample.energy_mj).sum();
        assert!((2_998..=3_000).contains(&total), "3 J of DRAM energy split between the steps: {total} mJ");
        // By resident memory: each step gets its share of the steps' resident memory.
        let batch = second.iter().find(|r| r.step == StepId::BATCH).unwrap().sample.clone();
        let all: u64 = second.iter().map(|r| r.sample.resident_kib).sum();
        let share = batch.resident_kib as f64 / all as f64;
        assert!((batch.energy_mj as f64 - 3_000.0 * share).abs() <= 1.0, "{batch:?}");
        std::fs::write(&dram, (before + 6_000_000).to_string()).unwrap();
        let third = sampler.sample(1_700_000_040).unwrap();
        assert!(third.iter().map(|r| r.sample.energy_mj).sum::<u64>() >= 5_996, "cumulative per step");
    }

    #[test]
    fn steps_whose_cgroup_counts_cpu_are_listed_on_the_scan_cadence_others_every_sample() {
        let dir = std::env::temp_dir().join(format!("tw-scan-cadence-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let scope = dir.join("system.slice/slurmstepd.scope");
        let counted = scope.join("job_1/step_0");
        let uncounted = scope.join("job_2/step_0");
        for d in [&counted, &uncounted] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::write(d.join("cgroup.procs"), "31516\n").unwrap();
        }
        std::fs::write(scope.join("cgroup.controllers"), "cpuset cpu memory\n").unwrap();
        std::fs::write(counted.join("cpu.stat"), "usage_usec 3\nuser_usec 2\nsystem_usec 1\n").unwrap();
        let proc_root = ProcRoot::with_units(fixtures().join("proc"), 100, 4);
        let finder = StepFinder::detect(&dir, "n1");
        assert_eq!(finder.name(), "cgroup_v2");
        let mut sampler = Sampler::new(proc_root, finder, &[], None).with_scan_every(3);
        let processes =
            |readings: &[StepReading]| -> Vec<u32> { readings.iter().map(|r| r.sample.processes).collect() };
        assert_eq!(processes(&sampler.sample(1).unwrap()), [1, 1]);
        // A second process joins both steps (proc/ fixture pid 31517).
        for d in [&counted, &uncounted] {
            std::fs::write(d.join("cgroup.procs"), "31516\n31517\n").unwrap();
        }
        // Samples 2 and 3: job 1 (CPU counted by its cgroup) keeps its listing; job 2 is listed.
        assert_eq!(processes(&sampler.sample(2).unwrap()), [1, 2]);
        let third = sampler.sample(3).unwrap();
        assert_eq!(processes(&third), [1, 2]);
        assert_eq!(third[0].sample.cpu_user_cs, 0, "2 µs of user time is 0 cs, taken from cpu.stat");
        // Sample 4: the scan is due, job 1 is listed again.
        assert_eq!(processes(&sampler.sample(4).unwrap()), [2, 2]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_process_tree_finder_reads_each_process_once_and_names_steps() {
        let proc_root = ProcRoot::with_units(fixtures().join("proc"), 100, 4);
        let mut sampler = Sampler::new(proc_root, StepFinder::ProcTree, &[], None);
        for at in [1, 2] {
            let readings = sampler.sample(at).unwrap();
            let ids: Vec<String> = readings.iter().map(|r| format!("{}.{}", r.job, r.step)).collect();
            assert_eq!(ids, ["14.batch", "14.extern"]);
            // 14.batch = 31511, 31515, 31516, 31517 (proc/ fixture): CPU from the processes.
            assert_eq!(readings[0].sample.processes, 4);
            assert!(readings[0].sample.cpu_user_cs >= 1506);
        }
    }

    #[test]
    fn skipped_steps_are_left_out_and_gpus_are_attributed() {
        let proc_root = ProcRoot::with_units(fixtures().join("proc"), 100, 4);
        let finder = StepFinder::detect(&fixtures().join("cgroup/v1"), "n2");
        let gpu = RecordedSource::load(&fixtures().join("nvml/two_gpus.json")).unwrap();
        let mut sampler =
            Sampler::new(proc_root, finder, &[], Some(Box::new(gpu))).skipping(|_, step, _| step == StepId::EXTERN);
        let readings = sampler.sample(1).unwrap();
        assert!(readings.iter().all(|r| r.step != StepId::EXTERN));
        let batch = readings.iter().find(|r| r.step == StepId::BATCH).unwrap();
        // proc/31516/environ: SLURM_JOB_ID=14, SLURM_STEP_GPUS=0,1; two_gpus.json: pid 31516 on GPU 0.
        assert_eq!(batch.gpus.len(), 2);
        assert!(batch.gpus[0].in_use_by_step && !batch.gpus[1].in_use_by_step);
    }

    #[test]
    fn the_sampler_defaults_are_the_configuration_defaults() {
        let scrape = turingwatch_config::Config::default().scrape;
        assert_eq!(scrape.process_rereads_per_scan as usize, DEFAULT_PROCESS_BUDGET);
        assert_eq!(scrape.process_scan_every, DEFAULT_SCAN_EVERY);
    }

    #[test]
    fn cores_in_use_is_cpu_time_over_wall_time() {
        let a = StepSample { cpu_user_cs: 100, cpu_sys_cs: 0, ..Default::default() };
        let b = StepSample { cpu_user_cs: 290, cpu_sys_cs: 10, ..Default::default() };
        assert!((cores_in_use(&a, &b, 2.0) - 1.0).abs() < 1e-9);
        assert_eq!(cores_in_use(&b, &a, 2.0), 0.0);
        assert_eq!(cores_in_use(&a, &b, 0.0), 0.0);
    }
}
