//! The result bundle: the original's contract, kept so its tooling keeps working.
//!
//! `<results_dir>/<period-start>.tar.gz` holds `raw.json` first (`{started, updated, data:
//! {user: {...}}}`, users with nothing to say omitted), then per user `<user>.mail.header` and
//! `<user>.mail` (HTML), or `<user>.empty`. `raw.json` also holds the period's sampling
//! coverage under `coverage` (for admins; see `analysis::coverage`). It is written to `<name>.tmp`, synced and renamed,
//! so a reader never sees half a bundle; then an empty `<name>.renew` marker tells watchers
//! (the original web server reloaded on it) that the bundle changed.

use crate::analysis::coverage::PeriodCoverage;
use crate::analysis::summary::UserAnalysis;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writing the bundle failed.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// One user's files in the bundle.
#[derive(Debug, Clone)]
pub struct BundleUser {
    pub user: String,
    /// RFC 822 headers of the mail (`To:`, `Subject:`…, then a blank line).
    pub header: String,
    /// The HTML mail, or `None` for `<user>.empty`.
    pub html: Option<String>,
    /// The user's `raw.json` entry.
    pub raw: Value,
}

/// A user's entry of `raw.json`: the original's tables plus the full analysis under `Report`.
pub fn user_raw_json(a: &UserAnalysis) -> Value {
    let mut job_info = Vec::new();
    let mut problems = Vec::new();
    let mut mem = Vec::new();
    let mut resources = Vec::new();
    let mut gpu = Vec::new();
    let mut apps = Vec::new();
    let mut sys = Vec::new();
    for j in &a.jobs {
        job_info.push(json!({
            "Job": j.id().0, "Name": j.record.name, "NodeCnt": j.record.node_count, "JobLength": j.record.elapsed_secs,
            "TimeLimit": j.record.time_limit_secs.map(|s| s / 60),
        }));
        if !j.findings.is_empty() {
            let mut row = serde_json::Map::new();
            row.insert("Job".into(), json!(j.id().0));
            row.insert("Step".into(), json!(null));
            for f in &j.findings {
                row.insert(f.kind.title().into(), json!(1));
            }
            problems.push(Value::Object(row));
        }
        mem.push(json!({"Job": j.id().0, "Step": null, "PeakRssSize": j.record.usage.max_rss_bytes.unwrap_or(0),
            "MemLimit": j.record.req_mem_bytes.unwrap_or(0)}));
        for n in &j.nodes {
            let total: u32 = n.cores_histogram.iter().sum();
            for (cores, count) in n.cores_histogram.iter().enumerate().filter(|(_, c)| **c > 0) {
                resources.push(json!({
                    "Job": j.id().0, "Step": null, "Node": n.node,
                    "GPUCPUEntryRatio": f64::from(*count) / f64::from(total.max(1)),
                    "TotGPUCPUSamples": total, "GPUCPUEntryType": "CPU",
                    "AllocCPU": j.record.alloc_cpus, "AllocGPU": j.record.alloc_gpus(), "CPUInUse": cores, "GPUInUse": 0,
                }));
            }
        }
        for g in &j.gpus {
            gpu.push(json!({
                "Job": j.id().0, "Step": null, "Node": g.node, "GPUID": g.index, "AvgGPUUtil": g.mean_util_pct,
                "TotGPUSamples": g.readings, "CntZeroGPUUtil": g.zero_util, "CntLowGPUUtil": g.low_util,
                "LongestNoGPUUtil": g.longest_zero_run, "AvgGPUClockMHz": g.mean_sm_clock_mhz,
                "AvgGPUPowerUsageWatt": g.mean_power_w, "AvgGPUTempC": null,
            }));
        }
        for app in &j.apps {
            apps.push(json!({"Job": j.id().0, "Step": null, "App": app}));
        }
        let s = &j.sys_ratio;
        if s.intervals > 0 {
            sys.push(json!({"Job": j.id().0, "Step": null, "TotSysTimeRatioSamples": s.intervals,
                "10%~33%": s.r10_33, "33%~66%": s.r33_66, "66%~100%": s.r66_100, ">100%": s.over_100_sum}));
        }
    }
    json!({
        "JobInfo": job_info, "Problems": problems, "MemUsage": mem, "Resources": resources, "GPU": gpu,
        "AppUsage": apps, "SysTimeRatio": sys, "Report": a,
    })
}

