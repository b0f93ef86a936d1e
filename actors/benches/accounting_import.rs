//! Accounting import throughput: parse + store synthetic sacct output for 1 000 000 jobs.
//!
//! The text has the exact shape `sacct` prints for the importer (fields of
//! `sacct_parse::FIELDS`, 0x1f-delimited): every job has a `batch` and an `extern` step, every
//! third one also an `srun` step 0, array tasks and het components are mixed in. It is generated
//! in chunks of 50 000 jobs (one import window each) and each chunk goes through
//! `accounting::import_text`, the importer's own path: parsed part by part on a second thread
//! while the previous part is written, and committed in one transaction with the watermark.
//! As the importer does, each window's records are first checked against the window's list of
//! job and step ids (`records_match_ids`, the importer's guard against forged records): timed.
//! The fallback for a window that fails that check (a random delimiter, cut by
//! `slurm::delimited::canonicalize`) is timed once on the first chunk and printed apart.
//! Generation is not timed. The rate is jobs per second of wall time of the imports; the CPU
//! time of each side is printed too, since the machine is shared and wall time alone says little.
//! Run: `cargo bench --bench accounting_import` (goal ≥ 100 000 jobs/s).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::time::{Duration, Instant};
use turingwatch::accounting::import_text;
use turingwatch::slurm::delimited::{canonicalize, Delimiter};
use turingwatch::slurm::sacct_parse::{records_match_ids, FIELDS};
use turingwatch::store::Store;

/// Jobs generated; `TW_BENCH_JOBS` overrides (for a quick check of the generator).
const JOBS: u64 = 1_000_000;
const CHUNK: u64 = 50_000;
const USERS: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];

fn stamp(t: u64) -> String {
    let ts = jiff::Timestamp::from_second(t as i64).unwrap();
    ts.to_zoned(jiff::tz::TimeZone::UTC).datetime().strftime("%Y-%m-%dT%H:%M:%S").to_string()
}

/// One chunk of sacct text for jobs `first..first+count`; returns (text, steps).
fn generate(first: u64, count: u64) -> (String, u64) {
    let mut out = String::with_capacity((count * 1_500) as usize);
    let mut steps = 0;
    let base = 1_790_000_000u64;
    for id in first..first + count {
        let submit = base + id * 3;
        let (start, end) = (submit + 5, submit + 5 + 60 + id % 3_600);
        let (s_submit, s_start, s_end) = (stamp(submit), stamp(start), stamp(end));
        let user = USERS[(id % 5) as usize];
        let display = match id % 10 {
            0 => format!("{}_{}", id - 1, id % 7),
            1 => format!("{}+{}", id - 1, 1),
            _ => id.to_string(),
        };
        let (state, exit) = match id % 20 {
            0 => ("FAILED", "3:0"),
            1 => ("CANCELLED by 1001", "0:15"),
            2 => ("OUT_OF_MEMORY", "0:125"),
            _ => ("COMPLETED", "0:0"),
        };
        let cpus = 1 + id % 8;
        let nodes = 1 + id % 2;
        let node_list = if nodes == 2 { format!("n[{},{}]", id % 50, 50 + id % 50) } else { format!("n{}", id % 100) };
        let elapsed = end - start;
        let rss = 1_000_000 + (id * 7919) % 4_000_000_000;
        let _ = writeln!(
            out,
            "{id}\x1f{display}\x1f{state}\x1f{exit}\x1f{user}\x1f{}\x1fdev\x1fdebug\x1fnormal\x1f{s_submit}\x1f{s_submit}\x1f{s_start}\x1f{s_end}\x1f01:00:00\x1f{elapsed}\x1f{nodes}\x1f{node_list}\x1f{cpus}\x1f\x1f{}M\x1fbilling={cpus},cpu={cpus},mem={}M,node={nodes}\x1fbilling={cpus},cpu={cpus},mem={}M,node={nodes}\x1f{:02}:{:02}.{:03}\x1f{:02}:{:02}.{:03}\x1f00:00.{:03}\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f/home/{user}/run{}\x1fsbatch -c {cpus} --mem={}M run.sh\x1fjob name {}",
            1000 + id % 5,
            cpus * 512,
            cpus * 512,
            cpus * 512,
            (elapsed / 60) % 60, elapsed % 60, id % 1000,
            (elapsed / 60) % 60, elapsed % 60, (id * 3) % 1000,
            id % 1000,
            id % 13,
            cpus * 512,
            id % 97,
        );
        let mut step_names = vec![("batch", "batch", "")];
        step_names.push(("extern", "extern", ""));
        if id % 3 == 0 {
            step_names.push(("0", "python", "srun python train.py"));
        }
        for (step, name, submit_line) in step_names {
            steps += 1;
            let _ = writeln!(
                out,
                "{id}.{step}\x1f{display}.{step}\x1f{state}\x1f{exit}\x1f\x1f\x1fdev\x1f\x1f\x1f{s_start}\x1f{s_start}\x1f{s_start}\x1f{s_end}\x1f\x1f{elapsed}\x1f1\x1fn{}\x1f{cpus}\x1f1\x1f\x1fcpu={cpus},mem={}M,node=1\x1f\x1f00:{:02}.{:03}\x1f00:{:02}.{:03}\x1f00:00.{:03}\x1f{rss}\x1fn{}\x1f0\x1f{}\x1f{}\x1f1.25M\x1f0.02M\x1fcpu=00:00:{:02},energy=0,fs/disk=96350,mem={rss},pages=2,vmem={}\x1fcpu=00:00:{:02},energy=0,fs/disk=96350,mem={rss},pages=2,vmem={}\x1f\x1f{submit_line}\x1f{name}",
                id % 100,
                cpus * 512,
                elapsed % 60, id % 1000,
                elapsed % 60, (id * 3) % 1000,
                id % 1000,
                id % 100,
                rss / 2,
                rss * 3,
                elapsed % 60,
                rss * 3,
                elapsed % 60,
                rss * 3,
            );
        }
    }
    (out, steps)
}

