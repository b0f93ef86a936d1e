//! Analysis speed: 100 000 jobs and 10 000 000 samples on one core.
//!
//! The analysis is a pure function over loaded data (`analysis::summary::analyze_user`), so this
//! measures it over in-memory inputs: 100 users × 1 000 jobs, each job with 100 samples (20 s
//! apart) in one series, a mix of busy, idle and memory-heavy jobs so every rule runs, and each
//! user's 1 000 jobs as the family history (right-sizing and trends run too). Inputs are built
//! per user outside the timed section and dropped after it, so memory stays small. With
//! `TW_BENCH_STORE=1` it also times the store path: the period analysis the server runs
//! (`analysis::load::analyze_period`: read from a real store a user at a time, analyse) over
//! `TW_STORE_USERS` (10) × `TW_STORE_JOBS` (1 000) jobs of 100 samples, with its peak memory
//! (the build's peak is reset first). Issue #16's goal is 100 × 10 000 jobs, 100 M samples:
//! `TW_BENCH_STORE=1 TW_STORE_USERS=100 TW_STORE_JOBS=10000 taskset -c 1 cargo bench --bench analysis`.
//! Run: `cargo bench --bench analysis` (single-threaded; the figure is wall time of the analysis).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use turingwatch::analysis::period::Period;
use turingwatch::analysis::summary::{analyze_user, JobInput, Params};
use turingwatch::job::{JobRecord, MemRequest, StepId, Tres, Usage};
use turingwatch::sample::StepSample;
use turingwatch::store::{SeriesKey, Store};

const USERS: u64 = 100;
const JOBS_PER_USER: u64 = 1_000;
const SAMPLES_PER_JOB: u64 = 100;
const PERIOD: Period = Period { start: 1_800_000_000, end: 1_800_604_800 };

fn job(id: u64, user: &str) -> JobRecord {
    let start = PERIOD.start + (id * 37) % 500_000;
    let elapsed = SAMPLES_PER_JOB * 20;
    let cpus = [1u32, 2, 4, 8][(id % 4) as usize];
    JobRecord {
        name: format!("family{}", id % 7),
        account: "dev".into(),
        partition: "debug".into(),
        qos: "normal".into(),
        time_limit_secs: Some(elapsed * 3),
        node_list: "n1".into(),
        alloc_cpus: cpus,
        req_mem: Some(MemRequest::PerNode(4 << 30)),
        req_mem_bytes: Some(4 << 30),
        alloc_tres: Tres(vec![("cpu".into(), u64::from(cpus)), ("node".into(), 1)]),
        usage: Usage {
            total_cpu_ms: elapsed * 1_000 * (id % 3),
            user_cpu_ms: elapsed * 900 * (id % 3),
            system_cpu_ms: elapsed * 100 * (id % 3),
            max_rss_bytes: Some((id % 50 + 1) << 26),
            max_rss_node: "n1".into(),
            max_rss_task: Some(0),
            ..Usage::default()
        },
        submit_line: format!("sbatch family{}.sh", id % 7),
        work_dir: "/tmp".into(),
        imported_at: start,
        ..JobRecord::finished(id, user, start, elapsed)
    }
}

fn samples(j: &JobRecord) -> Vec<StepSample> {
    let busy = j.id.0 % 3;
    (0..SAMPLES_PER_JOB)
        .map(|i| StepSample {
            at: j.start_at.unwrap() + i * 20,
            cpu_user_cs: i * 20 * 90 * busy,
            cpu_sys_cs: i * 20 * 10 * busy,
            rss_kib: (j.id.0 % 50 + 1) << 16,
            minor_faults: i * 500 * (j.id.0 % 5),
            processes: 1,
            threads: 1,
            cpus: j.alloc_cpus,
            ..StepSample::default()
        })
        .collect()
}

fn user_inputs(u: u64, per_user: u64) -> (String, Vec<JobInput>, Vec<JobRecord>) {
    let user = format!("user{u}");
    let mut inputs = Vec::new();
    let mut history = Vec::new();
    for k in 0..per_user {
        let j = job(u * per_user + k + 1, &user);
        let mut series = BTreeMap::new();
        series.insert(SeriesKey { job: j.id, step: StepId::BATCH, node: "n1".into() }, samples(&j));
        history.push(j.clone());
        inputs.push(JobInput { samples: series, ..JobInput::new(j) });
    }
    (user, inputs, history)
}

fn main() {
    let mut config = turingwatch_config::Config::default();
    config.findings.min_runtime = turingwatch_config::Span::secs(60);
    let params = Params::from_config(&config);
    let mut analysing = Duration::ZERO;
    let (mut jobs, mut sampled, mut findings) = (0usize, 0u64, 0usize);
    for u in 0..USERS {
        let (user, inputs, history) = user_inputs(u, JOBS_PER_USER);
        let t = Instant::now();
        let a = analyze_user(&user, PERIOD, &inputs, &history, &params);
        analysing += t.elapsed();
        jobs += a.jobs.len();
        sampled += a.jobs.iter().map(|j| j.samples).sum::<u64>();
        findings += a.jobs.iter().map(|j| j.findings.len()).sum::<usize>();
    }
    println!(
        "in memory: {jobs} jobs, {sampled} samples, {findings} findings analysed in {:.2} s on one core ({:.1} µs/job)",
        analysing.as_secs_f64(),
        analysing.as_secs_f64() * 1e6 / jobs as f64
    );
    if std::env::var("TW_BENCH_STORE").is_ok_and(|v| v == "1") {
        store_path(&params);
    }
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Peak resident memory of this process so far, MiB (`VmHWM`).
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// The store path: write the jobs and samples, then time the server's period analysis.
fn store_path(params: &Params) {
    let users = env("TW_STORE_USERS", 10);
    let per_user = env("TW_STORE_JOBS", JOBS_PER_USER);
    let dir = std::env::temp_dir().join(format!("tw-bench-analysis-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bench.redb");
    let store = Store::open(&path).unwrap();
    let t = Instant::now();
    for u in 0..users {
        let (_, inputs, _) = user_inputs(u, per_user);
        let jobs: Vec<JobRecord> = inputs.iter().map(|i| i.job.clone()).collect();
        store.upsert_jobs(&jobs, &[], None).unwrap();
        // 1 000 jobs (100 000 samples) per write transaction.
        for chunk in inputs.chunks(1_000) {
            let rows: Vec<_> = chunk
                .iter()
                .flat_map(|i| i.samples.iter().flat_map(|(k, v)| v.iter().map(|s| (k.job, k.step, s.clone()))))
                .collect();
            store.append_samples("n1", &rows).unwrap();
        }
    }
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "store written: {} jobs, {} samples in {:.1} s, file {:.0} MB",
        users * per_user,
        users * per_user * SAMPLES_PER_JOB,
        t.elapsed().as_secs_f64(),
        size as f64 / 1e6
    );
    // Forget the build's peak: what is measured below is the analysis alone (Linux: clear_refs 5).
    let build_peak = peak_rss_mib();
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let t = Instant::now();
    let result = turingwatch::analysis::load::analyze_period(&store, PERIOD, &[], params).unwrap();
    let elapsed = t.elapsed().as_secs_f64();
    let jobs: usize = result.values().map(|a| a.jobs.len()).sum();
    let samples: u64 = result.values().flat_map(|a| a.jobs.iter().map(|j| j.samples)).sum();
    println!(
        "through the store: {jobs} jobs, {samples} samples read and analysed in {elapsed:.2} s, peak RSS {:.0} MiB (the write's peak was {build_peak:.0} MiB)",
        peak_rss_mib()
    );
    drop(result);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
