//! The `scrape` role: samples every job step of this node and reports to the server.
//!
//! A plain blocking loop (no actix: it runs inside short SLURM jobs on compute nodes and must
//! cost almost nothing). Each `interval` it takes one sample of every step of ITS node; every
//! `report_every` (and at the end) the samples become one report with a fresh random id, which
//! is written to the local spool first and then sent with a MUNGE credential bound to its bytes.
//! A report leaves the spool only when the server answered 200 (after its commit) or refused it
//! for good (4xx: resending would not help). Unreachable server or 5xx: it stays and is resent
//! on the next report or by the next scraper run on this node — the server's `(sender, id)`
//! check makes a resend harmless, so data arrives exactly once.
//!
//! Modes: bounded (`--duration`, default `[scrape] time_per_node`), `--forever` (node agent),
//! and `--once --json` (two samples `--interval` apart, rates printed, nothing reported).

use crate::clock::unix_now;
use crate::ingest::REPORT_PATH;
use crate::job::{JobId, StepId};
use crate::munge::{encode_credential, CREDENTIAL_HEADER};
use crate::report::send::post;
use crate::report::spool::Spool;
use crate::report::wire::{encode_report, Report, StepReport, VERSION};
use crate::sample::collect::{cores_in_use, Sampler, StepFinder, StepReading};
use crate::sample::gpu::{GpuSource, NvmlSource};
use crate::sample::procfs::ProcRoot;
use anyhow::Context;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use turingwatch_config::{Config, GpuSource as GpuChoice};

/// What the command line asked for.
#[derive(Debug, Clone, Default)]
pub struct ScrapeOptions {
    /// Node whose steps are sampled (default `$SLURMD_NODENAME`, else the short host name).
    pub node: Option<String>,
    pub once: bool,
    pub json: bool,
    pub interval: Option<Duration>,
    pub duration: Option<Duration>,
    pub forever: bool,
    /// Server URL (default `[scrape] server_url`, else `http://<web.bind>`).
    pub server: Option<String>,
    /// Spool directory (default `[scrape] spool_dir`); a per-node subdirectory is used.
    pub spool_dir: Option<PathBuf>,
    /// Only this job's steps (user mode: a user scrapes their own job and sends nothing else).
    pub job: Option<JobId>,
}

/// Runs the role.
pub fn run(config: &Config, options: &ScrapeOptions) -> anyhow::Result<ExitCode> {
    let node = options.node.clone().unwrap_or_else(default_node);
    let mut sampler = make_sampler(config, &node, options.job);
    tracing::info!(node = %node, finder = sampler.finder().name(), "scraper started");
    if options.once {
        // One-off: every process read for both samples, so the printed rates are exact.
        sampler = sampler.with_process_budget(None);
        let interval = options.interval.unwrap_or(Duration::from_secs(1));
        let json = once_json(&mut sampler, &node, interval)?;
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(ExitCode::SUCCESS);
    }
    let stop = stop_flag();
    let mut reporter = Reporter::new(config, options, &node)?;
    let interval = options.interval.unwrap_or(config.scrape.interval.get()).max(Duration::from_millis(100));
    let report_every = config.scrape.report_every.get().max(interval);
    let end =
        (!options.forever).then(|| Instant::now() + options.duration.unwrap_or(config.scrape.time_per_node.get()));
    reporter.flush();
    let mut pending: BTreeMap<(JobId, StepId), StepReport> = BTreeMap::new();
    let mut last_report = Instant::now();
    // Samples fall on wall-clock multiples of the interval, so `at` (whole seconds) is exact
    // and samples of different nodes line up.
    sleep_until(next_tick(interval), &stop);
    let mut next_sample = next_tick(interval);
    loop {
        match sampler.sample(unix_now()) {
            Ok(readings) => add_readings(&mut pending, readings),
            Err(err) => tracing::warn!(error = %err, "sample failed"),
        }
        let finished = stop.load(Ordering::Relaxed) || end.is_some_and(|e| Instant::now() + interval > e);
        if finished || last_report.elapsed() >= report_every {
            reporter.report(std::mem::take(&mut pending));
            last_report = Instant::now();
        }
        if finished {
            break;
        }
        sleep_until(next_sample, &stop);
        next_sample = next_tick(interval);
    }
    let left = reporter.spool.entries().map(|e| e.len()).unwrap_or(0);
    tracing::info!(node = %node, reports_sent = reporter.sent, left_in_spool = left, "scraper finished");
    Ok(ExitCode::SUCCESS)
}