/// Writes `<dir>/<period_start>.tar.gz` atomically and then the `.renew` marker; returns the path.
pub fn write_bundle(
    dir: &Path,
    period_start: u64,
    started: u64,
    updated: u64,
    users: &[BundleUser],
    coverage: Option<&PeriodCoverage>,
) -> Result<PathBuf, BundleError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BundleError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let final_path = dir.join(format!("{period_start}.tar.gz"));
    let tmp_path = dir.join(format!("{period_start}.tar.gz.tmp"));
    let mut data = serde_json::Map::new();
    for u in users.iter().filter(|u| u.html.is_some()) {
        data.insert(u.user.clone(), u.raw.clone());
    }
    let mut raw = json!({"started": started, "updated": updated, "period": period_start, "data": data});
    if let Some(coverage) = coverage {
        raw["coverage"] = json!(coverage);
    }
    let file = std::fs::File::create(&tmp_path).map_err(io(&tmp_path))?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut add = |name: &str, bytes: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(updated);
        header.set_cksum();
        tar.append_data(&mut header, name, bytes).map_err(io(&tmp_path))
    };
    add("raw.json", raw.to_string().as_bytes())?;
    for u in users {
        add(&format!("{}.mail.header", u.user), u.header.as_bytes())?;
        match &u.html {
            Some(html) => add(&format!("{}.mail", u.user), html.as_bytes())?,
            None => add(&format!("{}.empty", u.user), b"")?,
        }
    }
    let gz = tar.into_inner().map_err(io(&tmp_path))?;
    let mut file = gz.finish().map_err(io(&tmp_path))?;
    file.flush().map_err(io(&tmp_path))?;
    file.sync_all().map_err(io(&tmp_path))?;
    drop(file);
    std::fs::rename(&tmp_path, &final_path).map_err(io(&final_path))?;
    let renew = dir.join(format!("{period_start}.tar.gz.renew"));
    std::fs::write(&renew, b"").map_err(io(&renew))?;
    Ok(final_path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn bundle_holds_raw_json_first_then_user_files_and_a_renew_marker() {
        let dir = std::env::temp_dir().join(format!("tw-bundle-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let users = vec![
            BundleUser {
                user: "alice".into(),
                header: "To: alice@x\n\n".into(),
                html: Some("<p>a</p>".into()),
                raw: json!({"k": 1}),
            },
            BundleUser { user: "bob".into(), header: "To: bob@x\n\n".into(), html: None, raw: json!({}) },
        ];
        let coverage = PeriodCoverage { jobs: 3, jobs_unsampled: 1, text: "two of three".into(), ..Default::default() };
        let path = write_bundle(&dir, 1_700_000_000, 1, 2, &users, Some(&coverage)).unwrap();
        assert!(dir.join("1700000000.tar.gz.renew").exists());
        assert!(!dir.join("1700000000.tar.gz.tmp").exists());
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()));
        let mut names = Vec::new();
        let mut raw = String::new();
        for entry in archive.entries().unwrap() {
            let mut e = entry.unwrap();
            let name = e.path().unwrap().display().to_string();
            if name == "raw.json" {
                e.read_to_string(&mut raw).unwrap();
            }
            names.push(name);
        }
        assert_eq!(names, ["raw.json", "alice.mail.header", "alice.mail", "bob.mail.header", "bob.empty"]);
        let raw: Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(raw["data"]["alice"]["k"], 1);
        assert!(raw["data"].get("bob").is_none());
        assert_eq!(raw["updated"], 2);
        assert_eq!((raw["coverage"]["jobs"].as_u64(), raw["coverage"]["jobs_unsampled"].as_u64()), (Some(3), Some(1)));
        assert_eq!(raw["coverage"]["text"], "two of three");
        // Without a coverage figure (an older caller) raw.json has no `coverage` key.
        write_bundle(&dir, 1_700_000_600, 1, 2, &users, None).unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(
            std::fs::File::open(dir.join("1700000600.tar.gz")).unwrap(),
        ));
        let mut first = archive.entries().unwrap().next().unwrap().unwrap();
        let mut text = String::new();
        first.read_to_string(&mut text).unwrap();
        assert!(serde_json::from_str::<Value>(&text).unwrap().get("coverage").is_none());
    }
}
