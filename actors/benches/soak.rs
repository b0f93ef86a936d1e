//! Soak: months of a cluster in compressed time, to show that retention bounds the store.
//!
//! Two modes (`TW_SOAK_MODE`, default `ingest` above 10 nodes, else `direct`):
//!
//! * `direct` (the bytes-per-node-per-day figure): every node runs one job a day with
//!   `TW_SOAK_STEPS` (10) steps sampled every 20 s all day, written straight into the store
//!   (`upsert_jobs`, `append_samples`). Per-node figures do not depend on the node count
//!   (every series is its own blocks), so `TW_SOAK_NODES` defaults to 10.
//! * `ingest` (the 1 000-node figure): the server's own write paths with synthetic timestamps.
//!   Every node runs `TW_SOAK_JOBS` (3) jobs a day back to back, each with `TW_SOAK_STEPS` (1)
//!   steps, users drawn from a pool of `TW_SOAK_USERS` (200), one application per step. Jobs
//!   are imported as the accounting import does (`Store::upsert_jobs`: running when they start,
//!   finished with their end time when they end); samples every `TW_SOAK_INTERVAL` (600) s
//!   arrive as one report per node per `TW_SOAK_REPORT_SECS` (14400) s of samples through the
//!   group-commit ingest path (`Store::store_reports`, `TW_SOAK_GROUP` (64) reports a commit,
//!   plausibility checked, each with its sender and report id, so `reports_seen` grows). The
//!   coarse defaults (a sample every 10 min, a report every 4 h) make 180 days of 1 000 nodes
//!   take about 15 minutes on 2 cores; the bytes per sample are the `direct` mode's figure.
//!
//! After each day, both modes run the daily passes the server runs with a synthetic `now`:
//! `Store::prune_reports_seen` (7 days, as `actors::system`) and `Store::apply_retention`
//! (raw retention `TW_SOAK_RAW_DAYS`, default the config's; summaries `TW_SOAK_SUMMARY_DAYS`
//! (60); jobs `TW_SOAK_JOB_DAYS` (= summary days)). The defaults put every retention window
//! inside 180 days, so growth must be flat after day 60. At days 30, 90 and 180 it prints the
//! store file size, the rows of every growing table, and the time and peak RSS of the period
//! analysis the server runs (`analysis::load::analyze_period`) over the last 7 days, with the
//! jobs it analysed. Run by `scripts/bench/soak.sh`.

#![allow(clippy::unwrap_used)]

use std::time::Instant;
use turingwatch::analysis::period::Period;
use turingwatch::analysis::summary::Params;
use turingwatch::job::{JobId, JobRecord, StepId};
use turingwatch::sample::plausible::Limits;
use turingwatch::sample::StepSample;
use turingwatch::store::{BatchContent, Checks, RetentionPolicy, ScraperReport, Store};

const DAY: u64 = 86_400;
const T0: u64 = 1_800_000_000 - 1_800_000_000 % DAY;
const INTERVAL: u64 = 20;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// One day of one step on one node: busy CPU with noise, memory that drifts, some I/O.
fn step_samples(rng: &mut Rng, start: u64, cpus: u32) -> Vec<StepSample> {
    let (mut user, mut sys, mut rss, mut faults, mut read, mut write, mut energy) = (0u64, 0, 2_000_000, 0, 0, 0, 0);
    (0..DAY / INTERVAL - 3)
        .map(|i| {
            user += INTERVAL * 100 * u64::from(cpus) * (60 + rng.next() % 40) / 100;
            sys += rng.next() % 40;
            rss = (rss + rng.next() % 4_096).saturating_sub(2_000);
            faults += rng.next() % 500;
            read += rng.next() % 2_048;
            write += rng.next() % 1_024;
            energy += 20 * 150_000 + rng.next() % 100_000;
            StepSample {
                at: start + 30 + i * INTERVAL,
                cpu_user_cs: user,
                cpu_sys_cs: sys,
                rss_kib: rss,
                mem_current_kib: rss + 100_000,
                mem_peak_kib: rss + 200_000,
                minor_faults: faults,
                read_kib: read,
                write_kib: write,
                threads: cpus + (rng.next() % 3) as u32,
                processes: 1,
                cpus,
                resident_kib: rss,
                cache_kib: 50_000 + rng.next() % 1_000,
                energy_mj: energy,
                ..StepSample::default()
            }
        })
        .collect()
}