fn default_node() -> String {
    if let Ok(name) = std::env::var("SLURMD_NODENAME") {
        if !name.is_empty() {
            return name;
        }
    }
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length, which is what we pass.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name = if rc == 0 {
        String::from_utf8_lossy(buf.split(|b| *b == 0).next().unwrap_or(&[])).into_owned()
    } else {
        String::new()
    };
    name.split('.').next().unwrap_or("localhost").to_string()
}

/// The node's sampler: its steps only (of `only_job`, when given), never the scraper's own step
/// (nor its own job when it runs as a distributor-placed scraper job).
pub fn make_sampler(config: &Config, node: &str, only_job: Option<JobId>) -> Sampler {
    let proc_root = ProcRoot::new(&config.scrape.proc_root);
    let finder = StepFinder::detect(std::path::Path::new(&config.scrape.cgroup_root), node);
    let gpu: Option<Box<dyn GpuSource>> = match config.gpu.source {
        GpuChoice::Nvml => NvmlSource::open(&config.gpu.nvml_library).map(|s| Box::new(s) as Box<dyn GpuSource>),
        GpuChoice::None => None,
    };
    let me = std::process::id();
    let own_job = std::env::var("SLURM_JOB_ID").ok().and_then(|j| j.parse::<u64>().ok());
    let scraper_job = std::env::var("SLURM_JOB_NAME").is_ok_and(|n| n == config.distributor.job_name);
    let skip_job = own_job.filter(|_| scraper_job).map(JobId);
    let budget = usize::try_from(config.scrape.process_rereads_per_scan).unwrap_or(usize::MAX);
    Sampler::new(proc_root, finder, &config.scrape.ignored_apps, gpu)
        .with_process_budget(Some(budget))
        .with_scan_every(config.scrape.process_scan_every)
        .skipping(move |job, _, pids| {
            Some(job) == skip_job || only_job.is_some_and(|only| only != job) || pids.binary_search(&me).is_ok()
        })
}

/// Two samples `interval` apart, with rates, as JSON.
pub fn once_json(sampler: &mut Sampler, node: &str, interval: Duration) -> anyhow::Result<serde_json::Value> {
    let first = sampler.sample(unix_now()).context("first sample")?;
    let started = Instant::now();
    std::thread::sleep(interval);
    let second = sampler.sample(unix_now()).context("second sample")?;
    let wall = started.elapsed().as_secs_f64();
    let before: BTreeMap<(JobId, StepId), &StepReading> = first.iter().map(|r| ((r.job, r.step), r)).collect();
    let steps: Vec<serde_json::Value> = second
        .iter()
        .map(|r| {
            let cores = before.get(&(r.job, r.step)).map(|b| cores_in_use(&b.sample, &r.sample, wall));
            serde_json::json!({
                "job": r.job.0,
                "step": r.step.to_string(),
                "uid": r.uid,
                "cores_in_use": cores.map(|c| (c * 1000.0).round() / 1000.0),
                "cpu_source": if r.cpu_from_cgroup { "cgroup" } else { "processes" },
                "sample": r.sample,
                "apps": r.apps,
                "gpus": r.gpus,
            })
        })
        .collect();
    Ok(serde_json::json!({
        "node": node,
        "finder": sampler.finder().name(),
        "at": unix_now(),
        "interval_secs": (wall * 1000.0).round() / 1000.0,
        "steps": steps,
    }))
}

fn add_readings(pending: &mut BTreeMap<(JobId, StepId), StepReport>, readings: Vec<StepReading>) {
    for r in readings {
        let entry = pending.entry((r.job, r.step)).or_insert_with(|| StepReport {
            job: r.job,
            step: r.step,
            samples: Vec::new(),
            gpus: Vec::new(),
            apps: Vec::new(),
        });
        entry.samples.push(r.sample);
        entry.gpus.extend(r.gpus);
        let known: BTreeSet<&String> = entry.apps.iter().collect();
        let new: Vec<String> = r.apps.into_iter().filter(|a| !known.contains(a)).collect();
        entry.apps.extend(new);
    }
}

