//! Soak: months of a cluster in compressed time, to show that retention bounds the store.
//!
//! Writes synthetic jobs and step samples with synthetic timestamps into a real `Store`, day by
//! day: every node runs one job a day with `TW_SOAK_STEPS` steps sampled every 20 s all day. After
//! each day the retention pass runs (`Store::apply_retention`, as the server does); at days 30,
//! 90 and 180 it prints the store file size, raw and summary bytes per node per day, and the
//! time of the period analysis the server runs (`analysis::load::analyze_period`) over the
//! last 7 days. Nodes default to 10 (`TW_SOAK_NODES`): per-node figures do not depend on the
//! node count (every series is its own blocks), so the 1 000-node store is the per-node figure
//! × 1 000; the output says what was simulated. Run by `scripts/bench/soak.sh`.

#![allow(clippy::unwrap_used)]

use std::time::Instant;
use turingwatch::analysis::period::Period;
use turingwatch::analysis::summary::Params;
use turingwatch::job::{JobId, JobRecord, StepId};
use turingwatch::sample::StepSample;
use turingwatch::store::{RetentionPolicy, Store};

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
    let steps = env("TW_SOAK_STEPS", 10) as u32;
    let days = env("TW_SOAK_DAYS", 180);
    let config = turingwatch_config::Config::default();
    let raw = env("TW_SOAK_RAW_DAYS", config.store.raw_retention_secs(&config.analysis) / DAY) * DAY;
    let summary = env("TW_SOAK_SUMMARY_DAYS", 60) * DAY;
    let policy = RetentionPolicy::new(raw, summary);
    let params = Params::from_config(&config);
    let dir = std::env::temp_dir().join(format!("tw-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("soak.redb");
    let store = Store::open(&path).unwrap();
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
        store.apply_retention(now, &policy).unwrap();
        retention_s += t.elapsed().as_secs_f64();
        let d = day + 1;
        if [30, 90, 180].contains(&d) || d == days {
            let f = store.retention_footprint().unwrap();
            let file = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            let series_days = (nodes * u64::from(steps)) as f64;
            let raw_days = f.raw_blocks as f64 / series_days / 24.0;
            let summary_days = f.summaries as f64 / series_days;
            let per = |bytes: u64, days: f64| if days > 0.0 { bytes as f64 / nodes as f64 / days / 1e6 } else { 0.0 };
            let t = Instant::now();
            let period = Period { start: now - 7 * DAY, end: now };
            let analysed = turingwatch::analysis::load::analyze_period(&store, period, &[], &params).unwrap();
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
    let _ = std::fs::remove_dir_all(&dir);
}
