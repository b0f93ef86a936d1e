//! The `scrape` role: samples every job step of this node and reports to the server.
//!
//! Two supervised actors in a single-threaded actix System (it runs inside short SLURM jobs on
//! compute nodes and must cost almost nothing): the sampler (`actors/sampler.rs`) takes one
//! sample of every step of ITS node each `interval` and every `report_every` (and at the end)
//! hands the samples to the reporter (`actors/reporter.rs`), which spools each report before
//! sending it and backs off while the server does not take it. SIGTERM/SIGINT (scancel,
//! systemd stop) ends the run after one last sample and report.
//!
//! Modes: bounded (`--duration`, default `[scrape] time_per_node`), `--forever` (node agent),
//! and `--once --json` (two samples `--interval` apart, rates printed, nothing reported).

use crate::actors::reporter::{Destination, Reporter};
use crate::actors::sampler::{NodeSampler, Schedule};
use crate::actors::signals::{self, SecondStop};
use crate::actors::supervision::Restarts;
use crate::clock::unix_now;
use crate::job::{JobId, StepId};
use crate::metrics::Metrics;
use crate::sample::collect::{cores_in_use, Sampler, StepFinder, StepReading};
use crate::sample::gpu::{GpuSource, NvmlSource};
use crate::sample::procfs::ProcRoot;
use crate::wire::spool::Spool;
use anyhow::Context;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
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
    // What cannot work is said now, in one line naming the key and the fix, with the
    // configuration-error exit code (units do not restart on it), not after the first sample.
    let server = server_url(config, options);
    if let Err(err) = crate::wire::send::parse_url(&server) {
        return Ok(cannot_start(&format!(
            "{err}: set [scrape] server_url (or TURINGWATCH_SCRAPE_SERVER_URL, or --server) to the server's http://host:port as compute nodes reach it"
        )));
    }
    let spool = match open_spool(config, options, &node) {
        Ok(spool) => spool,
        Err(why) => return Ok(cannot_start(&why)),
    };
    tracing::info!(spool = %spool.dir().display(), server = %server, "reporting");
    let to = Destination { node: node.clone(), server, munge: config.ingest.munge_command.clone() };
    let interval = options.interval.unwrap_or(config.scrape.interval.get()).max(Duration::from_millis(100));
    let schedule = Schedule {
        interval,
        report_every: config.scrape.report_every.get().max(interval),
        end: (!options.forever).then(|| Instant::now() + options.duration.unwrap_or(config.scrape.time_per_node.get())),
    };
    let (config, only_job, max_bytes) = (config.clone(), options.job, config.scrape.spool_max_bytes);
    let metrics = Arc::new(Metrics::default());
    let sampler_node = node.clone();
    let stats = actix::System::new().block_on(async {
        let stop = signals::listen(None, SecondStop::Ignore);
        let restarts = Restarts::new("reporter", Duration::from_secs(1), Duration::from_secs(30), metrics.clone());
        let reporter = Reporter::new(spool, max_bytes, to, restarts);
        let reporter = actix::Supervisor::start(move |_| reporter);
        // The first sampler is the one built above; restarts build their own.
        let mut first = Some(sampler);
        let make = Box::new(move || first.take().unwrap_or_else(|| make_sampler(&config, &sampler_node, only_job)));
        let (done, ended) = tokio::sync::oneshot::channel();
        let restarts = Restarts::new("sampler", Duration::from_secs(1), Duration::from_secs(30), metrics.clone());
        let sampler = NodeSampler::new(make, schedule, reporter.recipient(), done, restarts);
        let sampler = actix::Supervisor::start(move |_| sampler);
        tokio::select! {
            stats = ended => stats.unwrap_or_default(),
            () = stop.requested() => {
                tracing::info!("stop requested: sending what was sampled");
                sampler.send(crate::actors::messages::Finish).await.unwrap_or_default()
            }
        }
    });
    tracing::info!(
        node = %node,
        reports_sent = stats.sent,
        left_in_spool = stats.left_in_spool,
        reports_rejected = stats.rejected,
        sampler_restarts = metrics.restarts_of("sampler"),
        reporter_restarts = metrics.restarts_of("reporter"),
        "scraper finished"
    );
    Ok(ExitCode::SUCCESS)
}

/// `--spool-dir auto`: the private default whatever `[scrape] spool_dir` says (scraper steps the
/// distributor starts in users' jobs run as the job's owner, who cannot write the service's spool).
pub const AUTO_SPOOL: &str = "auto";