/// Spools and sends reports.
struct Reporter {
    spool: Spool,
    node: String,
    server: String,
    munge: String,
    sent: u64,
}

impl Reporter {
    fn new(config: &Config, options: &ScrapeOptions, node: &str) -> anyhow::Result<Reporter> {
        let dir = options.spool_dir.clone().unwrap_or_else(|| PathBuf::from(&config.scrape.spool_dir)).join(node);
        let spool = Spool::open(&dir, config.scrape.spool_max_bytes)
            .with_context(|| format!("opening the spool {} ([scrape] spool_dir)", dir.display()))?;
        let server = options.server.clone().unwrap_or_else(|| {
            if config.scrape.server_url.is_empty() {
                format!("http://{}", config.web.bind)
            } else {
                config.scrape.server_url.clone()
            }
        });
        Ok(Reporter { spool, node: node.to_string(), server, munge: config.ingest.munge_command.clone(), sent: 0 })
    }

    /// Makes a report of `pending`, spools it, then sends everything spooled.
    fn report(&mut self, pending: BTreeMap<(JobId, StepId), StepReport>) {
        if !pending.is_empty() {
            let report = Report {
                version: VERSION,
                id: rand::random(),
                node: self.node.clone(),
                made_at: unix_now(),
                steps: pending.into_values().collect(),
            };
            let bytes = encode_report(&report);
            if let Err(err) = self.spool.put(report.made_at, report.id, &bytes) {
                tracing::error!(error = %err, "cannot spool a report; sending it directly");
                let _ = self.send(&bytes);
            }
        }
        self.flush();
    }

    /// Sends spooled reports oldest first; stops at the first one the server did not take.
    fn flush(&mut self) {
        let entries = match self.spool.entries() {
            Ok(entries) => entries,
            Err(err) => return tracing::error!(error = %err, "cannot list the spool"),
        };
        for (path, _) in entries {
            let Ok(bytes) = self.spool.read(&path) else { continue };
            match self.send(&bytes) {
                Delivery::Taken => {
                    self.sent += 1;
                    let _ = self.spool.remove(&path);
                }
                Delivery::Refused(why) => {
                    tracing::error!(path = %path.display(), why = %why, "server refused a report for good; dropped");
                    let _ = self.spool.remove(&path);
                }
                Delivery::Later(why) => {
                    tracing::warn!(server = %self.server, why = %why, "server did not take the report; kept in the spool");
                    return;
                }
            }
        }
    }

    fn send(&self, bytes: &[u8]) -> Delivery {
        let credential = match encode_credential(&self.munge, bytes) {
            Ok(c) => c,
            Err(err) => return Delivery::Later(err.to_string()),
        };
        match post(&self.server, REPORT_PATH, &[(CREDENTIAL_HEADER, &credential)], bytes, Duration::from_secs(30)) {
            Ok(answer) if answer.status == 200 => Delivery::Taken,
            // 401 may be a clock or munged hiccup on either side: worth a resend with a new credential.
            Ok(answer) if answer.status == 401 || answer.status >= 500 || answer.status == 429 => {
                Delivery::Later(format!("HTTP {}: {}", answer.status, answer.body))
            }
            Ok(answer) => Delivery::Refused(format!("HTTP {}: {}", answer.status, answer.body)),
            Err(err) => Delivery::Later(err.to_string()),
        }
    }
}

enum Delivery {
    Taken,
    Refused(String),
    Later(String),
}

/// Set on SIGTERM/SIGINT (scancel, systemd stop): the loop then reports what it has and ends.
fn stop_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let setter = flag.clone();
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        runtime.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("stop requested: sending what was sampled");
            setter.store(true, Ordering::Relaxed);
        });
    });
    flag
}

/// The next wall-clock multiple of `interval` (a little after it, so `at` reads that second).
fn next_tick(interval: Duration) -> SystemTime {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let step = interval.as_millis().max(1);
    let next_ms = (now.as_millis() / step + 1) * step;
    UNIX_EPOCH + Duration::from_millis(u64::try_from(next_ms).unwrap_or(u64::MAX)) + Duration::from_millis(5)
}

/// Sleeps until `when` or until stopped.
fn sleep_until(when: SystemTime, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match when.duration_since(SystemTime::now()) {
            Ok(left) if !left.is_zero() => std::thread::sleep(left.min(Duration::from_millis(100))),
            _ => return,
        }
    }
}
