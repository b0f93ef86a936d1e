//! The client path of `turingwatch job` (goal: ≤ 200 ms in all for a job with 1 000 samples per
//! node on 8 nodes): the server serialises the job's stored data (`client::JobAnswer`, JSON),
//! the CLI parses it back, analyses it and renders the terminal report — plus, where `munge` is
//! installed, the one `munge -s` process the CLI runs for its credential. Network and the
//! server's store read are not included (the store read is `cargo bench --bench analysis`'s
//! `TW_BENCH_STORE=1` path). Each phase is run `ROUNDS` times; the median and the fastest are
//! printed. Run: `cargo bench -p turingwatch --bench client_job`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use turingwatch::analysis::summary::{analyze_job, JobInput, Params};
use turingwatch::client::{parse_answer, JobAnswer};
use turingwatch::job::{JobRecord, MemRequest, StepId, StepRecord, Tres, Usage};
use turingwatch::roles::job::text::{render_job_text, Source};
use turingwatch::sample::{GpuReading, StepSample};
use turingwatch::store::SeriesKey;

const NODES: u32 = 8;
const SAMPLES_PER_NODE: u64 = 1_000;
const GPUS_PER_NODE: u64 = 2;
const ROUNDS: usize = 30;
const START: u64 = 1_800_000_000;

fn input() -> JobInput {
    let elapsed = SAMPLES_PER_NODE * 20;
    let nodes: Vec<String> = (1..=NODES).map(|n| format!("n{n:02}")).collect();
    let job = JobRecord {
        name: "train".into(),
        uid: Some(1001),
        account: "dev".into(),
        partition: "gpu".into(),
        state: "RUNNING".into(),
        end_at: None,
        time_limit_secs: Some(elapsed * 2),
        node_list: format!("n[01-{NODES:02}]"),
        node_count: NODES,
        alloc_cpus: NODES * 16,
        req_mem: Some(MemRequest::PerNode(64 << 30)),
        req_mem_bytes: Some(u64::from(NODES) * (64 << 30)),
        alloc_tres: Tres(vec![
            ("cpu".into(), u64::from(NODES * 16)),
            ("gres/gpu".into(), u64::from(NODES) * GPUS_PER_NODE),
            ("node".into(), u64::from(NODES)),
        ]),
        usage: Usage { total_cpu_ms: elapsed * 1_000 * 60, max_rss_bytes: Some(20 << 30), ..Usage::default() },
        ..JobRecord::finished(42, "alice", START, elapsed)
    };
    let step = StepRecord {
        job: job.id,
        step: StepId(0),
        name: "python3".into(),
        state: "RUNNING".into(),
        exit_code: 0,
        exit_signal: 0,
        start_at: Some(START),
        end_at: None,
        elapsed_secs: elapsed,
        node_list: job.node_list.clone(),
        node_count: NODES,
        task_count: NODES,
        alloc_cpus: NODES * 16,
        usage: Usage { total_cpu_ms: elapsed * 1_000 * 60, max_rss_bytes: Some(20 << 30), ..Usage::default() },
        tres_usage_in_tot: Tres::default(),
        tres_usage_in_max: Tres::default(),
        submit_line: "srun python3 train.py".into(),
    };
    let mut samples = BTreeMap::new();
    let mut gpu = BTreeMap::new();
    for (n, node) in nodes.iter().enumerate() {
        let key = SeriesKey { job: job.id, step: StepId(0), node: node.clone() };
        let n = n as u64;
        samples.insert(
            key.clone(),
            (0..SAMPLES_PER_NODE)
                .map(|i| StepSample {
                    at: START + i * 20,
                    cpu_user_cs: i * 20 * 100 * (4 + n % 8),
                    cpu_sys_cs: i * 20 * 5,
                    rss_kib: (20 << 20) + (i % 97) * 1024,
                    mem_current_kib: (21 << 20) + (i % 89) * 1024,
                    mem_peak_kib: 22 << 20,
                    minor_faults: i * 1_000,
                    major_faults: i / 100,
                    read_kib: i * 4096,
                    write_kib: i * 512,
                    threads: 64,
                    processes: 4,
                    cpus: 16,
                    resident_kib: (20 << 20) + (i % 83) * 1024,
                    cache_kib: (1 << 20) + (i % 7) * 1024,
                    energy_mj: i * 2_000_000,
                })
                .collect::<Vec<_>>(),
        );
        gpu.insert(
            key,
            (0..SAMPLES_PER_NODE * GPUS_PER_NODE)
                .map(|i| GpuReading {
                    at: START + (i / GPUS_PER_NODE) * 20,
                    index: (i % GPUS_PER_NODE) as u32,
                    util_pct: ((i * 7) % 100) as u32,
                    mem_used_mib: 30_000 + i % 1000,
                    in_use_by_step: true,
                    ..GpuReading::default()
                })
                .collect::<Vec<_>>(),
        );
    }
    JobInput { job, steps: vec![step], samples, gpu, apps: vec![(StepId(0), "python3".into())] }
}

fn stats(mut times: Vec<Duration>) -> (f64, f64) {
    times.sort();
    (times[times.len() / 2].as_secs_f64() * 1e3, times[0].as_secs_f64() * 1e3)
}

fn main() {
    let params = Params::from_config(&turingwatch_config::Config::default());
    let input = input();
    let (mut ser, mut de, mut analyse, mut render, mut total) = (vec![], vec![], vec![], vec![], vec![]);
    let mut bytes = 0;
    for _ in 0..ROUNDS {
        let t0 = Instant::now();
        let body = serde_json::to_vec(&JobAnswer::from_input(&input)).unwrap();
        let t1 = Instant::now();
        let back = parse_answer(&body).unwrap().into_input();
        let t2 = Instant::now();
        let analysis = analyze_job(&back, &params);
        let t3 = Instant::now();
        let text = render_job_text(&analysis, Source::Server, false, "");
        let t4 = Instant::now();
        assert_eq!(analysis.samples, u64::from(NODES) * SAMPLES_PER_NODE);
        std::hint::black_box(text);
        bytes = body.len();
        ser.push(t1 - t0);
        de.push(t2 - t1);
        analyse.push(t3 - t2);
        render.push(t4 - t3);
        total.push(t4 - t0);
    }
    println!(
        "job of {NODES} nodes × {SAMPLES_PER_NODE} samples (+ {GPUS_PER_NODE} GPUs/node): answer {:.2} MiB JSON, {ROUNDS} rounds",
        bytes as f64 / (1 << 20) as f64
    );
    for (name, times) in
        [("serialise", ser), ("deserialise", de), ("analyse", analyse), ("render", render), ("total", total)]
    {
        let (median, min) = stats(times);
        println!("  {name:<12} median {median:8.2} ms   fastest {min:8.2} ms");
    }
    if std::process::Command::new("munge").arg("-V").output().is_ok() {
        let mut times = Vec::new();
        for _ in 0..10 {
            let t = Instant::now();
            let cred = turingwatch::munge::encode_payload("munge", "turingwatch-client-v1 GET /client/v1/jobs/42");
            times.push(t.elapsed());
            assert!(cred.is_ok(), "{cred:?}");
        }
        let (median, min) = stats(times);
        println!("  {:<12} median {median:8.2} ms   fastest {min:8.2} ms", "munge -s");
    }
}
