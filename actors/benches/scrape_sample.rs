//! Cost of one scraper sample with 1 000 processes on the node (goal: ≤ 1 ms CPU per sample,
//! i.e. ≤ 0.1 % of a core at 1 Hz).
//!
//! Spawns 1 000 `sleep` processes and makes them one job step in real cgroup v1 controllers
//! (cpuset, cpuacct, memory under `/sys/fs/cgroup/<c>/slurm_twbench/uid_0/job_1/step_0`, as
//! SLURM lays them out with `jobacct_gather/cgroup`) when run as root on a v1 host; otherwise in
//! a directory tree of the same layout (then the cgroup counters are absent and every process is
//! read every sample). Samples that step from the real /proc many times and measures this
//! process's CPU time (getrusage) per sample:
//! - the product's default: CPU time, faults and memory from the cgroup every sample; the step's
//!   processes listed and read every 4th sample (`scrape.process_scan_every`), new ones at once,
//!   known ones 32 per scan round-robin (`scrape.process_rereads_per_scan`);
//! - every process read every sample (what a step whose cgroup does not count CPU costs);
//! - one process's `stat` and `io` with this crate's reader and with the `procfs` crate;
//! - the process-tree finder (`proctrack/linuxproc`), which must read every process.
//!
//! Run (as root for real cgroups): `cargo bench -p turingwatch --bench scrape_sample`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;
use turingwatch::sample::collect::{Sampler, StepFinder, DEFAULT_PROCESS_BUDGET, DEFAULT_SCAN_EVERY};
use turingwatch::sample::procfs::ProcRoot;

const PROCESSES: usize = 1_000;
const SAMPLES: u32 = 300;
const NODE: &str = "twbench";
const STEP: &str = "uid_0/job_1/step_0";

fn cpu_secs() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a full rusage into the valid, writable buffer we pass.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return 0.0;
    }
    // SAFETY: getrusage succeeded, so the buffer is initialised.
    let usage = unsafe { usage.assume_init() };
    let secs = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn measure(name: &str, sampler: &mut Sampler, expect_processes: Option<u32>) {
    let first = sampler.sample(0).unwrap_or_default();
    if let Some(n) = expect_processes {
        let seen: u32 = first.iter().map(|r| r.sample.processes).sum();
        assert_eq!(seen, n, "{name}: the step should hold every sleeper");
    }
    let cpu0 = cpu_secs();
    let wall0 = Instant::now();
    for i in 0..SAMPLES {
        let readings = sampler.sample(u64::from(i)).unwrap_or_default();
        std::hint::black_box(readings);
    }
    let cpu = (cpu_secs() - cpu0) / f64::from(SAMPLES);
    let wall = wall0.elapsed().as_secs_f64() / f64::from(SAMPLES);
    println!(
        "{name}: {:.3} ms CPU per sample ({:.3} ms wall) = {:.3} % of a core at 1 Hz",
        cpu * 1e3,
        wall * 1e3,
        cpu * 100.0
    );
}

/// Real v1 cgroups for the step, when this host has writable v1 controllers. Returns the root.
fn real_cgroups(pids: &[u32]) -> Option<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    for controller in ["cpuset", "cpuacct", "memory"] {
        let mut dir = root.join(controller);
        if !dir.join("cgroup.procs").is_file() {
            return None;
        }
        for part in std::iter::once(format!("slurm_{NODE}")).chain(STEP.split('/').map(String::from)) {
            let parent = dir.clone();
            dir = dir.join(part);
            std::fs::create_dir_all(&dir).ok()?;
            if controller == "cpuset" {
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    let value = std::fs::read_to_string(parent.join(file)).ok()?;
                    std::fs::write(dir.join(file), value.trim()).ok()?;
                }
            }
        }
        for pid in pids {
            std::fs::write(dir.join("cgroup.procs"), pid.to_string()).ok()?;
        }
    }
    Some(root.to_path_buf())
}

