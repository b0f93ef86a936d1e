//! A report, from any bytes, through what the server does with it: decoded, checked and stored
//! against a job (running or finished, any CPUs, on the report's node or not, from the service or
//! its owner) in a store that keeps what earlier inputs left, then read back and analysed as the
//! job page and the period do. Never a panic; what is stored is what the checks allow (inside the
//! job's run, CPU counters never going back, no more rows in a block than the decoder reads);
//! the period's analysis never meets a corrupt block.
//!
//! The first 8 bytes choose the job; the rest is the request body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::{Mutex, OnceLock};
use turingwatch::analysis::load::{analyze_period, load_job};
use turingwatch::analysis::period::Period;
use turingwatch::analysis::summary::{analyze_job, Params};
use turingwatch::job::{JobId, JobRecord};
use turingwatch::sample::plausible::Limits;
use turingwatch::store::{BatchContent, Checks, Store};
use turingwatch::wire::format::decode_batch;

const START: u64 = 1_800_000_000;
const SLACK: u64 = 120;

struct State {
    store: Store,
    next_job: u64,
    /// The last job made, reused now and then unchanged so its series grow across inputs.
    last: Option<JobRecord>,
    /// The latest receive time so far (samples are allowed up to it, plus slack).
    latest_now: u64,
}

fn state() -> &'static Mutex<State> {
    static STATE: OnceLock<Mutex<State>> = OnceLock::new();
    STATE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tw-fuzz-ingest-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("fuzz store dir");
        let store = Store::open(&dir.join("db.redb")).expect("fuzz store");
        Mutex::new(State { store, next_job: 1, last: None, latest_now: START })
    })
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (head, body) = data.split_at(8);
    let Ok(mut report) = decode_batch(body) else { return };
    let Ok(mut state) = state().lock() else { return };
    let job = match &state.last {
        Some(last) if head[0] & 3 == 0 => last.clone(),
        _ => {
            let id = state.next_job;
            state.next_job += 1;
            let mut job = JobRecord::finished(id, "fuzz", START, u64::from(u16::from_le_bytes([head[2], head[3]])) * 4 + 1);
            job.alloc_cpus = u32::from(head[1] % 64) + 1;
            job.node_list = match head[5] % 3 {
                0 => String::new(),
                1 => report.node.clone(),
                _ => "n[1-3]".to_string(),
            };
            if head[4] & 1 == 1 {
                job.end_at = None;
            }
            if state.store.upsert_jobs(&[job.clone()], &[], None).is_err() {
                return;
            }
            state.last = Some(job.clone());
            job
        }
    };
    let job_id = job.id.0;
    let from_service = head[4] & 2 == 2;
    let now = START + u64::from(u32::from_le_bytes([head[4], head[5], head[6], head[7]]) >> 12);
    state.latest_now = state.latest_now.max(now);
    let latest_now = state.latest_now;
    let store = &state.store;
    let mut content = BatchContent::default();
    for step in report.steps.drain(..) {
        content.samples.extend(step.samples.into_iter().map(|s| (JobId(job_id), step.step, s)));
        content.gpus.extend(step.gpus.into_iter().map(|g| (JobId(job_id), step.step, g)));
        content.apps.extend(step.apps.into_iter().map(|a| (JobId(job_id), step.step, a)));
    }
    let limits = Limits::default();
    let checks = Checks { limits: &limits, from_service, plausibility: true };
    let sender = format!("fuzz/{}", u8::from(from_service));
    if store.store_checked_batch(&sender, report.id, now, &report.node, &content, &checks).is_err() {
        return;
    }
    // What is stored is what the checks allow.
    let stored = store.job_data(JobId(job_id)).expect("job data");
    assert_eq!(stored.corrupt_blocks, 0);
    let end = job.end_at.unwrap_or(u64::MAX).saturating_add(SLACK);
    for series in stored.samples.values() {
        for pair in series.windows(2) {
            assert!(pair[0].at <= pair[1].at, "series out of order");
            assert!(pair[0].cpu_user_cs <= pair[1].cpu_user_cs, "a CPU counter went back");
        }
        for s in series {
            assert!(s.at + SLACK >= START && s.at <= end && s.at <= latest_now + SLACK, "sample outside the run");
            assert!(s.rss_kib <= limits.mem_kib);
        }
    }
    for series in stored.gpu.values() {
        assert!(series.iter().all(|g| g.util_pct <= 100 && g.index < limits.max_gpu_index));
    }
    // The job page and the period analyse whatever is there.
    let params = Params::from_config(&turingwatch_config::Config::default());
    let input = load_job(store, job.clone()).expect("load job");
    let analysis = analyze_job(&input, &params);
    let _ = format!("{analysis:?}");
    let period = Period { start: START - 3_600, end: START + 7 * 86_400 };
    let users = analyze_period(store, period, &[], &params).expect("period analysis");
    assert!(users.len() <= 1);
});
