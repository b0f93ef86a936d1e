//! Rendering a parsed sacct batch for `turingwatch accounting` (the original's PRINT_ONLY mode):
//! a human-readable listing, or JSON with every field the import would store.

use crate::job::{JobRecord, StepRecord};
use crate::slurm::sacct_parse::SacctBatch;
use std::fmt::Write as _;

fn mib(bytes: Option<u64>) -> String {
    match bytes {
        Some(b) => format!("{:.0}M", b as f64 / 1_048_576.0),
        None => "-".into(),
    }
}

fn secs(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

fn time(unix: Option<u64>, tz: &jiff::tz::TimeZone) -> String {
    unix.and_then(|s| jiff::Timestamp::from_second(i64::try_from(s).ok()?).ok())
        .map(|t| t.to_zoned(tz.clone()).strftime("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".into())
}

/// One block per job (a job line, then its steps indented), then a summary line.
pub fn render_text(batch: &SacctBatch, tz: &jiff::tz::TimeZone) -> String {
    let mut out = String::new();
    for (job, steps) in &batch.jobs {
        let _ = writeln!(
            out,
            "{:<12} {:<10} {:<12} exit {}:{}  {} → {}  elapsed {}s  {} node(s) {}  {} CPU(s)  req {}  CPU {} (user {}, sys {})  MaxRSS {}{}  {:?}",
            job.display_id,
            job.user,
            job.state_detail,
            job.exit_code,
            job.exit_signal,
            time(job.start_at, tz),
            time(job.end_at, tz),
            job.elapsed_secs,
            job.node_count,
            if job.node_list.is_empty() { "-" } else { &job.node_list },
            job.alloc_cpus,
            mib(job.req_mem_bytes),
            secs(job.usage.total_cpu_ms),
            secs(job.usage.user_cpu_ms),
            secs(job.usage.system_cpu_ms),
            mib(job.usage.max_rss_bytes),
            if job.usage.max_rss_node.is_empty() { String::new() } else { format!(" on {}", job.usage.max_rss_node) },
            job.name,
        );
        for step in steps {
            let _ = writeln!(
                out,
                "  .{:<10} {:<12} exit {}:{}  elapsed {}s  {} task(s) on {}  CPU {}  MaxRSS {}  {:?}",
                step.step.to_string(),
                step.state,
                step.exit_code,
                step.exit_signal,
                step.elapsed_secs,
                step.task_count,
                step.node_list,
                secs(step.usage.total_cpu_ms),
                mib(step.usage.max_rss_bytes),
                step.name,
            );
        }
    }
    let steps: usize = batch.jobs.iter().map(|(_, s)| s.len()).sum();
    let _ = writeln!(out, "{} job(s), {} step(s) would be imported", batch.jobs.len(), steps);
    for skipped in &batch.skipped {
        let _ = writeln!(out, "skipped: {skipped}");
    }
    out
}

#[derive(serde::Serialize)]
struct JsonJob<'a> {
    job: &'a JobRecord,
    steps: &'a [StepRecord],
}

#[derive(serde::Serialize)]
struct JsonSkipped<'a> {
    line: usize,
    field: &'a str,
    reason: &'a str,
    text: &'a str,
}

#[derive(serde::Serialize)]
struct JsonBatch<'a> {
    jobs: Vec<JsonJob<'a>>,
    skipped: Vec<JsonSkipped<'a>>,
}

/// `{"jobs": [{"job": {...}, "steps": [...]}], "skipped": [{"line", "field", "reason", "text"}]}`.
pub fn render_json(batch: &SacctBatch) -> Result<String, serde_json::Error> {
    let doc = JsonBatch {
        jobs: batch.jobs.iter().map(|(job, steps)| JsonJob { job, steps }).collect(),
        skipped: batch
            .skipped
            .iter()
            .map(|s| JsonSkipped { line: s.line, field: s.field, reason: &s.reason, text: &s.text })
            .collect(),
    };
    serde_json::to_string_pretty(&doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slurm::sacct_parse::parse_sacct;

    const MALFORMED: &str = include_str!("../../../tests/fixtures/sacct/malformed.txt");

    #[test]
    fn text_and_json_list_every_job_and_skipped_line() {
        let tz = jiff::tz::TimeZone::UTC;
        let batch = parse_sacct(MALFORMED, &tz, 0);
        let text = render_text(&batch, &tz);
        assert!(text.contains("8 job(s), 14 step(s) would be imported"), "{text}");
        assert!(text.contains("\"we|ird name ünï\""), "{text}");
        assert!(text.contains("CANCELLED by 0"));
        assert_eq!(text.lines().filter(|l| l.starts_with("skipped: ")).count(), 3);
        let json: serde_json::Value = serde_json::from_str(&render_json(&batch).unwrap()).unwrap();
        assert_eq!(json["jobs"].as_array().unwrap().len(), 8);
        assert_eq!(json["jobs"][0]["job"]["name"], "we|ird name ünï");
        assert_eq!(json["jobs"][0]["steps"].as_array().unwrap().len(), 4);
        assert_eq!(json["skipped"][1]["field"], "ElapsedRaw");
    }
}