fn remove_real_cgroups() {
    for controller in ["cpuset", "cpuacct", "memory"] {
        let mut dirs = vec![PathBuf::from(format!("/sys/fs/cgroup/{controller}/slurm_{NODE}"))];
        for part in STEP.split('/') {
            let next = dirs[dirs.len() - 1].join(part);
            dirs.push(next);
        }
        for dir in dirs.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The same layout in a plain directory: processes listed, no counters.
fn fake_cgroups(pids: &[u32], dir: &Path) -> Option<PathBuf> {
    let step = dir.join("cpuset").join(format!("slurm_{NODE}")).join(STEP);
    std::fs::create_dir_all(&step).ok()?;
    let procs: String = pids.iter().map(|p| format!("{p}\n")).collect();
    std::fs::write(step.join("cgroup.procs"), procs).ok()?;
    std::fs::write(step.join("cpuset.effective_cpus"), "0-1\n").ok()?;
    Some(dir.to_path_buf())
}

fn per_process_costs(pids: &[u32]) {
    let rounds = 100;
    for (label, with_io) in [("stat", false), ("stat + io", true)] {
        let mut proc_root = ProcRoot::new("/proc");
        let cpu0 = cpu_secs();
        for _ in 0..rounds {
            for &pid in pids {
                std::hint::black_box(proc_root.read_process(pid, with_io));
            }
        }
        let per = (cpu_secs() - cpu0) / f64::from(rounds) / pids.len() as f64;
        println!("per process, {label}, this crate's reader: {:.1} µs CPU", per * 1e6);
    }
    let cpu0 = cpu_secs();
    for _ in 0..rounds {
        for &pid in pids {
            let process = procfs::process::Process::new(pid as i32);
            std::hint::black_box(process.map(|p| (p.stat().ok(), p.io().ok())).ok());
        }
    }
    let per = (cpu_secs() - cpu0) / f64::from(rounds) / pids.len() as f64;
    println!("per process, stat + io, procfs crate: {:.1} µs CPU", per * 1e6);
}

fn main() {
    let mut sleepers: Vec<Child> =
        (0..PROCESSES).map_while(|_| Command::new("sleep").arg("600").stdout(Stdio::null()).spawn().ok()).collect();
    let pids: Vec<u32> = sleepers.iter().map(Child::id).collect();
    println!("{} processes in one step", pids.len());
    let scratch = std::env::temp_dir().join(format!("turingwatch-bench-{}", std::process::id()));
    let (root, real) = match real_cgroups(&pids) {
        Some(root) => (Some(root), true),
        None => {
            remove_real_cgroups();
            println!("no writable cgroup v1 controllers (not root?): a plain directory tree, no cgroup counters");
            (fake_cgroups(&pids, &scratch), false)
        }
    };
    if let Some(root) = root {
        let finder = StepFinder::detect(&root, NODE);
        let label = if real { "real cgroup v1 step (cpuset+cpuacct+memory)" } else { "directory-tree step" };
        let mut sampler = Sampler::new(ProcRoot::new("/proc"), finder.clone(), &[], None);
        measure(
            &format!(
                "{label}, default: scan every {DEFAULT_SCAN_EVERY} samples, {DEFAULT_PROCESS_BUDGET} re-reads/scan"
            ),
            &mut sampler,
            Some(pids.len() as u32),
        );
        let mut counters_only = Sampler::new(ProcRoot::new("/proc"), finder.clone(), &[], None).with_scan_every(1000);
        measure(
            &format!("{label}, samples between scans (counters only)"),
            &mut counters_only,
            Some(pids.len() as u32),
        );
        let mut every = Sampler::new(ProcRoot::new("/proc"), finder, &[], None).with_process_budget(None);
        measure(&format!("{label}, every process every sample"), &mut every, Some(pids.len() as u32));
    }
    per_process_costs(&pids);
    let mut tree = Sampler::new(ProcRoot::new("/proc"), StepFinder::ProcTree, &[], None);
    measure("process-tree finder (whole /proc, every process every sample)", &mut tree, None);
    for child in &mut sleepers {
        let _ = child.kill();
        let _ = child.wait();
    }
    if real {
        remove_real_cgroups();
    }
    let _ = std::fs::remove_dir_all(&scratch);
}
