//! A synthetic store for load tests and demos of the site (`turingwatch debug seed-web`).
//!
//! Real accounting and analysis fill production stores; this fills one with plausible jobs,
//! samples, one open period and per-user reports of mail-like size, deterministically (a fixed
//! pseudo-random sequence), so load-test figures are comparable between runs.

use crate::job::{JobRecord, MemRequest, StepId, Tres, Usage};
use crate::sample::StepSample;
use crate::store::{PeriodRecord, Store, StoreError, UserReport};
use std::fmt::Write;
use std::path::Path;

/// What was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seeded {
    pub users: u32,
    pub jobs: u64,
    pub period_start: u64,
}

struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below.max(1)
    }
}

/// Fills the store at `db` with `users` users (`user000`…) of `jobs_per_user` jobs each,
/// ending at `now`.
pub fn run(db: &Path, users: u32, jobs_per_user: u32, now: u64) -> Result<Seeded, StoreError> {
    let store = Store::open(db)?;
    let period_start = now - 7 * 86_400;
    let mut rng = Lcg(42);
    let mut next_id = 1_000_000u64;
    let mut reports = Vec::new();
    let mut total = 0u64;
    for u in 0..users {
        let user = format!("user{u:03}");
        let mut jobs = Vec::new();
        for _ in 0..jobs_per_user {
            next_id += 1;
            let start = period_start + rng.next(6 * 86_400);
            let elapsed = 600 + rng.next(4 * 3_600);
            let cpus = [1u32, 2, 4, 8, 16][rng.next(5) as usize];
            let busy_frac = (10 + rng.next(90)) as f64 / 100.0;
            jobs.push(seed_job(next_id, &user, start, elapsed, cpus, busy_frac, rng.next(4) + 1));
        }
        let mut samples = Vec::new();
        for job in &jobs {
            let busy_cs_per_sec = (f64::from(job.alloc_cpus) * job.usage.total_cpu_ms as f64
                / 10.0
                / (job.elapsed_secs.max(1) as f64 * f64::from(job.alloc_cpus)))
            .round() as u64;
            let start = job.start_at.unwrap_or(0);
            let step = (job.elapsed_secs / 60).max(30);
            for (i, at) in (start..start + job.elapsed_secs).step_by(step as usize).enumerate() {
                let i = i as u64;
                let rss_kib = job.usage.max_rss_bytes.unwrap_or(0) / 1024 * (i + 1).min(5) / 5;
                let cpu = busy_cs_per_sec * (at - start);
                samples.push((
                    job.id,
                    StepId::BATCH,
                    StepSample { at, cpu_user_cs: cpu, rss_kib, ..Default::default() },
                ));
            }
        }
        store.upsert_jobs(&jobs, &[], None)?;
        store.append_samples("n1", &samples)?;
        total += jobs.len() as u64;
        reports.push(seed_report(period_start, &user, &jobs, now));
    }
    store.put_period(&PeriodRecord { start: period_start, end: now + 86_400, closed: false, updated_at: now })?;
    store.put_reports(period_start, &reports)?;
    Ok(Seeded { users, jobs: total, period_start })
}

fn seed_job(id: u64, user: &str, start: u64, elapsed: u64, cpus: u32, busy: f64, mem_gib: u64) -> JobRecord {
    let req_mem = mem_gib << 30;
    JobRecord {
        name: format!("sim-{}", id % 7),
        account: format!("group{}", id % 5),
        partition: "debug".into(),
        qos: "normal".into(),
        state: if id.is_multiple_of(11) { "FAILED".into() } else { "COMPLETED".into() },
        state_detail: String::new(),
        submit_at: Some(start.saturating_sub(60)),
        eligible_at: Some(start.saturating_sub(60)),
        time_limit_secs: Some(elapsed * 3),
        node_list: "n1".into(),
        alloc_cpus: cpus,
        req_mem: Some(MemRequest::PerNode(req_mem)),
        req_mem_bytes: Some(req_mem),
        alloc_tres: Tres(vec![("cpu".into(), u64::from(cpus)), ("mem".into(), req_mem), ("node".into(), 1)]),
        usage: Usage {
            total_cpu_ms: (elapsed as f64 * f64::from(cpus) * busy * 1000.0) as u64,
            max_rss_bytes: Some(req_mem / 3),
            max_rss_node: "n1".into(),
            max_rss_task: Some(0),
            ..Usage::default()
        },
        submit_line: "sbatch sim.sh".into(),
        work_dir: format!("/home/{user}"),
        ..JobRecord::finished(id, user, start, elapsed)
    }
}

/// A report shaped like the mail: a greeting, a table of jobs with figures, fixes, a footer.
fn seed_report(period_start: u64, user: &str, jobs: &[JobRecord], now: u64) -> UserReport {
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><style>table{border-collapse:collapse}\
         td,th{border:1px solid #ccc;padding:2px 6px}</style></head><body>",
    );
    let _ = write!(html, "<h1>Cluster usage of {user}</h1><p>Hi, please check out your cluster usage summary:</p>");
    html.push_str("<table><tr><th>Job</th><th>Name</th><th>CPUs</th><th>CPU eff.</th><th>Fix</th></tr>");
    let mut json_jobs = Vec::new();
    for job in jobs {
        let eff = crate::analysis::efficiency::efficiency(job);
        let cpu = eff.cpu_frac.unwrap_or(0.0) * 100.0;
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{cpu:.0} %</td><td>{}</td></tr>",
            job.id,
            job.name,
            job.alloc_cpus,
            if cpu < 50.0 { "--cpus-per-task=fewer" } else { "" }
        );
        json_jobs.push(serde_json::json!({"job": job.id, "cpu_eff_pct": cpu.round(), "cpus": job.alloc_cpus}));
    }
    html.push_str("</table><p>HPC Admin Team</p></body></html>");
    let json = serde_json::json!({"user": user, "jobs": json_jobs}).to_string();
    UserReport {
        period_start,
        user: user.to_string(),
        json,
        text: format!("Cluster usage of {user}: {} jobs", jobs.len()),
        html,
        has_findings: true,
        updated_at: now,
    }
}
