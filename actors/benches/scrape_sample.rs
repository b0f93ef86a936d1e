//! Cost of one scraper sample with 1 000 processes on the node (goal: ≤ 1 ms CPU per sample,
//! i.e. ≤ 0.1 % of a core at 1 Hz).
//!
//! Spawns 1 000 `sleep` processes, lists them as one job step in a cgroup v1 tree laid out as
//! SLURM makes it (in a temporary directory), and samples that step from the real /proc many
//! times, measuring this process's CPU time (getrusage) per sample. Also measures the
//! process-tree finder (`proctrack/linuxproc` clusters), which reads every process's stat.
//! Run: `cargo bench -p turingwatch --bench scrape_sample`.

use std::process::{Child, Command, Stdio};
use std::time::Instant;
use turingwatch::sample::collect::{Sampler, StepFinder};
use turingwatch::sample::procfs::ProcRoot;

const PROCESSES: usize = 1_000;
const SAMPLES: u32 = 300;

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

fn main() {
    let mut sleepers: Vec<Child> =
        (0..PROCESSES).map_while(|_| Command::new("sleep").arg("600").stdout(Stdio::null()).spawn().ok()).collect();
    let pids: Vec<u32> = sleepers.iter().map(Child::id).collect();
    let dir = std::env::temp_dir().join(format!("turingwatch-bench-{}", std::process::id()));
    let step = dir.join("cpuset/slurm_bench/uid_0/job_1/step_0");
    if std::fs::create_dir_all(&step).is_ok() {
        let procs: String = pids.iter().map(|p| format!("{p}\n")).collect();
        let _ = std::fs::write(step.join("cgroup.procs"), procs);
        let _ = std::fs::write(step.join("cpuset.effective_cpus"), "0-1\n");
        println!("{} processes in one step", pids.len());
        let finder = StepFinder::detect(&dir, "bench");
        let mut sampler = Sampler::new(ProcRoot::new("/proc"), finder, &[], None);
        measure("cgroup v1 step of 1000 processes", &mut sampler, Some(pids.len() as u32));
        // Where the time goes: the kernel formatting /proc/<pid>/stat and /proc/<pid>/io.
        for (label, with_io) in [("stat only", false), ("stat + io", true)] {
            let mut proc_root = ProcRoot::new("/proc");
            let cpu0 = cpu_secs();
            for _ in 0..SAMPLES {
                for &pid in &pids {
                    std::hint::black_box(proc_root.read_process(pid, with_io));
                }
            }
            let per = (cpu_secs() - cpu0) / f64::from(SAMPLES) / pids.len() as f64;
            println!("per process, {label}: {:.1} µs CPU", per * 1e6);
        }
        let mut tree = Sampler::new(ProcRoot::new("/proc"), StepFinder::ProcTree, &[], None);
        measure("process-tree finder (whole /proc scan)", &mut tree, None);
    }
    for child in &mut sleepers {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