fn main() {
    let nodes = env("TW_SOAK_NODES", 10);
    let mode = std::env::var("TW_SOAK_MODE").unwrap_or_else(|_| if nodes > 10 { "ingest" } else { "direct" }.into());
    let days = env("TW_SOAK_DAYS", 180);
    let config = turingwatch_config::Config::default();
    let raw = env("TW_SOAK_RAW_DAYS", config.store.raw_retention_secs(&config.analysis) / DAY) * DAY;
    let summary = env("TW_SOAK_SUMMARY_DAYS", 60) * DAY;
    let job_days = env("TW_SOAK_JOB_DAYS", summary / DAY) * DAY;
    let policy = RetentionPolicy::new(raw, summary).with_job_retention(job_days);
    let params = Params::from_config(&config);
    let dir = std::env::temp_dir().join(format!("tw-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("soak.redb");
    let store = Store::open(&path).unwrap();
    let soak = Soak { store: &store, path: &path, nodes, days, policy, params };
    match mode.as_str() {
        "direct" => direct(&soak, env("TW_SOAK_STEPS", 10) as u32),
        "ingest" => ingest(&soak),
        other => panic!("TW_SOAK_MODE {other}: direct or ingest"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

struct Soak<'a> {
    store: &'a Store,
    path: &'a std::path::Path,
    nodes: u64,
    days: u64,
    policy: RetentionPolicy,
    params: Params,
}

/// The full-rate mode: samples straight into the store (the bytes-per-node-per-day figure).
fn direct(soak: &Soak<'_>, steps: u32) {
    let Soak { store, path, nodes, days, policy, ref params } = *soak;
    let (raw, summary) = (policy.raw_retention, policy.summary_retention);
    println!(
        "soak: {nodes} nodes x {steps} steps, one job per node per day, a sample every {INTERVAL} s, {days} days; \
         raw_retention {} d, summary_retention {} d",
        raw / DAY,
        summary / DAY
    );
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut write_s, mut retention_s) = (0f64, 0f64);
    for day in 0..days {
        let start = T0 + day * DAY;
        let jobs: Vec<JobRecord> = (0..nodes)
            .map(|n| JobRecord {
                node_list: format!("node{n:04}"),
                alloc_cpus: 4 * steps,
                ..JobRecord::finished(day * nodes + n + 1, &format!("user{}", n % 20), start, DAY - 10)
            })
            .collect();
        let t = Instant::now();
        store.upsert_jobs(&jobs, &[], None).unwrap();
        for (n, job) in jobs.iter().enumerate() {
            let mut rows = Vec::new();
            for s in 0..steps {
                for sample in step_samples(&mut rng, start, 4) {
                    rows.push((JobId(job.id.0), StepId(s), sample));
                }
            }
            store.append_samples(&format!("node{n:04}"), &rows).unwrap();
        }
        write_s += t.elapsed().as_secs_f64();
        let now = start + DAY;
        let t = Instant::now();
        store.prune_reports_seen(now - 7 * DAY).unwrap();
        store.apply_retention(now, &policy).unwrap();
        retention_s += t.elapsed().as_secs_f64();
        let d = day + 1;
        if [30, 90, 180].contains(&d) || d == days {
            let f = store.retention_footprint().unwrap();
            let file = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            let series_days = (nodes * u64::from(steps)) as f64;
            let raw_days = f.raw_blocks as f64 / series_days / 24.0;
            let summary_days = f.summaries as f64 / series_days;
            let per = |bytes: u64, days: f64| if days > 0.0 { bytes as f64 / nodes as f64 / days / 1e6 } else { 0.0 };
            let t = Instant::now();
            let period = Period { start: now - 7 * DAY, end: now };
            let analysed = turingwatch::analysis::load::analyze_period(store, period, &[], params).unwrap();
            let analysis = t.elapsed().as_secs_f64();
            let jobs: usize = analysed.values().map(|a| a.jobs.len()).sum();
            println!(
                "day {d:3}: file {:7.1} MB ({:5.2} MB/node); raw {:5.1} days held, {:.3} MB/node/day; \
                 summaries {:5.1} days held, {:.4} MB/node/day; analysis of the last 7 d ({jobs} jobs) {:.2} s; \
                 so far: writing {:.0} s, retention {:.1} s",
                file as f64 / 1e6,
                file as f64 / 1e6 / nodes as f64,
                raw_days,
                per(f.raw_bytes, raw_days),
                summary_days,
                per(f.summary_bytes, summary_days),
                analysis,
                write_s,
                retention_s
            );
        }
    }
}

/// Cumulative counters of one step's series, advanced one sample at a time.
#[derive(Default, Clone)]
struct Series {
    /// Time of the last sample (the job's start before the first).
    last: u64,
    user: u64,
    sys: u64,
    rss: u64,
    faults: u64,
    read: u64,
    write: u64,
    energy: u64,
}

impl Series {
    fn sample(&mut self, rng: &mut Rng, at: u64, cpus: u32) -> StepSample {
        let interval = at - self.last;
        self.last = at;
        self.user += interval * 100 * u64::from(cpus) * (60 + rng.next() % 40) / 100;
        self.sys += rng.next() % 40;
        self.rss = (self.rss.max(2_000_000) + rng.next() % 4_096).saturating_sub(2_000);
        self.faults += rng.next() % 500;
        self.read += rng.next() % 2_048;
        self.write += rng.next() % 1_024;
        self.energy += interval * 150_000 + rng.next() % 100_000;
        StepSample {
            at,
            cpu_user_cs: self.user,
            cpu_sys_cs: self.sys,
            rss_kib: self.rss,
            mem_current_kib: self.rss + 100_000,
            mem_peak_kib: self.rss + 200_000,
            minor_faults: self.faults,
            read_kib: self.read,
            write_kib: self.write,
            threads: cpus + (rng.next() % 3) as u32,
            processes: 1,
            cpus,
            resident_kib: self.rss,
            cache_kib: 50_000 + rng.next() % 1_000,
            energy_mj: self.energy,
            ..StepSample::default()
        }
    }
}

/// Peak RSS of this process (kB) since the last [`reset_peak_rss`], if Linux tells.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resets the peak RSS to the current RSS (`clear_refs` 5, Linux 4.0 on).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

const APPS: [&str; 6] = ["python3", "lmp", "gmx_mpi", "vasp_std", "julia", "Rscript"];

/// The server's write paths at fleet scale: see the module docs.
fn ingest(soak: &Soak<'_>) {
    let Soak { store, path, nodes, days, policy, ref params } = *soak;
    let jobs_per_day = env("TW_SOAK_JOBS", 3).max(1);
    let steps = env("TW_SOAK_STEPS", 1) as u32;
    let interval = env("TW_SOAK_INTERVAL", 600).max(1);
    let users = env("TW_SOAK_USERS", 200).max(1);
    let report_secs = env("TW_SOAK_REPORT_SECS", 14_400).max(interval);
    let group = env("TW_SOAK_GROUP", 64).max(1) as usize;
    let cpus_per_step = 4u32;
    assert!(DAY / jobs_per_day > 600 + 60 + interval, "TW_SOAK_JOBS too many for the interval");
    let slot = DAY / jobs_per_day;
    let run = slot - 600; // ten idle minutes between jobs
    println!(
        "soak (ingest): {nodes} nodes, {jobs_per_day} jobs per node per day ({} h each) x {steps} steps, \
         {users} users, a sample every {interval} s, one report per node per {report_secs} s of samples \
         ({group} reports a commit), {days} days; raw_retention {} d, summary_retention {} d, job_retention {} d, \
         reports_seen 7 d",
        run / 3_600,
        policy.raw_retention / DAY,
        policy.summary_retention / DAY,
        policy.job_retention / DAY,
    );
    let limits = Limits::default();
    let checks = Checks { limits: &limits, from_service: true, plausibility: true };
    let names: Vec<String> = (0..nodes).map(|n| format!("node{n:04}")).collect();
    let senders: Vec<String> = names.iter().map(|n| format!("{n}/0")).collect();
    let mut report_ids = vec![0u64; nodes as usize];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut import_s, mut ingest_s, mut prune_s, mut retention_s) = (0f64, 0f64, 0f64, 0f64);
    let (mut stored, mut refused, mut reports) = (0u64, 0u64, 0u64);
    let (mut jobs_deleted, mut summarised) = (0u64, 0u64);
    let started = Instant::now();
    for day in 0..days {
        for j in 0..jobs_per_day {
            let start = T0 + day * DAY + j * slot;
            let first_id = 1 + (day * jobs_per_day + j) * nodes;
            let record = |n: u64, end: Option<u64>| {
                let id = first_id + n;
                let mut job = JobRecord {
                    node_list: names[n as usize].clone(),
                    alloc_cpus: cpus_per_step * steps,
                    ..JobRecord::finished(id, &format!("user{:03}", (id * 2_654_435_761) % users), start, run)
                };
                if end.is_none() {
                    job.end_at = None;
                    job.state = "RUNNING".into();
                    job.state_detail = "RUNNING".into();
                }
                job
            };
            // The import sees the jobs start (running), then end.
            let t = Instant::now();
            let running: Vec<JobRecord> = (0..nodes).map(|n| record(n, None)).collect();
            store.upsert_jobs(&running, &[], None).unwrap();
            import_s += t.elapsed().as_secs_f64();
            let mut series = vec![Series { last: start, ..Series::default() }; (nodes * u64::from(steps)) as usize];
            let t = Instant::now();
            // Sample k of a step is at start + 30 + k * interval; a report carries per_report of them.
            let total = (run - 60) / interval;
            let per_report = (report_secs / interval).max(1);
            let mut k0 = 0;
            while k0 < total {
                let k1 = (k0 + per_report).min(total);
                let contents: Vec<BatchContent> = (0..nodes)
                    .map(|n| {
                        let job = JobId(first_id + n);
                        let mut content = BatchContent::default();
                        for s in 0..steps {
                            let state = &mut series[(n * u64::from(steps) + u64::from(s)) as usize];
                            for k in k0..k1 {
                                let sample = state.sample(&mut rng, start + 30 + k * interval, cpus_per_step);
                                content.samples.push((job, StepId(s), sample));
                            }
                            if k0 == 0 {
                                let app = APPS[((job.0 + u64::from(s)) % APPS.len() as u64) as usize];
                                content.apps.push((job, StepId(s), app.to_string()));
                            }
                        }
                        content
                    })
                    .collect();
                let received_at = start + 30 + k1 * interval;
                for (chunk_no, chunk) in contents.chunks(group).enumerate() {
                    let batch: Vec<ScraperReport<'_>> = chunk
                        .iter()
                        .enumerate()
                        .map(|(i, content)| {
                            let n = chunk_no * group + i;
                            report_ids[n] += 1;
                            ScraperReport {
                                sender: &senders[n],
                                report_id: report_ids[n],
                                received_at,
                                node: &names[n],
                                content,
                                checks,
                                keep: false,
                            }
                        })
                        .collect();
                    for (out, _) in store.store_reports(&batch).unwrap() {
                        stored += out.samples;
                        refused += out.refused.total();
                        reports += 1;
                    }
                }
                k0 = k1;
            }
            ingest_s += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let finished: Vec<JobRecord> = (0..nodes).map(|n| record(n, Some(start + run))).collect();
            store.upsert_jobs(&finished, &[], None).unwrap();
            import_s += t.elapsed().as_secs_f64();
        }
        let now = T0 + (day + 1) * DAY;
        let t = Instant::now();
        store.prune_reports_seen(now - 7 * DAY).unwrap();
        prune_s += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let stats = store.apply_retention(now, &policy).unwrap();
        retention_s += t.elapsed().as_secs_f64();
        jobs_deleted += stats.jobs_deleted;
        summarised += stats.series_summarised;
        let d = day + 1;
        if d % 10 == 0 {
            eprintln!("  day {d}: {:.0} s elapsed", started.elapsed().as_secs_f64());
        }
        if [30, 90, 180].contains(&d) || d == days {
            let file = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            let rows = store.table_rows().unwrap();
            reset_peak_rss();
            let rss_before = peak_rss_kb();
            let t = Instant::now();
            let period = Period { start: now - 7 * DAY, end: now };
            let analysed = turingwatch::analysis::load::analyze_period(store, period, &[], params).unwrap();
            let analysis = t.elapsed().as_secs_f64();
            let peak = peak_rss_kb();
            let jobs: usize = analysed.values().map(|a| a.jobs.len()).sum();
            println!(
                "day {d:3}: file {:7.1} MB; analysis of the last 7 d: {jobs} jobs of {} users in {analysis:.2} s, \
                 peak RSS {} MB (before {} MB)",
                file as f64 / 1e6,
                analysed.len(),
                peak.map_or("?".into(), |kb| format!("{:.0}", kb as f64 / 1e3)),
                rss_before.map_or("?".into(), |kb| format!("{:.0}", kb as f64 / 1e3)),
            );
            println!(
                "         rows: {}",
                rows.iter().map(|(name, n)| format!("{name} {n}")).collect::<Vec<_>>().join(", ")
            );
            println!(
                "         so far: {reports} reports, {stored} samples stored, {refused} refused; {summarised} series \
                 summarised, {jobs_deleted} jobs deleted; import {import_s:.0} s, ingest {ingest_s:.0} s, \
                 reports_seen prune {prune_s:.1} s, retention {retention_s:.0} s"
            );
        }
    }
}