/// Job lines (not steps) in canonical text.
fn summary_jobs(text: &str) -> usize {
    text.lines().filter(|l| !l.split('\x1f').next().unwrap_or_default().contains('.')).count()
}

fn main() {
    let dir = std::env::temp_dir().join(format!("tw-accounting-import-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::open(&dir.join("import.redb")).unwrap();
    let tz = jiff::tz::TimeZone::UTC;
    let total_jobs: u64 = std::env::var("TW_BENCH_JOBS").ok().and_then(|v| v.parse().ok()).unwrap_or(JOBS);
    let mut wall = Duration::ZERO;
    let (mut parse_cpu, mut store_cpu, mut cut) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut fallback = None;
    let (mut jobs, mut steps, mut bytes) = (0usize, 0u64, 0usize);
    let mut first = 1;
    while first <= total_jobs {
        let (text, chunk_steps) = generate(first, CHUNK.min(total_jobs - first + 1));
        bytes += text.len();
        let ids: String =
            text.lines().map(|l| l.split('\x1f').next().unwrap_or_default()).collect::<Vec<_>>().join("\n");
        if first == 1 {
            let delimiter = Delimiter::random();
            let raw = text.replace('\x1f', delimiter.as_str());
            let t = Instant::now();
            let canonical = canonicalize(raw.as_bytes(), &delimiter, FIELDS.len());
            fallback = Some((t.elapsed(), summary_jobs(&canonical.text)));
        }
        let t = Instant::now();
        assert!(records_match_ids(&text, &ids));
        cut += t.elapsed();
        let summary = import_text(&store, &text, &tz, 1_800_000_000, first + CHUNK).unwrap();
        wall += t.elapsed();
        parse_cpu += summary.parse_cpu;
        store_cpu += summary.store_cpu;
        assert_eq!(summary.skipped_lines, 0);
        assert_eq!(summary.steps as u64, chunk_steps);
        jobs += summary.jobs;
        steps += chunk_steps;
        assert_eq!(summary.event.new.len(), summary.jobs);
        first += CHUNK;
    }
    assert_eq!(jobs as u64, total_jobs);
    assert_eq!(store.job_count().unwrap(), total_jobs);
    let rate = |d: Duration| jobs as f64 / d.as_secs_f64();
    println!("{jobs} jobs, {steps} steps, {:.0} MB of sacct text", bytes as f64 / 1e6);
    let cpu = |what: &str, cpu: Duration| {
        println!("{what}: CPU {:.2} s = {:.0} jobs/s", cpu.as_secs_f64(), rate(cpu));
    };
    cpu("records checked against the ids (one thread)", cut);
    if let Some((took, jobs)) = fallback {
        println!(
            "fallback for a window that fails the check (random delimiter, canonicalize): {:.2} s for {jobs} jobs = {:.0} jobs/s",
            took.as_secs_f64(),
            jobs as f64 / took.as_secs_f64()
        );
    }
    cpu("parse (parser threads)", parse_cpu);
    cpu("store (writer thread, incl. commit)", store_cpu);
    println!(
        "check + parse + store (goal >= 100000 jobs/s): wall {:.2} s = {:.0} jobs/s; CPU {:.2} s = {:.0} jobs/s",
        wall.as_secs_f64(),
        rate(wall),
        (cut + parse_cpu + store_cpu).as_secs_f64(),
        rate(cut + parse_cpu + store_cpu)
    );
    let size = std::fs::metadata(dir.join("import.redb")).map(|m| m.len()).unwrap_or(0);
    println!("store file: {:.0} MB", size as f64 / 1e6);
    let _ = std::fs::remove_dir_all(&dir);
}