/// The node's spool, `<root>/<node>`, opened (and created). The root is `--spool-dir` (`auto`:
/// the default below), else
/// `[scrape] spool_dir`, else `wire::spool::default_root` (the unit's state directory, or a
/// private per-uid directory under /var/tmp).
fn open_spool(config: &Config, options: &ScrapeOptions, node: &str) -> Result<Spool, String> {
    const FIX: &str =
        "make it writable by this user, or set [scrape] spool_dir (empty: a private directory under /var/tmp)";
    let automatic = options.spool_dir.as_deref() == Some(std::path::Path::new(AUTO_SPOOL));
    let root = match (&options.spool_dir, config.scrape.spool_dir.as_str()) {
        (Some(dir), _) if !automatic => dir.clone(),
        (Some(_), _) | (None, "") => {
            let state = std::env::var("STATE_DIRECTORY").ok();
            crate::wire::spool::default_root(state.as_deref()).map_err(|err| {
                format!("no usable default spool ([scrape] spool_dir is empty): {err}; set [scrape] spool_dir to a directory this user may create")
            })?
        }
        (None, dir) => PathBuf::from(dir),
    };
    let dir = root.join(node);
    let spool = Spool::open(&dir, config.scrape.spool_max_bytes).map_err(|err| {
        let cause = match &err {
            crate::wire::spool::SpoolError::Io { source, .. } => source.to_string(),
            other => other.to_string(),
        };
        format!("opening the spool {} ([scrape] spool_dir): {cause}; {FIX}", dir.display())
    })?;
    // Writable now, not only creatable: a read-only spool would fail at the first report.
    let probe = dir.join(".probe.tmp");
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|err| format!("the spool {} ([scrape] spool_dir) is not writable: {err}; {FIX}", dir.display()))?;
    Ok(spool)
}

/// Says why the scraper cannot start, on one line of stderr; the configuration-error exit code.
fn cannot_start(why: &str) -> ExitCode {
    tracing::error!(why, "the scraper cannot start");
    eprintln!("turingwatch: scraper cannot start: {why}");
    ExitCode::from(super::EXIT_CONFIG)
}

/// `--server`, else `[scrape] server_url`, else `http://<web.bind>`.
fn server_url(config: &Config, options: &ScrapeOptions) -> String {
    options.server.clone().unwrap_or_else(|| {
        if config.scrape.server_url.is_empty() {
            format!("http://{}", config.web.bind)
        } else {
            config.scrape.server_url.clone()
        }
    })
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
    let proc_dir = std::path::PathBuf::from(&config.scrape.proc_root);
    let own_job = std::env::var("SLURM_JOB_ID").ok().and_then(|j| j.parse::<u64>().ok());
    let scraper_job = std::env::var("SLURM_JOB_NAME").is_ok_and(|n| n == config.distributor.job_name);
    let skip_job = own_job.filter(|_| scraper_job).map(JobId);
    let budget = usize::try_from(config.scrape.process_rereads_per_scan).unwrap_or(usize::MAX);
    Sampler::new(proc_root, finder, &config.scrape.ignored_apps, gpu)
        .with_rapl(std::path::Path::new(POWERCAP_ROOT))
        .with_process_budget(Some(budget))
        .with_scan_every(config.scrape.process_scan_every)
        .skipping(move |job, _, pids| {
            Some(job) == skip_job
                || only_job.is_some_and(|only| only != job)
                || pids.binary_search(&me).is_ok()
                || is_scraper_step(&proc_dir, pids)
        })
}

/// Whether a step is another scraper's (a scraper step in a user's job, `tw-scraper`): a
/// `turingwatch` process and nothing else but the step's `slurmstepd` (cgroup v1 lists it in the
/// step's own directory). Scrapers never sample each other.
fn is_scraper_step(proc_root: &std::path::Path, pids: &[u32]) -> bool {
    if pids.is_empty() || pids.len() > 3 {
        return false;
    }
    let comm = |pid: &u32| {
        std::fs::read_to_string(proc_root.join(pid.to_string()).join("comm")).unwrap_or_default().trim().to_string()
    };
    let comms: Vec<String> = pids.iter().map(comm).collect();
    comms.iter().any(|c| c == "turingwatch") && comms.iter().all(|c| c == "turingwatch" || c == "slurmstepd")
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

/// Where Linux shows RAPL's energy counters (readable by root only since 5.10).
const POWERCAP_ROOT: &str = "/sys/class/powercap";

#[cfg(test)]
mod scraper_step_tests {
    use super::is_scraper_step;

    #[test]
    fn another_scrapers_step_is_told_by_its_processes() {
        let root = std::env::temp_dir().join(format!("tw-proc-{}", std::process::id()));
        for (pid, comm) in [(1, "slurmstepd"), (2, "turingwatch"), (3, "python3"), (4, "turingwatch")] {
            std::fs::create_dir_all(root.join(pid.to_string())).unwrap();
            std::fs::write(root.join(pid.to_string()).join("comm"), format!("{comm}\n")).unwrap();
        }
        assert!(is_scraper_step(&root, &[1, 2]), "v1: the step's slurmstepd and the scraper");
        assert!(is_scraper_step(&root, &[2]));
        assert!(!is_scraper_step(&root, &[1]), "only a slurmstepd: not a scraper");
        assert!(!is_scraper_step(&root, &[1, 2, 3]), "a user's program beside it");
        assert!(!is_scraper_step(&root, &[]));
        assert!(!is_scraper_step(&root, &[1, 2, 4, 2]));
        let _ = std::fs::remove_dir_all(&root);
    }
}
